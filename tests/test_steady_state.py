"""Steady-state records (NONMEM SS=1/2), F and lag per compartment, zero-order input into the depot and NONMEM's
rules for F with infusions, checked against closed forms.

The reference is superposition written out by hand: the 1-compartment model with a first-order depot has
closed-form single-dose responses (bolus into the depot or the central compartment, zero-order input into
either), and a steady state is the sum of the responses to the dose given every II for ever (the sum is
carried until its terms are below 1e-18 of the first). Nothing in it shares code with the engine.
"""

from __future__ import annotations

import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qsp.cards import load_card
from qsp.errors import InputError
from qsp.events import regimen_to_events
from qsp.pkmodels import pk_model
from qsp.regimen import Dose, Regimen
from qsp.simulate import STATUS_OK, STATUS_SS_FAILED, STATUS_SS_TAILS, SolverConfig, simulate, solve_events

P = dict(CL=2.0, V=20.0, KA=0.8)  # k = 0.1 /h
TIGHT = dict(rtol=1e-11, atol=1e-13)
ITER = dict(ss_method="iterate", ss_rtol=1e-12, ss_atol=1e-15)
M1 = pk_model("pk-1cmt")


# ---------------------------------------------------------------------------------------------------
# closed-form single-dose responses (central amount) of the 1-cmt model with a first-order depot
# ---------------------------------------------------------------------------------------------------
def _central_bolus(u, k, ka):
    return np.where(u >= 0, np.exp(-k * np.maximum(u, 0)), 0.0)


def _depot_bolus(u, k, ka):
    u0 = np.maximum(u, 0)
    return np.where(u >= 0, ka / (ka - k) * (np.exp(-k * u0) - np.exp(-ka * u0)), 0.0)


def _central_zero_order(u, d, k, ka):
    """Central amount per unit rate, input on [0, d): int_0^min(u,d) exp(-k (u - s)) ds."""
    m = np.clip(u, 0, d)
    return np.where(u > 0, (np.exp(-k * (u - m)) - np.exp(-k * u)) / k, 0.0)


def _depot_zero_order(u, d, k, ka):
    m = np.clip(u, 0, d)
    a = (np.exp(-k * (u - m)) - np.exp(-k * u)) / k
    b = (np.exp(-ka * (u - m)) - np.exp(-ka * u)) / ka
    return np.where(u > 0, ka / (ka - k) * (a - b), 0.0)


def reference_cp(t, *, dose_times, amount, into, f=1.0, lag=0.0, duration=None, keep="rate", p=P):
    """CP at times ``t`` from doses at ``dose_times`` (bolus or zero-order; NONMEM's F rules)."""
    k, ka = p["CL"] / p["V"], p["KA"]
    t = np.asarray(t, float)[:, None]
    start = np.asarray(dose_times, float)[None, :] + lag
    u = t - start
    if duration is None:
        resp = (_depot_bolus if into == "depot" else _central_bolus)(u, k, ka) * f * amount
    else:
        d_eff, rate = (duration * f, amount / duration) if keep == "rate" else (duration, f * amount / duration)
        resp = (_depot_zero_order if into == "depot" else _central_zero_order)(u, d_eff, k, ka) * rate
    return resp.sum(axis=1) / p["V"]


def ss_dose_times(T, ii, addl=0, p=P):
    """The dose times of a steady state at T: T - j II for every j >= 0 that still matters, then the ADDL doses."""
    k = min(p["CL"] / p["V"], p["KA"])
    n = int(math.ceil(-math.log(1e-18) / (k * ii))) + 5
    return [T - j * ii for j in range(n, 0, -1)] + [T + j * ii for j in range(addl + 1)]


def _close(a, b, rel=1e-8):
    a, b = np.asarray(a), np.asarray(b)
    scale = np.maximum(np.abs(b), 1e-12 * np.max(np.abs(b)))
    assert np.all(np.abs(a - b) <= rel * scale), np.max(np.abs(a - b) / scale)


TS = np.array([24.0, 24.5, 25.5, 26.0, 30.0, 36.0, 37.0, 48.0, 60.0, 80.0])

