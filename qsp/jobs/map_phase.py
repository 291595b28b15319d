"""The MAP phase of a calibration job: multi-start L-BFGS and the Laplace Hessian, checkpointed and resumable.

The same optimiser as :func:`qsp.calibrate.map.map_fit` (optimistix L-BFGS on ``u`` with ``x = x0 + s u`` and
the objective divided by ``c = max(1, max_i |s_i g_i(x0)|)``, ``s`` the prior SDs), but stepped by hand so that
its whole state can be saved: every ``checkpoint_every`` steps the solver state (every array leaf of the
optimistix state, float64/integer, bit for bit), ``u`` and the step count go to ``.checkpoint/map_start_<i>.npz``;
a finished start stores its end point and value. The Laplace Hessian (finite differences of the gradient, one
column per gradient) is checkpointed column by column in ``.checkpoint/laplace.npz``. A resumed run restores the
state and continues with the same compiled step, so it ends on the same numbers as an uninterrupted run
(tested: ``tests/test_jobs_resume.py``).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .store import JobDir

RTOL = ATOL = 1e-6
_TAGS = frozenset()


def _solver():
    return optx.LBFGS(rtol=RTOL, atol=ATOL)


def _pack(state) -> dict:
    dyn, _ = eqx.partition(state, eqx.is_array)
    return {f"s{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree_util.tree_leaves(dyn))}


def _unpack(template, arrays: dict):
    dyn, static = eqx.partition(template, eqx.is_array)
    leaves = [jnp.asarray(arrays[f"s{i}"]) for i in range(len(jax.tree_util.tree_leaves(dyn)))]
    return eqx.combine(jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(dyn), leaves), static)


def minimise_start(f: Callable, x0: np.ndarray, scale: np.ndarray, *, max_steps: int, store: JobDir | None,
                   name: str, every: int, on_step: Callable | None = None) -> dict:
    """L-BFGS from ``x0`` (see the module docstring), checkpointed as ``name``; returns
    ``{"x", "value", "steps", "ok", "seconds"}``. ``f``: JAX function of the flat vector (reverse-mode
    differentiable). ``on_step(step, value)`` after every step."""
    saved = store.load(name) if store is not None else None
    if saved is not None and bool(saved["done"]):
        return {"x": saved["x"], "value": float(saved["value"]), "steps": int(saved["steps"]),
                "ok": bool(saved["ok"]), "seconds": float(saved["seconds"])}
    t0 = time.perf_counter()
    x0 = jnp.asarray(x0, dtype=jnp.float64)
    s = jnp.asarray(scale, dtype=jnp.float64)
    if saved is not None:
        c = float(saved["c"])
    else:
        g0 = np.asarray(jax.grad(f)(x0))
        c = max(1.0, float(np.nanmax(np.abs(np.asarray(s) * g0)))) if np.all(np.isfinite(g0)) else 1.0

    def fn(u, _):
        return f(x0 + s * u) / c, None

    solver = _solver()
    y = jnp.zeros_like(x0)
    f_struct = jax.ShapeDtypeStruct((), jnp.float64)
    state = solver.init(fn, y, None, {}, f_struct, None, _TAGS)
    step0, elapsed = 0, 0.0
    if saved is not None:
        state, y = _unpack(state, saved), jnp.asarray(saved["u"])
        step0, elapsed = int(saved["steps"]), float(saved["seconds"])
    step = eqx.filter_jit(lambda y, st: solver.step(fn, y, None, {}, st, _TAGS))
    term = eqx.filter_jit(lambda y, st: solver.terminate(fn, y, None, {}, st, _TAGS))
    n, ok = step0, False
    while n < max_steps:
        done, result = term(y, state)
        if bool(done):
            ok = result == optx.RESULTS.successful
            break
        y, state, _ = step(y, state)
        n += 1
        if on_step is not None:
            on_step(n, float(state.f_info.f) * c if hasattr(state, "f_info") else float("nan"))
        if store is not None and n % every == 0:
            store.save(name, {"done": False, "u": np.asarray(y), "steps": n, "c": c,
                              "seconds": elapsed + time.perf_counter() - t0, **_pack(state)})
    x = np.asarray(x0 + s * y)
    val = float(f(jnp.asarray(x)))
    out = {"x": x, "value": val, "steps": n, "ok": bool(ok) and np.isfinite(val),
           "seconds": elapsed + time.perf_counter() - t0}
    if store is not None:
        store.save(name, {"done": True, **{k: np.asarray(v) for k, v in out.items()}})
    return out


def laplace_hessian(grad: Callable, x: np.ndarray, *, store: JobDir | None, scheme: str = "forward",
                    step: float = 1e-3, on_column: Callable | None = None) -> np.ndarray:
    """The symmetrised finite-difference Hessian of the objective at ``x`` (``grad`` its gradient), one column
    per (pair of) gradient(s), each column checkpointed (``laplace.npz``) as it is done."""
    x = np.asarray(x, dtype=float)
    n = x.size
    saved = store.load("laplace") if store is not None else None
    if saved is not None and not np.array_equal(saved["x"], x):
        saved = None  # another optimum (cannot happen on a resume of the same job; kept as a guard)
    h = saved["h"].copy() if saved is not None else np.full((n, n), np.nan)
    g0 = None
    for j in range(n):
        if np.all(np.isfinite(h[:, j])):
            continue
        e = np.zeros(n)
        e[j] = step
        if scheme == "forward":
            if g0 is None:
                g0 = np.asarray(grad(jnp.asarray(x)))
            h[:, j] = (np.asarray(grad(jnp.asarray(x + e))) - g0) / step
        else:
            h[:, j] = (np.asarray(grad(jnp.asarray(x + e))) - np.asarray(grad(jnp.asarray(x - e)))) / (2 * step)
        if store is not None:
            store.save("laplace", {"x": x, "h": h})
        if on_column is not None:
            on_column(j + 1, n)
    return 0.5 * (h + h.T)


def covariance(h: np.ndarray, min_eig: float) -> tuple[np.ndarray, float]:
    """(covariance, smallest eigenvalue) of a Hessian, eigenvalues floored at ``min_eig`` (as
    :func:`qsp.calibrate.map.laplace_covariance`)."""
    w, v = np.linalg.eigh(h)
    return (v / np.maximum(w, min_eig)) @ v.T, float(w.min())


def run_map_phase(f: Callable, starts: Sequence[np.ndarray], scale: np.ndarray, *, max_steps: int,
                  store: JobDir | None, every: int, hessian: str = "forward", min_eig: float = 1e-8,
                  progress: Callable | None = None, starts_runner: Callable | None = None) -> dict:
    """Every start (or ``starts_runner(i) -> result`` per start, e.g. on Dask workers), the best, and the
    Laplace covariance at the best: ``{"x", "value", "starts", "hessian", "cov", "hessian_min_eig"}``."""
    runs = []
    for i, x0 in enumerate(starts):
        if starts_runner is not None:
            r = starts_runner(i)
        else:
            r = minimise_start(f, x0, scale, max_steps=max_steps, store=store, name=f"map_start_{i}", every=every,
                               on_step=(lambda k, v, i=i: progress("map_step", i, k, v)) if progress else None)
        runs.append({**r, "x0": np.asarray(x0)})
        if progress is not None:
            progress("map_start", i, len(starts), r["value"])
    finite = [r for r in runs if np.isfinite(r["value"])]
    if not finite:
        raise RuntimeError("every MAP start ended at a non-finite objective")
    best = min(finite, key=lambda r: r["value"])
    grad = jax.jit(jax.grad(f))
    h = laplace_hessian(grad, best["x"], store=store, scheme=hessian,
                        on_column=(lambda j, n: progress("laplace", j, n, None)) if progress else None)
    cov, w_min = covariance(h, min_eig)
    return {"x": best["x"], "value": best["value"], "starts": runs, "hessian": h, "cov": cov,
            "hessian_min_eig": w_min}


__all__ = ["minimise_start", "laplace_hessian", "covariance", "run_map_phase"]
