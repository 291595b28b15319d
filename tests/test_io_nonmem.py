"""NONMEM dataset reader and writer: conversion, defaults, round trip and every validation error."""

from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd
import pytest

from qsp import Dose, InputError, Regimen, pk_model
from qsp.errors import InputErrors
from qsp.io import read_nonmem, to_nonmem, write_nonmem

M2 = pk_model("pk-2cmt", time_unit="h")


def read(text: str, **kw):
    return read_nonmem(io.StringIO(text), M2, **kw)


# --------------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------------
FULL = """\
ID,TIME,AMT,EVID,CMT,RATE,II,ADDL,MDV,DV,WT,SEX
1,0,.,0,.,.,.,.,0,.,70,F
1,0,100,1,2,0,0,0,1,.,70,F
1,0,.,0,.,.,.,.,0,8.2,70,F
1,1,.,0,.,.,.,.,0,4.1,70,F
1,24,50,1,2,25,0,0,1,.,70,F
1,30,80,1,1,0,24,2,1,.,70,F
1,100,.,2,.,.,.,.,1,.,70,F
2,0,100,1,1,0,12,3,1,.,82.5,M
2,5,.,0,.,.,.,.,0,1.5,82.5,M
"""


def test_regimens_times_and_left_flags():
    ds = read(FULL)
    assert ds.ids == [1, 2]
    s1, s2 = ds.subjects
    assert s1.regimen == Regimen((Dose(0.0, 100.0, "mg", "IV_bolus"),
                                  Dose(24.0, 50.0, "mg", "IV_infusion", duration=2.0),
                                  Dose(30.0, 80.0, "mg", "SC", ii=24.0, addl=2)), time_unit="h")
    assert s2.regimen == Regimen((Dose(0.0, 100.0, "mg", "SC", ii=12.0, addl=3),), time_unit="h")
    np.testing.assert_array_equal(s1.times, [0, 0, 0, 1, 24, 30, 100])
    # the first observation comes before the dose record at TIME 0: pre-dose; the third after it
    np.testing.assert_array_equal(s1.left, [True, False, False, False, False, False, False])
    np.testing.assert_array_equal(s1.evid, [0, 1, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(s1.rows, [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(s2.rows, [7, 8])
    np.testing.assert_array_equal(s1.obs_times, [0, 0, 1, 100])
    assert s1.covariates == {"WT": 70.0, "SEX": "F"} and s2.covariates == {"WT": 82.5, "SEX": "M"}
    assert ds.covariate_names == ("WT", "SEX")
    assert list(ds.raw.columns)[:2] == ["ID", "TIME"] and ds.raw.iloc[0, 3] == "0"
    assert np.isnan(s1.dv[0]) and s1.dv[2] == 8.2


def test_defaults_when_columns_are_absent():
    ds = read("ID,TIME,AMT,CMT\n1,0,100,2\n1,2,.,.\n1,4,0,\n")
    s = ds.subjects[0]
    np.testing.assert_array_equal(s.evid, [1, 0, 0])
    np.testing.assert_array_equal(s.mdv, [1, 0, 0])
    assert s.regimen == Regimen((Dose(0.0, 100.0, "mg", "IV_bolus"),), time_unit="h")
    assert np.all(np.isnan(s.dv))
    assert ds.covariate_names == ()


def test_evid_from_mdv_and_mdv_fixed_on_dose_rows():
    ds = read("ID,TIME,AMT,CMT,MDV\n1,0,100,2,0\n1,1,.,.,1\n1,2,.,.,0\n")
    s = ds.subjects[0]
    np.testing.assert_array_equal(s.evid, [1, 2, 0])  # AMT > 0 -> dose; MDV=1 without AMT -> other
    np.testing.assert_array_equal(s.mdv, [1, 1, 0])  # MDV of a dose row is 1 (as NONMEM sets it)


def test_lowercase_header_whitespace_comments_and_time_in_days():
    text = "# a comment line\nid time amt cmt rate wt\n1 0 10 2 . 70\n# another\n1 1.5 . . . 70\n"
    ds = read_nonmem(io.StringIO(text), M2, time_unit="day")
    s = ds.subjects[0]
    assert s.regimen.time_unit == "day"
    np.testing.assert_array_equal(s.times, [0.0, 1.5])
    np.testing.assert_array_equal(ds.lines, [3, 5])
    assert ds.covariate_names == ("wt",)


def test_dataframe_input_and_file_path(tmp_path):
    df = pd.DataFrame({"ID": [1, 1], "TIME": [0.0, 1.0], "AMT": [5.0, np.nan], "CMT": [2, np.nan]})
    ds = read_nonmem(df, M2)
    assert ds.subjects[0].regimen.doses[0].amount == 5.0
    p = tmp_path / "d.csv"
    p.write_text(FULL)
    assert read_nonmem(p, M2).regimens == read(FULL).regimens
    assert read_nonmem(str(p), M2).source == str(p)


def test_modelled_rate_and_duration():
    text = "ID,TIME,AMT,CMT,RATE\n1,0,90,2,-2\n1,10,80,2,-1\n"
    s = read(text, params={"D2": 3.0, "R2": 40.0}).subjects[0]
    assert [d.duration for d in s.regimen.doses] == [3.0, 2.0]
    assert all(d.route == "IV_infusion" for d in s.regimen.doses)


def test_default_cmt():
    s = read("ID,TIME,AMT\n1,0,10\n", default_cmt=1).subjects[0]
    assert s.regimen.doses[0].route == "SC"


def test_reset_records_and_time_restart():
    text = """ID,TIME,AMT,EVID,CMT,II,ADDL
1,0,100,1,2,.,.
1,10,.,0,.,.,.
1,24,.,0,.,.,.
1,0,50,4,1,12,1
1,1,.,0,.,.,.
1,5,.,3,.,.,.
1,6,.,0,.,.,.
"""
    s = read(text).subjects[0]
    # the clock restarts at the EVID 4 row: it is placed at the previous time (24) and later rows shifted by 24
    np.testing.assert_array_equal(s.times, [0, 10, 24, 24, 25, 29, 30])
    np.testing.assert_array_equal(s.left, [False, False, True, False, False, False, False])
    assert s.regimen == Regimen((
        Dose(0.0, 100.0, "mg", "IV_bolus"),
        Dose(24.0, 0.0, "mg", "IV_bolus", reset=True),  # EVID 4 = reset ...
        Dose(24.0, 50.0, "mg", "SC", ii=12.0, addl=1),  # ... then an ordinary dose (its repeats do not reset)
        Dose(29.0, 0.0, "mg", "IV_bolus", reset=True),  # EVID 3
    ), time_unit="h")


# --------------------------------------------------------------------------------------------------
# round trip
# --------------------------------------------------------------------------------------------------
ROUND = """\
ID,TIME,AMT,EVID,CMT,RATE,II,ADDL,MDV,DV,WT
1,0,.,0,.,.,.,.,0,.,70
1,0,100,1,2,0,0,0,1,.,70
1,0.25,.,0,.,.,.,.,0,7.25,70
1,12,.,0,.,.,.,.,0,2.1,70
1,12,35.5,1,2,7.3,0,0,1,.,70
1,24,80,1,1,0,24,2,1,.,70
1,48,.,3,.,.,.,.,1,.,70
1,48,.,0,.,.,.,.,0,0.1,70
1,50,60,4,1,0,0,0,1,.,70
1,60,.,2,.,.,.,.,1,.,70
2,0,20,1,2,3,12,4,1,.,64.2
2,0.3333333333333333,.,0,.,.,.,.,0,1.23456789012345,64.2
2,72,.,0,.,.,.,.,0,.,64.2
"""


def _assert_same(a, b):
    assert a.ids == b.ids
    for x, y in zip(a.subjects, b.subjects):
        assert x.regimen == y.regimen
        np.testing.assert_array_equal(x.obs_times, y.obs_times)
        np.testing.assert_array_equal(x.obs_left, y.obs_left)
        np.testing.assert_array_equal(x.obs_evid, y.obs_evid)
        np.testing.assert_array_equal(x.obs_dv, y.obs_dv)
        assert x.covariates == y.covariates


def test_read_write_read_round_trip(tmp_path):
    first = read(ROUND)
    text = write_nonmem(first, model=M2)
    assert text.splitlines()[0] == "ID,TIME,AMT,EVID,CMT,RATE,II,ADDL,MDV,DV,WT"
    second = read(text)
    _assert_same(first, second)
    # the reset followed by a dose at the same time is one EVID 4 row again
    assert ",50,60,4,1," in text
    # written to a file, too
    p = tmp_path / "out.csv"
    write_nonmem(to_nonmem(second, M2), p)
    _assert_same(first, read_nonmem(p, M2))


def test_round_trip_in_days():
    ds = read_nonmem(io.StringIO(ROUND), M2, time_unit="day")
    again = read_nonmem(io.StringIO(write_nonmem(ds, model=M2)), M2, time_unit="day")
    _assert_same(ds, again)


def test_writer_from_regimens():
    regs = [Regimen((Dose(0.0, 2.0, "mg", "SC", ii=7.0, addl=3),), time_unit="day"),
            Regimen((Dose(0.0, 500.0, "ug", "IV_infusion", duration=1.0 / 24.0),), time_unit="day")]
    df = to_nonmem(regs, M2, ids=[10, 20], obs_times=[[1.0, 7.0], [0.5]], dv=[[0.1, np.nan], None],
                   covariates=[{"WT": 60.0}, {"WT": 90.0}], time_unit="h")
    assert list(df.columns) == ["ID", "TIME", "AMT", "EVID", "CMT", "RATE", "II", "ADDL", "MDV", "DV", "WT"]
    assert df.ID.tolist() == [10, 10, 10, 20, 20]
    dose = df.iloc[0]
    assert (dose.TIME, dose.AMT, dose.EVID, dose.CMT, dose.II, dose.ADDL) == (0.0, 2.0, 1, 1, 168.0, 3)
    inf = df.iloc[3]
    assert inf.AMT == 0.5 and inf.CMT == 2 and inf.RATE == pytest.approx(0.5)  # 500 ug = 0.5 mg over 1 h
    assert df.MDV.tolist() == [1, 0, 1, 1, 1]
    ds = read(write_nonmem(df))
    assert ds.subjects[0].regimen == regs[0].in_unit("h")
    assert ds.subjects[1].regimen.doses[0].duration == pytest.approx(1.0)


def test_writer_single_regimen_and_left_observation():
    reg = Regimen((Dose(2.0, 10.0, "mg", "IV_bolus"),), time_unit="h")
    df = to_nonmem(reg, M2, obs_times=[2.0, 2.0], obs_left=[True, False])
    assert df.EVID.tolist() == [0, 1, 0]
    s = read(write_nonmem(df)).subjects[0]
    np.testing.assert_array_equal(s.left, [True, False, False])


def test_writer_errors():
    with pytest.raises(InputError, match="no NONMEM compartment"):
        to_nonmem(Regimen((Dose(0.0, 1.0, "mg", "IP"),), time_unit="h"), M2)
    with pytest.raises(InputError, match="obs_times"):
        to_nonmem([Regimen(time_unit="h")] * 2, M2, obs_times=[[1.0]])
    with pytest.raises(InputError, match="clashes"):
        to_nonmem(Regimen(time_unit="h"), M2, covariates={"AMT": 1})
    with pytest.raises(InputError, match="weight"):
        to_nonmem(Regimen((Dose(0.0, 1.0, "mg/kg", "SC"),), time_unit="h"), M2)
    with pytest.raises(InputError, match="model"):
        write_nonmem([Regimen(time_unit="h")])


# --------------------------------------------------------------------------------------------------
# validation: every error names the data row and the field
# --------------------------------------------------------------------------------------------------
H = "ID,TIME,AMT,EVID,CMT,RATE,II,ADDL,MDV,DV\n"
OBS = "1,0,.,0,.,.,.,.,0,.\n"

ROW_ERRORS = [
    # (rows after the header, data row, field, text in the message)
    ("x,0,.,0,.,.,.,.,0,.\n", 1, "ID", "not a number"),
    (".,0,.,0,.,.,.,.,0,.\n", 1, "ID", "required"),
    (OBS + "1,abc,.,0,.,.,.,.,0,.\n", 2, "TIME", "not a number"),
    (OBS + "1,.,.,0,.,.,.,.,0,.\n", 2, "TIME", "required"),
    (OBS + "1,inf,.,0,.,.,.,.,0,.\n", 2, "TIME", "finite"),
    ("1,5,.,0,.,.,.,.,0,.\n1,4,.,0,.,.,.,.,0,.\n", 2, "TIME", "must not decrease"),
    ("1,5,.,0,.,.,.,.,0,.\n1,4,10,1,2,.,.,.,1,.\n", 2, "TIME", "EVID 3/4"),
    (OBS + "2,0,.,0,.,.,.,.,0,.\n1,1,.,0,.,.,.,.,0,.\n", 3, "ID", "contiguous"),
    (OBS + "1,1,.,7,.,.,.,.,0,.\n", 2, "EVID", "EVID=7 is not allowed"),
    (OBS + "1,1,.,1.5,.,.,.,.,0,.\n", 2, "EVID", "integer"),
    (OBS + "1,1,-5,1,2,.,.,.,1,.\n", 2, "AMT", "positive AMT"),
    (OBS + "1,1,0,1,2,.,.,.,1,.\n", 2, "AMT", "positive AMT"),
    (OBS + "1,1,nan,1,2,.,.,.,1,.\n", 2, "AMT", "finite"),
    (OBS + "1,1,ten,1,2,.,.,.,1,.\n", 2, "AMT", "not a number"),
    (OBS + "1,1,5,0,2,.,.,.,0,.\n", 2, "AMT", "takes no dose"),
    (OBS + "1,1,5,3,.,.,.,.,1,.\n", 2, "AMT", "takes no dose"),
    (OBS + "1,1,5,1,.,.,.,.,1,.\n", 2, "CMT", "needs a CMT"),
    (OBS + "1,1,5,1,3,.,.,.,1,.\n", 2, "CMT", "unknown compartment CMT=3"),
    (OBS + "1,1,5,1,-2,.,.,.,1,.\n", 2, "CMT", "unknown compartment"),
    (OBS + "1,1,5,1,1.5,.,.,.,1,.\n", 2, "CMT", "integer"),
    (OBS + "1,1,5,1,2,-3,.,.,1,.\n", 2, "RATE", "negative RATE=-3"),
    (OBS + "1,1,5,1,2,-1,.,.,1,.\n", 2, "RATE", "R2"),
    (OBS + "1,1,5,1,2,-2,.,.,1,.\n", 2, "RATE", "D2"),
    (OBS + "1,1,.,0,.,5,.,.,0,.\n", 2, "RATE", "only dose records"),
    (OBS + "1,1,5,1,2,.,-12,.,1,.\n", 2, "II", "non-negative"),
    (OBS + "1,1,.,0,.,.,12,.,0,.\n", 2, "II", "only dose records"),
    (OBS + "1,1,5,1,2,.,.,3,1,.\n", 2, "ADDL", "needs a positive II"),
    (OBS + "1,1,5,1,2,.,12,-1,1,.\n", 2, "ADDL", "non-negative"),
    (OBS + "1,1,5,1,2,.,12,1.5,1,.\n", 2, "ADDL", "integer"),
    (OBS + "1,1,.,0,.,.,.,2,0,.\n", 2, "ADDL", "only dose records"),
    (OBS + "1,1,50,1,2,1,12,2,1,.\n", 2, "RATE", "longer than the interdose interval"),
    (OBS + "1,1,.,0,.,.,.,.,2,.\n", 2, "MDV", "MDV=2 is not allowed"),
    (OBS + "1,1,.,0,.,.,.,.,0,BLQ\n", 2, "DV", "not a number"),
    (OBS + "1,1,.,0,.,.,.\n", 2, "row", "has 7 fields but the header has 10"),
]


@pytest.mark.parametrize("rows, row, fld, text", ROW_ERRORS, ids=[f"{e[2]}-{e[3]}" for e in ROW_ERRORS])
def test_each_row_error(rows, row, fld, text):
    with pytest.raises(InputError) as ei:
        read(H + rows)
    e = ei.value
    assert not isinstance(e, InputErrors), str(e)
    msg = str(e)
    assert e.row == row and e.field == fld, msg
    assert msg.startswith(f"data row {row} (file line {row + 1}), {fld}: "), msg
    assert text in msg, msg


HS = "ID,TIME,AMT,EVID,CMT,RATE,II,ADDL,SS,MDV,DV\n"
OBS_S = "1,0,.,0,.,.,.,.,.,0,.\n"
SS_ERRORS = [
    # malformed steady-state records (NONMEM's rules), each refused naming the row and field
    (OBS_S + "1,1,10,1,2,.,.,.,1,1,.\n", 2, "II", "needs a positive II"),  # SS without II
    (OBS_S + "1,1,10,1,2,.,0,.,2,1,.\n", 2, "II", "needs a positive II"),
    (OBS_S + "1,1,10,1,2,.,-12,.,1,1,.\n", 2, "II", "non-negative"),  # negative II
    (OBS_S + "1,1,10,1,2,5,12,2,1,1,.\n", 2, "ADDL", "steady-state infusion"),  # SS infusion with ADDL
    (OBS_S + "1,1,0,1,2,5,12,.,1,1,.\n", 2, "II", "constant infusion"),  # constant infusion with II
    (OBS_S + "1,1,0,1,2,-2,12,.,1,1,.\n", 2, "AMT", "positive AMT"),
    (OBS_S + "1,1,10,1,2,.,12,.,3,1,.\n", 2, "SS", "SS=3 is not allowed; allowed: 0, 1, 2"),
    (OBS_S + "1,1,10,1,2,.,12,.,0.5,1,.\n", 2, "SS", "integer"),
    (OBS_S + "1,1,.,0,.,.,.,.,1,0,.\n", 2, "SS", "only dose records"),  # SS on an observation
    (OBS_S + "1,1,.,3,.,.,.,.,1,1,.\n", 2, "SS", "only dose records"),  # SS on a reset
]


@pytest.mark.parametrize("rows, row, fld, text", SS_ERRORS, ids=[f"{e[2]}-{e[3]}" for e in SS_ERRORS])
def test_each_ss_row_error(rows, row, fld, text):
    with pytest.raises(InputError) as ei:
        read(HS + rows)
    e = ei.value
    assert not isinstance(e, InputErrors), str(e)
    assert e.row == row and e.field == fld, str(e)
    assert str(e).startswith(f"data row {row} (file line {row + 1}), {fld}: "), str(e)
    assert text in str(e), str(e)


def test_zero_order_input_into_the_depot_is_read():
    ds = read("ID,TIME,AMT,CMT,RATE\n1,0,10,1,5\n")
    (d,) = ds.subjects[0].regimen.doses
    assert d.route == "SC" and d.duration == 2.0 and d.keep == "rate"


def test_all_errors_reported_at_once_in_row_order():
    text = H + "1,0,-1,1,2,.,.,.,1,.\n1,x,.,0,.,.,.,.,0,.\n1,2,5,1,9,.,.,.,1,.\n1,3,.,0,.,.,.,.,0,.\n1,2.5,.,0,.,.,.,.,0,.\n"
    with pytest.raises(InputErrors) as ei:
        read(text)
    errs = ei.value.errors
    assert [(e.row, e.field) for e in errs] == [(1, "AMT"), (2, "TIME"), (3, "CMT"), (5, "TIME")]
    assert str(ei.value).startswith("4 invalid record(s): data row 1 (file line 2), AMT")


def test_row_numbers_skip_comments_and_name_file_lines():
    text = "# study X\nID,TIME,AMT,CMT\n# dosing\n1,0,-1,2\n"
    with pytest.raises(InputError) as ei:
        read(text)
    assert ei.value.row == 1 and str(ei.value).startswith("data row 1 (file line 4), AMT")


def test_dataframe_rows_are_numbered_from_one():
    df = pd.DataFrame({"ID": [1, 1], "TIME": [0, 1], "AMT": [1.0, -3.0], "CMT": [2, 2]})
    with pytest.raises(InputError) as ei:
        read_nonmem(df, M2)
    assert ei.value.row == 2 and str(ei.value).startswith("data row 2, AMT")


@pytest.mark.parametrize("text, fld, msg", [
    ("TIME,AMT\n0,1\n", "ID", "required column ID is missing"),
    ("ID,AMT\n1,1\n", "TIME", "required column TIME is missing"),
    ("ID,TIME,time\n1,0,0\n", "TIME", "more than once"),
    ("ID,TIME,,AMT\n1,0,,1\n", "header", "empty column name"),
    ("", "dataset", "empty"),
    ("# only a comment\n", "dataset", "empty"),
    ("ID,TIME\n", "dataset", "no data rows"),
])
def test_header_errors(text, fld, msg):
    with pytest.raises(InputError) as ei:
        read(text)
    assert ei.value.field == fld and msg in str(ei.value)


def test_file_and_argument_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_nonmem(tmp_path / "missing.csv", M2)
    with pytest.raises(InputError, match="directory"):
        read_nonmem(tmp_path, M2)
    with pytest.raises(InputError, match="time unit"):
        read("ID,TIME\n1,0\n", time_unit="min")
    with pytest.raises(InputError, match="R<cmt> or D<cmt>"):
        read("ID,TIME\n1,0\n", params={"CL": 1.0})
    with pytest.raises(InputError, match="D2 must be a positive"):
        read("ID,TIME\n1,0\n", params={"D2": -1.0})
    with pytest.raises(InputError, match="default compartment 5"):
        read("ID,TIME\n1,0\n", default_cmt=5)


# --------------------------------------------------------------------------------------------------
# size limits (qsp.limits): counted before any regimen is built or repeat expanded
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def no_expansion(monkeypatch):
    """Reading must never expand repeats: Dose.repeats / Regimen.expanded fail if called."""
    def boom(self):
        raise AssertionError("repeats expanded while reading")

    monkeypatch.setattr(Dose, "repeats", boom)
    monkeypatch.setattr(Regimen, "expanded", boom)


def test_huge_addl_refused_fast_before_any_expansion(no_expansion, monkeypatch):
    monkeypatch.delenv("QSP_MAX_EVENTS", raising=False)
    text = H + "1,0,100,1,2,0,24,10000000,1,.\n1,24,.,0,.,.,.,.,0,.\n"
    t0 = time.perf_counter()
    with pytest.raises(InputError) as ei:
        read(text)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0
    e, msg = ei.value, str(ei.value)
    assert not isinstance(e, InputErrors), msg
    assert e.row == 1 and e.field == "ADDL", msg
    assert msg.startswith("data row 1 (file line 2), ADDL: ADDL=10000000"), msg
    assert "10,000,001 dose events" in msg and "limit of 5,000" in msg and "QSP_MAX_EVENTS" in msg, msg
    # the same with a tiny II: the count does not depend on II
    with pytest.raises(InputError, match="QSP_MAX_EVENTS"):
        read(H + "1,0,100,1,2,0,0.0001,10000000,1,.\n")


def test_many_small_rows_summing_over_the_limit(no_expansion, monkeypatch):
    monkeypatch.delenv("QSP_MAX_EVENTS", raising=False)
    rows = "".join(f"1,{k},1,1,2,0,0.5,9,1,.\n" for k in range(600))  # 600 rows x 10 doses = 6000
    with pytest.raises(InputError) as ei:
        read(H + rows)
    e, msg = ei.value, str(ei.value)
    assert e.row == 501 and e.field == "ADDL", msg  # rows 1..500 give 5000 events; row 501 goes over
    assert msg.startswith("data row 501 (file line 502), ADDL:"), msg
    assert "5,010 dose events, 6,000 in all" in msg and "QSP_MAX_EVENTS" in msg, msg


def test_single_doses_and_resets_count_and_name_the_id(no_expansion, monkeypatch):
    monkeypatch.setenv("QSP_MAX_EVENTS", "4")
    # EVID 4 counts 2 (a reset and a dose), EVID 3 counts 1: 2 + 1 + 1 = 4 is within the limit ...
    ok = H + "1,0,5,4,2,.,.,.,1,.\n1,1,.,3,.,.,.,.,1,.\n1,2,5,1,2,.,.,.,1,.\n1,3,.,0,.,.,.,.,0,.\n"
    assert len(read(ok).subjects[0].regimen) == 4
    # ... one more single dose (no ADDL) goes over: named by its row and the field ID
    with pytest.raises(InputError) as ei:
        read(ok + "1,4,5,1,2,.,.,.,1,.\n")
    e, msg = ei.value, str(ei.value)
    assert e.row == 5 and e.field == "ID", msg
    assert "ID 1 to 5 dose events" in msg and "limit of 4" in msg and "QSP_MAX_EVENTS" in msg, msg


def test_every_id_over_the_limit_is_reported(monkeypatch):
    monkeypatch.setenv("QSP_MAX_EVENTS", "10")
    text = H + "1,0,5,1,2,.,1,20,1,.\n2,0,5,1,2,.,1,3,1,.\n3,0,5,1,2,.,1,5,1,.\n3,9,5,1,2,.,1,5,1,.\n"
    with pytest.raises(InputErrors) as ei:
        read(text)
    assert [(e.row, e.field) for e in ei.value.errors] == [(1, "ADDL"), (4, "ADDL")]


def test_events_limit_is_inclusive_and_raised_by_the_environment(no_expansion, monkeypatch):
    monkeypatch.delenv("QSP_MAX_EVENTS", raising=False)
    at_limit = read(H + "1,0,100,1,2,0,1,4999,1,.\n")  # 5000 events: allowed
    assert at_limit.subjects[0].regimen.doses[0].addl == 4999
    over = H + "1,0,100,1,2,0,1,9999,1,.\n"
    with pytest.raises(InputError, match="QSP_MAX_EVENTS"):
        read(over)
    monkeypatch.setenv("QSP_MAX_EVENTS", "20000")
    ds = read(over)
    assert ds.subjects[0].regimen.doses[0].addl == 9999 and len(ds.subjects[0].regimen) == 1
    monkeypatch.setenv("QSP_MAX_EVENTS", "lots")
    with pytest.raises(InputError, match="QSP_MAX_EVENTS"):
        read(over)


def test_ids_over_the_limit(monkeypatch):
    monkeypatch.setenv("QSP_MAX_IDS", "3")
    rows = "".join(f"{i},0,.,0,.,.,.,.,0,.\n{i},1,.,0,.,.,.,.,0,.\n" for i in (1, 2, 3))
    assert read(H + rows).ids == [1, 2, 3]
    with pytest.raises(InputError) as ei:
        read(H + rows + "4,0,.,0,.,.,.,.,0,.\n5,0,.,0,.,.,.,.,0,.\n")
    e, msg = ei.value, str(ei.value)
    assert not isinstance(e, InputErrors), msg
    assert e.row == 7 and e.field == "ID", msg  # the first row of the 4th ID
    assert msg.startswith("data row 7 (file line 8), ID:"), msg
    assert "5 IDs" in msg and "limit of 3" in msg and "QSP_MAX_IDS" in msg, msg


def test_writer_refuses_to_write_out_huge_reset_repeats_fast(monkeypatch):
    monkeypatch.delenv("QSP_MAX_EVENTS", raising=False)
    reg = Regimen((Dose(0.0, 10.0, "mg", "IV_bolus", ii=1.0, addl=10_000_000, reset=True),), time_unit="h")
    t0 = time.perf_counter()
    with pytest.raises(InputError) as ei:
        to_nonmem(reg, M2, ids=[7])
    assert time.perf_counter() - t0 < 2.0
    msg = str(ei.value)
    assert msg.startswith("ID 7: ") and "ADDL" in msg and "QSP_MAX_EVENTS" in msg, msg
    # repeats without a reset stay one row (nothing is written out): no limit applies to writing them
    df = to_nonmem(Regimen((Dose(0.0, 10.0, "mg", "IV_bolus", ii=1.0, addl=10_000_000),), time_unit="h"), M2)
    assert len(df) == 1 and df.ADDL.iloc[0] == 10_000_000


def test_left_flags_many_rows_at_one_time():
    # pre-dose flags: output rows followed by a dose/reset row at the same TIME (mixed pattern) ...
    text = H + ("1,0,.,0,.,.,.,.,0,.\n1,0,.,2,.,.,.,.,1,.\n1,0,5,1,2,.,.,.,1,.\n1,0,.,0,.,.,.,.,0,.\n"
                "1,0,.,3,.,.,.,.,1,.\n1,0,.,0,.,.,.,.,0,.\n1,1,.,0,.,.,.,.,0,.\n1,2,.,0,.,.,.,.,0,.\n"
                "1,2,5,1,2,.,.,.,1,.\n")
    np.testing.assert_array_equal(read(text).subjects[0].left, [1, 1, 0, 1, 0, 0, 0, 1, 0])
    # ... found in linear time, also when thousands of rows share one TIME
    n = 20_000
    big = H + "1,0,.,0,.,.,.,.,0,.\n" * n + "1,0,5,1,2,.,.,.,1,.\n"
    t0 = time.perf_counter()
    s = read(big).subjects[0]
    assert time.perf_counter() - t0 < 10.0
    assert s.left[:n].all() and not s.left[n]
