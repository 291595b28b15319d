"""Steady state of a periodic dose (NONMEM SS=1/2), exact for linear models, numerical otherwise.

A steady-state record at time ``T`` (dose ``D`` into state ``s`` every ``II``, route bioavailability ``F`` and
lag ``ALAG``) puts the system where it would be at ``T`` had the same dose been given at ``T - k II`` for every
``k >= 1`` forever. The record's own dose then follows as an ordinary event at ``T + ALAG``, and the parts of the
earlier doses that still enter after ``T`` (an infusion longer than ``II``, a lag) are ordinary events too
(compiled by :func:`qsp.events.regimen_to_events`). So the state set at ``T`` is the **left limit at phase 0 of
the periodic solution**: with ``P`` the map over one dosing interval ``[T - II, T)`` of the periodic input,
``y* = P(y*)``.

The periodic input over one interval (phase ``t`` in ``[0, II)``, ``phi = ALAG mod II``):

* bolus: ``F D`` into ``s`` at phase ``phi``;
* infusion of duration ``d`` (NONMEM's F rules: rate kept, ``R = D / d`` and ``d' = F d``; or duration kept,
  ``R = F D / d`` and ``d' = d``): with ``m = floor(d' / II)`` infusions always running and the remainder
  ``rem = d' - m II``, the input rate is ``m R`` plus ``R`` on the wrapped window ``[phi, phi + rem)``;
  ``II < d`` (overlapping infusions) and ``II = d`` (a constant rate) are both covered;
* constant infusion (``AMT = 0, RATE = R, II = 0``): ``R`` for ever; ``y*`` solves ``f(y*) + R e_s = 0``.

Two methods:

* **closed form** for models declared linear and time-invariant (``Model.linear``; the built-in PK models):
  ``dy/dt = A y + c + u(t)``. Over a piece of constant input ``u`` of length ``h``,
  ``y -> e^{A h} y + int_0^h e^{A s} ds (c + u)``, both blocks of ``expm([[A, c + u], [0, 0]] h)``; one interval
  is the affine map ``P(y) = Phi y + g``, so ``y* = (I - Phi)^{-1} g`` (superposition, exact to rounding); the
  constant infusion gives ``y* = -A^{-1} (c + u)``.
* **iteration** for every other model (the TCE model): ``y_{k+1} = P(y_k)`` from the initial (reset) state,
  each ``P`` one numerical solve of the interval, until ``|y_{k+1} - y_k| <= atol + rtol |y_{k+1}|`` in every
  state (NONMEM's empirical steady state), at most ``max_intervals`` intervals. The number of intervals is
  reported per patient (:attr:`qsp.simulate.SimulationResult.ss_intervals`); a record that does not converge
  gives status :data:`qsp.simulate.STATUS_SS_FAILED`. Derivatives use the implicit function theorem at the
  fixed point (:func:`fixed_point`), not the iterations. A constant infusion is iterated over
  windows of :data:`CONSTANT_WINDOW_DAYS`. A model with explicit time dependence (a time-varying clearance)
  is iterated over the interval ``[T - II, T)`` of its own clock.

SS=2 adds the steady state's departure from the initial state, ``y* - y0``, to the current state (NONMEM's
superposition: exact for linear models, whose initial state is 0; an approximation for nonlinear ones).

Reference: NONMEM Users Guide Part VI (PREDPP), chapter V.F (the SS data item) and the empirical steady
state of NONMEM 7.5 (Guide Introduction_7).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import diffrax
import jax
import jax.numpy as jnp

from .model import Model

CONSTANT_WINDOW_DAYS = 1.0  # iteration window for a constant infusion's steady state (numerical method)


class SteadyStateSettings(NamedTuple):
    """Tolerances of the numerical steady state (the closed form needs none)."""

    rtol: float = 1e-8
    atol: float = 1e-10
    max_intervals: int = 1000


class PeriodicInput(NamedTuple):
    """One SS record's input over a dosing interval (model units; see the module docstring)."""

    ii: jnp.ndarray  # interval (window length for a constant infusion)
    phi: jnp.ndarray  # phase of the bolus / infusion start in [0, ii)
    bolus: jnp.ndarray  # F * D for a bolus, else 0
    base_rate: jnp.ndarray  # m * R: infusions running the whole interval (R for a constant infusion)
    pulse_rate: jnp.ndarray  # R on the wrapped window [phi, phi + rem)
    rem: jnp.ndarray
    state: jnp.ndarray
    constant: jnp.ndarray  # bool: constant infusion