CASES = {
    # name: (Dose keywords, parameters, reference keywords)
    "depot-bolus-F-lag": (dict(amount=100.0, route="SC", ii=12.0, addl=2), dict(F=0.7, ALAG=1.5),
                          dict(amount=100.0, into="depot", f=0.7, lag=1.5)),
    "central-bolus-lag-equal-to-II": (dict(amount=100.0, route="IV_bolus", ii=12.0), dict(ALAG2=12.0),
                                      dict(amount=100.0, into="central", lag=12.0)),
    "central-bolus-lag-twice-II": (dict(amount=100.0, route="IV_bolus", ii=12.0, addl=1), dict(ALAG2=24.0),
                                   dict(amount=100.0, into="central", lag=24.0)),
    "central-bolus-F2-lag-longer-than-II": (dict(amount=100.0, route="IV_bolus", ii=12.0), dict(F2=0.6, ALAG2=13.0),
                                            dict(amount=100.0, into="central", f=0.6, lag=13.0)),
    "central-infusion-rate-kept-F2": (dict(amount=100.0, route="IV_infusion", duration=4.0, ii=12.0),
                                      dict(F2=0.5, ALAG2=1.0),
                                      dict(amount=100.0, into="central", f=0.5, lag=1.0, duration=4.0)),
    "central-infusion-II-shorter-than-duration": (dict(amount=100.0, route="IV_infusion", duration=30.0, ii=12.0),
                                                  {}, dict(amount=100.0, into="central", duration=30.0)),
    "central-infusion-II-equals-duration": (dict(amount=100.0, route="IV_infusion", duration=12.0, ii=12.0), {},
                                            dict(amount=100.0, into="central", duration=12.0)),
    "depot-zero-order-duration-kept-F-lag": (dict(amount=100.0, route="SC", duration=3.0, keep="duration", ii=12.0),
                                             dict(F=0.7, ALAG=0.5),
                                             dict(amount=100.0, into="depot", f=0.7, lag=0.5, duration=3.0,
                                                  keep="duration")),
    "depot-zero-order-rate-kept-F-II-shorter": (dict(amount=100.0, route="SC", duration=20.0, ii=12.0),
                                                dict(F1=0.6, ALAG1=2.0),
                                                dict(amount=100.0, into="depot", f=0.6, lag=2.0, duration=20.0)),
}


FAST_ITERATE = ("depot-bolus-F-lag", "central-infusion-II-shorter-than-duration")  # the rest: slow (compiles)
RUNS = [pytest.param(n, "closed_form", id=f"{n}-closed_form") for n in CASES] + \
    [pytest.param(n, "iterate", id=f"{n}-iterate", marks=() if n in FAST_ITERATE else pytest.mark.slow)
     for n in CASES]


@pytest.mark.parametrize("name, method", RUNS)
def test_ss1_matches_superposition(name, method):
    dose_kw, params, ref_kw = CASES[name]
    reg = Regimen((Dose(24.0, unit="mg", ss=1, **dose_kw),), time_unit="h")
    kw = ITER if method == "iterate" else dict(ss_method="closed_form")
    r = simulate(M1, reg, TS, {**P, **params}, **TIGHT, **kw)
    assert int(r.status) == STATUS_OK
    if method == "iterate":
        assert int(r.ss_intervals) > 5  # reported: the number of dosing intervals iterated
    else:
        assert int(r.ss_intervals) == 0
    times = ss_dose_times(24.0, dose_kw["ii"], dose_kw.get("addl", 0))
    _close(r["CP"], reference_cp(TS, dose_times=times, **ref_kw))


def test_ii_equal_to_duration_is_a_constant_rate():
    # (a steady-state infusion takes no ADDL: the record's own infusion runs to 36 h)
    reg = Regimen((Dose(24.0, 100.0, "mg", "IV_infusion", 12.0, ii=12.0, ss=1),), time_unit="h")
    ts = np.array([24.0, 25.0, 30.0, 36.0])
    r = simulate(M1, reg, ts, P, **TIGHT)
    _close(r["CP"], np.full(4, 100.0 / 12.0 / P["CL"]))


