"""The NumPy/SciPy peer of the benchmark (benchmarks/numpy_tce.py) has the same equations as the JAX model."""
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import qsp  # noqa: E402
from qsp.cards import load_card  # noqa: E402
from qsp.drugrun import with_premedication  # noqa: E402
from qsp.events import regimen_to_events  # noqa: E402
from qsp.tce import build_tce_model, structure_options_of  # noqa: E402
from numpy_tce import NumpyTCE, solve_patient  # noqa: E402

TS = np.arange(36.0)
TOL = dict(rtol=1e-8, atol=1e-12)


def _setup(name):
    card = load_card(name)
    model = card.model()
    cov = card.covariates()
    reg = with_premedication(card.regimen(until_day=35), "label")
    return card, model, cov, reg


@pytest.fixture(scope="module")
def tec():
    card, model, cov, reg = _setup("teclistamab")
    res = qsp.simulate(model, reg, TS, covariates=cov, **TOL)
    assert int(res.status) == 0
    return card, model, cov, reg, res


def _jax_rhs_and_outputs(model, ts, ys, p, rate):
    pj = {k: jnp.asarray(v, dtype=float) for k, v in p.items()}
    rj = jnp.asarray(rate, dtype=float)
    vf = jax.jit(jax.vmap(lambda t, y: model.vector_field(t, y, (pj, rj))))
    out = jax.jit(jax.vmap(lambda t, y: model.outputs(t, y, pj)))
    o = out(jnp.asarray(ts), jnp.asarray(ys))
    return np.asarray(vf(jnp.asarray(ts), jnp.asarray(ys))), np.asarray(o["il6_pg_per_ml"]), np.asarray(o["conc_nM"])


def _check_rhs(model, ts, ys, p, rate=None):
    nt = NumpyTCE(model)
    assert nt.state_names == model.state_names
    np.testing.assert_allclose(nt.initial_state(p), np.asarray(model.initial_state(p)), rtol=1e-15)
    rate = np.zeros(len(model.state_names)) if rate is None else rate
    ref, il6_ref, conc_ref = _jax_rhs_and_outputs(model, ts, ys, p, rate)
    got = np.stack([nt.rhs(t, y, p, rate) for t, y in zip(ts, ys)])
    scale = np.abs(ref).max(axis=0)  # round-off floor for rates that cross zero
    assert np.all(np.abs(got - ref) <= 1e-9 * np.abs(ref) + 1e-13 * scale + 1e-300), np.abs(got - ref).max(axis=0)
    np.testing.assert_allclose(nt.il6(0.0, ys.T, p), il6_ref, rtol=1e-12)
    np.testing.assert_allclose(np.array([nt.il6(t, y, p) for t, y in zip(ts, ys)]), il6_ref, rtol=1e-12)
    np.testing.assert_allclose(nt.central_conc(ys.T, p), conc_ref, rtol=1e-12)


def test_rhs_matches_jax_teclistamab(tec):
    card, model, cov, reg, res = tec
    ys = np.stack([res.states[n] for n in model.state_names], -1)[::2]  # 18 states on the label trajectory
    ts = TS[::2]
    p = model.params({})
    _check_rhs(model, ts, ys, p)


def test_rhs_matches_jax_with_ada_and_inputs(tec):
    card, model, cov, reg, res = tec
    ys = np.stack([res.states[n] for n in model.state_names], -1)[1::2].copy()
    ys[:, model.state_names.index("ADA")] = np.linspace(0.05, 0.9, ys.shape[0])
    ts = TS[1::2] + 10.0  # spans the ADA onset
    p = model.params({"ADA_POS": 1.0})
    rate = np.zeros(len(model.state_names))
    rate[model.state_names.index("central")] = 3.5
    _check_rhs(model, ts, ys, p, rate)


@pytest.mark.parametrize("name", ["epcoritamab", "blinatumomab"])  # 2-cmt, constant CL; 1-cmt with infusions
def test_rhs_matches_jax_other_cards(name):
    card, model, cov, reg = _setup(name)
    nt = NumpyTCE(model)
    p = model.params({})
    ev = regimen_to_events(model, reg, cov)
    ts = np.linspace(0.0, 35.0, 20)
    sol = solve_patient(nt, p, ev, ts)  # states on the drug's label trajectory
    assert sol.status == 0
    assert nt.two_cmt == (name == "epcoritamab")
    _check_rhs(model, ts, sol.ys, p)


@pytest.mark.parametrize("over", [{}, {"ALAG": 0.1, "F": 0.5}])
def test_solve_matches_simulate_teclistamab(tec, over):
    card, model, cov, reg, res = tec
    if over:
        res = qsp.simulate(model, reg, TS, over, covariates=cov, **TOL)
    p = model.params(over)
    nt = NumpyTCE(model)
    ev = regimen_to_events(model, reg, cov)
    sol = solve_patient(nt, p, ev, TS, **TOL)
    assert sol.status == 0
    assert sol.ys.shape == (TS.shape[0], len(model.state_names))
    il6 = nt.il6(TS, sol.ys.T, p)
    conc = nt.central_conc(sol.ys.T, p)
    np.testing.assert_allclose(il6, res["il6_pg_per_ml"], rtol=1e-4)
    cref = res["conc_nM"]
    assert np.all(np.abs(conc - cref) <= 1e-4 * np.abs(cref) + 1e-9 * cref.max())
    # Dense output: equals the outputs at ts, right-continuous at a dose time.
    np.testing.assert_allclose(sol.dense(TS), sol.ys, rtol=1e-12, atol=1e-300)
    i_dep = model.state_names.index("depot")
    t_dose = 6.0 + over.get("ALAG", 0.0)
    pre, post = sol.dense(np.array([t_dose - 1e-9, t_dose]))[:, i_dep]
    amt = ev.jump_amount[np.flatnonzero(ev.jump_time == 6.0)[0]] * p["F"]
    assert post - pre == pytest.approx(amt, rel=1e-6)


