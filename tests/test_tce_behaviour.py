"""Qualitative behaviours the TCE model must show (SCIENCE.md section 4)."""
import numpy as np
import pytest

import qsp
from qsp.cards import load_card
from qsp.drugrun import with_premedication
from qsp.regimen import Dose, Regimen

TS = np.linspace(0, 42, 42 * 24 + 1)
DRUGS = ["teclistamab", "epcoritamab", "mosunetuzumab"]


def _label_and_flat(card):
    lab = card.regimen(until_day=42)
    doses = lab.expanded().doses
    top = max(doses, key=lambda d: d.amount)
    flat = Regimen(tuple(Dose(d.time - doses[0].time, top.amount, top.unit, top.route, top.duration) for d in doses), "day")
    return lab, flat, top


@pytest.fixture(scope="module", params=DRUGS)
def drug(request):
    card = load_card(request.param)
    return card, card.model(), card.covariates()


def test_stepup_lowers_first_two_weeks_il6_peak(drug):
    card, m, cov = drug
    lab, flat, _ = _label_and_flat(card)
    r = qsp.simulate(m, [lab, flat], TS, covariates=[cov, cov])
    w = TS < 14
    assert r["il6_pg_per_ml"][0][w].max() < r["il6_pg_per_ml"][1][w].max()


def test_repeated_dose_gives_lower_second_peak(drug):
    card, m, cov = drug
    _, _, top = _label_and_flat(card)
    rep = Regimen((Dose(0, top.amount, top.unit, top.route, top.duration),
                   Dose(7, top.amount, top.unit, top.route, top.duration)), "day")
    il6 = qsp.simulate(m, rep, TS, covariates=cov)["il6_pg_per_ml"]
    first, second = il6[TS < 7].max(), il6[(TS >= 7) & (TS < 14)].max()
    assert second < first


def test_sc_gives_lower_cmax_and_il6_than_iv(drug):
    card, m, cov = drug
    first = card.regimen().expanded().doses[0]
    sc = Regimen((Dose(0, first.amount, first.unit, "SC"),), "day")
    iv = Regimen((Dose(0, first.amount, first.unit, "IV_bolus"),), "day")
    r = qsp.simulate(m, [sc, iv], TS, covariates=[cov, cov])
    assert r["conc_ug_per_ml"][0].max() < r["conc_ug_per_ml"][1].max()
    assert r["il6_pg_per_ml"][0].max() < r["il6_pg_per_ml"][1].max()


def test_higher_tumour_burden_raises_il6(drug):
    card, m, cov = drug
    lab = card.regimen(until_day=42)
    t0 = m.params()["TUMOR0"]
    r = qsp.simulate(m, [lab, lab], TS, {"TUMOR0": np.array([t0, 3 * t0])}, covariates=[cov, cov])
    assert r["il6_pg_per_ml"][1].max() > r["il6_pg_per_ml"][0].max()


def test_premedication_lowers_il6(drug):
    card, m, cov = drug
    lab = card.regimen(until_day=42)
    r = qsp.simulate(m, [lab, with_premedication(lab, "label")], TS, covariates=[cov, cov])
    assert r["il6_pg_per_ml"][1].max() < r["il6_pg_per_ml"][0].max()


def test_ada_positive_patients_lose_exposure_over_weeks(drug):
    card, m, cov = drug
    lab = card.regimen(until_day=42)
    r = qsp.simulate(m, [lab, lab], TS, {"ADA_POS": np.array([0.0, 1.0])}, covariates=[cov, cov])
    c = r["conc_ug_per_ml"]
    early = TS <= 7
    np.testing.assert_allclose(c[1][early], c[0][early], rtol=0.02)  # before onset: same exposure
    assert c[1][-1] < 0.7 * c[0][-1]  # weeks later: exposure lost
    assert r["ada_titre"][1][-1] > 0.5 and r["ada_titre"][0].max() == 0.0


def test_blood_t_cells_marginate_after_a_dose(drug):
    card, m, cov = drug
    _, flat, _ = _label_and_flat(card)
    r = qsp.simulate(m, flat, TS, covariates=cov)
    t = r["blood_t_cells_per_ul"]
    nadir = int(np.argmin(t[TS < 7]))
    assert t[nadir] < 0.8 * t[0]
    assert TS[nadir] < 3.0 and t[TS < 7][-1] > t[nadir]  # falls within days and recovers


def test_monocyte_priming_raises_later_il6_but_leaves_the_drive_and_crs(card_patch, tmp_path):
    """``[structure] monocyte_priming``: serum IL-6 of a later step-up dose grows relative to the first dose's, while
    the T-cell cytokine drive (what the CRS layer reads) is the same as without priming."""
    from qsp.cards import load_card_file

    path = tmp_path / "teclistamab.toml"
    path.write_text(card_patch("teclistamab").replace("[structure]\n", "[structure]\nmonocyte_priming = true\n", 1))
    primed_card, plain_card = load_card_file(path), load_card("teclistamab")
    reg, cov = plain_card.regimen(until_day=14), plain_card.covariates()
    ts = np.linspace(0, 14, 14 * 24 + 1)
    plain = qsp.simulate(plain_card.model(), reg, ts, covariates=cov)
    primed = qsp.simulate(primed_card.model(), reg, ts, covariates=cov, params={"PRIME_GAIN": 3.0})
    np.testing.assert_allclose(primed["t_cytokine_drive"], plain["t_cytokine_drive"], rtol=1e-6, atol=1e-9)
    assert np.all(primed["il6_pg_per_ml"] >= plain["il6_pg_per_ml"] - 1e-9)
    doses = [d.time for d in reg.expanded().doses]
    excess = lambda r, a, b: (r["il6_pg_per_ml"][(ts >= a) & (ts < b)] - plain_card.model().param_info["IL6_0"].value).max()
    first = excess(primed, doses[0], doses[1]) / excess(plain, doses[0], doses[1])
    third = excess(primed, doses[2], doses[3]) / excess(plain, doses[2], doses[3])
    assert third > first * 1.2  # priming built up over the step-up doses
    prime = np.asarray(primed["monocyte_priming"])
    assert prime[0] == 0.0 and 0.0 < prime.max() < 1.0 and "monocyte_priming" not in plain.outputs
