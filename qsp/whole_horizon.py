"""One solve per patient over its whole horizon, doses still exact: the alternative to the segment loop.

:func:`qsp.simulate.solve_events_windows` cuts the horizon at every event and runs one
``diffrax.diffeqsolve`` per segment inside a ``lax.scan``. Under ``vmap`` each segment's solve runs until the
batch's slowest patient has finished *that* segment, so a batch pays ``sum_k max_i steps_ik`` steps instead of
``max_i sum_k steps_ik`` (issue 10: ~1.5x the right-hand-side evaluations each patient needs on the teclistamab
label regimen). :func:`solve_events_whole` integrates each patient in a single ``diffeqsolve`` from its first
event to its last output time:

* **Boluses as a piecewise-constant offset.** With ``O(t) = sum_{j: t_j <= t} F_j D_j e_{s_j}`` (every bolus
  so far, after its route's lag and bioavailability, in its dosing state), the solver integrates
  ``z = y - O(t)``: ``dz/dt = f(t, z + O(t), p, r(t))``. ``z`` is continuous at a dose, ``y = z + O`` jumps by
  exactly the dose (right-continuous; the left limit uses ``t_j < t``). Nothing is smeared into an infusion.
* **Infusions** enter as the piecewise-constant rate ``r(t) = sum_{i: a_i <= t < b_i} R_i e_{s_i}``.
* **Every dose time and infusion boundary is a jump time** of the step-size controller
  (``diffrax.ClipStepSizeController(jump_ts=...)``): a step ends just before it and the next starts just after
  it, so no step integrates across a discontinuity of ``O`` or ``r``.
* **Error control on the state itself.** The PID controller's scale ``atol + rtol max(|y0|, |y1|)`` is
  computed from ``y = z + O`` (:class:`OffsetScaledController`), not from ``z``, whose magnitude after several
  doses is the cumulative dose rather than the state's: the tolerances mean what they mean on the segmented
  path.
* **Outputs once.** Output times and the two ends of every integration segment are one sorted ``SaveAt(ts=...)``
  of full states, mapped back afterwards; the per-segment samples strictly inside a segment (``seg_points - 2``
  per segment, for per-dose peaks) are a second ``SubSaveAt`` that keeps only ``seg_fn``'s few values. Saving a
  full state at every sample made the save loop this loop's largest cost (measured: 0.65 vs 0.43 ms per patient
  for the segment loop at 2,000 patients, ``benchmarks/results/n2000.json`` before this change).

Resets (NONMEM EVID 3/4) restart the system and stay on the segmented path: :func:`has_resets` says which
path a regimen needs (host-side check, before tracing). Same inputs and outputs as
:func:`~qsp.simulate.solve_events_windows`; differentiable (``jax.grad``: diffrax's recursive checkpointing
through the one loop) and ``vmap``-able. Two details the gradients need (found when the engine's closed-form,
property and gradient tests were run on this loop too): the step lengths the PID controller proposes carry no
derivative (only the jump times, where steps are clipped, move the grid), else the lag-time derivative after an
infusion was off by orders of magnitude; and the last step's stages at ``t_end`` see the left limit of the doses,
so an event at the last output time acts on that output exactly and on nothing before it.
"""

from __future__ import annotations

from typing import Mapping

import diffrax
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np

from .events import EventArrays
from .model import Model


def has_resets(ev: EventArrays) -> bool:
    """Whether any (unmasked) event is a reset or a steady-state record: those regimens need the segmented path."""
    sets = np.asarray(ev.jump_reset) | (np.asarray(ev.jump_ss) >= 0)
    return bool(np.any(sets & np.asarray(ev.jump_mask)))


class OffsetScaledController(diffrax.AbstractAdaptiveStepSizeController):
    """A PID controller whose error scale is taken from ``y = z + O(t)``, not from the integrated ``z``.

    ``offset(t, args)`` gives ``O`` (right-continuous). Within one step ``O`` is constant (no step crosses a
    jump time), so ``O(t0)`` serves both ends.
    """

    inner: diffrax.PIDController
    offset: callable

    @property
    def rtol(self):
        return self.inner.rtol

    @property
    def atol(self):
        return self.inner.atol

    @property
    def norm(self):
        return self.inner.norm

    def wrap(self, direction):
        return OffsetScaledController(self.inner.wrap(direction), self.offset)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        return self.inner.init(terms, t0, t1, y0 + self.offset(t0, args), dt0, args, func, error_order)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        o = self.offset(t0, args)
        keep, next_t0, next_t1, jump, state, result = self.inner.adapt_step_size(
            t0, t1, y0 + o, y1_candidate + o, args, y_error, error_order, controller_state)
        # the proposed step length carries no derivative: the grid may move with a jump time (the clipping
        # controller around this one ends steps exactly at the jump times), never with the error estimate
        next_t1 = next_t0 + jax.lax.stop_gradient(next_t1 - next_t0)
        return keep, next_t0, next_t1, jump, state, result


