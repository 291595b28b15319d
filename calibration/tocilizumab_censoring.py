"""Would dropping IL-6 values after tocilizumab change the MajesTEC-1 comparison? A measurement at a fit's MAP.

The MajesTEC-1 mean IL-6 (Willemin et al. CPT:PSP 2024) is over patients who had CRS, with values after
tocilizumab excluded. The likelihood weighs each virtual patient by its probability of any CRS and does not
model the exclusion (:mod:`qsp.calibrate.likelihood`). This script predicts the mean both ways on the fit's own
MajesTEC-1 patients:

* tocilizumab is given at a dose's CRS event with probability ``p_g2 + f1 (p_any - p_g2)`` (every grade >= 2
  event, and a share ``f1`` of grade-1-only events), at the event's median onset (:func:`qsp.crs.crs_per_dose`),
  smoothed over ``--width-h`` hours; ``f1 = (toci - g2plus) / (any - g2plus)`` from MajesTEC-1's tocilizumab use
  and grades (``data/crs_overall.csv``: 36.4% tocilizumab, 72.1% any, 21.8% grade >= 2, so f1 = 0.29);
* patient i at time t then weighs ``P(CRS, no tocilizumab before t) = prod_k (1 - q_ik G_k(t)) - prod_k (1 - p_ik)``.

    python calibration/tocilizumab_censoring.py --fit calibration/fits/map
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", default="calibration/fits/map")
    ap.add_argument("--width-h", type=float, default=6.0, help="logistic width of the tocilizumab time (hours)")
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
    problem = build_problem(space, load_targets(meta.get("targets")), patients=meta["patients"], seed=meta["seed"],
                            studies=[STUDY], stratified=meta.get("stratified", False))
    sim = problem.studies[0]
    outs, status, crs = simulate_study(theta, problem, sim)
    ok = np.asarray(status == STATUS_OK, float)
    p_any, p_g2 = (np.nan_to_num(np.asarray(crs[k])) for k in ("p_any", "p_g2plus"))
    onset_d = np.nan_to_num(np.asarray(crs["onset_h"]), nan=24.0) / 24.0
    ov = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "crs_overall.csv")
    r = ov[ov.drug == "teclistamab"].iloc[0]
    g2 = r.crs_g2_pct + r.crs_g3plus_pct
    f1 = (r.tocilizumab_pct - g2) / (r.crs_any_pct - g2)
    q = p_g2 + f1 * (p_any - p_g2)
    none_any = np.prod(1.0 - p_any, axis=1)
    il6 = np.asarray(outs["il6_pg_per_ml"])
    group = next(g for g in sim.tc_groups if g["quantity"] == "il6_pg_per_ml")
    rows = []
    for t, obs, j in zip(group["times"], group["obs"], group["t_idx"]):
        given = 1.0 / (1.0 + np.exp(-(t - sim.dose_t[None, :] - onset_d) * 24.0 / a.width_h))
        w_crs = ok * (1.0 - none_any)
        w_cens = ok * np.clip(np.prod(1.0 - q * given, axis=1) - none_any, 0.0, None)
        x = il6[:, j]
        rows.append({"time_day": t, "observed": obs, "crs_weighted": np.sum(w_crs * x) / np.sum(w_crs),
                     "crs_before_tocilizumab": np.sum(w_cens * x) / np.sum(w_cens),
                     "share_still_counted": np.sum(w_cens) / np.sum(w_crs)})
    out = pd.DataFrame(rows)
    print(f"f1 = {f1:.2f}; median onset (h) of the first 4 doses: "
          f"{np.round(np.nanmedian(np.asarray(crs['onset_h']), axis=0)[:4], 1)}")
    print(out.round(2).to_string(index=False))


if __name__ == "__main__":
    main()
