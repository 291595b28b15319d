"""Overlay of the teclistamab card's prior predictions on digitized MajesTEC-1 mean PK and IL-6.

Run: python docs/teclistamab_overlay.py  -> docs/teclistamab_overlay.png (and prints the checks).
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import qsp
from qsp.cards import load_card
from qsp.regimen import Dose, Regimen

ROOT = Path(__file__).resolve().parents[1]
reg = Regimen((Dose(0, 0.06, "mg/kg", "SC"), Dose(3, 0.3, "mg/kg", "SC"), Dose(7, 1.5, "mg/kg", "SC", ii=7, addl=5)),
              "day")
ts = np.linspace(0, 42, 42 * 48 + 1)
card = load_card("teclistamab")
r = qsp.simulate(card.model(), reg, ts, covariates=card.covariates())
pk = pd.read_csv(ROOT / "data/digitized/teclistamab_sc_pk_mean.csv")
il = pd.read_csv(ROOT / "data/digitized/teclistamab_il6_mean_majestec1.csv")
pk_day = 7 * pk.time_weeks + 7
ratio = np.interp(pk_day, ts, r["conc_ug_per_ml"]) / pk.conc_ugmL
print(f"PK points within 2-fold: {np.mean((ratio > 0.5) & (ratio < 2)):.0%} of {len(ratio)}")
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
ax[0].plot(ts, r["conc_ug_per_ml"], label="model (card prior)")
ax[0].plot(pk_day, pk.conc_ugmL, "o", label="MajesTEC-1 mean (digitized)")
ax[0].set_yscale("log"); ax[0].set_xlabel("day after step-up dose 1"); ax[0].set_ylabel("teclistamab (ug/mL)")
ax[1].plot(ts * 24, r["il6_pg_per_ml"], label="model (card prior)")
ax[1].plot(il.time_hr, il.IL6_ngL, "o", label="MajesTEC-1 mean (Willemin 2024)")
ax[1].set_xlim(0, 520); ax[1].set_xlabel("hours after step-up dose 1"); ax[1].set_ylabel("IL-6 (pg/mL)")
for a in ax:
    a.legend(fontsize=8); a.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(ROOT / "docs/teclistamab_overlay.png", dpi=100)
