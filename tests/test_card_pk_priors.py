"""The cards' PK parameters are the published population-PK typical values of data/poppk_typical.csv.

Each expected value is computed here from the CSV (with the conversions the cards state: L/h to L/day, apparent
CL/F, V/F, Q/F times the card's F, CL0 = time-independent + time-dependent clearance, V2 = Vss - V1, a sex mix, a
half-life to a clearance), and each such parameter's source must cite the CSV row's paper and say it came via the
CSV, keeping the nlmixr2lib transcription note where the CSV has one.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from qsp.cards import load_card

ROOT = Path(__file__).resolve().parents[1]
CSV = pd.read_csv(ROOT / "data" / "poppk_typical.csv")
TO_PER_DAY = {"L/day": 1.0, "1/day": 1.0, "L/h": 24.0, "L": 1.0, "fraction": 1.0, "nM": 1.0, "day": 1.0}
RTOL = 1e-6


def row(drug: str, parameter: str) -> pd.Series:
    r = CSV[(CSV.drug == drug) & (CSV.parameter == parameter)]
    assert len(r) == 1, (drug, parameter)
    return r.iloc[0]


def val(drug: str, parameter: str) -> float:
    """The CSV value in the card's unit (L/h -> L/day; '<1' % -> 0.01)."""
    r = row(drug, parameter)
    if r.unit == "%":
        return float(str(r.value).lstrip("<")) / 100.0
    return float(r.value) * TO_PER_DAY[r.unit]


def _ug_per_ml_to_nm(parameter: str) -> float:
    r = row("epcoritamab", parameter)
    assert r.unit == "ug/mL"
    return float(r.value) * 1e3 / (load_card("epcoritamab").drug["mw_kda"] * 1e3) * 1e3


def female_factor(drug: str, parameter: str) -> float:
    m = re.search(r"female x\(1 - ([0-9.]+)\)", row(drug, parameter).covariates_and_notes)
    assert m, (drug, parameter)
    return 1.0 - float(m.group(1))


def _epco(name: str) -> float:
    return val("epcoritamab", name) * load_card("epcoritamab").values()["F"]


# card key -> (expected value, CSV parameter rows it derives from)
EXPECTED = {
    "teclistamab": {
        "CL": (lambda: val("teclistamab", "CL_time_independent") + val("teclistamab", "CL_time_dependent"),
               ["CL_time_independent", "CL_time_dependent"]),
        "CLSS": (lambda: val("teclistamab", "CL_time_independent"), ["CL_time_independent"]),
        "KCL": (lambda: val("teclistamab", "KDES"), ["KDES"]),
        **{k: (lambda k=k: val("teclistamab", k), [k]) for k in ("V1", "V2", "Q", "KA", "F")},
    },
    "elranatamab": {
        # typical patient: 50/50 male/female mix of the typical clearances (the engine has no sex covariate)
        "CL": (lambda: val("elranatamab", "CL") * (1 + female_factor("elranatamab", "CL")) / 2, ["CL"]),
        "CLSS": (lambda: val("elranatamab", "CL") * (1 + female_factor("elranatamab", "CL")) / 2, ["CL"]),
        "STAA0": (lambda: val("elranatamab", "sBCMA_baseline"), ["sBCMA_baseline"]),
        "KD_STAA": (lambda: val("elranatamab", "KD_sBCMA_in_vivo"), ["KD_sBCMA_in_vivo"]),
        **{k: (lambda k=k: val("elranatamab", k), [k]) for k in ("V1", "V2", "Q", "KA", "F")},
    },
    "epcoritamab": {  # apparent values (F not estimated) times the card's F
        "CL": (lambda: _epco("CL_over_F"), ["CL_over_F"]),
        "CLSS": (lambda: _epco("CL_over_F"), ["CL_over_F"]),
        "V1": (lambda: _epco("V1_over_F"), ["V1_over_F"]),
        "V2": (lambda: _epco("V2_over_F"), ["V2_over_F"]),
        "Q": (lambda: _epco("Q_over_F"), ["Q_over_F"]),
        "KA": (lambda: val("epcoritamab", "KA"), ["KA"]),
        # the QSS-TMDD pool: ug/mL -> nM with the card's molecular weight (a concentration: no F)
        "TMDD_BASE": (lambda: _ug_per_ml_to_nm("TMDD_BASE"), ["TMDD_BASE"]),
        "TMDD_KSS": (lambda: _ug_per_ml_to_nm("TMDD_KSS"), ["TMDD_KSS"]),
        "TMDD_KINT": (lambda: val("epcoritamab", "TMDD_KINT"), ["TMDD_KINT"]),
    },
    "mosunetuzumab": {
        "CL": (lambda: val("mosunetuzumab", "CLbase"), ["CLbase"]),
        "CLSS": (lambda: val("mosunetuzumab", "CLss"), ["CLss"]),
        # transition half-life 16.3 d, from the CLbase row's notes
        "KCL": (lambda: math.log(2) / float(re.search(r"transition half-life ([0-9.]+) d",
                                                      row("mosunetuzumab", "CLbase").covariates_and_notes).group(1)),
                ["CLbase"]),
        **{k: (lambda k=k: val("mosunetuzumab", k), [k]) for k in ("V1", "V2", "Q")},
    },
    "tarlatamab": {
        "CL": (lambda: val("tarlatamab", "CL"), ["CL"]),
        "CLSS": (lambda: val("tarlatamab", "CL"), ["CL"]),
        "V1": (lambda: val("tarlatamab", "V1"), ["V1"]),
        "V2": (lambda: val("tarlatamab", "Vss") - val("tarlatamab", "V1"), ["Vss", "V1"]),
    },
    "odronextamab": {
        "CL": (lambda: val("odronextamab", "CL_linear"), ["CL_linear"]),
        "CLSS": (lambda: val("odronextamab", "CL_linear"), ["CL_linear"]),
    },
    "blinatumomab": {
        "CL": (lambda: val("blinatumomab", "CL"), ["CL"]),
        "CLSS": (lambda: val("blinatumomab", "CL"), ["CL"]),
        "V1": (lambda: val("blinatumomab", "V"), ["V"]),
    },
    "tebentafusp": {
        "CL": (lambda: val("tebentafusp", "CL"), ["CL"]),
        "CLSS": (lambda: val("tebentafusp", "CL"), ["CL"]),
        "V1": (lambda: val("tebentafusp", "Vd"), ["Vd"]),
    },
    "catumaxomab": {  # F = systemic exposure after IP (< 1%: the bound); CL = ln2 V1 / t1/2 with the card's V1
        "F": (lambda: val("catumaxomab", "systemic_exposure_after_IP"), ["systemic_exposure_after_IP"]),
        "CL": (lambda: math.log(2) * load_card("catumaxomab").values()["V1"] / val("catumaxomab", "half_life"),
               ["half_life"]),
        "CLSS": (lambda: math.log(2) * load_card("catumaxomab").values()["V1"] / val("catumaxomab", "half_life"),
                 ["half_life"]),
    },
}
CASES = [(d, k) for d, ps in EXPECTED.items() for k in ps]


