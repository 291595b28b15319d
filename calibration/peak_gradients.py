"""Check a fit's gradients against the jnp.max pitfall (qsp/reductions.py): at the fit's optimum, each study's
-log likelihood and its jitted gradient with ``qsp.reductions.peak`` (the code now) and with ``jnp.max`` (the code
before 2026-12-06, with which the shipped joint MAP was fitted). Studies checked: those whose terms take a maximum
(Cmax, accumulation-ratio and half-life summaries, individual peaks), or the ones named.

    python calibration/peak_gradients.py [--fit calibration/fits/map] [--studies MajesTEC-1,...]

About 70-90 s per study on one core (two compiled programs each).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", default="calibration/fits/map", help="fit folder with params.json")
    ap.add_argument("--studies", default="", help="comma-separated study ids (default: every study with a maximum)")
    a = ap.parse_args(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np

    import qsp.calibrate.likelihood as lk
    import qsp.calibrate.summaries as sumr
    from qsp.calibrate.space import ParameterSpace
    from qsp.calibrate.targets import load_targets
    from qsp.cards import load_card

    path = Path(a.fit) / "params.json"
    if not path.is_file():
        ap.error(f"--fit: {path} not found")
    d = json.loads(path.read_text())
    space = ParameterSpace({k: load_card(k).model() for k in d["drugs"]}, class_params=tuple(d["class_params"]),
                           drug_params=tuple(d["drug_params"]), deviations=d["deviations"])
    prob = lk.build_problem(space, load_targets(d.get("targets")), patients=d["patients"], seed=d["seed"],
                              stratified=d["stratified"])
    x = jnp.asarray(d["x"])
    _, x0, unravel = lk.neg_log_posterior_flat(prob)
    if x0.size != x.size:
        ap.error(f"--fit: {x.size} fitted values, the current space has {x0.size} (cards or code changed)")
    names = space.names()
    want = {s.strip() for s in a.studies.split(",") if s.strip()}
    unknown = want - {s.study_id for s in prob.studies}
    if unknown:
        ap.error(f"--studies: unknown {sorted(unknown)}")
    for sim in prob.studies:
        uses = sorted({r.quantity for r in sim.sum_rows if "cmax" in r.quantity or "half_life" in r.quantity})
        uses += ["individual_peak"] if any(g["statistic"] == "individual_peak" for g in sim.tc_groups) else []
        if not lk.is_fitted(sim) or (want and sim.study_id not in want) or (not want and not uses):
            continue
        one = replace(prob, studies=[sim])
        t = time.time()
        v_new, g_new = jax.jit(jax.value_and_grad(lambda v: -lk.log_likelihood(unravel(v), one)))(x)
        saved = (sumr.peak, lk.peak_of)
        sumr.peak = lk.peak_of = lambda arr, axis=-1: jnp.max(arr, axis=axis)
        try:
            v_old, g_old = jax.jit(jax.value_and_grad(lambda v: -lk.log_likelihood(unravel(v), one)))(x)
        finally:
            sumr.peak, lk.peak_of = saved
        g_new, g_old = np.asarray(g_new), np.asarray(g_old)
        k = int(np.argmax(np.abs(g_new - g_old)))
        print(f"{sim.study_id} [{', '.join(uses) or '-'}]: -log likelihood {float(v_new):.6f} (peak) / "
              f"{float(v_old):.6f} (jnp.max); |gradient| {np.linalg.norm(g_new):.4g} / {np.linalg.norm(g_old):.4g}; "
              f"largest difference {abs(g_new[k] - g_old[k]):.3g} ({names[k]}); {time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
