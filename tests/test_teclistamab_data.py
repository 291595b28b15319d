"""Teclistamab prior sanity vs digitized MajesTEC-1 data (not a fit: the calibration layer fits these data)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qsp
from qsp.cards import load_card
from qsp.regimen import Dose, Regimen
from qsp.trial import run_card_trial

DATA = Path(__file__).resolve().parents[1] / "data" / "digitized"
# Doses as in the MajesTEC-1 figures: 0.06 mg/kg at 0 h, 0.3 mg/kg at ~72 h, 1.5 mg/kg at 168 h, then weekly.
REG = Regimen((Dose(0, 0.06, "mg/kg", "SC"), Dose(3, 0.3, "mg/kg", "SC"), Dose(7, 1.5, "mg/kg", "SC", ii=7, addl=5)),
              "day")
TS = np.linspace(0, 42, 42 * 48 + 1)


def _sim():
    card = load_card("teclistamab")
    return qsp.simulate(card.model(), REG, TS, covariates=card.covariates())


def test_mean_pk_within_two_fold_at_80_percent_of_points():
    r = _sim()
    pk = pd.read_csv(DATA / "teclistamab_sc_pk_mean.csv")
    day = 7 * pk.time_weeks.to_numpy() + 7  # week 0 = first 1.5 mg/kg dose = day 7 after step-up dose 1
    ratio = np.interp(day, TS, r["conc_ug_per_ml"]) / pk.conc_ugmL.to_numpy()
    assert np.mean((ratio > 0.5) & (ratio < 2.0)) >= 0.8


@pytest.mark.xfail(strict=True, reason="prior mechanism: step-up dose 2 (0.3 mg/kg) releases as much IL-6 as the first "
                   "treatment dose, so the window after 168 h peaks at its start; the calibration layer fits these data")
def test_il6_peaks_within_a_day_of_data():
    """The digitized MajesTEC-1 IL-6 is a mean over patients who had CRS (data/digitized README): compare its
    peak times with the mean over virtual patients weighted by their probability of any CRS (the data's
    selection rule), not with the typical patient (whose response differs from that of the CRS patients)."""
    tr = run_card_trial(load_card("teclistamab"), REG, patients=60, seed=1, days=14, outputs_per_day=24,
                        out_names=("il6_pg_per_ml",))
    p_any = np.nan_to_num(tr.crs["p_any"][tr.ok], nan=0.0)
    w = 1.0 - np.prod(1.0 - p_any, axis=1)  # P(at least one CRS event)
    mean_crs = (w[:, None] * tr.outputs["il6_pg_per_ml"][tr.ok]).sum(0) / w.sum()
    il = pd.read_csv(DATA / "teclistamab_il6_mean_majestec1.csv")
    th = tr.times * 24
    for a, b in [(0, 72), (72, 168), (168, 336)]:  # after step-up 1, step-up 2, first treatment dose
        s = (il.time_hr >= a) & (il.time_hr < b)
        t_data = float(il.time_hr[s][il.IL6_ngL[s].idxmax()])
        sm = (th >= a) & (th < b)
        t_model = float(th[sm][np.argmax(mean_crs[sm])])
        assert abs(t_model - t_data) <= 24.0, (a, t_model, t_data)