@pytest.mark.parametrize("into, route", [("central", "IV_infusion"), ("depot", "SC")])
def test_constant_infusion_at_steady_state(into, route):
    # NONMEM SS=1, AMT=0, RATE=5: at steady state from the record on and the infusion keeps running; F does
    # not change a kept rate
    reg = Regimen((Dose(10.0, 0.0, "mg", route, rate=5.0, ss=1),), time_unit="h")
    ts = np.array([5.0, 10.0, 11.0, 50.0, 200.0])
    for method in ("closed_form", "iterate"):
        kw = ITER if method == "iterate" else dict(ss_method="closed_form")
        r = simulate(M1, reg, ts, {**P, "F": 0.5}, **TIGHT, **kw)
        assert int(r.status) == STATUS_OK
        _close(r["CP"], [0.0, 2.5, 2.5, 2.5, 2.5])
        depot = 5.0 / P["KA"] if into == "depot" else 0.0
        assert np.allclose(r.states["depot"], [0.0, depot, depot, depot, depot], rtol=1e-8, atol=1e-12)


def test_ss2_adds_to_the_current_state_and_ss1_cancels_earlier_doses():
    prior = Dose(0.0, 50.0, "mg", "IV_bolus", ii=12.0, addl=5)  # doses at 0, 12, ..., 60
    ts = np.array([24.0, 30.0, 36.0, 50.0, 70.0])
    ss_times = ss_dose_times(30.0, 12.0)
    pattern = reference_cp(ts, dose_times=ss_times, amount=100.0, into="central")
    earlier = reference_cp(ts, dose_times=[0.0, 12.0, 24.0, 36.0, 48.0, 60.0], amount=50.0, into="central")
    for ss, expected in ((2, np.where(ts >= 30, pattern, 0) + earlier), (1, np.where(ts >= 30, pattern, earlier))):
        reg = Regimen((prior, Dose(30.0, 100.0, "mg", "IV_bolus", ii=12.0, ss=ss)), time_unit="h")
        r = simulate(M1, reg, ts, P, **TIGHT)
        # SS=2 keeps the earlier record's pending doses (36, 48, 60); SS=1 cancels them (NONMEM)
        _close(r["CP"], expected)


def test_ss_with_addl_continues_the_pattern_and_reset_cancels_pending_doses():
    reg = Regimen((Dose(0.0, 100.0, "mg", "SC", ii=12.0, addl=3, ss=1),
                   Dose(30.0, 0.0, "mg", "IV_bolus", reset=True)), time_unit="h")
    ts = np.array([0.0, 6.0, 29.0, 30.0, 40.0])
    r = simulate(M1, reg, ts, {**P, "ALAG": 1.0}, **TIGHT)
    ref = reference_cp(ts, dose_times=ss_dose_times(0.0, 12.0, 3), amount=100.0, into="depot", lag=1.0)
    _close(r["CP"][:3], ref[:3])
    # the reset at 30 h clears everything and cancels the ADDL doses at 36 h: zero afterwards
    assert np.all(np.abs(r["CP"][3:]) < 1e-12)


def test_f_and_lag_per_compartment_on_plain_doses():
    # F2/ALAG2 on a bolus into the central compartment, F1/ALAG1 (aliases of F/ALAG) on the depot
    reg = Regimen((Dose(0.0, 100.0, "mg", "IV_bolus"), Dose(0.0, 50.0, "mg", "SC")), time_unit="h")
    ts = np.array([0.5, 1.0, 2.0, 3.0, 10.0])
    r = simulate(M1, reg, ts, {**P, "F2": 0.4, "ALAG2": 1.0, "F1": 0.9, "ALAG1": 2.0}, **TIGHT)
    ref = reference_cp(ts, dose_times=[0.0], amount=100.0, into="central", f=0.4, lag=1.0) + \
        reference_cp(ts, dose_times=[0.0], amount=50.0, into="depot", f=0.9, lag=2.0)
    _close(r["CP"], ref)
    # a dose sent to another compartment takes that compartment's F and lag (here F2/ALAG2, not the SC route's)
    moved = Regimen((Dose(0.0, 100.0, "mg", "SC", compartment="central"),), time_unit="h")
    r = simulate(M1, moved, ts, {**P, "F": 0.9, "ALAG": 2.0, "F2": 0.4, "ALAG2": 1.0}, **TIGHT)
    _close(r["CP"], reference_cp(ts, dose_times=[0.0], amount=100.0, into="central", f=0.4, lag=1.0))
    with pytest.raises(InputError, match="given twice"):
        simulate(M1, reg, ts, {**P, "F": 0.5, "F1": 0.5})
    # per-patient values under the alias name are used too
    one = Regimen((Dose(0.0, 50.0, "mg", "SC"),), time_unit="h")
    r = simulate(M1, one, ts, {**P, "F1": np.array([0.5, 1.0])})
    assert np.allclose(r["CP"][0], 0.5 * r["CP"][1], rtol=1e-6)


