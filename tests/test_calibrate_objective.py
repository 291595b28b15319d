"""The study-by-study objective equals the whole-sum one (value and gradient), and its JAX wrapper gives
optimistix and jax.grad the same numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qsp.calibrate.likelihood import build_problem, neg_log_posterior_flat
from qsp.calibrate.objective import SplitObjective
from qsp.calibrate.space import ParameterSpace
from qsp.cards import load_card


@pytest.fixture(scope="module")
def problem():
    models = {"elranatamab": load_card("elranatamab").model()}
    space = ParameterSpace(models, class_params=("CRS_THETA1", "KIL6"), drug_params=("TUMOR0",))
    # two of its three studies: enough to split, and each compiled program costs ~35 s
    prob = build_problem(space, patients=4, seed=3, summaries=False,
                         studies=["MagnetisMM-3-Hibma2026", "MagnetisMM-3-cohortA"])
    assert len(prob.studies) >= 2  # the split has something to split
    return prob


@pytest.fixture(scope="module")
def split(problem):
    obj = SplitObjective(problem)
    assert obj.compile() > 0.0
    return obj


def test_split_objective_equals_the_whole_sum(problem, split):
    f, x0, _ = neg_log_posterior_flat(problem)
    x = np.asarray(x0) + np.array([0.3, -0.2, 0.1])
    v_all, g_all = jax.jit(jax.value_and_grad(f))(jnp.asarray(x))
    seen = []
    obj = split
    obj.on_eval = lambda n, val, secs: seen.append((n, val, secs))
    v, g = obj.value_and_grad(x)
    assert seen == [(obj.evaluations, v, obj.eval_seconds)]  # the progress callback sees every evaluation
    assert v == pytest.approx(float(v_all), rel=1e-10, abs=1e-8)
    np.testing.assert_allclose(g, np.asarray(g_all), rtol=1e-8, atol=1e-8)
    terms = obj.study_terms(x)
    assert set(terms) == {"prior", *obj.study_ids}
    assert sum(terms.values()) == pytest.approx(v, rel=1e-12)
    # the JAX wrapper (pure_callback + custom VJP): same value, same reverse-mode gradient, also under jit
    fj = jax.jit(obj.jax_function())
    assert float(fj(jnp.asarray(x))) == pytest.approx(v, rel=1e-12)
    np.testing.assert_allclose(np.asarray(jax.grad(fj)(jnp.asarray(x))), g, rtol=1e-12)
    # its programs also give the predictions (aux): the same rows as predict() compiles for itself
    from qsp.calibrate.likelihood import predict

    _, _, unravel = neg_log_posterior_flat(problem)
    own = predict(unravel(jnp.asarray(x)), problem)
    via = predict(unravel(jnp.asarray(x)), problem, known=obj.predictions(x))
    assert set(obj.predictions(x)) == set(obj.study_ids)
    np.testing.assert_allclose(via.predicted.to_numpy(), own.predicted.to_numpy(), rtol=1e-10, atol=1e-12)


def test_threaded_evaluation_gives_the_same_numbers(problem, split):
    from concurrent.futures import ThreadPoolExecutor

    _, x0, _ = neg_log_posterior_flat(problem)
    x = np.asarray(x0) + 0.1
    obj = split
    obj._pool = None
    v1, g1 = obj.value_and_grad(x)
    obj._pool = ThreadPoolExecutor(2)  # the same compiled programs, run two at a time
    v2, g2 = obj.value_and_grad(x)
    obj._pool = None
    assert v1 == v2 and np.array_equal(g1, g2)  # summed in study order whatever the threads


def test_fixed_mechanism_objective_equals_the_full_one_for_crs_layer_moves(problem, split):
    """Solves stored at one point, the CRS layer moved: the same value and CRS-parameter gradient as solving
    again (FixedMechanismObjective, what a CRS-layer sampler uses), and the same predictions."""
    from qsp.calibrate.likelihood import mechanism_fixed
    from qsp.calibrate.objective import FixedMechanismObjective

    names = problem.space.names()
    i = names.index("class:CRS_THETA1")
    assert mechanism_fixed([names[i]]) and not mechanism_fixed(names)
    _, x0, _ = neg_log_posterior_flat(problem)
    x_fixed = np.asarray(x0) + np.array([0.3, -0.2, 0.1])
    fixed = FixedMechanismObjective(problem, x_fixed)
    x = x_fixed.copy()
    x[i] += 0.7  # another CRS intercept, same mechanism
    v, g = split.value_and_grad(x)
    vf, gf = fixed.value_and_grad(x)
    assert vf == pytest.approx(v, rel=1e-10)
    assert gf[i] == pytest.approx(g[i], rel=1e-8)
    fj = jax.jit(fixed.jax_function())
    assert float(fj(jnp.asarray(x))) == pytest.approx(v, rel=1e-10)
    a, b = split.predictions(x), fixed.predictions(x)
    for sid in split.study_ids:
        for u, w in zip(jax.tree_util.tree_leaves(a[sid]), jax.tree_util.tree_leaves(b[sid])):
            np.testing.assert_allclose(np.asarray(w), np.asarray(u), rtol=1e-10, atol=1e-12)
