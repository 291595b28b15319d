"""Robustness and cost of the QE binding solve (qsp.components.binding.solve_free_drug) over random states.

Draws ``--states`` random (total drug, CD3 and target receptor totals, soluble target, tissue pool, affinities,
cross-linking factor, partition) log-uniformly over ranges wider than any card and any trajectory reaches, solves
the free drug with fixed Newton iteration counts (``--iterations``) and with the engine's setting (``0``: Newton
until the step in log D is below ``NEWTON_TOL``, at most ``NEWTON_MAX`` iterations), and compares with a reference
from bisection in log D on the same monotone balance (200 halvings: exact to round-off). Reports the worst relative
error of the free drug, the median time of one batched solve (vmapped, jitted; compile apart) and, for the
engine's setting, how many iterations each state needs on its own (under ``vmap`` a batch runs until its slowest
state has converged).

    python benchmarks/binding_solve.py --states 200000 --iterations 4,6,8,0 --json benchmarks/results/binding.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import qsp  # noqa: F401  (x64)
import jax
import jax.numpy as jnp

from qsp.components.binding import N_NEWTON, NEWTON_MAX, NEWTON_TOL, _newton_free_drug, newton_start, total_drug

RANGES = {  # log10 ranges
    "d_tot": (-8.0, 4.0), "r3_tot": (-4.0, 1.0), "rt_tot": (-5.0, 1.0), "s_tot": (-3.0, 2.0),
    "kd3": (-1.0, 3.0), "kdt": (-2.0, 2.0), "kds": (-2.0, 2.0), "chi": (-1.0, 2.0), "kp": (-1.5, 0.0),
    "pool": (-3.0, 2.0), "kss_pool": (-1.0, 1.5),
}


def draw(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {k: 10.0 ** rng.uniform(lo, hi, n) for k, (lo, hi) in RANGES.items()}
    # a third of the states without a soluble target, a third without a tissue pool (the common cases)
    out["s_tot"][rng.random(n) < 1 / 3] = 0.0
    out["pool"][rng.random(n) < 1 / 3] = 0.0
    return out


def reference(a: dict) -> np.ndarray:
    """Bisection in log D on ``total_drug(D) = d_tot`` (monotone increasing in D), 200 halvings."""
    args = [jnp.asarray(a[k]) for k in ("r3_tot", "rt_tot", "s_tot", "kd3", "kdt", "kds", "chi", "kp", "pool",
                                        "kss_pool")]
    dt = jnp.asarray(a["d_tot"])

    @jax.jit
    def bisect(dt, *args):
        lo = jnp.log(dt) - 80.0
        hi = jnp.log(dt)

        def body(_, lohi):
            lo, hi = lohi
            mid = 0.5 * (lo + hi)
            f = total_drug(jnp.exp(mid), *args) - dt
            return jnp.where(f > 0, lo, mid), jnp.where(f > 0, mid, hi)

        lo, hi = jax.lax.fori_loop(0, 200, body, (lo, hi))
        return jnp.exp(0.5 * (lo + hi))

    return np.asarray(bisect(dt, *args))


def solve(a: dict, n_iter: int, repeats: int) -> tuple[np.ndarray, float]:
    keys = ("d_tot", "r3_tot", "rt_tot", "s_tot", "kd3", "kdt", "kds", "chi", "kp", "pool", "kss_pool")
    args = [jnp.asarray(a[k]) for k in keys]
    fn = jax.jit(jax.vmap(lambda *x: _newton_free_drug(n_iter, *x)))
    out = jax.block_until_ready(fn(*args))
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - t)
    return np.asarray(out), statistics.median(runs)


def iterations_needed(a: dict) -> np.ndarray:
    """Per state, the iteration count at which the adaptive stop fires: the first k whose Newton step (the change of
    log D from k - 1 to k fixed iterations, from the start at k = 0) is at most NEWTON_TOL; NEWTON_MAX + 1 for a
    state not converged by then. (Iterates are compared after the solve's clamp to the total drug, which changes
    no state's count here: the start and every iterate stay below the total.)"""
    prev = np.asarray(newton_start(*(jnp.asarray(a[k]) for k in ("d_tot", "s_tot", "kds", "pool", "kss_pool"))))
    need = np.full(prev.shape, NEWTON_MAX + 1)
    for k in range(1, NEWTON_MAX + 1):
        cur = np.log(solve(a, k, 1)[0])
        need = np.where((need > NEWTON_MAX) & (np.abs(cur - prev) <= NEWTON_TOL), k, need)
        prev = cur
    return need


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", default=f"4,6,8,{N_NEWTON}",
                    help="Newton iteration counts to compare (0: until converged, the engine's setting)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    states = draw(a.states, a.seed)
    ref = reference(states)
    out = {"states": a.states, "seed": a.seed, "engine_iterations": N_NEWTON, "newton_tol": NEWTON_TOL,
           "newton_max": NEWTON_MAX, "ranges_log10": RANGES, "solves": {}}
    for n_iter in sorted({int(x) for x in a.iterations.split(",")}):
        got, sec = solve(states, n_iter, a.repeats)
        rel = np.abs(got - ref) / ref
        out["solves"][str(n_iter)] = {"worst_rel_err": float(rel.max()), "p99_rel_err": float(np.quantile(rel, 0.99)),
                                      "states_above_1e-8": int((rel > 1e-8).sum()),
                                      "ns_per_state": 1e9 * sec / a.states}
    need = iterations_needed(states)
    out["iterations_needed"] = {str(k): int((need == k).sum()) for k in range(1, NEWTON_MAX + 2)}
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