@pytest.mark.parametrize("keep", ["rate", "duration"])
def test_f_with_infusion_rules(keep):
    # rate kept: F shortens the infusion (NONMEM RATE > 0, RATE = -1); duration kept: F scales the rate (RATE = -2)
    reg = Regimen((Dose(0.0, 100.0, "mg", "IV_infusion", 10.0, keep=keep),), time_unit="h")
    ts = np.array([1.0, 4.0, 5.0, 9.0, 10.0, 20.0])
    r = simulate(M1, reg, ts, {**P, "F2": 0.5}, **TIGHT)
    _close(r["CP"], reference_cp(ts, dose_times=[0.0], amount=100.0, into="central", f=0.5, duration=10.0, keep=keep))
    delivered = r["CP"][-1] * P["V"] * math.exp(0.1 * 10.0)  # back to the amount at 10 h
    assert delivered < 50.0 + 1e-9  # F * AMT in total either way


def test_nonmem_rate_rules_from_a_dataset():
    from qsp.io.nonmem import read_nonmem

    text = ("ID,TIME,AMT,CMT,RATE,EVID,MDV,DV\n"
            "1,0,100,2,10,1,1,.\n1,20,.,2,.,0,0,.\n"  # RATE > 0: rate kept
            "2,0,100,2,-1,1,1,.\n2,20,.,2,.,0,0,.\n"  # RATE = -1 with R2: rate kept
            "3,0,100,2,-2,1,1,.\n3,20,.,2,.,0,0,.\n")  # RATE = -2 with D2: duration kept
    ds = read_nonmem(io.StringIO(text), M1, params={"R2": 10.0, "D2": 10.0})
    d1, d2, d3 = (s.regimen.doses[0] for s in ds.subjects)
    assert (d1.duration, d1.keep) == (10.0, "rate") and (d2.duration, d2.keep) == (10.0, "rate")
    assert (d3.duration, d3.keep) == (10.0, "duration")
    ts = np.array([3.0, 6.0, 20.0])
    for d, keep in ((d1, "rate"), (d2, "rate"), (d3, "duration")):
        r = simulate(M1, Regimen((d,), time_unit="h"), ts, {**P, "F2": 0.5}, **TIGHT)
        _close(r["CP"], reference_cp(ts, dose_times=[0.0], amount=100.0, into="central", f=0.5, duration=10.0,
                                     keep=keep))


def test_ss_round_trip_through_nonmem():
    from qsp.io.nonmem import read_nonmem, to_nonmem

    reg = Regimen((Dose(0.0, 100.0, "mg", "SC", ii=12.0, addl=2, ss=1),
                   Dose(48.0, 80.0, "mg", "IV_infusion", 2.0, keep="duration", ii=24.0, ss=2),
                   Dose(100.0, 0.0, "mg", "IV_infusion", rate=4.0, ss=1)), time_unit="h")
    df = to_nonmem(reg, M1)
    assert list(df["SS"].dropna()) == [1, 2, 1] and "D2" in df.columns
    assert list(df["RATE"]) == [0.0, -2.0, 4.0]
    back = read_nonmem(df, M1)
    assert back.subjects[0].regimen == reg
    assert "D2" not in back.covariate_names  # a modelled duration, not a covariate
    again = to_nonmem(back, M1)  # and written back once more
    assert list(again["D2"].dropna()) == [2.0] and list(again["SS"].dropna()) == [1, 2, 1]


M2 = pk_model("pk-2cmt")
P2 = dict(CL=2.0, V1=20.0, Q=1.5, V2=40.0, KA=0.8, F=0.8, ALAG=0.7)
REG2 = Regimen((Dose(24.0, 100.0, "mg", "SC", ii=12.0, addl=1, ss=1),), time_unit="h")
TS2 = np.array([24.0, 25.0, 30.0, 40.0])


def _cp2(cl, method):
    cfg = SolverConfig(rtol=1e-10, atol=1e-12, ss_method=method, ss_rtol=1e-12, ss_atol=1e-14)
    ys, status, _, _ = solve_events(M2, cfg, {**M2.params(P2), "CL": cl}, regimen_to_events(M2, REG2),
                                    jnp.asarray(TS2))
    return ys[2, 1]


