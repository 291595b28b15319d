"""``qsp.simulate`` against analytic PK solutions (tests/closed_forms.py) and a tight scipy reference.

Every comparison runs the engine at rtol=1e-10, atol=1e-12 and requires a relative error <= 1e-6 at
every output time with a nonzero reference concentration (and an exact zero where the reference is 0).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import closed_forms as cf
from engine_models import CF1, CF2, ENGINES, LOOPS, M1, M1_DAY, M2, M2_TV, P1, P2, P2_TV, T1, TIGHT, run
from qsp import Dose, Regimen, simulate

RTOL_CHECK = 1e-6


def assert_matches(sim, ref, rtol=RTOL_CHECK, floor=0.0):
    """Relative error <= rtol wherever |ref| > floor (floor=0: every nonzero reference value); elsewhere
    the absolute error is at most 1e-12 (the solver's atol)."""
    sim, ref = np.asarray(sim), np.asarray(ref)
    assert sim.shape == ref.shape
    assert np.all(np.isfinite(sim))
    nz = np.abs(ref) > floor
    assert nz.sum() >= 3, "reference is (almost) all zero: the test would check nothing"
    rel = np.abs(sim[nz] - ref[nz]) / np.abs(ref[nz])
    worst = int(np.argmax(rel))
    assert rel.max() <= rtol, f"max relative error {rel.max():.3g} at t-index {np.flatnonzero(nz)[worst]}"
    assert np.all(np.abs(sim[~nz] - ref[~nz]) <= 1e-12), "absolute error above 1e-12 where |ref| <= floor"


solvers = pytest.mark.parametrize("solver", ENGINES)  # both solvers, and Tsit5 on the whole-horizon loop
loops = pytest.mark.parametrize("loop", LOOPS)  # the segmented reference loop and the whole-horizon loop


# ------------------------------------------------------------------------------------------------
# Single doses
# ------------------------------------------------------------------------------------------------
@solvers
def test_one_cmt_iv_bolus(solver):
    reg = Regimen.single(100.0, "mg", "IV_bolus", 2.0, time_unit="h")
    res = run(M1, reg, P1, solver=solver)
    assert_matches(res["CP"], cf.one_cmt_bolus(T1, 100.0, CF1["CL"], CF1["V1"], t0=2.0))
    assert np.all(res["CP"][T1 < 2.0] == 0.0)
    assert res["CP"][T1 == 2.0][0] == pytest.approx(100.0 / P1["V"], rel=1e-12)  # right-continuous


@solvers
def test_one_cmt_infusion_during_and_after(solver):
    reg = Regimen.single(60.0, "mg", "IV_infusion", 1.0, duration=6.0, time_unit="h")
    res = run(M1, reg, P1, solver=solver)
    ref = cf.one_cmt_infusion(T1, 60.0, 6.0, CF1["CL"], CF1["V1"], t0=1.0)
    assert_matches(res["CP"], ref)
    during = (T1 > 1.0) & (T1 < 7.0)
    assert during.sum() >= 10 and (T1 > 7.0).sum() >= 10
    # concentration rises during the infusion and falls after it
    assert np.all(np.diff(res["CP"][during]) > 0)
    assert np.all(np.diff(res["CP"][T1 > 7.0]) < 0)


@solvers
def test_one_cmt_sc_bateman_with_lag_and_f(solver):
    reg = Regimen.single(100.0, "mg", "SC", 0.0, time_unit="h")
    res = run(M1, reg, P1, solver=solver)
    ref = cf.one_cmt_oral(T1, 100.0, CF1["CL"], CF1["V1"], CF1["KA"], CF1["F"], CF1["ALAG"])
    assert_matches(res["CP"], ref)
    assert np.all(res["CP"][T1 <= P1["ALAG"]] == 0.0)
    assert np.all(res["depot"][T1 < P1["ALAG"]] == 0.0)
    # amounts below 1e-6 mg (1e-8 of the dose) are at the solver's atol: check those absolutely
    assert_matches(res["depot"], cf.depot_amount(T1, 100.0, P1["KA"], P1["F"], P1["ALAG"]), floor=1e-6)


@solvers
def test_two_cmt_iv_bolus_biexponential(solver):
    reg = Regimen.single(100.0, "mg", "IV_bolus", 0.0, time_unit="h")
    res = run(M2, reg, P2, solver=solver)
    ref = cf.two_cmt_bolus(T1, 100.0, P2["CL"], P2["V1"], P2["Q"], P2["V2"])
    assert_matches(res["CP"], ref)
    # genuinely bi-exponential: the log-slope changes by more than a factor of 5 over the curve
    lam, _ = cf.macro_constants(P2["CL"], P2["V1"], P2["Q"], P2["V2"])
    assert lam[0] / lam[1] > 5
    slope = np.diff(np.log(res["CP"]))
    assert slope[0] / slope[-1] > 5


@solvers
def test_two_cmt_infusion_during_and_after(solver):
    reg = Regimen.single(80.0, "mg", "IV_infusion", 3.0, duration=4.5, time_unit="h")
    res = run(M2, reg, P2, solver=solver)
    ref = cf.two_cmt_infusion(T1, 80.0, 4.5, P2["CL"], P2["V1"], P2["Q"], P2["V2"], t0=3.0)
    assert_matches(res["CP"], ref)
    assert np.all(res["peripheral"] >= 0)


@solvers
def test_two_cmt_sc_triexponential_with_lag_and_f(solver):
    reg = Regimen.single(100.0, "mg", "SC", 1.0, time_unit="h")
    res = run(M2, reg, P2, solver=solver)
    ref = cf.two_cmt_oral(T1, 100.0, P2["CL"], P2["V1"], P2["Q"], P2["V2"], P2["KA"], P2["F"], P2["ALAG"], t0=1.0)
    assert_matches(res["CP"], ref)
    if solver.endswith("/whole"):
        # the whole-horizon loop steps to one ulp before and from one ulp after each jump time (diffrax jump_ts),
        # so a sample exactly at the lagged dose time (1.5 h) comes from the step after it: off by ~ulp * dC/dt
        assert np.all(res["CP"][T1 < 1.5] == 0.0) and abs(res["CP"][T1 == 1.5][0]) <= 1e-12
    else:
        assert np.all(res["CP"][T1 <= 1.5] == 0.0)
    assert_matches(res["peripheral"], cf.oral_peripheral_amount(T1, 100.0, P2["CL"], P2["V1"], P2["Q"], P2["V2"],
                                                                 P2["KA"], P2["F"], P2["ALAG"], t0=1.0))


@loops
def test_f_and_alag_are_used_only_for_sc(loop):
    """An IV bolus ignores the SC route's F and ALAG (they belong to the route)."""
    reg = Regimen.single(100.0, "mg", "IV_bolus", 0.0, time_unit="h")
    res = run(M2, reg, dict(P2, F=0.3, ALAG=2.0), loop=loop)
    assert_matches(res["CP"], cf.two_cmt_bolus(T1, 100.0, P2["CL"], P2["V1"], P2["Q"], P2["V2"]))


# ------------------------------------------------------------------------------------------------
# Multiple dosing: NONMEM II/ADDL vs superposition of single-dose closed forms
# ------------------------------------------------------------------------------------------------
@solvers
def test_one_cmt_multiple_dosing_addl_vs_superposition(solver):
    reg = Regimen((Dose(0.0, 50.0, "mg", "SC", ii=12.0, addl=4),
                   Dose(6.0, 20.0, "mg", "IV_bolus", ii=24.0, addl=2),
                   Dose(30.0, 30.0, "mg", "IV_infusion", duration=2.0)), time_unit="h")
    res = run(M1, reg, P1, solver=solver)
    ref = cf.concentration(T1, [cf.D(0.0, 50.0, "oral", ii=12.0, addl=4), cf.D(6.0, 20.0, "bolus", ii=24.0, addl=2),
                                cf.D(30.0, 30.0, "infusion", 2.0)], **CF1)
    assert_matches(res["CP"], ref)


@solvers
def test_two_cmt_multiple_dosing_addl_vs_superposition(solver):
    reg = Regimen((Dose(0.0, 10.0, "mg", "IV_infusion", duration=1.5, ii=8.0, addl=6),
                   Dose(2.0, 40.0, "mg", "SC", ii=24.0, addl=2),
                   Dose(50.0, 25.0, "mg", "IV_bolus")), time_unit="h")
    res = run(M2, reg, P2, solver=solver)
    ref = cf.concentration(T1, [cf.D(0.0, 10.0, "infusion", 1.5, ii=8.0, addl=6),
                                cf.D(2.0, 40.0, "oral", ii=24.0, addl=2), cf.D(50.0, 25.0, "bolus")], **CF2)
    assert_matches(res["CP"], ref)


@loops
def test_addl_equals_explicitly_listed_doses(loop):
    listed = Regimen(tuple(Dose(12.0 * k, 50.0, "mg", "SC") for k in range(5)), time_unit="h")
    addl = Regimen((Dose(0.0, 50.0, "mg", "SC", ii=12.0, addl=4),), time_unit="h")
    a, b = run(M2, listed, P2, loop=loop), run(M2, addl, P2, loop=loop)
    np.testing.assert_allclose(a["CP"], b["CP"], rtol=1e-12, atol=0)


def test_superpose_helper_matches_closed_form_multiple_dosing():
    """The generic superposition helper agrees with the dose-list form (guards the reference itself)."""
    single = lambda tau: cf.two_cmt_bolus(tau, 1.0, P2["CL"], P2["V1"], P2["Q"], P2["V2"])  # noqa: E731
    a = cf.superpose(T1, single, [0.0, 24.0, 48.0], [100.0, 50.0, 50.0])
    b = cf.concentration(T1, [cf.D(0.0, 100.0), cf.D(24.0, 50.0, ii=24.0, addl=1)], **CF2)
    np.testing.assert_allclose(a, b, rtol=1e-13)


# ------------------------------------------------------------------------------------------------
# Outputs exactly at dose times
# ------------------------------------------------------------------------------------------------
@loops
def test_output_at_dose_time_right_continuous_and_left_limit(loop):
    reg = Regimen((Dose(0.0, 100.0, "mg", "IV_bolus"), Dose(24.0, 100.0, "mg", "IV_bolus")), time_unit="h")
    ts = np.array([0.0, 12.0, 24.0, 24.0, 36.0])
    left = np.array([False, False, True, False, False])
    res = run(M1, reg, P1, times=ts, times_left=left, loop=loop)
    pre = cf.one_cmt_bolus(24.0, 100.0, CF1["CL"], CF1["V1"])
    post = pre + 100.0 / P1["V"]
    assert res["CP"][0] == pytest.approx(100.0 / P1["V"], rel=1e-12)  # dose at the first output time
    assert res["CP"][2] == pytest.approx(float(pre), rel=1e-8)
    assert res["CP"][3] == pytest.approx(float(post), rel=1e-8)
    # default (no times_left): right-continuous everywhere
    res_r = run(M1, reg, P1, times=ts, loop=loop)
    assert res_r["CP"][2] == pytest.approx(float(post), rel=1e-8)
    # left limit at t=0: before the first dose the system is at baseline
    res_l0 = run(M1, reg, P1, times=ts, times_left=np.array([True, False, False, False, False]), loop=loop)
    assert res_l0["CP"][0] == 0.0


@loops
def test_output_at_lagged_sc_dose_time(loop):
    """The SC dose reaches the depot at time + ALAG: the depot jumps there, the central amount is continuous."""
    reg = Regimen((Dose(0.0, 100.0, "mg", "SC"), Dose(24.0, 100.0, "mg", "SC")), time_unit="h")
    tlag = 24.0 + P2["ALAG"]
    ts = np.array([24.0, tlag, tlag, 30.0])
    res_l = run(M2, reg, P2, times=ts, times_left=np.array([False, True, False, False]), loop=loop)
    dep_pre = cf.depot_amount(tlag, 100.0, P2["KA"], P2["F"], P2["ALAG"])
    assert res_l["depot"][1] == pytest.approx(float(dep_pre), rel=1e-8)
    assert res_l["depot"][2] == pytest.approx(float(dep_pre) + P2["F"] * 100.0, rel=1e-8)
    assert res_l["central"][1] == pytest.approx(res_l["central"][2], rel=1e-12)
    # a dose record at 24 h does nothing at 24 h itself (it is lagged)
    assert res_l["depot"][0] == pytest.approx(float(cf.depot_amount(24.0, 100.0, P2["KA"], P2["F"], P2["ALAG"])),
                                              rel=1e-8)


@loops
def test_outputs_only_before_the_first_dose_and_dose_after_last_output(loop):
    reg = Regimen.single(100.0, "mg", "IV_bolus", 10.0, time_unit="h")
    res = run(M1, reg, P1, times=np.array([0.0, 5.0, 9.999]), loop=loop)
    assert np.all(res["CP"] == 0.0)
    res = run(M1, reg, P1, times=np.array([0.0, 5.0, 10.0]), loop=loop)
    np.testing.assert_allclose(res["CP"], [0.0, 0.0, 100.0 / P1["V"]], rtol=1e-12)
    # outputs starting after the dose: the simulation still starts at the dose
    ts = np.array([20.0, 30.0, 40.0])
    res = run(M1, reg, P1, times=ts, loop=loop)
    assert_matches(res["CP"], cf.one_cmt_bolus(ts, 100.0, CF1["CL"], CF1["V1"], t0=10.0))


@loops
def test_infusion_boundaries_continuous(loop):
    reg = Regimen.single(60.0, "mg", "IV_infusion", 1.0, duration=6.0, time_unit="h")
    ts = np.array([1.0, 1.0, 7.0, 7.0])
    res = run(M1, reg, P1, times=ts, times_left=np.array([True, False, True, False]), loop=loop)
    assert res["CP"][0] == 0.0 and res["CP"][1] == 0.0
    assert res["CP"][2] == pytest.approx(res["CP"][3], rel=1e-12)
    assert res["CP"][3] == pytest.approx(float(cf.one_cmt_infusion(7.0, 60.0, 6.0, CF1["CL"], CF1["V1"], t0=1.0)),
                                         rel=1e-8)


# ------------------------------------------------------------------------------------------------
# Time-varying clearance: no closed form, compare to a tight scipy solution
# ------------------------------------------------------------------------------------------------
def _scipy_tv_reference(p, doses_bolus_central, sc_doses, infusions, t_out):
    """Piecewise DOP853 solution of the 2-cmt model with CL(t) = CLSS + (CL - CLSS) exp(-KCL t)."""
    CL, CLSS, KCL, V1, Q, V2, KA = (p[k] for k in ("CL", "CLSS", "KCL", "V1", "Q", "V2", "KA"))
    jumps = [(t, 1, a) for t, a in doses_bolus_central] + [(t + p["ALAG"], 0, p["F"] * a) for t, a in sc_doses]
    bps = sorted({0.0, *[j[0] for j in jumps], *[s for s, d, a in infusions], *[s + d for s, d, a in infusions],
                  float(t_out[-1])})

    def rate_at(t):
        return sum(a / d for s, d, a in infusions if s <= t < s + d)

    def rhs(t, y, r):
        dep, c, per = y
        cl = CLSS + (CL - CLSS) * np.exp(-KCL * t)
        return [-KA * dep, KA * dep - cl / V1 * c - Q / V1 * c + Q / V2 * per + r, Q / V1 * c - Q / V2 * per]

    y = np.zeros(3)
    out = np.full((len(t_out), 3), np.nan)
    for a, b in zip(bps[:-1], bps[1:]):
        for (tj, st, amt) in jumps:
            if tj == a:
                y[st] += amt
        sol = solve_ivp(rhs, (a, b), y, args=(rate_at(0.5 * (a + b)),), method="DOP853", rtol=1e-13, atol=1e-14,
                        dense_output=True)
        sel = (t_out >= a) & ((t_out < b) | (b == bps[-1]))
        out[sel] = sol.sol(t_out[sel]).T
        y = sol.y[:, -1].copy()
    return out


@loops
def test_time_varying_clearance_vs_scipy(loop):
    p = dict(P2_TV)
    reg = Regimen((Dose(0.0, 20.0, "mg", "IV_bolus"), Dose(12.0, 60.0, "mg", "SC", ii=24.0, addl=1),
                   Dose(40.0, 30.0, "mg", "IV_infusion", duration=3.0)), time_unit="h")
    res = run(M2_TV, reg, p, loop=loop)
    ref = _scipy_tv_reference(p, [(0.0, 20.0)], [(12.0, 60.0), (36.0, 60.0)], [(40.0, 3.0, 30.0)], T1)
    assert_matches(res["central"], ref[:, 1])
    assert_matches(res["peripheral"], ref[:, 2])
    # and the clearance really varies: the constant-CL model gives a clearly different curve
    const = run(M2, reg, P2, loop=loop)
    assert np.max(np.abs(const["CP"] / res["CP"] - 1)[T1 > 24]) > 0.05


# ------------------------------------------------------------------------------------------------
# Time and amount units
# ------------------------------------------------------------------------------------------------
@loops
def test_day_unit_model_equals_hour_unit_model(loop):
    p_day = dict(CL=P1["CL"] * 24, V=P1["V"], KA=P1["KA"] * 24, F=P1["F"], ALAG=P1["ALAG"] / 24)
    reg_h = Regimen((Dose(0.0, 50.0, "mg", "SC", ii=12.0, addl=3), Dose(30.0, 30.0, "mg", "IV_infusion", duration=2.0),
                     Dose(40.0, 10.0, "mg", "IV_bolus")), time_unit="h")
    ts_day = T1 / 24.0
    hour = run(M1, reg_h, P1, loop=loop)
    day_from_h = run(M1_DAY, reg_h, p_day, times=ts_day, loop=loop)  # regimen in hours, model in days
    day = run(M1_DAY, reg_h.in_unit("day"), p_day, times=ts_day, loop=loop)
    assert_matches(day_from_h["CP"], hour["CP"])
    assert_matches(day["CP"], hour["CP"])
    assert day.model.time_unit == "day"


@loops
def test_iv_continuous_rate_in_ug_per_day(loop):
    # 2400 ug/day for 48 h = 4.8 mg total at 0.1 mg/h
    reg = Regimen.single(2400.0, "ug/day", "IV_continuous", 4.0, duration=48.0, time_unit="h")
    res = run(M2, reg, P2, loop=loop)
    ref = cf.two_cmt_infusion(T1, 4.8, 48.0, P2["CL"], P2["V1"], P2["Q"], P2["V2"], t0=4.0)
    assert_matches(res["CP"], ref)
    # the same infusion in a day-unit model with a day-unit regimen
    reg_d = Regimen.single(2400.0, "ug/day", "IV_continuous", 0.0, duration=2.0, time_unit="day")
    ts = np.linspace(0.0, 3.0, 37)
    res_d = simulate(M1_DAY, reg_d, ts, dict(CL=24 * P1["CL"], V=P1["V"]), loop=loop, **TIGHT)
    assert_matches(res_d["CP"], cf.one_cmt_infusion(ts, 4.8, 2.0, 24 * P1["CL"], P1["V"]))


@loops
def test_back_to_back_infusions_equal_one_long_infusion(loop):
    """ADDL infusions with duration == II (stop and next start coincide) = one continuous infusion."""
    reg = Regimen((Dose(0.0, 10.0, "mg", "IV_infusion", duration=6.0, ii=6.0, addl=3),), time_unit="h")
    res = run(M2, reg, P2, loop=loop)
    ref = cf.two_cmt_infusion(T1, 40.0, 24.0, P2["CL"], P2["V1"], P2["Q"], P2["V2"])
    assert_matches(res["CP"], ref)


@loops
def test_dose_before_the_first_output_time(loop):
    """A dose at a negative time (before the output grid) is integrated from the dose, not from the first output."""
    reg = Regimen((Dose(-12.0, 100.0, "mg", "SC"), Dose(-6.0, 20.0, "mg", "IV_infusion", duration=8.0)),
                  time_unit="h")
    res = run(M2, reg, P2, loop=loop)
    ref = cf.concentration(T1, [cf.D(-12.0, 100.0, "oral"), cf.D(-6.0, 20.0, "infusion", 8.0)], **CF2)
    assert_matches(res["CP"], ref)
    assert res["CP"][0] > 0
