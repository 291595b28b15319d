"""Priors on named transforms, one parameter namespace per model (CRS included), card overrides."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsp
from qsp.cards import load_card
from qsp.card_schema import validate_card_text
from qsp.components.crs_link import CRS_PARAMS
from qsp.errors import InputError
from qsp.priors import (ASSUMED_SCALE, SOURCED_SCALE, Prior, default_prior, from_unconstrained, log_density,
                        to_unconstrained)
from qsp.tce import build_tce_model

from conftest import ROOT


@pytest.mark.parametrize("transform, x", [("log", 3.7), ("logit", 0.69), ("identity", -2.5)])
def test_transforms_round_trip(transform, x):
    z = to_unconstrained(x, transform)
    assert float(from_unconstrained(z, transform)) == pytest.approx(x, rel=1e-12)


def test_default_prior_follows_source_and_domain():
    assert default_prior("assumed: a guess").scale == ASSUMED_SCALE
    assert default_prior("Miao et al. Target Oncol 2023").scale == SOURCED_SCALE
    assert default_prior("label", positive=True, upper=1.0).transform == "logit"
    assert default_prior("x", real=True).transform == "identity"
    with pytest.raises(ValueError):
        Prior(scale=-1.0)


def test_log_density_is_normal_on_the_transformed_scale():
    pr = Prior(scale=0.5, transform="log")
    z = math.log(2.0) + 0.5  # one SD above the median 2
    expected = -0.5 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
    assert float(log_density(z, pr, 2.0)) == pytest.approx(expected)
    g = jax.grad(lambda zz: log_density(zz, pr, 2.0))(jnp.asarray(z))
    assert float(g) == pytest.approx(-1.0 / 0.5)


@pytest.mark.parametrize("drug", ["teclistamab", "blinatumomab"])
def test_every_parameter_has_a_prior_with_finite_density_at_its_value(drug):
    m = load_card(drug).model()
    for name, p in m.param_info.items():
        pr = p.get_prior()
        if name == "ADA_POS":  # a per-patient indicator drawn by the population, not a fitted parameter
            continue
        if pr.transform == "logit" and p.value in (0.0, 1.0):
            continue
        z = to_unconstrained(p.value, pr.transform)
        assert np.isfinite(float(log_density(z, pr, p.value))), name


def test_crs_parameters_are_in_the_model_namespace():
    m = load_card("teclistamab").model()
    info = m.param_info
    for p in CRS_PARAMS:
        assert info[p.name].value == p.value and info[p.name].get_prior() == p.prior
    # wide priors: fitted to one drug, not measured
    assert info["CRS_BETA"].get_prior().scale >= 1.0
    # and they reach the solver's parameter dict like any other parameter
    res = qsp.simulate(m, load_card("teclistamab").regimen(until_day=7), np.linspace(0, 7, 8),
                       {"CRS_BETA": 3.0}, covariates=load_card("teclistamab").covariates())
    assert int(res.status) == 0
    with pytest.raises(InputError, match="CRS_OMEGA"):
        m.params({"CRS_OMEGA": -1.0})


def test_one_set_of_defaults():
    """build_tce_model with no values gives the component defaults (there is no second set of fallbacks)."""
    from qsp.components.binding import BindingQE
    from qsp.components.tcells import T_STATES, TCells
    from qsp.components.targets import TARGET_STATES, TargetCells

    m = build_tce_model("bare", {}, mw_g_per_mol=150_000.0)
    info = m.param_info
    comps = [BindingQE(t_states=T_STATES, target_states=TARGET_STATES), TCells(), TargetCells()]
    for c in comps:
        for p in c.params:
            assert info[p.name].value == p.value, p.name


def test_card_prior_override_and_its_validation():
    text = (ROOT / "models" / "teclistamab.toml").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("KD_CD3 ="))
    with_prior = text.replace(line, line[:-2] + ", prior = { scale = 0.3 } }")
    raw = validate_card_text(with_prior, "t.toml", "teclistamab")
    assert raw["params"]["KD_CD3"]["prior"] == {"scale": 0.3}
    bad = text.replace(line, line[:-2] + ', prior = { scale = 0.3, transform = "logit" } }')
    with pytest.raises(InputError, match="logit"):
        validate_card_text(bad, "t.toml", "teclistamab")


def test_card_prior_reaches_the_model(tmp_path, monkeypatch):
    text = (ROOT / "models" / "teclistamab.toml").read_text().replace('name = "teclistamab"', 'name = "pri"')
    line = next(ln for ln in text.splitlines() if ln.startswith("KD_CD3 ="))
    (tmp_path / "pri.toml").write_text(text.replace(line, line[:-2] + ", prior = { scale = 0.3 } }"))
    monkeypatch.setenv("QSP_MODELS_DIR", str(tmp_path))
    pr = load_card("pri").model().priors()["KD_CD3"]
    assert pr == Prior(scale=0.3, transform="log")
