"""The MajesTEC-1 mean IL-6 over patients with CRS at a fit's MAP: trial-to-trial spread, IIV and selection.

The target (Willemin et al. CPT:PSP 2024, Fig. 1) is the arithmetic mean over the trial's patients who had CRS
(up to 112 of 119), values after tocilizumab excluded. The likelihood compares it with the CRS-weighted mean over
virtual patients, ``sum_i w_i IL6_i(t) / sum_i w_i`` with ``w_i = P(any CRS)_i`` (:mod:`qsp.calibrate.likelihood`),
which is the mean of an infinitely large trial. This script measures three things the fit does not:

* **Trial-to-trial spread.** A real trial's mean is over about 119 patients, and IL-6 is heavy-tailed between
  patients, so a few patients with very high values can make a one-time-point spike. ``--trials`` virtual
  trials of the study's N patients are drawn with replacement from a large fresh virtual population
  (``--patients``, Latin-hypercube draws, ``--seed``); each patient has CRS with its own probability
  ``1 - prod_k (1 - p_k)``, and each trial's mean over its CRS patients is taken at every target time. Only the
  choice of patients and their CRS is random (no assay noise, no within-patient day-to-day variation), so the
  spread printed is a lower bound.
* **The IIV of IL-6 production.** ``--omega-kil6 V1,V2,...`` repeats everything with the IIV SD of ``KIL6`` set
  to each value (the fit's own value first), the other parameters at the MAP.
* **The selection.** Besides the any-CRS weighting, a per-dose one: a point of dose interval k is averaged over
  the patients with CRS after dose k (``w_i = p_ik``). The figure has two different means at the same time at
  two doses (5.01 and 3.81 pg/mL at 71.75 h, 8.5 and 3.71 at 168.58 h), which one set of patients cannot give;
  one set per dose interval can: the higher value then ends the interval before the dose and the lower one
  starts the dose's own (:func:`interval_of_points`; the targets give both points of a pair one ``dose_no``).

Per setting it prints the series' log-normal log-likelihood (the target rows' sigma; as in the fit, without the
constant), how many of the four published peaks are within 1.5-fold and 1 day (the README's rule:
largest observed vs largest predicted point per dose interval), the mean per-dose CRS probability of the first
four doses (data 42 / 36 / 25 / 2 %), the CRS-weighted spread of the individual IL-6 maxima (the trial's largest
were about 290 pg/mL; SCIENCE.md) and, for the any-CRS weighting, the trial-to-trial 5-95% range at the peaks
and the share of virtual trials within 1.5-fold of each observed peak.

``--fit-likelihood`` adds, per ``OMEGA_KIL6``, the full log-likelihoods of the two studies whose IL-6 the fit
sees (MajesTEC-1 and blinatumomab-Hijazi2018) on the fit's own virtual patients (its size, seed and draws): which
way the data pull the IIV.

    python calibration/il6_mean_sampling.py --fit calibration/fits/map --patients 400 --trials 4000 \\
        --omega-kil6 0.6,0.8,1.0 --fit-likelihood
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from qsp.calibrate.fit import structure_mismatch
from qsp.calibrate.likelihood import build_problem, simulate_study, study_log_likelihood
from qsp.calibrate.space import ParameterSpace
from qsp.calibrate.targets import load_targets
from qsp.cards import load_card
from qsp.simulate import STATUS_OK

STUDY = "MajesTEC-1"
IL6_STUDIES = ("MajesTEC-1", "blinatumomab-Hijazi2018")


def trial_means(il6: np.ndarray, p_any: np.ndarray, n: int, trials: int, rng: np.random.Generator) -> np.ndarray:
    """(trials, T) mean IL-6 over the patients with CRS of ``trials`` virtual trials of ``n`` patients.

    Each trial draws ``n`` patients with replacement from the ``(P, T)`` IL-6 values ``il6``; patient ``i`` has
    CRS with probability ``p_any[i]``. A trial without any CRS patient gives NaN."""
    pick = rng.integers(0, il6.shape[0], size=(trials, n))
    crs = rng.random((trials, n)) < p_any[pick]
    k = crs.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("rn,rnt->rt", crs.astype(float), il6[pick]) / k[:, None]


def peak_windows(times: np.ndarray, dose_t: np.ndarray) -> list[np.ndarray]:
    """Masks of the target times in each dose interval ``[dose_k, dose_k+1)`` with at least 3 points (the
    README's peak rule, ``calibration/targets_table.py``)."""
    edges = list(dose_t) + [np.inf]
    masks = [(times >= edges[k]) & (times < edges[k + 1]) for k in range(len(dose_t))]
    return [m for m in masks if m.sum() >= 3]


def peaks_within(obs: np.ndarray, pred: np.ndarray, times: np.ndarray, windows) -> list[bool]:
    """Per window: the largest predicted point within 1.5-fold and 1 day of the largest observed point."""
    out = []
    for m in windows:
        io = np.flatnonzero(m)[np.argmax(obs[m])]
        ip = np.flatnonzero(m)[np.argmax(pred[m])]
        fold = max(pred[ip] / obs[io], obs[io] / pred[ip])
        out.append(bool(fold <= 1.5 and abs(times[ip] - times[io]) <= 1.0))
    return out


def interval_of_points(times: np.ndarray, obs: np.ndarray, dose_no: np.ndarray, dose_t: np.ndarray,
                       tol_day: float = 0.1) -> np.ndarray:
    """The dose interval (1-based) whose CRS patients a point is averaged over under the per-dose selection: the
    targets' ``dose_no``, except for two different values at one time within ``tol_day`` of a dose: the higher
    one ends the interval before that dose and the lower one starts the dose's own interval."""
    out = np.asarray(dose_no, int).copy()
    for t in np.unique(times):
        same = np.flatnonzero(times == t)
        k = int(np.argmin(np.abs(dose_t - t)))  # 0-based: dose k opens interval k + 1
        if same.size == 2 and obs[same[0]] != obs[same[1]] and k > 0 and abs(dose_t[k] - t) <= tol_day:
            out[same[np.argmax(obs[same])]] = k
            out[same[np.argmin(obs[same])]] = k + 1
    return out


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(x)
    return float(x[order][np.searchsorted(np.cumsum(w[order]) / w.sum(), q)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", default="calibration/fits/map")
    ap.add_argument("--patients", type=int, default=400, help="virtual patients simulated (default 400)")
    ap.add_argument("--seed", type=int, default=11, help="population seed (the fits use 1; default 11)")
    ap.add_argument("--trials", type=int, default=4000, help="virtual trials drawn (default 4000)")
    ap.add_argument("--omega-kil6", default="", help="comma-separated IIV SDs of KIL6 to try besides the fit's")
    ap.add_argument("--fit-likelihood", action="store_true",
                    help="also the log-likelihoods of the fit's IL-6 studies on its own virtual patients")
    ap.add_argument("--out", help="CSV of every setting's predicted series (default: printed only)")
    a = ap.parse_args(argv)
    try:
        extra = [float(v) for v in a.omega_kil6.split(",") if v.strip()]
    except ValueError:
        ap.error(f"--omega-kil6: {a.omega_kil6!r} must be comma-separated positive numbers")
    if any(not v > 0 for v in extra):
        ap.error(f"--omega-kil6: {a.omega_kil6!r} must be comma-separated positive numbers")
    if a.patients < 2 or a.trials < 1:
        ap.error("--patients must be at least 2 and --trials at least 1")
    meta = json.loads((Path(a.fit) / "params.json").read_text())
    if "teclistamab" not in meta["drugs"]:
        raise SystemExit(f"error: the fit in {a.fit} has no teclistamab")
    space = ParameterSpace({d: load_card(d).model() for d in meta["drugs"]}, class_params=meta["class_params"],
                           drug_params=meta["drug_params"], deviations=meta["deviations"])
    why = structure_mismatch(space, meta)
    if why:
        raise SystemExit(f"error: {why}")
    _, unravel = space.flatten(space.init())
    theta = unravel(jnp.asarray(np.asarray(meta["x"], float)))
    if "OMEGA_KIL6" not in theta["class"]:
        raise SystemExit(f"error: the fit in {a.fit} does not fit OMEGA_KIL6")
    targets = load_targets(meta.get("targets"))  # the tables the fit saw (fit_map.py --targets)
    problem = build_problem(space, targets, patients=a.patients, seed=a.seed, studies=[STUDY], stratified=True)
    sim = problem.studies[0]
    group = next(g for g in sim.tc_groups if g["quantity"] == "il6_pg_per_ml")
    t_idx, obs = np.asarray(group["t_idx"]), np.asarray(group["obs"], float)
    times, sigma = np.asarray(group["times"], float), np.asarray(group["sigma"], float)
    rows = targets.timecourses[(targets.timecourses.study_id == STUDY)
                               & (targets.timecourses.quantity == "il6_pg_per_ml")]
    dose_no = np.array([int(rows.dose_no[(abs(rows.time_day - t) < 1e-6) & (abs(rows.value - v) < 1e-9)].iloc[0])
                        for t, v in zip(times, obs)])
    interval = interval_of_points(times, obs, dose_no, np.asarray(sim.dose_t))
    windows = peak_windows(times, np.asarray(sim.dose_t))
    n = int(targets.studies.set_index("study_id").loc[STUDY, "n"])
    fitted = float(np.exp(theta["class"]["OMEGA_KIL6"]))
    omegas = [fitted] + extra
    print(f"{STUDY} at the MAP of {a.fit}: {a.patients} virtual patients (seed {a.seed}), {a.trials} virtual "
          f"trials of N = {n}; the fit's OMEGA_KIL6 = {fitted:.3f}")
    print("observed:", " ".join(f"{v:.2f}" for v in obs))
    print("per-dose selection, interval of each point:", " ".join(str(k) for k in interval))
    series = {"time_day": times, "observed": obs}
    for om in omegas:
        th = {**theta, "class": {**theta["class"], "OMEGA_KIL6": jnp.log(om)}}
        outs, status, crs = simulate_study(th, problem, sim)
        ok = np.asarray(status == STATUS_OK)
        p_dose = np.nan_to_num(np.asarray(crs["p_any"]))[ok]
        p_any = 1.0 - np.prod(1.0 - p_dose, axis=1)
        il6_full = np.asarray(outs["il6_pg_per_ml"])[ok]
        il6 = il6_full[:, t_idx]
        w_dose = p_dose[:, interval - 1]
        preds = {"any-CRS": (p_any @ il6) / p_any.sum(), "per-dose": (w_dose * il6).sum(0) / w_dose.sum(0)}
        peak_i = il6_full.max(axis=1)
        print(f"\nOMEGA_KIL6 = {om:.3f}: {ok.sum()} of {ok.size} solved; per-dose CRS "
              f"{' / '.join(f'{v:.1f}' for v in 100 * p_dose.mean(0)[:4])} %; individual IL-6 maxima, CRS-weighted "
              f"median {weighted_quantile(peak_i, p_any, 0.5):.1f}, 90th {weighted_quantile(peak_i, p_any, 0.9):.1f},"
              f" 99th {weighted_quantile(peak_i, p_any, 0.99):.1f}, largest {peak_i.max():.1f} pg/mL")
        for name, pred in preds.items():
            ll = -0.5 * np.sum((np.log(obs / pred) / sigma) ** 2)
            hits = peaks_within(obs, pred, times, windows)
            print(f"  {name:8s} log-lik {ll:8.2f}  peaks within {sum(hits)}/{len(hits)}  predicted: "
                  + " ".join(f"{v:.2f}" for v in pred))
            series[f"{name}_omega{om:.3f}"] = pred
        means = trial_means(il6, p_any, n, a.trials, np.random.default_rng(a.seed))
        q05, q95 = np.nanpercentile(means, [5, 95], axis=0)
        for m in windows:
            j = np.flatnonzero(m)[np.argmax(obs[m])]
            r = means[:, j] / obs[j]
            hit = int(np.sum((r >= 1 / 1.5) & (r <= 1.5)))
            print(f"  trials, peak at day {times[j]:.2f} (observed {obs[j]:.2f}): 5-95% {q05[j]:.2f}-{q95[j]:.2f}, "
                  f"within 1.5-fold in {hit} of {np.isfinite(r).sum()} trials")
    if a.fit_likelihood:
        own = build_problem(space, targets, patients=meta["patients"], seed=meta["seed"],
                            studies=[s for s in IL6_STUDIES if s in meta["studies"]],
                            stratified=meta.get("stratified", False))
        print(f"\nstudy log-likelihoods on the fit's own {meta['patients']} virtual patients (seed {meta['seed']}):")
        for st in own.studies:
            fn = jax.jit(lambda th, st=st: study_log_likelihood(th, own, st)[0])
            vals = [float(fn({**theta, "class": {**theta["class"], "OMEGA_KIL6": jnp.log(om)}})) for om in omegas]
            print(f"  {st.study_id}: " + ", ".join(f"{v:.2f} at {om:.3f}" for om, v in zip(omegas, vals)))
    if a.out:
        pd.DataFrame(series).to_csv(a.out, index=False)


if __name__ == "__main__":
    main()
