"""The calibration likelihood: finite, differentiable (gradients match finite differences), predictions per
target, failed virtual patients penalised (finite, never NaN); summary targets (Tmax, Cmax, troughs,
accumulation ratios, half-lives, CRS onset, ADA) computed as stated and every row either in the likelihood or
listed as skipped."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from qsp.calibrate import load_targets
from qsp.calibrate import summaries as sumr
from qsp.calibrate.likelihood import (FAILURE_PENALTY, build_problem, log_likelihood, neg_log_posterior_flat,
                                      predict)
from qsp.calibrate.space import ParameterSpace
from qsp.cards import list_cards, load_card
from qsp.errors import InputError


@pytest.fixture(scope="module")
def problem():
    """MajesTEC-1, 8 virtual patients; a mechanism, a CRS-layer and a drug parameter, and two fitted IIV SDs."""
    models = {"teclistamab": load_card("teclistamab").model()}
    space = ParameterSpace(models, class_params=("KIL6", "CRS_BETA", "OMEGA_KIL6", "CRS_OMEGA"),
                           drug_params=("TUMOR0",))
    return build_problem(space, patients=8, seed=3)


@pytest.fixture(scope="module")
def gradient(problem):
    """``(f, x0, gradient at x0)`` of the -log posterior: one compiled reverse-mode program, shared."""
    f, x0, _ = neg_log_posterior_flat(problem)
    return f, x0, np.asarray(jax.jit(jax.grad(f))(x0))


def test_targets_and_predictions(problem):
    sim = problem.studies[0]
    assert sim.study_id == "MajesTEC-1" and len(sim.crs_rows) == 7
    assert {g["quantity"] for g in sim.tc_groups} == {"il6_pg_per_ml", "conc_ug_per_ml"}
    assert [r.quantity for r in sim.sum_rows] == ["tmax_h", "accumulation_ratio_cmax", "accumulation_ratio_auc_tau",
                                                  "crs_onset_h"]
    assert sim.ts.max() >= 55.0  # the accumulation ratios need dose 9 (day 48) and its week
    df = predict(problem.space.init(), problem)
    assert len(df) == 7 + 24 + 23 + 4
    assert np.isfinite(df.predicted).all() and (df.n_failed == 0).all()
    crs = df[df.kind == "crs_incidence"]
    assert crs.predicted.between(0, 100).all()
    sm = df[df.kind == "summary"].set_index("unit")
    assert 24.0 < sm.predicted["tmax_h"] < 7 * 24.0  # inside dose 3's weekly window
    assert 1.0 < sm.predicted["accumulation_ratio_cmax"] < 10.0 and 1.0 < sm.predicted["accumulation_ratio_auc_tau"]
    assert 0.0 < sm.predicted["crs_onset_h"] < 7 * 24.0


def test_per_dose_selection_weighs_each_point_by_crs_after_its_dose(problem, tmp_path):
    """Selection ``crs_after_dose_before_tocilizumab``: the mean at a point of dose interval k is over the virtual
    patients weighted by their probability of CRS after dose k; the any-CRS selection weighs them all alike by
    their probability of any CRS, so the two differ."""
    import importlib.util

    from conftest import ROOT
    from qsp.calibrate.likelihood import PER_DOSE, simulate_study

    spec = importlib.util.spec_from_file_location("pd", ROOT / "calibration" / "per_dose_il6_targets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main([str(tmp_path / "t")])
    pd_problem = build_problem(problem.space, load_targets(tmp_path / "t"), patients=8, seed=3)
    sim = pd_problem.studies[0]
    g = next(g for g in sim.tc_groups if g["selection"] == PER_DOSE)
    pair = np.flatnonzero(np.isclose(g["times"], 2.989583))
    assert sorted(zip(g["obs"][pair], g["dose_idx"][pair])) == [(3.81, 1), (5.01, 0)]
    theta = problem.space.init()
    outs, status, crs = simulate_study(theta, pd_problem, sim)
    assert np.all(np.asarray(status) == 0)
    x = np.asarray(outs["il6_pg_per_ml"])[:, g["t_idx"]]
    p = np.nan_to_num(np.asarray(crs["p_any"]))[:, g["dose_idx"]]
    expected = (p * x).sum(0) / p.sum(0)
    df = predict(theta, pd_problem)
    got = df[df.target == g["label"]].predicted.to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    p_all = 1.0 - np.prod(1.0 - np.nan_to_num(np.asarray(crs["p_any"])), axis=1)
    any_crs = (p_all @ x) / p_all.sum()
    assert np.max(np.abs(got / any_crs - 1.0)) > 1e-3
    assert got[pair[0]] != got[pair[1]]  # one time, two dose intervals: two means


def test_per_dose_point_outside_its_dose_interval_is_refused(problem, tmp_path):
    """A per-dose point whose dose_no does not fit its time (dose 4 on day 3) is refused when the problem is built,
    naming the study, the point and the interval; a point at a dose's time may close the interval before it."""
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("pd", ROOT / "calibration" / "per_dose_il6_targets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main([str(tmp_path / "t")])
    tc = pd.read_csv(tmp_path / "t" / "timecourses.csv", dtype=str, keep_default_na=False)
    row = (tc.study_id == "MajesTEC-1") & (tc.quantity == "il6_pg_per_ml") & (tc.time_day == "3.061667")
    assert row.sum() == 1
    tc.loc[row, "dose_no"] = "4"
    tc.to_csv(tmp_path / "t" / "timecourses.csv", index=False)
    with pytest.raises(InputError, match=r"MajesTEC-1: .*day 3.06167: dose_no 4 is the interval from day 13"):
        build_problem(problem.space, load_targets(tmp_path / "t"), patients=8, seed=3, studies=["MajesTEC-1"])


def test_first_crs_at_later_doses_counts_patients_without_earlier_crs(problem):
    """MajesTEC-1's "4+" row is the first CRS event at a later dose (at_risk first_crs_after_dose): per patient
    ``prod_{j<4} (1 - p_j) (1 - prod_{j=4..6} (1 - p_j))``, not the mean per-dose probability."""
    from qsp.calibrate.likelihood import simulate_study, study_predictions

    sim = problem.studies[0]

    @jax.jit  # one compiled program for both (eager, each solves the study again op by op)
    def both(th):
        _, status, crs = simulate_study(th, problem, sim)
        return status, crs["p_any"], study_predictions(th, problem, sim)["crs"]

    status, p_any, pred = both(problem.space.init())
    p = np.asarray(p_any)[np.asarray(status) == 0]
    i = [k for k, r in enumerate(sim.crs_rows) if r["label"].endswith("after dose 4+")][0]
    expected = np.mean(np.prod(1 - p[:, :3], axis=1) * (1 - np.prod(1 - p[:, 3:6], axis=1)))
    got = float(pred[i])
    assert got == pytest.approx(expected, rel=1e-9)
    assert got < np.mean(1 - np.prod(1 - p[:, 3:6], axis=1))


def test_gradient_matches_finite_differences(problem, gradient):
    f, x0, g = gradient
    fj = jax.jit(f)
    assert x0.size == 5 and np.all(np.isfinite(g))  # the IIV SDs' derivatives too
    for i in range(x0.size):
        h = 1e-4
        e = jnp.zeros_like(x0).at[i].set(h)
        fd = (float(fj(x0 + e)) - float(fj(x0 - e))) / (2 * h)
        assert g[i] == pytest.approx(fd, rel=2e-3, abs=1e-3), (i, g[i], fd)


def test_failed_patients_give_a_finite_penalised_log_density():
    models = {"teclistamab": load_card("teclistamab").model()}
    space = ParameterSpace(models, class_params=("KIL6",))
    prob = build_problem(space, patients=4, seed=1, max_steps=3)  # every solve fails
    f, x0, unravel = neg_log_posterior_flat(prob)
    v, g = jax.jit(jax.value_and_grad(f))(x0)  # value and gradient from one compiled program
    ll = -float(v) - float(space.log_prior(unravel(x0)))  # -log posterior = -(log prior + log likelihood)
    assert np.isfinite(ll) and ll < -FAILURE_PENALTY * 4
    assert np.all(np.isfinite(np.asarray(g)))
    df = predict(space.init(), prob)
    assert (df.n_failed == 4).all()


def test_bad_problem_is_refused():
    models = {"teclistamab": load_card("teclistamab").model()}
    space = ParameterSpace(models, class_params=("KIL6",))
    with pytest.raises(InputError, match="studies"):
        build_problem(space, patients=4, studies=["NOPE"])
    with pytest.raises(InputError, match="patients"):
        build_problem(space, patients=1)


# --------------------------------------------------------------------------------------------------
# summary targets: the pieces on known curves (no ODE solve)
# --------------------------------------------------------------------------------------------------
def test_weighted_quantile_is_the_median_for_equal_weights_and_ignores_zero_weights():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 8, 13):
        x = rng.lognormal(size=n)
        assert float(sumr.weighted_quantile(jnp.asarray(x), jnp.ones(n), 0.5)) == pytest.approx(np.median(x))
    x = np.array([1.0, 2.0, 3.0, 100.0, -50.0])
    w = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
    assert float(sumr.weighted_quantile(jnp.asarray(x), jnp.asarray(w), 0.5)) == pytest.approx(2.0)
    # continuous in the weights: moving weight onto the largest value moves the median smoothly upwards
    vals = [float(sumr.weighted_quantile(jnp.asarray(x[:3]), jnp.asarray([1.0, 1.0, 1.0 + e]), 0.5))
            for e in (0.0, 1e-3, 2e-3)]
    assert vals[0] < vals[1] < vals[2] and vals[2] - vals[0] < 1e-2
    g = jax.grad(lambda w_: sumr.weighted_quantile(jnp.asarray(x[:3]), w_, 0.5))(jnp.asarray([1.0, 1.0, 1.5]))
    assert np.all(np.isfinite(np.asarray(g)))


