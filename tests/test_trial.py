"""Virtual trials (qsp.trial): batched solves with per-dose CRS, event building, failures, summaries.

Trials are small (64 patients over 14 days, 256 over 35 days) and shared through module-scoped
fixtures; runs with the same shapes reuse one compiled function.
"""
import numpy as np
import pytest

from qsp.cards import load_card
from qsp.drugrun import with_premedication
from qsp.errors import InputError
from qsp.events import EventArrays, regimen_to_events
from qsp.population import population_spec, sample_population
from qsp.regimen import Dose, Regimen
from qsp.simulate import STATUS_OK
from qsp.trial import CRS_KEYS, population_events, run_card_trial, run_trial
from qsp.units import Covariates

CRS_COLUMNS = ["dose_no", "day", "dose", "crs_any_pct", "crs_g2plus_pct", "crs_g3plus_pct", "median_onset_h"]
N_SMALL, DAYS_SMALL = 64, 14


@pytest.fixture(scope="module")
def card():
    return load_card("teclistamab")


@pytest.fixture(scope="module")
def label14(card):
    return run_card_trial(card, patients=N_SMALL, seed=0, days=DAYS_SMALL)


@pytest.fixture(scope="module")
def flat14(card):
    """The label's dose times, every dose at the treatment dose 1.5 mg/kg SC (no step-up).

    Label premedication adds dexamethasone before every dose up to the first treatment dose: three
    for the label, one for this regimen. The other two are written into the regimen, so both arms get
    the same premedication and the same event shapes (one compiled function for both).
    """
    lab = card.regimen(until_day=DAYS_SMALL).in_unit("day").expanded()
    doses = [Dose(d.time, 1.5, "mg/kg", "SC") for d in lab.doses]
    dex = [Dose(d.time - 1.0 / 24.0, 16.0, "mg", "premed_dex") for d in lab.doses[1:3]]
    return run_card_trial(card, Regimen(tuple(doses + dex), "day"), patients=N_SMALL, seed=0, days=DAYS_SMALL)


@pytest.fixture(scope="module")
def label35(card):
    return run_card_trial(card, patients=256, seed=1, days=35)


def test_all_patients_solve_and_probabilities_are_valid(label14):
    r = label14
    assert np.all(r.status == STATUS_OK)
    p1, p2, p3 = r.crs["p_any"], r.crs["p_g2plus"], r.crs["p_g3plus"]
    assert p1.shape == (N_SMALL, len(r.doses))
    assert np.all(np.isfinite(p1)) and np.all((0 <= p3) & (p3 <= p2) & (p2 <= p1) & (p1 <= 1))
    # each dose's onset and IL-6 peak lie in its own window [t_k, t_{k+1}) (the last runs to the horizon)
    t = r.doses.time.to_numpy()
    ends = np.append(t[1:], r.times[-1])
    win_h = (ends - t) * 24.0
    rises = r.crs["exposure"] > 1e-3  # the dose raised the T-cell drive (primed T cells: later doses may raise none)
    assert rises[:, 0].any()  # some patients respond to the first step-up dose
    for key in ("onset_h", "il6_peak_h", "drive_peak_h"):
        v = r.crs[key]
        ok = np.isfinite(v)
        assert ok[rises].all(), key  # defined wherever the dose raised the drive
        if key != "onset_h":
            assert ok.all()
        assert np.all((v >= 0) | ~ok) and np.all((v <= win_h[None, :] + 1e-6) | ~ok), key
    on, pk = r.crs["onset_h"], r.crs["drive_peak_h"]  # the onset comes before the peak of the exposure
    both = np.isfinite(on) & np.isfinite(pk)  # NaN onset: no rise of the drive after that dose
    assert np.all(on[both] <= pk[both] + 1e-6)


def test_stepup_gives_lower_dose1_crs_than_flat_treatment_dose(label14, flat14):
    lab, flat = label14.crs_by_dose(), flat14.crs_by_dose()
    assert lab.dose.iloc[0] == pytest.approx(0.06) and flat.dose.iloc[0] == pytest.approx(1.5)
    assert np.all(flat14.status == STATUS_OK)
    assert lab.crs_any_pct.iloc[0] < flat.crs_any_pct.iloc[0] - 10.0
    assert lab.crs_g2plus_pct.iloc[0] < flat.crs_g2plus_pct.iloc[0]
    assert lab.il6_peak_median_pg_per_ml.iloc[0] < flat.il6_peak_median_pg_per_ml.iloc[0]
    # the same patients (same seed): patient by patient, step-up dose 1 is the safer first dose
    assert np.mean(label14.crs["p_any"][:, 0] < flat14.crs["p_any"][:, 0]) > 0.9


