"""MAP machinery on problems with known answers: a Gaussian posterior (exact mode and covariance), a
multimodal surface (the best start wins), profiles, identifiability."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from qsp.calibrate.map import identifiability, laplace_covariance, map_fit, profile

A = np.array([[2.0, 0.6], [0.6, 1.0]])
MU = np.array([1.5, -0.7])


def gauss(x):
    d = x - jnp.asarray(MU)
    return 0.5 * d @ jnp.asarray(A) @ d


def test_map_finds_the_mode_and_laplace_the_covariance():
    res = map_fit(gauss, [np.zeros(2), np.array([5.0, 5.0])])
    np.testing.assert_allclose(res.x, MU, atol=1e-5)
    np.testing.assert_allclose(res.cov, np.linalg.inv(A), rtol=1e-6)  # central differences are exact here
    assert res.hessian_min_eig > 0 and len(res.starts) == 2 and all(r["ok"] for r in res.starts)


def test_best_start_wins_on_a_double_well():
    f = lambda x: 10 * (x[0] ** 2 - 1.0) ** 2 + 0.3 * x[0] + 0.5 * x[1] ** 2  # noqa: E731  wells near -1 (deeper), +1
    res = map_fit(f, [np.array([0.99, 0.1]), np.array([-0.99, 0.1])], laplace=False)
    assert res.x[0] < 0 and res.value == min(r["value"] for r in res.starts)
    assert {round(float(r["x"][0])) for r in res.starts} == {-1, 1}  # each start kept its own well


def test_steep_objective_first_step_stays_within_one_scale_unit():
    """A steep posterior (gradient ~2e4 at the start) whose model breaks more than 3 scale units away (NaN, as
    stiff ODE solves do): unscaled, L-BFGS's first steepest-descent step jumps ~2e4 into the NaN region; in
    prior-SD units with the objective scaled it stays within one unit and converges."""
    import jax

    sd = np.array([0.5, 2.0])
    seen = []

    def steep(x):
        u = x / jnp.asarray(sd)
        jax.debug.callback(lambda m: seen.append(float(m)), jnp.max(jnp.abs(u)))
        val = 1e4 * jnp.sum((u - 1.0) ** 2)
        return jnp.where(jnp.max(jnp.abs(u)) > 3.0, jnp.nan, val)

    res = map_fit(steep, [np.zeros(2)], laplace=False, scale=sd)
    np.testing.assert_allclose(res.x, sd, atol=1e-5)
    assert res.starts[0]["ok"] and res.value < 1e-6
    assert seen and max(seen) <= 3.0  # no evaluation in the broken region


def test_profile_of_a_gaussian_is_quadratic():
    grid = MU[0] + np.array([-1.0, 0.0, 1.0])
    prof = profile(gauss, MU, 0, grid)
    schur = A[0, 0] - A[0, 1] ** 2 / A[1, 1]
    np.testing.assert_allclose(prof, 0.5 * schur * (grid - MU[0]) ** 2, atol=1e-6)


def test_identifiability_ratio():
    rows = identifiability(np.array([1.0, 1.0]), np.array([0.1, 0.95]), ["a", "b"])
    assert rows[0]["identified"] and not rows[1]["identified"]


def test_laplace_floors_a_flat_direction():
    f = lambda x: 0.5 * x[0] ** 2  # noqa: E731  x[1] unidentified
    _, cov, mineig = laplace_covariance(f, np.zeros(2))
    assert mineig == pytest.approx(0.0, abs=1e-12) and cov[1, 1] > 1e6


def test_forward_and_central_hessians_agree_on_a_quadratic_with_cubic_term():
    a = np.array([[2.0, 0.5], [0.5, 1.0]])
    f = lambda x: 0.5 * x @ jnp.asarray(a) @ x + 0.1 * x[0] ** 3  # noqa: E731
    x = np.array([0.3, -0.2])
    exact = a + np.array([[0.6 * x[0], 0.0], [0.0, 0.0]])
    hc, _, _ = laplace_covariance(f, x, scheme="central")
    hf, cov, _ = laplace_covariance(f, x, scheme="forward")
    np.testing.assert_allclose(hc, exact, atol=1e-8)
    np.testing.assert_allclose(hf, exact, atol=1e-3)  # O(step) error
    np.testing.assert_allclose(cov, np.linalg.inv(hf), rtol=1e-10)
    with pytest.raises(ValueError, match="central, forward"):
        laplace_covariance(f, x, scheme="backward")
