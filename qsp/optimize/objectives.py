"""What the optimizer minimises and constrains, computed from a virtual trial of a candidate regimen.

For a trial of ``N`` evaluable patients and doses ``k = 1..K`` inside the horizon, with per-patient, per-dose
probabilities ``p_ik`` of CRS (any grade) and ``q_ik`` of grade >= 2 (:func:`qsp.crs.crs_per_dose`; doses taken as
independent given the patient):

* ``crs_any_pct`` / ``crs_g2_pct`` -- % of patients with at least one event over the horizon,
  ``100 mean_i [1 - prod_k (1 - p_ik)]``;
* ``crs_any_stepup_pct`` / ``crs_g2_stepup_pct`` -- the same over the step-up phase: the step-up doses and the
  first treatment dose (the doses the labels monitor);
* ``worst_dose_g2_pct`` -- ``100 max_k mean_i q_ik``;
* ``inpatient_days`` -- the monitoring rule: a dose is given in hospital when its population
  ``100 mean_i q_ik`` exceeds ``g2_threshold_pct`` (default 5%), for ``stay_days`` (default 2: the labels'
  48 h after each step-up dose); the sum over doses;
* ``days_to_treatment_dose`` -- from the first dose to the first treatment dose;
* ``exposure_auc`` -- mean over patients of the serum-concentration AUC over the horizon (ug day/mL,
  trapezoid on the output grid); the optimizer reports it as a ratio to the label regimen's on the same horizon
  and patients (``exposure_ratio``).

Every candidate of one search is run on the same horizon and the same virtual patients (common random numbers), so
differences between candidates are not sampling noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..premedication import drug_doses
from ..regimen import Regimen

METRICS = ("crs_any_pct", "crs_g2_pct", "crs_any_stepup_pct", "crs_g2_stepup_pct", "worst_dose_g2_pct",
           "inpatient_days", "days_to_treatment_dose", "exposure_auc")


@dataclass(frozen=True)
class MonitoringRule:
    """Inpatient monitoring after a dose whose predicted P(CRS >= 2) exceeds ``g2_threshold_pct``."""

    g2_threshold_pct: float = 5.0
    stay_days: float = 2.0

    def __post_init__(self):
        if not (0.0 <= self.g2_threshold_pct <= 100.0):
            raise InputError(f"inpatient threshold must be a percentage 0-100, got {self.g2_threshold_pct}",
                             field="g2_threshold_pct")
        if not (self.stay_days > 0 and np.isfinite(self.stay_days)):
            raise InputError(f"inpatient stay must be a positive number of days, got {self.stay_days}",
                             field="stay_days")


def first_treatment_index(regimen: Regimen, treatment_dose: float) -> int:
    """Index (0-based, among drug doses) of the first dose at the treatment dose."""
    doses = drug_doses(regimen.in_unit("day"))
    for i, d in enumerate(doses):
        if d.amount >= treatment_dose * (1 - 1e-9):
            return i
    raise InputError(f"the regimen never reaches the treatment dose {treatment_dose:g}", field="regimen")


def _at_least_one(p: np.ndarray) -> np.ndarray:
    return 1.0 - np.prod(1.0 - np.nan_to_num(p, nan=0.0), axis=1)


def trial_metrics(result, treatment_dose: float, rule: MonitoringRule = MonitoringRule()) -> dict:
    """The metrics of the module docstring from a :class:`qsp.trial.TrialResult` (``conc_ug_per_ml`` stored)."""
    ok = result.ok
    if not ok.any():
        raise InputError("no evaluable virtual patient in the trial (every solve failed)", field="trial")
    k_td = first_treatment_index(result.regimen, treatment_dose)
    n_doses = result.crs["p_any"].shape[1]
    if k_td >= n_doses:
        raise InputError(f"the first treatment dose (dose {k_td + 1}) is outside the trial horizon", field="days")
    p, q = result.crs["p_any"][ok], result.crs["p_g2plus"][ok]
    per_dose_g2 = 100.0 * np.nanmean(q, axis=0)
    inpatient = per_dose_g2 > rule.g2_threshold_pct
    conc = result.outputs["conc_ug_per_ml"][ok]
    t_first = float(result.doses.time.iloc[0])
    return {
        "crs_any_pct": 100.0 * float(np.mean(_at_least_one(p))),
        "crs_g2_pct": 100.0 * float(np.mean(_at_least_one(q))),
        "crs_any_stepup_pct": 100.0 * float(np.mean(_at_least_one(p[:, : k_td + 1]))),
        "crs_g2_stepup_pct": 100.0 * float(np.mean(_at_least_one(q[:, : k_td + 1]))),
        "worst_dose_g2_pct": float(np.nanmax(per_dose_g2)),
        "inpatient_days": float(rule.stay_days * inpatient.sum()),
        "days_to_treatment_dose": float(result.doses.time.iloc[k_td]) - t_first,
        "exposure_auc": float(np.mean(np.sum(0.5 * (conc[:, 1:] + conc[:, :-1]) * np.diff(result.times), axis=1))),
        "per_dose_g2_pct": per_dose_g2,
        "per_dose_any_pct": 100.0 * np.nanmean(p, axis=0),
        "inpatient": inpatient,
        "first_treatment_dose_no": k_td + 1,
        "evaluable": int(ok.sum()),
    }


__all__ = ["METRICS", "MonitoringRule", "first_treatment_index", "trial_metrics"]
