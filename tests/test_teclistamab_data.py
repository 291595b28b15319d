"""Teclistamab prior sanity vs digitized MajesTEC-1 data (not a fit: calibration comes later)."""
from pathlib import Path

import numpy as np
import pandas as pd

import qsp
from qsp.cards import load_card
from qsp.regimen import Dose, Regimen

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


def test_il6_peaks_within_a_day_of_data():
    r = _sim()
    il = pd.read_csv(DATA / "teclistamab_il6_mean_majestec1.csv")
    th = TS * 24
    for a, b in [(0, 72), (72, 168), (168, 336)]:  # after step-up 1, step-up 2, first treatment dose
        s = (il.time_hr >= a) & (il.time_hr < b)
        t_data = float(il.time_hr[s][il.IL6_ngL[s].idxmax()])
        sm = (th >= a) & (th < b)
        t_model = float(th[sm][np.argmax(r["il6_pg_per_ml"][sm])])
        assert abs(t_model - t_data) <= 24.0, (a, t_model, t_data)
