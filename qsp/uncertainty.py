"""Parameter uncertainty of a virtual trial's CRS incidence: one cohort, K parameter sets drawn from the fit.

:func:`run_trial_uncertainty` draws K parameter sets from the calibration fit
(:func:`qsp.paramsets.draw_parameter_sets`: among the posterior draws of a NUTS job's file, the shipped default,
or from the normal (Laplace) approximation of a MAP file) and runs the same virtual trial once per set: the
same card, regimen, premedication and virtual patients (same ``seed``: each patient's random effects,
covariates and CRS sensitivity ``z`` are common to all draws), only the typical values change. The spread of
a per-dose percentage over the draws is its uncertainty from the calibration, for this cohort:

    crs_any_pct_p05, crs_any_pct_p95 = the 5th and 95th percentiles over the K draws of crs_any_pct

(a 90% interval; :data:`LEVEL`), likewise for ``crs_g2plus_pct`` and ``crs_g3plus_pct`` per dose and for
the overall percentages of :meth:`qsp.trial.TrialResult.any_crs_pct`. The sampling variation of a finite
cohort is not in it (the patients are held fixed). Percentiles are NumPy's linear interpolation between
order statistics, so a small K gives a rough interval (K = 2 spans 90% of the range between the two draws).

Explicit ``params`` / ``crs`` of the caller are applied on top of every draw (a ``--param`` pins that
parameter in all of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from .errors import InputError
from .paramsets import draw_parameter_sets

LEVEL = (5.0, 95.0)
SUFFIXES = ("_p05", "_p95")
PCT_COLUMNS = ("crs_any_pct", "crs_g2plus_pct", "crs_g3plus_pct")
OVERALL_KEYS = ("p_any", "p_g2plus", "p_g3plus")
MIN_DRAWS = 2


@dataclass
class TrialUncertainty:
    """Per-draw results of :func:`run_trial_uncertainty`.

    ``draws`` the K parameter sets; ``tables[j]`` draw j's :meth:`~qsp.trial.TrialResult.crs_by_dose` (only
    the dose number and the percentage columns); ``overall[j]`` its :meth:`~qsp.trial.TrialResult.any_crs_pct`;
    ``n_failed[j]`` its failed patients (left out of its percentages).
    """

    draws: list[dict]
    tables: list[pd.DataFrame]
    overall: list[dict]
    n_failed: list[int]
    seed: int
    level: tuple[float, float] = LEVEL
    drug: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.draws)

    def per_draw(self, column: str) -> pd.DataFrame:
        """Draw x dose matrix of one percentage column (NaN where a draw had no evaluable patient)."""
        rows = [t.set_index("dose_no")[column] for t in self.tables]
        return pd.DataFrame(rows).reset_index(drop=True)

    def intervals(self) -> pd.DataFrame:
        """Per dose: ``dose_no`` and ``<column>_p05``, ``<column>_p95`` for every percentage column."""
        doses = sorted({int(d) for t in self.tables for d in t["dose_no"]})
        out = pd.DataFrame({"dose_no": doses})
        for col in PCT_COLUMNS:
            m = self.per_draw(col).reindex(columns=doses).to_numpy(float)
            lo, hi = _nanpercentile(m, self.level)
            out[col + SUFFIXES[0]] = lo
            out[col + SUFFIXES[1]] = hi
        return out

    def overall_intervals(self) -> dict[str, tuple[float, float]]:
        """``{p_any: (p05, p95), ...}`` of the overall percentages (at least one CRS event) over the draws."""
        out = {}
        for key in OVERALL_KEYS:
            v = np.array([o[key] for o in self.overall], float)[:, None]
            lo, hi = _nanpercentile(v, self.level)
            out[key] = (float(lo[0]), float(hi[0]))
        return out

    def summary(self) -> dict:
        """The ``uncertainty`` entry of a run's ``summary.json``."""
        ov = self.overall_intervals()

        def r(x):
            return float(f"{x:.6g}") if np.isfinite(x) else None

        return {"draws": self.k, "draw_seed": int(self.seed),
                "interval": f"{self.level[0]:g}th-{self.level[1]:g}th percentiles over the draws (same virtual "
                            "patients; parameter uncertainty of the fit only)",
                "any_crs_pct_p05": {k[2:]: r(v[0]) for k, v in ov.items()},
                "any_crs_pct_p95": {k[2:]: r(v[1]) for k, v in ov.items()},
                "n_failed_per_draw": [int(n) for n in self.n_failed]}


