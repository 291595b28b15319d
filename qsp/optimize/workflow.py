"""The `qsp optimize` workflow as a library call: search, re-simulate on fresh patients, tables and figures.

:func:`run_optimize` returns the output files as ``{name: bytes}`` (written atomically by the CLI) and a short
text summary. Which regimens are re-simulated: the label, the best regimen of each number of steps, and the
``top`` best overall (by the search objective); the Pareto front (:func:`qsp.optimize.report.pareto_mask`) is
taken among the re-simulated regimens that meet the constraints, on their fresh-patient numbers. The "best"
regimen (monitoring plan, label comparison, re-step-up rules) is the lowest step-up P(CRS >= 2) among those
meeting the constraints that reach the treatment dose no later than the label.

Files: ``pareto.csv``, ``regimens/*.csv``, ``label_comparison.csv``, ``monitoring_plan.csv``,
``restart_rules.csv`` (:func:`qsp.optimize.restart.restart_table` for the best regimen), ``stratified.csv`` and
``regimens/stratified_<subgroup>.csv`` (with ``subgroups``: :mod:`qsp.subgroups`), ``pareto.png``,
``per_dose_crs.png``, ``bands.png``.
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
from .search import SearchSettings, search, search_horizon
from .space import RegimenSpace


def _csv(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue().encode()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def _figure(**kw):
    """A figure outside pyplot (no backend switched, nothing left open in a notebook's pyplot state)."""
    from matplotlib.figure import Figure

    return Figure(**kw)


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


CYCLE_DAYS = 28.0  # the exposure constraint's window: cycle 1 (from the first dose)


def report_horizon(space: RegimenSpace, settings: SearchSettings) -> float:
    """Days re-simulated for the report: the search horizon + 7 days, at least cycle 1 (28 days), so that the
    exposure ratio is a cycle-1 AUC ratio (longer when the latest allowed first treatment dose is late)."""
    return max(search_horizon(space, settings) + 7.0, CYCLE_DAYS)


def search_setups(card, *, patients: int, seed: int, draws: int, draw_seed: int, parameters=None,
                  subgroup: str | None = None) -> list:
    """The search's virtual trials: the point estimate (``draws`` 0) or one per parameter draw of the calibrated
    fit (:func:`qsp.paramsets.draw_parameter_sets`), all on the same patients (of ``subgroup`` if given).
    The search's patients are Latin-hypercube draws (every covariate and random effect exactly stratified, so
    that a few dozen stand in for a large population); the re-simulation's fresh patients are plain draws."""
    from ..paramsets import draw_parameter_sets
    from .report import _setup

    base = _setup(card, patients, seed, parameters, subgroup, stratified=True)
    if not draws:
        return [base]
    return [_setup(card, patients, seed, s, subgroup, stratified=True)
            for s in draw_parameter_sets(card.name, base.model, int(draws), draw_seed)]


def _meets(table: pd.DataFrame, min_exposure: float, max_stays: int | None, rule: MonitoringRule) -> np.ndarray:
    """The constraints at the point estimate: exposure ratio, reach-by-day, inpatient stays (the ``p_*_ok``
    columns give each one's probability over the parameter draws)."""
    ok = (table.exposure_ratio >= min_exposure - 1e-12) & (table.p_reach_ok >= 1.0)
    if max_stays is not None:
        ok &= table.inpatient_days / rule.stay_days <= max_stays + 1e-9
    return np.array(ok.to_numpy(), dtype=bool)


def _best_row(table: pd.DataFrame, ok: np.ndarray, lab_days: float) -> int:
    """The lowest step-up P(CRS >= 2) among rows meeting the constraints that reach the treatment dose no later
    than the label (any meeting row if none does; the label, row 0, if none meets them)."""
    rows = [i for i in range(1, len(table)) if ok[i] and table.days_to_treatment_dose[i] <= lab_days + 1e-9]
    rows = rows or [i for i in range(1, len(table)) if ok[i]]
    return min(rows, key=lambda i: table.crs_g2_stepup_pct[i]) if rows else 0


def run_optimize(card, space: RegimenSpace, settings: SearchSettings, *, rule: MonitoringRule, search_patients: int,
                 patients: int, seed: int, draws: int = 0, search_draws: int = 0, top: int = 5,
                 min_exposure: float = 0.8, max_inpatient_stays: int | None = None, subgroups: tuple[str, ...] = (),
                 restart: bool = True, parameters=None,
                 progress: Callable[[str], None] | None = None, bar: bool = False) -> tuple[dict, str]:
    """Search, re-simulate, tables and figures (see the module docstring). ``search_draws``: parameter draws the
    search averages over (0: the point estimate); ``draws``: draws of the re-simulation's intervals; ``subgroups``:
    the search and re-simulation again within each (``stratified.csv``); ``restart``: the best regimen's
    re-step-up table (``restart_rules.csv``); ``bar``: progress bars (tqdm, stderr) over the search's structures
    and the re-simulation's draws, next to the ``progress`` status lines."""
    say = progress or (lambda m: None)
    setups = search_setups(card, patients=search_patients, seed=seed, draws=search_draws, draw_seed=seed + 1000,
                           parameters=parameters)
    say(f"searching {card.name}: up to {space.max_steps} steps, routes {','.join(space.routes)}, intervals "
        f"{','.join(f'{d:g}' for d in space.interval_days)} days, {search_patients} virtual patients"
        + (f" x {search_draws} parameter draws" if search_draws else ""))
    results, label_res = search(space, setups, settings, progress=say, bar=bar)
    reach = settings.reach_by_day
    lab_days = space.days_to_treatment_dose(space.label_candidate())
    horizon = report_horizon(space, settings)
    chosen = pick(results, top)
    say(f"re-simulating the label and {len(chosen)} regimens on {patients} fresh patients (seed {seed + 1})"
        + (f" x {draws} parameter draws" if draws else ""))
    table, point, _ = resimulate(card, space, [r["candidate"] for r in chosen], horizon=horizon, patients=patients,
                                 seed=seed + 1, rule=rule, draws=draws, draw_seed=seed, parameters=parameters,
                                 min_exposure=min_exposure, reach_by_day=reach,
                                 max_inpatient_stays=max_inpatient_stays, bands=True, bar=bar)
    table.insert(1, "search_objective", [label_res["objective"]] + [r["objective"] for r in chosen])
    table.insert(2, "search_crs_g2_stepup_pct_p90", [label_res["crs_g2_stepup_pct_p90"]]
                 + [r["crs_g2_stepup_pct_p90"] for r in chosen])
    names = ["label"] + [f"r{i + 1:02d}_{r['candidate'].structure.n_steps}step" for i, r in enumerate(chosen)]
    table.insert(0, "regimen_file", [f"regimens/{n}.csv" for n in names])
    ok = _meets(table, min_exposure, max_inpatient_stays, rule)
    table["meets_constraints"] = ok
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
    best = _best_row(table, ok, lab_days)
    lab_plan = monitoring_plan(space, cands[0], point[0], rule, horizon)
    best_plan = monitoring_plan(space, cands[best], point[best], rule, horizon)
    files["monitoring_plan.csv"] = _csv(best_plan)
    comp = lab_plan.add_prefix("label_").join(best_plan.add_prefix("best_"), how="outer")
    files["label_comparison.csv"] = _csv(comp)
    files["pareto.png"] = _png(_front_figure(table, card.name))
    files["per_dose_crs.png"] = _png(_per_dose_figure(table, point, names, card.name))
    files["bands.png"] = _png(_bands_figure(point[0], point[best], table.description[0], table.description[best],
                                            space, cands[0], cands[best], horizon, card.name))
    if restart:
        from .restart import restart_table

        say(f"re-step-up rules after dose delays for {'the label' if best == 0 else names[best]}")
        rules, _ = restart_table(card, space.regimen(cands[best]).until(120.0), patients=min(patients, 100),
                                 seed=seed + 1, parameters=parameters)
        rules.insert(0, "regimen_file", f"regimens/{names[best]}.csv")
        files["restart_rules.csv"] = _csv(rules)
    if subgroups:
        strat, strat_files = _stratified(card, space, settings, subgroups, cands[best], names[best], rule=rule,
                                         search_patients=search_patients, patients=patients, seed=seed,
                                         search_draws=search_draws, top=top, min_exposure=min_exposure,
                                         max_inpatient_stays=max_inpatient_stays, parameters=parameters, say=say,
                                         bar=bar)
        files.update(strat_files)
        files["stratified.csv"] = _csv(strat)
    lab_row, b = table.iloc[0], table.iloc[best]
    summary = (f"{card.name}: label {lab_row.description}: P(CRS>=2) over the step-up {lab_row.crs_g2_stepup_pct:.1f}%, "
               f"inpatient {lab_row.inpatient_days:g} d\n"
               f"best ({'the label' if best == 0 else names[best]}): {b.description}: P(CRS>=2) "
               f"{b.crs_g2_stepup_pct:.1f}%, inpatient {b.inpatient_days:g} d, exposure {b.exposure_ratio:.2f} x label "
               f"(fresh {patients} patients)")
    return files, summary


def _stratified(card, space, settings, subgroups, overall, overall_name, *, rule, search_patients, patients, seed,
                search_draws, top, min_exposure, max_inpatient_stays, parameters, say,
                bar=False) -> tuple[pd.DataFrame, dict]:
    """Per subgroup: the search on the subgroup's patients, then the label, the all-comers best (``overall``) and
    the subgroup's best re-simulated on fresh patients of the subgroup."""
    from ..subgroups import describe

    rows, files = [], {}
    lab_days = space.days_to_treatment_dose(space.label_candidate())
    horizon = report_horizon(space, settings)
    for sg in subgroups:
        say(f"subgroup {sg}: searching on {search_patients} patients")
        setups = search_setups(card, patients=search_patients, seed=seed, draws=search_draws, draw_seed=seed + 1000,
                               parameters=parameters, subgroup=sg)
        results, _ = search(space, setups, settings, progress=say, bar=bar)
        chosen = [r["candidate"] for r in pick(results, max(1, top // 2))]
        table, _, _ = resimulate(card, space, [overall, *chosen], horizon=horizon, patients=patients, seed=seed + 1,
                                 rule=rule, parameters=parameters, min_exposure=min_exposure,
                                 reach_by_day=settings.reach_by_day, max_inpatient_stays=max_inpatient_stays,
                                 subgroup=sg)
        ok = _meets(table, min_exposure, max_inpatient_stays, rule)
        ok[1] = False  # the all-comers regimen is the comparator, not a candidate of the subgroup
        best = _best_row(table, ok, lab_days)
        fname = f"regimens/stratified_{sg}.csv"
        files[fname] = write_regimen_csv(space.regimen(chosen[best - 2] if best >= 2 else space.label_candidate(),
                                                       until_day=horizon)).encode()
        lab, allc, b = table.iloc[0], table.iloc[1], table.iloc[best]
        rows.append({"subgroup": sg, "subgroup_description": describe(sg), "patients": patients,
                     "label_crs_g2_stepup_pct": lab.crs_g2_stepup_pct, "label_inpatient_days": lab.inpatient_days,
                     "all_comers_regimen_file": f"regimens/{overall_name}.csv",
                     "all_comers_crs_g2_stepup_pct": allc.crs_g2_stepup_pct,
                     "all_comers_inpatient_days": allc.inpatient_days,
                     "regimen_file": fname, "description": b.description,
                     "days_to_treatment_dose": b.days_to_treatment_dose, "crs_g2_stepup_pct": b.crs_g2_stepup_pct,
                     "crs_any_stepup_pct": b.crs_any_stepup_pct, "inpatient_days": b.inpatient_days,
                     "exposure_ratio": b.exposure_ratio, "meets_constraints": bool(ok[best]) or best == 0})
    return pd.DataFrame(rows), files


def _front_figure(table: pd.DataFrame, drug: str):
    fig = _figure(figsize=(7, 4.5))
    ax = fig.subplots()
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
        # the 5-95% range over parameter draws; the point estimate (at the fit) need not lie inside it
        ax.vlines(table.days_to_treatment_dose, table.crs_g2_stepup_pct_p05, table.crs_g2_stepup_pct_p95,
                  colors="0.5", lw=0.8, label="5-95% over parameter draws")
    fig.colorbar(sc, ax=ax, label="inpatient days")
    ax.set_xlabel("days from first dose to the first treatment dose")
    ax.set_ylabel("P(CRS grade >= 2) over the step-up, %")
    ax.set_title(f"{drug}: step-up regimens re-simulated on fresh patients")
    ax.legend(fontsize=8)
    return fig


def _per_dose_figure(table: pd.DataFrame, point: list[dict], names: list[str], drug: str):
    fig = _figure(figsize=(7, 4.5))
    ax = fig.subplots()
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


def _bands_figure(lab: dict, best: dict, lab_desc: str, best_desc: str, space: RegimenSpace, lab_c, best_c,
                  horizon: float, drug: str):
    """Serum concentration and IL-6, median and 5-95% of patients, label vs the best regimen, doses marked."""
    from ..premedication import drug_doses

    fig = _figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    units = {"conc_ug_per_ml": "serum concentration, ug/mL", "il6_pg_per_ml": "serum IL-6, pg/mL"}
    for ax, key in zip(axes, units):
        for m, c, desc, color in ((lab, lab_c, "label: " + lab_desc, "C3"), (best, best_c, "best: " + best_desc,
                                                                           "C0")):
            t = m["bands"]["time_day"]
            lo, med, hi = m["bands"][key]
            ax.fill_between(t, lo, hi, color=color, alpha=0.18)
            ax.plot(t, med, color=color, lw=1.8, label=desc)
            for d in drug_doses(space.regimen(c, until_day=horizon)):
                ax.axvline(d.time, color=color, lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("days from the first dose (dotted: doses)")
        ax.set_ylabel(units[key])
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{drug}: median and 5-95% of virtual patients (fresh population)")
    fig.tight_layout()
    return fig


__all__ = ["CYCLE_DAYS", "run_optimize", "pick", "report_horizon", "search_setups"]
