"""CRS observation layer (qsp.crs) on synthetic per-segment IL-6 samples: no ODE solve needed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsp  # noqa: F401  (enables float64)
from qsp.crs import CRS_DEFAULTS, crs_params, crs_per_dose, thresholds
from qsp.errors import InputError

IL6_0 = 3.0
K = 17
DT = 0.25  # segment length (day); bump peaks and lags are multiples of it, so peaks are sampled exactly
C = crs_params()
CRS = jax.jit(crs_per_dose)  # eager dispatch of every op is slow; compile once per shape


def logit(p):
    p = np.asarray(p, float)
    return np.log(p) - np.log1p(-p)


def segments(t_end, dose_times):
    """(n_seg, K) sample times: segments of DT days, cut at every dose time (as the solver cuts at events)."""
    edges = np.unique(np.concatenate([np.arange(0.0, t_end + DT / 2, DT), [t for t in dose_times if t < t_end]]))
    a, b = edges[:-1], edges[1:]
    return a[:, None] + (b - a)[:, None] * np.linspace(0.0, 1.0, K)[None, :]


def il6_curve(seg_t, bumps, level=1.0):
    """IL-6 = IL6_0 * level * exp(sum h g((t - t0 - lag)/tp)), g(u) = u e^(1-u) (peak 1 at u = 1)."""
    logf = np.zeros_like(seg_t)
    for t0, h, tp, lag in bumps:
        u = (seg_t - t0 - lag) / tp
        logf += np.where(u > 0, h * u * np.exp(1.0 - u), 0.0)
    return IL6_0 * level * np.exp(logf)


def doses(times, n_pad=1):
    t = np.array(list(times) + [np.inf] * n_pad, float)
    return t, np.isfinite(t)


def run(seg_t, il6, dose_t, mask, c=C, eta=0.0, prior_tcr=0.0):
    out = CRS(jnp.asarray(seg_t), jnp.asarray(il6), IL6_0, jnp.asarray(dose_t), jnp.asarray(mask),
              {k: float(v) for k, v in c.items()}, float(eta), float(prior_tcr))
    return {k: np.asarray(v) for k, v in out.items()}


def single_dose(h, tp=0.5, lag=0.0, t_end=7.0, **kw):
    dose_t, mask = doses([0.0])
    seg_t = segments(t_end, dose_t)
    return run(seg_t, il6_curve(seg_t, [(0.0, h, tp, lag)]), dose_t, mask, **kw)


def two_doses(gap, h=1.0, c=C, t_end=49.0):
    dose_t, mask = doses([0.0, gap])
    seg_t = segments(t_end, dose_t)  # same shape for every gap (one compile)
    return run(seg_t, il6_curve(seg_t, [(0.0, h, 0.5, 0.0), (gap, h, 0.5, 0.0)]), dose_t, mask, c=c)


def test_probabilities_in_unit_interval_and_ordered_by_grade():
    for h in (0.0, 0.3, 1.0, 3.0):
        for eta in (-2.0, 0.0, 2.0):
            r = single_dose(h, eta=eta)
            p1, p2, p3 = r["p_any"][0], r["p_g2plus"][0], r["p_g3plus"][0]
            assert 0.0 <= p3 <= p2 <= p1 <= 1.0
            assert p1 > p2 > p3  # thresholds strictly ordered (DELTA2, DELTA3 > 0)


def test_probabilities_rise_strictly_with_il6_peak():
    hs = np.array([0.05, 0.2, 0.5, 1.0, 2.0])
    rs = [single_dose(h) for h in hs]
    x = np.array([r["exposure"][0] for r in rs])
    np.testing.assert_allclose(x, hs, rtol=1e-9)  # x = log fold rise to the (exactly sampled) peak
    for key in ("p_any", "p_g2plus"):
        p = np.array([r[key][0] for r in rs])
        assert np.all(np.diff(p) > 0), (key, p)
    p3 = np.array([r["p_g3plus"][0] for r in rs])
    assert np.all(np.diff(p3) >= 0) and p3[-1] > p3[0]
    # proportional odds: logit P(>=1) = THETA1 + BETA x for a first dose (no tolerance yet)
    p1 = np.array([r["p_any"][0] for r in rs])
    np.testing.assert_allclose(logit(p1), C["CRS_THETA1"] + C["CRS_BETA"] * hs, rtol=1e-9)


def test_flat_il6_gives_threshold_probabilities():
    """A plateau (even above baseline) adds no exposure: P = sigmoid(threshold + shift)."""
    dose_t, mask = doses([0.0, 7.0])
    seg_t = segments(14.0, dose_t)
    il6 = il6_curve(seg_t, [], level=1.7)
    eta, tcr = 0.4, 1.0
    r = run(seg_t, il6, dose_t, mask, eta=eta, prior_tcr=tcr)
    np.testing.assert_allclose(r["exposure"][:2], 0.0, atol=1e-12)
    np.testing.assert_allclose(r["tolerance"][:2], 0.0, atol=1e-12)
    shift = C["CRS_PRIOR_TCR"] * tcr + eta
    expect = 1.0 / (1.0 + np.exp(-(np.asarray(thresholds(C)) + shift)))
    for k, key in enumerate(("p_any", "p_g2plus", "p_g3plus")):
        np.testing.assert_allclose(r[key][:2], expect[k], rtol=1e-12)
    np.testing.assert_allclose(r["il6_predose"][:2], 1.7 * IL6_0, rtol=1e-12)
    assert np.all(np.isnan(r["onset_h"][:2]))  # no rise, no onset


def test_prior_tcr_lowers_and_eta_shifts_log_odds():
    base = single_dose(0.5)
    tcr = single_dose(0.5, prior_tcr=1.0)
    for key in ("p_any", "p_g2plus", "p_g3plus"):
        assert tcr[key][0] < base[key][0]
        np.testing.assert_allclose(logit(tcr[key][0]) - logit(base[key][0]), C["CRS_PRIOR_TCR"], rtol=1e-8)
    for eta in (-1.5, 0.7):
        r = single_dose(0.5, eta=eta)
        for key in ("p_any", "p_g2plus"):
            np.testing.assert_allclose(logit(r[key][0]) - logit(base[key][0]), eta, rtol=1e-8)
    assert single_dose(0.5, eta=1.0)["p_any"][0] > base["p_any"][0] > single_dose(0.5, eta=-1.0)["p_any"][0]


def test_tolerance_from_earlier_dose_lowers_later_dose_and_decays_with_gap():
    c = {**C, "CRS_TOL": 1.5}  # the prior's tolerance weight may be 0; the term is tested at a positive one
    tau = c["CRS_TOL_TAU"]
    gaps = [3.0, 7.0, 21.0, 42.0]
    rs = [two_doses(g, c=c) for g in gaps]
    for g, r in zip(gaps, rs):
        # memory = x_1 exp(-gap / tau)
        np.testing.assert_allclose(r["tolerance"][1], r["exposure"][0] * np.exp(-g / tau), rtol=1e-9)
        assert r["tolerance"][0] == 0.0
        assert r["p_any"][1] < r["p_any"][0]
        assert r["p_g2plus"][1] < r["p_g2plus"][0]
    p2 = np.array([r["p_any"][1] for r in rs])
    assert np.all(np.diff(p2) > 0), p2  # the longer the pause, the more risk returns
    # without tolerance the second (equal, well separated) surge carries the first dose's risk
    r0 = two_doses(21.0, c={**c, "CRS_TOL": 0.0})
    np.testing.assert_allclose(r0["p_any"][1], r0["p_any"][0], rtol=1e-3)
    # a longer tolerance memory keeps the second dose's risk lower at the same gap
    r_long = two_doses(21.0, c={**c, "CRS_TOL_TAU": 4 * tau})
    assert r_long["p_any"][1] < rs[2]["p_any"][1]


def test_onset_inside_window_and_later_for_later_rise():
    early = single_dose(1.0, lag=0.0)
    late = single_dose(1.0, lag=1.5)
    for r in (early, late):
        on = r["onset_h"][0]
        assert np.isfinite(on) and 0.0 < on <= 7.0 * 24.0
        assert on <= r["il6_peak_h"][0] + 1e-9  # half the risk is reached by the peak
    assert late["onset_h"][0] > early["onset_h"][0] + 24.0
    np.testing.assert_allclose(late["onset_h"][0] - early["onset_h"][0], 36.0, atol=0.5)
    np.testing.assert_allclose(late["il6_peak_h"][0] - early["il6_peak_h"][0], 36.0, atol=1e-6)
    # a second dose's onset lies in its own window [t_2, end)
    r = two_doses(7.0, t_end=12.0)
    assert 0.0 < r["onset_h"][1] <= 5.0 * 24.0


def test_doses_beyond_horizon_are_nan():
    dose_t, mask = doses([0.0, 3.0, 20.0])  # horizon 10 days: dose 3 never given in the window
    seg_t = segments(10.0, dose_t)
    r = run(seg_t, il6_curve(seg_t, [(0.0, 1.0, 0.5, 0.0), (3.0, 0.8, 0.5, 0.0)]), dose_t, mask)
    for key in ("p_any", "p_g2plus", "p_g3plus", "onset_h", "exposure", "il6_peak", "il6_peak_h", "il6_predose"):
        assert np.all(np.isfinite(r[key][:2])), key
        assert np.all(np.isnan(r[key][2:])), key


def _grad_case():
    dose_t, mask = doses([0.0, 3.0, 20.0])
    seg_t = segments(10.0, dose_t)
    il6 = il6_curve(seg_t, [(0.0, 1.0, 0.5, 0.0), (3.0, 0.8, 0.5, 0.25)])
    return jnp.asarray(seg_t), jnp.asarray(il6), jnp.asarray(dose_t), jnp.asarray(mask)


def test_gradients_of_g2plus_are_finite():
    seg_t, il6, dose_t, mask = _grad_case()
    c0 = {k: jnp.asarray(v) for k, v in CRS_DEFAULTS.items()}

    def f(c, il6):
        r = crs_per_dose(seg_t, il6, IL6_0, dose_t, mask, c, 0.3, 1.0)
        return jnp.nansum(r["p_g2plus"])  # dose 3 (beyond the horizon) is NaN

    f = jax.jit(f)
    assert np.isfinite(float(f(c0, il6)))
    gc, gy = jax.jit(jax.grad(f, argnums=(0, 1)))(c0, il6)
    for k, v in gc.items():
        assert np.isfinite(float(v)), k
    assert float(gc["CRS_BETA"]) > 0 and float(gc["CRS_THETA1"]) > 0
    assert float(gc["CRS_DELTA2"]) < 0 and float(gc["CRS_TOL"]) < 0  # dose 2 carries tolerance
    assert float(gc["CRS_DELTA3"]) == 0.0  # grade >= 2 does not depend on the grade-3 gap
    gy = np.asarray(gy)
    assert np.all(np.isfinite(gy)) and np.any(gy != 0)
    # reverse mode matches central differences
    for k in ("CRS_BETA", "CRS_TOL_TAU"):
        eps = 1e-6 * max(1.0, abs(CRS_DEFAULTS[k]))
        fd = (float(f({**c0, k: c0[k] + eps}, il6)) - float(f({**c0, k: c0[k] - eps}, il6))) / (2 * eps)
        np.testing.assert_allclose(float(gc[k]), fd, rtol=1e-5)


def test_vmap_over_patients_matches_single_calls():
    seg_t, il6, dose_t, mask = _grad_case()
    etas = jnp.array([-1.0, 0.0, 1.2])
    tcrs = jnp.array([0.0, 1.0, 1.0])
    fn = jax.jit(jax.vmap(lambda e, t: crs_per_dose(seg_t, il6, IL6_0, dose_t, mask, C, e, t)["p_any"]))
    batched = np.asarray(fn(etas, tcrs))
    for i in range(3):
        single = run(seg_t, il6, dose_t, mask, eta=float(etas[i]), prior_tcr=float(tcrs[i]))["p_any"]
        np.testing.assert_allclose(batched[i], single, rtol=1e-12, equal_nan=True)


def test_crs_params_validation():
    assert crs_params({"CRS_BETA": 2})["CRS_BETA"] == 2.0
    with pytest.raises(InputError) as e:
        crs_params({"CRS_NOPE": 1.0})
    assert e.value.field == "crs.CRS_NOPE" and "CRS_BETA" in str(e.value)
    with pytest.raises(InputError) as e:
        crs_params({"CRS_OMEGA": -1.0})
    assert e.value.field == "crs.CRS_OMEGA"
    assert crs_params({"CRS_TOL": -1.0})["CRS_TOL"] == -1.0  # sign-free parameter


# --- the one-pass per-dose layer against a direct reference (the dense (doses x samples) form it replaced) ------
def _dense_reference(seg_t, seg_sig, ref, dose_t, dose_mask, base, beta):
    """Per-dose peak, its time, the start value and the median onset written directly: every dose against every
    sample (O(doses x samples)), as qsp.crs computed them before the one-pass form."""
    k_seg = jnp.searchsorted(dose_t, seg_t[:, 0], side="right") - 1
    n_k = seg_t.shape[1]
    times = seg_t.reshape(-1)
    xs = jnp.log(jnp.maximum(seg_sig, 1e-300) / ref).reshape(-1)
    win = jnp.repeat(k_seg, n_k)
    inside = (win[None, :] == jnp.arange(dose_t.shape[0])[:, None]) & dose_mask[:, None]
    xw = jnp.where(inside, xs[None, :], -jnp.inf)
    run = jax.lax.cummax(xw, axis=1)
    present = jnp.any(inside, axis=1)
    x_peak = jnp.where(present, run[:, -1], jnp.nan)
    i_peak = jnp.argmax(xw, axis=1)
    i_first = jnp.argmax(inside, axis=1)
    t_peak_h = jnp.where(present, (times[i_peak] - dose_t) * 24.0, jnp.nan)
    x_start = jnp.where(present, xs[i_first], jnp.nan)
    p_run = jax.nn.sigmoid(base[:, None] + beta * jnp.where(inside, run, 0.0))
    last = inside.shape[1] - 1 - jnp.argmax(inside[:, ::-1], axis=1)
    p0 = jnp.take_along_axis(p_run, i_first[:, None], axis=1)
    p1 = jnp.take_along_axis(p_run, last[:, None], axis=1)
    rise = p1 - p0
    frac = jnp.where(inside, (p_run - p0) / jnp.where(rise > 0, rise, 1.0), -1.0)
    hit = inside & (frac >= 0.5)
    j = jnp.argmax(hit, axis=1)
    jm = jnp.maximum(j - 1, 0)
    f_hi = jnp.take_along_axis(frac, j[:, None], 1)[:, 0]
    f_lo = jnp.take_along_axis(frac, jm[:, None], 1)[:, 0]
    w = jnp.where((j > i_first) & (f_hi > f_lo), (0.5 - f_lo) / jnp.where(f_hi > f_lo, f_hi - f_lo, 1.0), 1.0)
    t_on = times[jm] + jnp.clip(w, 0.0, 1.0) * (times[j] - times[jm])
    ok = jnp.any(hit, axis=1) & (rise[:, 0] > 1e-12)
    onset = jnp.where(ok, (t_on - dose_t) * 24.0, jnp.nan)
    return x_peak, t_peak_h, x_start, onset


@pytest.mark.parametrize("seed", range(4))
def test_one_pass_layer_matches_the_dense_reference(seed):
    """Random sample grids (segments of random length, zero-length ones, samples before the first dose, padded
    doses, a masked dose): peaks, peak times, start values and onsets equal the dense reference."""
    from qsp.crs import _median_onset_h, per_dose_exposure

    rng = np.random.default_rng(seed)
    n_seg, k = 14, 9
    starts = np.sort(rng.uniform(-1.0, 30.0, n_seg))
    starts[5] = starts[4]  # a zero-length segment
    ends = np.r_[starts[1:], 32.0]
    seg_t = jnp.asarray(starts[:, None] + (ends - starts)[:, None] * np.linspace(0, 1, k)[None, :])
    sig = jnp.asarray(np.exp(rng.normal(0.0, 1.0, (n_seg, k))) + 0.5)
    dose_t = jnp.asarray(np.r_[np.sort(rng.choice(starts[1:], 5, replace=False)), np.inf, np.inf])
    mask = jnp.asarray(np.r_[[True, True, seed % 2 == 0, True, True], False, False])
    base = jnp.asarray(rng.normal(-2.0, 1.0, dose_t.shape[0]))
    e = per_dose_exposure(seg_t, sig, 0.7, dose_t, mask)
    onset = _median_onset_h(e, dose_t, base, 1.3)
    ref = _dense_reference(seg_t, sig, 0.7, dose_t, mask, base, 1.3)
    for got, want in zip((e["x"], e["t_peak_h"], e["x_start"], onset), ref):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-12, equal_nan=True)
    # and the gradient with respect to the samples (through the running maxima and the onset interpolation)
    def loss(f):
        def go(fn):
            def h(s):
                if fn is None:
                    ee = per_dose_exposure(seg_t, s, 0.7, dose_t, mask)
                    return jnp.nansum(ee["x"] - ee["x_start"]) + 1e-2 * jnp.nansum(_median_onset_h(ee, dose_t, base,
                                                                                                    1.3))
                xp, _, xs0, on = _dense_reference(seg_t, s, 0.7, dose_t, mask, base, 1.3)
                return jnp.nansum(xp - xs0) + 1e-2 * jnp.nansum(on)
            return h
        return go(f)
    np.testing.assert_allclose(np.asarray(jax.jit(jax.grad(loss(None)))(sig)),
                               np.asarray(jax.jit(jax.grad(loss("dense")))(sig)),
                               rtol=1e-10, atol=1e-12)


def test_a_failed_window_has_no_peak_time():
    """NaN samples (a failed patient) give a NaN peak and a NaN peak time, not a time outside the window."""
    from qsp.crs import per_dose_exposure

    seg_t = jnp.asarray(np.linspace(0.0, 4.0, 5)[:, None] + np.linspace(0.0, 1.0, 4)[None, :])
    sig = np.full((5, 4), 3.0)
    sig[1, 2] = np.nan
    e = per_dose_exposure(seg_t, jnp.asarray(sig), 1.0, jnp.asarray([0.5, 2.5, np.inf]),
                          jnp.asarray([True, True, False]))
    assert np.isnan(float(e["x"][0])) and np.isnan(float(e["t_peak_h"][0]))
    assert float(e["t_peak_h"][1]) == pytest.approx(12.0)  # the window's first sample at the (flat) peak
