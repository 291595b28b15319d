"""Job specs (qsp/jobs/spec.py): a valid spec loads; every malformed one is refused before any work, naming the
file, the key and the allowed values; the shipped specs in calibration/jobs/ all validate."""
from __future__ import annotations

from pathlib import Path

import pytest

from qsp.errors import InputError
from qsp.jobs.spec import load_spec, spec_hash

ROOT = Path(__file__).resolve().parent.parent
GOOD = """
[job]
name = "t"
method = "map+nuts"
[data]
drugs = ["teclistamab"]
studies = ["MajesTEC-1"]
[parameters]
class = ["CRS_THETA1", "CRS_BETA"]
drug = ["TUMOR0"]
deviations = { CRS_BETA = 0.5 }
priors = { CRS_BETA = { scale = 0.5 } }
[population]
patients = 4
[nuts]
free = ["class:CRS_BETA"]
"""


def _write(tmp_path, text):
    p = tmp_path / "job.toml"
    p.write_text(text)
    return p


def test_a_valid_spec_loads_with_defaults(tmp_path):
    s = load_spec(_write(tmp_path, GOOD))
    assert s.name == "t" and s.runs_map and s.runs_nuts and s.drugs == ("teclistamab",)
    assert s.patients == 4 and s.seed == 1 and s.stratified and s.nuts["chains"] == 2 and s.map["starts"] == 1
    assert s.priors == {"CRS_BETA": {"scale": 0.5}}
    # the hash ignores where the file is, and changes with any setting
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert spec_hash(load_spec(_write(other, GOOD))) == spec_hash(s)
    assert spec_hash(load_spec(_write(other, GOOD.replace("patients = 4", "patients = 5")))) != spec_hash(s)


@pytest.mark.parametrize("old, new, key, allowed", [
    ('method = "map+nuts"', 'method = "vi"', "job.method", "map, nuts, map+nuts"),
    ('[population]', '[populations]', "populations", "allowed: job, data"),
    ('patients = 4', 'patients = 4\nsize = 3', "population.size", "allowed: patients, seed, stratified"),
    ('patients = 4', 'patients = 1', "population.patients", "at least 2"),
    ('patients = 4', 'patients = "four"', "population.patients", "an integer"),
    ('drugs = ["teclistamab"]', 'drugs = ["tecli"]', "data.drugs", "allowed: blinatumomab"),
    ('studies = ["MajesTEC-1"]', 'studies = ["MajesTEC-9"]', "data.studies", "allowed: MajesTEC-1"),
    ('drug = ["TUMOR0"]', 'drug = ["TUMOUR0"]', "parameters", "allowed:"),
    ('free = ["class:CRS_BETA"]', 'free = ["class:KIL6"]', "nuts.free", "allowed: class:CRS_BETA"),
    ('deviations = { CRS_BETA = 0.5 }', 'deviations = { TUMOR0 = 0.5 }', "parameters.deviations.TUMOR0",
     "class parameters"),
    ('priors = { CRS_BETA = { scale = 0.5 } }', 'priors = { CRS_BETA = { sd = 0.5 } }', "parameters.priors.CRS_BETA",
     "scale and/or value"),
    ('[nuts]', '[nuts]\ntarget_accept = 1.5', "nuts.target_accept", "(0, 1)"),
    ('[nuts]', '[nuts]\nmax_tree_depth = 20', "nuts.max_tree_depth", "1-12"),
    ('[data]', '[data]\nleave_out = ["teclistamab:pk"]', "data.leave_out", "DRUG:crs"),
    ('name = "t"', '', "job.name", "required"),
    ('[data]', '[data]\nleave_out = ["teclistamab"]', "data.studies", "keep no target after data.leave_out"),
])
def test_a_malformed_spec_is_refused_naming_file_key_and_allowed_values(tmp_path, old, new, key, allowed):
    assert old in GOOD
    p = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(InputError) as e:
        load_spec(p)
    msg = str(e.value)
    assert str(p) in msg and key in msg and allowed in msg, msg


def test_not_toml_and_missing_file_are_refused(tmp_path):
    with pytest.raises(InputError, match="not valid TOML"):
        load_spec(_write(tmp_path, "[job\nname="))
    with pytest.raises(InputError, match="no such file"):
        load_spec(tmp_path / "nope.toml")


@pytest.mark.parametrize("path", sorted((ROOT / "calibration" / "jobs").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_job_spec_validates(path):
    s = load_spec(path)
    assert s.name == path.stem
