"""Where the whole-horizon loop's time goes (issue 10): the segment loop and one variant of the whole loop in the
same process, timed interleaved (segments, variant, segments, ...; medians of 3 after a compiling call), so the
ratio holds on a busy machine. A diagnostic, not a supported configuration: the variants patch
:mod:`qsp.whole_horizon` in this process only.

Variants (``--variant``):

* ``whole`` — the loop as shipped;
* ``nooffsetctl`` — the PID controller on the integrated ``z`` instead of ``y = z + O(t)`` (error scale only);
* ``noclip`` — no jump times given to the step-size controller (steps cross doses: fewer rejected-step
  savings, more steps; shows what the jump times buy);
* ``bare`` — both.

``--seg-points K`` sets the per-segment sample grid of the per-dose peaks in both loops (the engine's default is 48).

    python benchmarks/loop_profile.py --variant whole --seg-points 48 --patients 256 --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import types

import diffrax

import qsp.whole_horizon as wh
from qsp.trial import run_trial

from run import ATOL, DAYS, RTOL, scenario

VARIANTS = ("whole", "nooffsetctl", "noclip", "bare")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=VARIANTS, default="whole")
    ap.add_argument("--seg-points", type=int, default=48)
    ap.add_argument("--patients", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.variant in ("nooffsetctl", "bare"):
        wh.OffsetScaledController = lambda pid, offset: pid
    if a.variant in ("noclip", "bare"):
        dfx = types.ModuleType("diffrax_noclip")
        dfx.__dict__.update(diffrax.__dict__)
        dfx.ClipStepSizeController = lambda inner, jump_ts: inner
        wh.diffrax = dfx
    _, model, ref, pop, reg = scenario(a.patients, 0)
    kw = dict(days=DAYS, follow_up_days=0.0, rtol=RTOL, atol=ATOL, out_names=("il6_pg_per_ml", "conc_nM"),
              seg_points=a.seg_points)
    loops = {"segments": dict(loop="segments"), a.variant: dict(loop="whole")}
    res = {k: run_trial(model, reg, pop, ref, **kw, **v) for k, v in loops.items()}  # compile both
    times = {k: [] for k in loops}
    for _ in range(a.repeats):
        for k, v in loops.items():
            t = time.perf_counter()
            res[k] = run_trial(model, reg, pop, ref, **kw, **v)
            times[k].append(time.perf_counter() - t)
    out = {"variant": a.variant, "seg_points": a.seg_points, "patients": a.patients}
    for k, r in res.items():
        out[f"{k}_ms_per_patient"] = 1e3 * statistics.median(times[k]) / a.patients
        out[f"{k}_mean_accepted_steps"] = float(r.n_steps[r.ok].mean())
    out["ratio_variant_to_segments"] = statistics.median(times[a.variant]) / statistics.median(times["segments"])
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
