"""Profile likelihoods of key class parameters around a MAP fit: which ones the data pin down.

Usage (from the repository root, after ``calibration/fit_map.py``)::

    python calibration/profile_map.py [--fit calibration/fits/map] [--params CRS_BETA,KIL6,TPT50,HILL]
                                      [--offsets=-1,-0.5,0.5,1] [--max-steps 15]

For each class parameter ``P`` and each offset ``k`` (in units of ``P``'s prior SD on its unconstrained
scale) the objective ``-log posterior`` is minimised over all the other coordinates with ``P`` fixed at
``z_P(MAP) + k s_P`` (L-BFGS warm-started at the MAP, ``--max-steps`` steps; :func:`qsp.calibrate.map.profile`).
``2 (profile - value at the MAP)`` is compared with the chi-square(1) 95% point 3.84: a parameter whose
profile rises past it on both sides within one prior SD is pinned down by the data; one whose profile stays
flat is left at its prior. A negative rise means the MAP was not the minimum along that direction (the fit
stopped at its step limit): reported as it comes out.

Writes ``profiles.csv`` (parameter, offset_prior_sd, value, neg_log_post, delta_2x) and ``profiles.png`` into
the fit's folder. Same problem as the fit (drugs, virtual patients, seed from its params.json; ``--leave-out``
as the fit had it).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QSP_COMPILE_CACHE", str(Path(__file__).resolve().parent / ".jax_cache"))
os.environ.setdefault("EQX_ON_ERROR", "nan")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from qsp.calibrate.fit import structure_mismatch  # noqa: E402
from qsp.calibrate.likelihood import build_problem  # noqa: E402
from qsp.calibrate.map import profile  # noqa: E402
from qsp.calibrate.objective import SplitObjective  # noqa: E402
from qsp.calibrate.space import ParameterSpace  # noqa: E402
from qsp.calibrate.targets import load_targets  # noqa: E402
from qsp.cards import load_card  # noqa: E402
from qsp.priors import from_unconstrained  # noqa: E402

CHI2_95 = 3.84


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", default="calibration/fits/map")
    ap.add_argument("--params", default="CRS_BETA,KIL6,TPT50,HILL")
    ap.add_argument("--offsets", default="-1,-0.5,0.5,1")
    ap.add_argument("--max-steps", type=int, default=15)
    ap.add_argument("--leave-out", default="")
    a = ap.parse_args(argv)
    fit_dir = Path(a.fit)
    meta = json.loads((fit_dir / "params.json").read_text())
    params = [p.strip() for p in a.params.split(",") if p.strip()]
    unknown = [p for p in params if p not in meta["class_params"]]
    if unknown:
        sys.exit(f"error: --params: {', '.join(unknown)} not class parameters of this fit; allowed: "
                 f"{', '.join(meta['class_params'])}")
    offsets = [float(v) for v in a.offsets.split(",")]
    models = {d: load_card(d).model() for d in meta["drugs"]}
    space = ParameterSpace(models, class_params=meta["class_params"], drug_params=meta["drug_params"],
                           deviations=meta["deviations"])
    if space.names() != meta["names"]:
        sys.exit("error: the fit's parameter names do not match the space rebuilt from its params.json")
    why = structure_mismatch(space, meta)
    if why:
        sys.exit(f"error: {why}")
    targets = load_targets(meta.get("targets"))  # the tables the fit saw (fit_map.py --targets)
    if a.leave_out:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from fit_map import _leave_out

        targets = _leave_out(targets, a.leave_out)
    t0 = time.time()
    problem = build_problem(space, targets, patients=meta["patients"], seed=meta["seed"],
                            stratified=bool(meta.get("stratified", False)))
    obj = SplitObjective(problem)
    obj.compile(progress=lambda sid, s: print(f"compiled {sid} in {s:.0f} s ({time.time() - t0:.0f} s)", flush=True))
    f = obj.jax_function()
    x_hat = np.asarray(meta["x"], float)
    v_hat = float(f(x_hat))
    print(f"-log posterior at the fit's MAP: {v_hat:.3f} (params.json: {meta['neg_log_posterior']:.3f})", flush=True)
    rows = []
    for name in params:
        i = meta["names"].index(f"class:{name}")
        pr, _ = space.class_prior(name)
        grid = [x_hat[i] + k * pr.scale for k in offsets]
        prof = profile(f, x_hat, i, grid, max_steps=a.max_steps)
        for k, g, v in zip(offsets, grid, prof):
            rows.append({"parameter": name, "offset_prior_sd": k, "value": float(from_unconstrained(g, pr.transform)),
                         "neg_log_post": float(v), "delta_2x": 2.0 * (float(v) - v_hat)})
        rows.append({"parameter": name, "offset_prior_sd": 0.0,
                     "value": float(from_unconstrained(x_hat[i], pr.transform)), "neg_log_post": v_hat,
                     "delta_2x": 0.0})
        print(f"{name}: 2 x rise at offsets {offsets}: {np.round(2 * (prof - v_hat), 2)} ({time.time() - t0:.0f} s)",
              flush=True)
    df = pd.DataFrame(rows).sort_values(["parameter", "offset_prior_sd"])
    pinned = {p: bool((g[g.offset_prior_sd < 0].delta_2x > CHI2_95).any() and
                      (g[g.offset_prior_sd > 0].delta_2x > CHI2_95).any()) for p, g in df.groupby("parameter")}
    df["pinned_both_sides"] = df.parameter.map(pinned)
    df.to_csv(fit_dir / "profiles.csv", index=False, float_format="%.6g")
    (fit_dir / "profiles.png").write_bytes(_plot(df))
    print(df.to_string(index=False))
    print(f"done in {time.time() - t0:.0f} s; wrote {fit_dir / 'profiles.csv'}, {fit_dir / 'profiles.png'}")


def _plot(df: pd.DataFrame) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(df.parameter))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    for ax, n in zip(axes[0], names):
        g = df[df.parameter == n].sort_values("offset_prior_sd")
        ax.plot(g.offset_prior_sd, g.delta_2x, "o-", color="C0")
        ax.axhline(CHI2_95, color="0.5", ls="--", lw=1)
        ax.set_title(n)
        ax.set_xlabel("offset from MAP (prior SDs)")
    axes[0][0].set_ylabel("2 x (profile - MAP)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


if __name__ == "__main__":
    main()
