"""How far can a trial's mean IL-6 over patients with CRS fall from the population mean? A measurement at a fit's MAP.

The MajesTEC-1 IL-6 target (Willemin et al. CPT:PSP 2024, Fig. 1) is the arithmetic mean over the trial's
patients who had CRS (up to 112 of 119). The likelihood compares it with the CRS-weighted mean over virtual
patients, ``sum_i w_i IL6_i(t) / sum_i w_i`` with ``w_i = P(any CRS)_i`` (:mod:`qsp.calibrate.likelihood`): the
mean of an infinitely large trial. A real trial's mean is over about 119 patients, and IL-6 is heavy-tailed
between patients, so one or two patients with very high values can make a one-time-point spike in the mean.

This script asks whether the published spikes are within that sampling variation *as the fitted model sees it*:
it simulates the study at the fit's MAP on a large fresh virtual population (``--patients``, Latin-hypercube
draws, ``--seed``), then draws ``--trials`` virtual trials of the study's N patients (with replacement from that
population; each patient has CRS with its own probability ``1 - prod_k (1 - p_k)``) and takes each trial's mean
IL-6 over its patients with CRS at every target time. It prints, per target time, the observed mean, the
population CRS-weighted mean (what the fit compares with) and the 5th / 50th / 95th percentiles over trials;
per published peak, the share of trials whose mean at that time is within 1.5-fold of the observed value; and the
spread of the individual IL-6 maxima of the virtual patients with CRS (the trial's largest individual maxima
were about 290 pg/mL; SCIENCE.md). No trial-level randomness beyond the choice of patients and their CRS is
modelled (no assay noise, no within-patient day-to-day variation), so the spread printed is a lower bound.

    python calibration/il6_mean_sampling.py --fit calibration/fits/map --patients 400 --trials 4000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd

from qsp.calibrate.fit import structure_mismatch
from qsp.calibrate.likelihood import build_problem, simulate_study
from qsp.calibrate.space import ParameterSpace
from qsp.calibrate.targets import load_targets
from qsp.cards import load_card
from qsp.simulate import STATUS_OK

STUDY = "MajesTEC-1"
PEAK_DAYS = (2.0, 5.0, 8.0, 13.0)  # the aligned times (model days) of the four published peaks


def trial_means(il6: np.ndarray, p_any: np.ndarray, n: int, trials: int, rng: np.random.Generator) -> np.ndarray:
    """(trials, T) mean IL-6 over the patients with CRS of ``trials`` virtual trials of ``n`` patients.

    Each trial draws ``n`` patients with replacement from the ``(P, T)`` IL-6 values ``il6``; patient ``i`` has
    CRS with probability ``p_any[i]``. A trial without any CRS patient gives NaN."""
    pick = rng.integers(0, il6.shape[0], size=(trials, n))
    crs = rng.random((trials, n)) < p_any[pick]
    x = il6[pick]  # (trials, n, T)
    k = crs.sum(axis=1)
    with np.errstate(invalid="ignore"):
        return np.einsum("rn,rnt->rt", crs.astype(float), x) / k[:, None]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", default="calibration/fits/map")
    ap.add_argument("--patients", type=int, default=400, help="virtual patients simulated (default 400)")
    ap.add_argument("--seed", type=int, default=11, help="population seed (the fits use 1; default 11)")
    ap.add_argument("--trials", type=int, default=4000, help="virtual trials drawn (default 4000)")
    ap.add_argument("--out", help="CSV of the per-time table (default: printed only)")
    a = ap.parse_args(argv)
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
    targets = load_targets()
    problem = build_problem(space, targets, patients=a.patients, seed=a.seed, studies=[STUDY], stratified=True)
    sim = problem.studies[0]
    outs, status, crs = simulate_study(theta, problem, sim)
    ok = np.asarray(status == STATUS_OK)
    p_any = 1.0 - np.prod(1.0 - np.nan_to_num(np.asarray(crs["p_any"])), axis=1)
    il6_all = np.asarray(outs["il6_pg_per_ml"])
    group = next(g for g in sim.tc_groups if g["quantity"] == "il6_pg_per_ml")
    t_idx = np.asarray(group["t_idx"])
    il6, p_any = il6_all[ok][:, t_idx], p_any[ok]
    n = int(targets.studies.set_index("study_id").loc[STUDY, "n"])
    rng = np.random.default_rng(a.seed)
    means = trial_means(il6, p_any, n, a.trials, rng)
    pop = (p_any @ il6) / p_any.sum()
    q05, q50, q95 = np.nanpercentile(means, [5, 50, 95], axis=0)
    obs = np.asarray(group["obs"], float)
    times = np.asarray(group["times"], float)
    table = pd.DataFrame({"time_day": times, "observed": obs, "population_crs_mean": pop, "trial_p05": q05,
                          "trial_median": q50, "trial_p95": q95,
                          "share_trials_ge_observed": np.nanmean(means >= obs[None, :], axis=0)})
    print(f"{STUDY} at the MAP of {a.fit}: {ok.sum()} of {ok.size} virtual patients solved; "
          f"{a.trials} virtual trials of N = {n}; mean P(any CRS) {p_any.mean():.3f}")
    print(table.round(3).to_string(index=False))
    print("\npublished peaks: share of virtual trials whose mean at that time is within 1.5-fold of the observed")
    for day in PEAK_DAYS:
        j = int(np.argmin(np.abs(times - day)))
        r = means[:, j] / obs[j]
        print(f"  day {times[j]:.2f}: observed {obs[j]:.2f}, population {pop[j]:.2f}, "
              f"trials 5-95% {q05[j]:.2f}-{q95[j]:.2f}, within 1.5-fold {np.nanmean((r >= 1 / 1.5) & (r <= 1.5)):.3f}")
    peak_i = il6_all[ok].max(axis=1)
    w = p_any / p_any.sum()
    order = np.argsort(peak_i)
    cdf = np.cumsum(w[order])
    pct = {q: peak_i[order][np.searchsorted(cdf, q / 100)] for q in (50, 90, 99)}
    print(f"\nindividual IL-6 maxima over the simulated horizon, CRS-weighted: median {pct[50]:.1f}, "
          f"90th {pct[90]:.1f}, 99th {pct[99]:.1f}, largest {peak_i.max():.1f} pg/mL (trial: up to about 290)")
    if a.out:
        table.to_csv(a.out, index=False)


if __name__ == "__main__":
    main()
