"""Maximum a posteriori fits on the unconstrained space: L-BFGS (optimistix), multi-start, Laplace, profiles.

The objective is a plain function of the flat unconstrained vector ``x`` (see
:class:`qsp.calibrate.space.ParameterSpace`): ``neg_log_post(x) = -(log prior + log likelihood)``. This module
knows nothing of models: it minimises, approximates and profiles.

- :func:`map_fit`: optimistix L-BFGS from each start (the prior centre and draws from the prior), keeping the
  best; every start's end point and value are returned, so a multimodal surface shows.
- Laplace approximation at the optimum: ``Sigma = H^-1`` with ``H`` the Hessian of ``neg_log_post``
  (forward or central differences of the gradient, symmetrised; a non-positive-definite ``H`` is reported,
  its eigenvalues floored).
- :func:`profile`: for one coordinate, the minimum of ``neg_log_post`` over the others at a grid of fixed
  values; ``2 (profile - min)`` against chi-square(1) (1.92 per side for 95%) says whether the data pin the
  parameter down or it stays at its prior (:func:`identifiability`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx


@dataclass
class MapResult:
    x: np.ndarray  # the best point (flat, unconstrained)
    value: float  # neg_log_post at x
    starts: list[dict] = field(default_factory=list)  # per start: x0, x, value, steps, ok, seconds
    hessian: np.ndarray | None = None
    cov: np.ndarray | None = None
    hessian_min_eig: float | None = None

    @property
    def sd(self) -> np.ndarray | None:
        return None if self.cov is None else np.sqrt(np.clip(np.diag(self.cov), 0.0, None))


def _minimise(fn, x0, *, max_steps: int, rtol: float, atol: float, scale=None):
    """L-BFGS on ``u`` with ``x = x0 + scale * u`` and the objective divided by ``c``.

    L-BFGS's first step is steepest descent with unit step length: with the joint fit's gradients (hundreds to
    thousands per unit of a log parameter) it jumped tens of prior SDs, where the ODEs stiffen, every solve
    runs to its step limit and Armijo halves the step one slow evaluation at a time. Scaling the coordinates by
    their natural size (``scale``: the prior SDs) and the objective by ``c = max(1, max_i |scale_i g_i(x0)|)``
    makes that first step at most one scale unit per coordinate; the minimiser and the minimum are unchanged
    (``c`` is a constant; the value returned is ``fn``'s own)."""
    x0 = jnp.asarray(x0, dtype=float)
    s = jnp.ones_like(x0) if scale is None else jnp.asarray(scale, dtype=float)
    g0 = np.asarray(jax.grad(fn)(x0))
    c = float(np.nanmax(np.abs(np.asarray(s) * g0))) if np.all(np.isfinite(g0)) else 1.0
    c = max(1.0, c)
    solver = optx.LBFGS(rtol=rtol, atol=atol)
    sol = optx.minimise(lambda u, _: fn(x0 + s * u) / c, solver, jnp.zeros_like(x0), max_steps=max_steps,
                        throw=False)
    ok = sol.result == optx.RESULTS.successful
    return np.asarray(x0 + s * sol.value), int(sol.stats.get("num_steps", -1)), bool(ok)


def map_fit(neg_log_post: Callable, starts: Sequence, *, max_steps: int = 300, rtol: float = 1e-6,
            atol: float = 1e-6, laplace: bool = True, progress: Callable | None = None,
            min_eig: float = 1e-8, hessian: str = "central", scale=None) -> MapResult:
    """Minimise ``neg_log_post`` (a JAX function of a flat vector) from every start; Laplace at the best.

    Args:
        starts: flat start vectors (the first is usually the prior centre).
        progress: optional callback ``progress(i, n, value)`` after each start.
        scale: the coordinates' natural size (e.g. the prior SDs on the unconstrained scale): the optimiser
            works in these units (:func:`_minimise`).
    """
    fn = jax.jit(neg_log_post)
    runs = []
    for i, x0 in enumerate(starts):
        t0 = time.perf_counter()
        x, steps, ok = _minimise(fn, x0, max_steps=max_steps, rtol=rtol, atol=atol, scale=scale)
        val = float(fn(jnp.asarray(x)))
        if not np.isfinite(val):
            ok = False
        runs.append({"x0": np.asarray(x0), "x": x, "value": val, "steps": steps, "ok": ok,
                     "seconds": time.perf_counter() - t0})
        if progress is not None:
            progress(i + 1, len(starts), val)
    finite = [r for r in runs if np.isfinite(r["value"])]
    if not finite:
        raise RuntimeError("every MAP start ended at a non-finite objective")
    best = min(finite, key=lambda r: r["value"])
    res = MapResult(x=best["x"], value=best["value"], starts=runs)
    if laplace:
        res.hessian, res.cov, res.hessian_min_eig = laplace_covariance(neg_log_post, best["x"], min_eig=min_eig,
                                                                       scheme=hessian)
    return res


def laplace_covariance(neg_log_post: Callable, x, *, step: float = 1e-3, min_eig: float = 1e-8,
                       scheme: str = "central") -> tuple[np.ndarray, np.ndarray, float]:
    """(Hessian, covariance, smallest Hessian eigenvalue) at ``x``; eigenvalues floored at ``min_eig`` for the
    inverse. Pass the smallest prior precision (``1 / max prior SD^2``) as ``min_eig``: the objective includes
    the prior, so no direction of the posterior should be wider than the prior's widest; a tiny floor lets a
    non-converged or noisy Hessian give variances of 1e8 (measured: Laplace draws that break every solve).

    The Hessian is a finite difference of the reverse-mode gradient, column by column: ``scheme="central"``
    (``2 n`` gradients, error O(step^2)) or ``"forward"`` (``n + 1`` gradients, error O(step); half the cost,
    what the joint fit uses: its gradient over 20 studies costs ~15 s on 2 cores). The ODE solver's adjoint is
    a custom VJP, which forward mode cannot differentiate.
    """
    if scheme not in ("central", "forward"):
        raise ValueError(f"unknown finite-difference scheme {scheme!r}; allowed: central, forward")
    grad = jax.jit(jax.grad(neg_log_post))
    x = np.asarray(x, dtype=float)
    n = x.size
    h = np.zeros((n, n))
    g0 = np.asarray(grad(jnp.asarray(x))) if scheme == "forward" else None
    for j in range(n):
        e = np.zeros(n)
        e[j] = step
        if scheme == "forward":
            h[:, j] = (np.asarray(grad(jnp.asarray(x + e))) - g0) / step
        else:
            h[:, j] = (np.asarray(grad(jnp.asarray(x + e))) - np.asarray(grad(jnp.asarray(x - e)))) / (2 * step)
    h = 0.5 * (h + h.T)
    w, v = np.linalg.eigh(h)
    cov = (v / np.maximum(w, min_eig)) @ v.T
    return h, cov, float(w.min())


def profile(neg_log_post: Callable, x_hat, index: int, grid: Sequence[float], *, max_steps: int = 100,
            rtol: float = 1e-5, atol: float = 1e-5) -> np.ndarray:
    """The profile of ``neg_log_post`` over coordinate ``index`` at the values ``grid`` (others re-optimised,
    warm-started from the optimum)."""
    x_hat = np.asarray(x_hat, dtype=float)
    others = np.delete(np.arange(x_hat.size), index)

    def sub(y, fixed):
        x = jnp.asarray(x_hat).at[others].set(y).at[index].set(fixed)
        return neg_log_post(x)

    out = []
    for g in grid:
        fn = jax.jit(lambda y, g=g: sub(y, g))
        y, _, _ = _minimise(fn, x_hat[others], max_steps=max_steps, rtol=rtol, atol=atol)
        out.append(float(fn(jnp.asarray(y))))
    return np.asarray(out)


def identifiability(prior_sd: np.ndarray, post_sd: np.ndarray, names: Sequence[str], *, threshold: float = 0.5
                    ) -> list[dict]:
    """Per parameter: posterior SD (Laplace) over prior SD. Below ``threshold`` the data pin it down; near 1 it
    stays at its prior."""
    rows = []
    for n, p, q in zip(names, prior_sd, post_sd):
        r = float(q / p) if p > 0 else float("nan")
        rows.append({"parameter": n, "prior_sd": float(p), "posterior_sd": float(q), "ratio": r,
                     "identified": bool(r < threshold)})
    return rows


__all__ = ["MapResult", "map_fit", "laplace_covariance", "profile", "identifiability"]
