"""Virtual populations (qsp.population): seeded, stable sampling, IIV correlations, covariates, input checks."""
import zlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from qsp.cards import load_card
from qsp.errors import InputError
from qsp.population import (PopulationSpec, patient_draws, population_spec, sample_population, stream_id,
                            threefry2x32)

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
    # a CL-V1 correlation given explicitly (teclistamab's popPK reports none): the random effects carry it
    pop = _sample(model, ref, N_BIG, 4, population_spec(card, correlations={("CL", "V1"): 0.4}))
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
    ({"seed": 2**64}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"seed": True}, "seed"),
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


def _identical(a, b):
    """Every parameter array and covariate column of ``a`` equals ``b``'s, byte for byte."""
    assert a.params.keys() == b.params.keys()
    assert list(a.covariates.columns) == list(b.covariates.columns)
    for k in a.params:
        assert a.params[k].dtype == b.params[k].dtype == np.float64, k
        assert np.array_equal(a.params[k], b.params[k]) and a.params[k].tobytes() == b.params[k].tobytes(), k
    for c in a.covariates.columns:
        x, y = a.covariates[c].to_numpy(), b.covariates[c].to_numpy()
        assert x.dtype == y.dtype and np.array_equal(x, y) and x.tobytes() == y.tobytes(), c


@pytest.mark.parametrize("extra", [{}, {"prior_tcr_prob": 0.3, "premed_fraction": 0.5}])
def test_growing_the_cohort_keeps_the_existing_patients(card, model, ref, extra):
    spec = population_spec(card, **extra)
    small, big = _sample(model, ref, 500, 42, spec), _sample(model, ref, 3000, 42, spec)
    _identical(small, big.subset(np.arange(500)))
    assert big.n == 3000 and list(big.covariates["id"]) == list(range(3000))
    # the later patients are new ones, not repeats
    assert not np.isin(big.params["CL"][500:], small.params["CL"]).any()
    if extra:
        assert 0 < small.covariates["prior_tcr"].sum() < 500 and 0 < small.covariates["premed"].sum() < 500


def test_a_different_seed_changes_patient_zero(card, model, ref):
    spec = population_spec(card, prior_tcr_prob=0.5, premed_fraction=0.5)
    a = _sample(model, ref, 5, 0, spec)
    for seed in (1, 2**32, 2**64 - 1):
        b = _sample(model, ref, 5, seed, spec)
        for k in ("CL", "V1", "KA", "T0", "TUMOR0"):
            assert a.params[k][0] != b.params[k][0], (seed, k)
        for col in ("weight_kg", "eta_crs"):
            assert a.covariates[col][0] != b.covariates[col][0], (seed, col)
    np.testing.assert_array_equal(_sample(model, ref, 1, np.int64(3), spec).params["CL"],
                                  _sample(model, ref, 1, 3, spec).params["CL"])  # numpy integer seeds accepted


def test_named_streams_adding_iiv_keeps_the_other_draws(card, model, ref):
    base = population_spec(card)
    more = replace(base, omega={**base.omega, "Q": 0.25})  # IIV on one more parameter (appended)
    fewer = replace(base, omega={k: v for k, v in base.omega.items() if k != "KA"})
    a, b, c = (_sample(model, ref, 300, 5, s) for s in (base, more, fewer))
    for k in ("KA", "T0", "TUMOR0", "STAA0", "KIL6"):  # uncorrelated: bit-identical
        np.testing.assert_array_equal(a.params[k], b.params[k])
    for k in ("T0", "TUMOR0", "STAA0", "KIL6"):
        np.testing.assert_array_equal(a.params[k], c.params[k])
    for k in ("CL", "V1"):  # correlated: same z, same leading Cholesky block (up to rounding of the factorisation)
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-12)
        np.testing.assert_allclose(a.params[k], c.params[k], rtol=1e-12)
    assert not np.allclose(a.params["Q"], b.params["Q"])  # Q now varies beyond weight
    assert "KA" not in c.params  # no IIV (and no allometry) on KA: every patient has the typical value
    for col in a.covariates.columns:  # weight, Bernoulli and CRS draws do not depend on the IIV names
        np.testing.assert_array_equal(a.covariates[col], b.covariates[col])


