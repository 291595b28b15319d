"""The MAP objective split by study: one small compiled program per study instead of one huge one.

``-log posterior(x) = -log prior(x) - sum_s log L_s(x)`` over the studies ``s`` of a
:class:`~qsp.calibrate.likelihood.Problem`. Tracing every study's batched ODE solve and its adjoint into one
XLA program (``jax.jit(jax.value_and_grad(f))`` of the whole sum) had not finished compiling after more than
ten minutes for the joint fit of eight drugs on two CPU cores. Here each study's ``value_and_grad`` is
compiled on its own (measured 40-50 s each for the joint fit's studies, one after another) and the terms are
summed in Python, in float64; with ``QSP_COMPILE_CACHE`` set (:mod:`qsp`) a later process reuses them. Each
program also returns the study's predictions (``has_aux``), so a fit's predictions at the MAP and at the
Laplace draws need no second set of programs (:meth:`SplitObjective.predictions`).

:meth:`SplitObjective.jax_function` wraps the sum as a JAX function of the flat vector (a
``jax.pure_callback`` with a custom VJP that returns the stored gradient), so the optimistix L-BFGS of
:mod:`qsp.calibrate.map` runs on it unchanged: the optimiser's own loop is compiled, the model is not
recompiled inside it. The wrapper supports reverse mode only (``jax.grad``), which is what L-BFGS and the
Laplace step (central differences of the gradient) use.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from .likelihood import Problem, is_fitted, study_log_likelihood, study_mechanism


class SplitObjective:
    """``value_and_grad`` of ``-log posterior`` over a problem's flat unconstrained vector, study by study.

    Args:
        problem: the calibration problem (:func:`qsp.calibrate.likelihood.build_problem`).
        threads: how many study programs to compile at once (default 1: with two fits sharing two cores,
            parallel compiles were measured slower than one after another).
        eval_threads: how many study programs to run at once in an evaluation (default 1). XLA:CPU runs one
            study's ODE solve (a loop of small kernels) on about one core, so on a machine of its own a fit
            with ``eval_threads=2`` uses both cores; the terms are still summed in study order, so the value
            does not depend on the thread count.
        on_eval: optional ``on_eval(evaluations, value, seconds)`` after every evaluation (a long fit's
            progress: each L-BFGS step takes one or more evaluations).
    """

    def __init__(self, problem: Problem, threads: int = 1, on_eval=None, eval_threads: int = 1):
        self.problem = problem
        x0, unravel = problem.space.flatten(problem.space.init())
        self.x0, self.unravel, self.n = x0, unravel, int(x0.size)
        fitted = [s for s in problem.studies if is_fitted(s)]  # a study with no fitted row adds nothing
        self.study_ids = [s.study_id for s in fitted]

        def part(sub):  # ((-log L_s, predictions), gradient): the predictions ride along as aux
            def f(x):
                ll, pred = study_log_likelihood(unravel(x), sub, sub.studies[0])
                return -ll, pred

            return jax.jit(jax.value_and_grad(f, has_aux=True))

        self._parts = [part(replace(problem, studies=[s])) for s in fitted]
        self._prior = jax.jit(jax.value_and_grad(lambda x: -problem.space.log_prior(unravel(x))))
        self.threads = max(1, int(threads))
        self.eval_threads = max(1, int(eval_threads))
        self._pool = ThreadPoolExecutor(self.eval_threads) if self.eval_threads > 1 else None
        self.compile_seconds: float | None = None
        self.evaluations = 0
        self.eval_seconds = 0.0
        self.on_eval = on_eval

    def compile(self, progress=None) -> float:
        """Compile every study's program (in ``threads`` parallel threads); returns the wall seconds.
        ``progress(study_id, seconds)`` is called as each program is ready."""
        if self.compile_seconds is not None:  # compiled already: the executables are in place
            return self.compile_seconds
        t0 = time.perf_counter()
        x = jnp.asarray(self.x0, dtype=jnp.float64)
        jobs = [("prior", self._prior)] + list(zip(self.study_ids, self._parts))

        def one(job):
            t = time.perf_counter()
            exe = job[1].lower(x).compile()
            if progress is not None:
                progress(job[0], time.perf_counter() - t)
            return exe

        with ThreadPoolExecutor(self.threads) as ex:
            exes = list(ex.map(one, jobs))
        # Keep the compiled executables and call them: calling the jitted functions instead traced every study a
        # second time at the first evaluation (measured: ~10 min of tracing for the joint fit under load, the
        # persistent cache then skipping only the XLA compile).
        self._prior, self._parts = exes[0], exes[1:]
        self.compile_seconds = time.perf_counter() - t0
        return self.compile_seconds

    def study_terms(self, x) -> dict:
        """``-log L_s`` of every study and ``-log prior`` at ``x`` (plain floats), for reports."""
        xj = jnp.asarray(x, dtype=jnp.float64)
        out = {"prior": float(self._prior(xj)[0])}
        for sid, f in zip(self.study_ids, self._parts):
            out[sid] = float(f(xj)[0][0])
        return out

    def study_terms_and_grads(self, x) -> dict:
        """``(-log term, gradient)`` of every study and of the prior at ``x`` (float, float64 array): which study
        pulls which coordinate, and how hard (``calibration/study_pull.py``). The terms add up to
        :meth:`value_and_grad`."""
        xj = jnp.asarray(x, dtype=jnp.float64)
        v, g = self._prior(xj)
        out = {"prior": (float(v), np.asarray(g, dtype=np.float64))}
        for sid, f in zip(self.study_ids, self._parts):
            (v, _), g = f(xj)
            out[sid] = (float(v), np.asarray(g, dtype=np.float64))
        return out

    def predictions(self, x) -> dict:
        """Study id -> the study's predictions (:func:`~qsp.calibrate.likelihood.study_predictions`, NumPy) at
        ``x``, from the same compiled programs as the objective (no second compilation; each costs a gradient),
        for :func:`~qsp.calibrate.likelihood.predict`'s ``known``."""
        xj = jnp.asarray(x, dtype=jnp.float64)

        def run(f):
            return jax.tree_util.tree_map(np.asarray, f(xj)[0][1])

        preds = self._pool.map(run, self._parts) if self._pool is not None else map(run, self._parts)
        return dict(zip(self.study_ids, preds))

    def value_and_grad(self, x):
        """(value, gradient) at ``x`` as (float, float64 array)."""
        t0 = time.perf_counter()
        xj = jnp.asarray(x, dtype=jnp.float64)
        v, g = self._prior(xj)
        val, grad = float(v), np.array(g, dtype=np.float64)

        def run(f):
            (v, _), g = f(xj)
            return float(v), np.asarray(g, dtype=np.float64)

        terms = self._pool.map(run, self._parts) if self._pool is not None else map(run, self._parts)
        for v, g in terms:  # in study order whatever the threads
            val += v
            grad += g
        self.evaluations += 1
        self.eval_seconds += time.perf_counter() - t0
        if self.on_eval is not None:
            self.on_eval(self.evaluations, val, self.eval_seconds)
        return val, grad

    def jax_function(self):
        """The objective as a JAX function ``f(x) -> scalar`` with a reverse-mode derivative."""
        return host_function(self.value_and_grad, self.n)


