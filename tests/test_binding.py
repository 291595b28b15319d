"""QE binding: exact solve, conservation, bell shape, agreement with full mass-action kinetics."""
import numpy as np
import jax.numpy as jnp
import pytest
from scipy.optimize import brentq

import qsp
from qsp.components.binding import solve_free_drug, species_given_free, total_drug
from qsp.cards import load_card
from qsp.regimen import Dose, Regimen

ARGS = dict(r3_tot=0.08, rt_tot=0.05, s_tot=10.7, kd3=28.0, kdt=0.18, kds=0.18, chi=3.0, kp=0.2)


@pytest.mark.parametrize("pool", [(0.0, 1.0), (13.6, 1.44), (40.0, 0.01)])
@pytest.mark.parametrize("d_tot", [1e-4, 1e-2, 0.3, 3.0, 11.0, 50.0, 1e3, 1e5])
def test_qe_solve_matches_bracketing_root(d_tot, pool):
    a = ARGS
    args = (a["r3_tot"], a["rt_tot"], a["s_tot"], a["kd3"], a["kdt"], a["kds"], a["chi"], a["kp"], *pool)
    free = float(solve_free_drug(jnp.asarray(d_tot), *args))
    ref = brentq(lambda x: float(total_drug(x, *args)) - d_tot, 0.0, d_tot, xtol=1e-16, rtol=1e-14)
    assert free == pytest.approx(ref, rel=1e-9)


def test_receptor_totals_are_conserved():
    a = ARGS
    for d in np.logspace(-4, 4, 30):
        s = species_given_free(d, a["r3_tot"], a["rt_tot"], a["s_tot"], a["kd3"], a["kdt"], a["kds"], a["chi"], a["kp"])
        assert float(s["R3"] + s["DR3"] + s["TRI"]) == pytest.approx(a["r3_tot"], rel=1e-12)
        assert float(s["RT"] + s["DRT"] + s["TRI"]) == pytest.approx(a["rt_tot"], rel=1e-12)
        assert float(s["R3"]) >= 0 and float(s["RT"]) >= 0


def test_trimer_is_bell_shaped_in_drug():
    a = ARGS
    d = np.logspace(-5, 5, 201)
    tri = np.array([float(species_given_free(x, a["r3_tot"], a["rt_tot"], 0.0, a["kd3"], a["kdt"], a["kds"],
                                             a["chi"], 1.0)["TRI"]) for x in d])
    k = int(np.argmax(tri))
    assert 0 < k < len(d) - 1
    assert tri[0] < 0.01 * tri[k] and tri[-1] < 0.01 * tri[k]
    assert np.all(np.diff(tri[: k + 1]) > 0) and np.all(np.diff(tri[k:]) < 0)


def test_qe_agrees_with_full_kinetics_when_binding_is_fast():
    card = load_card("teclistamab")
    qe, full = card.model(binding="qe"), card.model(binding="full")
    reg = Regimen((Dose(0, 0.06, "mg/kg", "SC"), Dose(3, 0.3, "mg/kg", "SC")), "day")
    ts = np.linspace(0, 7, 7 * 24 + 1)
    fast = {"KON_CD3": 2000.0, "KON_TAA": 2000.0, "KON_STAA": 2000.0}
    cov = card.covariates()
    rq = qsp.simulate(qe, reg, ts, covariates=cov, rtol=1e-8, atol=1e-11)
    # Full binding starts with no complexes; the QE model starts equilibrated (no drug: identical).
    rf = qsp.simulate(full, reg, ts, fast, covariates=cov, solver="kvaerno5", rtol=1e-8, atol=1e-11, max_steps=20000)
    assert int(rq.status) == 0 and int(rf.status) == 0
    for name in ("conc_nM", "trimer_nM", "il6_pg_per_ml"):
        a, b = rq[name][1:], rf[name][1:]
        rel = np.abs(a - b) / np.maximum(np.abs(a), 1e-12)
        assert rel.max() < 0.01, (name, rel.max())


def test_tissue_pool_alone_is_the_popk_qss_free_concentration():
    """No cells, no soluble target: the free drug is Gibiansky's QSS solution (Li et al. 2025 Fig. S1)."""
    base, kss = 13.6, 1.44
    for ctot in np.logspace(-5, 3, 17):
        a = ctot - base - kss
        ref = 2 * kss * ctot / (np.sqrt(a * a + 4 * kss * ctot) - a)
        free = float(solve_free_drug(jnp.asarray(ctot), 0.0, 0.0, 0.0, 28.0, 1.0, 1.0, 3.0, 0.2, base, kss))
        assert free == pytest.approx(ref, rel=1e-9)
        sp = species_given_free(free, 0.0, 0.0, 0.0, 28.0, 1.0, 1.0, 3.0, 0.2, base, kss)
        assert float(sp["D"] + sp["DP"]) == pytest.approx(ctot, rel=1e-9)
    # at low concentration ~90% of the drug sits in the pool
    low = float(solve_free_drug(jnp.asarray(1e-4), 0.0, 0.0, 0.0, 28.0, 1.0, 1.0, 3.0, 0.2, base, kss))
    assert low / 1e-4 == pytest.approx(kss / (kss + base), rel=1e-3)


