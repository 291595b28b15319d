"""The published behaviours of the calibration issue, checked with the shipped calibrated parameter set (the
defaults users get): skipped when no calibrated file ships. The thresholds are the issue's (IL-6 peak within
1.5-fold and 1 day) or qualitative (falls, lower, deplete); they were written before the fit they check.

Sources: MajesTEC-1 mean IL-6 over patients with CRS (Willemin et al. CPT:PSP 2024, data/digitized); label
per-dose CRS (Tecvayli US PI 5.1; elranatamab, Niesvizky et al. ASH 2023); label re-step-up rules after long
delays (Tecvayli US PI 2.4); CD20xCD3 B-cell depletion in cycle 1.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import qsp
from qsp.cards import load_card
from qsp.premedication import with_premedication
from qsp.regimen import Dose, Regimen
from qsp.trial import run_card_trial

from conftest import ROOT, SHIPPED_CALIBRATED

DATA = ROOT / "data" / "digitized"
TEC_REG = Regimen((Dose(0, 0.06, "mg/kg", "SC"), Dose(3, 0.3, "mg/kg", "SC"),
                   Dose(7, 1.5, "mg/kg", "SC", ii=7, addl=3)), "day")


def _reg(times, amounts, unit="mg/kg", route="SC"):
    return Regimen(tuple(Dose(t, a, unit, route) for t, a in zip(times, amounts)), "day")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """The shipped calibrated file for this module (a module-scoped stand-in for ``shipped_calibrated``)."""
    import os


    if not SHIPPED_CALIBRATED.is_file():
        pytest.skip("no calibrated parameter file ships yet")
    old = os.environ.get("QSP_CALIBRATED")
    os.environ["QSP_CALIBRATED"] = str(SHIPPED_CALIBRATED)
    yield SHIPPED_CALIBRATED
    if old is None:
        os.environ.pop("QSP_CALIBRATED", None)
    else:
        os.environ["QSP_CALIBRATED"] = old


@pytest.fixture(scope="module")
def tec_trial(calibrated):
    return run_card_trial(load_card("teclistamab"), TEC_REG, patients=100, seed=1, days=21, outputs_per_day=24,
                          out_names=("il6_pg_per_ml",), parameters="calibrated")


@pytest.mark.xfail(strict=True, reason="the shipped joint fit (calibration/fits/map, refit 2026-12-06 with the corrected "
                   "blinatumomab individual-peak likelihood): the CRS-weighted mean IL-6 after the first treatment dose "
                   "peaks at 6.9 pg/mL at the MAP on the fit's patients (6.4 median over draws) vs the published 21.25; "
                   "2 of 4 MajesTEC-1 IL-6 peaks within 1.5-fold and 1 day at the MAP; issue 9 blocked: at the stated "
                   "errors the data prefer the regime that misses it (calibration/README.md, \"The price of the peaks "
                   "with the correlation\")")
def test_majestec_il6_mean_over_crs_patients_peaks_as_published(tec_trial):
    """After the first treatment dose the CRS-weighted mean IL-6 peaks within 1.5-fold of 21 pg/mL and within a
    day of the data's peak (48 h after the dose); it is back below 2x baseline before the next dose."""
    tr = tec_trial
    w = 1.0 - np.prod(1.0 - np.nan_to_num(tr.crs["p_any"][tr.ok], nan=0.0), axis=1)
    mean = (w[:, None] * tr.outputs["il6_pg_per_ml"][tr.ok]).sum(0) / w.sum()
    il = pd.read_csv(DATA / "teclistamab_il6_mean_majestec1.csv")
    th = tr.times * 24.0
    s = (il.time_hr >= 168) & (il.time_hr < 336)
    obs, t_obs = float(il.IL6_ngL[s].max()), float(il.time_hr[s][il.IL6_ngL[s].idxmax()])
    sm = (th >= 168) & (th < 336)
    pk, t_pk = float(mean[sm].max()), float(th[sm][np.argmax(mean[sm])])
    assert obs / 1.5 <= pk <= obs * 1.5, (pk, obs)
    assert abs(t_pk - t_obs) <= 24.0, (t_pk, t_obs)
    assert np.interp(335.0, th, mean) < 2.0 * mean[0]


