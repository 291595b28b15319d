"""qsp.reductions.peak: the value of jnp.max, a gradient that reaches the peak's element (one-hot at the first
maximum), under jit too. The case that needs it (jnp.max's jitted gradient of a solved IL-6 curve is all zeros)
is tests/test_mechanism_behaviours.py::test_solver_steps_stay_moderate_and_il6_is_differentiable."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from qsp.reductions import peak


def test_values_equal_jnp_max_along_any_axis_nan_included():
    x = np.random.default_rng(0).normal(size=(3, 5, 4))
    for axis in (0, 1, 2, -1):
        np.testing.assert_array_equal(np.asarray(peak(x, axis=axis)), np.asarray(jnp.max(x, axis=axis)))
    y = x.copy()
    y[1, 2, 0] = np.nan
    assert np.isnan(np.asarray(peak(y, axis=1))[1, 0]) and np.isnan(np.asarray(jnp.max(y, axis=1))[1, 0])
    assert np.isfinite(np.asarray(peak(y, axis=1))[0]).all()


def test_gradient_is_one_at_the_first_maximum_eager_and_jitted():
    x = jnp.asarray([[0.3, 2.0, -1.0, 2.0], [5.0, 1.0, 4.0, 0.0]])  # row 0: a tie at elements 1 and 3
    z = np.sin(np.asarray(x)) * 3.0 + np.asarray(x)
    assert z[0, 1] == z[0, 3] and np.argmax(z[1]) == 1
    want = np.asarray([[0, 1, 0, 0], [0, 1, 0, 0]], float) * (np.cos(np.asarray(x)) * 3.0 + 1.0)
    f = lambda v: jnp.sum(peak(jnp.sin(v) * 3.0 + v, axis=1))  # noqa: E731
    for g in (jax.grad(f)(x), jax.jit(jax.grad(f))(x)):
        np.testing.assert_allclose(np.asarray(g), want, rtol=1e-12)