def host_function(value_and_grad, n: int):
    """``f(x) -> scalar``, a JAX function whose value and gradient come from ``value_and_grad(x)`` on the host
    (a ``jax.pure_callback`` with a custom VJP returning the stored gradient): a jitted caller (the optimiser's
    step, NUTS's kernel) traces a callback, not the model, and the model's own compiled program is reused."""
    shapes = (jax.ShapeDtypeStruct((), jnp.float64), jax.ShapeDtypeStruct((n,), jnp.float64))

    def host(x):
        v, g = value_and_grad(np.asarray(x))
        return np.asarray(v, dtype=np.float64), g

    def call(x):
        return jax.pure_callback(host, shapes, x)

    @jax.custom_vjp
    def f(x):
        return call(x)[0]

    def fwd(x):
        v, g = call(x)
        return v, g

    def bwd(g, ct):
        return (ct * g,)

    f.defvjp(fwd, bwd)
    return f


class FixedMechanismObjective:
    """``-log posterior`` over CRS-layer parameters with the mechanism's solves fixed at ``x_fixed``.

    When the entries a sampler moves are all CRS-layer parameters (:func:`~qsp.calibrate.likelihood.
    mechanism_fixed`), no solve depends on them: each study is solved once at ``x_fixed``
    (:func:`~qsp.calibrate.likelihood.study_mechanism`) and the objective evaluates only the CRS layer and the
    target terms on the stored solves. For such ``x`` it equals :class:`SplitObjective`'s value exactly (same
    formulas on the same solves; ``tests/test_calibrate_objective.py``), at a small fraction of the cost, and
    it is a plain JAX function (no host callback), compiled once for all studies. Measured on MajesTEC-1 with
    6 patients: see ``calibration/README.md``.
    """

    def __init__(self, problem: Problem, x_fixed):
        self.problem = problem
        x0, unravel = problem.space.flatten(problem.space.init())
        self.unravel, self.n = unravel, int(x0.size)
        theta = unravel(jnp.asarray(x_fixed, dtype=jnp.float64))
        fitted = [s for s in problem.studies if is_fitted(s)]
        self.study_ids = [s.study_id for s in fitted]
        self._subs = [replace(problem, studies=[s]) for s in fitted]
        self.mechanisms = [study_mechanism(theta, sub, sub.studies[0]) for sub in self._subs]

        def f(x):
            th = unravel(x)
            total = -problem.space.log_prior(th)
            preds = {}
            for sub, mech in zip(self._subs, self.mechanisms):
                ll, pred = study_log_likelihood(th, sub, sub.studies[0], mech or None)
                total = total - ll
                preds[sub.studies[0].study_id] = pred
            return total, preds

        self._f = f
        self._vg = jax.jit(jax.value_and_grad(f, has_aux=True))

    def jax_function(self):
        """The objective as a JAX function of the flat vector (its compiled value-and-gradient program on the host,
        :func:`host_function`)."""
        return host_function(self.value_and_grad, self.n)

    def value_and_grad(self, x):
        (v, _), g = self._vg(jnp.asarray(x, dtype=jnp.float64))
        return float(v), np.asarray(g, dtype=np.float64)

    def predictions(self, x) -> dict:
        """Study id -> predictions at ``x`` (NumPy), as :meth:`SplitObjective.predictions`."""
        (_, preds), _ = self._vg(jnp.asarray(x, dtype=jnp.float64))
        return jax.tree_util.tree_map(np.asarray, preds)


__all__ = ["SplitObjective", "FixedMechanismObjective", "host_function"]
