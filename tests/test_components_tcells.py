"""T-cell component (qsp.components.tcells): the transit stages between engagement and cytokine secretion, and
dexamethasone holding the secreting phase (``dex_holds_secretion``)."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from qsp.components.tcells import TCells, t_states
from qsp.errors import InputError
from qsp.tce import build_tce_model


def _transit_rhs(tc: TCells, p: dict):
    """The component's own rates for the engaged cells with no recruitment, expansion, death or recovery."""
    names = tc.t_new + ("T_act",)

    def f(t, x):
        y = {n: jnp.asarray(v) for n, v in zip(names, x)}
        y.update(T_rest=jnp.asarray(0.0), T_des=jnp.asarray(0.0), marg=jnp.asarray(0.0))
        d = {"t_signal": 0.0, "t_total": 1.0, "t_engaged": 1.0, "t_unengaged_above": 0.0,
             "activation_flux": 0.0}
        r = tc.rates(t, y, p, d)
        return [float(r[n]) for n in names]
    return names, f


@pytest.mark.parametrize("stages", [1, 3, 6])
def test_secretion_delay_is_erlang_with_mean_one_over_ksec(stages):
    """Cells engaged at t = 0 start secreting after a delay of mean 1/KSEC and CV 1/sqrt(n) (Erlang)."""
    tc = TCells(stages=stages)
    p = {q.name: q.value for q in tc.params}
    p.update(KSEC=1.25, KDEACT=0.0, KAICD=0.0, KPROLIF=0.0, KREC=0.0, KHOMEO=0.0)
    names, f = _transit_rhs(tc, p)
    x0 = [1.0] + [0.0] * (len(names) - 1)
    t = np.linspace(0.0, 12.0, 4801)
    sol = solve_ivp(f, (0.0, 12.0), x0, t_eval=t, rtol=1e-10, atol=1e-12, method="LSODA")
    arrived = sol.y[-1]  # T_act: cells that have started secreting (none leave it here)
    assert np.all(np.abs(sol.y.sum(axis=0) - 1.0) < 1e-8)  # no cell is lost or made in transit
    density = np.gradient(arrived, t)
    mean = np.trapezoid(t * density, t)
    sd = np.sqrt(np.trapezoid((t - mean) ** 2 * density, t))
    assert mean == pytest.approx(1.0 / 1.25, rel=1e-3)
    assert sd / mean == pytest.approx(1.0 / np.sqrt(stages), rel=5e-3)


def test_model_states_follow_the_stages():
    one = build_tce_model("x", {}, mw_g_per_mol=150_000.0)
    six = build_tce_model("x", {}, mw_g_per_mol=150_000.0, secretion_stages=6)
    assert t_states(1) == ("T_rest", "T_new", "T_act", "T_des")
    assert t_states(3) == ("T_rest", "T_new", "T_new2", "T_new3", "T_act", "T_des")
    names1, names6 = one.state_names, six.state_names
    assert "T_new2" not in names1 and {"T_new2", "T_new6"} <= set(names6) and "T_new7" not in names6
    assert len(names6) == len(names1) + 5


@pytest.mark.parametrize("bad", [0, 21, 2.0, True])
def test_bad_stage_count_is_refused(bad):
    with pytest.raises(InputError, match="secretion_stages"):
        TCells(stages=bad)


def _rates(tc: TCells, dex: float | None):
    p = {q.name: q.value for q in tc.params}
    y = {n: jnp.asarray(0.0) for n in tc.t_states + ("marg",)}
    y.update(T_rest=jnp.asarray(500.0), T_act=jnp.asarray(20.0), T_des=jnp.asarray(30.0))
    d = {"t_signal": 0.05, "t_total": 550.0, "t_engaged": 50.0, "t_unengaged_above": 0.0, "activation_flux": 0.0}
    if dex is not None:
        d["dex_inhibition"] = dex
    return p, tc.rates(0.0, y, p, d)


@pytest.mark.parametrize("dex", [0.0, 0.3, 0.9])
def test_dexamethasone_holds_the_secreting_phase_only_with_the_option(dex):
    """With ``dex_holds_secretion`` cells leave the secreting phase at KDEACT (1 - I_dex); without it at KDEACT,
    whatever the dexamethasone (the shipped structure)."""
    p, plain = _rates(TCells(), dex)
    _, held = _rates(TCells(dex_hold=True), dex)
    ta = 20.0
    prolif_etc = float(plain["T_act"]) + (p["KDEACT"] + p["KAICD"]) * ta  # inflow and expansion, the same in both
    assert float(held["T_act"]) == pytest.approx(prolif_etc - (p["KDEACT"] * (1.0 - dex) + p["KAICD"]) * ta,
                                                 rel=1e-12)
    out_plain = float(plain["T_des"]) - float(held["T_des"])
    assert out_plain == pytest.approx(p["KDEACT"] * dex * ta, rel=1e-12, abs=1e-12)
    # no dexamethasone in the model: the option changes nothing
    _, none_plain = _rates(TCells(), None)
    _, none_held = _rates(TCells(dex_hold=True), None)
    assert {k: float(v) for k, v in none_plain.items()} == {k: float(v) for k, v in none_held.items()}


def test_held_secretion_delays_the_il6_of_a_premedicated_dose():
    """In the whole model, premedication delays the secreting phase instead of cutting it: IL-6 after a
    premedicated SC dose peaks later with the option, and the T cells' summed secretion is not smaller."""
    import qsp
    from qsp.regimen import Dose, Regimen

    reg = Regimen((Dose(0.0, 16.0, "mg", "premed_dex"), Dose(0.0, 0.3, "mg/kg", "SC")), "day")
    ts = np.linspace(0.0, 6.0, 6 * 48 + 1)
    peaks, areas = {}, {}
    for hold in (False, True):
        m = build_tce_model("x", {}, mw_g_per_mol=148_000.0, secretion_stages=3, dex_holds_secretion=hold)
        out = qsp.simulate(m, reg, ts, {"DEX_IMAX": 0.9}, covariates=qsp.Covariates(weight_kg=74.0))
        x = np.asarray(out["t_cytokine_drive"])
        peaks[hold], areas[hold] = ts[int(np.argmax(x))], np.trapezoid(x, ts)
    assert peaks[True] > peaks[False] + 0.25  # days
    assert areas[True] >= areas[False]


@pytest.mark.parametrize("bad", [1, "true", None])
def test_bad_dex_hold_is_refused(bad):
    with pytest.raises(InputError, match="dex_holds_secretion"):
        TCells(dex_hold=bad)
