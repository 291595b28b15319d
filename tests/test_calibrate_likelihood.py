"""The calibration likelihood: finite, differentiable (gradients match finite differences), predictions per
target, failed virtual patients penalised (finite, never NaN)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qsp.calibrate.likelihood import (FAILURE_PENALTY, build_problem, log_likelihood, neg_log_posterior_flat,
                                      predict)
from qsp.calibrate.space import ParameterSpace
from qsp.cards import load_card
from qsp.errors import InputError


@pytest.fixture(scope="module")
def problem():
    models = {"teclistamab": load_card("teclistamab").model()}
    space = ParameterSpace(models, class_params=("KIL6", "CRS_BETA"), drug_params=("TUMOR0",))
    return build_problem(space, patients=8, seed=3)


def test_targets_and_predictions(problem):
    sim = problem.studies[0]
    assert sim.study_id == "MajesTEC-1" and len(sim.crs_rows) == 7
    assert {g["quantity"] for g in sim.tc_groups} == {"il6_pg_per_ml", "conc_ug_per_ml"}
    df = predict(problem.space.init(), problem)
    assert len(df) == 7 + 24 + 23
    assert np.isfinite(df.predicted).all() and (df.n_failed == 0).all()
    crs = df[df.kind == "crs_incidence"]
    assert crs.predicted.between(0, 100).all()


def test_gradient_matches_finite_differences(problem):
    f, x0, _ = neg_log_posterior_flat(problem)
    fj = jax.jit(f)
    g = np.asarray(jax.jit(jax.grad(f))(x0))
    assert np.all(np.isfinite(g))
    for i in range(x0.size):
        h = 1e-4
        e = jnp.zeros_like(x0).at[i].set(h)
        fd = (float(fj(x0 + e)) - float(fj(x0 - e))) / (2 * h)
        assert g[i] == pytest.approx(fd, rel=2e-3, abs=1e-3), (i, g[i], fd)


def test_failed_patients_give_a_finite_penalised_log_density():
    models = {"teclistamab": load_card("teclistamab").model()}
    space = ParameterSpace(models, class_params=("KIL6",))
    prob = build_problem(space, patients=4, seed=1, max_steps=3)  # every solve fails
    th = space.init()
    ll = float(log_likelihood(th, prob))
    assert np.isfinite(ll) and ll < -FAILURE_PENALTY * 4
    df = predict(th, prob)
    assert (df.n_failed == 4).all()
    f, x0, _ = neg_log_posterior_flat(prob)
    assert np.all(np.isfinite(np.asarray(jax.grad(f)(x0))))


def test_bad_problem_is_refused():
    models = {"teclistamab": load_card("teclistamab").model()}
    space = ParameterSpace(models, class_params=("KIL6",))
    with pytest.raises(InputError, match="studies"):
        build_problem(space, patients=4, studies=["NOPE"])
    with pytest.raises(InputError, match="patients"):
        build_problem(space, patients=1)
