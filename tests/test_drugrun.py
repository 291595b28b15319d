"""Per-dose tables of a drug run are computed within each dose's own window (never from a point before the
dose), doses beyond the horizon are reported, and the IL-6 peak is the peak the dose causes."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from qsp.cards import load_card
from qsp.cli import app
from qsp.drugrun import _il6_peak, run_drug, split_at_horizon
from qsp.regimen import Dose, Regimen

runner = CliRunner()


@pytest.fixture(scope="module")
def tec():
    return load_card("teclistamab")


def test_il6_peak_of_a_rise():
    t = np.linspace(0, 2, 201)
    y = 3 + 10 * t * np.exp(-2 * t)
    peak, tp = _il6_peak(t, y)
    assert tp == pytest.approx(0.5, abs=0.01) and peak == pytest.approx(y.max())


def test_il6_falling_only_has_no_peak_time():
    t = np.linspace(0, 2, 201)
    peak, tp = _il6_peak(t, 3 + 10 * np.exp(-t))
    assert np.isnan(peak) and np.isnan(tp)


def test_il6_falling_then_rising_peaks_after_the_trough():
    """IL-6 still falling from the previous dose at the dose time: the peak is the later rise, not t = 0."""
    t = np.linspace(0, 3, 301)
    y = 2 + 20 * np.exp(-3 * t) + 6 * np.exp(-((t - 2.0) ** 2) / 0.1)
    peak, tp = _il6_peak(t, y)
    assert tp == pytest.approx(2.0, abs=0.02) and peak < y[0]


def test_split_at_horizon_lists_later_doses():
    reg = Regimen((Dose(0, 1, "mg", "SC"), Dose(5, 1, "mg", "SC", ii=7, addl=3)), "day")
    inside, beyond = split_at_horizon(reg, 14.0)
    assert [d.time for d in inside.doses] == [0, 5, 12]
    assert [d.time for d in beyond] == [19, 26]


def test_dose_at_the_end_of_the_horizon_reports_its_own_window(tec):
    """A dose one day before the horizon's end: Cmax comes after it (SC absorption), not the trough before it."""
    reg = Regimen((Dose(0, 0.3, "mg/kg", "SC"), Dose(13, 1.5, "mg/kg", "SC")), "day")
    run = run_drug(tec, reg, days=14)
    d = run.doses
    assert list(d.day) == [1.0, 14.0]
    assert bool(d.window_to_next_dose[0]) and not bool(d.window_to_next_dose[1])
    assert d.window_end_day[1] == 15.0 and np.isnan(d.ctrough_ug_per_ml[1])
    trough_before = d.ctrough_ug_per_ml[0]
    assert d.cmax_ug_per_ml[1] > 1.5 * trough_before and d.tmax_h[1] > 0
    assert 0 < d.auc_ug_day_per_ml[1] <= d.cmax_ug_per_ml[1] * 1.0 + 1e-12


def test_window_metrics_against_the_time_course(tec):
    run = run_drug(tec, tec.regimen(until_day=14), days=14)
    tc, d = run.timecourse, run.doses
    for r in d.itertuples():
        sel = (tc.time_day >= r.day) & (tc.time_day <= r.window_end_day)
        assert r.cmax_ug_per_ml >= tc.conc_ug_per_ml[sel].max() - 1e-12  # the fine grid sees at least the coarse
        if r.window_to_next_dose:
            nxt = tc.conc_ug_per_ml[np.isclose(tc.time_day, r.window_end_day)]
            assert r.ctrough_ug_per_ml == pytest.approx(float(nxt.iloc[0]), rel=1e-3)


def test_cli_warns_about_label_doses_beyond_days(tmp_path):
    r = runner.invoke(app, ["simulate", "--drug", "teclistamab", "--days", "5", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "warning: 2 dose(s) of the regimen after day 5 are not simulated (days 7, 14)" in r.stderr


def test_outputs_are_world_readable(tmp_path):
    out = tmp_path / "o"
    r = runner.invoke(app, ["simulate", "--drug", "teclistamab", "--days", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.stat().st_mode & 0o055 == 0o055  # group/other can list the folder (umask 022)
    for f in out.iterdir():
        assert f.stat().st_mode & 0o044 == 0o044
    import re

    text = (out / "doses.csv").read_text()
    numbers = re.findall(r"(?<![\w.])-?\d+\.\d+(?:e[-+]\d+)?", text)
    assert numbers and all(len(re.sub(r"e.*|[-.]", "", x).lstrip("0")) <= 6 for x in numbers)  # 6 significant digits
