"""Reverse-mode gradients through the solver vs central finite differences (and vs the closed forms).

``jax.jacrev`` of concentrations at a few times and of the AUC over the output grid, with respect to every
pk-2cmt parameter (CL, V1, Q, V2, KA, F, ALAG) and to the dose amounts in the event arrays
(``jump_amount`` for boluses/SC doses, ``inf_amount`` for infusions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import closed_forms as cf
from engine_models import LOOPS, M2, P2
from qsp import Dose, Regimen, regimen_to_events
from qsp.simulate import SolverConfig, compiled, solve_events
from dataclasses import replace

CFG = SolverConfig(solver="tsit5", rtol=1e-12, atol=1e-14)  # tight, so that finite differences are clean
PNAMES = ("CL", "V1", "Q", "V2", "KA", "F", "ALAG")
REG = Regimen((Dose(0.0, 100.0, "mg", "SC"), Dose(24.0, 50.0, "mg", "SC"), Dose(30.0, 20.0, "mg", "IV_bolus"),
               Dose(40.0, 30.0, "mg", "IV_infusion", duration=4.0)), time_unit="h")
EV = regimen_to_events(M2, REG, pad_jumps=4, pad_infusions=2)  # one padding row each (mask=False)
# Output grid: no output sits on a lagged SC dose time (0.5 h, 24.5 h), where CP is not differentiable in ALAG;
# 24.45 and 24.55 straddle the second lagged dose.
TS = np.unique(np.concatenate([np.linspace(0.0, 72.0, 97), [0.3, 24.45, 24.55]]))
LEFT = np.zeros(TS.shape, bool)
PICK = np.searchsorted(TS, [0.3, 2.0, 12.0, 24.45, 24.55, 31.5, 42.0, 60.0])  # CP outputs checked
REF_IDX = {"pre-dose": 0, "before 2nd lagged dose": 3, "after 2nd lagged dose": 4}

_FNS = {loop: compiled(M2, replace(CFG, loop=loop), False) for loop in LOOPS}  # segmented and whole-horizon


def _p(values):
    return {k: jnp.asarray(float(values[k])) for k in PNAMES}


def observables(params, jump_amount, inf_amount, ev, loop="segments"):
    """CP at the picked times and AUC (trapezoid over the output grid). ``ev`` is traced (a pytree of arrays),
    so other regimens with the same padded shapes reuse the compiled functions (always pass it explicitly:
    jit would bake a default value in as a constant and compile again for an explicit one)."""
    ev = ev._replace(jump_amount=jump_amount, inf_amount=inf_amount)
    _, outs, _, _, _ = _FNS[loop](params, ev, TS, LEFT)
    cp = outs["CP"]
    return jnp.concatenate([cp[PICK], jnp.trapezoid(cp, jnp.asarray(TS))[None]])


_obs = jax.jit(observables, static_argnames="loop")
_jac = jax.jit(jax.jacrev(observables, argnums=(0, 1, 2)), static_argnames="loop")


@pytest.fixture(scope="module", params=LOOPS)
def loop(request):
    """Every gradient check runs on the segmented reference loop and on the whole-horizon loop."""
    return request.param


@pytest.fixture(scope="module")
def jac(loop):
    return _jac(_p(P2), jnp.asarray(EV.jump_amount), jnp.asarray(EV.inf_amount), EV, loop=loop)


def _obs_np(params, ja=None, ia=None, ev=EV, loop="segments"):
    ja = ev.jump_amount if ja is None else ja
    ia = ev.inf_amount if ia is None else ia
    return np.asarray(_obs(_p(params), jnp.asarray(ja), jnp.asarray(ia), ev, loop=loop))


def _assert_close(grad, fd, scale, name, rtol=1e-5):
    grad, fd = np.asarray(grad), np.asarray(fd)
    err = np.abs(grad - fd)
    tol = rtol * np.abs(fd) + 1e-9 * scale
    assert np.all(err <= tol), f"{name}: grad {grad} vs FD {fd} (worst rel err {np.max(err / (np.abs(fd) + 1e-300)):.3g})"


def test_forward_values_match_closed_form(loop):
    ref = cf.concentration(TS, [cf.D(0.0, 100.0, "oral"), cf.D(24.0, 50.0, "oral"), cf.D(30.0, 20.0, "bolus"),
                                cf.D(40.0, 30.0, "infusion", 4.0)], **P2)
    val = _obs_np(P2, loop=loop)
    np.testing.assert_allclose(val[:-1], ref[PICK], rtol=1e-9, atol=1e-14)
    assert val[-1] == pytest.approx(np.trapezoid(ref, TS), rel=1e-9)


@pytest.mark.parametrize("name", PNAMES)
def test_grad_wrt_parameter_vs_central_differences(jac, loop, name):
    g = np.asarray(jac[0][name])
    h = 1e-4 * P2[name]
    up, dn = dict(P2), dict(P2)
    up[name] += h
    dn[name] -= h
    fd = (_obs_np(up, loop=loop) - _obs_np(dn, loop=loop)) / (2 * h)
    scale = np.abs(_obs_np(P2, loop=loop)) / P2[name]
    _assert_close(g, fd, scale, name)
    assert np.max(np.abs(g)) > 0  # every parameter matters for some output
    # and vs central differences of the closed form (independent of the solver)

    def closed(p):
        c = cf.concentration(TS, [cf.D(0.0, 100.0, "oral"), cf.D(24.0, 50.0, "oral"), cf.D(30.0, 20.0, "bolus"),
                                  cf.D(40.0, 30.0, "infusion", 4.0)], **p)
        return np.concatenate([c[PICK], [np.trapezoid(c, TS)]])

    fd_cf = (closed(up) - closed(dn)) / (2 * h)
    _assert_close(g, fd_cf, scale, name + " (closed form)")


def test_grad_wrt_alag_across_a_lagged_dose(jac):
    g = np.asarray(jac[0]["ALAG"])
    i_pre, i_before, i_after = REF_IDX.values()
    assert g[i_pre] == 0.0  # before the first (lagged) dose nothing depends on the lag
    # Just after the 2nd lagged dose (24.5 h) its own absorption adds a large negative sensitivity:
    # d/dALAG of F D KA/V1 * (s + ...) with s = t - 24 - ALAG is about -F D KA / V1 per unit lag.
    jump = g[i_after] - g[i_before]
    assert jump == pytest.approx(-P2["F"] * 50.0 * P2["KA"] / P2["V1"], rel=0.1)
    # the 1st dose's contribution is positive there (a later dose is less eliminated): without it the sign differs
    assert g[i_before] > 0 and g[i_after] < 0


def _check_amount_grads(gj, gi, ev, loop):
    val = _obs_np(P2, ev=ev, loop=loop)
    for arr_name, g, base in (("jump_amount", gj, ev.jump_amount), ("inf_amount", gi, ev.inf_amount)):
        for j in range(base.shape[0]):
            h = 1e-4 * max(base[j], 1.0)
            up, dn = base.copy(), base.copy()
            up[j] += h
            dn[j] -= h
            kw_up = {"ja": up} if arr_name == "jump_amount" else {"ia": up}
            kw_dn = {"ja": dn} if arr_name == "jump_amount" else {"ia": dn}
            fd = (_obs_np(P2, ev=ev, loop=loop, **kw_up) - _obs_np(P2, ev=ev, loop=loop, **kw_dn)) / (2 * h)
            _assert_close(g[:, j], fd, np.abs(val) / max(base[j], 1.0), f"{arr_name}[{j}]")


def _check_param_grads(g, ev, loop):
    for name in PNAMES:
        h = 1e-4 * P2[name]
        up, dn = dict(P2), dict(P2)
        up[name] += h
        dn[name] -= h
        fd = (_obs_np(up, ev=ev, loop=loop) - _obs_np(dn, ev=ev, loop=loop)) / (2 * h)
        _assert_close(np.asarray(g[name]), fd, np.abs(_obs_np(P2, ev=ev, loop=loop)) / P2[name], name)


def test_grad_wrt_dose_amounts_vs_central_differences(jac, loop):
    gj, gi = np.asarray(jac[1]), np.asarray(jac[2])
    assert gj.shape == (len(PICK) + 1, 4) and gi.shape == (len(PICK) + 1, 2)
    _check_amount_grads(gj, gi, EV, loop)
    # padding rows (mask=False) do not act on the solution
    assert not EV.jump_mask[3] and not EV.inf_mask[1]
    assert np.all(gj[:, 3] == 0.0) and np.all(gi[:, 1] == 0.0)
    # linearity: d CP / d amount of the IV bolus at 30 h = the unit-dose closed form
    unit = cf.two_cmt_bolus(TS, 1.0, P2["CL"], P2["V1"], P2["Q"], P2["V2"], t0=30.0)
    j_iv = int(np.flatnonzero(EV.jump_time == 30.0)[0])
    np.testing.assert_allclose(gj[:-1, j_iv], unit[PICK], rtol=1e-8, atol=1e-14)
    # SC amounts enter scaled by F: the gradient of the 2nd SC dose is F times the unit Bateman curve
    unit_sc = cf.two_cmt_oral(TS, 1.0, P2["CL"], P2["V1"], P2["Q"], P2["V2"], P2["KA"], P2["F"], P2["ALAG"], t0=24.0)
    j_sc = int(np.flatnonzero(EV.jump_time == 24.0)[0])
    np.testing.assert_allclose(gj[:-1, j_sc], unit_sc[PICK], rtol=1e-8, atol=1e-14)


def test_solve_events_is_pure_jax_and_differentiable():
    """``solve_events`` itself (no wrapper) under jit + grad: d AUC_central / d (infusion amount)."""
    cfg = CFG
    ts = jnp.asarray(TS)

    def auc_central(inf_amount):
        ys, status, _, _ = solve_events(M2, cfg, _p(P2), EV._replace(inf_amount=inf_amount), ts)
        return jnp.trapezoid(ys[:, M2.state_index("central")], ts)

    g = jax.jit(jax.grad(auc_central))(jnp.asarray(EV.inf_amount))
    unit = cf.two_cmt_infusion(TS, 1.0, 4.0, P2["CL"], P2["V1"], P2["Q"], P2["V2"], t0=40.0) * P2["V1"]
    assert float(g[0]) == pytest.approx(np.trapezoid(unit, TS), rel=1e-8)
    assert float(g[1]) == 0.0


def test_grads_with_simultaneous_events_and_events_at_or_after_the_last_output(loop):
    """Zero-length segments (two boluses at one time, an infusion starting at the last output time, doses after
    it) must not give NaN gradients, and doses after the horizon have zero sensitivity."""
    reg = Regimen((Dose(0.0, 100.0, "mg", "SC"), Dose(30.0, 20.0, "mg", "IV_bolus"),
                   Dose(30.0, 15.0, "mg", "IV_bolus"), Dose(80.0, 50.0, "mg", "SC"),
                   Dose(72.0, 30.0, "mg", "IV_infusion", duration=4.0),
                   Dose(90.0, 30.0, "mg", "IV_infusion", duration=4.0)), time_unit="h")
    ev = regimen_to_events(M2, reg, pad_jumps=4, pad_infusions=2)  # same shapes: no recompilation
    assert ev.jump_mask.all() and ev.inf_mask.all()
    gp, gj, gi = _jac(_p(P2), jnp.asarray(ev.jump_amount), jnp.asarray(ev.inf_amount), ev, loop=loop)
    gj, gi = np.asarray(gj), np.asarray(gi)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in gp.values())
    assert np.all(np.isfinite(gj)) and np.all(np.isfinite(gi))
    j_after = int(np.flatnonzero(ev.jump_time == 80.0)[0])
    assert np.all(gj[:, j_after] == 0.0) and np.all(gi == 0.0)  # nothing after 72 h acts on the outputs
    j30 = np.flatnonzero(ev.jump_time == 30.0)
    np.testing.assert_allclose(gj[:, j30[0]], gj[:, j30[1]], rtol=1e-12)  # simultaneous boluses act alike
    _check_param_grads(gp, ev, loop)
    _check_amount_grads(gj, gi, ev, loop)


def test_forward_mode_jacobian_equals_reverse_mode(jac, loop):
    """``SolverConfig(adjoint="forward")`` (diffrax.ForwardMode; ``jax.jacfwd``) gives the reverse-mode Jacobian."""
    fwd_fn = compiled(M2, replace(CFG, adjoint="forward", loop=loop), False)

    def obs_fwd(params, jump_amount, inf_amount, ev):
        ev = ev._replace(jump_amount=jump_amount, inf_amount=inf_amount)
        cp = fwd_fn(params, ev, TS, LEFT)[1]["CP"]
        return jnp.concatenate([cp[PICK], jnp.trapezoid(cp, jnp.asarray(TS))[None]])

    jf = jax.jit(jax.jacfwd(obs_fwd, argnums=(0, 1, 2)))(_p(P2), jnp.asarray(EV.jump_amount),
                                                          jnp.asarray(EV.inf_amount), EV)
    for name in PNAMES:
        np.testing.assert_allclose(np.asarray(jf[0][name]), np.asarray(jac[0][name]), rtol=1e-8, atol=1e-12,
                                   err_msg=name)
    np.testing.assert_allclose(np.asarray(jf[1]), np.asarray(jac[1]), rtol=1e-8, atol=1e-12)
    with pytest.raises(Exception, match="adjoint"):
        SolverConfig(adjoint="sideways")
