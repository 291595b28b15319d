"""What a solver step costs the engine (issue 10: "where a target is missed, say what limits it, measured").

Three measurements in one process, on one XLA CPU device (one core), vmapped over ``--patients`` lanes, jitted,
medians of ``--repeats`` runs after a compiling call:

1. ``rhs_ns``: one evaluation of the teclistamab model's vector field per patient, at states taken from a
   label-regimen trajectory (perturbed 1% per lane), with per-patient parameter arrays as in a virtual trial;
2. ``machinery_ns_per_step``: diffrax's Tsit5 + PID step on a trivial linear right-hand side with the same number
   of states (every cost of a step except the model: stages, error estimate, controller, loop), per accepted or
   rejected step;
3. ``trial_ns_per_step``: a whole engine trial (``qsp.trial.run_trial``, segment loop, one device) per patient and
   per executed step (the batch executes, for each integration segment, the steps of its slowest patient).

The budget ``machinery + 6 x rhs`` (Tsit5 evaluates the right-hand side 6 times per step) against the measured
trial step shows how much is the model, how much the solver loop, and how much the rest (saves, events, CRS).

For the gradient target (reverse mode <= 3 forward solves) two more: ``rhs_vjp_ns``, one value-and-VJP of the
vector field (w.r.t. state and every parameter) per patient, against ``rhs_ns``; and
``machinery_gradient_over_forward``, reverse mode through the Tsit5 + PID loop on the trivial right-hand side
(256 lanes; recursive checkpointing with diffrax's default and with 128 checkpoints, both fewer than the toy's
~180 steps, so they recompute, and with 4096, which stores every step: no recomputation, as on the engine's
segment loop, whose segments are shorter than its checkpoint count): what the loop alone costs.

    python benchmarks/step_cost.py --patients 1024 --json benchmarks/results/step_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QSP_HOST_DEVICES", "1")  # one XLA device: per-core costs

import numpy as np  # noqa: E402

import qsp  # noqa: E402,F401  (x64)
import diffrax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ATOL, DAYS, RTOL, scenario  # noqa: E402


def _median_s(fn, args, repeats):
    jax.block_until_ready(fn(*args))
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def rhs_cost(model, p0, states, n, repeats):
    rng = np.random.default_rng(0)
    ys = jnp.asarray(states[rng.integers(0, states.shape[0], n)] * (1 + 0.01 * rng.standard_normal((n, states.shape[1]))))
    P = {k: jnp.full((n,), float(v)) for k, v in p0.items()}
    rate = jnp.zeros_like(ys)
    f = jax.jit(jax.vmap(lambda y, p, r: model.vector_field(1.0, y, (p, r))))
    return 1e9 * _median_s(f, (ys, P, rate), repeats) / n


def rhs_vjp_cost(model, p0, states, n, repeats):
    """ns per patient of one reverse-mode pass (value + VJP w.r.t. state and parameters) of the right-hand side."""
    rng = np.random.default_rng(0)
    ys = jnp.asarray(states[rng.integers(0, states.shape[0], n)] * (1 + 0.01 * rng.standard_normal((n, states.shape[1]))))
    P = {k: jnp.full((n,), float(v)) for k, v in p0.items()}
    rate = jnp.zeros_like(ys)

    def one(y, p, r):
        out, pull = jax.vjp(lambda yy, pp: model.vector_field(1.0, yy, (pp, r)), y, p)
        return out, pull(jnp.ones_like(out))  # the value too, so that nothing of the primal is dropped

    f = jax.jit(jax.vmap(one))
    return 1e9 * _median_s(f, (ys, P, rate), repeats) / n


def machinery_grad_ratio(n_states, n, repeats, checkpoints):
    """Reverse mode through diffrax's Tsit5 + PID loop alone: the trivial linear right-hand side of
    :func:`machinery_cost` with one parameter, gradient of the summed end state over forward solve (medians)."""
    a = -jnp.linspace(0.1, 2.0, n_states)

    def one(k, y0):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, args: args * a * y + jnp.sin(t)), diffrax.Tsit5(), 0.0,
                                  float(DAYS), None, y0, args=k, saveat=diffrax.SaveAt(t1=True),
                                  stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL), max_steps=4096,
                                  adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints=checkpoints))
        return jnp.sum(sol.ys)

    def mean(k, y0):
        return jnp.mean(jax.vmap(one)(k, y0))

    y0 = jnp.ones((n, n_states)) * jnp.linspace(1.0, 2.0, n)[:, None]
    k = jnp.ones(n)
    return _median_s(jax.jit(jax.grad(mean)), (k, y0), repeats) / _median_s(jax.jit(mean), (k, y0), repeats)


def machinery_cost(n_states, n, repeats):
    a = -jnp.linspace(0.1, 2.0, n_states)

    def one(y0):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, args: a * y + jnp.sin(t)), diffrax.Tsit5(), 0.0,
                                  float(DAYS), None, y0, saveat=diffrax.SaveAt(t1=True),
                                  stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL), max_steps=4096)
        return sol.ys, sol.stats["num_steps"]

    f = jax.jit(jax.vmap(one))
    y0 = jnp.ones((n, n_states)) * jnp.linspace(1.0, 2.0, n)[:, None]
    steps = int(np.max(np.asarray(f(y0)[1])))
    return 1e9 * _median_s(f, (y0,), repeats) / n / steps, steps


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    from qsp.trial import run_trial

    card, model, ref, pop, reg = scenario(a.patients, 0)
    one = qsp.simulate(model, reg, np.linspace(0.0, float(DAYS), int(4 * DAYS) + 1), covariates=card.covariates())
    states = np.stack([np.asarray(one.states[s]) for s in model.state_names], axis=-1)
    rhs = rhs_cost(model, model.params(), states, a.patients, a.repeats)
    rhs_vjp = rhs_vjp_cost(model, model.params(), states, a.patients, a.repeats)
    mach, toy_steps = machinery_cost(len(model.state_names), a.patients, a.repeats)
    grad_ratio = {str(c): machinery_grad_ratio(len(model.state_names), min(a.patients, 256), a.repeats, c)
                  for c in (None, 128, 4096)}
    kw = dict(days=DAYS, follow_up_days=0.0, rtol=RTOL, atol=ATOL, out_names=("il6_pg_per_ml", "conc_nM"))
    res = run_trial(model, reg, pop, ref, **kw)
    runs = []
    for _ in range(max(3, a.repeats // 2)):
        t = time.perf_counter()
        res = run_trial(model, reg, pop, ref, **kw)
        runs.append(time.perf_counter() - t)
    steps = np.asarray(res.n_steps, float)
    trial_ms = 1e3 * statistics.median(runs) / a.patients
    out = {
        "patients": a.patients, "devices": len(jax.devices()), "n_states": len(model.state_names),
        "rhs_ns": rhs, "rhs_vjp_ns": rhs_vjp, "rhs_vjp_over_rhs": rhs_vjp / rhs,
        "machinery_ns_per_step": mach, "machinery_toy_steps": toy_steps,
        "machinery_gradient_over_forward": grad_ratio,
        "budget_ns_per_step": mach + 6 * rhs,
        "trial_ms_per_patient": trial_ms, "trial_mean_accepted_steps": float(steps.mean()),
        "trial_max_accepted_steps": int(steps.max()),
        "trial_ns_per_mean_step": 1e6 * trial_ms / float(steps.mean()),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
