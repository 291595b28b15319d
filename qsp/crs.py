"""Cytokine release syndrome (CRS): per-dose probabilities of ASTCT grade >= 1, >= 2, >= 3, and onset.

No IL-6 threshold defines CRS (Hosseini et al. npj Syst Biol Appl 2020), so CRS is a probabilistic
observation layer on top of the mechanism (SCIENCE.md 2.5): a proportional-odds (ordinal logistic)
model per patient ``i`` and dose ``k``, driven by the mechanistic cytokine exposure after that dose.

Exposure (dimensionless): the surge of **T-cell cytokines** the dose adds, read from the mechanism's
T-cell cytokine drive ``X`` (:mod:`qsp.components.cytokines`, IL-6-equivalent pg/mL: the first-wave
IFN-g/TNF-a/IL-2 of the secreting T cells, before monocyte amplification), as the log rise from its
level at the dose time to its peak in the dose's window ``[t_k, t_{k+1})`` (the last dose's window
runs to the end of the horizon), on a scale ``CRS_X50``::

    x_ik = log((CRS_X50 + max_{t in window k} X_i(t)) / (CRS_X50 + X_i(t_k)))

(a plateau carried over from earlier doses adds no new risk; the rise does; a dose that engages no new
T cells has ``x = 0``).

Why the T-cell drive and not serum IL-6 (changed from the prior layer, which used the log fold rise of
IL-6): in MajesTEC-1, 42% of patients had CRS after step-up dose 1 while the mean IL-6 of the patients
with CRS rose only from 2.8 to ~4.7 pg/mL after that dose (and to ~21 after the first treatment dose,
which 25% reacted to; Tecvayli US PI 5.1; Willemin et al. CPT:PSP 2024, Fig. 1). Fever and the first
CRS signs follow the T-cell cytokines; serum IL-6 is the monocyte-amplified, cooperative readout that
rises steeply only with larger drives (:mod:`qsp.components.cytokines`). An IL-6-driven layer fitted to
these data sets the exposure's weight near zero and explains the per-dose incidences with its intercept
and tolerance alone (joint MAP fit, calibration/fits/map: ``CRS_BETA`` 0.10, later doses with no IL-6
rise at 19-29%), which is no longer a mechanistic link. IL-6 peaks stay in the per-dose output.

Tolerance from earlier doses (clinical tachyphylaxis beyond the T-cell desensitisation already in the
mechanism; it wears off, so a long pause restores the risk, as the labels' re-step-up rules assume)::

    M_ik = sum_{j<k} x_ij exp(-(t_k - t_j) / CRS_TOL_TAU)

Linear predictor and grade probabilities (``sigma`` the logistic function; thresholds ordered so
``P(>=1) >= P(>=2) >= P(>=3)`` holds for every patient)::

    s_ik = CRS_BETA x_ik - CRS_TOL M_ik + CRS_PRIOR_TCR prior_tcr_i + eta_i ,  eta_i ~ N(0, CRS_OMEGA^2)
    P(grade >= 1) = sigma(CRS_THETA1 + s_ik)
    P(grade >= 2) = sigma(CRS_THETA1 - CRS_DELTA2 + s_ik)
    P(grade >= 3) = sigma(CRS_THETA1 - CRS_DELTA2 - CRS_DELTA3 + s_ik)

Onset (latent-threshold reading of the same model: CRS starts when the running exposure crosses the
patient's logistic threshold): with ``P1(t)`` the grade >= 1 probability computed from the running
maximum of ``x`` up to time ``t`` in the window, the onset time distribution given CRS is
``F(t) = (P1(t) - P1(t_k)) / (P1(end) - P1(t_k))``; the reported onset is its median, in hours after
the dose (linear interpolation between grid points).

An ordinal model of this kind fits the published per-dose incidences; Irby, Friberg & Karlsson (PAGE,
elranatamab) used a Markov model over grades 0/1/2-3 with "response" and "tolerance" terms. The
default values (:mod:`qsp.components.crs_link`) are priors fitted by ``calibration/crs_prior.py`` to
teclistamab's label step-up regimen (42% / 36% / 25% / 2%, Tecvayli US PI 5.1) with the prior
mechanistic model; the calibration layer refits them jointly with the mechanism.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from .errors import InputError

from .components.crs_link import CRS_PARAMS  # noqa: E402  (declared in the model namespace)

CRS_DEFAULTS = {p.name: p.value for p in CRS_PARAMS}
GRADES = (1, 2, 3)


def crs_params(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """CRS parameters: defaults with validated overrides (unknown names list the allowed ones)."""
    out = dict(CRS_DEFAULTS)
    info = {p.name: p for p in CRS_PARAMS}
    for k, v in (overrides or {}).items():
        if k not in info:
            raise InputError(f"unknown CRS parameter {k!r}; allowed: {', '.join(info)}", field=f"crs.{k}")
        why = info[k].violation(v)
        if why is not None:
            raise InputError(f"CRS parameter {k} {why}", field=f"crs.{k}")
        out[k] = float(v)
    return out


def thresholds(c: Mapping) -> jnp.ndarray:
    """The three ordered log-odds intercepts (grade >= 1, >= 2, >= 3)."""
    t1 = c["CRS_THETA1"]
    t2 = t1 - c["CRS_DELTA2"]
    return jnp.stack([t1, t2, t2 - c["CRS_DELTA3"]])


def dose_windows(seg_t, dose_t):
    """Window (dose index, -1 before the first dose) of every segment, from the segment start time."""
    return jnp.searchsorted(dose_t, seg_t[:, 0], side="right") - 1


def _window_cummax(win, xs):
    """Running maximum of ``xs`` restarted wherever the window id ``win`` changes (windows are contiguous runs of
    the nondecreasing ``win``): one associative scan over the samples."""
    def combine(a, b):
        wa, va = a
        wb, vb = b
        return wb, jnp.where(wa == wb, jnp.maximum(va, vb), vb)

    return jax.lax.associative_scan(combine, (win, xs))[1]


def per_dose_exposure(seg_t, seg_il6, il6_0, dose_t, dose_mask):
    """Per-dose peak and timing of a positive signal from the per-segment samples of one patient.

    Args:
        seg_t, seg_il6: (n_seg, K) segment sample times (day) and the signal (IL-6 in pg/mL, or
            ``CRS_X50 + X``), in time order.
        il6_0: the signal's reference level (baseline IL-6, or ``CRS_X50``).
        dose_t: (D,) drug dose times (day), ascending, padded with ``+inf``; ``dose_mask`` (D,) real doses.

    Returns:
        dict of (D,) arrays: ``peak`` (pg/mL), ``x`` (log fold rise at the peak), ``t_peak_h`` (hours
        after the dose; the first sample at the peak), ``x_start`` (log fold at the dose time), ``present``
        (the window has samples), ``first`` / ``last`` (sample index of the window's first and last sample);
        and per sample (n_seg*K,): ``run`` (the running maximum of the log fold rise within its window),
        ``win`` (the sample's window, -1 before the first dose), ``valid`` (inside a real dose's window) and
        ``times``.

    Every sample belongs to one window (the window of its segment's start), and windows are contiguous in
    time, so the running maxima, peaks and first/last samples are computed in one pass over the samples
    (a segmented scan and scatters), not per dose over all samples: the per-dose CRS layer is what a sampler
    over CRS parameters evaluates thousands of times (``calibration/jobs/joint_crs_nuts.toml``).
    """
    n_dose = dose_t.shape[0]
    k_seg = dose_windows(seg_t, dose_t)
    n_seg, n_k = seg_t.shape
    times = seg_t.reshape(-1)
    xs = jnp.log(jnp.maximum(seg_il6, 1e-300) / il6_0).reshape(-1)
    win = jnp.repeat(k_seg, n_k)
    valid = (win >= 0) & dose_mask[jnp.clip(win, 0, n_dose - 1)]
    idx = jnp.arange(times.shape[0])
    slot = jnp.where(valid, win, n_dose)  # scatter target; n_dose = dropped
    big = times.shape[0]
    first = jnp.full(n_dose, big).at[slot].min(idx, mode="drop")
    last = jnp.full(n_dose, -1).at[slot].max(idx, mode="drop")
    present = last >= 0
    first_c, last_c = jnp.clip(first, 0, big - 1), jnp.clip(last, 0, big - 1)
    run = _window_cummax(win, xs)
    x_peak = jnp.where(present, run[last_c], jnp.nan)
    at_peak = valid & (xs == x_peak[jnp.clip(win, 0, n_dose - 1)])
    i_peak = jnp.clip(jnp.full(n_dose, big).at[jnp.where(at_peak, win, n_dose)].min(idx, mode="drop"), 0, big - 1)
    t_peak_h = jnp.where(present & jnp.isfinite(x_peak), (times[i_peak] - dose_t) * 24.0, jnp.nan)
    x_start = jnp.where(present, xs[first_c], jnp.nan)
    peak = il6_0 * jnp.exp(x_peak)
    return {"peak": peak, "x": x_peak, "t_peak_h": t_peak_h, "x_start": x_start, "present": present,
            "first": first_c, "last": last_c, "run": run, "win": win, "valid": valid, "times": times}


def tolerance_memory(x, dose_t, present, tau):
    """``M_k = sum_{j<k} x_j exp(-(t_k - t_j)/tau)`` over doses inside the horizon."""
    xj = jnp.where(present, x, 0.0)
    dt = dose_t[:, None] - dose_t[None, :]
    earlier = (jnp.arange(x.shape[0])[None, :] < jnp.arange(x.shape[0])[:, None]) & present[None, :]
    earlier = earlier & jnp.isfinite(dose_t)[:, None]  # +inf padding: exp(-inf) = 0, but its tau-gradient is NaN
    w = jnp.where(earlier, jnp.exp(-jnp.where(earlier, dt, 0.0) / tau), 0.0)
    return w @ xj


def _median_onset_h(e, dose_t, base, beta):
    """Median onset (hours after the dose) of the latent-threshold reading, per dose, from
    :func:`per_dose_exposure`'s per-sample running maxima ``e`` (linear interpolation between samples)."""
    n_dose = dose_t.shape[0]
    win, valid, times, first, last = e["win"], e["valid"], e["times"], e["first"], e["last"]
    wc = jnp.clip(win, 0, n_dose - 1)
    p_run = jax.nn.sigmoid(base[wc] + beta * jnp.where(valid, e["run"], 0.0))  # P1 from the running max
    p0, p1 = p_run[first], p_run[last]
    rise = p1 - p0
    frac = jnp.where(valid, (p_run - p0[wc]) / jnp.where(rise[wc] > 0, rise[wc], 1.0), -1.0)
    hit = valid & (frac >= 0.5)
    big = times.shape[0]
    j = jnp.full(n_dose, big).at[jnp.where(hit, win, n_dose)].min(jnp.arange(big), mode="drop")
    any_hit = j < big
    j = jnp.where(any_hit, j, 0)
    jm = jnp.maximum(j - 1, 0)
    f_hi, f_lo = frac[j], frac[jm]
    t_hi, t_lo = times[j], times[jm]
    w = jnp.where((j > first) & (f_hi > f_lo), (0.5 - f_lo) / jnp.where(f_hi > f_lo, f_hi - f_lo, 1.0), 1.0)
    t_on = t_lo + jnp.clip(w, 0.0, 1.0) * (t_hi - t_lo)
    ok = any_hit & (rise > 1e-12) & e["present"]
    return jnp.where(ok, (t_on - dose_t) * 24.0, jnp.nan)


def probabilities(x, dose_t, present, c: Mapping, eta=0.0, prior_tcr=0.0):
    """Grade probabilities (D, 3) and the tolerance memory (D,) from per-dose exposures ``x`` (D,)."""
    x = jnp.where(present, x, 0.0)  # finite everywhere, so gradients stay finite
    mem = tolerance_memory(x, dose_t, present, c["CRS_TOL_TAU"])
    shift = -c["CRS_TOL"] * mem + c["CRS_PRIOR_TCR"] * prior_tcr + eta
    s = c["CRS_BETA"] * x + shift
    probs = jax.nn.sigmoid(thresholds(c)[None, :] + s[:, None])
    return jnp.where(present[:, None], probs, jnp.nan), mem, shift


def crs_per_dose(seg_t, seg_drive, drive_0, dose_t, dose_mask, c: Mapping, eta=0.0, prior_tcr=0.0, seg_il6=None,
                 il6_0=None):
    """Per-dose CRS probabilities and onset for one patient (pure JAX; vmap over patients).

    Args:
        seg_t, seg_drive: per-segment samples (see :func:`qsp.simulate.solve_events_windows`) of the
            exposure signal: ``CRS_X50 + X`` with ``X`` the T-cell cytokine drive (pg/mL IL-6-equivalent),
            ``drive_0 = CRS_X50`` (see the module docstring; :func:`qsp.trial.patient_batch_fn` builds them).
        dose_t, dose_mask: (D,) drug dose times (day, padded with ``+inf``) and real-dose flags.
        c: CRS parameters (:data:`CRS_PARAMS` names).
        eta: patient-level CRS sensitivity (log-odds); ``prior_tcr``: 1 after prior T-cell-redirecting therapy.
        seg_il6, il6_0: per-segment serum IL-6 (pg/mL) and its baseline, for the per-dose IL-6 peak columns
            (default: the exposure signal itself).

    Returns:
        dict of (D,) arrays: ``il6_predose`` and ``il6_peak`` (pg/mL), ``il6_peak_h`` (hours after the
        dose), ``exposure`` (x, log rise of the drive), ``tolerance`` (M), ``p_any``, ``p_g2plus``,
        ``p_g3plus``, ``onset_h`` (median onset given CRS), ``drive_predose``, ``drive_peak`` and
        ``drive_peak_h`` (the T-cell cytokine drive at the dose, its peak in the window, pg/mL
        IL-6-equivalent, when ``seg_drive`` is ``CRS_X50 + X``, and the peak's time in hours after the
        dose); NaN for doses outside the horizon.
    """
    e = per_dose_exposure(seg_t, seg_drive, drive_0, dose_t, dose_mask)
    x = e["x"] - e["x_start"]
    probs, mem, shift = probabilities(x, dose_t, e["present"], c, eta, prior_tcr)
    start = jnp.where(e["present"], e["x_start"], 0.0)
    base = thresholds(c)[0] + shift - c["CRS_BETA"] * start
    onset = _median_onset_h(e, dose_t, base, c["CRS_BETA"])
    il = e if seg_il6 is None else per_dose_exposure(seg_t, seg_il6, il6_0, dose_t, dose_mask)
    ref = drive_0 if seg_il6 is None else il6_0
    return {"il6_predose": ref * jnp.exp(il["x_start"]), "il6_peak": il["peak"], "il6_peak_h": il["t_peak_h"],
            "exposure": jnp.where(e["present"], x, jnp.nan), "tolerance": jnp.where(e["present"], mem, jnp.nan),
            "p_any": probs[:, 0], "p_g2plus": probs[:, 1], "p_g3plus": probs[:, 2], "onset_h": onset,
            "drive_predose": drive_0 * jnp.exp(e["x_start"]) - drive_0, "drive_peak": e["peak"] - drive_0,
            "drive_peak_h": e["t_peak_h"]}
