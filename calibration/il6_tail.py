"""Which virtual patients carry a study's CRS-weighted IL-6 mean? Per-dose peaks per patient at a fit's MAP.

The MajesTEC-1 IL-6 mean is over patients with CRS (Willemin et al. CPT:PSP 2024); the likelihood compares it
with the mean over the fit's virtual patients weighted by each one's probability of any CRS
(:mod:`qsp.calibrate.likelihood`). An arithmetic mean of a heavy-tailed quantity can be carried by a few
patients. For one study at a fit's MAP, on the fit's own virtual patients, this prints per dose:

* the CRS-weighted mean and the median of the patients' own IL-6 peaks in the dose's window ``[t_k, t_k+1)``
  (a mean of each patient's peak, which is never below the peak of the weighted mean curve that the likelihood
  compares with the published points);
* the share of that weighted mean carried by the ``--top`` patients ranked by their peak after that dose;

and then the ``--top`` patients with the highest peak after ``--dose``: their weight, peaks per dose, per-dose
CRS probabilities, their CRS random effect (``CRS_OMEGA z``, log-odds) and prior-TCR status (both set the weight
with the solve), and the values of every parameter that varies between patients (the drawn IIV).

Only studies with an IL-6 mean over patients with CRS (selection ``crs_patients_before_tocilizumab``) whose label
regimen reproduces their dosing are accepted: for the others the likelihood does not weigh patients this way.

    python calibration/il6_tail.py --fit calibration/fits/map
    QSP_MODELS_DIR=<cards> python calibration/il6_tail.py --fit <DIR>/fit --top 5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

IL6 = "il6_pg_per_ml"
SELECTION = "crs_patients_before_tocilizumab"


def eligible_studies(targets, drugs) -> list[str]:
    """Studies of ``drugs`` with an IL-6 mean over patients with CRS, on a label regimen that reproduces them."""
    ts = targets.on_label_regimen()
    tc = ts.timecourses
    ids = set(tc.study_id[(tc.quantity == IL6) & (tc.statistic == "mean") & (tc.selection == SELECTION)])
    st = ts.studies
    return [s for s in st.study_id[st.drug.isin(list(drugs))] if s in ids]


def window_peaks(ts: np.ndarray, x: np.ndarray, dose_t: np.ndarray) -> np.ndarray:
    """(N, D): each patient's maximum of ``x`` (N, T) in each dose's window ``[t_k, t_k+1)`` (the last open);
    NaN where a window holds no output time."""
    edges = list(np.asarray(dose_t, float)) + [np.inf]
    out = np.full((x.shape[0], len(dose_t)), np.nan)
    for k in range(len(dose_t)):
        m = (ts >= edges[k]) & (ts < edges[k + 1])
        if m.any():
            out[:, k] = x[:, m].max(axis=1)
    return out


def carried_share(values: np.ndarray, weights: np.ndarray, top: int) -> float:
    """Share of ``sum(w v)`` carried by the ``top`` patients with the largest ``v``."""
    order = np.argsort(-values)
    total = float(np.sum(weights * values))
    return float(np.sum(weights[order[:top]] * values[order[:top]]) / total) if total > 0 else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", default="calibration/fits/map", help="a fit folder (its params.json)")
    ap.add_argument("--study", default="MajesTEC-1", help="a study of the fit with an IL-6 time course")
    ap.add_argument("--top", type=int, default=3, help="patients listed and counted in the share (default 3)")
    ap.add_argument("--dose", type=int, default=1, help="dose whose highest peaks are listed (1-based; default 1)")
    ap.add_argument("--doses", type=int, default=4, help="doses shown (default 4: teclistamab's step-up and the "
                                                          "first two treatment doses)")
    a = ap.parse_args(argv)
    meta_file = Path(a.fit) / "params.json"
    if not meta_file.is_file():
        ap.error(f"--fit: {meta_file} not found")
    if a.top < 1 or a.doses < 1:
        ap.error(f"--top and --doses must be positive integers, got {a.top} and {a.doses}")
    import jax.numpy as jnp

    from qsp.calibrate.fit import structure_mismatch
    from qsp.calibrate.likelihood import _params, build_problem, simulate_study
    from qsp.calibrate.space import ParameterSpace
    from qsp.calibrate.targets import load_targets
    from qsp.cards import load_card
    from qsp.simulate import STATUS_OK

    from qsp.errors import InputError

    try:
        meta = json.loads(meta_file.read_text())
        drugs = list(meta["drugs"])
        targets = load_targets(meta.get("targets"))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        ap.error(f"--fit: {meta_file} is not a fit's params.json ({type(e).__name__}: {e})")
    except InputError as e:
        ap.error(f"--fit: the fit's target tables do not load: {e}")
    allowed = eligible_studies(targets, drugs)
    if a.study not in allowed:
        ap.error(f"--study: {a.study!r} has no IL-6 mean over patients with CRS among the fit's studies; "
                 f"allowed: {', '.join(allowed) or '(none)'}")
    try:
        space = ParameterSpace({d: load_card(d).model() for d in drugs}, class_params=meta["class_params"],
                               drug_params=meta["drug_params"], deviations=meta["deviations"])
        why = structure_mismatch(space, meta)
        if why:
            raise SystemExit(f"error: {why}")
        flat, unravel = space.flatten(space.init())
        x = np.asarray(meta["x"], float)
        if x.shape != np.shape(flat):
            ap.error(f"--fit: {meta_file} holds {x.size} values for a space of {np.size(flat)} (cards changed?)")
        theta = unravel(jnp.asarray(x))
        problem = build_problem(space, targets, patients=meta["patients"], seed=meta["seed"], studies=[a.study],
                                stratified=meta.get("stratified", False))
    except (KeyError, TypeError) as e:
        ap.error(f"--fit: {meta_file} lacks a fit's settings ({type(e).__name__}: {e})")
    except InputError as e:
        ap.error(f"--fit: {e}")
    sim = problem.studies[0]
    if not 1 <= a.dose <= sim.dose_t.size:
        ap.error(f"--dose must lie in 1..{sim.dose_t.size} (the study's doses), got {a.dose}")
    shown = min(max(a.doses, a.dose), sim.dose_t.size)
    outs, status, crs = simulate_study(theta, problem, sim)
    ok = np.asarray(status) == STATUS_OK
    p_any = np.where(ok[:, None], np.nan_to_num(np.asarray(crs["p_any"])), 0.0)
    w = ok * (1.0 - np.prod(1.0 - p_any, axis=1))  # P(any CRS): the likelihood's weight for this selection
    peaks = window_peaks(np.asarray(sim.ts), np.asarray(outs[IL6]), np.asarray(sim.dose_t))
    peaks = np.where(ok[:, None], peaks, 0.0)
    top = min(a.top, int(ok.sum()))
    print(f"{a.study} at the MAP of {a.fit}: {ok.sum()} of {ok.size} virtual patients solved; weight = P(any CRS)")
    print(f"{'dose':>4s} {'day':>6s} {'CRS-weighted mean peak':>22s} {'median peak':>11s} "
          f"{'share of the top ' + str(top):>17s}")
    for k, t in enumerate(np.asarray(sim.dose_t)[:shown]):
        col = peaks[:, k]
        print(f"{k + 1:4d} {t:6.2f} {np.sum(w * col) / max(np.sum(w), 1e-12):22.2f} {np.median(col[ok]):11.2f} "
              f"{carried_share(col, w, top):17.2f}")
    p, c = _params(theta, space, sim, ok.size)
    varying = {k: np.asarray(v) for k, v in p.items() if np.ndim(v) and np.ptp(np.asarray(v)) > 0}
    order = np.argsort(-peaks[:, a.dose - 1])[:top]
    table = pd.DataFrame({"patient": order, "weight": w[order]})
    for k in range(shown):
        table[f"peak{k + 1}"] = peaks[order, k]
    for k in range(shown):
        table[f"p_crs{k + 1}"] = p_any[order, k]
    table["crs_eta"] = float(c["CRS_OMEGA"]) * np.asarray(sim.z_crs)[order]
    table["prior_tcr"] = np.asarray(sim.tcr)[order]
    for name, v in varying.items():
        table[name] = v[order]
    medians = {name: float(np.median(v[ok])) for name, v in varying.items()}
    print(f"\nthe {top} patients with the highest peak after dose {a.dose} (IL-6 pg/mL; the varying parameters, "
          "with the population median below)")
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(table.round(3).to_string(index=False))
        print(pd.DataFrame([medians]).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