def _bateman(t, ka, ke):
    return ka / (ka - ke) * (np.exp(-ke * t) - np.exp(-ka * t))


def test_tmax_and_cmax_of_a_bateman_curve():
    ka, ke = 1.2, math.log(2) / 10.0
    end = 14.0 - sumr.TROUGH_EPS_DAY  # a window's grid: dense from the dose to just before the next one
    ts = sumr.merge_grid(np.arange(0.0, 14.0, 0.25), 7.0 + sumr.DENSE_STEP_DAY * np.arange(84), [end])
    t_dose = 7.0
    x = np.where(ts >= t_dose, _bateman(np.clip(ts - t_dose, 0, None), ka, ke), 0.0)[None, :]
    idx = np.flatnonzero((ts >= t_dose) & (ts <= end))
    tmax = math.log(ka / ke) / (ka - ke)
    got = float(sumr.window_tmax_h(jnp.asarray(x), ts, idx, t_dose)[0])
    assert got == pytest.approx(24.0 * tmax, abs=0.2)  # 2 h grid, parabolic vertex: well under the grid step
    assert float(sumr.window_cmax(jnp.asarray(x), idx)[0]) == pytest.approx(_bateman(tmax, ka, ke), rel=1e-3)
    auc = float(sumr.window_auc(jnp.asarray(x), ts, idx)[0])
    tau = end - t_dose
    exact = (ka / (ka - ke)) * ((1 - np.exp(-ke * tau)) / ke - (1 - np.exp(-ka * tau)) / ka)
    assert auc == pytest.approx(exact, rel=2e-3)