def test_every_csv_drug_is_mapped():
    assert set(CSV.drug) == set(EXPECTED)


@pytest.mark.parametrize("drug, key", CASES, ids=[f"{d}-{k}" for d, k in CASES])
def test_card_value_is_the_published_one(drug, key):
    expected, _ = EXPECTED[drug][key]
    assert load_card(drug).values()[key] == pytest.approx(expected(), rel=RTOL)


def _citation(source: str) -> str:
    """The paper part of a CSV source: the text before its first ' (' or ';'."""
    return re.split(r" \(|;", source, maxsplit=1)[0].strip()


@pytest.mark.parametrize("drug, key", CASES, ids=[f"{d}-{k}" for d, k in CASES])
def test_card_source_cites_the_paper(drug, key):
    src = load_card(drug).sources()[key]
    assert "via data/poppk_typical.csv" in src, src
    assert not src.startswith("assumed:"), src
    for name in EXPECTED[drug][key][1]:
        r = row(drug, name)
        assert _citation(r.source) in src, (_citation(r.source), src)
        if "nlmixr2lib" in r.source:
            assert "nlmixr2lib" in src, src


@pytest.mark.parametrize("drug", sorted(EXPECTED))
def test_constant_clearance_cards_keep_clss_equal_to_cl(drug):
    card = load_card(drug)
    v = card.values()
    if not card.structure.get("time_varying_cl"):
        assert v["CLSS"] == v["CL"] and v["KCL"] == 0.0
    else:
        assert v["CLSS"] < v["CL"] and v["KCL"] > 0


def test_time_varying_clearance_where_the_popk_has_it():
    for drug in ("teclistamab", "mosunetuzumab"):
        assert load_card(drug).structure["time_varying_cl"] is True
    # odronextamab: the Michaelis-Menten target-mediated clearance is left to the mechanistic CD20 binding
    assert load_card("odronextamab").structure["time_varying_cl"] is False


def test_odronextamab_volumes_split_the_published_vss():
    v = load_card("odronextamab").values()
    assert v["V1"] + v["V2"] == pytest.approx(val("odronextamab", "Vss"), rel=RTOL)
    assert v["V1"] / (v["V1"] + v["V2"]) == pytest.approx(3.1 / (3.1 + 2.8), rel=RTOL)  # mAb median V1 share
    src = load_card("odronextamab").sources()
    assert "assumed" in src["V1"] and "Michaelis-Menten" in src["CL"]