def periodic_input(model: Model, mode_row: Mapping, f: jnp.ndarray, lag: jnp.ndarray) -> PeriodicInput:
    """The periodic input of one SS record (``mode_row``: ``ii, amount, duration, keep_rate, state``)."""
    ii, amount, dur, keep = mode_row["ii"], mode_row["amount"], mode_row["duration"], mode_row["keep_rate"]
    constant = jnp.isinf(dur)
    is_inf = (dur > 0) & ~constant
    safe_dur = jnp.where(is_inf, dur, 1.0)
    window = CONSTANT_WINDOW_DAYS / _days_per_unit(model)
    ii_eff = jnp.where(constant, window, ii)
    # phase of the dose in the interval; the same floor as the tail doses' (qsp.simulate.dose_inputs)
    phi = jnp.where(constant, 0.0, jnp.clip(lag - jnp.floor(lag / ii_eff) * ii_eff, 0.0, ii_eff))
    d_eff = jnp.where(keep, safe_dur * f, safe_dur)
    rate = jnp.where(keep, amount / safe_dur, amount * f / safe_dur)
    m = jnp.floor(d_eff / ii_eff)
    rem = d_eff - m * ii_eff
    base = jnp.where(constant, amount, jnp.where(is_inf, m * rate, 0.0))
    pulse = jnp.where(is_inf, rate, 0.0)
    bolus = jnp.where((dur == 0), amount * f, 0.0)
    return PeriodicInput(ii_eff, phi, bolus, base, pulse, jnp.where(is_inf, rem, 0.0), mode_row["state"], constant)


def _days_per_unit(model: Model) -> float:
    from .regimen import TIME_UNITS

    return TIME_UNITS[model.time_unit]


def _pieces(inp: PeriodicInput):
    """Sorted piece boundaries of one interval, each piece's input rate, and the piece where the bolus enters."""
    end = jnp.mod(inp.phi + inp.rem, inp.ii)
    raw = jnp.stack([jnp.zeros_like(inp.ii), inp.phi, end, inp.ii])
    order = jnp.argsort(raw, stable=True)
    b = raw[order]
    mid = 0.5 * (b[:-1] + b[1:])
    in_pulse = jnp.mod(mid - inp.phi, inp.ii) < inp.rem
    rates = inp.base_rate + jnp.where(in_pulse, inp.pulse_rate, 0.0)
    bolus_piece = jnp.argmax(order == 1)  # the piece that starts at phi
    return b, rates, bolus_piece


def _unit(n: int, s) -> jnp.ndarray:
    return jnp.zeros(n).at[s].set(1.0)


def closed_form(model: Model, p: Mapping, y0: jnp.ndarray, inp: PeriodicInput, t_ref) -> jnp.ndarray:
    """``y*`` for a linear time-invariant model (``Model.linear``): matrix exponentials, no ODE solve."""
    n = y0.shape[0]
    zero_rate = jnp.zeros(n)
    A = jax.jacfwd(lambda y: model.vector_field(t_ref, y, (p, zero_rate)))(y0)
    c = model.vector_field(t_ref, jnp.zeros(n), (p, zero_rate))
    e_s = _unit(n, inp.state)

    def flow(y, u, h):
        aug = jnp.zeros((n + 1, n + 1)).at[:n, :n].set(A).at[:n, n].set(c + u)
        E = jax.scipy.linalg.expm(aug * h)
        return E[:n, :n] @ y + E[:n, n]

    b, rates, bolus_piece = _pieces(inp)

    def period(y):
        for i in range(3):
            y = y + jnp.where(bolus_piece == i, inp.bolus, 0.0) * e_s
            y = flow(y, rates[i] * e_s, b[i + 1] - b[i])
        return y

    g = period(jnp.zeros(n))
    Phi = jax.jacfwd(period)(jnp.zeros(n))
    periodic = jnp.linalg.solve(jnp.eye(n) - Phi, g)
    constant = jnp.linalg.solve(A, -(c + inp.base_rate * e_s))
    return jnp.where(inp.constant, constant, periodic)