def test_patient_draws_are_standard_normal_and_uniform_and_independent():
    from scipy import stats
    names = ["eta:CL", "eta:V1", "weight", "ada", "premed"]
    d = patient_draws(11, N_BIG, names, ["normal", "normal", "normal", "uniform", "uniform"])
    assert d.shape == (5, N_BIG) and d.dtype == np.float64
    for row in d[:3]:
        assert stats.kstest(row, "norm").pvalue > 1e-3
    for row in d[3:]:
        assert row.min() >= 0.0 and row.max() < 1.0
        assert stats.kstest(row, "uniform").pvalue > 1e-3
    c = np.corrcoef(d)
    assert np.abs(c[np.triu_indices(5, 1)]).max() < 0.03  # ~4 SE at N=20000
    # a stream's values depend on its name, not its position; the ids are CRC-32, not Python's salted hash
    np.testing.assert_array_equal(patient_draws(11, 100, ["ada", "eta:CL"], ["uniform", "normal"])[::-1],
                                  d[[0, 3], :100])
    assert stream_id("weight") == zlib.crc32(b"weight")


def test_threefry_is_jax_random_fold_in():
    import jax
    import jax.numpy as jnp
    data = np.array([0, 1, 7, 499, 2**31, 2**32 - 1, stream_id("weight"), stream_id("eta:CL")], dtype=np.uint32)
    for seed in (0, 1, 42, 2**32 + 5, 2**63 - 1):
        key = jax.random.PRNGKey(seed)
        want = np.asarray(jax.random.key_data(jax.vmap(lambda d: jax.random.fold_in(key, d))(jnp.asarray(data))))
        kd = np.asarray(jax.random.key_data(key))
        got = np.stack(threefry2x32(kd[0], kd[1], np.zeros_like(data), data), axis=-1)
        np.testing.assert_array_equal(got, want)
        assert list(kd) == [seed >> 32, seed & 0xFFFFFFFF]  # the key of a seed, as documented
    # a uniform draw of patient 3 in stream "ada", by the documented recipe through jax.random
    k = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(9), 3), zlib.crc32(b"ada"))
    hi, lo = (int(w) for w in np.asarray(jax.random.key_data(k)))
    assert patient_draws(9, 4, ["ada"], ["uniform"])[0, 3] == (((hi << 32) | lo) >> 11) * 2.0**-53


@pytest.mark.parametrize("drug", ["blinatumomab", "tebentafusp", "catumaxomab"])
def test_one_compartment_cards_map_v1_iiv_to_v(drug):
    c = load_card(drug)
    m, r = c.model(), c.covariates()
    info = m.param_info
    assert "V" in info and "V1" not in info
    spec = population_spec(c)
    assert "V1" in spec.omega  # the defaults name V1 ...
    pop = sample_population(m, 50, 1, spec, weight_kg=r.weight_kg, height_cm=r.height_cm)
    assert "V1" not in pop.params and "V1" not in pop.spec.omega  # ... and apply to V
    assert pop.spec.omega["V"] == spec.omega["V1"] and pop.spec.correlations == {("CL", "V"): 0.4}
    v = pop.params["V"]
    assert np.all(v > 0) and np.unique(v).size == 50
    spec.check(m)  # the public check maps too
    # the variation of V is the IIV (not only weight): log V - allometry has SD ~ omega, and CL-V correlate
    big = sample_population(m, N_BIG, 2, replace(spec, allometry=False), weight_kg=r.weight_kg)
    e_v = np.log(big.params["V"] / m.default_params()["V"])
    e_cl = np.log(big.params["CL"] / m.default_params()["CL"])
    assert np.std(e_v) == pytest.approx(spec.omega["V1"], rel=0.05)
    assert np.corrcoef(e_cl, e_v)[0, 1] == pytest.approx(0.4, abs=0.03)