def _per_dose(name):
    tr = run_card_trial(load_card(name), patients=100, seed=2, days=14, parameters="calibrated")
    return tr.crs_by_dose().crs_any_pct.to_numpy()


@pytest.mark.parametrize("name", ["teclistamab", "elranatamab"])
def test_per_dose_crs_falls_over_the_step_ups(calibrated, name):
    pct = _per_dose(name)
    assert pct[0] > pct[2] and pct[1] > pct[2]  # the treatment dose after the steps: less CRS than the steps


@pytest.mark.parametrize("name", ["teclistamab", "elranatamab"])  # elranatamab: met since the tissue-pool refit
def test_a_repeated_treatment_dose_gives_less_crs(calibrated, name):
    pct = _per_dose(name)
    assert pct[3] < 0.5 * pct[2]  # a repeated treatment dose: primed, less again


def test_sc_first_dose_gives_lower_cmax_il6_and_crs_than_iv(calibrated):
    card = load_card("teclistamab")
    runs = {route: run_card_trial(card, _reg([0], [0.3], route=route), patients=60, seed=3, days=7,
                                  outputs_per_day=24, out_names=("conc_ug_per_ml", "il6_pg_per_ml"),
                                  parameters="calibrated") for route in ("SC", "IV_bolus")}
    sc, iv = runs["SC"], runs["IV_bolus"]
    assert np.median(sc.outputs["conc_ug_per_ml"].max(1)) < np.median(iv.outputs["conc_ug_per_ml"].max(1))
    assert np.median(sc.crs["il6_peak"][:, 0]) < np.median(iv.crs["il6_peak"][:, 0])
    assert sc.crs_by_dose().crs_any_pct.iloc[0] < iv.crs_by_dose().crs_any_pct.iloc[0]


def test_priming_protects_for_weeks_and_wears_off_after_a_long_pause(calibrated):
    """Label step-up, then a treatment dose 2 weeks after the last one vs after a 12-week pause (the labels
    restart the step-up after long delays): the late dose carries more CRS risk than the early one."""
    card = load_card("teclistamab")
    pct = {}
    for gap in (14, 84):
        tr = run_card_trial(card, _reg([0, 3, 7, 7 + gap], [0.06, 0.3, 1.5, 1.5]), patients=60, seed=4,
                            days=7 + gap + 1, parameters="calibrated")
        pct[gap] = tr.crs_by_dose().crs_any_pct.to_numpy()
    assert pct[14][3] < pct[14][2]  # two weeks on: primed
    assert pct[84][3] > pct[14][3]  # after 12 weeks the risk has come back


@pytest.mark.parametrize("name", ["glofitamab", "epcoritamab", pytest.param("mosunetuzumab", marks=pytest.mark.xfail(
    strict=True, reason="mosunetuzumab's blood B cells are at 19% of baseline 3 weeks after the first dose and its "
    "tumour at 0.496 of baseline on day 42 (shipped posterior, typical patient; under the 0.5 bar). Cause: its CRS data (GO29781, 39% "
    "any grade) hold its cross-linking gain CHI at 1.5 (glofitamab 2.5, epcoritamab 47), so the 1 and 2 mg step-up "
    "doses engage too few T cells to kill (B cells 97% of baseline on day 14); depletion starts only after the 60 mg "
    "dose on day 14 (8% on day 28). No B-cell target is in data/targets/ to weigh against the CRS data"))])
def test_cd20_drugs_deplete_b_cells_and_tumour_falls(calibrated, name):
    card = load_card(name)
    m = card.model()
    ts = np.linspace(0, 42, 42 * 4 + 1)
    r = qsp.simulate(m, with_premedication(card.regimen(until_day=42), "label"), ts,
                     card.parameter_set("calibrated").model_values,
                     covariates=card.covariates())
    b, tu = r["normal_target_cells"], r["tumour_cells"]
    t0 = min(d.time for d in card.regimen().expanded().doses)
    b21, tu42 = float(np.interp(t0 + 21, ts, b) / b[0]), float(tu[-1] / tu[0])
    assert b21 < 0.1, f"{name}: blood B cells {b21:.3f} of baseline 21 days after the first dose (tumour on day 42: {tu42:.3f})"
    assert tu42 < 0.5, f"{name}: tumour {tu42:.3f} of baseline on day 42"
