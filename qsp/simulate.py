"""The one simulation entry point: model + parameters + regimen + output times -> named outputs.

How doses enter (exact, never approximated):

* A bolus (and a NONMEM reset) is an exact jump of the state at its time (after the route lag; amount
  times the route's bioavailability F). The horizon is cut at every event time and the ODE is
  integrated piecewise between them (``lax.scan`` over segments, one ``diffrax.diffeqsolve`` each).
* An infusion's start and stop are also cut points, so within every segment the zero-order input is a
  constant passed as an argument: the step-size controller is restarted exactly at each discontinuity
  (the strongest form of declaring the jump to it) and never steps across one. A bolus is never
  approximated by a short infusion.

Output at a time equal to a dose time is the state *after* the dose (right-continuous) unless that
output is flagged ``left`` (then it is the pre-dose value; the NONMEM reader sets this for observation
records that come before the dose record at the same TIME).

Everything below :func:`solve_events` is pure JAX: ``jit``-compiled, ``vmap``-able over patients
(parameter pytrees with a leading axis) and over regimens (padded :class:`~qsp.events.EventArrays`),
and differentiable (``jax.grad``) with respect to parameters and dose amounts (reverse mode through
the solver with diffrax's recursive checkpointing). Each patient gets a solver status code (0 = ok);
a failing patient is flagged and the rest of the batch completes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .errors import InputError
from .events import EventArrays, regimen_to_events, stack_events
from .model import Model
from .regimen import Regimen
from .units import Covariates

SOLVERS = {
    "tsit5": (diffrax.Tsit5, "explicit"),
    "dopri5": (diffrax.Dopri5, "explicit"),
    "dopri8": (diffrax.Dopri8, "explicit"),
    "kvaerno3": (diffrax.Kvaerno3, "implicit"),
    "kvaerno5": (diffrax.Kvaerno5, "implicit"),
}

# "segments": one diffeqsolve per segment between events (lax.scan; resets supported);
# "whole": one diffeqsolve per patient over its horizon, doses as exact offsets (qsp.whole_horizon; no resets)
LOOPS = ("segments", "whole")
ADJOINTS = ("reverse", "forward")

STATUS_OK = 0
STATUS_SOLVER_FAILED = 1  # the solver reported max_steps / dt_min or another failure
STATUS_NONFINITE = 2  # non-finite states in the output
STATUS_SS_FAILED = 3  # a steady-state record did not converge within SolverConfig.ss_max_intervals
STATUS_SS_TAILS = 4  # a steady-state record's lag + duration reaches past the compiled earlier doses
STATUS_TEXT = {STATUS_OK: "ok", STATUS_SOLVER_FAILED: "solver failed (max steps or step-size underflow)",
               STATUS_NONFINITE: "non-finite state",
               STATUS_SS_FAILED: "steady state not reached within ss_max_intervals dosing intervals",
               STATUS_SS_TAILS: "steady-state dose: lag + infusion duration longer than the intervals covered"}
SS_METHODS = ("auto", "closed_form", "iterate")


@dataclass(frozen=True)
class SolverConfig:
    """Solver choice and tolerances (``solver`` one of :data:`SOLVERS`)."""

    solver: str = "tsit5"
    rtol: float = 1e-6
    atol: float = 1e-9
    max_steps: int = 4096
    dtmin: float | None = None
    checkpoints: int | None = None  # reverse mode: steps stored per segment (None: diffrax's binomial default)
    loop: str = "segments"  # "segments" (one solve per event segment) or "whole" (qsp.whole_horizon)
    # derivatives through the solver: "reverse" (jax.grad; diffrax's recursive checkpointing) or "forward"
    # (jax.jvp / jax.jacfwd; diffrax.ForwardMode, cheaper for a few inputs, e.g. the optimizer's step doses)
    adjoint: str = "reverse"
    # steady-state records (qsp.steady_state): "auto" = closed form for linear models, else iteration
    ss_method: str = "auto"
    ss_rtol: float = 1e-8
    ss_atol: float = 1e-10
    ss_max_intervals: int = 1000

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise InputError(f"unknown solver {self.solver!r}; allowed: {', '.join(SOLVERS)}", field="solver")
        for n in ("rtol", "atol"):
            v = getattr(self, n)
            if not (isinstance(v, (int, float)) and v > 0):
                raise InputError(f"{n} must be a positive number, got {v!r}", field=n)
        if self.loop not in LOOPS:
            raise InputError(f"unknown integration loop {self.loop!r}; allowed: {', '.join(LOOPS)}", field="loop")
        if self.adjoint not in ADJOINTS:
            raise InputError(f"unknown adjoint {self.adjoint!r}; allowed: {', '.join(ADJOINTS)}", field="adjoint")
        if self.ss_method not in SS_METHODS:
            raise InputError(f"unknown steady-state method {self.ss_method!r}; allowed: {', '.join(SS_METHODS)}",
                             field="ss_method")
        if not (isinstance(self.ss_max_intervals, int) and self.ss_max_intervals > 0):
            raise InputError(f"ss_max_intervals must be a positive integer, got {self.ss_max_intervals!r}",
                             field="ss_max_intervals")
        if not (isinstance(self.max_steps, int) and self.max_steps > 0):
            raise InputError(f"max_steps must be a positive integer, got {self.max_steps!r}", field="max_steps")


def solver_adjoint(cfg: SolverConfig):
    """The diffrax adjoint for ``cfg.adjoint``: reverse mode with recursive checkpointing, or forward mode."""
    if cfg.adjoint == "forward":
        return diffrax.ForwardMode()
    return diffrax.RecursiveCheckpointAdjoint(checkpoints=cfg.checkpoints)


def _route_vectors(model: Model, p: Mapping):
    """Bioavailability and lag per route, in the order of ``model.route_names``, plus a last entry (F 1, lag 0)
    for a compartment dosed by no route (see :func:`qsp.events._route_and_state`)."""
    one, zero = jnp.asarray(1.0), jnp.asarray(0.0)
    info = model.param_info

    def value(name, fallback):  # a parameter set from before F2/ALAG2 existed: the model's default (1, 0)
        if not name:
            return fallback
        return jnp.asarray(p[name] if name in p else info[name].value, dtype=float)

    f = jnp.stack([value(r.f_param, one) for r in model.routes.values()] + [one])
    lag = jnp.stack([value(r.lag_param, zero) for r in model.routes.values()] + [zero])
    return f, lag


def dose_inputs(model: Model, p: Mapping, ev: EventArrays):
    """Event times and amounts after F, lag, NONMEM's F-with-infusion rules and the dose windows.

    Returns ``(jt, jamt, i0, i1, irate)``: jump times (lagged; a reset or SS record at its own time) and
    amounts (times F), infusion start/stop and rate. Infusions with ``keep_rate`` keep ``R = D / d`` and last
    ``F d``; the others last ``d`` at ``F D / d``; a constant infusion (``d = inf``) runs at its rate ``D``.
    Doses entering outside ``[from, until)`` are dropped and infusions are clipped to it (NONMEM: a reset or SS=1
    record cancels what is pending); dropped events sit at ``+inf``.
    """
    big = jnp.inf
    f_route, lag_route = _route_vectors(model, p)
    setter = ev.jump_reset | (ev.jump_ss >= 0)
    lag_j = lag_route[ev.jump_route]
    tail = ev.jump_tail > 0
    # an SS pattern's earlier bolus j enters at T + lag - j II; it is still to come iff j <= floor(lag / II)
    # (qsp.steady_state.periodic_input uses the same floor for the phase)
    q = jnp.floor(lag_j / ev.jump_ii)
    jt = ev.jump_time + jnp.where(setter, 0.0, jnp.where(tail, lag_j - ev.jump_tail * ev.jump_ii, lag_j))
    pending = jnp.where(tail, ev.jump_tail <= q, jt >= ev.jump_from)
    keep_j = ev.jump_mask & (setter | (pending & (jt < ev.jump_until)))
    jt = jnp.where(keep_j, jt, big)
    jamt = jnp.where(keep_j & ~setter, ev.jump_amount * f_route[ev.jump_route], 0.0)
    f_i = f_route[ev.inf_route]
    const = jnp.isinf(ev.inf_duration)
    dur = jnp.where(const, 1.0, ev.inf_duration)
    d_eff = jnp.where(ev.inf_keep_rate, dur * f_i, dur)
    rate = jnp.where(const, ev.inf_amount, jnp.where(ev.inf_keep_rate, ev.inf_amount / dur, ev.inf_amount * f_i / dur))
    start = ev.inf_start + lag_route[ev.inf_route]
    stop = jnp.where(const, big, start + d_eff)
    a = jnp.maximum(start, ev.inf_from)
    b = jnp.minimum(stop, ev.inf_until)
    keep_i = ev.inf_mask & (b > a)
    i0 = jnp.where(keep_i, a, big)
    i1 = jnp.where(keep_i, b, big)
    irate = jnp.where(keep_i, rate, 0.0)
    return jt, jamt, i0, i1, irate


def solve_events(model: Model, cfg: SolverConfig, params: Mapping, ev: EventArrays, ts, ts_left=None):
    """Solve one patient. Pure JAX; vmap and grad freely.

    Args:
        params: parameter name -> scalar.
        ev: event arrays (model time and amount units).
        ts: output times, shape (n,), non-decreasing.
        ts_left: optional bool (n,): take the left limit (pre-dose value) at event times.

    Returns:
        ``(ys, status, n_steps, ss_intervals)``: states at ``ts`` (n, n_states), int status, total accepted
        steps, dosing intervals iterated for steady-state records (0: none, or in closed form).
    """
    sol = solve_events_windows(model, cfg, params, ev, ts, ts_left, seg_points=0)
    return sol.ys, sol.status, sol.n_steps, sol.ss_intervals


class WindowSolution(NamedTuple):
    """:func:`solve_events_windows` output for one patient.

    ``ys`` (n, n_states) at the output times; ``status``; ``n_steps``; ``seg_t`` (n_seg, K) and ``seg_y``
    (n_seg, K, n_states): each integration segment ``[a, b]`` (between consecutive event breakpoints,
    in time order) sampled at ``a + (b - a) j / (K - 1)``, ``j = 0..K-1`` (right-continuous at ``a``,
    left limit at ``b``). Segments after the horizon have ``a = b = ts[-1]``.
    """

    ys: jnp.ndarray
    status: jnp.ndarray
    n_steps: jnp.ndarray
    seg_t: jnp.ndarray
    seg_y: jnp.ndarray  # (n_seg, K, n_states), or (n_seg, K, ...) of seg_fn's values
    ss_intervals: jnp.ndarray = 0  # dosing intervals iterated for steady-state records (0: none or closed form)


def solve_events_windows(model: Model, cfg: SolverConfig, params: Mapping, ev: EventArrays, ts, ts_left=None, *,
                         seg_points: int = 0, seg_fn=None) -> WindowSolution:
    """:func:`solve_events`, plus every segment sampled on ``seg_points`` evenly spaced points.

    The per-segment samples cost ``seg_points`` interpolations per segment (not one per output time per
    segment, as a fine global output grid would): they are what per-dose summaries (IL-6 peak and its
    timing, :mod:`qsp.crs`) are computed from. With ``seg_fn(t, y, params)`` only its value is kept at the
    segment samples (``seg_y`` then has the shape of ``seg_fn``'s output per point), which keeps the memory
    traffic of a large batch small.
    """
    if cfg.loop == "whole":
        from .whole_horizon import solve_events_whole

        return solve_events_whole(model, cfg, params, ev, ts, ts_left, seg_points=seg_points, seg_fn=seg_fn)
    p = {k: jnp.asarray(v, dtype=float) for k, v in params.items()}
    ev = EventArrays(*[jnp.asarray(a) for a in ev])  # (numpy arrays when called outside jit)
    ts = jnp.asarray(ts, dtype=float)
    ts_left = jnp.zeros(ts.shape, bool) if ts_left is None else jnp.asarray(ts_left, bool)
    n_states = len(model.state_names)
    big = jnp.inf

    # Jumps and infusion boundaries, with lags, bioavailability and NONMEM's rules applied (dose_inputs). A reset
    # or an SS record happens at its record time (NONMEM EVID 3/4, SS): the route lag delays its dose, not it.
    jt, jamt, i0, i1, irate = dose_inputs(model, p, ev)
    has_ss = ev.ss_mode.shape[-1] > 0  # static: regimens without SS records compile no steady-state code

    nj, ni = jt.shape[0], i0.shape[0]
    bp = jnp.concatenate([jt, i0, i1])
    b_amt = jnp.concatenate([jamt, jnp.zeros(2 * ni)])
    b_state = jnp.concatenate([ev.jump_state, jnp.zeros(2 * ni, jnp.int32)])
    b_reset = jnp.concatenate([ev.jump_reset & ev.jump_mask, jnp.zeros(2 * ni, bool)])
    b_ss = jnp.concatenate([jnp.where(ev.jump_mask, ev.jump_ss, -1), jnp.full(2 * ni, -1, jnp.int32)])
    # at equal times a reset or SS record acts first (what an earlier record at that time had is cancelled by
    # its window), then the doses in record order (stable)
    b_setter = jnp.concatenate([(ev.jump_reset | (ev.jump_ss >= 0)) & ev.jump_mask, jnp.zeros(2 * ni, bool)])
    order = jax.lax.sort((bp, ~b_setter, jnp.arange(bp.shape[0])), num_keys=2, is_stable=True)[2]
    bp, b_amt, b_state, b_reset, b_ss = bp[order], b_amt[order], b_state[order], b_reset[order], b_ss[order]

    t_start = jnp.minimum(ts[0], bp[0])
    t_end = ts[-1]
    lo = jnp.clip(jnp.concatenate([t_start[None], bp]), t_start, t_end)
    hi = jnp.clip(jnp.concatenate([bp, jnp.asarray([big])]), t_start, t_end)
    # Jump applied at the start of segment k is event k-1 (none for the first segment).
    seg_amt = jnp.concatenate([jnp.zeros(1), b_amt])
    seg_state = jnp.concatenate([jnp.zeros(1, jnp.int32), b_state])
    seg_reset = jnp.concatenate([jnp.zeros(1, bool), b_reset])
    seg_ss = jnp.concatenate([jnp.full(1, -1, jnp.int32), b_ss])
    seg_valid = jnp.concatenate([jnp.ones(1, bool), bp <= t_end])
    mid = 0.5 * (lo + hi)
    active = (i0[None, :] <= mid[:, None]) & (mid[:, None] < i1[None, :])
    seg_rate = jnp.zeros((lo.shape[0], n_states)).at[:, ev.inf_state].add(jnp.where(active, irate[None, :], 0.0))

    # Which segment each output belongs to: number of breakpoints at (right) or before (left) it.
    k_right = jnp.searchsorted(bp, ts, side="right")
    k_left = jnp.searchsorted(bp, ts, side="left")
    k_out = jnp.where(ts_left, k_left, k_right)
    # Times before the first event and exactly t_start with no event: segment 0.

    y0 = model.initial_state(p)
    solver_cls, _ = SOLVERS[cfg.solver]
    solver = solver_cls()
    controller = diffrax.PIDController(rtol=cfg.rtol, atol=cfg.atol, dtmin=cfg.dtmin)
    term = diffrax.ODETerm(model.vector_field)
    frac = jnp.linspace(0.0, 1.0, seg_points) if seg_points else None
    status0, ss_intervals = jnp.asarray(STATUS_OK), jnp.asarray(0)
    if has_ss:
        y_ss, ss_intervals, status0 = _steady_states(model, cfg, p, ev, y0, term, solver, controller)

    def segment(carry, xs):
        y, out, status, steps = carry
        k, a, b, amt, st, rs, valid, rate, ssi = xs
        y = jnp.where(rs & valid, y0, y)
        if has_ss:  # SS=1: the steady state; SS=2: its departure from the initial state added
            i = jnp.clip(ssi, 0, None)
            on = valid & (ssi >= 0)
            mode = ev.ss_mode[i]
            y = jnp.where(on & (mode == 1), y_ss[i], jnp.where(on & (mode == 2), y + y_ss[i] - y0, y))
        y = y.at[st].add(jnp.where(valid, amt, 0.0))
        subs = [diffrax.SubSaveAt(t1=True), diffrax.SubSaveAt(ts=jnp.clip(ts, a, b))]
        if seg_points:
            fn = (lambda t, y_, args: seg_fn(t, y_, args[0])) if seg_fn is not None else (lambda t, y_, args: y_)
            # clipped: a + (b - a) * 1.0 can round one ulp past b (e.g. a = 1 + 1/6, b = 4), which diffrax refuses
            subs.append(diffrax.SubSaveAt(ts=jnp.clip(a + (b - a) * frac, a, b), fn=fn))
        sol = diffrax.diffeqsolve(term, solver, t0=a, t1=b, dt0=None, y0=y, args=(p, rate),
                                  saveat=diffrax.SaveAt(subs=subs),
                                  stepsize_controller=controller, max_steps=cfg.max_steps, throw=False,
                                  adjoint=solver_adjoint(cfg))
        y_end, ys = sol.ys[0][0], sol.ys[1]
        seg = (jnp.clip(a + (b - a) * frac, a, b), sol.ys[2]) if seg_points else (jnp.zeros((0,)), jnp.zeros((0,)))
        out = jnp.where((k_out == k)[:, None], ys, out)
        failed = sol.result != diffrax.RESULTS.successful
        status = jnp.where((status == STATUS_OK) & failed & valid, STATUS_SOLVER_FAILED, status)
        steps = steps + sol.stats["num_accepted_steps"]
        return (y_end, out, status, steps), seg

    n_seg = lo.shape[0]
    xs = (jnp.arange(n_seg), lo, hi, seg_amt, seg_state, seg_reset, seg_valid, seg_rate, seg_ss)
    out0 = jnp.zeros((ts.shape[0], n_states))
    init = (y0, out0, status0, jnp.asarray(0))
    (y_final, out, status, steps), (seg_t, seg_y) = jax.lax.scan(segment, init, xs)
    finite = jnp.all(jnp.isfinite(out)) & jnp.all(jnp.isfinite(seg_y))
    status = jnp.where((status == STATUS_OK) & ~finite, STATUS_NONFINITE, status)
    return WindowSolution(out, status, steps, seg_t, seg_y, ss_intervals)


def _steady_states(model: Model, cfg: SolverConfig, p: Mapping, ev: EventArrays, y0, term, solver, controller):
    """Each SS record's state (:mod:`qsp.steady_state`): ``(y_ss (n_ss, n_states), intervals, status)``.

    ``intervals`` is the largest number of dosing intervals iterated over the records (0: closed form)."""
    from . import steady_state as ssm
    from .events import SS_TAILS_EXTRA

    f_route, lag_route = _route_vectors(model, p)
    closed = cfg.ss_method == "closed_form" or (cfg.ss_method == "auto" and model.linear)
    if not closed and cfg.adjoint == "forward":
        raise InputError("forward-mode derivatives (adjoint='forward') do not go through an iterated steady "
                         "state (SS records on a nonlinear model); use adjoint='reverse'", field="adjoint")
    settings = ssm.SteadyStateSettings(cfg.ss_rtol, cfg.ss_atol, cfg.ss_max_intervals)
    # the record's own time, for a model with a clock: the set jump of record k
    n_ss = ev.ss_mode.shape[-1]
    is_set = ev.jump_mask & (ev.jump_ss >= 0)
    t_rec = jnp.zeros(n_ss).at[jnp.where(is_set, ev.jump_ss, n_ss)].set(ev.jump_time, mode="drop")

    def one(k):
        row = dict(ii=ev.ss_ii[k], amount=ev.ss_amount[k], duration=ev.ss_duration[k], keep_rate=ev.ss_keep_rate[k],
                   state=ev.ss_state[k])
        f, lag = f_route[ev.ss_route[k]], lag_route[ev.ss_route[k]]
        inp = ssm.periodic_input(model, row, f, lag)
        tail = ssm.uncovered_tail(inp, row["duration"], f, lag, row["keep_rate"], SS_TAILS_EXTRA)
        if closed:
            y, n, ok = ssm.closed_form(model, p, y0, inp, t_rec[k]), jnp.asarray(0), jnp.asarray(True)
        else:
            y, n, ok = ssm.iterate(model, p, y0, inp, t_rec[k], term, solver, controller, cfg.max_steps,
                                   diffrax.RecursiveCheckpointAdjoint(checkpoints=cfg.checkpoints), settings,
                                   active=ev.ss_mask[k])
        st = jnp.where(~ok, STATUS_SS_FAILED, jnp.where(tail, STATUS_SS_TAILS, STATUS_OK))
        return y, n, jnp.where(ev.ss_mask[k], st, STATUS_OK)

    ys, ns, sts = jax.vmap(one)(jnp.arange(ev.ss_mode.shape[-1]))
    return ys, jnp.max(jnp.where(ev.ss_mask, ns, 0)), jnp.max(sts)


def _outputs_at(model: Model, params: Mapping, ts, ys):
    p = {k: jnp.asarray(v, dtype=float) for k, v in params.items()}
    return jax.vmap(lambda t, y: model.outputs(t, y, p))(ts, ys)


def _run_one(model, cfg, params, ev, ts, ts_left):
    ys, status, steps, ss_n = solve_events(model, cfg, params, ev, ts, ts_left)
    return ys, _outputs_at(model, params, ts, ys), status, steps, ss_n


@functools.lru_cache(maxsize=64)
def compiled(model: Model, cfg: SolverConfig, batched: bool):
    """A jitted ``(params, events, ts, ts_left) -> (states, outputs, status, steps, ss_intervals)`` for this model.

    With ``batched=True`` every argument carries a leading patient axis (``ts`` too).
    """
    fn = functools.partial(_run_one, model, cfg)
    if batched:
        fn = jax.vmap(fn)
    return jax.jit(fn)


@dataclass
class SimulationResult:
    """Named outputs and states at the output times.

    ``outputs[name]`` and ``states[name]`` have shape (n_times,) for one patient or
    (n_patients, n_times) for a batch; ``status`` is 0 where the solve succeeded.
    """

    model: Model
    times: np.ndarray
    outputs: dict[str, np.ndarray]
    states: dict[str, np.ndarray]
    status: np.ndarray
    n_steps: np.ndarray
    ss_intervals: np.ndarray | int = 0  # dosing intervals iterated for steady-state records (0: closed form/none)

    @property
    def batched(self) -> bool:
        return self.status.ndim == 1

    @property
    def ok(self) -> np.ndarray:
        return self.status == STATUS_OK

    def units(self) -> dict[str, str]:
        u = {n: s.unit for n, s in self.model.state_info.items()}
        u.update({n: o.unit for n, o in self.model.output_info.items()})
        return u

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.outputs:
            return self.outputs[name]
        if name in self.states:
            return self.states[name]
        raise KeyError(f"{name!r}: not an output or state; have {sorted(self.outputs) + sorted(self.states)}")

    def to_dataframe(self, states: bool = True):
        """Tidy table: one row per (patient, time); columns ``id`` (batch only), ``time``, outputs, states."""
        import pandas as pd

        cols = dict(self.outputs)
        if states:
            cols.update({k: v for k, v in self.states.items() if k not in cols})
        tname = f"time_{self.model.time_unit}"
        if not self.batched:
            df = pd.DataFrame({tname: self.times, **{k: np.asarray(v) for k, v in cols.items()}})
            df["status"] = int(self.status)
            return df
        n, m = self.status.shape[0], self.times.shape[-1]
        times = np.broadcast_to(self.times, (n, m))
        df = pd.DataFrame({"id": np.repeat(np.arange(n), m), tname: times.reshape(-1),
                           **{k: np.asarray(v).reshape(-1) for k, v in cols.items()}})
        df["status"] = np.repeat(self.status, m)
        return df


def _as_ts(times) -> np.ndarray:
    ts = np.asarray(times, dtype=float)
    if ts.ndim not in (1, 2) or ts.shape[-1] == 0:
        raise InputError("output times must be a non-empty 1-D array", field="times")
    if not np.all(np.isfinite(ts)):
        raise InputError("output times must be finite numbers", field="times")
    if np.any(np.diff(ts, axis=-1) < 0):
        raise InputError("output times must be non-decreasing", field="times")
    return ts


def simulate(model: Model, regimen: Regimen | EventArrays | Sequence, times, params: Mapping | None = None, *,
             covariates: Covariates | Sequence[Covariates] | None = None, times_left=None,
             solver: str = "tsit5", rtol: float = 1e-6, atol: float = 1e-9, max_steps: int = 4096,
             loop: str = "segments", ss_method: str = "auto", ss_rtol: float = 1e-8, ss_atol: float = 1e-10,
             ss_max_intervals: int = 1000) -> SimulationResult:
    """Simulate one patient, or a batch.

    Args:
        model: a :class:`~qsp.model.Model`.
        regimen: a :class:`~qsp.regimen.Regimen` (or compiled :class:`~qsp.events.EventArrays`), or a list of
            them (one per patient; padded and batched).
        times: output times in the model's time unit, (n,) or (n_patients, n).
        params: overrides of the model's defaults; values may be arrays with a leading patient axis for a
            batch (then every other parameter is broadcast).
        covariates: body weight / BSA for mg/kg and ug/m2 doses (one, or one per patient).
        times_left: optional bools: output the pre-dose value at a dose time.
        solver: one of :data:`SOLVERS` (``tsit5`` explicit, ``kvaerno5`` implicit, ...).
        loop: :data:`LOOPS`: ``segments`` (one solve per segment between events) or ``whole`` (one solve per
            patient over its horizon, :mod:`qsp.whole_horizon`); a regimen with resets (EVID 3/4) always
            takes the segmented loop.
        ss_method, ss_rtol, ss_atol, ss_max_intervals: steady-state records (:mod:`qsp.steady_state`):
            ``auto`` (closed form for linear models, else iteration), ``closed_form`` or ``iterate``, and the
            iteration's tolerances and limit.

    Returns:
        :class:`SimulationResult`.
    """
    cfg = SolverConfig(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps, loop=loop, ss_method=ss_method,
                       ss_rtol=ss_rtol, ss_atol=ss_atol, ss_max_intervals=ss_max_intervals)
    ts = _as_ts(times)
    params = model.resolve_aliases(dict(params or {}))  # NONMEM's F1/ALAG1 for F/ALAG, per patient too
    scalar_over = {k: v for k, v in params.items() if np.ndim(v) == 0}
    base = model.params(scalar_over)
    arr_over = {k: np.asarray(v, dtype=float) for k, v in params.items() if np.ndim(v) > 0}
    for k, v in arr_over.items():
        # Name and domain validation of every patient's finite value (the smallest and largest are the ones
        # that can leave the domain). Non-finite per-patient values are allowed: that patient is flagged by its status.
        finite = v[np.isfinite(v)]
        for x in ((finite.min(), finite.max()) if finite.size else ()):  # both ends: F has an upper bound
            model.params({k: float(x)})
    batched = _is_regimen_list(regimen) or bool(arr_over) or ts.ndim == 2 or \
        (isinstance(covariates, (list, tuple)))
    if not batched:
        ev = regimen if isinstance(regimen, EventArrays) else regimen_to_events(model, regimen, covariates)
        left = np.zeros(ts.shape, bool) if times_left is None else np.asarray(times_left, bool)
        fn = compiled(model, _loop_for(cfg, ev), False)
        return _result(model, ts, *fn(base, ev, ts, left))

    n = _batch_size(regimen, arr_over, ts, covariates)
    regs = list(regimen) if _is_regimen_list(regimen) else [regimen] * n
    covs = list(covariates) if isinstance(covariates, (list, tuple)) else [covariates] * n
    if len(regs) != n or len(covs) != n:
        raise InputError(f"batch sizes disagree: {len(regs)} regimens, {len(covs)} covariate sets, {n} patients",
                         field="regimen")
    evs = [r if isinstance(r, EventArrays) else regimen_to_events(model, r, c) for r, c in zip(regs, covs)]
    ev = stack_events(evs)
    pb = {k: np.broadcast_to(np.asarray(arr_over.get(k, v), dtype=float), (n,)).copy() for k, v in base.items()}
    tsb = np.broadcast_to(ts, (n, ts.shape[-1])).copy()
    left = np.zeros(tsb.shape, bool) if times_left is None else np.broadcast_to(np.asarray(times_left, bool),
                                                                                 tsb.shape).copy()
    fn = compiled(model, _loop_for(cfg, ev), True)
    return _result(model, ts, *fn(pb, ev, tsb, left))


def _loop_for(cfg: SolverConfig, ev: EventArrays) -> SolverConfig:
    """The segmented loop for events with a reset or a steady-state record (the whole-horizon loop cannot
    restart or set the system)."""
    from dataclasses import replace

    from .whole_horizon import has_resets

    return replace(cfg, loop="segments") if cfg.loop == "whole" and has_resets(ev) else cfg


def _is_regimen_list(regimen) -> bool:
    """A list of per-patient regimens (EventArrays is a NamedTuple, i.e. a tuple, but one patient's events)."""
    return isinstance(regimen, (list, tuple)) and not isinstance(regimen, EventArrays)


def _batch_size(regimen, arr_over, ts, covariates) -> int:
    sizes = set()
    if _is_regimen_list(regimen):
        sizes.add(len(regimen))
    for k, v in arr_over.items():
        if v.ndim != 1:
            raise InputError(f"batched parameter {k} must be 1-D (one value per patient), got shape {v.shape}",
                             field="params")
        sizes.add(v.shape[0])
    if ts.ndim == 2:
        sizes.add(ts.shape[0])
    if isinstance(covariates, (list, tuple)):
        sizes.add(len(covariates))
    if len(sizes) != 1:
        raise InputError(f"batch sizes disagree: {sorted(sizes)}", field="params")
    return sizes.pop()


def _result(model, ts, ys, outs, status, steps, ss_n) -> SimulationResult:
    ys = np.asarray(ys)
    states = {n: ys[..., i] for i, n in enumerate(model.state_names)}
    return SimulationResult(model=model, times=ts, outputs={k: np.asarray(v) for k, v in outs.items()},
                            states=states, status=np.asarray(status), n_steps=np.asarray(steps),
                            ss_intervals=np.asarray(ss_n))