def test_v1_alias_rules(model):
    blin = load_card("blinatumomab").model()
    spec = PopulationSpec(omega={"CL": 0.3, "V1": 0.2}, correlations={("V1", "CL"): 0.3}, sources={"V1": "s"})
    mapped = spec.for_model(blin)
    assert mapped.omega == {"CL": 0.3, "V": 0.2} and list(mapped.omega) == ["CL", "V"]
    assert mapped.correlations == {("V", "CL"): 0.3} and mapped.sources == {"V": "s"}
    # the spec's own omega on V wins; V1 entries are dropped
    both = PopulationSpec(omega={"CL": 0.3, "V1": 0.2, "V": 0.5}, correlations={("CL", "V1"): 0.3})
    assert both.for_model(blin).omega == {"CL": 0.3, "V": 0.5} and both.for_model(blin).correlations == {}
    # a model with V1 (2-cmt) is left alone
    assert spec.for_model(model) == spec
    with pytest.raises(InputError) as e:
        PopulationSpec(omega={"V2": 0.2}).check(blin)  # other names are not aliased
    assert e.value.field == "omega.V2"


def test_with_omegas_rescales_the_same_patients_random_effects():
    from qsp.population import fittable_omega, with_omegas

    card = load_card("teclistamab")
    m = card.model()
    spec = population_spec(card, correlations={("CL", "V1"): 0.4})
    a = sample_population(m, 50, 7, spec)
    b = sample_population(m, 50, 7, with_omegas(spec, {"OMEGA_KIL6": 2 * spec.omega["KIL6"]}))
    typ = m.default_params()["KIL6"]
    np.testing.assert_allclose(np.log(b.params["KIL6"] / typ), 2 * np.log(a.params["KIL6"] / typ), rtol=1e-12)
    np.testing.assert_array_equal(a.params["CL"], b.params["CL"])  # nothing else moves
    assert fittable_omega("KIL6", spec) is None
    assert fittable_omega("CL", spec) is None  # correlated and allometric: its random effect still rescales
    assert "shares the random effect of CL" in fittable_omega("CLSS", spec)
    assert "no IIV" in fittable_omega("Q", spec)
    c = sample_population(m, 50, 7, with_omegas(spec, {"OMEGA_V1": 0.5 * spec.omega["V1"]}))
    np.testing.assert_allclose(c.etas["V1"], 0.5 * a.etas["V1"], rtol=1e-12)  # only V1's random effect scales,
    np.testing.assert_array_equal(c.etas["CL"], a.etas["CL"])  # its correlated partner keeps its own
    np.testing.assert_allclose(np.log(c.params["V1"] / a.params["V1"]), -0.5 * a.etas["V1"], rtol=1e-10)
    assert a.subset([1, 3]).etas["CL"].tolist() == a.etas["CL"][[1, 3]].tolist()
    with pytest.raises(InputError, match="allowed: OMEGA_CL"):
        with_omegas(spec, {"OMEGA_FOO": 0.3})
    with pytest.raises(InputError, match="OMEGA_KIL6 must be >= 0"):
        with_omegas(spec, {"OMEGA_KIL6": -0.1})


def test_stratified_draws_are_exact_quantiles_in_the_patients_order():
    """Latin-hypercube populations (the calibration likelihood's option): every normal dimension holds exactly
    the quantiles Phi^-1((r - 1/2) / n), each patient at the rank of its plain draw; the default is unchanged."""
    from scipy.special import ndtri

    model = load_card("teclistamab").model()
    plain = sample_population(model, 40, 3)
    strat = sample_population(model, 40, 3, stratified=True)
    q = ndtri((np.arange(1, 41) - 0.5) / 40)
    for name in ("eta_crs",):
        z0, z1 = plain.covariates[name].to_numpy(), strat.covariates[name].to_numpy()
        sd = np.std(z1 - z1.mean()) / np.std(q)
        np.testing.assert_allclose(np.sort(z1) / sd, q, rtol=1e-12)
        assert (np.argsort(z0) == np.argsort(z1)).all()
    t0_plain, t0_strat = np.log(plain.params["T0"]), np.log(strat.params["T0"])
    assert (np.argsort(t0_plain) == np.argsort(t0_strat)).all()
    spacing = np.diff(np.sort(t0_strat))
    assert spacing.min() > 0 and abs(np.mean(t0_strat) - np.log(model.default_params()["T0"])) < 1e-12
    np.testing.assert_array_equal(sample_population(model, 40, 3).params["T0"], plain.params["T0"])
