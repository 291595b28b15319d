"""The search: its parametrisation inverts, its Pareto filter is exact, its compiled objective equals the virtual
trial's numbers, and L-BFGS finds the dose a dense grid finds (slow)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qsp.optimize.report import pareto_mask
from qsp.optimize.search import fractions_to_u, ladder, masked_fractions


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