def test_catumaxomab_sources_state_the_derivations():
    src = load_card("catumaxomab").sources()
    assert "2.13" in src["CL"] and "ln2" in src["CL"]
    assert "< 1%" in src["F"]


def test_tebentafusp_states_the_half_life_discrepancy():
    src = load_card("tebentafusp").sources()
    for key in ("CL", "V1"):
        assert "20 h" in src[key] and "6-8 h" in src[key]


def test_epcoritamab_notes_the_apparent_values_and_the_tmdd_terms():
    src = load_card("epcoritamab").sources()
    for key in ("CL", "V1", "V2", "Q"):
        assert "/F" in src[key] and "F 0.7" in src[key]
    assert "KSS" in src["CL"] and "kint" in src["CL"]


def test_uncarried_covariates_are_listed():
    words = {"teclistamab": ("CL", ["ISS", "non-IgG"]), "elranatamab": ("CL", ["sex", "female"]),
             "mosunetuzumab": ("CLSS", ["sex", "SPD"]), "tarlatamab": ("CL", ["ADA"]),
             "odronextamab": ("CL", ["albumin", "IL-10"])}
    for drug, (key, ws) in words.items():
        src = load_card(drug).sources()[key]
        for w in ws:
            assert w in src, (drug, key, w)
    assert "albumin" in load_card("mosunetuzumab").sources()["CL"]
    assert "age" in load_card("elranatamab").sources()["KA"]


def _li2025_typical_free_conc(doses, ts):
    """Li et al. Clin Pharmacokinet 2025 typical epcoritamab (75 kg, 65 y): free concentration (ug/mL), SC doses in mg.

    Written from the published equations (2-cmt, first-order absorption, QSS TMDD with constant target;
    Table 2 values from data/poppk_typical.csv), solved with SciPy: an independent check of the card.
    """
    from scipy.integrate import solve_ivp
    import numpy as np

    cl, q, vc, vp, ka = (val("epcoritamab", k) for k in ("CL_over_F", "Q_over_F", "V1_over_F", "V2_over_F", "KA"))
    base, kss, kint = (val("epcoritamab", k) if row("epcoritamab", k).unit != "ug/mL" else float(row("epcoritamab", k).value)
                       for k in ("TMDD_BASE", "TMDD_KSS", "TMDD_KINT"))

    def free(ctot):
        a = ctot - base - kss
        return 2 * kss * ctot / (np.sqrt(a * a + 4 * kss * ctot) - a)

    def rhs(t, y):
        dep, cen, per = y
        c = free(max(cen, 0.0) / vc)
        return [-ka * dep, ka * dep - (cl + q) * c + q / vp * per - kint * base * c * vc / (kss + c), q * c - q / vp * per]

    y = np.zeros(3)
    out = np.zeros_like(ts)
    times = [t for t, _ in doses] + [ts[-1] + 1.0]
    for i, (td, amt) in enumerate(doses):
        y[0] += amt
        m = (ts >= td) & (ts < times[i + 1])
        sol = solve_ivp(rhs, (td, times[i + 1]), y, t_eval=ts[m], rtol=1e-10, atol=1e-14, method="LSODA",
                        dense_output=True)
        out[m] = free(sol.y[1] / vc)
        y = sol.sol(times[i + 1]).copy()
    return out


def test_epcoritamab_serum_concentration_follows_the_published_popk():
    """The card's serum concentration is the popPK typical free concentration over the label step-up and
    the first weekly full doses (cell binding and T-cell dynamics add little: within 5%)."""
    import numpy as np
    import qsp

    card = load_card("epcoritamab")
    reg = card.regimen().expanded()
    doses = [(float(d.time), float(d.amount)) for d in reg.doses if d.time <= 28.0]
    assert {d.unit for d in reg.doses} == {"mg"} and [a for _, a in doses[:3]] == [0.16, 0.8, 48.0]
    ts = np.linspace(0.25, 35.0, 140)
    res = qsp.simulate(card.model(), reg, ts, covariates=card.covariates())
    ref = _li2025_typical_free_conc([d for d in doses], ts)
    got = np.asarray(res["conc_ug_per_ml"])
    m = ts <= 35.0
    ratio = got[m] / ref[m]
    assert np.all(np.abs(ratio - 1.0) < 0.05), (ratio.min(), ratio.max())
    # without the pool, the step-up concentrations are several-fold higher (why the pool is there)
    nopool = np.asarray(qsp.simulate(card.model(), reg, ts, {"TMDD_BASE": 0.0}, covariates=card.covariates())["conc_ug_per_ml"])
    early = ts < 14.0
    assert np.median(nopool[early] / ref[early]) > 3.0
