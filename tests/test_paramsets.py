"""Parameter sets (qsp.paramsets): the calibrated file's values and draws per drug, the default set, and bad
files refused with the file and the field named.

Fast tests use a small synthetic document; the round trip uses the real tiny fit of tests/conftest.py.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from qsp import InputError, pk_model
from qsp.cards import load_card
from qsp.paramsets import (CALIBRATED_ENV, FORMAT, ParameterSet, calibrated_file, calibrated_values,
                           default_parameter_set, draw_parameter_sets, from_unconstrained_np, read_calibrated,
                           resolve_parameter_set, shipped_file, to_unconstrained_np)

QSP = Path(__file__).resolve().parent.parent / "qsp"


def _doc() -> dict:
    """A valid two-level document: teclistamab fitted, class values for the rest."""
    cm = [-2.0, float(np.log(5.0))]
    ccov = [[0.04, 0.01], [0.01, 0.09]]
    dm = [-2.2, float(np.log(4.0)), 4.5]
    dcov = [[0.04, 0.01, 0.0], [0.01, 0.05, 0.02], [0.0, 0.02, 0.25]]
    return {
        "format": FORMAT,
        "fit": {"created": "2025-01-02T03:04:05+00:00", "qsp_version": "0.1.0", "command": "test"},
        "class": {"names": ["CRS_THETA1", "CRS_BETA"], "transforms": ["identity", "log"], "mean": cm, "cov": ccov,
                  "values": [cm[0], 5.0], "deviation_sd": {"CRS_BETA": 0.5}},
        "drugs": {"teclistamab": {"names": ["CRS_THETA1", "CRS_BETA", "CRS_TOL"],
                                  "transforms": ["identity", "log", "identity"],
                                  "levels": ["class", "class+deviation", "drug"], "mean": dm, "cov": dcov,
                                  "values": [dm[0], 4.0, 4.5]}},
    }


@pytest.fixture
def doc_file(tmp_path, monkeypatch):
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(_doc()))
    monkeypatch.setenv(CALIBRATED_ENV, str(path))
    return path


@pytest.fixture(scope="module")
def tec():
    return load_card("teclistamab")


def test_engine_module_imports_no_calibration_or_app_module():
    tree = ast.parse((QSP / "paramsets.py").read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module.lstrip(".").split(".")[0])
        elif isinstance(node, ast.Import):
            mods.update(a.name.split(".")[0] for a in node.names)
    assert not mods & {"calibrate", "cli", "drugrun", "trial_report", "uncertainty", "trial"}, mods


def test_transforms_invert():
    for tr, x in (("log", [0.01, 3.0, 1e4]), ("logit", [1e-6, 0.3, 0.999]), ("identity", [-3.0, 0.0, 2.5])):
        assert np.allclose(from_unconstrained_np(to_unconstrained_np(x, tr), tr), x, rtol=1e-12)
    assert np.all(np.isfinite(from_unconstrained_np([-800.0, 800.0], "logit")))


def test_fitted_drug_gets_its_own_section_other_drugs_the_class(doc_file, tec):
    assert calibrated_values("teclistamab", tec.model()) == pytest.approx(
        {"CRS_THETA1": -2.2, "CRS_BETA": 4.0, "CRS_TOL": 4.5}, rel=1e-12)
    elr = load_card("elranatamab")
    assert calibrated_values("elranatamab", elr.model()) == pytest.approx({"CRS_THETA1": -2.0, "CRS_BETA": 5.0})
    ps = elr.parameter_set("calibrated")
    assert ps.level == "class" and ps.file == str(doc_file) and "not in the fit" in ps.describe()


def test_default_set_follows_the_file(doc_file, monkeypatch, tec):
    assert default_parameter_set() == "calibrated"
    assert resolve_parameter_set("teclistamab", tec.model()).name == "calibrated"
    assert tec.parameter_set("prior").values == {}
    monkeypatch.setenv(CALIBRATED_ENV, "none")
    assert calibrated_file() is None and default_parameter_set() == "prior"
    p = resolve_parameter_set("teclistamab", tec.model())
    assert p.name == "prior" and p.values == {}
    assert f"no calibrated parameter file in force ({CALIBRATED_ENV}=none switches it off)" in p.describe()
    if shipped_file() is None:
        monkeypatch.delenv(CALIBRATED_ENV)
        assert default_parameter_set() == "prior"
        assert "no calibrated parameter file is shipped with this installation" in p.describe()


def test_calibrated_without_a_file_is_an_error(monkeypatch, tec):
    monkeypatch.setenv(CALIBRATED_ENV, "none")
    with pytest.raises(InputError, match="no calibrated parameter file") as e:
        resolve_parameter_set("teclistamab", tec.model(), "calibrated")
    assert e.value.field == "parameters" and CALIBRATED_ENV in str(e.value)
    with pytest.raises(InputError, match="no calibrated parameter file"):
        calibrated_values("teclistamab", tec.model())
    with pytest.raises(InputError, match="no calibrated parameter file"):
        draw_parameter_sets("teclistamab", tec.model(), 3, 0)


def test_unknown_set_and_missing_env_file(monkeypatch, tmp_path, tec):
    with pytest.raises(InputError, match="allowed: prior, calibrated"):
        resolve_parameter_set("teclistamab", tec.model(), "posterior")
    monkeypatch.setenv(CALIBRATED_ENV, str(tmp_path / "nope.json"))
    with pytest.raises(InputError, match="no such file") as e:
        default_parameter_set()
    assert e.value.field == CALIBRATED_ENV


def test_model_without_the_parameters_is_an_error(doc_file):
    pk = pk_model("pk-2cmt")
    with pytest.raises(InputError, match="CRS_THETA1, CRS_BETA, CRS_TOL") as e:
        calibrated_values("teclistamab", pk)  # fitted drug: every fitted name must be in the model
    assert "does not have" in str(e.value) and str(doc_file) in str(e.value)
    with pytest.raises(InputError, match="no calibrated parameter applies"):
        resolve_parameter_set("somedrug", pk, "calibrated")


def test_a_mapping_is_checked_against_the_model(tec):
    ps = resolve_parameter_set("teclistamab", tec.model(), {"CRS_BETA": 3.0})
    assert isinstance(ps, ParameterSet) and ps.level == "given" and ps.values == {"CRS_BETA": 3.0}
    with pytest.raises(InputError, match="NOPE"):
        resolve_parameter_set("teclistamab", tec.model(), {"NOPE": 1.0})
    with pytest.raises(InputError, match="KIL6"):
        resolve_parameter_set("teclistamab", tec.model(), {"KIL6": -1.0})


def test_draws_reproduce_mean_and_covariance(doc_file, tec):
    k = 40_000
    d = draw_parameter_sets("teclistamab", tec.model(), k, seed=7)
    assert len(d) == k and set(d[0]) == {"CRS_THETA1", "CRS_BETA", "CRS_TOL"}
    u = np.column_stack([[s["CRS_THETA1"] for s in d], np.log([s["CRS_BETA"] for s in d]),
                         [s["CRS_TOL"] for s in d]])
    doc = _doc()["drugs"]["teclistamab"]
    mean, cov = np.array(doc["mean"]), np.array(doc["cov"])
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(u.mean(0) - mean) < 5 * sd / np.sqrt(k))
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / k)  # SE of a sample covariance entry
    assert np.all(np.abs(np.cov(u.T) - cov) < 5 * se)
    assert draw_parameter_sets("teclistamab", tec.model(), 3, seed=7) == d[:3]  # seeded
    assert draw_parameter_sets("teclistamab", tec.model(), 3, seed=8) != d[:3]


def test_draws_for_a_drug_outside_the_fit_add_the_deviation_variance(doc_file):
    elr = load_card("elranatamab")
    d = draw_parameter_sets("elranatamab", elr.model(), 40_000, seed=1)
    assert set(d[0]) == {"CRS_THETA1", "CRS_BETA"}
    var_theta = np.var([s["CRS_THETA1"] for s in d])
    var_beta = np.var(np.log([s["CRS_BETA"] for s in d]))
    assert var_theta == pytest.approx(0.04, rel=0.05)  # no deviation allowed
    assert var_beta == pytest.approx(0.09 + 0.25, rel=0.05)  # class marginal + tau^2


def test_bad_number_of_draws(doc_file, tec):
    for k in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="positive integer"):
            draw_parameter_sets("teclistamab", tec.model(), k, 0)


def _mutate(path, op):
    d = _doc()
    op(d)
    path.write_text(json.dumps(d))
    return path


def _set(keys, value):
    def op(d):
        node = d
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return op


def _drop(keys):
    def op(d):
        node = d
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return op


BAD = [
    ("format", _set(["format"], "qsp-calibrated/0"), "format"),
    ("no-fit", _drop(["fit"]), "fit"),
    ("no-class", _drop(["class"]), "class"),
    ("drugs-list", _set(["drugs"], []), "drugs"),
    ("names-repeated", _set(["class", "names"], ["CRS_BETA", "CRS_BETA"]), "class.names"),
    ("transform-unknown", _set(["class", "transforms"], ["identity", "sqrt"]), "class.transforms"),
    ("mean-short", _set(["class", "mean"], [0.0]), "class.mean"),
    ("mean-text", _set(["class", "mean"], [0.0, "x"]), "class.mean"),
    ("mean-nan", _set(["class", "mean"], [float("nan"), 1.0]), "class.mean"),
    ("cov-shape", _set(["class", "cov"], [[1.0, 0.0]]), "class.cov"),
    ("cov-asymmetric", _set(["class", "cov"], [[0.04, 0.02], [0.01, 0.09]]), "class.cov"),
    ("cov-not-psd", _set(["class", "cov"], [[0.04, 0.5], [0.5, 0.09]]), "class.cov"),
    ("values-disagree", _set(["class", "values"], [-2.0, 6.0]), "class.values"),
    ("deviation-negative", _set(["class", "deviation_sd"], {"CRS_BETA": -1.0}), "class.deviation_sd"),
    ("deviation-unknown", _set(["class", "deviation_sd"], {"KIL6": 0.5}), "class.deviation_sd"),
    ("drug-no-cov", _drop(["drugs", "teclistamab", "cov"]), "drugs.teclistamab.cov"),
    ("drug-levels", _set(["drugs", "teclistamab", "levels"], ["class", "class", "other"]),
     "drugs.teclistamab.levels"),
    ("stages-zero", _set(["fit", "structure"], {"secretion_stages": {"teclistamab": 0}}),
     "fit.structure.secretion_stages"),
    ("stages-not-table", _set(["fit", "structure"], {"secretion_stages": 6}), "fit.structure.secretion_stages"),
    ("hold-not-bool", _set(["fit", "structure"], {"secretion_stages": {"teclistamab": 1},
                                                   "dex_holds_secretion": {"teclistamab": 1}}),
     "fit.structure.dex_holds_secretion"),
    ("tonic-not-bool", _set(["fit", "structure"], {"tonic_secretion": {"teclistamab": "yes"}}),
     "fit.structure.tonic_secretion"),
    ("priming-not-bool", _set(["fit", "structure"], {"monocyte_priming": {"teclistamab": 0}}),
     "fit.structure.monocyte_priming"),
    ("unknown-option", _set(["fit", "structure"], {"secretion_stages": {"teclistamab": 1}, "stages": {}}),
     "fit.structure.stages"),
    ("typo-option", _set(["fit", "structure"], {"secretion_stage": {"teclistamab": 1}}),
     "fit.structure.secretion_stage"),
]


@pytest.mark.parametrize("name, op, fld", BAD, ids=[b[0] for b in BAD])
def test_malformed_file_names_file_and_field(tmp_path, name, op, fld):
    path = _mutate(tmp_path / f"{name}.json", op)
    with pytest.raises(InputError) as e:
        read_calibrated(path)
    assert e.value.field == fld, str(e.value)
    assert str(path) in str(e.value) and repr(fld) in str(e.value), str(e.value)


def test_not_json_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "broken.json"
    path.write_text('{"format": "qsp-calibrated/1",')
    monkeypatch.setenv(CALIBRATED_ENV, str(path))
    with pytest.raises(InputError, match="not valid JSON") as e:
        default_parameter_set()  # a broken default file is an error, not a silent prior
    assert str(path) in str(e.value)


# ------------------------------------------------------------------------------------------------------
# the real tiny fit, and the trial API
# ------------------------------------------------------------------------------------------------------
def test_round_trip_of_a_real_fit(calibrated_fit, monkeypatch, tec):
    fit, path = calibrated_fit
    monkeypatch.setenv(CALIBRATED_ENV, str(path))
    vals = calibrated_values("teclistamab", tec.model())
    assert vals == pytest.approx(fit.values["teclistamab"], rel=1e-12)
    sec = read_calibrated(path).drug_section("teclistamab")
    d = draw_parameter_sets("teclistamab", tec.model(), 20_000, seed=3)
    u = np.column_stack([to_unconstrained_np([s[k] for s in d], t) for k, t in zip(sec.names, sec.transforms)])
    sd = np.sqrt(np.diag(sec.cov))
    assert np.all(np.abs(u.mean(0) - sec.mean) < 5 * sd / np.sqrt(len(d)))
    assert np.allclose(np.cov(u.T), sec.cov, rtol=0.06, atol=0.06 * sd.max() ** 2)


def test_card_trial_uses_the_set_and_explicit_values_win(doc_file, tec):
    from qsp.trial import run_card_trial

    kw = dict(patients=4, seed=0, days=7.0)
    cal = run_card_trial(tec, parameters="calibrated", **kw)
    assert cal.parameter_set.name == "calibrated" and cal.parameter_set.level == "drug"
    assert cal.crs_parameters["CRS_THETA1"] == pytest.approx(-2.2)
    assert cal.crs_parameters["CRS_BETA"] == pytest.approx(4.0)
    prior = run_card_trial(tec, parameters="prior", **kw)
    defaults = tec.model().default_params()
    assert prior.crs_parameters["CRS_THETA1"] == pytest.approx(defaults["CRS_THETA1"])
    pinned = run_card_trial(tec, parameters="calibrated", crs={"CRS_THETA1": -1.0}, params={"CRS_TOL": 3.0}, **kw)
    assert pinned.crs_parameters["CRS_THETA1"] == -1.0 and pinned.crs_parameters["CRS_TOL"] == 3.0
    assert pinned.crs_parameters["CRS_BETA"] == pytest.approx(4.0)
    # same patients whatever the set; a CRS_OMEGA rescales each patient's CRS sensitivity
    omega0 = defaults["CRS_OMEGA"]
    wide = run_card_trial(tec, parameters="prior", params={"CRS_OMEGA": 2 * omega0}, **kw)
    eta0 = prior.population.covariates["eta_crs"].to_numpy()
    assert np.array_equal(cal.population.covariates["eta_crs"].to_numpy(), eta0)
    assert np.allclose(wide.population.covariates["eta_crs"].to_numpy(), 2 * eta0)
    assert np.array_equal(cal.population.covariates["weight_kg"].to_numpy(),
                          prior.population.covariates["weight_kg"].to_numpy())


def test_a_fitted_iiv_sd_in_the_set_rescales_the_trial_population(tmp_path, monkeypatch, tec):
    """A calibrated file whose class section carries OMEGA_KIL6 (a fitted IIV SD): the trial's patients keep
    their random effects and their KIL6 spread follows the fitted SD."""
    from qsp.population import DEFAULT_OMEGA
    from qsp.trial import run_card_trial

    d = _doc()
    om = 2 * DEFAULT_OMEGA["KIL6"][0]
    sec = d["drugs"]["teclistamab"]
    sec["names"].append("OMEGA_KIL6")
    sec["transforms"].append("log")
    sec["levels"].append("class")
    sec["mean"].append(float(np.log(om)))
    sec["values"].append(om)
    sec["cov"] = [row + [0.0] for row in sec["cov"]] + [[0.0] * len(sec["cov"]) + [0.01]]
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(d))
    monkeypatch.setenv(CALIBRATED_ENV, str(path))
    kw = dict(patients=4, seed=0, days=7.0)
    cal = run_card_trial(tec, parameters="calibrated", **kw)
    assert cal.parameter_set.values["OMEGA_KIL6"] == pytest.approx(om)
    prior = run_card_trial(tec, parameters="prior", **kw)
    typ = tec.model().default_params()["KIL6"]
    np.testing.assert_allclose(np.log(cal.population.params["KIL6"] / typ),
                               2 * np.log(prior.population.params["KIL6"] / typ), rtol=1e-10)
    with pytest.raises(InputError, match="OMEGA_KIL6 must be >= 0"):
        resolve_parameter_set("teclistamab", tec.model(), {"OMEGA_KIL6": -1.0})
    # a single patient takes the model values alone (the IIV SD describes a population), as the card's doc says
    pset = tec.parameter_set("calibrated")
    assert pset.omegas == {"OMEGA_KIL6": pytest.approx(om)} and "OMEGA_KIL6" not in pset.model_values
    assert set(pset.model_values) | set(pset.omegas) == set(pset.values)
    tec.model().params(pset.model_values)  # no unknown name
    with pytest.raises(InputError, match="unknown parameter 'OMEGA_KIL6'"):
        tec.model().params(pset.values)


def _stamped(tmp_path, stages: dict, hold: dict | None = None):
    doc = _doc()
    doc["fit"]["structure"] = {"secretion_stages": stages, **({"dex_holds_secretion": hold} if hold else {})}
    path = tmp_path / f"stamped-{len(list(tmp_path.iterdir()))}.json"  # a new file each time: reads are cached by
    path.write_text(json.dumps(doc))                                  # path, mtime and size
    return read_calibrated(path)


def test_parameters_fitted_with_another_secretion_structure_are_refused(tmp_path, tec):
    """A file records the ``secretion_stages`` it was fitted with; laying it over a model built with another
    number of stages is refused (naming the field), for a fitted drug and for one outside the fit."""
    from qsp.tce import build_tce_model

    one = tec.model()
    six = build_tce_model("tce-six", {}, mw_g_per_mol=150_000.0, secretion_stages=6)
    assert calibrated_values("teclistamab", one, file=_stamped(tmp_path, {"teclistamab": 1}))
    assert calibrated_values("teclistamab", six, file=_stamped(tmp_path, {"teclistamab": 6}))
    assert calibrated_values("elranatamab", six, file=_stamped(tmp_path, {"teclistamab": 6}))  # class section
    for drug, model, stages in (("teclistamab", one, {"teclistamab": 6}), ("teclistamab", six, {"teclistamab": 1}),
                                ("elranatamab", one, {"teclistamab": 6})):
        with pytest.raises(InputError, match="fitted with secretion_stages = ") as e:
            calibrated_values(drug, model, file=_stamped(tmp_path, stages))
        assert e.value.field == "secretion_stages"
    # a file without the record predates the option: it was fitted with one stage
    with pytest.raises(InputError, match="secretion_stages = 1, but the model of teclistamab has 6"):
        calibrated_values("teclistamab", six, file=read_calibrated(_mutate(tmp_path / "old.json", lambda d: d)))


def test_parameters_fitted_with_another_dexamethasone_structure_are_refused(tmp_path, tec):
    """``dex_holds_secretion`` is recorded and checked like the stages; a file without it was fitted without."""
    from qsp.tce import build_tce_model

    held = build_tce_model("tce-held", {}, mw_g_per_mol=150_000.0, dex_holds_secretion=True)
    assert calibrated_values("teclistamab", held,
                             file=_stamped(tmp_path, {"teclistamab": 1}, {"teclistamab": True}))
    assert calibrated_values("teclistamab", tec.model(),
                             file=_stamped(tmp_path, {"teclistamab": 1}, {"teclistamab": False}))
    only_hold = _doc()  # a record with one option: the other is at its default
    only_hold["fit"]["structure"] = {"dex_holds_secretion": {"teclistamab": True}}
    (tmp_path / "only_hold.json").write_text(json.dumps(only_hold))
    assert calibrated_values("teclistamab", held, file=read_calibrated(tmp_path / "only_hold.json"))
    for model, hold in ((held, None), (held, {"teclistamab": False}), (tec.model(), {"teclistamab": True})):
        with pytest.raises(InputError, match="fitted with dex_holds_secretion = ") as e:
            calibrated_values("teclistamab", model, file=_stamped(tmp_path, {"teclistamab": 1}, hold))
        assert e.value.field == "dex_holds_secretion"


def test_parameters_fitted_without_monocyte_priming_are_refused_on_a_primed_model(tmp_path, tec):
    """``monocyte_priming`` is recorded and checked like the other options; a file without it was fitted without."""
    from qsp.tce import build_tce_model

    primed = build_tce_model("tce-primed", {}, mw_g_per_mol=150_000.0, monocyte_priming=True)
    doc = _doc()
    doc["fit"]["structure"] = {"secretion_stages": {"teclistamab": 1}, "monocyte_priming": {"teclistamab": True}}
    (tmp_path / "primed.json").write_text(json.dumps(doc))
    assert calibrated_values("teclistamab", primed, file=read_calibrated(tmp_path / "primed.json"))
    with pytest.raises(InputError, match="monocyte_priming") as e:
        calibrated_values("teclistamab", tec.model(), file=read_calibrated(tmp_path / "primed.json"))
    assert e.value.field == "monocyte_priming"
    with pytest.raises(InputError, match="monocyte_priming") as e:  # no record: fitted without priming
        calibrated_values("teclistamab", primed, file=_stamped(tmp_path, {"teclistamab": 1}))
    assert e.value.field == "monocyte_priming"
