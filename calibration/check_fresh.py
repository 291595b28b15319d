"""A fit's targets predicted on a fresh virtual population: does the fit generalise beyond its own patients?

A fit's likelihood averages over a fixed-seed virtual population (common random numbers): with few patients per
study the optimum can fit that sample rather than the population (measured: the 24-patient joint fit,
``calibration/fits/map_n24``, gave MajesTEC-1 per-dose CRS 37.7 / 37.2 / 30.0% on its own patients and
47.8 / 50.2 / 40.3% on 200 fresh ones; label 42 / 36 / 25%). This script rebuilds the fit's problem with
another seed and size, predicts every target at the fit's MAP and writes ``fresh_<N>_seed<S>.csv`` (observed,
predicted on the fit's patients, predicted on the fresh ones, within tolerance for both) into the fit folder.

    python calibration/check_fresh.py --fit calibration/fits/map --patients 200 --seed 7 [--studies A,B]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd

from qsp.calibrate.fit import _within, structure_mismatch
from qsp.calibrate.likelihood import build_problem, predict
from qsp.calibrate.space import ParameterSpace
from qsp.calibrate.targets import load_targets
from qsp.cards import load_card


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", default="calibration/fits/map")
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--studies", default="", help="study ids (default: every study of the fit)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stratified", action="store_true",
                    help="Latin-hypercube patients (default: plain draws, as a virtual trial has)")
    a = ap.parse_args(argv)
    fit_dir = Path(a.fit)
    meta = json.loads((fit_dir / "params.json").read_text())
    if a.patients < 1:
        sys.exit("error: --patients must be >= 1")
    if a.seed == meta["seed"]:
        sys.exit(f"error: --seed {a.seed} is the fit's own seed: choose another for a fresh population")
    models = {d: load_card(d).model() for d in meta["drugs"]}
    space = ParameterSpace(models, class_params=meta["class_params"], drug_params=meta["drug_params"],
                           deviations=meta["deviations"])
    if space.names() != meta["names"]:
        sys.exit("error: the fit's parameter names do not match the space rebuilt from its params.json")
    why = structure_mismatch(space, meta)
    if why:
        sys.exit(f"error: {why}")
    _, unravel = space.flatten(space.init())
    theta = unravel(jnp.asarray(np.asarray(meta["x"], float)))
    studies = [s.strip() for s in a.studies.split(",") if s.strip()] or None
    t0 = time.time()
    problem = build_problem(space, load_targets(meta.get("targets")), patients=a.patients, seed=a.seed, studies=studies,
                            stratified=a.stratified)
    fresh = predict(theta, problem, threads=a.threads)
    own = pd.read_csv(fit_dir / "targets.csv")
    # rows match by target and their order within it (both come from the same study definitions)
    key = ["target", "row_in_target"]
    fresh["row_in_target"] = fresh.groupby("target").cumcount()
    own["row_in_target"] = own.groupby("target").cumcount()
    out = fresh.merge(own[key + ["predicted_map", "within"]].rename(columns={"within": "within_fit_patients"}),
                      on=key, how="left").drop(columns="row_in_target")
    out["within"] = [_within(r) for r in out.itertuples(index=False)]
    path = fit_dir / f"fresh_{a.patients}_seed{a.seed}{'_stratified' if a.stratified else ''}.csv"
    out.to_csv(path, index=False, float_format="%.6g")
    crs = out[out.kind == "crs_incidence"]
    print(crs[["target", "observed", "predicted_map", "predicted", "within"]]
          .rename(columns={"predicted_map": "fit's patients", "predicted": f"fresh {a.patients}"})
          .round(1).to_string(index=False))
    fitted = out[out.in_fit.astype(bool)]
    for kind, g in fitted.groupby("kind", sort=False):
        print(f"{kind}: {int(g.within.sum())}/{len(g)} within tolerance on the fresh population "
              f"({int(g.within_fit_patients.fillna(False).astype(bool).sum())}/{len(g)} on the fit's own)")
    print(f"wrote {path} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
