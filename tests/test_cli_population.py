"""`qsp simulate --drug NAME --patients N`: a virtual trial from the command line (small settings).

All runs use the same population size and horizon, so the trial function compiles once for the file.
"""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qsp.cli import app
from qsp.trial_report import CRS_COLUMNS

runner = CliRunner()
N, DAYS = 8, "14"
FILES = ("crs_by_dose.csv", "population_timecourse.csv", "patients.csv", "population.png", "summary.json")


def _run(out, *extra, seed="3"):
    return runner.invoke(app, ["simulate", "--drug", "teclistamab", "--patients", str(N), "--seed", seed,
                               "--days", DAYS, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    out = tmp_path_factory.mktemp("pop") / "a"
    r = _run(out)
    assert r.exit_code == 0, r.output
    return out, r.output


def test_population_run_writes_files_with_required_columns(first):
    out, _ = first
    for f in FILES:
        assert (out / f).stat().st_size > 0, f
    crs = pd.read_csv(out / "crs_by_dose.csv")
    assert tuple(crs.columns[:7]) == CRS_COLUMNS
    assert {"unit", "route", "il6_peak_median_pg_per_ml", "n_evaluable"} <= set(crs.columns[7:])
    assert list(crs.dose_no) == [1, 2, 3, 4] and list(crs.day) == [1.0, 4.0, 7.0, 14.0]
    assert ((crs.crs_any_pct >= crs.crs_g2plus_pct) & (crs.crs_g2plus_pct >= crs.crs_g3plus_pct)).all()
    assert (crs.n_evaluable == N).all()

    bands = pd.read_csv(out / "population_timecourse.csv")
    assert bands.time_day.iloc[0] == 1.0
    for o in ("conc_ug_per_ml", "il6_pg_per_ml", "blood_t_cells_per_ul", "tumour_cells"):
        for q in ("p05", "median", "p95"):
            assert f"{o}_{q}" in bands.columns

    pts = pd.read_csv(out / "patients.csv")
    assert len(pts) == N * 4
    assert {"id", "dose_no", "weight_kg", "premed", "eta_crs", "status", "p_any", "p_g2plus", "p_g3plus",
            "onset_h", "il6_peak"} <= set(pts.columns)
    assert (pts.premed == 1).all()  # population mode: label premedication by default

    s = json.loads((out / "summary.json").read_text())
    assert s["drug"] == "teclistamab" and s["regimen"] == "label_weekly"
    assert (s["patients"], s["seed"], s["days"], s["premed"], s["n_failed"]) == (N, 3, 14.0, "label", 0)
    assert 0 <= s["any_crs_pct"]["any"] <= 100 and "qsp_version" in s
    assert (out / "population.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_printed_table(first):
    _, text = first
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("dose"))
    assert "CRS any %" in lines[head] and "grade>=2 %" in lines[head] and "median onset h" in lines[head]
    assert lines[head + 1].split()[:3] == ["1", "1", "0.06"] and "mg/kg" in lines[head + 1]
    assert len([ln for ln in lines[head + 1: head + 5] if ln.split()[0].isdigit()]) == 4
    assert any(ln.startswith("overall, at least one CRS event") for ln in lines)
    assert f"failed solves: 0 of {N} patients" in text


def test_same_seed_identical_files_other_seed_differs(first, tmp_path):
    out_a, _ = first
    r = _run(tmp_path / "b")
    assert r.exit_code == 0, r.output
    for f in FILES:
        assert (out_a / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    r = _run(tmp_path / "c", seed="4")
    assert r.exit_code == 0, r.output
    assert (out_a / "patients.csv").read_bytes() != (tmp_path / "c" / "patients.csv").read_bytes()


@pytest.mark.parametrize("args, option", [
    (["--drug", "teclistamab", "--patients", "0"], "--patients"),
    (["--drug", "teclistamab", "--patients", "-3"], "--patients"),
    (["--drug", "teclistamab", "--patients", "many"], "--patients"),
    (["--drug", "teclistamab", "--patients", "8", "--seed", "-1"], "--seed"),
    (["--drug", "nodrugmab", "--patients", "8"], "--drug"),
    (["--drug", "teclistamab", "--patients", "8", "--outputs-per-day", "0"], "--outputs-per-day"),
    (["--drug", "teclistamab", "--patients", "8", "--premed", "maybe"], "--premed"),
    (["--drug", "teclistamab", "--seed", "1"], "--seed"),
    (["--model", "pk-1cmt", "--patients", "8"], "--patients"),
])
def test_bad_inputs_exit_2_one_line_naming_the_option(tmp_path, args, option):
    out = tmp_path / "never"
    r = runner.invoke(app, ["simulate", *args, "--out", str(out)])
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert text.startswith("error:") and len(text.splitlines()) == 1, text
    assert option in text, text
    assert not out.exists() and not list(tmp_path.iterdir())


def test_growing_the_cohort_keeps_the_first_patients(first, tmp_path):
    """Same seed, N = 8 then N = 13: the first 8 patients' covariates are byte-identical in patients.csv, and
    their simulated per-dose CRS quantities agree (the solve of a patient does not depend on its batch)."""
    out, _ = first
    big = tmp_path / "big"
    r = runner.invoke(app, ["simulate", "--drug", "teclistamab", "--patients", "13", "--seed", "3", "--days", DAYS,
                            "--out", str(big)])
    assert r.exit_code == 0, r.output
    a = pd.read_csv(out / "patients.csv", dtype=str)
    b = pd.read_csv(big / "patients.csv", dtype=str)
    b = b[b.id.astype(int) < N].reset_index(drop=True)
    cov = ["id", "dose_no", "weight_kg", "bsa_m2", "T0", "TUMOR0", "prior_tcr", "premed", "ada_pos", "eta_crs"]
    assert a[cov].equals(b[cov])
    for k in ("il6_peak", "p_any", "p_g2plus"):
        np.testing.assert_allclose(a[k].astype(float), b[k].astype(float), rtol=1e-6)
