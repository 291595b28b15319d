"""Virtual populations (qsp.population): seeded sampling, IIV correlations, covariates, input checks."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from qsp.cards import load_card
from qsp.errors import InputError
from qsp.population import PopulationSpec, population_spec, sample_population

N_BIG = 20000


@pytest.fixture(scope="module")
def card():
    return load_card("teclistamab")


@pytest.fixture(scope="module")
def model(card):
    return card.model()


@pytest.fixture(scope="module")
def ref(card):
    return card.covariates()


def _sample(model, ref, n, seed, spec=None):
    return sample_population(model, n, seed, spec, weight_kg=ref.weight_kg, height_cm=ref.height_cm)


def _same(a, b):
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    pd.testing.assert_frame_equal(a.covariates, b.covariates)


def test_same_seed_same_population_different_seed_differs(card, model, ref):
    spec = population_spec(card, prior_tcr_prob=0.3, premed_fraction=0.5)
    a, b = _sample(model, ref, 50, 7, spec), _sample(model, ref, 50, 7, spec)
    _same(a, b)
    c = _sample(model, ref, 50, 8, spec)
    for k in ("CL", "V1", "KA", "T0", "TUMOR0"):
        assert not np.array_equal(a.params[k], c.params[k]), k
    for col in ("weight_kg", "eta_crs", "prior_tcr", "premed"):
        assert not np.array_equal(a.covariates[col], c.covariates[col]), col
    assert a.seed == 7 and a.n == 50 and list(a.covariates["id"]) == list(range(50))


def test_iiv_parameters_are_lognormal_with_the_spec_correlation(model, ref):
    typ = model.default_params()
    for rho in (0.4, -0.6):
        spec = PopulationSpec(correlations={("CL", "V1"): rho}, allometry=False)
        pop = _sample(model, ref, N_BIG, 3, spec)
        e_cl = np.log(pop.params["CL"] / typ["CL"])
        e_v1 = np.log(pop.params["V1"] / typ["V1"])
        assert np.corrcoef(e_cl, e_v1)[0, 1] == pytest.approx(rho, abs=0.03)
        assert np.std(e_cl) == pytest.approx(spec.omega["CL"], rel=0.05)
        assert np.std(e_v1) == pytest.approx(spec.omega["V1"], rel=0.05)
        assert abs(np.mean(e_cl)) < 0.02
        # parameters without a specified correlation are independent
        e_ka = np.log(pop.params["KA"] / typ["KA"])
        assert abs(np.corrcoef(e_cl, e_ka)[0, 1]) < 0.03
        # CLSS shares CL's random effect
        np.testing.assert_allclose(np.log(pop.params["CLSS"] / typ["CLSS"]), e_cl, atol=1e-12)


def test_allometry_on_clearance_and_volume(card, model, ref):
    pop = _sample(model, ref, N_BIG, 4, population_spec(card))
    typ = model.default_params()
    lw = np.log(pop.covariates["weight_kg"].to_numpy() / ref.weight_kg)
    e_cl = np.log(pop.params["CL"] / typ["CL"]) - 0.75 * lw
    e_v1 = np.log(pop.params["V1"] / typ["V1"]) - 1.0 * lw
    assert np.corrcoef(e_cl, e_v1)[0, 1] == pytest.approx(0.4, abs=0.03)
    # Q and V2 have no IIV: weight alone
    np.testing.assert_allclose(pop.params["V2"], typ["V2"] * np.exp(lw), rtol=1e-12)
    np.testing.assert_allclose(pop.params["Q"], typ["Q"] * np.exp(0.75 * lw), rtol=1e-12)
    np.testing.assert_array_equal(pop.covariates["T0"], pop.params["T0"])
    assert np.all(pop.covariates["bsa_m2"] > 0)


def test_weight_within_bounds_and_centred(card, model, ref):
    pop = _sample(model, ref, N_BIG, 5, population_spec(card))
    w = pop.covariates["weight_kg"].to_numpy()
    assert w.min() >= 40.0 and w.max() <= 160.0
    assert np.median(w) == pytest.approx(ref.weight_kg, rel=0.03)
    tight = _sample(model, ref, 2000, 5, population_spec(card, weight_cv=0.5, weight_min_kg=60.0, weight_max_kg=90.0))
    w = tight.covariates["weight_kg"].to_numpy()
    assert w.min() == 60.0 and w.max() == 90.0  # clipped at both bounds


def test_covariate_fractions(card, model, ref):
    spec = population_spec(card, prior_tcr_prob=0.3, premed_fraction=0.25, crs_omega=0.7)
    pop = _sample(model, ref, N_BIG, 6, spec)
    cov = pop.covariates
    assert set(np.unique(cov["prior_tcr"])) == {0.0, 1.0}
    assert cov["prior_tcr"].mean() == pytest.approx(0.3, abs=0.015)
    assert cov["premed"].mean() == pytest.approx(0.25, abs=0.015)
    assert cov["eta_crs"].std() == pytest.approx(0.7, rel=0.05)
    assert cov["ada_pos"].mean() == pytest.approx(model.default_params()["ADA_PROB"], abs=0.005)
    none = _sample(model, ref, 500, 6, population_spec(card))  # defaults: no prior TCR, all premedicated
    assert none.covariates["prior_tcr"].sum() == 0 and none.covariates["premed"].min() == 1.0


def test_ada_fraction_follows_model_ada_prob(card, model, ref):
    m = model.with_defaults({"ADA_PROB": 0.6})
    pop = _sample(m, ref, N_BIG, 9, population_spec(card))
    assert pop.covariates["ada_pos"].mean() == pytest.approx(0.6, abs=0.015)
    np.testing.assert_array_equal(pop.params["ADA_POS"], pop.covariates["ada_pos"].to_numpy())


def test_subset_keeps_rows_aligned(card, model, ref):
    pop = _sample(model, ref, 20, 2, population_spec(card, prior_tcr_prob=0.5))
    sub = pop.subset([3, 7, 11])
    assert sub.n == 3
    np.testing.assert_array_equal(sub.params["CL"], pop.params["CL"][[3, 7, 11]])
    np.testing.assert_array_equal(sub.covariates["weight_kg"], pop.covariates["weight_kg"].to_numpy()[[3, 7, 11]])


@pytest.mark.parametrize("kw, field", [
    ({"n": 0}, "patients"),
    ({"n": 2.5}, "patients"),
    ({"seed": -1}, "seed"),
    ({"spec": PopulationSpec(omega={"NOT_A_PARAM": 0.3})}, "omega.NOT_A_PARAM"),
    ({"spec": PopulationSpec(omega={"CL": -0.1})}, "omega.CL"),
    ({"spec": PopulationSpec(correlations={("CL", "V1"): 1.5})}, "correlations"),
    ({"spec": PopulationSpec(correlations={("CL", "F"): 0.2})}, "correlations"),  # F has no IIV
    ({"spec": PopulationSpec(correlations={("CL", "V1"): 0.9, ("CL", "KA"): 0.9, ("V1", "KA"): -0.9})},
     "correlations"),  # each pair valid, the matrix not positive definite
    ({"spec": PopulationSpec(prior_tcr_prob=1.2)}, "prior_tcr_prob"),
    ({"spec": PopulationSpec(weight_min_kg=100.0, weight_max_kg=50.0)}, "weight_min_kg"),
])
def test_bad_inputs_raise_input_error_naming_the_field(model, ref, kw, field):
    args = {"n": 10, "seed": 0, "spec": None, **kw}
    with pytest.raises(InputError) as e:
        _sample(model, ref, args["n"], args["seed"], args["spec"])
    assert e.value.field == field
    assert field in str(e.value)


def test_card_population_table(card, model):
    c = replace(card, population={"omega": {"CL": {"value": 0.5, "source": "test"}}, "prior_tcr_prob": 0.2,
                                  "correlations": [["CL", "V1", 0.1]]})
    spec = population_spec(c)
    assert spec.omega["CL"] == 0.5 and spec.omega["V1"] == 0.2 and spec.prior_tcr_prob == 0.2
    assert spec.correlations == {("CL", "V1"): 0.1} and spec.sources["CL"] == "test"
    assert population_spec(c, prior_tcr_prob=0.9).prior_tcr_prob == 0.9  # keyword overrides win
    with pytest.raises(InputError) as e:
        population_spec(replace(card, population={"weight_sd": 3.0}))
    assert e.value.field == "population.weight_sd"
