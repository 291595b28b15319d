"""Calibration targets as data (qsp.calibrate.targets): the shipped tables, their clocks and their validation."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qsp.calibrate import (AT_RISK, COLUMNS, GRADES, N_ORIGIN, PREMEDICATION, REGIMEN_MATCH, ROUTES, SCOPES,
                           SELECTIONS, STUDY_KINDS, SUMMARY_ERROR_MODELS, SUMMARY_QUANTITIES, SUMMARY_STATISTICS,
                           TIMECOURSE_QUANTITIES, TIMECOURSE_STATISTICS, TargetSet, align_to_regimen, load_targets)
from qsp.cards import list_cards
from qsp.errors import InputError, InputErrors
from qsp.io.regimen_csv import load_label_regimen

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
DIG = DATA / "digitized"


@pytest.fixture(scope="module")
def targets() -> TargetSet:
    return load_targets()


# --------------------------------------------------------------------------------------------------
# the shipped tables
# --------------------------------------------------------------------------------------------------
def test_shipped_tables_load_from_package_data(targets):
    assert targets.folder == "data/targets"
    assert len(targets.studies) == 29 and len(targets.crs_incidence) == 32
    assert len(targets.timecourses) == 362 and len(targets.summaries) == 33
    # every card but catumaxomab (only PK priors in data/) has targets
    assert targets.drugs() == sorted(set(list_cards()) - {"catumaxomab"})
    # every study is used by at least one target
    used = set(targets.crs_incidence.study_id) | set(targets.timecourses.study_id) | set(targets.summaries.study_id)
    assert used == set(targets.studies.study_id)
    assert str(targets).startswith("TargetSet(data/targets: 29 studies")


def test_loading_the_repository_folder_gives_the_same_tables(targets):
    again = load_targets(DATA / "targets")
    for name in ("studies", "crs_incidence", "timecourses", "summaries"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(targets, name))


def test_teclistamab_per_dose_crs(targets):
    c = targets.for_drug("teclistamab").crs_incidence
    d = c[c.scope == "dose"]
    assert list(d.dose_no) == ["1", "2", "3", "4+"]
    assert list(d.pct) == [42, 36, 25, 2] and set(d.n) == {165} and set(d.grade) == {"any"}
    assert list(d.at_risk) == ["crs_after_dose"] * 3 + ["first_crs_after_dose"]
    assert list(d.events) == [69, 59, 41, 3]  # filled on load: round(pct * n / 100)


def test_elranatamab_per_dose_crs(targets):
    c = targets.for_drug("elranatamab").crs_incidence
    d = c[c.scope == "dose"].sort_values("dose_no")
    assert list(d.dose_no) == ["1", "2", "3"]
    assert list(d.pct) == [43, 19, 7] and list(d.n) == [183, 180, 183] and list(d.events) == [79, 35, 13]


def test_every_crs_by_dose_row_is_a_target(targets):
    src = pd.read_csv(DATA / "crs_by_dose.csv", dtype={"dose_no": str})
    c = targets.crs_incidence
    for r in src.itertuples(index=False):
        hit = c[(c.drug == r.drug) & (c.scope == "dose") & (c.dose_no == r.dose_no) & (c.grade == "any")]
        assert len(hit) == 1, (r.drug, r.dose_no)
        assert hit.pct.iloc[0] == r.crs_any_pct and hit.n.iloc[0] == r.n and hit.source.iloc[0] == r.source
        assert r.regimen in targets.study(hit.study_id.iloc[0])["regimen"].split("|")


def test_overall_crs_for_every_drug_of_crs_overall(targets):
    src = pd.read_csv(DATA / "crs_overall.csv")
    assert len(src) == 11
    c = targets.crs_incidence[targets.crs_incidence.scope == "overall"]
    for r in src.itertuples(index=False):
        mine = c[c.drug == r.drug]
        anyg = mine[mine.grade == "any"]
        assert len(anyg) == 1 and anyg.pct.iloc[0] == pytest.approx(r.crs_any_pct), r.drug
        assert anyg.n.iloc[0] >= 1 and anyg.source.iloc[0] == r.source
        if not np.isnan(r.n):
            assert anyg.n.iloc[0] == r.n and anyg.n_origin.iloc[0] == "source"
        else:
            assert mine.n_origin.isin(["added", "recalled"]).all() and mine.note.str.contains("N not in data/").all()
        g3 = mine[mine.grade == "g3plus"]
        assert len(g3) == 1 and g3.pct.iloc[0] == pytest.approx(r.crs_g3plus_pct)
        g2 = mine[mine.grade == "g2plus"]
        if np.isnan(r.crs_g2_pct):
            assert g2.empty
        else:  # derived, and said so
            assert g2.pct.iloc[0] == pytest.approx(r.crs_g2_pct + r.crs_g3plus_pct)
            assert "derived" in g2.note.iloc[0]
        assert set(mine.n) == {anyg.n.iloc[0]} and set(mine.at_risk) == {"crs_over_treatment"}
    tec = c[(c.drug == "teclistamab") & (c.grade == "g2plus")]
    assert tec.pct.iloc[0] == pytest.approx(21.8)


def test_ada_and_pk_summaries(targets):
    s = targets.summaries
    ada = s[s.quantity == "ada_incidence_pct"].set_index("drug")
    assert set(ada.index) == {"epcoritamab", "elranatamab", "blinatumomab", "mosunetuzumab"}
    assert ada.loc["epcoritamab", "error_model"] == "binomial" and ada.loc["epcoritamab", "n"] == 140
    assert ada.loc["blinatumomab", "error_model"] == "upper_bound" and ada.loc["blinatumomab", "upper"] == 1
    tec = s[s.drug == "teclistamab"].set_index("quantity")
    assert tec.loc["tmax_h", "value"] == 139 and tec.loc["tmax_h", "dose_no"] == 3
    assert tec.loc["accumulation_ratio_cmax", "value"] == 2.71 and tec.loc["accumulation_ratio_cmax", "dose_no"] == 9
    assert tec.loc["accumulation_ratio_cmax", "reference_dose_no"] == 3
    onset = s[s.quantity == "crs_onset_h"].set_index("drug")["value"].to_dict()
    assert onset == {"teclistamab": 48, "talquetamab": 27, "glofitamab": 14, "tarlatamab": 10}
    # bioavailability is a parameter (a prior), not a target
    assert not s.source_value.str.contains("bioavailab", case=False).any()


def test_every_dose_a_target_names_exists_in_its_label_regimen(targets):
    want: dict[str, int] = {}
    for df in (targets.summaries, targets.timecourses):
        for sid, d in zip(df.study_id, df.dose_no):
            if not pd.isna(d):
                want[sid] = max(want.get(sid, 0), int(d))
    for sid, d in zip(targets.crs_incidence.study_id, targets.crs_incidence.dose_no):
        if d:
            want[sid] = max(want.get(sid, 0), int(d.rstrip("+")))
    for sid, top in want.items():
        st = targets.study(sid)
        if st["regimen_match"] in ("partial", "nearest"):
            continue  # doses beyond the label regimen are the point of these
        for reg in st["regimen"].split("|"):
            n = len(load_label_regimen(st["drug"], reg, until_day=400).regimen.expanded().doses)
            assert n >= top, (sid, reg, n, top)


# --------------------------------------------------------------------------------------------------
# digitized series: every point, and the clock conversion of each file
# --------------------------------------------------------------------------------------------------
def _digitized(name):
    df = pd.read_csv(DIG / name, skipinitialspace=True)
    df.columns = ["t", "v"]
    df["source_row"] = np.arange(1, len(df) + 1)
    return df


MOSUN_END_OF_INFUSION = {7.062: 7 + 4 / 24, 14.124: 14 + 4 / 24, 42.0: 42 + 2 / 24}
EPCO_DOSES = [7.0 * w for w in list(range(12)) + list(range(12, 36, 2)) + [36, 40]]
CONVERSIONS = {
    # file: (study, quantity, statistic, expected time_day for the source times)
    "teclistamab_il6_mean_majestec1.csv": ("MajesTEC-1", "il6_pg_per_ml", "mean",
                                           lambda t: align_to_regimen(t / 24, [0, 3, 7, 14, 21], [0, 3, 6, 13, 20])[0]),
    "teclistamab_sc_pk_mean.csv": ("MajesTEC-1", "conc_ug_per_ml", "mean",
                                   lambda t: align_to_regimen(7 * t + 7, [0, 3, 7, 14, 21, 28],
                                                              [0, 3, 6, 13, 20, 27])[0]),
    "mosunetuzumab_pk_label_stepup.csv": ("mosunetuzumab-label-PK", "conc_ug_per_ml", "mean",
                                          lambda t: np.array([MOSUN_END_OF_INFUSION.get(x, x) for x in t])),
    "epcoritamab_pk_48mg_poppk_med.csv": ("epcoritamab-FDA-popPK-sim", "conc_ug_per_ml", "median", lambda t: 7 * t),
    "epcoritamab_pk_48mg_poppk_lo.csv": ("epcoritamab-FDA-popPK-sim", "conc_ug_per_ml", "band_lower", lambda t: 7 * t),
    "epcoritamab_pk_48mg_poppk_hi.csv": ("epcoritamab-FDA-popPK-sim", "conc_ug_per_ml", "band_upper", lambda t: 7 * t),
    "blinatumomab_il6_peaks_stepup.csv": ("blinatumomab-Hijazi2018", "il6_pg_per_ml", "individual_peak", lambda t: t),
}


def test_every_digitized_file_is_a_target_series():
    assert {p.name for p in DIG.glob("*.csv")} == set(CONVERSIONS)


@pytest.mark.parametrize("name", sorted(CONVERSIONS))
def test_digitized_points_and_clock_conversion(targets, name):
    study, quantity, statistic, clock = CONVERSIONS[name]
    src = _digitized(name)
    tc = targets.timecourses
    mine = tc[tc.source_file == f"digitized/{name}"].sort_values("source_row")
    assert set(mine.study_id) == {study} and set(mine.quantity) == {quantity} and set(mine.statistic) == {statistic}
    kept = src.drop_duplicates(["t", "v"])  # exact duplicate readings are kept once, and said so
    assert list(mine.source_row) == list(kept.source_row)
    for row in src[src.duplicated(["t", "v"])].itertuples():
        first = kept[(kept.t == row.t) & (kept.v == row.v)].source_row.iloc[0]
        note = mine[mine.source_row == first].note.iloc[0]
        assert f"data rows {first} and {row.source_row}" in note
    np.testing.assert_allclose(mine.value.to_numpy(), kept.v.to_numpy())
    np.testing.assert_allclose(mine.time_day.to_numpy(), clock(kept.t.to_numpy(float)), atol=1e-6)
    assert (mine.time_day >= 0).all() and (mine.error_model == "lognormal").all() and (mine.sigma > 0).all()


def test_clock_spot_checks(targets):
    tc = targets.timecourses
    il6 = tc[tc.source_file.str.contains("il6_mean")].set_index("source_row")
    # first IL-6 point: 0 h after step-up dose 1 -> model day 0, dose 1
    assert il6.loc[1, "time_day"] == 0 and il6.loc[1, "dose_no"] == 1 and il6.loc[1, "source_time"] == "0.00"
    # 168.58 h (a pre-dose reading at the first 1.5 mg/kg dose, given at 168 h in MajesTEC-1) -> label day 6
    at = il6[il6.source_time == "168.58"]
    assert len(at) == 2 and np.allclose(at.time_day, 6 + 0.58 / 24) and set(at.dose_no) == {3}
    assert il6[il6.source_time == "504.00"].time_day.iloc[0] == pytest.approx(20.0)
    # teclistamab PK: week 0 = the first 1.5 mg/kg dose = model day 6 (label day 7), not the README's day 7
    t, dose = align_to_regimen(7 * 0.0 + 7, [0, 3, 7, 14, 21, 28], [0, 3, 6, 13, 20, 27])
    assert t[0] == 6.0 and dose[0] == 3
    assert load_label_regimen("teclistamab", "label_weekly", until_day=35).regimen.doses[2].time == 6.0
    pk = tc[tc.source_file.str.contains("teclistamab_sc_pk")].set_index("source_time")
    assert pk.loc["-0.911", "time_day"] == pytest.approx(0.623)   # before step-up dose 2: unchanged
    assert pk.loc["0.051", "time_day"] == pytest.approx(6.357)    # 0.357 days after the first 1.5 mg/kg dose
    assert pk.loc["3.949", "time_day"] == pytest.approx(33.643) and pk.loc["3.949", "dose_no"] == 6
    mo = tc[tc.source_file.str.contains("mosunetuzumab")].set_index("source_time")
    assert mo.loc["42", "time_day"] == pytest.approx(42 + 2 / 24) and "end of the infusion" in mo.loc["42", "note"]
    assert mo.loc["21.186", "time_day"] == pytest.approx(21.186)
    ep = tc[(tc.source_file.str.contains("poppk_med")) & (tc.source_time == "12.3120")]
    assert ep.time_day.iloc[0] == pytest.approx(86.184) and ep.dose_no.iloc[0] == 13
    bl = tc[tc.source_file.str.contains("blinatumomab")]
    assert set(bl[bl.time_day < 7].dose_no) == {1} and set(bl[bl.time_day >= 14].dose_no) == {3}
    tcell = tc[tc.quantity == "blood_t_cells_per_ul"]
    assert list(tcell.time_day) == [0.0, 0.25] and list(tcell.value) == [552, 243]
    assert set(tcell.statistic) == {"median"} and set(tcell.unit) == {"cells/uL"}


def test_selection_rules_of_the_series(targets):
    tc = targets.timecourses
    assert set(tc[tc.source_file.str.contains("il6_mean")].selection) == {"crs_patients_before_tocilizumab"}
    bl = tc[tc.source_file.str.contains("blinatumomab")]
    assert set(bl.selection) == {"individual"} and len(bl) == 66 and bl.value.max() == pytest.approx(2002.6)
    assert set(targets.summaries[targets.summaries.quantity == "crs_onset_h"].selection) == {"crs_patients"}


def test_align_to_regimen_refuses_points_it_cannot_place():
    t, k = align_to_regimen([0.5, 3.5, 7.2], [0, 3, 7], [0, 3, 6])
    np.testing.assert_allclose(t, [0.5, 3.5, 6.2])
    assert list(k) == [1, 2, 3]
    with pytest.raises(ValueError, match="precede the first dose"):
        align_to_regimen([-0.1], [0, 3], [0, 3])
    with pytest.raises(ValueError, match="after the next model dose"):
        align_to_regimen([6.5], [0, 3, 7], [0, 3, 6])  # 3.5 d after dose 2: past the model's dose 3


# --------------------------------------------------------------------------------------------------
# helpers of the target set
# --------------------------------------------------------------------------------------------------
def test_for_drug_describe_and_label_regimen_subset(targets):
    tec = targets.for_drug("Teclistamab")
    assert tec.drugs() == ["teclistamab"] and set(tec.studies.drug) == {"teclistamab"}
    lines = tec.describe()
    n_series = tec.timecourses.groupby(["study_id", "quantity", "statistic"]).ngroups
    assert len(lines) == len(tec.crs_incidence) + n_series + len(tec.summaries)
    assert any("42% of 165" in s for s in lines) and any("mean il6_pg_per_ml, 24 points" in s for s in lines)
    assert len(targets.describe()) == 32 + 8 + 33
    empty = targets.for_drug("catumaxomab")
    assert len(empty) == 0 and empty.drugs() == []
    with pytest.raises(InputError, match="unknown drug 'aspirin'"):
        targets.for_drug("aspirin")
    with pytest.raises(InputError, match="unknown study_id"):
        targets.study("nope")
    lab = targets.on_label_regimen()
    assert "odronextamab" not in lab.drugs()  # ELM-2 DLBCL dosed otherwise (nearest)
    ep = lab.timecourses[lab.timecourses.study_id == "epcoritamab-FDA-popPK-sim"]
    assert len(ep) and ep.time_day.max() < 84
    bl = lab.timecourses[lab.timecourses.study_id == "blinatumomab-Hijazi2018"]
    assert len(bl) == 52 and bl.time_day.max() < 14


def test_readme_and_docstring_document_every_allowed_value():
    import qsp.calibrate.targets as mod

    readme = (DATA / "targets" / "README.md").read_text()
    vocab = (list(ROUTES) + list(PREMEDICATION) + list(STUDY_KINDS) + list(REGIMEN_MATCH) + list(SCOPES)
             + list(GRADES) + list(AT_RISK) + list(N_ORIGIN) + list(SELECTIONS) + list(TIMECOURSE_QUANTITIES)
             + list(TIMECOURSE_STATISTICS) + list(SUMMARY_QUANTITIES) + list(SUMMARY_STATISTICS)
             + list(SUMMARY_ERROR_MODELS))
    for word in vocab:
        assert f"`{word}`" in readme and f"``{word}``" in mod.__doc__, word
    for unit in set(TIMECOURSE_QUANTITIES.values()) | {u for u, _ in SUMMARY_QUANTITIES.values()}:
        assert f"`{unit}`" in readme and f"``{unit}``" in mod.__doc__, unit
    for cols in COLUMNS.values():
        for c in cols:
            assert f"`{c}" in readme and c in mod.__doc__, c
    for name in ("studies.csv", "crs_incidence.csv", "timecourses.csv", "summaries.csv"):
        assert name in mod.__doc__


# --------------------------------------------------------------------------------------------------
# malformed tables: refused, naming file, data row and field (and the allowed values)
# --------------------------------------------------------------------------------------------------
BASE = {
    "studies.csv": [dict(study_id="S1", drug="teclistamab", regimen="label_weekly", regimen_match="exact", route="SC",
                         population="r/r MM", n="165", premedication="label", prior_tcr_fraction="0",
                         crs_grading="ASTCT", kind="observed", source="test")],
    "crs_incidence.csv": [dict(study_id="S1", scope="dose", dose_no="1", grade="any", n="165", pct="42",
                               at_risk="crs_after_dose", n_origin="source", source="test")],
    "timecourses.csv": [dict(study_id="S1", quantity="il6_pg_per_ml", statistic="mean", time_day="0.5", dose_no="1",
                             value="3.2", unit="pg/mL", error_model="lognormal", sigma="0.5",
                             selection="crs_patients_before_tocilizumab", source="test")],
    "summaries.csv": [dict(study_id="S1", quantity="tmax_h", statistic="typical", dose_no="3", value="139", unit="h",
                           error_model="lognormal", sigma="0.3", selection="all", source="test")],
}


def write_folder(folder: Path, tables: dict | None = None, *, extra_columns: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (tables or BASE).items():
        cols = list(COLUMNS[name]) + list((extra_columns or {}).get(name, []))
        with open(folder / name, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            for r in rows:
                w.writerow({c: r.get(c, "") for c in cols})
    return folder


def with_cells(table: str, **cells) -> dict:
    out = {k: [dict(r) for r in v] for k, v in BASE.items()}
    out[table][0].update(cells)
    return out


def test_the_base_folder_is_valid(tmp_path):
    t = load_targets(write_folder(tmp_path))
    assert len(t.studies) == 1 and len(t) == 3 and t.drugs() == ["teclistamab"]
    assert t.crs_incidence.events.iloc[0] == 69 and t.timecourses.drug.iloc[0] == "teclistamab"


BAD = [
    # table, cells, field, words the message must hold (the allowed values among them)
    ("studies.csv", dict(drug="aspirin"), "drug", ["unknown drug 'aspirin'", "allowed:", "teclistamab"]),
    ("studies.csv", dict(regimen="label_daily"), "regimen", ["unknown regimen 'label_daily' for teclistamab",
                                                             "allowed: label_weekly"]),
    ("studies.csv", dict(regimen="label_weekly|label"), "regimen", ["unknown regimen 'label'"]),
    ("studies.csv", dict(route="IV"), "route", ["differs from the route", "allowed: SC"]),
    ("studies.csv", dict(route="oral"), "route", ["unknown route 'oral'", "SC, IV, IV_continuous, IP"]),
    ("studies.csv", dict(premedication="dex"), "premedication", ["allowed: label, none"]),
    ("studies.csv", dict(regimen_match="partial"), "regimen_match_until_day", ["required"]),
    ("studies.csv", dict(regimen_match="aligned"), "regimen_note", ["regimen_note is required"]),
    ("studies.csv", dict(prior_tcr_fraction="1.5"), "prior_tcr_fraction", ["out of range", "<= 1"]),
    ("studies.csv", dict(n="12.5"), "n", ["not an integer"]),
    ("studies.csv", dict(kind="guess"), "kind", ["allowed: observed, model_derived"]),
    ("studies.csv", dict(crs_grading="CTC"), "crs_grading", ["unknown crs_grading 'CTC'",
                                                             "allowed: ASTCT, Lee2014, CTCAE_v4, CTCAE_v5"]),
    ("studies.csv", dict(crs_grading=""), "crs_grading", ["'S1' has CRS incidence rows", "data row 1",
                                                          "grading system is required", "ASTCT"]),
    ("studies.csv", dict(source=""), "source", ["source is required"]),
    ("studies.csv", dict(study_id="S 1"), "study_id", ["not a valid id"]),
    ("crs_incidence.csv", dict(study_id="S9"), "study_id", ["unknown study_id 'S9'", "allowed: S1"]),
    ("crs_incidence.csv", dict(n=""), "n", ["n is required", "number at risk"]),
    ("crs_incidence.csv", dict(pct="120"), "pct", ["120 is out of range", ">= 0 and <= 100"]),
    ("crs_incidence.csv", dict(pct="-3"), "pct", ["out of range"]),
    ("crs_incidence.csv", dict(grade="g4"), "grade", ["unknown grade 'g4'", "allowed: any, g2plus, g3plus"]),
    ("crs_incidence.csv", dict(scope="cycle"), "scope", ["allowed: dose, overall"]),
    ("crs_incidence.csv", dict(scope="overall", at_risk="crs_over_treatment"), "dose_no", ["must be empty"]),
    ("crs_incidence.csv", dict(dose_no="first"), "dose_no", ["not a dose number", "k+"]),
    ("crs_incidence.csv", dict(events="50"), "events", ["does not round to pct 42"]),
    ("crs_incidence.csv", dict(at_risk="someone"), "at_risk", ["allowed: crs_after_dose"]),
    ("crs_incidence.csv", dict(scope="overall", dose_no=""), "at_risk", ["does not fit scope overall"]),
    ("crs_incidence.csv", dict(n_origin="added"), "note", ["where N comes from"]),
    ("timecourses.csv", dict(time_day="-1"), "time_day", ["-1 is out of range", ">= 0", "model clock"]),
    ("timecourses.csv", dict(time_day=""), "time_day", ["time_day is required"]),
    ("timecourses.csv", dict(selection="responders"), "selection", ["unknown selection 'responders'",
                                                                    "crs_patients_before_tocilizumab"]),
    ("timecourses.csv", dict(selection="crs_after_dose_before_tocilizumab", dose_no=""), "dose_no",
     ["dose_no is required", "CRS patients the mean is over"]),
    ("timecourses.csv", dict(selection="crs_after_dose_before_tocilizumab", statistic="median"), "selection",
     ["per-dose mean", "allowed: mean"]),
    ("timecourses.csv", dict(sigma="0"), "sigma", ["out of range", "> 0"]),
    ("timecourses.csv", dict(sigma="-0.3"), "sigma", ["out of range"]),
    ("timecourses.csv", dict(unit="ng/mL"), "unit", ["unknown unit 'ng/mL'", "allowed: pg/mL"]),
    ("timecourses.csv", dict(quantity="tnf_pg_per_ml"), "quantity", ["unknown quantity", "il6_pg_per_ml"]),
    ("timecourses.csv", dict(statistic="mode"), "statistic", ["unknown statistic 'mode'", "individual_peak"]),
    ("timecourses.csv", dict(statistic="individual_peak"), "selection", ["do not fit together"]),
    ("timecourses.csv", dict(value="0"), "value", ["out of range", "> 0"]),
    ("timecourses.csv", dict(value="abc"), "value", ["'abc' is not a number"]),
    ("timecourses.csv", dict(error_model="normal"), "error_model", ["allowed: lognormal"]),
    ("timecourses.csv", dict(source=""), "source", ["source is required"]),
    ("summaries.csv", dict(dose_no=""), "dose_no", ["dose_no is required", "refers to a dose"]),
    ("summaries.csv", dict(unit="d"), "unit", ["unknown unit 'd'", "allowed: h"]),
    ("summaries.csv", dict(error_model="binomial", sigma=""), "n", ["n is required", "binomial"]),
    ("summaries.csv", dict(error_model="interval", sigma="", lower="200", upper="100"), "upper", ["must exceed"]),
    ("summaries.csv", dict(error_model="interval", sigma="", lower="20", upper="100"), "value", ["outside"]),
    ("summaries.csv", dict(error_model="upper_bound", sigma=""), "upper", ["upper is required"]),
    ("summaries.csv", dict(error_model="poisson"), "error_model", ["allowed: lognormal, normal, binomial"]),
    ("summaries.csv", dict(quantity="accumulation_ratio_cmax", unit="fold", reference_dose_no="3"),
     "reference_dose_no", ["must be an earlier dose"]),
    ("summaries.csv", dict(quantity="ada_incidence_pct", unit="%", dose_no=""), "statistic", ["allowed: incidence"]),
    ("summaries.csv", dict(sigma=""), "sigma", ["lognormal needs sigma"]),
    ("summaries.csv", dict(selection="responders"), "selection", ["unknown selection 'responders'"]),
]


@pytest.mark.parametrize("table,cells,field,words", BAD, ids=[f"{b[0][:-4]}-{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_malformed_table_is_refused_naming_file_row_and_field(tmp_path, table, cells, field, words):
    folder = write_folder(tmp_path / "t", with_cells(table, **cells))
    with pytest.raises(InputError) as ei:
        load_targets(folder)
    errs = ei.value.errors if isinstance(ei.value, InputErrors) else [ei.value]
    mine = [e for e in errs if e.field == field]
    assert mine, [str(e) for e in errs]
    msg = str(mine[0])
    assert f"{folder / table} data row 1 (file line 2), {field}:" in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_every_bad_row_is_reported_at_once(tmp_path):
    tables = {k: [dict(r) for r in v] for k, v in BASE.items()}
    tables["crs_incidence.csv"].append(dict(tables["crs_incidence.csv"][0], dose_no="2", pct="120"))
    tables["timecourses.csv"][0]["time_day"] = "-1"
    tables["summaries.csv"][0]["selection"] = "responders"
    tables["studies.csv"].append(dict(tables["studies.csv"][0], study_id="S2", drug="aspirin"))
    folder = write_folder(tmp_path / "t", tables)
    with pytest.raises(InputErrors) as ei:
        load_targets(folder)
    got = {(Path(e.file).name, e.row, e.field) for e in ei.value.errors}
    assert got == {("crs_incidence.csv", 2, "pct"), ("timecourses.csv", 1, "time_day"),
                   ("summaries.csv", 1, "selection"), ("studies.csv", 2, "drug")}
    assert "4 invalid record(s)" in str(ei.value)


def test_duplicate_rows_are_refused(tmp_path):
    tables = {k: [dict(r) for r in v] for k, v in BASE.items()}
    tables["crs_incidence.csv"].append(dict(tables["crs_incidence.csv"][0]))
    tables["studies.csv"].append(dict(tables["studies.csv"][0]))
    with pytest.raises(InputErrors) as ei:
        load_targets(write_folder(tmp_path / "t", tables))
    msgs = [str(e) for e in ei.value.errors]
    assert any(re.search(r"crs_incidence\.csv data row 2 .*duplicate row: same study_id, scope, dose_no, grade as "
                         r"data row 1", m) for m in msgs), msgs
    assert any(re.search(r"studies\.csv data row 2 .*duplicate row: same study_id as data row 1", m) for m in msgs)


def test_table_level_mistakes(tmp_path):
    # an unknown column
    f = write_folder(tmp_path / "a", extra_columns={"summaries.csv": ["comment"]})
    with pytest.raises(InputError, match=r"summaries\.csv, comment: unknown column 'comment'; allowed: study_id"):
        load_targets(f)
    # a missing column
    f = write_folder(tmp_path / "b")
    text = (f / "timecourses.csv").read_text().replace(",sigma,", ",")
    (f / "timecourses.csv").write_text(text.replace(",0.5,crs", ",crs"))
    with pytest.raises(InputError, match=r"timecourses\.csv, sigma: required column 'sigma' is missing"):
        load_targets(f)
    # a misspelt table file is not skipped silently
    f = write_folder(tmp_path / "c")
    (f / "timecourses.csv").rename(f / "timecourse.csv")
    with pytest.raises(InputError, match=r"unknown table file 'timecourse.csv'; allowed: studies.csv"):
        load_targets(f)
    # studies.csv is required
    f = write_folder(tmp_path / "d")
    (f / "studies.csv").unlink()
    with pytest.raises(InputError, match="studies.csv is required"):
        load_targets(f)
    # a row with the wrong number of fields
    f = write_folder(tmp_path / "e")
    with open(f / "crs_incidence.csv", "a") as fh:
        fh.write("S1,dose,2\n")
    with pytest.raises(InputError, match=r"crs_incidence\.csv data row 2 \(file line 3\), row: has 3 fields"):
        load_targets(f)
    # not a folder
    with pytest.raises(InputError, match="not a folder"):
        load_targets(tmp_path / "missing")


def test_absent_target_tables_mean_no_targets_of_that_kind(tmp_path):
    f = write_folder(tmp_path / "t")
    (f / "timecourses.csv").unlink()
    (f / "summaries.csv").unlink()
    t = load_targets(f)
    assert len(t.timecourses) == 0 and list(t.timecourses.columns)[:2] == ["study_id", "drug"]
    assert len(t.crs_incidence) == 1
