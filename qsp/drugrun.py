"""Simulate a drug from its model card: time course, per-dose summary and plot (``qsp simulate --drug``).

Premedication ``label``: dexamethasone 16 mg (the teclistamab/talquetamab/elranatamab label dose;
other labels give 8-20 mg) 1 h before every dose up to and including the first treatment dose
(the first dose at the regimen's highest amount), on route ``premed_dex``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .cards import DrugCard
from .errors import InputError
from .regimen import Dose, Regimen
from .simulate import SimulationResult, simulate
from .units import convert_dose

PREMED_OPTIONS = ("none", "label")
DEX_MG = 16.0
DEX_LEAD_DAY = 1.0 / 24.0
TIMECOURSE_COLUMNS = {
    "conc_ug_per_ml": "conc_ug_per_ml", "il6_pg_per_ml": "il6_pg_per_ml",
    "blood_t_cells_per_ul": "blood_t_cells_per_ul", "activated_t_fraction": "activated_t_fraction",
    "trimers_per_target_cell": "trimers_per_target_cell", "trimers_per_t_cell": "trimers_per_t_cell",
    "free_drug_nM": "free_drug_nM", "tumour_cells": "tumour_cells_per_ul",
    "normal_target_cells": "normal_target_cells_per_ul", "ada_titre": "ada_titre", "cl_factor": "cl_factor",
}


def drug_doses(regimen: Regimen) -> list[Dose]:
    """The regimen's drug doses (premedication excluded), repeats expanded, in time order."""
    return [d for d in regimen.expanded().doses if d.route != "premed_dex"]


def with_premedication(regimen: Regimen, premed: str) -> Regimen:
    """Add label premedication (dexamethasone) to a regimen; ``premed`` is ``none`` or ``label``."""
    if premed not in PREMED_OPTIONS:
        raise InputError(f"unknown premedication {premed!r}; allowed: {', '.join(PREMED_OPTIONS)}", field="premed")
    if premed == "none":
        return regimen
    doses = drug_doses(regimen.in_unit("day"))
    if not doses:
        return regimen
    top = max(d.amount for d in doses)
    pre = []
    for d in doses:
        pre.append(Dose(d.time - DEX_LEAD_DAY, DEX_MG, "mg", "premed_dex", label="dexamethasone premedication"))
        if d.amount >= top:
            break
    return regimen.in_unit("day") + Regimen(tuple(pre), "day")


@dataclass
class DrugRun:
    card: DrugCard
    regimen: Regimen
    result: SimulationResult
    timecourse: pd.DataFrame
    doses: pd.DataFrame


def run_drug(card: DrugCard, regimen: Regimen, *, days: float = 35.0, premed: str = "none",
             steps_per_day: int = 48, params: dict | None = None, binding: str = "qe") -> DrugRun:
    """Simulate ``regimen`` (day 1 = first dose) for ``days`` days with the card's typical patient."""
    if not (isinstance(days, (int, float)) and days > 0):
        raise InputError(f"days must be a positive number, got {days!r}", field="days")
    reg = with_premedication(regimen, premed)
    model = card.model(binding=binding)
    ts = np.linspace(0.0, float(days), int(round(days * steps_per_day)) + 1)
    res = simulate(model, reg, ts, params, covariates=card.covariates(),
                   solver="tsit5" if binding == "qe" else "kvaerno5")
    if int(res.status) != 0:
        raise InputError(f"the solver failed for {card.name} (status {int(res.status)})", field="regimen")
    tc = pd.DataFrame({"time_day": ts + 1.0})
    for k, col in TIMECOURSE_COLUMNS.items():
        tc[col] = res.outputs[k]
    return DrugRun(card, reg, res, tc, dose_table(card, reg, res, ts))


def dose_table(card: DrugCard, reg: Regimen, res: SimulationResult, ts) -> pd.DataFrame:
    """One row per drug dose in the horizon: day, amount, route, Cmax and IL-6 peak after it."""
    doses = [d for d in drug_doses(reg.in_unit("day")) if d.time <= ts[-1]]
    cov = card.covariates()
    rows = []
    conc, il6 = res.outputs["conc_ug_per_ml"], res.outputs["il6_pg_per_ml"]
    for i, d in enumerate(doses):
        t_next = doses[i + 1].time if i + 1 < len(doses) else ts[-1] + 1e-9
        sel = (ts >= d.time) & (ts < t_next) if t_next > d.time else (ts >= d.time) & (ts <= d.time)
        if not sel.any():
            continue
        j = int(np.argmax(il6[sel]))
        dur = None if d.duration is None else d.duration
        mg = convert_dose(d.amount, d.unit, "mg", cov, duration_day=dur, mw_g_per_mol=card.mw_g_per_mol)
        rows.append({"dose_no": i + 1, "day": d.time + 1.0, "dose": d.amount, "unit": d.unit, "amount_mg": mg,
                     "route": d.route, "cmax_ug_per_ml": float(conc[sel].max()),
                     "il6_peak_pg_per_ml": float(il6[sel][j]),
                     "il6_peak_h_after_dose": float((ts[sel][j] - d.time) * 24.0)})
    return pd.DataFrame(rows)


def plot_drug_run(run: DrugRun, path) -> None:
    """``timecourse.png``: PK, IL-6, blood T cells and target cells with dose markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tc = run.timecourse
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [("conc_ug_per_ml", "drug (ug/mL)", True), ("il6_pg_per_ml", "IL-6 (pg/mL)", True),
              ("blood_t_cells_per_ul", "blood T cells (/uL)", False), (None, "target cells (/uL)", True)]
    dose_days = [d.time + 1.0 for d in drug_doses(run.regimen.in_unit("day"))]
    for ax, (col, label, logy) in zip(axes.ravel(), panels):
        if col is None:
            ax.plot(tc.time_day, tc.tumour_cells_per_ul, label="tumour")
            ax.plot(tc.time_day, tc.normal_target_cells_per_ul, label="normal target cells")
            ax.legend(fontsize=8)
        else:
            ax.plot(tc.time_day, tc[col], color="C0")
        if logy:
            ax.set_yscale("log")
        for dd in dose_days:
            if dd <= tc.time_day.iloc[-1]:
                ax.axvline(dd, color="0.6", lw=0.8, ls="--")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("day (day 1 = first dose; dashed: doses)")
    fig.suptitle(f"{run.card.name}: {run.regimen.name or 'regimen'}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
