"""The whole-horizon integration loop (qsp.whole_horizon) against the segmented reference loop: random
regimens (SC boluses with lag and F, IV boluses, IV infusions, doses at equal times), the TCE model on its label
regimen and IV, per-segment samples, batches, gradients, resets (segmented fallback) and failing patients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsp
from qsp.cards import load_card
from qsp.events import regimen_to_events
from qsp.simulate import SolverConfig, solve_events_windows
from qsp.whole_horizon import has_resets

TIGHT = dict(rtol=1e-11, atol=1e-13, max_steps=200_000)
PK = {"CL": 0.3, "V1": 3.0, "Q": 0.6, "V2": 2.0, "KA": 0.05, "F": 0.7, "ALAG": 0.75}


def _rel(a, b, floor):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / (np.abs(a) + floor)))


def random_regimen(rng) -> qsp.Regimen:
    doses = []
    for _ in range(int(rng.integers(1, 7))):
        t = float(np.round(rng.uniform(0, 120), 1))
        amt = float(np.round(rng.uniform(1, 100), 2))
        kind = rng.integers(0, 3)
        if kind == 0:
            doses.append(qsp.Dose(t, amt, "mg", "SC"))
        elif kind == 1:
            doses.append(qsp.Dose(t, amt, "mg", "IV_bolus"))
        else:
            doses.append(qsp.Dose(t, amt, "mg", "IV_infusion", duration=float(np.round(rng.uniform(0.5, 30), 1))))
    if rng.uniform() < 0.3:  # two doses at one time (a bolus on top of an infusion start, or two boluses)
        doses.append(qsp.Dose(doses[0].time, 5.0, "mg", "IV_bolus"))
    return qsp.Regimen(doses, time_unit="h")


@pytest.mark.parametrize("seed", range(8))
def test_random_pk_regimens_match_the_segmented_loop(seed):
    rng = np.random.default_rng(seed)
    pk = qsp.pk_model("pk-2cmt")
    reg = random_regimen(rng)
    ts = np.linspace(0, 200, 401)
    a = qsp.simulate(pk, reg, ts, PK, **TIGHT, loop="segments")
    b = qsp.simulate(pk, reg, ts, PK, **TIGHT, loop="whole")
    assert int(a.status) == 0 and int(b.status) == 0
    assert _rel(a.outputs["CP"], b.outputs["CP"], 1e-9) <= 1e-7, reg.describe()


def test_left_limits_at_dose_times_match():
    pk = qsp.pk_model("pk-1cmt")
    reg = qsp.Regimen([qsp.Dose(0, 10, "mg", "IV_bolus"), qsp.Dose(24, 10, "mg", "IV_bolus")], time_unit="h")
    ts = np.array([0.0, 12.0, 24.0, 24.0, 36.0])
    left = np.array([False, False, True, False, False])
    p = {"CL": 0.5, "V": 5.0}
    a = qsp.simulate(pk, reg, ts, p, times_left=left, **TIGHT)
    b = qsp.simulate(pk, reg, ts, p, times_left=left, **TIGHT, loop="whole")
    cp = np.asarray(b.outputs["CP"])
    assert _rel(a.outputs["CP"], cp, 1e-12) <= 1e-9
    assert cp[3] - cp[2] == pytest.approx(10 / 5.0, rel=1e-9)  # the bolus jumps exactly at t = 24 h


@pytest.fixture(scope="module")
def tec():
    card = load_card("teclistamab")
    return card, card.model()


@pytest.mark.slow  # two compilations of the full TCE model per route; the PK cases above run by default
@pytest.mark.parametrize("route", ["SC", "IV_infusion"])
def test_tce_model_and_segment_samples_match(tec, route):
    card, model = tec
    reg = card.regimen(until_day=21)
    if route != "SC":
        from dataclasses import replace

        reg = reg.with_doses([replace(d, route="IV_infusion", duration=2 / 24) for d in reg.doses])
    ev = jax.tree_util.tree_map(jnp.asarray, regimen_to_events(model, reg, card.covariates()))
    p = model.params({})
    ts = jnp.linspace(0, 21, 85)
    seg = jax.jit(lambda q: solve_events_windows(model, SolverConfig(**TIGHT), q, ev, ts, seg_points=9))(p)
    whole = jax.jit(lambda q: solve_events_windows(model, SolverConfig(**TIGHT, loop="whole"), q, ev, ts,
                                                   seg_points=9))(p)
    assert int(seg.status) == 0 and int(whole.status) == 0
    scale = np.abs(np.asarray(seg.ys)).max(axis=0) * 1e-9 + 1e-15  # states near zero: relative to their range
    assert _rel(seg.ys, whole.ys, scale) <= 1e-7
    np.testing.assert_array_equal(np.asarray(seg.seg_t), np.asarray(whole.seg_t))
    assert _rel(seg.seg_y, whole.seg_y, scale) <= 1e-7


def test_batch_of_regimens_and_a_failing_patient():
    pk = qsp.pk_model("pk-2cmt")
    rng = np.random.default_rng(11)
    regs = [random_regimen(rng) for _ in range(5)]
    ts = np.linspace(0, 200, 101)
    cl = np.array([0.3, 0.2, np.nan, 0.5, 0.4])  # patient 3: a non-finite clearance fails, the rest complete
    # max_steps well above what the healthy patients need (a few thousand) but not 200,000: the failing patient
    # runs to the limit, on both paths
    tight = dict(TIGHT, max_steps=10_000)
    a = qsp.simulate(pk, regs, ts, {**PK, "CL": cl}, **tight)
    b = qsp.simulate(pk, regs, ts, {**PK, "CL": cl}, **tight, loop="whole")
    assert np.asarray(b.status).tolist()[2] != 0 and [s for i, s in enumerate(np.asarray(b.status)) if i != 2] == [0] * 4
    ok = np.asarray(b.status) == 0
    assert _rel(np.asarray(a.outputs["CP"])[ok], np.asarray(b.outputs["CP"])[ok], 1e-9) <= 1e-7


def test_gradient_matches_the_segmented_loop_and_finite_differences():
    pk = qsp.pk_model("pk-2cmt")
    reg = qsp.Regimen([qsp.Dose(0, 50, "mg", "SC"), qsp.Dose(48, 20, "mg", "IV_infusion", duration=2.0)],
                      time_unit="h")
    ev = jax.tree_util.tree_map(jnp.asarray, regimen_to_events(pk, reg))
    ts = jnp.linspace(0, 120, 61)
    base = pk.params(PK)

    def auc(log_cl, loop):
        p = dict(base, CL=jnp.exp(log_cl))
        cfg = SolverConfig(rtol=1e-10, atol=1e-12, max_steps=100_000, loop=loop)
        return jnp.sum(solve_events_windows(pk, cfg, p, ev, ts).ys[:, 1])

    x = jnp.log(0.3)
    grad = jax.jit(jax.grad(auc), static_argnums=1)
    g_whole = float(grad(x, "whole"))
    g_seg = float(grad(x, "segments"))
    h = 1e-5
    fd = (float(auc(x + h, "whole")) - float(auc(x - h, "whole"))) / (2 * h)
    assert g_whole == pytest.approx(g_seg, rel=1e-6)
    assert g_whole == pytest.approx(fd, rel=1e-5)


def test_resets_take_the_segmented_loop():
    pk = qsp.pk_model("pk-1cmt")
    reg = qsp.Regimen([qsp.Dose(0, 10, "mg", "IV_bolus"), qsp.Dose(24, 10, "mg", "IV_bolus", reset=True)],
                      time_unit="h")
    assert has_resets(regimen_to_events(pk, reg))
    ts = np.linspace(0, 48, 49)
    p = {"CL": 0.5, "V": 5.0}
    a = qsp.simulate(pk, reg, ts, p, **TIGHT)
    b = qsp.simulate(pk, reg, ts, p, **TIGHT, loop="whole")  # falls back: same numbers, status ok
    assert int(b.status) == 0
    np.testing.assert_allclose(np.asarray(b.outputs["CP"]), np.asarray(a.outputs["CP"]), rtol=1e-12)
    # called directly on events with a reset, the whole-horizon loop flags the patient instead of guessing
    ev = jax.tree_util.tree_map(jnp.asarray, regimen_to_events(pk, reg))
    direct = solve_events_windows(pk, SolverConfig(loop="whole"), pk.params(p), ev, jnp.asarray(ts))
    assert int(direct.status) != 0


def test_unknown_loop_is_refused():
    from qsp.errors import InputError

    with pytest.raises(InputError, match="allowed: segments, whole"):
        SolverConfig(loop="adaptive")


@pytest.mark.parametrize("seg_points", [1, 2, 7])
@pytest.mark.parametrize("with_fn", [False, True])
def test_segment_samples_match_the_segmented_loop(seg_points, with_fn):
    """Per-segment samples (the per-dose peak grid), with and without seg_fn: segment ends as left limits,
    starts after the jump, zero-length segments (three events at one time) constant at their start value."""
    pk = qsp.pk_model("pk-2cmt")
    model_p = pk.params(PK)
    reg = qsp.Regimen([qsp.Dose(0, 20, "mg", "IV_bolus"), qsp.Dose(10, 5, "mg", "IV_bolus"),
                       qsp.Dose(10, 7, "mg", "IV_bolus"), qsp.Dose(10, 30, "mg", "IV_infusion", duration=6.0),
                       qsp.Dose(30.5, 12, "mg", "SC")], time_unit="h")
    ev = jax.tree_util.tree_map(jnp.asarray, regimen_to_events(pk, reg))
    ts = jnp.linspace(0, 72, 37)
    fn = (lambda t, y, q: pk.outputs(t, y, q)["CP"][None] * jnp.array([1.0, 2.0])) if with_fn else None
    run = {loop: jax.jit(lambda q, loop=loop: solve_events_windows(
        pk, SolverConfig(**TIGHT, loop=loop), q, ev, ts, seg_points=seg_points, seg_fn=fn))(model_p)
        for loop in ("segments", "whole")}
    a, b = run["segments"], run["whole"]
    assert int(a.status) == 0 and int(b.status) == 0
    np.testing.assert_array_equal(np.asarray(a.seg_t), np.asarray(b.seg_t))
    assert np.asarray(a.seg_y).shape == np.asarray(b.seg_y).shape
    # relative to each column's range: y = z + O leaves round-off (~1e-15) where a state is exactly 0
    scale = np.abs(np.asarray(a.seg_y)).max(axis=(0, 1)) * 1e-8 + 1e-15
    assert _rel(a.seg_y, b.seg_y, scale) <= 1e-7


def test_segments_after_the_horizon_hold_the_last_state():
    """A bolus after the last output time is not applied: the segments past the horizon hold y(t_end), as on the
    segmented path (their samples would otherwise fall into the last dose's window and inflate its peak)."""
    pk = qsp.pk_model("pk-2cmt")
    reg = qsp.Regimen([qsp.Dose(0, 10, "mg", "IV_bolus"), qsp.Dose(10, 10, "mg", "IV_bolus"),
                       qsp.Dose(100, 10, "mg", "IV_bolus")], time_unit="h")
    ev = jax.tree_util.tree_map(jnp.asarray, regimen_to_events(pk, reg))
    ts = jnp.linspace(0, 72, 25)
    fn = lambda t, y, q: pk.outputs(t, y, q)["CP"]  # noqa: E731
    a, b = (solve_events_windows(pk, SolverConfig(**TIGHT, loop=loop), pk.params(PK), ev, ts, seg_points=5, seg_fn=fn)
            for loop in ("segments", "whole"))
    scale = np.abs(np.asarray(a.seg_y)).max() * 1e-8 + 1e-15
    assert _rel(a.seg_y, b.seg_y, scale) <= 1e-7


@pytest.mark.parametrize("case", ["bolus_at_end", "bolus_ulps_before_end", "infusion_ends_at_end",
                                  "infusion_starts_at_end", "horizon_at_zero"])
def test_events_at_or_just_before_the_horizon_match_the_segmented_loop(case):
    """Events at the last output time (or a few ulp before it, inside the step diffrax stretches to the end) act on
    that output exactly and on nothing before it; an infusion ending at the horizon is on until its end."""
    pk = qsp.pk_model("pk-2cmt")
    end = 72.0
    ts = np.linspace(0.0, end, 97)
    first = qsp.Dose(0.0, 20.0, "mg", "SC")
    late = {"bolus_at_end": qsp.Dose(end, 50.0, "mg", "IV_bolus"),
            "bolus_ulps_before_end": qsp.Dose(float(np.nextafter(np.nextafter(end, 0.0), 0.0)), 50.0, "mg",
                                              "IV_bolus"),
            "infusion_ends_at_end": qsp.Dose(68.0, 50.0, "mg", "IV_infusion", duration=4.0),
            "infusion_starts_at_end": qsp.Dose(end, 50.0, "mg", "IV_infusion", duration=4.0),
            "horizon_at_zero": qsp.Dose(0.0, 50.0, "mg", "IV_bolus")}[case]
    if case == "horizon_at_zero":  # outputs only at 0; the doses at 0 are in the output, nothing is integrated
        ts = np.zeros(3)
    reg = qsp.Regimen([first, late], time_unit="h")
    a = qsp.simulate(pk, reg, ts, PK, **TIGHT, loop="segments")
    b = qsp.simulate(pk, reg, ts, PK, **TIGHT, loop="whole")
    assert int(a.status) == 0 and int(b.status) == 0
    for name in ("central", "peripheral", "depot"):
        ya, yb = np.asarray(a.states[name]), np.asarray(b.states[name])
        assert np.all(np.abs(ya - yb) <= 1e-11 * np.abs(ya) + 1e-13), (case, name)
    if case in ("bolus_at_end", "bolus_ulps_before_end"):  # the bolus shows in the last output only
        assert a.states["central"][-1] - a.states["central"][-2] > 40.0
