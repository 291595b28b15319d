"""Summary targets (``summaries.csv``): what each row means for a simulated study, and its likelihood term.

A row is *planned* once, when the :class:`~qsp.calibrate.likelihood.Problem` is built (:func:`plan_rows`): which
doses and output times it needs, or why the model cannot predict it (the reason goes to ``Problem.skipped``).
At every evaluation the per-patient quantity is computed from the study's simulated concentrations (or per-dose
CRS onsets, or the ADA probability), reduced over the virtual patients by the row's statistic, and scored with
the row's error model (:func:`log_density`). Everything here is pure JAX with static index arrays, so
``jax.grad`` goes through it.

Per patient (``conc`` = ``conc_ug_per_ml`` on the study's output grid, dense where a row needs it):

- ``cmax_ug_per_ml`` (dose k): the highest concentration in the dose's window ``[t_k, t_k+1)`` (the window of
  the last dose of a regimen runs :data:`LAST_WINDOW_DAYS`); the grid has a point every
  :data:`DENSE_STEP_DAY` in the window and every infusion's end, so an IV peak is sampled exactly.
- ``tmax_h`` (dose k): the time of that peak after the dose, refined by the vertex of the parabola through the
  highest grid point and its neighbours (a smooth function of the parameters, not a grid index).
- ``ctrough_ug_per_ml`` (dose k): the concentration :data:`TROUGH_EPS_DAY` before dose k+1 (pre-dose).
- ``accumulation_ratio_cmax`` / ``accumulation_ratio_auc_tau`` (dose k over reference dose j): the patient's
  ratio of window Cmax, or of the trapezoidal AUC over the dosing interval ``[t_k, t_k+1]``.
- ``terminal_half_life_day``: ``ln 2`` over the log-linear slope of the decay **after the last dose of the
  simulated horizon** (doses stop there, and the horizon runs :data:`HL_FOLLOW_UP_DAYS` past the end of that
  dose's input, its infusion's end for an infusion; no separate single-dose run). The slope is a weighted least-squares fit of ``log conc`` on time after the
  post-dose peak, the weights a smooth window set by the patient's own curve (no published value enters it):
  a curve still above ``peak/16`` at the end of the follow-up (slowly cleared antibodies) is fitted over the
  last :data:`HL_LATE_DAYS` days (three to four weeks after the dose: past absorption and distribution); a
  curve that falls further is fitted over its two halvings above a floor of ``peak/64``
  (``peak/16 .. peak/64``: the terminal phase of a decay over hours, or of an antibody with a long
  distribution phase). The two blend smoothly (a logistic of the end concentration) in between.
- ``crs_onset_h`` (selection ``crs_patients``): the per-dose median onset of :func:`qsp.crs.crs_per_dose`
  (hours after the most recent dose), pooled over the doses of the first ``OVERALL_DAYS`` (35) days of
  :mod:`qsp.calibrate.likelihood` and over patients, each (patient, dose) weighted by its probability of CRS
  (grade >= 1), the median by linear interpolation of the weighted distribution (continuous in the weights).
- ``ada_incidence_pct``: the model's ADA incidence, ``100 * ADA_PROB`` (the probability with which the
  population layer draws each patient's ADA status, :mod:`qsp.components.ada`): what a large virtual
  population gives, and a smooth function of ``ADA_PROB``. The ADA status of the study's fixed virtual
  patients is drawn once at the card's ``ADA_PROB`` (common random numbers), so a fit that moves ``ADA_PROB``
  moves this target, not the fixed patients' ADA clearance.

Statistics over the evaluable virtual patients: ``mean``; ``median`` and ``typical`` (the median patient);
``geometric_mean``; ``cv_pct`` (100 SD / mean). ``sd`` rows are used as **spread** targets, as the CV
``100 sd / mean`` against the study's ``mean`` row of the same quantity and dose: the model's between-patient
variability is not fitted, so an SD target would otherwise push the level (SD scales with the mean) against
the mean row; as a CV it informs the spread only. An ``sd`` row without its ``mean`` row is skipped.

Error models: ``lognormal`` (SD of the log), ``normal`` (on the value's scale; ADA %), ``binomial`` (``n``
patients, events ``round(value n / 100)``), ``interval`` and ``upper_bound`` (flat inside; outside, a normal
tail of SD :data:`EDGE_SIGMA_LOG` on the log scale, or :data:`EDGE_SIGMA_PP` percentage points for a ``%``
quantity).

Not predicted (listed in ``Problem.skipped``): ``half_life_initial_day`` (the half-life of a popPK model with
time-dependent clearance at treatment start, a construct of that model: the label regimens give no decay
window at treatment start, doses 2-3 days apart, and a single-dose run of this model would measure its
target-mediated decay, not the popPK's initial clearance); ``sd``/``cv_pct`` of CRS onset (the per-dose onset
is the median of an onset distribution, not an individual onset, so its spread is not the between-patient
spread); rows whose dose lies beyond the label regimen or past a ``partial`` study's match; ADA incidence for a
model without an ADA probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..reductions import peak

LN2 = math.log(2.0)
DENSE_STEP_DAY = 1.0 / 12.0  # 2 h grid inside a Cmax/Tmax/AUC window
TROUGH_EPS_DAY = 1e-4  # the trough is read this long before the next dose (pre-dose value)
LAST_WINDOW_DAYS = 7.0  # window of a regimen's last dose (no next dose)
HL_FOLLOW_UP_DAYS = 28.0  # follow-up after the last simulated dose for a terminal half-life
HL_LATE_DAYS = 7.0  # the last days of that follow-up serve as the terminal window of slow decays
HL_FLOOR_HALVINGS = 6.0  # the half-life window stays above peak / 2**6
HL_SOFT = 0.1  # softness (log units) of the half-life window edges
HL_FINE = ((2.0, 1.0 / 48.0), (7.0, 1.0 / 12.0))  # (days after the last dose, grid step): 30 min, then 2 h
EDGE_SIGMA_LOG = 0.1  # interval / upper_bound: SD of the normal tail outside, log units
EDGE_SIGMA_PP = 0.5  # ... percentage points, for % quantities
CONC = "conc_ug_per_ml"

WINDOW_QUANTITIES = ("tmax_h", "cmax_ug_per_ml", "ctrough_ug_per_ml")
RATIO_QUANTITIES = ("accumulation_ratio_cmax", "accumulation_ratio_auc_tau")
CENTRAL_STATS = ("mean", "median", "typical", "geometric_mean")
PCT_QUANTITIES = ("ada_incidence_pct",)


@dataclass
class SummaryRow:
    """One planned summary target (static data; indices into the study's output grid are set by
    :func:`attach_grid`)."""

    label: str
    quantity: str
    statistic: str  # mean, median, typical, geometric_mean, cv_pct (sd rows become cv_pct)
    selection: str
    error_model: str
    observed: float  # on the prediction's scale (an sd row: its CV in %)
    unit: str  # what predict() reports: the quantity, or "cv_pct"
    sigma: float = float("nan")
    n: float = float("nan")
    events: float = float("nan")
    lower: float = float("nan")
    upper: float = float("nan")
    dose: int = -1  # 0-based dose index (window quantities, ratios: the numerator)
    ref: int = -1  # 0-based reference dose (ratios)
    windows: list = field(default_factory=list)  # [(a, b)] per dose used: window start and end (day)
    idx: list = field(default_factory=list)  # per window: grid indices inside [a, b - eps] (numpy)
    trough_idx: int = -1
    hl: tuple = ()  # (t_last, follow_end) for a half-life
    crs_doses: np.ndarray | None = None  # dose indices pooled for a CRS onset

    @property
    def log_scale(self) -> bool:
        return self.quantity not in PCT_QUANTITIES


def row_label(r) -> str:
    """The label of a summaries.csv row (study, statistic, quantity, dose, reference dose)."""
    s = f"{r.study_id} {r.statistic} {r.quantity}"
    if not pd.isna(r.dose_no):
        s += f" dose {int(r.dose_no)}"
    if not pd.isna(r.reference_dose_no):
        s += f" vs dose {int(r.reference_dose_no)}"
    return s


def _num(v) -> float:
    return float("nan") if v is None or pd.isna(v) else float(v)


def plan_rows(sm: pd.DataFrame, study, dose_t_full: np.ndarray, model, skipped: list) -> list[SummaryRow]:
    """The study's summary rows the model can predict, with the doses and windows they need; the others go to
    ``skipped`` as ``(label, reason)``.

    Args:
        sm: the study's rows of ``summaries.csv``.
        study: the study's row (``regimen_match``, ``regimen_match_until_day``).
        dose_t_full: drug dose times (day) of the study's label regimen far beyond any target.
        model: the drug's model (``param_info``, ``output_info``).
    """
    out = []
    until = _num(getattr(study, "regimen_match_until_day", None))
    partial = getattr(study, "regimen_match", "exact") == "partial" and np.isfinite(until)
    n_full = dose_t_full.size
    means = {(r.quantity, None if pd.isna(r.dose_no) else int(r.dose_no)): float(r.value)
             for r in sm.itertuples(index=False) if r.statistic == "mean"}

    def window(k):
        a = float(dose_t_full[k])
        b = float(dose_t_full[k + 1]) if k + 1 < n_full else a + LAST_WINDOW_DAYS
        return a, b

    for r in sm.itertuples(index=False):
        label = row_label(r)
        q, stat = r.quantity, r.statistic

        def skip(why):
            skipped.append((label, why))

        if r.selection not in ("all", "crs_patients"):
            skip(f"selection {r.selection} not in the likelihood")
            continue
        row = SummaryRow(label, q, stat, r.selection, r.error_model, _num(r.value), q, sigma=_num(r.sigma),
                         n=_num(r.n), lower=_num(r.lower), upper=_num(r.upper))
        if stat == "sd":
            key = (q, None if pd.isna(r.dose_no) else int(r.dose_no))
            if key not in means or means[key] <= 0:
                skip("between-patient SD without the study's mean row of the same quantity and dose: used only "
                     "as a CV (sd/mean), which needs the mean")
                continue
            row.statistic, row.unit = "cv_pct", "cv_pct"
            row.observed = 100.0 * float(r.value) / means[key]
            row.label = label + " (as CV = sd/mean)"
        elif stat == "cv_pct":
            row.unit = "cv_pct"
        if row.error_model == "binomial":
            row.events = float(round(row.observed * row.n / 100.0))

        if q == "half_life_initial_day":
            skip("half-life at treatment start of a popPK model with time-dependent clearance: the label "
                 "regimen leaves no decay window at treatment start, and a single-dose run of this model "
                 "measures its target-mediated decay, not that popPK construct")
            continue
        if q == "ada_incidence_pct":
            if "ADA_PROB" not in model.param_info:
                skip("the model has no ADA probability (ADA_PROB)")
                continue
            if stat != "incidence":
                skip(f"statistic {stat} of an ADA incidence")
                continue
            out.append(row)
            continue
        if q == "crs_onset_h":
            if row.statistic not in CENTRAL_STATS:
                skip("spread of CRS onset: the per-dose onset is the median of an onset distribution, not an "
                     "individual onset time")
                continue
            if "il6_pg_per_ml" not in model.output_info:
                skip("the model has no IL-6 output (CRS layer)")
                continue
            out.append(row)
            continue
        if CONC not in model.output_info:
            skip(f"the model has no {CONC} output")
            continue
        if row.statistic not in CENTRAL_STATS + ("cv_pct",):
            skip(f"statistic {stat} not in the likelihood")
            continue
        if q == "terminal_half_life_day":
            if partial:
                skip(f"the study's dosing departs from the label regimen after day {until:g} (partial): the decay "
                     "after the last simulated dose is not the study's")
                continue
            out.append(row)
            continue
        if q in WINDOW_QUANTITIES or q in RATIO_QUANTITIES:
            k = int(r.dose_no) - 1
            doses = [k] + ([int(r.reference_dose_no) - 1] if q in RATIO_QUANTITIES else [])
            if max(doses) >= n_full or min(doses) < 0:
                skip(f"dose {max(doses) + 1} is beyond the label regimen ({n_full} doses)")
                continue
            needs_next = q == "ctrough_ug_per_ml" or q == "accumulation_ratio_auc_tau"
            if needs_next and max(doses) + 1 >= n_full:
                skip("the dose has no next dose in the label regimen (no trough / dosing interval)")
                continue
            wins = [window(d) for d in doses]
            if partial and max(b for _, b in wins) > until:
                skip(f"the dose window ends after day {until:g}, where the study's dosing departs from the label "
                     "regimen (partial)")
                continue
            row.dose = k
            row.ref = doses[1] if len(doses) > 1 else -1
            row.windows = wins
            out.append(row)
            continue
        skip(f"quantity {q} not in the likelihood")
    return out


def needs(rows: list[SummaryRow]) -> dict:
    """What the rows ask of the simulation: the last dose index to give, the latest window end, a half-life
    follow-up, the concentration output."""
    last_dose = max([max(r.dose, r.ref) for r in rows if r.windows] or [-1])
    win_end = max([b for r in rows for _, b in r.windows] or [0.0])
    hl = any(r.quantity == "terminal_half_life_day" for r in rows)
    conc = any(r.quantity not in ("crs_onset_h", "ada_incidence_pct") for r in rows)
    crs = any(r.quantity == "crs_onset_h" for r in rows)
    simulate = conc or crs
    return {"last_dose": last_dose, "window_end": win_end, "half_life": hl, "conc": conc, "simulate": simulate}


def grid_points(rows: list[SummaryRow], dose_t: np.ndarray, horizon: float, infusion_ends: np.ndarray) -> np.ndarray:
    """Extra output times the rows need (dense windows, troughs, infusion ends, the half-life follow-up)."""
    pts = []
    for r in rows:
        for a, b in r.windows:
            pts.append(a + DENSE_STEP_DAY * np.arange(int(np.ceil((b - a) / DENSE_STEP_DAY))))
            pts.append(np.array([a, b - TROUGH_EPS_DAY]))
            ends = infusion_ends[(infusion_ends > a) & (infusion_ends < b)]
            pts.append(ends)
    if any(r.quantity == "terminal_half_life_day" for r in rows) and dose_t.size:
        start = decay_start(dose_t, infusion_ends)
        t0 = start
        for span, step in HL_FINE:
            pts.append(t0 + step * np.arange(int(np.ceil((start + span - t0) / step))))
            t0 = start + span
    if not pts:
        return np.zeros(0)
    p = np.concatenate(pts)
    return p[(p >= 0.0) & (p <= horizon)]


def decay_start(dose_t: np.ndarray, infusion_ends: np.ndarray) -> float:
    """When the drug input of the last dose ends: the dose time, or the end of its infusion."""
    t_last = float(dose_t[-1])
    ends = infusion_ends[infusion_ends >= t_last]
    return float(max(t_last, ends.max())) if ends.size else t_last


def merge_grid(*parts, tol: float = 1e-6) -> np.ndarray:
    """Sorted union of output times, points closer than ``tol`` (day) merged (the first kept)."""
    ts = np.unique(np.concatenate([np.asarray(p, float).ravel() for p in parts]))
    keep = np.concatenate([[True], np.diff(ts) > tol]) if ts.size else np.zeros(0, bool)
    return ts[keep]


def nearest(ts: np.ndarray, t) -> np.ndarray:
    """Index of the grid point nearest to each time."""
    t = np.atleast_1d(np.asarray(t, float))
    i = np.clip(np.searchsorted(ts, t), 1, max(ts.size - 1, 1))
    return np.where(np.abs(ts[i - 1] - t) <= np.abs(ts[np.minimum(i, ts.size - 1)] - t), i - 1, i)


def attach_grid(rows: list[SummaryRow], ts: np.ndarray, dose_t: np.ndarray, overall_idx: np.ndarray,
                hl_follow_end: float, infusion_ends: np.ndarray) -> None:
    """Static grid indices of every row (after the study's output grid is fixed)."""
    for r in rows:
        r.idx = []
        for a, b in r.windows:
            i = np.flatnonzero((ts >= a - 1e-6) & (ts <= b - TROUGH_EPS_DAY + 1e-6))
            r.idx.append(i)
        if r.quantity == "ctrough_ug_per_ml":
            r.trough_idx = int(nearest(ts, r.windows[0][1] - TROUGH_EPS_DAY)[0])
        if r.quantity == "terminal_half_life_day":
            r.hl = (decay_start(dose_t, infusion_ends), float(hl_follow_end))
        if r.quantity == "crs_onset_h":
            r.crs_doses = np.asarray(overall_idx)


# --------------------------------------------------------------------------------------------------
# per-patient quantities (x: (N, T) concentrations, ts: (T,) numpy)
# --------------------------------------------------------------------------------------------------
def _tiny(x):
    return jnp.maximum(x, 1e-30)


def window_cmax(x, idx):
    return peak(x[:, idx], axis=1)  # not jnp.max: its gradient can vanish under jit (qsp.reductions)


def window_tmax_h(x, ts, idx, t_dose):
    """Time of the window's peak (hours after the dose): the vertex of the parabola through the highest grid
    point and its two neighbours (the grid point itself at the window's edge)."""
    xw = x[:, idx]
    tw = jnp.asarray(ts[idx])
    m = len(idx)
    j = jnp.argmax(xw, axis=1)
    jc = jnp.clip(j, 1, m - 2)
    take = lambda a, k: jnp.take_along_axis(a, k[:, None], axis=1)[:, 0]  # noqa: E731
    y0, y1, y2 = take(xw, jc - 1), take(xw, jc), take(xw, jc + 1)
    t0, t1, t2 = tw[jc - 1], tw[jc], tw[jc + 1]
    num = (t1 - t0) ** 2 * (y1 - y2) - (t1 - t2) ** 2 * (y1 - y0)
    den = (t1 - t0) * (y1 - y2) - (t1 - t2) * (y1 - y0)
    ok = (den > 0) & (j == jc)  # a proper maximum inside the window
    tv = t1 - 0.5 * num / jnp.where(ok, den, 1.0)
    tv = jnp.where(ok, jnp.clip(tv, t0, t2), tw[j])
    return (tv - t_dose) * 24.0


def window_auc(x, ts, idx):
    """Trapezoidal AUC over the window's grid points (ug/mL * day)."""
    xw = x[:, idx]
    dt = jnp.asarray(np.diff(ts[idx]))
    return jnp.sum(0.5 * (xw[:, 1:] + xw[:, :-1]) * dt[None, :], axis=1)


def terminal_half_life(x, ts, t_last, follow_end):
    """Per-patient terminal half-life (day) of the decay after the last dose (see the module docstring)."""
    sel = np.flatnonzero((ts >= t_last - 1e-12) & (ts <= follow_end + 1e-12))
    t = jnp.asarray(ts[sel] - t_last)
    y = jnp.log(_tiny(x[:, sel]))
    j = jnp.argmax(y, axis=1)
    top = peak(y, axis=1)[:, None]
    post = jnp.arange(sel.size)[None, :] > j[:, None]
    sig = jax.nn.sigmoid
    floor = top - HL_FLOOR_HALVINGS * LN2
    above = sig((y - floor) / HL_SOFT)
    band = above * sig(((floor + 2 * LN2) - y) / HL_SOFT)
    late = jnp.asarray(t >= (follow_end - t_last) - HL_LATE_DAYS)[None, :] * above
    slow = sig((y[:, -1:] - (floor + 2 * LN2)) / HL_SOFT)  # still above peak/16 at the end of the follow-up
    w = jnp.where(post, slow * late + (1.0 - slow) * band, 0.0)
    sw = jnp.maximum(jnp.sum(w, axis=1, keepdims=True), 1e-12)
    tm = jnp.sum(w * t[None, :], axis=1, keepdims=True) / sw
    ym = jnp.sum(w * y, axis=1, keepdims=True) / sw
    sxx = jnp.sum(w * (t[None, :] - tm) ** 2, axis=1)
    sxy = jnp.sum(w * (t[None, :] - tm) * (y - ym), axis=1)
    slope = sxy / jnp.maximum(sxx, 1e-12)
    return LN2 / jnp.maximum(-slope, 1e-6)


# --------------------------------------------------------------------------------------------------
# statistics over patients (weights: evaluable patients, or their CRS probability)
# --------------------------------------------------------------------------------------------------
def weighted_quantile(x, w, q):
    """Quantile ``q`` of the values ``x`` with weights ``w`` (any shape, flattened): linear interpolation of the
    weighted CDF at the plotting positions ``(cum w - w/2) / sum w`` (the ordinary median for equal weights);
    continuous in ``x`` and ``w``. Zero-weight entries take no part."""
    x, w = jnp.ravel(x), jnp.ravel(w)
    key = jnp.where(w > 0, jax.lax.stop_gradient(x), jnp.inf)
    order = jnp.argsort(key)
    xs, ws = x[order], w[order]
    c = jnp.cumsum(ws)
    pos = (c - 0.5 * ws) / jnp.maximum(c[-1], 1e-300)
    m = xs.shape[0]
    if m == 1:
        return xs[0]
    i = jnp.clip(jnp.searchsorted(pos, q, side="right"), 1, m - 1)
    p0, p1, x0, x1 = pos[i - 1], pos[i], xs[i - 1], xs[i]
    dp = p1 - p0
    f = jnp.where(dp > 0, (q - p0) / jnp.where(dp > 0, dp, 1.0), 0.0)
    f = jnp.where(ws[i] > 0, jnp.clip(f, 0.0, 1.0), 0.0)
    return x0 + f * (x1 - x0)


def reduce(v, w, statistic: str):
    """The statistic of per-patient values ``v`` (N,) over weights ``w`` (N,)."""
    sw = jnp.maximum(jnp.sum(w), 1e-12)
    if statistic == "mean":
        return jnp.sum(w * v) / sw
    if statistic in ("median", "typical"):
        return weighted_quantile(v, w, 0.5)
    if statistic == "geometric_mean":
        return jnp.exp(jnp.sum(w * jnp.log(_tiny(v))) / sw)
    if statistic == "cv_pct":
        m = jnp.sum(w * v) / sw
        var = jnp.sum(w * (v - m) ** 2) / jnp.maximum(sw - 1.0, 1e-12)  # w: 0/1 evaluable flags
        return 100.0 * jnp.sqrt(jnp.maximum(var, 1e-30)) / jnp.maximum(m, 1e-30)
    raise ValueError(statistic)


def predict_row(r: SummaryRow, ts: np.ndarray, conc, okf, p_any_all, crs_onset, crs_p_any, ada_prob):
    """The row's predicted value (a JAX scalar).

    Args:
        conc: (N, T) concentrations (failed patients already replaced by finite values; ``okf`` 0 for them).
        okf: (N,) 1.0 for evaluable patients.
        p_any_all: (N,) each patient's probability of at least one CRS event (selection ``crs_patients``).
        crs_onset, crs_p_any: (N, D) per-dose median onset (h; NaN where none) and CRS probability.
        ada_prob: the drug's ADA probability at theta.
    """
    if r.quantity == "ada_incidence_pct":
        return 100.0 * jnp.asarray(ada_prob, float)
    if r.quantity == "crs_onset_h":
        on = crs_onset[:, r.crs_doses]
        p = crs_p_any[:, r.crs_doses] * okf[:, None]
        good = jnp.isfinite(on) & (p > 0)
        on = jnp.where(good, on, 0.0)
        w = jnp.where(good, p, 0.0)
        if r.statistic == "mean":
            return jnp.sum(w * on) / jnp.maximum(jnp.sum(w), 1e-12)
        return weighted_quantile(on, w, 0.5)
    w = okf * p_any_all if r.selection == "crs_patients" else okf
    q = r.quantity
    if q == "cmax_ug_per_ml":
        v = window_cmax(conc, r.idx[0])
    elif q == "tmax_h":
        v = window_tmax_h(conc, ts, r.idx[0], r.windows[0][0])
    elif q == "ctrough_ug_per_ml":
        v = conc[:, r.trough_idx]
    elif q == "accumulation_ratio_cmax":
        v = window_cmax(conc, r.idx[0]) / _tiny(window_cmax(conc, r.idx[1]))
    elif q == "accumulation_ratio_auc_tau":
        v = window_auc(conc, ts, r.idx[0]) / _tiny(window_auc(conc, ts, r.idx[1]))
    elif q == "terminal_half_life_day":
        v = terminal_half_life(conc, ts, *r.hl)
    else:  # pragma: no cover (plan_rows admits no other)
        raise ValueError(q)
    return reduce(v, w, r.statistic)


def log_density(r: SummaryRow, pred):
    """The row's log likelihood at the predicted value ``pred`` (JAX scalar)."""
    em = r.error_model
    if em == "lognormal":
        z = (math.log(r.observed) - jnp.log(_tiny(pred))) / r.sigma
        return -0.5 * z**2 - math.log(r.sigma)
    if em == "normal":
        z = (r.observed - pred) / r.sigma
        return -0.5 * z**2 - math.log(r.sigma)
    if em == "binomial":
        p = jnp.clip(pred / 100.0, 1e-6, 1.0 - 1e-6)
        return r.events * jnp.log(p) + (r.n - r.events) * jnp.log1p(-p)
    if em in ("interval", "upper_bound"):
        lo = r.lower if em == "interval" else -np.inf
        if r.log_scale:
            y = jnp.log(_tiny(pred))
            below = (math.log(lo) - y) if np.isfinite(lo) else 0.0 * y
            above = y - math.log(r.upper)
            s = EDGE_SIGMA_LOG
        else:
            below = (lo - pred) if np.isfinite(lo) else 0.0 * pred
            above = pred - r.upper
            s = EDGE_SIGMA_PP
        d = jnp.maximum(below, 0.0) + jnp.maximum(above, 0.0)
        return -0.5 * (d / s) ** 2
    raise ValueError(f"error model {em!r}")  # pragma: no cover (validated on load)


__all__ = ["SummaryRow", "row_label", "plan_rows", "needs", "grid_points", "merge_grid", "nearest", "decay_start",
           "attach_grid", "predict_row", "log_density", "weighted_quantile", "terminal_half_life", "window_tmax_h",
           "window_cmax", "window_auc", "HL_FOLLOW_UP_DAYS", "EDGE_SIGMA_LOG", "EDGE_SIGMA_PP"]
