"""The NUTS phase of a calibration job: NumPyro's NUTS kernel stepped by hand, one chain at a time, resumable.

Each chain samples the free entries ``z`` of the fit's flat unconstrained vector (``nuts.free`` of the spec;
the others stay at the MAP, or at the prior centre for a job without a MAP phase) with the potential

    U(z) = -log posterior(x),   x = x_fixed with x[free] = z

(the same ``-log posterior`` as the MAP: prior on the transformed scale plus every study's likelihood). NumPyro
(:class:`numpyro.infer.NUTS` with ``potential_fn``) adapts the step size and a diagonal mass matrix during
``warmup`` and then draws ``draws`` samples. The kernel's whole state (position, potential, gradient,
adaptation state, RNG key, iteration) is a pytree of arrays; the loop here calls ``kernel.sample`` once per
iteration and saves the state and the draws so far to ``.checkpoint/nuts_chain_<c>.npz`` every
``checkpoint_every`` iterations. A resumed chain restores the state and continues: the draws are the same, bit
for bit, as those of an uninterrupted chain with the same seed (``tests/test_jobs_resume.py``).

Chain ``c`` uses ``PRNGKey(seed + c)`` and starts at the MAP (chain 0) or at the MAP moved by half a draw of
the Laplace covariance of the free entries (chains 1, 2, ...: dispersed starts for R-hat), seeded by ``seed + c``.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .store import JobDir

STATS = ("potential_energy", "diverging", "accept_prob", "num_steps", "step_size")


def chain_start(x_fixed: np.ndarray, free_idx: np.ndarray, cov: np.ndarray | None, chain: int, seed: int
                ) -> np.ndarray:
    """The free entries' start of chain ``chain`` (see the module docstring)."""
    z0 = np.asarray(x_fixed, float)[free_idx]
    if chain == 0 or cov is None:
        return z0
    c = np.asarray(cov, float)[np.ix_(free_idx, free_idx)]
    w, v = np.linalg.eigh(0.5 * (c + c.T))
    root = v * np.sqrt(np.clip(w, 0.0, None))
    rng = np.random.default_rng(seed + chain)
    return z0 + 0.5 * root @ rng.standard_normal(z0.size)


def run_chain(f: Callable, x_fixed: np.ndarray, free_idx: np.ndarray, z0: np.ndarray, *, chain: int, seed: int,
              warmup: int, draws: int, target_accept: float, max_tree_depth: int, store: JobDir | None,
              every: int, on_iter: Callable | None = None) -> dict:
    """One NUTS chain (see the module docstring). ``f``: ``-log posterior`` of the full flat vector (a JAX
    function, reverse-mode differentiable). Returns ``{"z": (draws, n_free), "potential_energy", "diverging",
    "accept_prob", "num_steps", "step_size": (draws,), "seconds"}``; ``on_iter(i, total)`` after each
    iteration."""
    from numpyro.infer import NUTS

    xf = jnp.asarray(x_fixed, dtype=jnp.float64)
    idx = jnp.asarray(free_idx)

    def potential(z):
        return f(xf.at[idx].set(z))

    kernel = NUTS(potential_fn=potential, target_accept_prob=target_accept, max_tree_depth=max_tree_depth,
                  dense_mass=False)
    total = warmup + draws
    name = f"nuts_chain_{chain}"
    t0 = time.perf_counter()
    state = kernel.init(jax.random.PRNGKey(seed + chain), warmup, init_params=jnp.asarray(z0, jnp.float64),
                        model_args=(), model_kwargs={})
    treedef = jax.tree_util.tree_structure(state)
    rec = {k: [] for k in ("z",) + STATS}
    start, elapsed = 0, 0.0
    saved = store.load(name) if store is not None else None
    if saved is not None:
        n_leaves = treedef.num_leaves
        state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(saved[f"s{i}"]) for i in range(n_leaves)])
        start, elapsed = int(saved["iteration"]), float(saved["seconds"])
        for k in rec:
            rec[k] = list(saved[f"rec_{k}"])
    if start >= total:
        return _result(rec, warmup, elapsed)
    step = jax.jit(lambda st: kernel.sample(st, (), {}))
    for i in range(start, total):
        state = step(state)
        if i >= warmup:
            rec["z"].append(np.asarray(state.z))
            rec["potential_energy"].append(float(state.potential_energy))
            rec["diverging"].append(bool(state.diverging))
            rec["accept_prob"].append(float(state.accept_prob))
            rec["num_steps"].append(int(state.num_steps))
            rec["step_size"].append(float(state.adapt_state.step_size))
        if on_iter is not None:
            on_iter(i + 1, total)
        if store is not None and ((i + 1) % every == 0 or i + 1 == total):
            leaves = jax.tree_util.tree_leaves(state)
            store.save(name, {"iteration": i + 1, "seconds": elapsed + time.perf_counter() - t0,
                              **{f"s{j}": np.asarray(a) for j, a in enumerate(leaves)},
                              **{f"rec_{k}": _stack(k, v, len(z0)) for k, v in rec.items()}})
    return _result(rec, warmup, elapsed + time.perf_counter() - t0)


def _stack(key: str, values: list, n_free: int) -> np.ndarray:
    if key == "z":
        return np.asarray(values, dtype=float).reshape(len(values), n_free)
    return np.asarray(values)


def _result(rec: dict, warmup: int, seconds: float) -> dict:
    n = len(rec["potential_energy"])
    out = {k: _stack(k, v, len(rec["z"][0]) if rec["z"] else 0) for k, v in rec.items()}
    out["z"] = out["z"].reshape(n, -1)
    out["seconds"] = seconds
    return out


__all__ = ["run_chain", "chain_start", "STATS"]
