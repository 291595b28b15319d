"""`qsp optimize`: bad arguments exit 2 with one line and nothing written; a tiny search writes every output and
its regimen files load in `qsp simulate` (slow)."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest


def _qsp(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "qsp", *args], capture_output=True, text=True, timeout=1800, cwd=cwd,
                          env=env)


@pytest.mark.parametrize("args, field", [
    (["--objective", "pk_auc"], "--objective"),
    (["--max-steps", "9"], "--max-steps"),
    (["--reach-by-day", "-2"], "--reach-by-day"),
    (["--min-exposure", "1.5"], "--min-exposure"),
    (["--routes", "SC,IM"], "--routes"),
    (["--intervals", "2,x"], "--intervals"),
    (["--uncertainty", "1"], "--uncertainty"),
    (["--patients", "3"], "--patients"),
    (["--parameters", "posterior"], "--parameters"),
    (["--subgroups", "elderly"], "--subgroups"),
    (["--search-draws", "1"], "--search-draws"),
    (["--max-inpatient-stays", "-1"], "--max-inpatient-stays"),
])
def test_bad_arguments_exit_2_with_one_line_and_nothing_written(tmp_path, args, field):
    out = tmp_path / "opt"
    r = _qsp("optimize", "--drug", "teclistamab", *args, "--out", str(out))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and field in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not out.exists() and list(tmp_path.iterdir()) == []


def test_draws_without_a_calibrated_fit_are_refused(tmp_path):
    """--uncertainty / --search-draws draw from the calibrated fit: with none in force (the tests' default,
    QSP_CALIBRATED=none) or with --parameters prior, one line naming the flag, before any work."""
    for args, field in ((["--uncertainty", "4"], "--uncertainty"), (["--search-draws", "2"], "--search-draws"),
                        (["--parameters", "prior", "--uncertainty", "4"], "--uncertainty")):
        r = _qsp("optimize", "--drug", "teclistamab", *args, "--out", str(tmp_path / "o"))
        assert r.returncode == 2 and r.stderr.startswith("error:") and field in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_unknown_drug_is_refused(tmp_path):
    r = _qsp("optimize", "--drug", "nodrug", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_tiny_search_writes_the_outputs_and_regimens_round_trip(tmp_path, shipped_calibrated):
    out = tmp_path / "opt"
    r = _qsp("optimize", "--drug", "teclistamab", "--max-steps", "1", "--search-patients", "8", "--patients", "16",
             "--intervals", "2,3", "--subgroups", "prior_tcr", "--max-inpatient-stays", "1", "--uncertainty", "2",
             "--progress", "--out", str(out), env={**os.environ, "QSP_CALIBRATED": str(shipped_calibrated)})
    assert r.returncode == 0, r.stderr[-3000:]
    # --progress: the bars run to their ends (2 structures: 0 and 1 step; 2 draws), next to the status lines
    assert "structures: 100%" in r.stderr and "2/2" in r.stderr and "re-simulating over 2 draws: 100%" in r.stderr
    for f in ("pareto.csv", "label_comparison.csv", "monitoring_plan.csv", "restart_rules.csv", "stratified.csv",
              "pareto.png", "per_dose_crs.png", "bands.png"):
        assert (out / f).stat().st_size > 0, f
    tab = pd.read_csv(out / "pareto.csv")
    # the inpatient-stay constraint: no row meeting the constraints has more than one stay
    assert (tab[tab.meets_constraints].inpatient_days <= 2.0 + 1e-9).all()
    rules = pd.read_csv(out / "restart_rules.csv")
    assert set(rules.action) <= {"resume", "step_back", "restart"} and (rules.delay_from_days <=
                                                                       rules.delay_to_days).all()
    strat = pd.read_csv(out / "stratified.csv")
    assert list(strat.subgroup) == ["prior_tcr"] and (out / strat.regimen_file[0]).exists()
    assert tab.is_label.sum() == 1 and tab.on_front.any()
    # every regimen on the front meets the constraints, and none is dominated by another row on the front
    front = tab[tab.on_front]
    assert front.meets_constraints.all()
    keys = ["crs_g2_stepup_pct", "days_to_treatment_dose", "inpatient_days"]
    x = front[keys].to_numpy()
    for i in range(len(x)):
        assert not any((x[j] <= x[i]).all() and (x[j] < x[i]).any() for j in range(len(x)) if j != i)
    assert (tab.days_to_treatment_dose <= 6.0 + 1e-9).all()  # reach by the label's day (default)
    for f in list(tab.regimen_file) + list(strat.regimen_file):
        s = _qsp("simulate", "--drug", "teclistamab", "--regimen", str(out / f), "--out", str(tmp_path / "sim"))
        assert s.returncode == 0, s.stderr[-2000:]
