"""Properties of the engine that hold without a closed form: mass balance, non-negativity, superposition,
batched (vmap) = one-by-one, failure isolation in a batch, NONMEM resets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import simpson

import closed_forms as cf
from engine_models import LOOPS, M1, M2, P1, P2, P2_TV, T1, run
from qsp import Covariates, Dose, InputError, Regimen, regimen_to_events, simulate
from qsp.components.pk import Depot, LinearDisposition
from qsp.model import Component, DoseRoute, Model, Output, Param, State
from qsp.simulate import STATUS_OK, STATUS_SOLVER_FAILED


# ------------------------------------------------------------------------------------------------
# A test model: 2-cmt PK with CL(t), an eliminated-amount accumulator and a biomarker with a nonzero baseline
# ------------------------------------------------------------------------------------------------
class Eliminated(Component):
    """Accumulates the amount cleared from the central compartment (dE/dt = CL(t)/V1 * A_central)."""

    name = "eliminated"
    states = (State("eliminated", "A", "cumulative amount eliminated"),)

    def __init__(self, disposition: LinearDisposition):
        self.disp = disposition

    def rates(self, t, y, p, d):
        v1 = p[self.disp.v1_name]
        return {"eliminated": self.disp.clearance(t, p, d) / v1 * y["central"]}


class Biomarker(Component):
    """Indirect response: dR/dt = KOUT (R0 - R) - KD * C * R, with R(0) = R0 (a nonzero baseline)."""

    name = "biomarker"
    states = (State("R", "1", "biomarker", initial="R0"),)
    params = (Param("R0", 50.0, "1", "baseline"), Param("KOUT", 0.2, "1/h", "turnover"),
              Param("KD", 0.05, "L/mg/h", "drug effect"))
    outputs = (Output("R", "1", "biomarker"),)

    def rates(self, t, y, p, d):
        return {"R": p["KOUT"] * (p["R0"] - y["R"]) - p["KD"] * y["central"] / p["V1"] * y["R"]}

    def output_values(self, t, y, p, d):
        return {"R": y["R"]}


_disp = LinearDisposition(2, time_unit="h", time_varying=True)
MB = Model(name="pk-2cmt-mass-balance", components=(Depot("depot", time_unit="h"), _disp, Eliminated(_disp),
                                                     Biomarker()),
           time_unit="h", routes={"SC": DoseRoute("depot", "F", "ALAG"), "IV_bolus": DoseRoute("central"),
                                  "IV_infusion": DoseRoute("central")})
PMB = dict(P2_TV)


loops = pytest.mark.parametrize("loop", LOOPS)  # the segmented reference loop and the whole-horizon loop


def infused_so_far(t, start, duration, amount):
    return amount * np.clip((np.asarray(t) - start) / duration, 0.0, 1.0)


# ------------------------------------------------------------------------------------------------
# Mass balance
# ------------------------------------------------------------------------------------------------
@loops
def test_mass_balance_one_cmt_iv_bolus_integrated_elimination(loop):
    """central + CL/V * integral_0^t central = dose (integral by Simpson on the 0.5 h output grid)."""
    res = run(M1, Regimen.single(100.0, "mg", "IV_bolus", 0.0, time_unit="h"), P1, loop=loop)
    a = res["central"]
    k = P1["CL"] / P1["V"]
    for j in range(4, len(T1), 20):  # odd number of points for Simpson
        eliminated = k * simpson(a[: j + 1], x=T1[: j + 1])
        assert a[j] + eliminated == pytest.approx(100.0, rel=1e-6)
    # and the exact cumulative elimination from the closed form
    np.testing.assert_allclose(a + cf.bolus_eliminated_amount(T1, 100.0, P1["CL"], P1["V"]), 100.0, rtol=1e-9)


@loops
def test_mass_balance_two_cmt_sc_closed_form_elimination(loop):
    """depot + central + peripheral = F*dose - eliminated(t) (eliminated from the closed form)."""
    res = run(M2, Regimen.single(100.0, "mg", "SC", 0.0, time_unit="h"), P2, loop=loop)
    in_body = res["depot"] + res["central"] + res["peripheral"]
    elim = cf.oral_eliminated_amount(T1, 100.0, P2["CL"], P2["V1"], P2["KA"], P2["F"], P2["ALAG"], P2["Q"], P2["V2"])
    np.testing.assert_allclose(in_body + elim, np.where(T1 >= P2["ALAG"], P2["F"] * 100.0, 0.0), rtol=1e-9, atol=1e-10)
    assert elim[-1] > 30.0  # a substantial part has been eliminated: the check is not trivial


@loops
def test_mass_balance_accumulator_time_varying_clearance_all_routes(loop):
    """With an eliminated-amount state, body + eliminated = total input at every time (CL(t), all routes)."""
    reg = Regimen((Dose(0.0, 100.0, "mg", "SC", ii=24.0, addl=2), Dose(6.0, 40.0, "mg", "IV_bolus"),
                   Dose(30.0, 30.0, "mg", "IV_infusion", duration=5.0)), time_unit="h")
    res = run(MB, reg, PMB, loop=loop)
    body = res["depot"] + res["central"] + res["peripheral"]
    sc_in = sum(np.where(T1 >= t0 + PMB["ALAG"], PMB["F"] * 100.0, 0.0) for t0 in (0.0, 24.0, 48.0))
    total_in = sc_in + np.where(T1 >= 6.0, 40.0, 0.0) + infused_so_far(T1, 30.0, 5.0, 30.0)
    np.testing.assert_allclose(body + res["eliminated"], total_in, rtol=1e-9, atol=1e-10)
    assert res["eliminated"][-1] > 0.3 * total_in[-1]


# ------------------------------------------------------------------------------------------------
# Non-negativity and superposition
# ------------------------------------------------------------------------------------------------
@loops
def test_states_non_negative_for_random_patients_and_regimens(loop):
    rng = np.random.default_rng(7)
    for _ in range(3):
        params = {k: float(v * np.exp(rng.normal(0, 0.7))) for k, v in P2.items() if k not in ("F", "ALAG")}
        params.update(F=float(rng.uniform(0.2, 1.0)), ALAG=float(rng.uniform(0.0, 2.0)))
        doses = [Dose(float(t), float(a), "mg", r, duration=(2.0 if r == "IV_infusion" else None))
                 for t, a, r in zip(np.sort(rng.uniform(0, 60, 5)), rng.uniform(0, 100, 5),
                                    rng.choice(["SC", "IV_bolus", "IV_infusion"], 5))]
        res = run(M2, Regimen(tuple(doses), time_unit="h"), params, loop=loop)
        for name in ("depot", "central", "peripheral"):
            assert res[name].min() >= -1e-12, name
        assert res["CP"].max() > 0


@loops
def test_superposition_linear_pk(loop):
    a = Regimen((Dose(0.0, 100.0, "mg", "SC"), Dose(24.0, 50.0, "mg", "IV_bolus")), time_unit="h")
    b = Regimen((Dose(10.0, 30.0, "mg", "IV_infusion", duration=4.0), Dose(36.0, 80.0, "mg", "SC")), time_unit="h")
    ra, rb, rab = run(M2, a, P2, loop=loop), run(M2, b, P2, loop=loop), run(M2, a + b, P2, loop=loop)
    scale = rab["CP"].max()
    np.testing.assert_allclose(rab["CP"], ra["CP"] + rb["CP"], rtol=1e-8, atol=1e-10 * scale)
    np.testing.assert_allclose(rab["peripheral"], ra["peripheral"] + rb["peripheral"], rtol=1e-8, atol=1e-9)
    # homogeneity: doubling every dose doubles the curve
    a2 = Regimen(tuple(Dose(d.time, 2 * d.amount, d.unit, d.route, d.duration) for d in a.doses), time_unit="h")
    np.testing.assert_allclose(run(M2, a2, P2, loop=loop)["CP"], 2 * ra["CP"], rtol=1e-8, atol=1e-10 * scale)


# ------------------------------------------------------------------------------------------------
# Batches: vmap over patients with different parameters and regimens of different lengths
# ------------------------------------------------------------------------------------------------
BATCH = dict(solver="tsit5", rtol=1e-8, atol=1e-10, max_steps=300)
REGS = [
    Regimen((Dose(0.0, 50.0, "mg", "SC", ii=12.0, addl=3), Dose(40.0, 20.0, "mg", "IV_bolus")), time_unit="h"),
    Regimen.single(60.0, "mg", "IV_infusion", 2.0, duration=6.0, time_unit="h"),
    Regimen.stepup([(0.0, 5.0), (24.0, 20.0), (48.0, 60.0)], "mg", "SC", time_unit="h")
    + Regimen.single(10.0, "mg", "IV_infusion", 50.0, duration=1.0, time_unit="h"),
    Regimen.single(100.0, "mg", "IV_bolus", 0.0, time_unit="h"),
]
BATCH_PARAMS = dict(CL=np.array([0.9, 1.4, 0.5, 2.0]), V1=np.array([6.0, 8.0, 4.0, 10.0]),
                    KA=np.array([0.4, 0.4, 1.1, 0.2]), ALAG=np.array([0.5, 0.0, 1.0, 0.25]))
NJ, NI = 5, 1  # the padded lengths the batch gets (patient 0 has 5 jumps, patients 1 and 2 one infusion)


def one_by_one(i, params, loop="segments"):
    """Patient i alone, with its events padded to the batch's lengths (the same compiled shape)."""
    ev = regimen_to_events(M2, REGS[i], pad_jumps=NJ, pad_infusions=NI)
    return simulate(M2, ev, T1, {k: float(v[i]) for k, v in params.items()} | {"Q": P2["Q"], "V2": P2["V2"]},
                    loop=loop, **BATCH)