def _nanpercentile(m: np.ndarray, q) -> tuple[np.ndarray, np.ndarray]:
    out = np.full((2, m.shape[1]), np.nan)
    for j in range(m.shape[1]):
        col = m[:, j][np.isfinite(m[:, j])]
        if col.size:
            out[:, j] = np.percentile(col, q)
    return out[0], out[1]


def check_draws(k, *, field: str = "draws") -> int:
    """K as an integer from :data:`MIN_DRAWS` up to the ``draws`` limit (``QSP_MAX_DRAWS``)."""
    from .limits import check_limit

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < MIN_DRAWS:
        raise InputError(f"must be an integer of at least {MIN_DRAWS} (parameter draws for the interval), got {k!r}",
                         field=field)
    check_limit("draws", int(k), field=field)
    return int(k)


def run_trial_uncertainty(card, regimen=None, *, draws: int, seed: int = 0, draw_seed: int | None = None,
                          patients: int = 1000, days: float = 35.0, premed: str = "label",
                          params: Mapping | None = None, crs: Mapping | None = None, progress: bool = False,
                          **kw) -> TrialUncertainty:
    """Run ``card``'s virtual trial once per parameter set drawn from the calibrated fit.

    Args:
        draws: K, the number of parameter sets (at least 2).
        seed: the virtual patients' seed, the same for every draw (common random numbers).
        draw_seed: the seed of the parameter draws (default ``seed``).
        params, crs: explicit overrides applied on top of every draw.
        progress: a progress bar over the draws (stderr).
        **kw: passed to :func:`qsp.trial.run_card_trial` (``outputs_per_day``, solver settings, ...).

    Raises InputError when no calibrated file is available or it does not fit the drug's model.
    """
    from .trial import run_card_trial

    k = check_draws(draws)
    dseed = seed if draw_seed is None else draw_seed
    sets = draw_parameter_sets(card.name, card.model(), k, dseed)
    it = sets
    if progress:
        from tqdm import tqdm

        it = tqdm(sets, desc=f"{k} parameter draws", unit="trial", leave=False)
    tables, overall, failed = [], [], []
    for s in it:
        t = run_card_trial(card, regimen, patients=patients, seed=seed, days=days, premed=premed, progress=False,
                           parameters=s, params=params, crs=crs, **kw)
        tab = t.crs_by_dose()
        tables.append(tab.reindex(columns=["dose_no", *PCT_COLUMNS]))
        overall.append(t.any_crs_pct())
        failed.append(int(np.count_nonzero(np.asarray(t.status) != 0)))
    return TrialUncertainty(sets, tables, overall, failed, dseed, drug=card.name)


def with_intervals(table: pd.DataFrame, intervals: pd.DataFrame | None) -> pd.DataFrame:
    """``table`` (per-dose CRS rows) with each percentage column followed by its ``_p05`` and ``_p95``."""
    if intervals is None:
        return table
    iv = intervals.set_index("dose_no")
    out = table.copy()
    cols = []
    for c in table.columns:
        cols.append(c)
        if c in PCT_COLUMNS:
            for suf in SUFFIXES:
                out[c + suf] = out["dose_no"].map(iv[c + suf]).astype(float) if len(out) else pd.Series(dtype=float)
                cols.append(c + suf)
    return out[cols]


__all__ = ["LEVEL", "SUFFIXES", "PCT_COLUMNS", "TrialUncertainty", "run_trial_uncertainty", "with_intervals",
           "check_draws"]