# Card structure options the ports support: secretion stages (T_new ... T_new6 of rate 6 KSEC) and tonic secretion
# (drive from T_act + F_TONIC T_des); F_TONIC and IL6_T_GAIN away from their defaults so that both terms show.
VARIANTS = {"stages6": {"secretion_stages": 6}, "tonic": {"tonic_secretion": True},
            "stages6_tonic": {"secretion_stages": 6, "tonic_secretion": True}}


def variant_card(name, structure):
    """The card ``name`` with its [structure] options replaced (the model it builds has them)."""
    card = load_card(name)
    return dataclasses.replace(card, structure={**card.structure, **structure})


def variant_overrides(model):
    return {"IL6_T_GAIN": 0.7, **({"F_TONIC": 0.2} if "F_TONIC" in model.param_info else {})}


@pytest.fixture(scope="module", params=list(VARIANTS))
def tec_variant(request):
    structure = VARIANTS[request.param]
    card = variant_card("teclistamab", structure)
    model = card.model()
    assert {k: structure_options_of(model)[k] for k in structure} == structure
    cov = card.covariates()
    reg = with_premedication(card.regimen(until_day=35), "label")
    over = variant_overrides(model)
    res = qsp.simulate(model, reg, TS, over, covariates=cov, **TOL)
    assert int(res.status) == 0
    return structure, model, cov, reg, over, res


def test_rhs_matches_jax_structure_options(tec_variant):
    """Secretion stages and tonic secretion: the port's vector field, IL-6 and serum drug equal the JAX model's on
    the label trajectory and on states scattered around it (every stage different from its neighbours)."""
    structure, model, cov, reg, over, res = tec_variant
    nt = NumpyTCE(model)
    stages = structure.get("secretion_stages", 1)
    assert nt.stages == stages and nt.tonic == structure.get("tonic_secretion", False)
    assert len(nt._tn_idx) == stages and ("T_new6" in model.state_names) == (stages == 6)
    p = model.params(over)
    ys = np.stack([res.states[n] for n in model.state_names], -1)
    assert np.all(ys[:, nt._tn_idx].max(axis=0) > 1.0)  # the transit chain is populated
    _check_rhs(model, TS, ys, p)
    rng = np.random.default_rng(1)
    scattered = ys[1::3] * np.exp(rng.normal(0.0, 0.5, ys[1::3].shape))
    rate = np.zeros(len(model.state_names))
    rate[model.state_names.index("central")] = 2.0
    _check_rhs(model, TS[1::3], scattered, p, rate)
    if nt.tonic:  # the tonic term is not negligible here (the check above would not see it otherwise)
        il6_off = nt.il6(0.0, ys.T, {**p, "F_TONIC": 0.0})
        assert np.max(np.abs(nt.il6(0.0, ys.T, p) / il6_off - 1.0)) > 1e-3


def test_solve_matches_simulate_structure_options(tec_variant):
    """Solved with SciPy, the port follows the JAX model's IL-6 and serum drug with the structure options too."""
    structure, model, cov, reg, over, res = tec_variant
    p = model.params(over)
    nt = NumpyTCE(model)
    ev = regimen_to_events(model, reg, cov)
    sol = solve_patient(nt, p, ev, TS, **TOL)
    assert sol.status == 0
    np.testing.assert_allclose(nt.il6(TS, sol.ys.T, p), res["il6_pg_per_ml"], rtol=1e-4)
    conc, cref = nt.central_conc(sol.ys.T, p), res["conc_nM"]
    assert np.all(np.abs(conc - cref) <= 1e-4 * np.abs(cref) + 1e-9 * cref.max())
    for n in model.state_names:  # every state, the transit stages included
        ref = np.asarray(res.states[n])
        got = sol.ys[:, model.state_names.index(n)]
        assert np.all(np.abs(got - ref) <= 1e-4 * np.abs(ref) + 1e-7 * np.abs(ref).max() + 1e-12), n


def test_rhs_matches_jax_max_stages_random_states():
    """The most secretion stages a card may ask for (20), with tonic secretion, at random states; epcoritamab (SC,
    2-cmt, constant CL) for its tissue target pool, whose bound drug depends on the T cells' CD3 (serum drug)."""
    from qsp.components.tcells import MAX_SECRETION_STAGES

    model = variant_card("epcoritamab", {"secretion_stages": MAX_SECRETION_STAGES, "tonic_secretion": True}).model()
    nt = NumpyTCE(model)
    assert nt.stages == MAX_SECRETION_STAGES and len(nt._tn_idx) == MAX_SECRETION_STAGES
    p = model.params(variant_overrides(model))
    assert p["TMDD_BASE"] > 0.0
    rng = np.random.default_rng(2)
    y0 = nt.initial_state(p)
    ys = np.abs(y0 + rng.uniform(0.0, 1.0, (12, y0.shape[0])) * np.maximum(y0, 50.0))
    ys[:, model.state_names.index("central")] *= 20.0
    _check_rhs(model, np.linspace(0.0, 30.0, 12), ys, p)


@pytest.mark.parametrize("option", ["monocyte_priming", "dex_holds_secretion"])
def test_unsupported_structure_options_are_refused(option):
    """Options the ports do not transcribe raise NotImplementedError naming the option (also with the others)."""
    model = build_tce_model("x", {}, mw_g_per_mol=148_000.0, secretion_stages=3, tonic_secretion=True, **{option: True})
    with pytest.raises(NotImplementedError, match=f"{option} = true is not supported"):
        NumpyTCE(model)