@loops
def test_batch_of_different_patients_and_regimen_lengths_equals_one_by_one(loop):
    assert sorted(len(r.expanded()) for r in REGS) == [1, 1, 4, 5]
    res = simulate(M2, REGS, T1, dict(BATCH_PARAMS, Q=P2["Q"], V2=P2["V2"]), **BATCH, loop=loop)
    assert res.batched and res["CP"].shape == (4, len(T1))
    np.testing.assert_array_equal(res.status, [0, 0, 0, 0])
    for i in range(4):
        one = one_by_one(i, BATCH_PARAMS, loop)
        assert int(one.status) == 0
        np.testing.assert_allclose(res["CP"][i], one["CP"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(res["peripheral"][i], one["peripheral"], rtol=1e-12, atol=1e-14)
    # and the curves really differ between patients
    assert np.min(np.abs(res["CP"][0] - res["CP"][1])[T1 > 10]) > 1e-3


@loops
def test_padding_does_not_change_the_solution(loop):
    ev_pad = regimen_to_events(M2, REGS[0], pad_jumps=NJ + 3, pad_infusions=NI + 2)
    a = simulate(M2, REGS[0], T1, P2, **BATCH, loop=loop)
    b = simulate(M2, ev_pad, T1, P2, **BATCH, loop=loop)
    np.testing.assert_allclose(a["CP"], b["CP"], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bad", [0, 2])
@loops
def test_batch_with_nan_parameter_flags_that_patient_only(bad, loop):
    params = {k: v.copy() for k, v in BATCH_PARAMS.items()}
    params["CL"][bad] = np.nan
    res = simulate(M2, REGS, T1, dict(params, Q=P2["Q"], V2=P2["V2"]), **BATCH, loop=loop)
    assert res.status[bad] != STATUS_OK
    good = [i for i in range(4) if i != bad]
    assert np.all(res.status[good] == STATUS_OK)
    for i in good:
        np.testing.assert_allclose(res["CP"][i], one_by_one(i, params, loop)["CP"], rtol=1e-12, atol=1e-14)
    assert not res.ok[bad] and res.ok[good].all()


@loops
def test_batch_with_stiff_patient_hitting_max_steps_flags_that_patient_only(loop):
    params = {k: v.copy() for k, v in BATCH_PARAMS.items()}
    params["KA"][0] = 1e5  # absorption 1e5/h: the explicit solver is stability-limited to dt ~ 3e-5 h
    res = simulate(M2, REGS, T1, dict(params, Q=P2["Q"], V2=P2["V2"]), **BATCH, loop=loop)
    assert res.status[0] == STATUS_SOLVER_FAILED
    np.testing.assert_array_equal(res.status[1:], [0, 0, 0])
    for i in (1, 2, 3):
        np.testing.assert_allclose(res["CP"][i], one_by_one(i, params, loop)["CP"], rtol=1e-12, atol=1e-14)
    alone = one_by_one(0, params, loop)
    assert int(alone.status) == STATUS_SOLVER_FAILED


def test_batched_parameter_validation_checks_every_patient():
    params = {k: v.copy() for k, v in BATCH_PARAMS.items()}
    params["CL"][3] = -1.0  # not the first patient
    with pytest.raises(InputError, match="CL"):
        simulate(M2, REGS, T1, params, **BATCH)
    with pytest.raises(InputError, match="NOPE"):
        simulate(M2, REGS, T1, {"NOPE": np.ones(4)}, **BATCH)



@loops
def test_batch_with_per_patient_covariates_and_time_grids(loop):
    """mg/kg doses converted with each patient's weight, and a different output grid per patient (2-D times)."""
    def kg_regimen(i):
        return [Regimen((Dose(0.0, 1.0, "mg/kg", "SC", ii=12.0, addl=3), Dose(40.0, 0.2, "mg/kg", "IV_bolus")),
                        time_unit="h"),
                Regimen.single(0.5, "mg/kg", "IV_infusion", 2.0, duration=6.0, time_unit="h"),
                Regimen.single(0.8, "mg/kg", "SC", 5.0, time_unit="h"),
                Regimen.single(1.2, "mg/kg", "IV_bolus", 0.0, time_unit="h")][i]

    weights = [50.0, 70.0, 90.0, 110.0]
    covs = [Covariates(weight_kg=w) for w in weights]
    times = np.stack([T1 * (1.0 + 0.1 * i) for i in range(4)])
    res = simulate(M2, [kg_regimen(i) for i in range(4)], times, dict(BATCH_PARAMS, Q=P2["Q"], V2=P2["V2"]),
                   covariates=covs, **BATCH, loop=loop)
    np.testing.assert_array_equal(res.status, 0)
    for i in range(4):
        reg_mg = kg_regimen(i).with_doses(Dose(d.time, d.amount * weights[i], "mg", d.route, d.duration, d.ii, d.addl)
                                          for d in kg_regimen(i).doses)
        ev = regimen_to_events(M2, reg_mg, pad_jumps=NJ, pad_infusions=NI)
        one = simulate(M2, ev, times[i], {k: float(v[i]) for k, v in BATCH_PARAMS.items()} | {"Q": P2["Q"],
                                                                                               "V2": P2["V2"]},
                       **BATCH, loop=loop)
        np.testing.assert_allclose(res["CP"][i], one["CP"], rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------------
# NONMEM-style reset (EVID 3/4)
# ------------------------------------------------------------------------------------------------
def test_reset_returns_system_to_baseline():
    reg = Regimen((Dose(0.0, 100.0, "mg", "SC"), Dose(10.0, 50.0, "mg", "IV_infusion", duration=20.0),
                   Dose(24.0, 0.0, "mg", "IV_bolus", reset=True)), time_unit="h")
    ts = np.array([20.0, 24.0, 24.0, 30.0, 40.0, 72.0])
    res = run(MB, reg, PMB, times=ts, times_left=np.array([False, True, False, False, False, False]))
    assert res["central"][1] > 1.0 and res["R"][1] < 0.99 * 50.0  # before the reset: drug and effect
    for name in ("depot", "central", "peripheral", "eliminated"):
        np.testing.assert_array_equal(res[name][2:], 0.0)  # the running infusion stops too
    np.testing.assert_allclose(res["R"][2:], PMB.get("R0", 50.0), rtol=1e-12)  # biomarker back at its baseline


def test_reset_with_dose_equals_fresh_start():
    """Reset-and-dose at 24 h (EVID 4): afterwards the system is exactly a fresh patient dosed at 24 h (PK with
    constant CL is time invariant), and between 24 h and 24 h + ALAG it is at baseline (the reset is not lagged)."""
    reg = Regimen((Dose(0.0, 100.0, "mg", "IV_bolus"), Dose(24.0, 80.0, "mg", "SC", reset=True)), time_unit="h")
    ts = np.array([24.0, 24.0, 24.25, 24.5, 30.0, 48.0, 72.0])
    res = run(M1, reg, P1, times=ts, times_left=np.array([True] + [False] * 6))
    assert res["CP"][0] == pytest.approx(float(cf.one_cmt_bolus(24.0, 100.0, P1["CL"], P1["V"])), rel=1e-8)
    np.testing.assert_allclose(res["CP"][1:], cf.one_cmt_oral(ts[1:], 80.0, P1["CL"], P1["V"], P1["KA"], P1["F"], P1["ALAG"], t0=24.0), rtol=1e-8, atol=1e-14)
    assert res["CP"][1] == 0.0 and res["depot"][1] == 0.0 and res["depot"][2] == 0.0