def test_label_regimen_incidence_falls_after_first_doses(label35):
    t = label35.crs_by_dose()
    assert list(t.dose_no) == [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_allclose(t.day, [1, 4, 7, 14, 21, 28, 35])
    np.testing.assert_allclose(t.dose, [0.06, 0.3, 1.5, 1.5, 1.5, 1.5, 1.5])
    inc = t.crs_any_pct.to_numpy()
    assert inc[0] > inc[2] > inc[3:6].mean()
    assert np.all(t.n_evaluable == 256)


def test_crs_by_dose_columns_and_bands(label14):
    t = label14.crs_by_dose()
    assert list(t.columns[:7]) == CRS_COLUMNS
    np.testing.assert_allclose(t.day, label14.doses.time + 1.0)
    np.testing.assert_allclose(t.crs_any_pct, 100 * np.mean(label14.crs["p_any"], axis=0))
    assert np.all(t.crs_any_pct >= t.crs_g2plus_pct) and np.all(t.crs_g2plus_pct >= t.crs_g3plus_pct)
    b = label14.bands()
    np.testing.assert_allclose(b.time_day, label14.times + 1.0)
    for name in label14.outputs:
        lo, med, hi = b[f"{name}_p05"], b[f"{name}_median"], b[f"{name}_p95"]
        assert np.all(lo <= med) and np.all(med <= hi), name
        np.testing.assert_allclose(med, np.median(label14.outputs[name], axis=0))
    late = b.time_day > 3
    assert np.all(b.il6_pg_per_ml_p05[late] < b.il6_pg_per_ml_p95[late])  # patients differ
    pt = label14.patients()
    assert len(pt) == N_SMALL * len(label14.doses) and set(CRS_KEYS) <= set(pt.columns)


def test_same_seed_same_trial_different_seed_differs(card, label14):
    again = run_card_trial(card, patients=N_SMALL, seed=0, days=DAYS_SMALL)
    for k in label14.outputs:
        np.testing.assert_array_equal(again.outputs[k], label14.outputs[k])
    for k in CRS_KEYS:
        np.testing.assert_array_equal(again.crs[k], label14.crs[k])
    np.testing.assert_array_equal(again.status, label14.status)
    other = run_card_trial(card, patients=N_SMALL, seed=1, days=DAYS_SMALL)
    assert not np.array_equal(other.population.params["CL"], label14.population.params["CL"])
    assert not np.allclose(other.outputs["conc_ug_per_ml"], label14.outputs["conc_ug_per_ml"])
    assert not np.allclose(other.crs["p_any"], label14.crs["p_any"])


def test_one_failing_patient_is_flagged_and_the_others_complete(card, label14):
    pop, ref, bad = label14.population, card.covariates(), 5
    ka = pop.params["KA"].copy()
    ka[bad] = np.nan
    r = run_trial(label14.model, label14.regimen, pop, ref, days=DAYS_SMALL, crs=card.crs_values(),
                  params={"KA": ka})
    assert r.status[bad] != STATUS_OK
    for k in CRS_KEYS:
        assert np.all(np.isnan(r.crs[k][bad])), k
    others = np.delete(np.arange(pop.n), bad)
    assert np.all(r.status[others] == STATUS_OK)
    assert np.all(np.isfinite(r.crs["p_any"][others]))
    # the others are unaffected: same as the trial where nobody fails, and as a trial without the bad patient
    alone = run_trial(label14.model, label14.regimen, pop.subset(others), ref, days=DAYS_SMALL, crs=card.crs_values())
    assert np.all(alone.status == STATUS_OK)
    for ref_run, idx in ((label14, others), (alone, slice(None))):
        for k in r.outputs:
            np.testing.assert_allclose(r.outputs[k][others], ref_run.outputs[k][idx], rtol=1e-9, atol=1e-12)
        for k in ("p_any", "p_g2plus", "p_g3plus", "onset_h"):
            np.testing.assert_allclose(r.crs[k][others], ref_run.crs[k][idx], rtol=1e-9, equal_nan=True)
    # evaluable-patient summaries leave the failed patient out
    assert np.all(r.crs_by_dose().n_evaluable == pop.n - 1)
    np.testing.assert_allclose(r.crs_by_dose().crs_any_pct, alone.crs_by_dose().crs_any_pct, rtol=1e-9)


def test_population_events_scale_mg_per_kg_doses_and_add_premedication(card):
    model, ref = card.model(), card.covariates()
    pop = sample_population(model, 6, 11, population_spec(card, weight_cv=0.3), weight_kg=ref.weight_kg,
                            height_cm=ref.height_cm)
    pop.covariates["premed"] = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    w = pop.covariates["weight_kg"].to_numpy()
    assert np.ptp(w) > 5.0
    reg = card.regimen(until_day=21)
    ev = population_events(model, reg, pop, ref)
    dex = model.route_names.index("premed_dex")
    sc = model.route_names.index("SC")
    for i in range(pop.n):
        premed = pop.covariates["premed"][i] == 1.0
        exp = regimen_to_events(model, with_premedication(reg, "label" if premed else "none"),
                                Covariates(weight_kg=float(w[i]), bsa_m2=float(pop.covariates["bsa_m2"][i])))
        n = exp.n_jumps
        for f in EventArrays._fields:
            if f.startswith("jump"):
                np.testing.assert_allclose(getattr(ev, f)[i, :n], getattr(exp, f), rtol=1e-12, err_msg=f)
        assert not ev.jump_mask[i, n:].any()
        is_dex = ev.jump_mask[i] & (ev.jump_route[i] == dex)
        assert is_dex.sum() == (3 if premed else 0)  # dexamethasone before step-ups and first treatment dose
    # drug amounts are proportional to body weight; dexamethasone (mg) is not weight-based
    is_sc = ev.jump_mask & (ev.jump_route == sc)
    drug = np.where(is_sc, ev.jump_amount, np.nan)
    first_sc = np.array([drug[i][is_sc[i]][0] for i in range(pop.n)])
    np.testing.assert_allclose(first_sc / w, first_sc[0] / w[0], rtol=1e-12)
    dex_amt = ev.jump_amount[ev.jump_mask & (ev.jump_route == dex)]
    np.testing.assert_allclose(dex_amt, dex_amt[0], rtol=1e-12)


@pytest.mark.parametrize("kw, field", [
    ({"days": 0}, "days"),
    ({"out_names": ("nope",)}, "outputs"),
    ({"params": {"NOT_A_PARAM": np.ones(3)}}, "params"),
    ({"chunk_size": 0}, "chunk_size"),
])
def test_run_trial_input_errors(card, kw, field):
    model, ref = card.model(), card.covariates()
    pop = sample_population(model, 3, 0, weight_kg=ref.weight_kg)
    with pytest.raises(InputError) as e:
        run_trial(model, card.regimen(until_day=14), pop, ref, **{"days": 14, **kw})
    assert e.value.field == field


def test_regimen_without_doses_in_window_and_bad_premed_raise(card):
    model, ref = card.model(), card.covariates()
    pop = sample_population(model, 3, 0, weight_kg=ref.weight_kg)
    late = Regimen((Dose(30.0, 1.5, "mg/kg", "SC"),), "day")
    with pytest.raises(InputError) as e:
        run_trial(model, late, pop, ref, days=14)
    assert e.value.field == "regimen"
    with pytest.raises(InputError) as e:
        run_card_trial(card, patients=4, premed="some")
    assert e.value.field == "premed"


def test_scalar_override_moves_the_typical_value_of_a_varying_parameter(card, label14):
    """params={"KIL6": 2 x typical} keeps each patient's IIV deviation and doubles IL-6 production for all."""
    pop, ref = label14.population, card.covariates()
    typ = label14.model.default_params()["KIL6"]
    r = run_trial(label14.model, label14.regimen, pop, ref, days=DAYS_SMALL, crs=card.crs_values(),
                  params={"KIL6": 2.0 * typ})
    direct = run_trial(label14.model, label14.regimen, pop, ref, days=DAYS_SMALL, crs=card.crs_values(),
                       params={"KIL6": 2.0 * pop.params["KIL6"]})
    np.testing.assert_allclose(r.crs["il6_peak"], direct.crs["il6_peak"], rtol=1e-12)
    assert np.all(r.crs["il6_peak"][:, 0] > label14.crs["il6_peak"][:, 0])


def test_prior_tcr_fraction_sets_the_subgroup_and_moves_dose_1_crs(card, label14):
    """``prior_tcr=1``: every virtual patient had prior T-cell-redirecting therapy (the CRS layer's shift), the
    other draws unchanged (same seed); a fraction outside 0-1 is refused before any solve."""
    everyone = run_card_trial(card, patients=N_SMALL, seed=0, days=DAYS_SMALL, prior_tcr=1.0)
    p1, p0 = everyone.patients(), label14.patients()
    assert (p1.prior_tcr == 1).all() and (p0.prior_tcr == 0).all()
    np.testing.assert_allclose(p1.T0, p0.T0)  # the same patients otherwise
    d1 = p1.dose_no == 1
    assert not np.allclose(p1.p_any[d1].to_numpy(), p0.p_any[d1].to_numpy())
    for bad in (1.5, -0.1, "half", True):
        with pytest.raises(InputError, match="prior_tcr"):
            run_card_trial(card, patients=N_SMALL, seed=0, days=DAYS_SMALL, prior_tcr=bad)


def test_segment_sample_grid_never_passes_its_segment_end():
    """Regression (found by the optimizer on mosunetuzumab): a 4 h infusion on day 1 ends at 1 + 1/6 and the next
    dose is on day 4; ``a + (b - a) * 1.0`` rounded one ulp past ``b`` and diffrax refused the save times."""
    from qsp.cards import load_card
    from qsp.regimen import Dose, Regimen
    from qsp.trial import card_trial_setup, run_trial

    card = load_card("mosunetuzumab")
    reg = Regimen(tuple(Dose(t, a, "mg", "IV_infusion", duration=4 / 24) for t, a in ((0.0, 1.0), (1.0, 2.0),
                                                                                       (4.0, 60.0))), "day")
    s = card_trial_setup(card, patients=2, seed=0)
    res = run_trial(s.model, reg, s.population, s.ref, days=8.0, crs=s.crs, params=s.params or None,
                    follow_up_days=0.0)
    assert res.ok.all() and res.crs["p_g2plus"].shape == (2, 3)