def iterate(model: Model, p: Mapping, y0: jnp.ndarray, inp: PeriodicInput, t_ref, term, solver, controller,
            max_steps: int, adjoint, settings: SteadyStateSettings, active=True):
    """``y*`` by iterating the interval map from ``y0``: ``(y*, intervals, converged)``. An inactive record
    (padding) is not iterated."""
    n = y0.shape[0]

    def period(y, theta):
        p_, inp_, t_ref_, _active = theta
        e_s = _unit(n, inp_.state)
        b, rates, bolus_piece = _pieces(inp_)
        t0 = t_ref_ - inp_.ii
        for i in range(3):
            y = y + jnp.where(bolus_piece == i, inp_.bolus, 0.0) * e_s
            a, z = t0 + b[i], t0 + b[i + 1]
            sol = diffrax.diffeqsolve(term, solver, t0=a, t1=jnp.maximum(z, a), dt0=None, y0=y,
                                      args=(p_, rates[i] * e_s), saveat=diffrax.SaveAt(t1=True),
                                      stepsize_controller=controller, max_steps=max_steps, throw=False,
                                      adjoint=adjoint)
            y = jnp.where(z > a, sol.ys[-1], y)
        return y

    return fixed_point(period, (p, inp, t_ref, jnp.asarray(active)), y0, settings)


def _converged(new, old, settings: SteadyStateSettings):
    return jnp.all(jnp.abs(new - old) <= settings.atol + settings.rtol * jnp.abs(new))


def _iterate_map(step, y0, settings: SteadyStateSettings, active=True):
    """``y_{k+1} = step(y_k)`` until converged (:func:`_converged`) or ``max_intervals``: ``(y, k, ok)``."""

    def cond(c):
        _, _, k, done = c
        return (~done) & (k < settings.max_intervals)

    def body(c):
        y, _, k, _ = c
        new = step(y)
        return new, y, k + 1, _converged(new, y, settings) | ~jnp.all(jnp.isfinite(new))  # a NaN stops it

    y, _, k, done = jax.lax.while_loop(cond, body, (y0, y0, jnp.asarray(0), ~jnp.asarray(active)))
    return y, k, done & jnp.all(jnp.isfinite(y))


def fixed_point(period, theta, y0, settings: SteadyStateSettings):
    """The fixed point of ``y -> period(y, theta)`` by iteration, differentiable in ``theta`` by the implicit
    function theorem: with ``y* = P(y*, theta)``, the cotangent ``lam = g + (dP/dy)^T lam`` is itself found by
    iteration (it converges as the forward map does: the spectral radius of ``dP/dy`` at a stable periodic
    solution is below 1) and ``theta_bar = (dP/dtheta)^T lam``. ``theta[-1]`` is a bool: False (a padding
    record) skips the iteration. Returns ``(y*, intervals, converged)``."""

    @jax.custom_vjp
    def solve(theta, y0):
        return _iterate_map(lambda y: period(y, theta), y0, settings, theta[-1])

    def fwd(theta, y0):
        y, k, ok = solve(theta, y0)
        return (y, k, ok), (theta, y)

    def bwd(res, g):
        theta, y = res
        gy = g[0]
        active = jnp.asarray(theta[-1])
        _, vjp_y = jax.vjp(lambda yy: period(yy, theta), y)
        # the cotangent's own fixed point, to a tolerance relative to its scale; NaN if it does not converge
        scale = jnp.max(jnp.abs(gy)) + 1e-300
        lam_settings = settings._replace(atol=settings.rtol * scale)
        lam, _, ok = _iterate_map(lambda lam_: gy + vjp_y(lam_)[0], gy, lam_settings, active)
        lam = jnp.where(ok | ~active, lam, jnp.nan)
        _, vjp_theta = jax.vjp(lambda th: period(y, th), theta)
        theta_bar = vjp_theta(lam)[0]
        # an inactive record returns y0 unchanged: no dependence on theta, the identity in y0
        theta_bar = jax.tree_util.tree_map(
            lambda t: t if t.dtype == jax.dtypes.float0 else jnp.where(active, t, jnp.zeros_like(t)), theta_bar)
        return theta_bar, jnp.where(active, jnp.zeros_like(y), gy)

    solve.defvjp(fwd, bwd)
    return solve(theta, y0)


def uncovered_tail(inp: PeriodicInput, duration, f, lag, keep, extra: int) -> jnp.ndarray:
    """True where earlier doses of the pattern still enter after ``T`` beyond the compiled tail events."""
    constant = jnp.isinf(duration)
    safe = jnp.where(constant | (duration <= 0), 0.0, duration)
    n_tail = jnp.ceil(safe / inp.ii) + extra
    d_eff = jnp.where(keep, safe * f, safe)
    reach = lag + d_eff
    limit = (n_tail + 1.0) * inp.ii
    is_bolus = duration <= 0
    return ~constant & jnp.where(is_bolus, reach >= limit, reach > limit)