@pytest.mark.parametrize("curve, half_life", [
    ("sc_antibody", 20.0),  # SC absorption then a 20-day decay: the last week of a 28-day follow-up
    ("two_compartment", math.log(2) / 0.05),  # a fast distribution phase and a 13.9-day terminal phase
    ("fast_after_infusion", 2.0 / 24.0),  # a 2 h decay after an infusion ends: the band above peak/64
])
def test_terminal_half_life_of_known_decays(curve, half_life):
    t_last = 10.0
    fine = t_last + np.concatenate([np.arange(0, 2, 1 / 48), np.arange(2, 7, 1 / 12)])
    ts = sumr.merge_grid(np.arange(0.0, t_last + 28.0 + 1e-9, 0.25), fine)
    tt = np.clip(ts - t_last, 0.0, None)
    k = math.log(2) / half_life
    if curve == "sc_antibody":
        x = _bateman(tt, 0.8, k)
    elif curve == "two_compartment":
        x = 10.0 * np.exp(-3.0 * tt) + np.exp(-k * tt)
    else:
        x = np.exp(-k * tt)
    x = np.where(ts >= t_last, x, 0.5)[None, :]
    got = float(sumr.terminal_half_life(jnp.asarray(x), ts, t_last, t_last + 28.0)[0])
    assert got == pytest.approx(half_life, rel=0.02)


