"""The fitted parameter space: class/drug levels, deviations, priors, flattening."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from qsp.calibrate.space import ParameterSpace
from qsp.cards import load_card
from qsp.errors import InputError


@pytest.fixture(scope="module")
def space():
    models = {d: load_card(d).model() for d in ("teclistamab", "elranatamab")}
    return ParameterSpace(models, class_params=("KIL6", "CRS_BETA", "KREC"), drug_params=("TUMOR0", "KD_TAA"),
                          deviations={"KIL6": 0.5})


def test_init_is_at_the_prior_centres(space):
    th = space.init()
    v = space.values(th, "teclistamab")
    assert float(v["KD_TAA"]) == pytest.approx(load_card("teclistamab").values()["KD_TAA"])
    assert float(space.values(th, "elranatamab")["KD_TAA"]) == pytest.approx(load_card("elranatamab").values()["KD_TAA"])
    # class parameters at the component default, the same for every drug
    assert float(v["KIL6"]) == pytest.approx(float(space.values(th, "elranatamab")["KIL6"]))


def test_deviation_moves_one_drug_only(space):
    th = space.init()
    th["dev"]["teclistamab"]["KIL6"] = th["dev"]["teclistamab"]["KIL6"] + np.log(2.0)
    a, b = space.values(th, "teclistamab"), space.values(th, "elranatamab")
    assert float(a["KIL6"]) == pytest.approx(2.0 * float(b["KIL6"]))
    rep = space.deviation_report(th)
    assert rep["KIL6"]["deviations"]["teclistamab"] == pytest.approx(np.log(2.0))


def test_log_prior_is_highest_at_the_centre_and_differentiable(space):
    th = space.init()
    flat, unravel = space.flatten(th)
    lp0 = float(space.log_prior(th))
    g = jax.grad(lambda f: space.log_prior(unravel(f)))(flat)
    assert np.allclose(np.asarray(g), 0.0, atol=1e-9)
    for k in range(3):
        assert float(space.log_prior(space.sample_prior(jax.random.PRNGKey(k)))) < lp0
    assert len(space.names()) == flat.size == 3 + 2 * 2 + 2


def test_bad_space_is_refused():
    models = {"teclistamab": load_card("teclistamab").model()}
    with pytest.raises(InputError, match="NOPE"):
        ParameterSpace(models, class_params=("NOPE",))
    with pytest.raises(InputError, match="both"):
        ParameterSpace(models, class_params=("KIL6",), drug_params=("KIL6",))
    with pytest.raises(InputError, match="deviations"):
        ParameterSpace(models, class_params=("KIL6",), deviations={"KREC": 0.5})


def test_iiv_sd_is_a_class_parameter_with_the_population_prior():
    from qsp.population import DEFAULT_OMEGA, OMEGA_PRIOR

    sp = ParameterSpace({"teclistamab": load_card("teclistamab").model()}, class_params=("OMEGA_KIL6", "KIL6"))
    pr, v = sp.class_prior("OMEGA_KIL6")
    assert pr == OMEGA_PRIOR and v == DEFAULT_OMEGA["KIL6"][0]
    assert float(sp.values(sp.init(), "teclistamab")["OMEGA_KIL6"]) == pytest.approx(DEFAULT_OMEGA["KIL6"][0])
    with pytest.raises(InputError, match="only be a class parameter"):
        ParameterSpace({"teclistamab": load_card("teclistamab").model()}, class_params=("KIL6",),
                       drug_params=("OMEGA_KIL6",))
    with pytest.raises(InputError, match="OMEGA_KIL6"):  # unknown names list the IIV SDs too
        ParameterSpace({"teclistamab": load_card("teclistamab").model()}, class_params=("OMEGA_XYZ",))
