"""Dose validation, regimen composition and compilation to event arrays."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from engine_models import M1_DAY, M2
from qsp import Covariates, Dose, InputError, Regimen, regimen_to_events, stack_events
from qsp.events import events_in_time_unit
from qsp.simulate import dose_inputs


def raises_naming(field, fn, *args, **kw):
    with pytest.raises(InputError) as ei:
        fn(*args, **kw)
    assert ei.value.field == field
    assert field in str(ei.value)
    return str(ei.value)


# ------------------------------------------------------------------------------------------------
# Dose validation
# ------------------------------------------------------------------------------------------------
def test_dose_normalizes_unit_and_route():
    d = Dose(0.0, 5.0, "MCG", "sc")
    assert (d.unit, d.route) == ("ug", "SC")
    assert Dose(0.0, 1.0, route="iv").route == "IV_bolus"
    assert Dose(0.0, 1.0, "ug/day", "civ", duration=2.0).route == "IV_continuous"
    assert Dose(0.0, 1.0, route="Infusion", duration=1.0).is_infusion


def test_unknown_route():
    msg = raises_naming("route", Dose, 0.0, 1.0, "mg", "intramuscular")
    assert "IV_bolus" in msg and "SC" in msg  # lists the allowed routes


def test_infusion_without_duration():
    raises_naming("duration", Dose, 0.0, 10.0, "mg", "IV_infusion")
    raises_naming("duration", Dose, 0.0, 10.0, "ug/day", "IV_continuous")  # a rate without a duration


def test_duration_not_allowed_for_bolus_or_premedication():
    raises_naming("duration", Dose, 0.0, 10.0, "mg", "IV_bolus", duration=1.0)
    raises_naming("duration", Dose, 0.0, 10.0, "mg", "premed_dex", duration=1.0)
    assert Dose(0.0, 10.0, "mg", "SC", duration=1.0).is_infusion  # zero-order input into the depot
    raises_naming("duration", Dose, 0.0, 10.0, "mg", "IV_infusion", duration=0.0)
    raises_naming("duration", Dose, 0.0, 10.0, "mg", "IV_infusion", duration=-2.0)


def test_rate_unit_needs_continuous_route():
    msg = raises_naming("unit", Dose, 0.0, 100.0, "ug/day", "IV_infusion", duration=1.0)
    assert "IV_continuous" in msg


def test_addl_without_ii():
    msg = raises_naming("addl", Dose, 0.0, 1.0, addl=3)
    assert "II" in msg


@pytest.mark.parametrize("amount", [-1.0, float("nan"), float("inf"), "5"])
def test_bad_amount(amount):
    raises_naming("amount", Dose, 0.0, amount)


@pytest.mark.parametrize("addl", [2.5, -1, True, "3"])
def test_non_integer_or_negative_addl(addl):
    raises_naming("addl", Dose, 0.0, 1.0, ii=7.0, addl=addl)


def test_bad_time_and_ii():
    raises_naming("time", Dose, float("nan"), 1.0)
    raises_naming("time", Dose, None, 1.0)
    raises_naming("ii", Dose, 0.0, 1.0, ii=-7.0)
    raises_naming("ii", Dose, 0.0, 1.0, ii=float("nan"))


def test_infusion_longer_than_interval():
    raises_naming("duration", Dose, 0.0, 1.0, "mg", "IV_infusion", duration=8.0, ii=7.0, addl=2)
    Dose(0.0, 1.0, "mg", "IV_infusion", duration=7.0, ii=7.0, addl=2)  # back to back is fine


def test_unknown_unit_in_dose():
    raises_naming("unit", Dose, 0.0, 1.0, "tablespoons")


def test_dose_accepts_numpy_numbers():
    times = np.arange(0, 21, 7)  # int64
    d = Dose(times[1], np.float32(5.0), ii=np.int64(7), addl=np.int64(2))
    assert [x.time for x in d.repeats()] == [7, 14, 21]
    reg = Regimen.stepup(list(zip(times, np.array([1, 10, 100]))), "mg", "SC")
    assert [d.amount for d in reg.expanded()] == [1, 10, 100]


def test_zero_dose_is_allowed():
    assert Dose(0.0, 0.0).amount == 0.0


# ------------------------------------------------------------------------------------------------
# Regimen composition
# ------------------------------------------------------------------------------------------------
STEPUP = Regimen.stepup([(0.0, 1.0), (3.0, 10.0)], "mg", "SC")
MAINT = Regimen.repeat(48.0, "mg", "SC", start=7.0, every=7.0, count=4, label="maintenance")


def test_stepup_plus_repeat():
    reg = STEPUP + MAINT
    assert len(reg) == 3  # two step-up doses and one repeating record
    ex = reg.expanded()
    assert [d.time for d in ex] == [0.0, 3.0, 7.0, 14.0, 21.0, 28.0]
    assert [d.amount for d in ex] == [1.0, 10.0, 48.0, 48.0, 48.0, 48.0]
    assert [d.label for d in ex] == ["step 1", "step 2"] + ["maintenance"] * 4
    assert all(d.addl == 0 and d.ii == 0.0 for d in ex)
    assert reg.time_unit == "day"
    assert "x4 q7day" in reg.describe()
    assert (MAINT + STEPUP) == reg  # composition is order independent (doses are kept sorted by time)


def test_repeat_count_one_and_bad_count():
    one = Regimen.repeat(5.0, "mg", "SC", start=2.0, every=7.0, count=1)
    assert one.doses[0].addl == 0 and len(one.expanded()) == 1
    raises_naming("count", Regimen.repeat, 5.0, "mg", "SC", start=0.0, every=7.0, count=0)


def test_regimen_sorts_doses_and_rejects_non_doses():
    reg = Regimen((Dose(5.0, 1.0), Dose(1.0, 2.0), Dose(3.0, 3.0)))
    assert [d.time for d in reg] == [1.0, 3.0, 5.0]
    raises_naming("doses", Regimen, ((0.0, 1.0),))
    raises_naming("time_unit", Regimen, (), "week")


def test_shifted():
    reg = (STEPUP + MAINT).shifted(14.0)
    assert [d.time for d in reg.expanded()] == [14.0, 17.0, 21.0, 28.0, 35.0, 42.0]
    assert reg.doses[-1].ii == 7.0 and reg.doses[-1].addl == 3
    assert [d.time for d in STEPUP.shifted(-1.0)] == [-1.0, 2.0]


def test_in_unit():
    inf = Regimen.repeat(2.0, "mg", "IV_infusion", start=1.0, every=7.0, count=3, duration=0.25)
    h = inf.in_unit("h")
    assert h.time_unit == "h"
    d = h.doses[0]
    assert (d.time, d.ii, d.duration, d.addl) == (24.0, 168.0, 6.0, 2)
    back = h.in_unit("day")
    assert back.doses[0].time == pytest.approx(1.0) and back.doses[0].duration == pytest.approx(0.25)
    assert inf.in_unit("day") is inf
    raises_naming("time_unit", inf.in_unit, "min")


def test_add_converts_the_second_regimen_to_the_first_clock():
    hours = Regimen.single(5.0, "mg", "IV_bolus", 36.0, time_unit="h")
    reg = STEPUP + hours
    assert reg.time_unit == "day"
    assert [d.time for d in reg] == [0.0, 1.5, 3.0]
    reg2 = hours + STEPUP
    assert reg2.time_unit == "h" and [d.time for d in reg2] == [0.0, 36.0, 72.0]
    with pytest.raises(TypeError):
        _ = STEPUP + 3


def test_expanded_and_until():
    reg = STEPUP + MAINT
    assert [d.time for d in reg.until(14.0)] == [0.0, 3.0, 7.0, 14.0]  # inclusive at t_end
    assert [d.time for d in reg.until(13.99)] == [0.0, 3.0, 7.0]
    assert len(reg.until(-1.0)) == 0
    assert reg.expanded().expanded() == reg.expanded()
    d = Dose(0.0, 1.0, ii=2.0, addl=2)
    assert [x.time for x in d.repeats()] == [0.0, 2.0, 4.0]


def test_dose_amounts_in_target_units():
    reg = Regimen((Dose(0.0, 1.0, "mg/kg", "IV_bolus"), Dose(1.0, 300.0, "ug/m2", "SC", ii=7.0, addl=1),
                   Dose(2.0, 2400.0, "ug/day", "IV_continuous", duration=12.0)), time_unit="h")
    cov = Covariates(weight_kg=80.0, bsa_m2=2.0)
    amounts = reg.dose_amounts("mg", cov)
    assert amounts == pytest.approx([80.0, 0.6, 1.2, 0.6])  # by time (0, 1, 2, 8 h); 2400 ug/day for 12 h = 1.2 mg
    assert reg.dose_amounts("ug", cov)[2] == pytest.approx(1200.0)
    raises_naming("weight_kg", reg.dose_amounts, "mg")


# ------------------------------------------------------------------------------------------------
# Compilation to event arrays
# ------------------------------------------------------------------------------------------------
def test_regimen_to_events_units_routes_and_padding():
    reg = Regimen((Dose(0.0, 500.0, "ug", "SC", ii=1.0, addl=1), Dose(0.5, 1.0, "mg/kg", "IV_bolus"),
                   Dose(1.0, 2.0, "mg", "IV_infusion", duration=0.25)), time_unit="day")
    ev = regimen_to_events(M2, reg, Covariates(weight_kg=60.0), pad_jumps=5, pad_infusions=3)
    assert ev.n_jumps == 5 and ev.n_infusions == 3
    np.testing.assert_array_equal(ev.jump_mask, [True, True, True, False, False])
    np.testing.assert_allclose(ev.jump_time[:3], [0.0, 12.0, 24.0])  # days -> the model's hours
    np.testing.assert_allclose(ev.jump_amount[:3], [0.5, 60.0, 0.5])  # ug -> mg, mg/kg * 60 kg
    depot, central = M2.state_index("depot"), M2.state_index("central")
    np.testing.assert_array_equal(ev.jump_state[:3], [depot, central, depot])
    assert [M2.route_names[r] for r in ev.jump_route[:3]] == ["SC", "IV_bolus", "SC"]
    np.testing.assert_array_equal(ev.inf_mask, [True, False, False])
    assert (ev.inf_start[0], ev.inf_duration[0], ev.inf_amount[0]) == (24.0, 6.0, 2.0)
    assert ev.inf_state[0] == central
    with pytest.raises(ValueError):
        regimen_to_events(M2, reg, Covariates(weight_kg=60.0), pad_jumps=2)


def test_regimen_to_events_continuous_rate_in_day_model():
    reg = Regimen.single(2400.0, "ug/day", "IV_continuous", 0.0, duration=36.0, time_unit="h")
    ev = regimen_to_events(M1_DAY, reg)
    assert ev.inf_duration[0] == pytest.approx(1.5) and ev.inf_amount[0] == pytest.approx(3.6)


def test_regimen_to_events_nmol_model():
    m = dataclasses.replace(M2, amount_unit="nmol", mw_g_per_mol=147_000.0)
    ev = regimen_to_events(m, Regimen.single(1.0, "mg", "IV_bolus"))
    assert ev.jump_amount[0] == pytest.approx(1e6 / 147_000.0)


def test_regimen_to_events_errors():
    raises_naming("route", regimen_to_events, M2, Regimen.single(1.0, "mg", "IP"))
    raises_naming("cmt", regimen_to_events, M2, Regimen((Dose(0.0, 1.0, cmt="liver"),)))
    raises_naming("weight_kg", regimen_to_events, M2, Regimen.single(1.0, "mg/kg", "SC"))


def test_reset_events_and_infusion_truncation():
    reg = Regimen((Dose(0.0, 10.0, "mg", "IV_infusion", duration=10.0), Dose(4.0, 0.0, reset=True),
                   Dose(6.0, 5.0, "mg", "SC", reset=True)), time_unit="h")
    ev = regimen_to_events(M2, reg)
    # a reset without an amount is one reset row; a reset-and-dose is a reset row followed by the dose
    assert list(ev.jump_reset) == [True, True, False]
    np.testing.assert_allclose(ev.jump_time, [4.0, 6.0, 6.0])
    np.testing.assert_allclose(ev.jump_amount, [0.0, 0.0, 5.0])
    # the infusion running at the first reset stops there (its window ends at the reset), with the amount
    # delivered so far
    assert ev.inf_until[0] == pytest.approx(4.0) and ev.inf_duration[0] == pytest.approx(10.0)
    _, _, i0, i1, rate = dose_inputs(M2, M2.params(), ev)
    assert float(i1[0]) == pytest.approx(4.0) and float(rate[0]) * (float(i1[0]) - float(i0[0])) == pytest.approx(4.0)


def test_stack_events_pads_to_common_length():
    a = regimen_to_events(M2, Regimen.single(1.0, "mg", "SC"))
    b = regimen_to_events(M2, STEPUP + MAINT)
    s = stack_events([a, b])
    assert s.jump_time.shape == (2, 6) and s.inf_start.shape == (2, 1)
    assert s.jump_mask.sum(axis=1).tolist() == [1, 6]
    np.testing.assert_array_equal(s.jump_amount[0, 1:], 0.0)
    raises_naming("regimens", stack_events, [])
    h = events_in_time_unit(a, "h", "day")
    assert h.jump_time[0] == 0.0 and math.isclose(events_in_time_unit(b, "h", "day").jump_time[1], 72.0 / 24)