def test_qe_agrees_with_full_kinetics_with_a_tissue_pool():
    card = load_card("epcoritamab")
    assert card.values()["TMDD_BASE"] > 0
    qe, full = card.model(binding="qe"), card.model(binding="full")
    reg = Regimen((Dose(0, 0.16, "mg", "SC"), Dose(7, 0.8, "mg", "SC")), "day")
    ts = np.linspace(0, 10, 10 * 12 + 1)
    fast = {"KON_CD3": 2000.0, "KON_TAA": 2000.0, "KON_STAA": 2000.0, "KON_POOL": 2000.0}
    cov = card.covariates()
    rq = qsp.simulate(qe, reg, ts, covariates=cov, rtol=1e-8, atol=1e-11)
    rf = qsp.simulate(full, reg, ts, fast, covariates=cov, solver="kvaerno5", rtol=1e-8, atol=1e-11, max_steps=20000)
    assert int(rq.status) == 0 and int(rf.status) == 0
    for name in ("conc_nM", "free_drug_nM", "trimer_nM"):
        a, b = rq[name][1:], rf[name][1:]
        rel = np.abs(a - b) / np.maximum(np.abs(a), 1e-12)
        assert rel.max() < 0.01, (name, rel.max())


def test_adaptive_newton_converges_on_random_hard_states_under_vmap():
    """The engine's stopping rule (step in log D <= NEWTON_TOL) against the bisection root, on random states far
    outside the cards (the wide ranges of benchmarks/binding_solve.py), batched: every lane converges."""
    import jax

    from qsp.components.binding import N_NEWTON, NEWTON_MAX

    assert N_NEWTON == 0  # the engine iterates to convergence
    rng = np.random.default_rng(7)
    n = 2000
    lg = lambda lo, hi: 10.0 ** rng.uniform(lo, hi, n)  # noqa: E731
    a = [lg(-8, 4), lg(-4, 1), lg(-5, 1), lg(-3, 2) * (rng.random(n) > 0.3), lg(-1, 3), lg(-2, 2), lg(-2, 2),
         lg(-1, 2), lg(-1.5, 0), lg(-3, 2) * (rng.random(n) > 0.3), lg(-1, 1.5)]
    got = np.asarray(jax.jit(jax.vmap(solve_free_drug))(*map(jnp.asarray, a)))
    ref = np.array([brentq(lambda lx: total_drug(np.exp(lx), *[v[i] for v in a[1:]]) - a[0][i],
                           np.log(a[0][i]) - 80.0, np.log(a[0][i]), xtol=1e-15, rtol=1e-15) for i in range(200)])
    assert np.max(np.abs(got[:200] / np.exp(ref) - 1.0)) < 1e-9
    # every lane satisfies the balance to round-off, also those beyond the 200 checked by brentq
    tot = np.asarray(jax.vmap(total_drug)(jnp.asarray(got), *map(jnp.asarray, a[1:])))
    assert np.max(np.abs(tot / a[0] - 1.0)) < 1e-9
    # a fixed count is still available (and 2 iterations are not enough for these states)
    two = np.asarray(jax.vmap(lambda *x: solve_free_drug(*x, n_iter=2))(*map(jnp.asarray, a)))
    assert np.max(np.abs(two / got - 1.0)) > 1e-6
    assert NEWTON_MAX >= 8


def test_adaptive_newton_keeps_implicit_derivatives():
    """jax.grad of the converged solve equals the implicit-function derivative checked by central differences."""
    import jax

    args = (3.0, 0.06, 0.007, 10.7, 28.0, 0.18, 0.18, 2.0, 0.2, 0.0, 1.0)
    g = jax.grad(lambda dt, s: solve_free_drug(dt, 0.06, 0.007, s, 28.0, 0.18, 0.18, 2.0, 0.2), argnums=(0, 1))
    gd, gs = g(args[0], args[3])
    h = 1e-5
    fd_d = (solve_free_drug(args[0] + h, *args[1:]) - solve_free_drug(args[0] - h, *args[1:])) / (2 * h)
    a_p, a_m = list(args), list(args)
    a_p[3] += h
    a_m[3] -= h
    fd_s = (solve_free_drug(*a_p) - solve_free_drug(*a_m)) / (2 * h)
    assert float(gd) == pytest.approx(float(fd_d), rel=1e-6)
    assert float(gs) == pytest.approx(float(fd_s), rel=1e-6)


def test_second_derivatives_and_broadcast_arguments():
    """Second-order derivatives go through the implicit rule (never through the Newton while_loop), and arguments
    that broadcast beyond the starting guess (an array of receptor totals with a scalar drug) are solved."""
    import jax

    f = lambda dt: solve_free_drug(dt, 0.06, 0.007, 1.0, 28.0, 0.18, 0.18, 2.0, 0.2)  # noqa: E731
    d2_rev = float(jax.grad(jax.grad(f))(1.0))
    d2_mix = float(jax.jacfwd(jax.grad(f))(1.0))
    h = 1e-4
    d2_fd = float((jax.grad(f)(1.0 + h) - jax.grad(f)(1.0 - h)) / (2 * h))
    assert d2_rev == pytest.approx(d2_mix, rel=1e-10)
    assert d2_rev == pytest.approx(d2_fd, rel=1e-6)
    arr = np.asarray(solve_free_drug(1.0, jnp.array([0.06, 0.1]), 0.007, 1.0, 28.0, 0.18, 0.18, 2.0, 0.2))
    one = [float(solve_free_drug(1.0, r3, 0.007, 1.0, 28.0, 0.18, 0.18, 2.0, 0.2)) for r3 in (0.06, 0.1)]
    np.testing.assert_allclose(arr, one, rtol=1e-12)
