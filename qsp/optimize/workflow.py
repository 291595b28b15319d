"""The `qsp optimize` workflow as a library call: search, re-simulate on fresh patients, tables and figures.

:func:`run_optimize` returns the output files as ``{name: bytes}`` (written atomically by the CLI) and a short
text summary. Which regimens are re-simulated: the label, the best regimen of each number of steps, and the
``top`` best overall (by the search objective); the Pareto front (:func:`qsp.optimize.report.pareto_mask`) is
taken among the re-simulated regimens that meet the constraints, on their fresh-patient numbers.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
import pandas as pd

from ..io.regimen_csv import write_regimen_csv
from ..trial import card_trial_setup
from .objectives import MonitoringRule
from .report import monitoring_plan, pareto_mask, resimulate
from .search import SearchSettings, search
from .space import RegimenSpace


def _csv(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue().encode()


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def pick(results: list[dict], top: int) -> list[dict]:
    """The best result of each number of steps, then the ``top`` best overall (no duplicates), by objective."""
    chosen, seen = [], set()
    by_steps: dict[int, dict] = {}
    for r in results:
        n = r["candidate"].structure.n_steps
        if n not in by_steps or r["objective"] < by_steps[n]["objective"]:
            by_steps[n] = r
    for r in list(by_steps.values()) + sorted(results, key=lambda r: r["objective"])[:top]:
        key = id(r)
        if key not in seen:
            seen.add(key)
            chosen.append(r)
    return chosen


def run_optimize(card, space: RegimenSpace, settings: SearchSettings, *, rule: MonitoringRule, search_patients: int,
                 patients: int, seed: int, draws: int = 0, top: int = 5, min_exposure: float = 0.8,
                 parameters=None, progress: Callable[[str], None] | None = None) -> tuple[dict, str]:
    say = progress or (lambda m: None)
    setup = card_trial_setup(card, patients=search_patients, seed=seed, parameters=parameters)
    say(f"searching {card.name}: up to {space.max_steps} steps, routes {','.join(space.routes)}, intervals "
        f"{','.join(f'{d:g}' for d in space.interval_days)} days, {search_patients} virtual patients")
    results, label_res = search(space, setup, settings, progress=say)
    reach = settings.reach_by_day
    lab_days = space.days_to_treatment_dose(space.label_candidate())
    latest = reach if reach is not None else max(lab_days, max(space.interval_days) * space.max_steps)
    horizon = latest + settings.follow_days
    chosen = pick(results, top)
    say(f"re-simulating the label and {len(chosen)} regimens on {patients} fresh patients (seed {seed + 1})"
        + (f" x {draws} parameter draws" if draws else ""))
    table, point, _ = resimulate(card, space, [r["candidate"] for r in chosen], horizon=horizon, patients=patients,
                                 seed=seed + 1, rule=rule, draws=draws, draw_seed=seed, parameters=parameters,
                                 min_exposure=min_exposure, reach_by_day=reach)
    table.insert(1, "search_objective", [label_res["objective"]] + [r["objective"] for r in chosen])
    names = ["label"] + [f"r{i + 1:02d}_{r['candidate'].structure.n_steps}step" for i, r in enumerate(chosen)]
    table.insert(0, "regimen_file", [f"regimens/{n}.csv" for n in names])
    table["meets_constraints"] = (table.exposure_ratio >= min_exposure - 1e-12) & (table.p_reach_ok >= 1.0)
    ok = table.meets_constraints.to_numpy()
    front = np.zeros(len(table), bool)
    if ok.any():
        front[np.flatnonzero(ok)] = pareto_mask(table[ok])
    table["on_front"] = front
    cands = [space.label_candidate()] + [r["candidate"] for r in chosen]
    files = {}
    for n, c in zip(names, cands):
        files[f"regimens/{n}.csv"] = write_regimen_csv(space.regimen(c, until_day=horizon)).encode()
    order = np.lexsort((table.crs_g2_stepup_pct.to_numpy(), ~table.on_front.to_numpy(), ~table.is_label.to_numpy()))
    files["pareto.csv"] = _csv(table.iloc[order])
    # the best regimen meeting the constraints that reaches the treatment dose no later than the label
    cand_rows = [i for i in range(1, len(table)) if ok[i] and table.days_to_treatment_dose[i] <= lab_days + 1e-9]
    if not cand_rows:
        cand_rows = [i for i in range(1, len(table)) if ok[i]]
    best = min(cand_rows, key=lambda i: table.crs_g2_stepup_pct[i]) if cand_rows else 0
    lab_plan = monitoring_plan(space, cands[0], point[0], rule, horizon)
    best_plan = monitoring_plan(space, cands[best], point[best], rule, horizon)
    files["monitoring_plan.csv"] = _csv(best_plan)
    comp = lab_plan.add_prefix("label_").join(best_plan.add_prefix("best_"), how="outer")
    files["label_comparison.csv"] = _csv(comp)
    files["pareto.png"] = _png(_front_figure(table, card.name))
    files["per_dose_crs.png"] = _png(_per_dose_figure(table, point, names, card.name))
    lab_row, b = table.iloc[0], table.iloc[best]
    summary = (f"{card.name}: label {lab_row.description}: P(CRS>=2) over the step-up {lab_row.crs_g2_stepup_pct:.1f}%, "
               f"inpatient {lab_row.inpatient_days:g} d\n"
               f"best ({'the label' if best == 0 else names[best]}): {b.description}: P(CRS>=2) "
               f"{b.crs_g2_stepup_pct:.1f}%, inpatient {b.inpatient_days:g} d, exposure {b.exposure_ratio:.2f} x label "
               f"(fresh {patients} patients)")
    return files, summary


def _front_figure(table: pd.DataFrame, drug: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ok = table.meets_constraints.to_numpy()
    ax.scatter(table.days_to_treatment_dose[~ok], table.crs_g2_stepup_pct[~ok], c="0.7", label="constraint missed")
    sc = ax.scatter(table.days_to_treatment_dose[ok], table.crs_g2_stepup_pct[ok], c=table.inpatient_days[ok],
                    cmap="viridis", s=50, label="meets constraints")
    fr = table.on_front.to_numpy()
    ax.scatter(table.days_to_treatment_dose[fr], table.crs_g2_stepup_pct[fr], facecolors="none", edgecolors="k", s=140,
               label="Pareto front")
    lab = table.iloc[0]
    ax.scatter([lab.days_to_treatment_dose], [lab.crs_g2_stepup_pct], marker="*", s=250, c="C3", label="label")
    if "crs_g2_stepup_pct_p05" in table:
        ax.errorbar(table.days_to_treatment_dose, table.crs_g2_stepup_pct,
                    yerr=[table.crs_g2_stepup_pct - table.crs_g2_stepup_pct_p05,
                          table.crs_g2_stepup_pct_p95 - table.crs_g2_stepup_pct], fmt="none", ecolor="0.5", lw=0.8)
    fig.colorbar(sc, ax=ax, label="inpatient days")
    ax.set_xlabel("days from first dose to the first treatment dose")
    ax.set_ylabel("P(CRS grade >= 2) over the step-up, %")
    ax.set_title(f"{drug}: step-up regimens re-simulated on fresh patients")
    ax.legend(fontsize=8)
    return fig


def _per_dose_figure(table: pd.DataFrame, point: list[dict], names: list[str], drug: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    idx = [0] + [i for i in np.argsort(table.crs_g2_stepup_pct.to_numpy()) if i != 0][:3]
    for j, i in enumerate(idx):
        g2 = point[i]["per_dose_g2_pct"]
        ax.plot(np.arange(1, len(g2) + 1), g2, "o-", lw=2.5 if i == 0 else 1.5, color="C3" if i == 0 else f"C{j}",
                label=("label: " if i == 0 else f"{names[i]}: ") + table.description[i])
    ax.set_xlabel("dose number")
    ax.set_ylabel("P(CRS grade >= 2) after the dose, %")
    ax.set_title(f"{drug}: per-dose CRS, label vs the best regimens")
    ax.legend(fontsize=7)
    return fig


__all__ = ["run_optimize", "pick"]