def test_terminal_half_life_gradient_matches_finite_differences():
    ts = sumr.merge_grid(np.arange(0.0, 28.0 + 1e-9, 0.25), np.arange(0, 2, 1 / 48))

    def hl(log_k):
        k = jnp.exp(log_k)
        x = (10.0 * jnp.exp(-3.0 * ts) + jnp.exp(-k * ts))[None, :]
        return sumr.terminal_half_life(x, ts, 0.0, 28.0)[0]

    z = math.log(0.08)
    g = float(jax.grad(hl)(z))
    fd = (float(hl(z + 1e-4)) - float(hl(z - 1e-4))) / 2e-4
    assert np.isfinite(g) and g == pytest.approx(fd, rel=1e-3)


def _row(**kw):
    base = dict(label="x", quantity="cmax_ug_per_ml", statistic="mean", selection="all", error_model="lognormal",
                observed=2.0, unit="cmax_ug_per_ml", sigma=0.2)
    base.update(kw)
    return sumr.SummaryRow(**base)


def test_summary_error_models():
    ln = _row()
    assert float(sumr.log_density(ln, 2.0)) == pytest.approx(-math.log(0.2))
    assert float(sumr.log_density(ln, 2.0 * math.exp(0.2))) == pytest.approx(-0.5 - math.log(0.2))
    iv = _row(quantity="tmax_h", error_model="interval", observed=120.0, lower=72.0, upper=168.0, sigma=np.nan)
    assert float(sumr.log_density(iv, 80.0)) == 0.0 == float(sumr.log_density(iv, 160.0))
    out = float(sumr.log_density(iv, 168.0 * math.exp(sumr.EDGE_SIGMA_LOG)))
    assert out == pytest.approx(-0.5)
    ub = _row(quantity="ada_incidence_pct", error_model="upper_bound", observed=1.0, upper=1.0, unit="%")
    assert float(sumr.log_density(ub, 0.3)) == 0.0
    assert float(sumr.log_density(ub, 1.0 + sumr.EDGE_SIGMA_PP)) == pytest.approx(-0.5)
    bi = _row(quantity="ada_incidence_pct", error_model="binomial", observed=2.9, n=140.0, events=4.0)
    p = 4 / 140
    assert float(sumr.log_density(bi, 100 * p)) == pytest.approx(4 * math.log(p) + 136 * math.log1p(-p))
    no = _row(quantity="ada_incidence_pct", error_model="normal", observed=8.3, sigma=2.5)
    assert float(sumr.log_density(no, 8.3 + 2.5)) == pytest.approx(-0.5 - math.log(2.5))


def test_every_summary_row_is_in_the_likelihood_or_skipped_with_a_reason():
    """Building a problem solves nothing: plan every drug's summary rows and account for each one."""
    tg = load_targets()
    drugs = sorted(set(tg.summaries.drug) & set(list_cards()))
    space = ParameterSpace({d: load_card(d).model() for d in drugs}, class_params=("KIL6",))
    prob = build_problem(space, tg, patients=2, seed=1)
    planned = [r.label for s in prob.studies for r in s.sum_rows]
    skipped = dict(prob.skipped)
    assert len(planned) == len(set(planned))
    for r in tg.summaries.itertuples(index=False):
        label = sumr.row_label(r)
        hits = [p for p in planned if p.startswith(label)] + [k for k in skipped if k.startswith(label)]
        assert len(hits) == 1, (label, hits)
    assert "half-life at treatment start" in skipped["talquetamab-popPK-Gong2025 typical half_life_initial_day"]
    # the sd rows are CV targets against their study's mean row
    cv = [r for s in prob.studies for r in s.sum_rows if r.label.endswith("(as CV = sd/mean)")]
    assert len(cv) == 4 and all(r.unit == "cv_pct" for r in cv)
    one = next(r for r in cv if r.label.startswith("MonumenTAL-1-QW-PK sd cmax_ug_per_ml dose 3"))
    assert one.observed == pytest.approx(100 * 1.185 / 1.568)
    # studies the label regimen cannot reproduce are listed, not dropped silently
    assert "regimen_match nearest" in skipped["epcoritamab-Tcells-Hosseini2020"]
    # ADA-only studies need no simulation
    ada = [s for s in prob.studies if not s.solve]
    assert {s.study_id for s in ada} >= {"epcoritamab-SmPC-ADA", "elranatamab-SmPC-ADA"}