def solve_events_whole(model: Model, cfg, params: Mapping, ev: EventArrays, ts, ts_left=None, *,
                       seg_points: int = 0, seg_fn=None):
    """:func:`qsp.simulate.solve_events_windows` in one solve per patient (module docstring).

    Returns the same :class:`~qsp.simulate.WindowSolution`: states at ``ts``, status, accepted steps, and
    every integration segment (between consecutive event breakpoints, as the segmented path defines them)
    sampled at ``seg_points`` evenly spaced points (right-continuous at its start, left limit at its end).
    Regimens with resets are not supported here (:func:`has_resets`).
    """
    from .simulate import (SOLVERS, STATUS_NONFINITE, STATUS_OK, STATUS_SOLVER_FAILED, WindowSolution, dose_inputs,
                           solver_adjoint)

    p = {k: jnp.asarray(v, dtype=float) for k, v in params.items()}
    ts = jnp.asarray(ts, dtype=float)
    ts_left = jnp.zeros(ts.shape, bool) if ts_left is None else jnp.asarray(ts_left, bool)
    n_states = len(model.state_names)
    big = jnp.inf

    jt, jamt, i0, i1, irate = dose_inputs(model, p, ev)
    ni = i0.shape[0]
    bp = jnp.concatenate([jt, i0, i1])
    b_amt = jnp.concatenate([jamt, jnp.zeros(2 * ni)])
    b_state = jnp.concatenate([ev.jump_state, jnp.zeros(2 * ni, jnp.int32)])
    order_bp = jnp.argsort(bp)
    bp, b_amt, b_state = bp[order_bp], b_amt[order_bp], b_state[order_bp]
    # cum[k]: the boluses of the first k breakpoints (in time order), per state: the offset on segment k
    steps_in = jnp.zeros((bp.shape[0], n_states)).at[jnp.arange(bp.shape[0]), b_state].add(b_amt)
    cum = jnp.concatenate([jnp.zeros((1, n_states)), jnp.cumsum(steps_in, axis=0)])

    t_start = jnp.minimum(ts[0], bp[0])
    t_end = ts[-1]
    # the segmented path's segments (for the per-segment samples): [t_start, bp_0], [bp_0, bp_1], ...
    lo = jnp.clip(jnp.concatenate([t_start[None], bp]), t_start, t_end)
    hi = jnp.clip(jnp.concatenate([bp, jnp.asarray([big])]), t_start, t_end)

    def offset_at(t):  # right-continuous (the solve starts at t_start, after any dose at t_start, and otherwise
        return cum[jnp.searchsorted(bp, t, side="right", method="compare_all")]  # steps to just before / from just after a jump)

    def rate_at(t):
        active = (i0 <= t) & (t < i1)
        return jnp.zeros(n_states).at[ev.inf_state].add(jnp.where(active, irate, 0.0))

    # Events at t_end act on the outputs (mapped back below), never on the field: the last step's stages at t_end
    # see the left limit. diffrax stretches a step that ends within 100 ulp of t_end to t_end, so an event in that
    # last sliver lies inside the last step: the field stops before the first event past the floor diffrax uses.
    floor = t_end
    for _ in range(101):
        floor = eqxi.prevbefore(floor)
    t_last = eqxi.prevbefore(jnp.minimum(t_end, jnp.min(jnp.where(bp > floor, bp, t_end))))

    def field(t, z, args):
        te = jnp.minimum(t, t_last)  # the last step's stages see the left limit of events at (or just before) t_end
        return model.vector_field(t, z + offset_at(te), (args, rate_at(te)))

    # Saved points. Full states (z, mapped back to y = z + O with the right segment's offset) at the output times and
    # at every segment's two ends; the segment samples strictly inside a segment only through seg_fn (a few values
    # per point: a full state per sample made the save loop the largest cost of this loop). Inside a segment the
    # right-continuous offset is the segment's own; a segment too short to hold interior points (zero length: two
    # events at one time) takes its start value everywhere, as on the segmented path (its state is constant).
    k_out = jnp.where(ts_left, jnp.searchsorted(bp, ts, side="left"), jnp.searchsorted(bp, ts, side="right"))
    n_seg = lo.shape[0]
    n = ts.shape[0]
    ends_t = jnp.concatenate([lo, hi])
    # segments after the horizon hold the state at t_end, as on the segmented path (their events are not applied)
    n_in = jnp.searchsorted(bp, t_end, side="right")
    ends_k = jnp.minimum(jnp.concatenate([jnp.arange(n_seg), jnp.arange(n_seg)]), n_in)
    save_t = jnp.clip(jnp.concatenate([ts, ends_t]), t_start, t_end)
    save_k = jnp.concatenate([k_out, ends_k])
    order = jnp.argsort(save_t, stable=True)
    inverse = jnp.empty_like(order).at[order].set(jnp.arange(order.shape[0]))
    subs = [diffrax.SubSaveAt(ts=save_t[order])]
    n_inner = max(seg_points - 2, 0)
    if n_inner:
        frac = jnp.linspace(0.0, 1.0, seg_points)[1:-1]
        inner_t = jnp.clip(lo[:, None] + (hi - lo)[:, None] * frac[None, :], lo[:, None], hi[:, None])
        inner_ok = (hi - lo) > 1e-9 * jnp.maximum(1.0, jnp.abs(hi))  # interior points strictly inside
        if seg_fn is None:
            subs.append(diffrax.SubSaveAt(ts=inner_t.reshape(-1), fn=lambda t, z, args: z + offset_at(t)))
        else:
            subs.append(diffrax.SubSaveAt(ts=inner_t.reshape(-1),
                                          fn=lambda t, z, args: seg_fn(t, z + offset_at(t), args)))

    solver = SOLVERS[cfg.solver][0]()
    pid = diffrax.PIDController(rtol=cfg.rtol, atol=cfg.atol, dtmin=cfg.dtmin)
    controller = diffrax.ClipStepSizeController(
        OffsetScaledController(pid, lambda t, args: offset_at(t)), jump_ts=jnp.where(jnp.isfinite(bp), bp, t_end))
    y0 = model.initial_state(p)
    sol = diffrax.diffeqsolve(diffrax.ODETerm(field), solver, t0=t_start, t1=t_end, dt0=None, y0=y0, args=p,
                              saveat=diffrax.SaveAt(subs=subs), stepsize_controller=controller,
                              max_steps=cfg.max_steps * n_seg, throw=False,
                              adjoint=solver_adjoint(cfg))
    y_all = sol.ys[0][inverse] + cum[save_k]
    out = y_all[:n]
    y_lo, y_hi = y_all[n:n + n_seg], y_all[n + n_seg:]
    if seg_points:
        fn = (lambda t, y: seg_fn(t, y, p)) if seg_fn is not None else (lambda t, y: y)
        v_lo, v_hi = jax.vmap(fn)(lo, y_lo), jax.vmap(fn)(hi, y_hi)
        if n_inner:
            v_in = sol.ys[1].reshape((n_seg, n_inner) + v_lo.shape[1:])
            ok = inner_ok.reshape((n_seg,) + (1,) * v_lo.ndim)
            v_in = jnp.where(ok, v_in, v_lo[:, None])
            seg_y = jnp.concatenate([v_lo[:, None], v_in, v_hi[:, None]], axis=1)
            seg_t = jnp.concatenate([lo[:, None], inner_t, hi[:, None]], axis=1)
        else:
            pairs = jnp.stack([v_lo, v_hi], axis=1)[:, :seg_points]
            seg_y, seg_t = pairs, jnp.stack([lo, hi], axis=1)[:, :seg_points]
    else:  # the segmented path's shapes: (n_seg, 0)
        seg_t, seg_y = jnp.zeros((n_seg, 0)), jnp.zeros((n_seg, 0))
    # a reset cannot be an offset: flag the patient rather than return a silently wrong solution (callers pick
    # the segmented path for such regimens: has_resets)
    failed = (sol.result != diffrax.RESULTS.successful) | jnp.any((ev.jump_reset | (ev.jump_ss >= 0)) & ev.jump_mask)
    status = jnp.where(failed, STATUS_SOLVER_FAILED, STATUS_OK)
    finite = jnp.all(jnp.isfinite(out)) & jnp.all(jnp.isfinite(seg_y))
    status = jnp.where((status == STATUS_OK) & ~finite, STATUS_NONFINITE, status)
    return WindowSolution(out, status, sol.stats["num_accepted_steps"], seg_t, seg_y)


__all__ = ["solve_events_whole", "has_resets", "OffsetScaledController"]
