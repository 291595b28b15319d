"""Simulate a drug from its model card: time course, per-dose summary and plot (``qsp simulate --drug``).

Premedication (``none`` / ``label``) is the policy of :mod:`qsp.premedication`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .cards import DrugCard
from .errors import InputError
from .premedication import DEX_LEAD_DAY, DEX_MG, PREMED_OPTIONS, drug_doses, with_premedication  # noqa: F401
from .regimen import Dose, Regimen
from .simulate import SimulationResult, simulate
from .units import convert_dose

TIMECOURSE_COLUMNS = {
    "conc_ug_per_ml": "conc_ug_per_ml", "il6_pg_per_ml": "il6_pg_per_ml",
    "blood_t_cells_per_ul": "blood_t_cells_per_ul", "activated_t_fraction": "activated_t_fraction",
    "trimers_per_target_cell": "trimers_per_target_cell", "trimers_per_t_cell": "trimers_per_t_cell",
    "free_drug_nM": "free_drug_nM", "tumour_cells": "tumour_cells_per_ul",
    "normal_target_cells": "normal_target_cells_per_ul", "ada_titre": "ada_titre", "cl_factor": "cl_factor",
}


WINDOW_POINTS = 400  # fine grid per dose window for Cmax/Tmax/AUC/IL-6 peak


@dataclass
class DrugRun:
    card: DrugCard
    regimen: Regimen
    result: SimulationResult
    timecourse: pd.DataFrame
    doses: pd.DataFrame
    beyond_horizon: list[Dose] = field(default_factory=list)  # drug doses at or after the horizon (not simulated)
    parameter_set: object = None  # the qsp.paramsets.ParameterSet the run used


def split_at_horizon(regimen: Regimen, days: float) -> tuple[Regimen, list[Dose]]:
    """(doses before the horizon ``days`` — model time ``< days`` —, the drug doses at or after it)."""
    reg = regimen.in_unit("day").expanded()
    inside = tuple(d for d in reg.doses if d.time < days)
    beyond = [d for d in reg.doses if d.time >= days and d.route != "premed_dex"]
    return reg.with_doses(inside), beyond


def _dose_windows(doses: list[Dose], days: float) -> list[tuple[float, float, bool]]:
    """Per drug dose: (start, end, ends at the next dose); a window ends at the next dose or the horizon."""
    out = []
    for i, d in enumerate(doses):
        nxt = next((e.time for e in doses[i + 1:] if e.time > d.time), None)
        end = min(nxt, days) if nxt is not None else days
        out.append((d.time, end, nxt is not None and nxt <= days))
    return out


def _output_times(days: float, steps_per_day: int, windows):
    """The regular grid plus a fine grid per dose window (the dose time as a right limit, the window end as
    a left limit); returns (times, left flags, indices of the regular grid, per-window indices)."""
    grid = np.linspace(0.0, float(days), int(round(days * steps_per_day)) + 1)
    t_parts, l_parts, kinds = [grid], [np.zeros(grid.size, bool)], [np.full(grid.size, -1)]
    for k, (t0, t1, _) in enumerate(windows):
        w = np.linspace(t0, t1, WINDOW_POINTS + 1)
        left = np.zeros(w.size, bool)
        left[-1] = True  # the value just before the next dose (Ctrough), never the one after it
        t_parts.append(w)
        l_parts.append(left)
        kinds.append(np.full(w.size, k))
    t, lf, kind = np.concatenate(t_parts), np.concatenate(l_parts), np.concatenate(kinds)
    order = np.lexsort((~lf, t))  # at equal times the left limit first
    t, lf, kind = t[order], lf[order], kind[order]
    # a window's points: its fine grid plus the regular grid points inside it (never a point before the dose;
    # the regular grid's point at the next dose time is the value after that dose, so it is left out)
    idx = []
    for k, (t0, t1, _) in enumerate(windows):
        own = kind == k
        inside = (kind == -1) & (t > t0) & (t < t1)
        idx.append(np.flatnonzero(own | inside))
    return t, lf, np.flatnonzero(kind == -1), idx


def run_drug(card: DrugCard, regimen: Regimen, *, days: float = 35.0, premed: str = "none",
             steps_per_day: int = 48, params: dict | None = None, binding: str = "qe", solver: str | None = None,
             rtol: float = 1e-6, atol: float = 1e-9, max_steps: int = 4096, parameters=None) -> DrugRun:
    """Simulate ``regimen`` (day 1 = first dose) over ``days`` days with the card's typical patient.

    Drug doses at model time ``>= days`` (day ``>= days + 1``) are outside the horizon: not simulated,
    returned in :attr:`DrugRun.beyond_horizon` so that callers can report them.

    ``parameters``: the typical values laid over the card (:func:`qsp.paramsets.resolve_parameter_set`:
    ``None`` = calibrated when a calibrated file is available, else prior; ``"prior"``; ``"calibrated"``; a
    mapping); explicit ``params`` win. The set used is :attr:`DrugRun.parameter_set`.
    """
    from .paramsets import resolve_parameter_set

    if isinstance(days, bool) or not (isinstance(days, (int, float)) and np.isfinite(days) and days > 0):
        raise InputError(f"days must be a positive number, got {days!r}", field="days")
    days = float(days)
    inside, beyond = split_at_horizon(regimen, days)
    reg = with_premedication(inside, premed)
    doses = drug_doses(reg)
    if not doses:
        raise InputError(f"the regimen has no drug dose within the {days:g}-day horizon", field="regimen")
    windows = _dose_windows(doses, days)
    model = card.model(binding=binding)
    pset = resolve_parameter_set(card.name, model, parameters)
    # the typical patient: IIV SDs (OMEGA_<P>) of a calibrated set do not apply
    params = {**pset.model_values, **dict(params or {})} or None
    ts, left, grid, widx = _output_times(days, steps_per_day, windows)
    solver = solver or ("tsit5" if binding == "qe" else "kvaerno5")
    res = simulate(model, reg, ts, params, covariates=card.covariates(), times_left=left, solver=solver, rtol=rtol,
                   atol=atol, max_steps=max_steps)
    if int(res.status) != 0:
        from .simulate import STATUS_TEXT

        raise SolveFailed(f"the solver failed for {card.name}: "
                          f"{STATUS_TEXT.get(int(res.status), f'status {int(res.status)}')}")
    tc = pd.DataFrame({"time_day": ts[grid] + 1.0})
    for k, col in TIMECOURSE_COLUMNS.items():
        tc[col] = np.asarray(res.outputs[k])[grid]
    table = dose_table(card, doses, windows, ts, widx, res)
    return DrugRun(card, reg, res, tc, table, beyond, pset)


class SolveFailed(RuntimeError):
    """The ODE solver failed for a drug run (not a user mistake: reported with a non-zero exit)."""


def _il6_peak(t: np.ndarray, il6: np.ndarray, min_rise: float = 1e-3) -> tuple[float, float]:
    """The IL-6 peak caused by a dose: (peak value, its time); NaN, NaN when IL-6 does not rise in the window.

    The window starts at the dose; if IL-6 is still falling from an earlier dose, the maximum over the
    window is the carried-over value at the dose time and says nothing of this dose. So the peak is the
    largest value after the lowest point that precedes it, and it counts only if it rises above that
    point by more than ``min_rise`` (relative): a flat or falling IL-6 has no peak time.
    """
    run_min = np.minimum.accumulate(il6)
    rise = il6 - run_min
    k = int(np.argmax(rise))
    if not rise[k] > min_rise * max(float(il6[k]), 1e-300):
        return float("nan"), float("nan")
    k = k + int(np.argmax(il6[k:] * (run_min[k:] == run_min[k])))  # highest point before a new minimum
    return float(il6[k]), float(t[k])


def dose_table(card: DrugCard, doses: list[Dose], windows, ts, widx, res: SimulationResult) -> pd.DataFrame:
    """One row per drug dose inside the horizon, computed within the dose's own window on a fine grid.

    Columns: ``dose_no, day, dose, unit, route, infusion_h, amount_mg``; the window (``window_end_day``,
    ``window_to_next_dose``: False when the horizon cuts it); ``cmax_ug_per_ml`` and ``tmax_h`` (maximum over
    the window, from the value just after the dose on: never a point before it), ``auc_ug_day_per_ml``
    (trapezoid over the window), ``ctrough_ug_per_ml`` (the value just before the next dose; empty when the
    window ends at the horizon), ``il6_at_dose_pg_per_ml``, ``il6_peak_pg_per_ml`` and
    ``il6_peak_h_after_dose`` (see :func:`_il6_peak`; empty when IL-6 only falls after the dose).
    """
    cov = card.covariates()
    conc = np.asarray(res.outputs["conc_ug_per_ml"])
    il6 = np.asarray(res.outputs["il6_pg_per_ml"])
    rows = []
    for i, (d, (t0, t1, to_next), ix) in enumerate(zip(doses, windows, widx)):
        tw, cw, iw = ts[ix], conc[ix], il6[ix]
        j = int(np.argmax(cw))
        peak, t_peak = _il6_peak(tw, iw)
        mg = convert_dose(d.amount, d.unit, "mg", cov, duration_day=d.duration, mw_g_per_mol=card.mw_g_per_mol)
        rows.append({"dose_no": i + 1, "day": d.time + 1.0, "dose": d.amount, "unit": d.unit, "route": d.route,
                     "infusion_h": d.duration * 24.0 if d.duration is not None else np.nan, "amount_mg": mg,
                     "window_end_day": t1 + 1.0, "window_to_next_dose": bool(to_next),
                     "cmax_ug_per_ml": float(cw[j]), "tmax_h": float((tw[j] - t0) * 24.0),
                     "auc_ug_day_per_ml": float(np.sum(0.5 * (cw[1:] + cw[:-1]) * np.diff(tw))),
                     "ctrough_ug_per_ml": float(cw[-1]) if to_next else np.nan,
                     "il6_at_dose_pg_per_ml": float(iw[0]), "il6_peak_pg_per_ml": peak,
                     "il6_peak_h_after_dose": (t_peak - t0) * 24.0 if np.isfinite(t_peak) else np.nan})
    return pd.DataFrame(rows)


def plot_drug_run(run: DrugRun, path) -> None:
    """``timecourse.png``: PK, IL-6, blood T cells and target cells with dose markers."""
    from matplotlib.figure import Figure  # outside pyplot: no backend switched for the caller

    tc = run.timecourse
    fig = Figure(figsize=(11, 7))
    axes = fig.subplots(2, 2, sharex=True)
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