def test_2cmt_closed_form_equals_iteration():
    a = simulate(M2, REG2, TS2, P2, **TIGHT, ss_method="closed_form")
    b = simulate(M2, REG2, TS2, P2, **TIGHT, **ITER)
    _close(a["CP"], b["CP"], rel=1e-8)


@pytest.mark.parametrize("method", ["closed_form", pytest.param("iterate", marks=pytest.mark.slow)])
def test_steady_state_gradient_matches_finite_differences(method):
    # closed form: through the matrix exponentials; iterated: the implicit gradient at the fixed point
    f = jax.jit(_cp2, static_argnums=1)
    g = jax.jit(jax.grad(_cp2), static_argnums=1)(2.0, method)
    fd = (f(2.0 + 1e-5, method) - f(2.0 - 1e-5, method)) / 2e-5
    assert abs(g - fd) <= 1e-5 * abs(fd), (method, g, fd)


def test_forward_mode_through_an_iterated_steady_state_is_refused():
    reg = Regimen((Dose(24.0, 100.0, "mg", "IV_bolus", ii=12.0, ss=1),), time_unit="h")
    ev = regimen_to_events(M1, reg)
    cfg = SolverConfig(adjoint="forward", ss_method="iterate")
    with pytest.raises(InputError, match="adjoint"):
        jax.jacfwd(lambda cl: solve_events(M1, cfg, {**M1.params(P), "CL": cl}, ev, jnp.asarray([30.0]))[0])(2.0)


@pytest.mark.slow
def test_forward_mode_through_the_closed_form_steady_state():
    reg = Regimen((Dose(24.0, 100.0, "mg", "IV_bolus", ii=12.0, ss=1),), time_unit="h")
    ev = regimen_to_events(M1, reg)
    cfg = SolverConfig(adjoint="forward", ss_method="closed_form")
    jac = jax.jacfwd(lambda cl: solve_events(M1, cfg, {**M1.params(P), "CL": cl}, ev, jnp.asarray([30.0]))[0])(2.0)
    rev = jax.jacrev(lambda cl: solve_events(M1, SolverConfig(ss_method="closed_form"), {**M1.params(P), "CL": cl}, ev,
                                             jnp.asarray([30.0]))[0])(2.0)
    np.testing.assert_allclose(np.asarray(jac), np.asarray(rev), rtol=1e-8, atol=1e-12)
    assert abs(float(np.asarray(jac)[0, 1])) > 0


def test_fixed_point_implicit_gradient_on_an_affine_map():
    # y -> A y + b(theta): y* = (I - A)^-1 b, dy*/dtheta exact; a bool leaf (active) and an int leaf in theta;
    # an inactive record returns y0 and passes the cotangent to y0
    from qsp.steady_state import SteadyStateSettings, fixed_point

    A = jnp.array([[0.5, 0.1], [0.0, 0.3]])
    settings = SteadyStateSettings(rtol=1e-14, atol=1e-16, max_intervals=500)

    def period(y, theta):
        c, k, _active = theta
        return A @ y + c * jnp.array([1.0, 2.0]) * (k + 1)

    def first(c, active):
        y, n, ok = fixed_point(period, (c, jnp.asarray(1), active), jnp.zeros(2), settings)
        return y[0]

    exact = float(np.linalg.solve(np.eye(2) - np.asarray(A), np.array([2.0, 4.0]))[0])  # d y*_0 / dc
    for fn in (jax.grad(first), jax.jit(jax.grad(first))):
        assert float(fn(1.5, jnp.asarray(True))) == pytest.approx(exact, rel=1e-10)
        assert float(fn(1.5, jnp.asarray(False))) == 0.0  # inactive: y* = y0, no dependence on c
    both = jax.vmap(jax.grad(first), in_axes=(None, 0))(1.5, jnp.asarray([True, False]))
    np.testing.assert_allclose(np.asarray(both), [exact, 0.0], rtol=1e-10)
    y, n, ok = fixed_point(period, (1.5, jnp.asarray(1), jnp.asarray(True)), jnp.zeros(2), settings)
    assert bool(ok) and int(n) > 10


def test_ss_status_when_not_converged_or_lag_past_the_tails():
    reg = Regimen((Dose(24.0, 100.0, "mg", "IV_bolus", ii=12.0, ss=1),), time_unit="h")
    r = simulate(M1, reg, np.array([24.0, 30.0]), P, ss_method="iterate", ss_max_intervals=3)
    assert int(r.status) == STATUS_SS_FAILED
    r = simulate(M1, reg, np.array([24.0, 30.0]), {**P, "ALAG2": 40.0})  # lag beyond 2 earlier intervals
    assert int(r.status) == STATUS_SS_TAILS