def test_summary_rows_the_model_cannot_predict_are_skipped():
    tg = load_targets()
    st = tg.studies[tg.studies.study_id == "MonumenTAL-1-QW-PK"].iloc[0]
    sm = tg.summaries[tg.summaries.study_id == "MonumenTAL-1-QW-PK"]
    lone_sd = sm[(sm.statistic == "sd") & (sm.dose_no == 3) & (sm.quantity == "cmax_ug_per_ml")]
    far = sm[(sm.statistic == "mean") & (sm.dose_no == 9) & (sm.quantity == "cmax_ug_per_ml")].copy()
    far["dose_no"] = pd.array([40], dtype="Int64")
    model = load_card("talquetamab").model()
    skipped = []
    rows = sumr.plan_rows(pd.concat([lone_sd, far]), st, np.arange(10) * 7.0, model, skipped)
    assert rows == [] and len(skipped) == 2
    assert "mean row" in skipped[0][1] and "beyond the label regimen" in skipped[1][1]
    # a partial study: a window past the matched days is skipped
    skipped = []
    part = st.copy()
    part["regimen_match"], part["regimen_match_until_day"] = "partial", 30.0
    rows = sumr.plan_rows(sm[sm.statistic == "mean"], part, np.array([0.0, 3, 6, 13, 20, 27, 34, 41, 48, 55]), model,
                          skipped)
    assert [r.dose for r in rows] == [2, 2] and len(skipped) == 2 and all("partial" in w for _, w in skipped)


def test_summary_terms_gradient_matches_finite_differences():
    """Tmax (lognormal), terminal half-life (interval: the prior lies outside it) and ADA incidence (binomial)
    through the ODE solve: jax.grad agrees with central differences."""
    drug = "epcoritamab"
    space = ParameterSpace({drug: load_card(drug).model()}, class_params=("KIL6",), drug_params=("V1", "ADA_PROB"))
    prob = build_problem(space, patients=4, seed=2, studies=["epcoritamab-label-PK", "epcoritamab-SmPC-ADA"])
    assert [len(s.sum_rows) for s in prob.studies] == [2, 1] and not prob.studies[1].solve
    f, x0, _ = neg_log_posterior_flat(prob)
    fj = jax.jit(f)
    g = np.asarray(jax.jit(jax.grad(f))(x0))
    assert np.all(np.isfinite(g))
    for i in range(x0.size):
        h = 1e-4
        e = jnp.zeros_like(x0).at[i].set(h)
        fd = (float(fj(x0 + e)) - float(fj(x0 - e))) / (2 * h)
        assert g[i] == pytest.approx(fd, rel=2e-3, abs=1e-3), (i, g[i], fd)


