"""`qsp simulate --parameters prior|calibrated` and `--uncertainty K`: the set used is stated, calibrated without
a file is an error, `--param` wins, and K parameter draws put 5-95% columns next to each CRS percentage.

The calibrated file is the real tiny fit of tests/conftest.py, named through QSP_CALIBRATED. Population runs use
8 patients over 14 days (as tests/test_cli_population.py), so the trial compiles once.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qsp.cli import app
from qsp.paramsets import CALIBRATED_ENV, shipped_file
from qsp.uncertainty import PCT_COLUMNS

runner = CliRunner()
POP = ["simulate", "--drug", "teclistamab", "--patients", "8", "--seed", "3", "--days", "14"]
PINNED = ["--param", "CRS_THETA1=-2.3", "--param", "CRS_BETA=6", "--param", "CRS_TOL=4.4"]


def _one_error_line(r, *words):
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert text.startswith("error:") and len(text.splitlines()) == 1, text
    for w in words:
        assert w in text, (w, text)
    return text


@pytest.fixture
def cal_env(calibrated_fit, monkeypatch):
    fit, path = calibrated_fit
    monkeypatch.setenv(CALIBRATED_ENV, str(path))
    return fit, path


@pytest.fixture
def no_file(monkeypatch):
    monkeypatch.setenv(CALIBRATED_ENV, "none")


# ------------------------------------------------------------------------------------------------------
# errors, before any work
# ------------------------------------------------------------------------------------------------------
def test_calibrated_without_a_file_is_an_error(no_file, tmp_path):
    for extra in ([], ["--patients", "8"]):
        out = tmp_path / "never"
        r = runner.invoke(app, ["simulate", "--drug", "teclistamab", "--parameters", "calibrated", *extra,
                                "--out", str(out)])
        _one_error_line(r, "no calibrated parameter file", "--parameters prior", CALIBRATED_ENV)
        assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--drug", "teclistamab", "--uncertainty", "5"], ["--uncertainty", "--patients"]),
    (["--drug", "teclistamab", "--parameters", "posterior"], ["--parameters", "allowed: prior, calibrated"]),
    (["--model", "pk-1cmt", "--parameters", "prior"], ["--parameters", "does not apply to dataset mode"]),
    (["--drug", "teclistamab", "--patients", "8", "--uncertainty", "5"], ["--uncertainty", "--parameters calibrated"]),
])
def test_bad_options_exit_2(no_file, tmp_path, args, words):
    out = tmp_path / "never"
    _one_error_line(runner.invoke(app, ["simulate", *args, "--out", str(out)]), *words)
    assert not out.exists()


@pytest.mark.parametrize("k, words", [("1", ["--uncertainty", "at least 2"]), ("0", ["at least 2"]),
                                      ("500", ["--uncertainty", "QSP_MAX_DRAWS"])])
def test_bad_number_of_draws(cal_env, tmp_path, k, words):
    out = tmp_path / "never"
    _one_error_line(runner.invoke(app, [*POP, "--uncertainty", k, "--out", str(out)]), *words)
    assert not out.exists()


def test_uncertainty_with_prior_is_an_error(cal_env, tmp_path):
    r = runner.invoke(app, [*POP, "--uncertainty", "3", "--parameters", "prior", "--out", str(tmp_path / "x")])
    _one_error_line(r, "--uncertainty", "--parameters prior was given")


def test_malformed_calibrated_file_names_file_and_field(monkeypatch, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "qsp-calibrated/1", "fit": {}, "class": {"names": ["CRS_BETA"]},
                               "drugs": {}}))
    monkeypatch.setenv(CALIBRATED_ENV, str(bad))
    r = runner.invoke(app, ["simulate", "--drug", "teclistamab", "--out", str(tmp_path / "o")])
    _one_error_line(r, str(bad), "'class.transforms'")


# ------------------------------------------------------------------------------------------------------
# runs
# ------------------------------------------------------------------------------------------------------
def test_default_without_a_file_is_prior_and_says_so(no_file, tmp_path):
    out = tmp_path / "p"
    r = runner.invoke(app, [*POP, "--out", str(out)])
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("parameters:"))
    assert line.startswith("parameters: prior")
    assert "no calibrated parameter file" in line
    if shipped_file() is None:
        assert "no calibrated parameter file is shipped" in line
    s = json.loads((out / "summary.json").read_text())
    assert s["parameters"] == {"set": "prior", "level": "prior"} and "uncertainty" not in s
    crs = pd.read_csv(out / "crs_by_dose.csv")
    assert not any(c.endswith(("_p05", "_p95")) for c in crs.columns)


def test_single_patient_states_the_calibrated_set(cal_env, tmp_path):
    r = runner.invoke(app, ["simulate", "--drug", "teclistamab", "--days", "7", "--out", str(tmp_path / "one")])
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("parameters:"))
    assert line.startswith("parameters: calibrated (") and str(cal_env[1]) in line


@pytest.fixture
def uncertain(cal_env, tmp_path):
    out = tmp_path / "u"
    r = runner.invoke(app, [*POP, "--uncertainty", "6", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return cal_env[0], out, r.output


def test_uncertainty_columns_next_to_each_percentage(uncertain):
    fit, out, text = uncertain
    crs = pd.read_csv(out / "crs_by_dose.csv")
    cols = list(crs.columns)
    for c in PCT_COLUMNS:
        i = cols.index(c)
        assert cols[i + 1: i + 3] == [f"{c}_p05", f"{c}_p95"], cols
        lo, val, hi = crs[f"{c}_p05"], crs[c], crs[f"{c}_p95"]
        assert (lo <= hi + 1e-12).all()
        width = hi - lo
        assert ((val >= lo - 0.5 * width - 1.0) & (val <= hi + 0.5 * width + 1.0)).all(), crs[[c, f"{c}_p05",
                                                                                             f"{c}_p95"]]
    assert (crs.crs_any_pct_p95 - crs.crs_any_pct_p05 > 0).any()  # the draws do move the incidence
    s = json.loads((out / "summary.json").read_text())
    assert s["parameters"]["set"] == "calibrated" and s["parameters"]["level"] == "drug"
    for k, v in fit.values["teclistamab"].items():
        assert s["parameters"]["values"][k] == pytest.approx(v, rel=1e-5)
    u = s["uncertainty"]
    assert u["draws"] == 6 and u["draw_seed"] == 3 and "5th-95th" in u["interval"]
    assert u["any_crs_pct_p05"]["any"] <= u["any_crs_pct_p95"]["any"]
    lines = text.splitlines()
    assert next(ln for ln in lines if ln.startswith("parameters:")).startswith("parameters: calibrated (")
    head = next(ln for ln in lines if ln.startswith("dose"))
    assert "CRS any % (5-95%)" in head
    assert any(ln.startswith("intervals: 5th-95th percentiles over 6 parameter sets") for ln in lines)


def test_param_pins_every_draw_and_the_patients_are_common(cal_env, tmp_path):
    """With every calibrated parameter pinned by --param, the K draws are the same trial: the intervals collapse
    onto the value, which equals a prior run with the same --param values (same patients, --param wins)."""
    a, b = tmp_path / "pinned", tmp_path / "prior"
    r = runner.invoke(app, [*POP, *PINNED, "--uncertainty", "2", "--out", str(a)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*POP, *PINNED, "--parameters", "prior", "--out", str(b)])
    assert r.exit_code == 0, r.output
    ca, cb = pd.read_csv(a / "crs_by_dose.csv"), pd.read_csv(b / "crs_by_dose.csv")
    for c in PCT_COLUMNS:
        np.testing.assert_allclose(ca[f"{c}_p05"], ca[c], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ca[f"{c}_p95"], ca[c], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ca[c], cb[c], rtol=1e-9, atol=1e-12)
