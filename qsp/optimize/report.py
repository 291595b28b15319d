"""From search results to what a clinician reads: re-simulation on fresh patients, Pareto front, monitoring plan.

* :func:`resimulate` runs the label and each candidate again on a **fresh virtual population** (a seed the search
  never saw), on the same horizon, at the parameter point estimate and, with ``draws`` K, at K parameter sets from
  the calibrated fit (:func:`qsp.paramsets.draw_parameter_sets`): every metric of :mod:`qsp.optimize.objectives`
  with its median and 90% interval over the draws, the exposure as a ratio to the label's (same draw, same
  patients), and the probability over draws that each constraint holds.
  Each regimen is also compared with the label draw by draw (paired: same draw, same patients): the 5th-95th
  percentile of its step-up P(CRS >= 2) minus the label's, and the fraction of draws in which it is lower.
* :func:`pareto_mask` marks the candidates no other candidate beats on every one of CRS risk, days to the
  treatment dose and inpatient days (ties allowed).
* :func:`monitoring_plan`: per dose of a regimen, the predicted P(CRS >= 2) and inpatient or outpatient by the
  monitoring rule, and the dose from which outpatient dosing is predicted safe.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..trial import card_trial_setup, run_trial
from .objectives import MonitoringRule, trial_metrics
from .space import Candidate, RegimenSpace

FRONT_KEYS = ("crs_g2_stepup_pct", "days_to_treatment_dose", "inpatient_days")
REPORT_METRICS = ("crs_g2_stepup_pct", "crs_any_stepup_pct", "crs_g2_pct", "crs_any_pct", "worst_dose_g2_pct",
                  "inpatient_days", "exposure_ratio")


def pareto_mask(table: pd.DataFrame, keys: Sequence[str] = FRONT_KEYS) -> np.ndarray:
    """True for rows not dominated (another row <= on every key and < on one)."""
    x = table[list(keys)].to_numpy(float)
    keep = np.ones(len(x), bool)
    for i in range(len(x)):
        le = np.all(x <= x[i], axis=1)
        lt = np.any(x < x[i], axis=1)
        if np.any(le & lt):
            keep[i] = False
    return keep


BAND_NAMES = ("conc_ug_per_ml", "il6_pg_per_ml")


def _metrics_for(space: RegimenSpace, setup, regs, horizon: float, rule: MonitoringRule,
                 bands: bool = False) -> list[dict]:
    """Each regimen's :func:`trial_metrics` on the setup's patients; with ``bands``, the 5th/50th/95th
    percentiles over patients of serum concentration and IL-6 on the daily grid (``m["bands"]``)."""
    out = []
    for reg in regs:
        res = run_trial(setup.model, reg, setup.population, setup.ref, days=horizon, crs=setup.crs,
                        params=setup.params or None, out_names=BAND_NAMES if bands else ("conc_ug_per_ml",),
                        follow_up_days=0.0, outputs_per_day=4 if bands else 1)
        m = trial_metrics(res, space.treatment_dose, rule)
        m["failed"] = int((~res.ok).sum())
        if bands:
            m["bands"] = {"time_day": np.asarray(res.times)} | {
                k: np.percentile(res.outputs[k][res.ok], [5, 50, 95], axis=0) for k in BAND_NAMES}
        out.append(m)
    return out


def _setup(card, patients: int, seed: int, parameters, subgroup: str | None, stratified: bool = False):
    if subgroup:
        from ..subgroups import subgroup_setup

        return subgroup_setup(card, subgroup, patients=patients, seed=seed, parameters=parameters,
                              stratified=stratified)
    return card_trial_setup(card, patients=patients, seed=seed, parameters=parameters, stratified=stratified)


def resimulate(card, space: RegimenSpace, candidates: Sequence[Candidate], *, horizon: float, patients: int,
               seed: int, rule: MonitoringRule = MonitoringRule(), draws: int = 0, draw_seed: int = 0,
               parameters=None, min_exposure: float = 0.0, reach_by_day: float | None = None,
               max_inpatient_stays: int | None = None, subgroup: str | None = None, bands: bool = False,
               bar: bool = False) -> tuple[pd.DataFrame, list[dict], dict]:
    """The label (row 0, ``is_label``) and the candidates on fresh patients (of ``subgroup``,
    :mod:`qsp.subgroups`, if given); see the module docstring. With ``draws``: for each risk, its mean and 5th,
    90th and 95th percentiles over the draws (``_mean``, ``_p05``, ``_p90``, ``_p95``); ``p_<constraint>_ok`` is the
    fraction of draws meeting the constraint (the point estimate's 0/1 without draws). ``bar``: a progress bar
    (tqdm, stderr) over the draws.

    Returns the summary table, the point-estimate metrics of each row (per-dose arrays included) and the label's.
    """
    cands = [space.label_candidate(), *candidates]
    regs = [space.regimen(c, until_day=horizon) for c in cands]
    setup = _setup(card, patients, seed, parameters, subgroup)
    point = _metrics_for(space, setup, regs, horizon, rule, bands=bands)
    per_draw = []
    if draws:
        from ..paramsets import draw_parameter_sets

        sets = draw_parameter_sets(card.name, setup.model, int(draws), draw_seed)
        if bar:
            from tqdm import tqdm

            sets = tqdm(sets, desc=f"re-simulating over {int(draws)} draws", unit="draw", dynamic_ncols=True)
        for s in sets:
            per_draw.append(_metrics_for(space, _setup(card, patients, seed, s, subgroup), regs, horizon, rule))
    rows = []
    for i, (c, m) in enumerate(zip(cands, point)):
        row = {"is_label": i == 0, "description": space.describe(c), "n_steps": c.structure.n_steps,
               "days_to_treatment_dose": m["days_to_treatment_dose"], "failed_patients": m["failed"]}
        lab_auc = point[0]["exposure_auc"]
        vals = {k: m[k] for k in REPORT_METRICS if k != "exposure_ratio"}
        vals["exposure_ratio"] = m["exposure_auc"] / lab_auc if lab_auc > 0 else float("nan")
        for k, v in vals.items():
            row[k] = v
            if per_draw:
                d = [(pd_[i][k] if k != "exposure_ratio" else pd_[i]["exposure_auc"] / pd_[0]["exposure_auc"])
                     for pd_ in per_draw]
                row[f"{k}_mean"] = float(np.mean(d))
                for q in (5, 90, 95):
                    row[f"{k}_p{q:02d}"] = float(np.percentile(d, q))
        if per_draw:  # paired with the label (same draw, same patients): is the regimen better, draw by draw?
            diff = [pd_[i]["crs_g2_stepup_pct"] - pd_[0]["crs_g2_stepup_pct"] for pd_ in per_draw]
            row["crs_g2_stepup_diff_vs_label_p05"] = float(np.percentile(diff, 5))
            row["crs_g2_stepup_diff_vs_label_p95"] = float(np.percentile(diff, 95))
            row["p_lower_crs_g2_than_label"] = float(np.mean(np.asarray(diff) < 0))
        ok_exp = ([pd_[i]["exposure_auc"] / pd_[0]["exposure_auc"] >= min_exposure for pd_ in per_draw]
                  if per_draw else [vals["exposure_ratio"] >= min_exposure])
        row["p_exposure_ok"] = float(np.mean(ok_exp))
        stays = ([pd_[i]["inpatient_days"] / rule.stay_days for pd_ in per_draw] if per_draw
                 else [m["inpatient_days"] / rule.stay_days])
        row["p_inpatient_ok"] = (1.0 if max_inpatient_stays is None
                                 else float(np.mean([x <= max_inpatient_stays + 1e-9 for x in stays])))
        row["p_reach_ok"] = 1.0 if reach_by_day is None or m["days_to_treatment_dose"] <= reach_by_day + 1e-9 else 0.0
        if per_draw:  # per-dose intervals over the draws, for the monitoring plan
            for key in ("per_dose_g2_pct", "per_dose_any_pct"):
                d = np.stack([pd_[i][key] for pd_ in per_draw])
                m[f"{key}_p05"], m[f"{key}_p95"] = np.percentile(d, 5, axis=0), np.percentile(d, 95, axis=0)
        rows.append(row)
    return pd.DataFrame(rows), point, point[0]


def monitoring_plan(space: RegimenSpace, cand: Candidate, metrics: dict, rule: MonitoringRule,
                    horizon: float) -> pd.DataFrame:
    """Per dose: day, dose, route, predicted P(CRS >= 2) and P(any CRS) (with their 5th/95th percentiles over the
    parameter draws where ``metrics`` has them), inpatient or outpatient (by the point estimate); the last column
    marks the first dose from which every later dose is outpatient."""
    from ..premedication import drug_doses

    doses = [d for d in drug_doses(space.regimen(cand, until_day=horizon))]
    g2, anyc = metrics["per_dose_g2_pct"], metrics["per_dose_any_pct"]
    rows = []
    for k, d in enumerate(doses[: len(g2)]):
        row = {"dose_no": k + 1, "day": d.time + 1.0, "dose": d.amount, "unit": d.unit, "route": d.route,
               "label": d.label, "crs_g2_pct": float(g2[k]), "crs_any_pct": float(anyc[k])}
        for key, col in (("per_dose_g2_pct", "crs_g2_pct"), ("per_dose_any_pct", "crs_any_pct")):
            if f"{key}_p05" in metrics:  # over the parameter draws (resimulate with draws)
                row[f"{col}_p05"] = float(metrics[f"{key}_p05"][k])
                row[f"{col}_p95"] = float(metrics[f"{key}_p95"][k])
        row["setting"] = "inpatient" if g2[k] > rule.g2_threshold_pct else "outpatient"
        rows.append(row)
    df = pd.DataFrame(rows)
    inp = (df.setting == "inpatient").to_numpy()
    last_in = int(np.flatnonzero(inp)[-1]) if inp.any() else -1
    df["outpatient_from_here"] = np.arange(len(df)) > last_in
    return df


__all__ = ["FRONT_KEYS", "REPORT_METRICS", "BAND_NAMES", "pareto_mask", "resimulate", "monitoring_plan"]
