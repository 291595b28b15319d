"""Subgroups of a virtual population: the quartiles are the cohort's quartiles, the flags are set, bad names refused."""
from __future__ import annotations

import numpy as np
import pytest

from qsp.cards import load_card
from qsp.errors import InputError
from qsp.subgroups import SUBGROUPS, describe, subgroup_setup
from qsp.trial import card_trial_setup


@pytest.fixture(scope="module")
def card():
    return load_card("teclistamab")


@pytest.mark.parametrize("name,col,top", [("high_tumour_burden", "TUMOR0", True), ("low_t_cells", "T0", False)])
def test_quartile_subgroups_are_the_cohort_quartile(card, name, col, top):
    n = 25
    sub = subgroup_setup(card, name, patients=n, seed=3).population.covariates[col].to_numpy()
    full = card_trial_setup(card, patients=4 * n, seed=3).population.covariates[col].to_numpy()
    assert sub.shape == (n,)
    cut = np.sort(full)[-n] if top else np.sort(full)[n - 1]
    assert (np.all(sub >= cut) if top else np.all(sub <= cut))
    # the subgroup differs from the population: its median lies beyond the population's quartile
    q = np.percentile(full, 75 if top else 25)
    assert (np.median(sub) > q) if top else (np.median(sub) < q)
    again = subgroup_setup(card, name, patients=n, seed=3).population.covariates[col].to_numpy()
    np.testing.assert_array_equal(sub, again)


def test_prior_tcr_subgroup_flags_every_patient(card):
    pop = subgroup_setup(card, "prior_tcr", patients=20, seed=1).population
    assert pop.n == 20 and np.all(pop.covariates.prior_tcr.to_numpy() == 1.0)


def test_unknown_subgroup_is_refused_naming_the_allowed_ones(card):
    with pytest.raises(InputError, match="allowed: " + ", ".join(SUBGROUPS)):
        subgroup_setup(card, "elderly", patients=10, seed=0)
    with pytest.raises(InputError, match="patients"):
        subgroup_setup(card, "low_t_cells", patients=0, seed=0)
    assert "quartile" in describe("low_t_cells")