def test_fitted_iiv_sd_rescales_the_virtual_patients_and_has_a_gradient(problem, gradient):
    from qsp.calibrate.likelihood import _params

    sp, sim = problem.space, problem.studies[0]
    th = sp.init()
    base = np.asarray(_params(th, sp, sim, 8)[0]["KIL6"])
    typ = sim.base["KIL6"]
    # at the drawn omega: as drawn (the ratio keeps what does not scale: nothing for KIL6, which has no allometry)
    np.testing.assert_allclose(sim.ratios["KIL6"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(base, typ * np.exp(sim.etas["KIL6"][2]), rtol=1e-12)
    th2 = {**th, "class": {**th["class"], "OMEGA_KIL6": th["class"]["OMEGA_KIL6"] + np.log(2.0)}}
    wide = np.asarray(_params(th2, sp, sim, 8)[0]["KIL6"])
    np.testing.assert_allclose(np.log(wide / typ), 2 * np.log(base / typ), rtol=1e-10)
    g = gradient[2]  # (test_gradient_matches_finite_differences checks it against finite differences)
    for name in ("class:OMEGA_KIL6", "class:CRS_OMEGA"):  # each fitted IIV SD moves the likelihood
        assert abs(float(g[sp.names().index(name)])) > 1e-3, name


def test_fitted_pk_iiv_sd_keeps_allometry_and_correlation_as_a_redrawn_population_has_them():
    """OMEGA_CL of a card with the default CL-V1 correlation and weight allometry on CL, CLSS, V1: the fit's
    rescaled patients are exactly the population drawn with the new omega (qsp.population.with_omegas): each
    patient keeps its weight and its standard normals; CL and CLSS (which shares CL's random effect) spread more,
    V1 does not move."""
    from qsp.calibrate.likelihood import _params
    from qsp.population import population_spec, sample_population, with_omegas

    card = load_card("elranatamab")
    m = card.model()
    sp = ParameterSpace({"elranatamab": m}, class_params=("OMEGA_CL", "OMEGA_V1"))
    pr = build_problem(sp, patients=8, seed=3, studies=["MagnetisMM-3-cohortA"])
    sim = pr.studies[0]
    th = sp.init()
    spec = population_spec(card, premed_fraction=1.0, prior_tcr_prob=float(0.0))
    om_cl = spec.for_model(m).omega["CL"]
    assert ("CL", "V1") in spec.correlations or ("V1", "CL") in spec.correlations
    at0 = {k: np.asarray(v) for k, v in _params(th, sp, sim, 8)[0].items()}
    pk = [k for k in ("CL", "CLSS", "V1") if k in sim.etas]
    assert {"CL", "V1"} <= set(pk)
    for k in pk:
        np.testing.assert_allclose(at0[k], sim.base[k] * sim.ratios[k] * np.exp(sim.etas[k][2]), rtol=1e-12)
    th2 = {**th, "class": {**th["class"], "OMEGA_CL": th["class"]["OMEGA_CL"] + np.log(1.5)}}
    wide = {k: np.asarray(v) for k, v in _params(th2, sp, sim, 8)[0].items()}
    np.testing.assert_array_equal(wide["V1"], at0["V1"])
    assert np.std(np.log(wide["CL"])) > np.std(np.log(at0["CL"]))
    redrawn = sample_population(m, 8, 3, with_omegas(spec, {"OMEGA_CL": 1.5 * om_cl}), weight_kg=card.covariates()
                                .weight_kg, stratified=False)
    drawn = sample_population(m, 8, 3, spec, weight_kg=card.covariates().weight_kg, stratified=False)
    for k in pk:  # the likelihood's rescaling is the redrawn population, patient by patient
        np.testing.assert_allclose(wide[k] / at0[k], redrawn.params[k] / drawn.params[k], rtol=1e-10)
    # its derivative at the rescaling (the solve after it is not differentiated here; the same _params line carries
    # OMEGA_KIL6's derivative through a teclistamab solve in test_gradient_matches_finite_differences):
    # d(CL)/d(log OMEGA_CL) = CL log(CL / (typical x ratio))
    dcl = jax.jacfwd(lambda th_: _params(th_, sp, sim, 8)[0]["CL"])(th)["class"]["OMEGA_CL"]
    np.testing.assert_allclose(np.asarray(dcl), at0["CL"] * np.log(at0["CL"] / (sim.base["CL"] * sim.ratios["CL"])),
                               rtol=1e-8)


def test_fitted_v1_iiv_sd_is_the_central_volumes_in_a_one_compartment_card():
    """A one-compartment card calls its central volume V (qsp.population.ALIASES): OMEGA_V1 rescales V's random
    effect there, as a redrawn population with that omega has it, instead of being refused."""
    from qsp.calibrate.likelihood import _params

    m = load_card("blinatumomab").model()
    assert "V" in m.param_info and "V1" not in m.param_info
    sp = ParameterSpace({"blinatumomab": m}, class_params=("OMEGA_V1",))
    pr = build_problem(sp, patients=6, seed=3, studies=["blinatumomab-Hijazi2018"])
    sim = pr.studies[0]
    assert sim.etas["V"][0] == "OMEGA_V1"
    th = sp.init()
    at0 = np.asarray(_params(th, sp, sim, 6)[0]["V"])
    th2 = {**th, "class": {**th["class"], "OMEGA_V1": th["class"]["OMEGA_V1"] + np.log(2.0)}}
    wide = np.asarray(_params(th2, sp, sim, 6)[0]["V"])
    np.testing.assert_allclose(np.log(wide / at0), sim.etas["V"][2], rtol=1e-10)  # eta doubled: the extra is eta


def test_crs_counts_under_another_grading_are_predicted_not_fitted():
    """TOWER graded CRS by CTCAE v4.0 (no fever-only grade): its rows are predicted and reported (``in_fit``
    False), listed in ``skipped`` with the reason, and add nothing to the likelihood, so the study is not
    compiled into the objective."""
    from qsp.calibrate.likelihood import is_fitted
    from qsp.calibrate.objective import SplitObjective

    space = ParameterSpace({"blinatumomab": load_card("blinatumomab").model()}, class_params=("KIL6",))
    prob = build_problem(space, patients=2, seed=1, studies=["TOWER"])
    (sim,) = prob.studies
    assert len(sim.crs_rows) == 2 and not any(r["in_fit"] for r in sim.crs_rows)
    assert not is_fitted(sim) and SplitObjective(prob).study_ids == []
    why = dict(prob.skipped)
    assert all("graded by CTCAE_v4" in why[r["label"]] and "not fitted" in why[r["label"]] for r in sim.crs_rows)
    assert float(log_likelihood(space.init(), prob)) == 0.0
    df = predict(space.init(), prob)
    assert len(df) == 2 and not df.in_fit.any() and df.predicted.between(0, 100).all()


def test_individual_values_score_as_draws_from_the_predicted_distribution():
    """The blinatumomab patients' IL-6 peaks (``individual_peak``): each observed patient adds the log-normal
    density of its peak under the virtual patients' log-mean and log-SD, with the reading error added in
    quadrature (one term per patient, differentiable); the reported predictions stay the virtual patients'
    quantiles at the observations' plotting positions."""
    from qsp.calibrate.likelihood import pointwise_log_likelihood, simulate_study, study_predictions

    space = ParameterSpace({"blinatumomab": load_card("blinatumomab").model()}, class_params=("KIL6", "IL6_T_GAIN"))
    prob = build_problem(space, patients=6, seed=2, studies=["blinatumomab-Hijazi2018"])
    (sim,) = prob.studies
    (g,) = sim.tc_groups
    assert g["statistic"] == "individual_peak" and g["obs"].size > 40

    def both(th):
        outs, status, _ = simulate_study(th, prob, sim)
        return study_predictions(th, prob, sim), outs["il6_pg_per_ml"], status

    theta = space.init()
    pred, il6, status = jax.jit(both)(theta)
    assert (np.asarray(status) == 0).all()
    lp = np.log(np.asarray(il6).max(axis=1))
    mu, s = lp.mean(), lp.std(ddof=1)
    big_s = np.sqrt(s**2 + g["sigma"] ** 2)
    expected = -0.5 * ((np.log(g["obs"]) - mu) / big_s) ** 2 - np.log(big_s)
    got = np.asarray([float(t) for t in pointwise_log_likelihood(pred, sim)])
    np.testing.assert_allclose(got, expected, rtol=1e-8)
    q = (np.argsort(np.argsort(g["obs"])) + 0.5) / g["obs"].size
    np.testing.assert_allclose(np.asarray(pred["tc"][0]), np.quantile(np.exp(lp), q), rtol=1e-8)

    f, x0, _ = neg_log_posterior_flat(prob)
    fj, gr = jax.jit(f), np.asarray(jax.jit(jax.grad(f))(x0))
    for i in range(x0.size):
        e = jnp.zeros_like(x0).at[i].set(1e-4)
        fd = (float(fj(x0 + e)) - float(fj(x0 - e))) / 2e-4
        assert gr[i] == pytest.approx(fd, rel=2e-3, abs=1e-3), (i, gr[i], fd)


def test_log_moments_leave_out_zero_weight_patients():
    """The between-patient log-mean and log-SD (``n - 1``) of an individual-value target use only the patients
    with weight 1 (a failed virtual patient has weight 0 and a placeholder value)."""
    from qsp.calibrate.likelihood import _log_moments

    lx = np.array([1.0, 2.5, -0.3, 99.0, 0.7])
    w = np.array([1.0, 1.0, 1.0, 0.0, 1.0])
    mu, s = np.asarray(_log_moments(jnp.asarray(lx), jnp.asarray(w)))
    kept = lx[w > 0]
    assert mu == pytest.approx(kept.mean(), rel=1e-12) and s == pytest.approx(kept.std(ddof=1), rel=1e-9)
    g = jax.grad(lambda v: _log_moments(v, jnp.asarray(w))[1])(jnp.asarray(lx))
    assert np.all(np.isfinite(np.asarray(g))) and float(g[3]) == 0.0
