"""The search: its parametrisation inverts, its Pareto filter is exact, its compiled objective equals the virtual
trial's numbers, and L-BFGS finds the dose a dense grid finds (slow)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qsp.optimize.report import pareto_mask
from qsp.optimize.search import Evaluator, fractions_to_u, ladder, masked_fractions


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_fractions_to_u_inverts_masked_fractions(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        fr = np.sort(10 ** rng.uniform(-3 + 1e-6, -1e-6, n))
        if np.any(np.diff(fr) <= 0):
            continue
        got = np.asarray(masked_fractions(fractions_to_u(fr, 1e-3), n, 1e-3))[:n]
        np.testing.assert_allclose(got, fr, rtol=1e-10)
    assert np.all(np.diff(ladder(n, 1e-3)) > 0)


def test_pareto_mask_is_the_brute_force_front():
    rng = np.random.default_rng(0)
    t = pd.DataFrame(rng.integers(0, 5, size=(60, 3)).astype(float),
                     columns=["crs_g2_stepup_pct", "days_to_treatment_dose", "inpatient_days"])
    m = pareto_mask(t)
    x = t.to_numpy()
    for i in range(len(x)):
        dominated = any((x[j] <= x[i]).all() and (x[j] < x[i]).any() for j in range(len(x)))
        assert m[i] == (not dominated)


@pytest.mark.slow
def test_objective_matches_the_trial_and_lbfgs_finds_the_grid_optimum():
    from qsp.cards import load_card
    from qsp.optimize.objectives import trial_metrics
    from qsp.optimize.search import Evaluator, SearchSettings
    from qsp.optimize.space import Candidate, RegimenSpace, Structure
    from qsp.trial import card_trial_setup, run_trial

    card = load_card("teclistamab")
    sp = RegimenSpace.from_label("teclistamab", card.regimen(until_day=60), max_steps=1, interval_days=(3.0,))
    setup = card_trial_setup(card, patients=12, seed=5)
    ev = Evaluator(sp, setup, SearchSettings(objective="crs_g2", reach_by_day=6.0), horizon=20.0)
    # the compiled, padded objective is the virtual trial's step-up P(CRS >= 2)
    lab = sp.label_candidate()
    res = run_trial(setup.model, sp.regimen(lab, until_day=20.0), setup.population, setup.ref, days=20.0,
                    crs=setup.crs, params=setup.params or None, out_names=("conc_ug_per_ml",), follow_up_days=0.0)
    assert ev.evaluate(lab)["crs_g2_stepup_pct"] == pytest.approx(
        trial_metrics(res, sp.treatment_dose)["crs_g2_stepup_pct"], rel=1e-6)
    # one step: the optimiser's dose is the dense grid's best (known optimum of this population)
    st = Structure(1, ("SC", "SC"), (False,))
    grid = np.geomspace(1.2e-3, 0.9, 40)
    vals = [ev.evaluate(Candidate(st, (f,), (3.0,)))["objective"] for f in grid]
    best = ev.optimise(st, (3.0,), [fractions_to_u([0.3], sp.floor)])
    assert best["objective"] <= min(vals) + 0.05


@pytest.mark.slow
def test_objective_over_parameter_draws_is_the_mean_of_each_draws_objective():
    """Robust search: with one setup per parameter set (same patients), the objective is the mean of the
    single-set objectives and the reported 90th percentile lies between them."""
    from qsp.cards import load_card
    from qsp.optimize.search import Evaluator, SearchSettings
    from qsp.optimize.space import RegimenSpace
    from qsp.trial import card_trial_setup

    card = load_card("teclistamab")
    sp = RegimenSpace.from_label("teclistamab", card.regimen(until_day=60), max_steps=2)
    st = SearchSettings(objective="crs_g2", reach_by_day=6.0)
    setups = [card_trial_setup(card, patients=8, seed=2, params={"KIL6": k}) for k in (0.5, 2.0)]
    lab = sp.label_candidate()
    one = [Evaluator(sp, s, st, horizon=14.0).evaluate(lab) for s in setups]
    both = Evaluator(sp, setups, st, horizon=14.0).evaluate(lab)
    v = [r["crs_g2_stepup_pct"] for r in one]
    assert abs(v[0] - v[1]) > 1.0  # the two sets differ
    assert both["crs_g2_stepup_pct"] == pytest.approx(np.mean(v), rel=1e-9)
    assert min(v) <= both["crs_g2_stepup_pct_p90"] <= max(v)


class ToyEvaluator(Evaluator):
    """A model with a known optimum, in place of the virtual trial (``search(..., evaluator=)``).

    Dose ``k`` (``k = 1..n+1``, the last the treatment dose) has hazard ``a_k exp(p L_k)``, ``L_k`` the log ratio to
    the previous dose (the first dose's to the floor), ``a_1 = A`` and ``a_k = A (1 + (gap_k - (k + 1))^2 / 4)``
    for the gap before dose ``k`` (later doses want longer gaps). Risk ``100 (1 - exp(-sum_k h_k))``. With
    ``sum_k L_k = -log(floor)`` fixed, Lagrange gives the optimum of each structure in closed form:
    ``L_k = (log lam - log(p a_k)) / p``, ``log lam = (p S + sum_k log(p a_k)) / (n + 1)``,
    ``min sum h = (n + 1) lam / p``.
    """

    A, P = 0.002, 1.5

    def __init__(self, space, settings):
        self.space, self.settings, self.floor = space, settings, space.floor
        self.calls = 0

    def a(self, gaps):
        return np.array([self.A] + [self.A * (1 + (d - (k + 2)) ** 2 / 4) for k, d in enumerate(gaps)])

    def exact(self, gaps):
        a = self.a(gaps)
        s = -np.log(self.floor)
        loglam = (self.P * s + np.sum(np.log(self.P * a))) / len(a)
        fr = np.exp(np.log(self.floor) + np.cumsum((loglam - np.log(self.P * a)) / self.P))[:-1]
        return 100 * (1 - np.exp(-len(a) / self.P * np.exp(loglam))), fr

    def prepare(self, structure, intervals):
        from types import SimpleNamespace

        return SimpleNamespace(structure=structure, intervals=tuple(intervals))

    def value_and_grad(self, u, prep):
        import jax
        import jax.numpy as jnp

        if not hasattr(self, "_vg"):
            def f(u, n, a):
                fr = masked_fractions(u, n, self.floor)
                fr = jnp.where(jnp.arange(fr.shape[0]) < n, fr, 1.0)  # inactive steps: no dose ratio
                lr = jnp.diff(jnp.log(jnp.concatenate([jnp.array([self.floor]), fr, jnp.ones(1)])))
                v = 100 * (1 - jnp.exp(-jnp.sum(a * jnp.exp(self.P * lr))))
                return v, {"crs_g2_stepup_pct": v, "crs_any_stepup_pct": v, "crs_g2_stepup_pct_draws": v[None],
                           "failed": 0}

            self._vg = jax.jit(jax.value_and_grad(f, has_aux=True))
        n = prep.structure.n_steps
        a = np.zeros(5)  # the n + 1 doses' coefficients; the padded log ratios are zero, their coefficients too
        a[: n + 1] = self.a(prep.intervals)
        self.calls += 1
        return self._vg(jnp.asarray(u), n, jnp.asarray(a))


@pytest.mark.parametrize("exhaustive", [0, 10_000])
def test_search_finds_the_known_optimum_of_a_toy_model(exhaustive):
    """Structure, intervals and step doses: the search's best is the brute-force closed-form optimum, both when it
    tries every interval pattern and when it walks them (stage 1 + stage 2), and every result keeps reach-by-day."""
    import itertools

    from qsp.cards import load_card
    from qsp.optimize.search import SearchSettings, search
    from qsp.optimize.space import RegimenSpace

    card = load_card("teclistamab")
    choices, reach = (1.0, 2.0, 3.0, 4.0, 7.0), 10.0
    sp = RegimenSpace.from_label("teclistamab", card.regimen(until_day=60), max_steps=4, interval_days=choices)
    settings = SearchSettings(objective="crs_g2", reach_by_day=reach, starts=2, max_iter=200,
                              exhaustive_patterns=exhaustive)
    toy = ToyEvaluator(sp, settings)
    brute = sorted((toy.exact(p)[0], p) for n in range(5) for p in itertools.product(choices, repeat=n)
                   if sum(p) <= reach)
    (v_best, p_best), (v_next, _) = brute[0], brute[1]
    assert p_best == (1.0, 2.0, 3.0, 4.0) and v_next > v_best + 0.1  # a unique, unequal optimum
    results, label = search(sp, None, settings, evaluator=toy)
    best = results[0]
    assert best["candidate"].intervals == p_best
    # L-BFGS stops when a step gains less than ftol = 1e-4 (relative): the optimum to that precision
    assert best["objective"] == pytest.approx(v_best, rel=1e-4) and best["objective"] >= v_best * (1 - 1e-12)
    np.testing.assert_allclose(best["candidate"].fractions, toy.exact(p_best)[1], rtol=1e-2)
    assert all(sum(r["candidate"].intervals) <= reach + 1e-9 for r in results)
    assert label["objective"] == pytest.approx(toy.exact(sp.label_candidate().intervals)[0], abs=100) and \
        label["objective"] >= v_best  # the label is a candidate too: never below the optimum
    if not exhaustive:  # the walk tried far fewer patterns than the 130 of the brute force
        assert len(results) < len(brute) / 2


def test_neighbours_include_transfers_that_keep_the_total():
    from qsp.optimize.search import neighbours

    nb = neighbours((2.0, 2.0, 2.0, 4.0), (1.0, 2.0, 3.0, 4.0, 7.0))
    assert (1.0, 2.0, 3.0, 4.0) in nb and (2.0, 2.0, 2.0, 4.0) not in nb
    assert len(nb) == len(set(nb))


def test_search_progress_bar_counts_every_structure(capsys):
    """``search(..., bar=True)``: a tqdm bar on stderr that ends at every structure of the space, its postfix the
    patterns optimised and the best objective; no bar without it."""
    from qsp.cards import load_card
    from qsp.optimize.search import SearchSettings, search
    from qsp.optimize.space import RegimenSpace

    card = load_card("teclistamab")
    sp = RegimenSpace.from_label("teclistamab", card.regimen(until_day=60), max_steps=2, interval_days=(1.0, 2.0))
    settings = SearchSettings(objective="crs_g2", reach_by_day=10.0, starts=1, max_iter=50)
    n = len(list(sp.structures()))
    search(sp, None, settings, evaluator=ToyEvaluator(sp, settings))
    assert "structures" not in capsys.readouterr().err
    results, _ = search(sp, None, settings, evaluator=ToyEvaluator(sp, settings), bar=True)
    err = capsys.readouterr().err
    assert "structures: 100%" in err and f"{n}/{n}" in err, err[-500:]
    assert f"{len(results)} optimised, best" in err