@pytest.mark.slow
def test_tce_model_numerical_steady_state_is_periodic():
    # the TCE model is nonlinear: the steady state is iterated (NONMEM's empirical method); at convergence the
    # state one interval later, just after the next dose, repeats the state just after the SS dose. (The card's
    # time-decreasing clearance is made constant, CL = CLSS: a model with a clock has no periodic steady state.)
    card = load_card("teclistamab")
    m = card.model()
    reg = Regimen((Dose(0.0, 1.5, "mg/kg", "SC", ii=7.0, addl=1, ss=1),), time_unit="day")
    r = simulate(m, reg, np.array([0.0, 3.0, 7.0]), {"CL": m.default_params()["CLSS"]},
                 covariates=card.covariates(), ss_rtol=1e-7, ss_atol=1e-9, ss_max_intervals=600)
    assert int(r.status) == STATUS_OK and int(r.ss_intervals) > 10
    for name in ("depot", "central", "peripheral", "T_rest", "tumour"):
        x = r.states[name]
        assert abs(x[2] - x[0]) <= 1e-4 * abs(x[0]) + 1e-6, (name, x)
    assert r.states["central"][1] > 0


def test_malformed_ss_doses_are_refused():
    with pytest.raises(InputError) as e:
        Dose(0.0, 10.0, "mg", "SC", ss=1)
    assert e.value.field == "ii"
    with pytest.raises(InputError) as e:
        Dose(0.0, 10.0, "mg", "IV_infusion", 2.0, ii=12.0, addl=2, ss=1)
    assert e.value.field == "addl"
    with pytest.raises(InputError) as e:
        Dose(0.0, 10.0, "mg", "SC", ii=12.0, ss=3)
    assert e.value.field == "ss" and "0, 1, 2" in str(e.value)
    with pytest.raises(InputError) as e:
        Dose(0.0, 0.0, "mg", "IV_infusion", rate=5.0)
    assert e.value.field == "rate"
    with pytest.raises(InputError) as e:
        Dose(0.0, 10.0, "mg", "IV_bolus", 2.0)
    assert e.value.field == "duration"


def test_dataset_ordering_evid4_with_ss_and_addl_and_lagged_dose_at_an_observation():
    # EVID 4 (reset and dose) with SS=1 and ADDL into the central compartment, ALAG2 = 2 h: an observation row before
    # the record at its TIME is the pre-record value, one after it the steady state before the lagged dose enters;
    # an observation at exactly TIME + ALAG sees the dose (it has entered); ADDL continues the pattern.
    from qsp.io.nonmem import read_nonmem
    from qsp.simulate import simulate as sim

    text = ("ID,TIME,AMT,EVID,CMT,II,ADDL,SS,MDV,DV\n"
            "1,0,30,1,2,.,.,.,1,.\n"
            "1,10,.,0,.,.,.,.,0,.\n"
            "1,10,100,4,2,12,1,1,1,.\n"
            "1,10,.,0,.,.,.,.,0,.\n"
            "1,12,.,0,.,.,.,.,0,.\n"
            "1,20,.,0,.,.,.,.,0,.\n"
            "1,24,.,0,.,.,.,.,0,.\n"
            "1,40,.,0,.,.,.,.,0,.\n")
    ds = read_nonmem(io.StringIO(text), M1)
    s = ds.subjects[0]
    r = sim(M1, s.regimen, s.times, {**P, "ALAG2": 2.0}, times_left=s.left, **TIGHT)
    obs = r["CP"][s.evid == 0]
    before = reference_cp([10.0], dose_times=[0.0], amount=30.0, into="central", lag=2.0)[0]
    pattern = reference_cp([10.0, 12.0, 20.0, 24.0, 40.0], dose_times=ss_dose_times(10.0, 12.0, 1), amount=100.0,
                           into="central", lag=2.0)
    _close(obs, [before, *pattern])
    # the observation at 12 h (= 10 + ALAG2) is after the lagged dose: the trough plus the dose
    assert obs[2] - obs[1] * math.exp(-0.1 * 2.0) == pytest.approx(100.0 / P["V"], rel=1e-8)
