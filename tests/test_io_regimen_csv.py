"""Plain regimen tables and the label regimen library (data/regimens.csv)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from qsp import Dose, InputError, Regimen
from qsp.errors import InputErrors
from qsp.io import label_regimens, load_label_regimen, read_regimen_csv, regimen_to_table, write_regimen_csv

DATA = Path(__file__).resolve().parents[1] / "data" / "regimens.csv"


def read(text: str, **kw) -> Regimen:
    return read_regimen_csv(io.StringIO(text), **kw)


PLAIN = """\
day,dose,unit,route,infusion_h,repeat_every_days,repeat_until_day,label
1,0.06,mg/kg,SC,,,,step-up 1
4,0.3,mg/kg,sc,,,,step-up 2
8,10,mg,IV,4,,,infusion
9,5,mg,IV_bolus,,,,bolus
15,28,ug/day,IV_continuous,504,42,99,cycles
22,48,mg,SC,,7,50,weekly
30,20,ug,IP,,,,peritoneal
"""


def test_read_plain_regimen():
    reg = read(PLAIN)
    assert reg.time_unit == "day"
    assert reg.doses == (
        Dose(0.0, 0.06, "mg/kg", "SC", label="step-up 1"),
        Dose(3.0, 0.3, "mg/kg", "SC", label="step-up 2"),
        Dose(7.0, 10.0, "mg", "IV_infusion", duration=4 / 24, label="infusion"),
        Dose(8.0, 5.0, "mg", "IV_bolus", label="bolus"),
        Dose(14.0, 28.0, "ug/day", "IV_continuous", duration=21.0, ii=42.0, addl=2, label="cycles"),
        Dose(21.0, 48.0, "mg", "SC", ii=7.0, addl=4, label="weekly"),  # days 22, 29, 36, 43, 50
        Dose(29.0, 20.0, "ug", "IP", label="peritoneal"),
    )


def test_minimal_columns_note_alias_and_horizon():
    reg = read("day,dose,unit,route,repeat_every_days,note\n1,1,mg,SC,,first\n8,2,mg,SC,7,weekly\n", until_day=28)
    assert reg.doses[1] == Dose(7.0, 2.0, "mg", "SC", ii=7.0, addl=2, label="weekly")  # days 8, 15, 22
    assert reg.doses[0].label == "first"
    assert read("day,dose,unit,route\n2,1,mg,SC\n").doses[0].time == 1.0


def test_day_zero_origin():
    reg = read("day,dose,unit,route\n0,10,ug,IP\n3,20,ug,IP\n")
    assert [d.time for d in reg.doses] == [0.0, 3.0]
    assert [d.time for d in read("day,dose,unit,route\n5,1,mg,SC\n", day_origin=5).doses] == [0.0]


def test_round_trip(tmp_path):
    first = read(PLAIN)
    text = write_regimen_csv(first)
    assert text.splitlines()[0] == "day,dose,unit,route,infusion_h,repeat_every_days,repeat_until_day,label"
    assert read(text) == first
    p = tmp_path / "r.csv"
    write_regimen_csv(first, p)
    assert read_regimen_csv(p) == first
    # a regimen written from hours
    h = Regimen((Dose(12.0, 3.0, "mg", "IV_infusion", duration=0.5),), time_unit="h")
    back = read(write_regimen_csv(h))
    assert back.doses[0].time == 0.5 and back.doses[0].duration == pytest.approx(0.5 / 24)


def test_steady_state_and_zero_order_sc_round_trip():
    text = ("day,dose,unit,route,infusion_h,repeat_every_days,repeat_until_day,label,steady_state\n"
            "1,48,mg,SC,,7,15,maintenance at steady state,1\n"
            "20,10,mg,SC,6,,,zero-order into the depot,\n"
            "22,5,mg,IV,2,7,,steady state added,2\n")
    reg = read(text, until_day=22)
    a, b, c = reg.doses
    assert (a.ss, a.ii, a.addl) == (1, 7.0, 2) and b.duration == pytest.approx(0.25) and b.route == "SC"
    assert (c.ss, c.ii, c.addl) == (2, 7.0, 0)
    out = write_regimen_csv(reg)
    assert out.splitlines()[0].endswith(",steady_state")
    assert read(out) == reg
    # bad values, each naming the field
    for row, fld, msg in (("1,48,mg,SC,,,,x,1\n", "steady_state", "needs repeat_every_days"),
                          ("1,48,mg,SC,,7,15,x,3\n", "steady_state", "0, 1 or 2"),
                          ("1,48,mg,IV,2,7,15,x,1\n", "repeat_until_day", "steady-state infusion does not repeat")):
        with pytest.raises(InputError) as ei:
            read(text.splitlines()[0] + "\n" + row)
        assert msg in str(ei.value) and ei.value.field == fld, str(ei.value)
    # a steady-state infusion (also one longer than its interval) is not repeated up to the horizon
    inf = read(text.splitlines()[0] + "\n1,5,mg,IV,200,7,,x,1\n", until_day=30).doses[0]
    assert (inf.ss, inf.addl, inf.ii) == (1, 0, 7.0) and inf.duration == pytest.approx(200 / 24)


def test_writer_rejects_what_the_table_cannot_hold():
    with pytest.raises(InputError, match="resets"):
        regimen_to_table(Regimen((Dose(0.0, 1.0, reset=True),)))
    with pytest.raises(InputError, match="explicit compartments"):
        regimen_to_table(Regimen((Dose(0.0, 1.0, cmt="depot"),)))


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
HDR = "day,dose,unit,route,infusion_h,repeat_every_days,repeat_until_day,label\n"
OK = "1,1,mg,SC,,,,\n"

ROW_ERRORS = [
    ("x,1,mg,SC,,,,\n", "day", "not a number"),
    (",1,mg,SC,,,,\n", "day", "required"),
    ("-2,1,mg,SC,,,,\n", "day", "non-negative"),
    ("nan,1,mg,SC,,,,\n", "day", "finite"),
    ("1,-1,mg,SC,,,,\n", "dose", "positive"),
    ("1,0,mg,SC,,,,\n", "dose", "positive"),
    ("1,nan,mg,SC,,,,\n", "dose", "finite"),
    ("1,lots,mg,SC,,,,\n", "dose", "not a number"),
    ("1,,mg,SC,,,,\n", "dose", "required"),
    ("1,1,grain,SC,,,,\n", "unit", "unknown dose unit"),
    ("1,1,,SC,,,,\n", "unit", "required"),
    ("1,1,ug/day,IV,4,,,\n", "unit", "IV_continuous"),
    ("1,1,mg,oral,,,,\n", "route", "unknown route 'oral'; allowed: SC, IV, IV_bolus, IV_continuous, IP"),
    ("1,1,mg,,,,,\n", "route", "required"),
    ("1,1,ug/day,IV_continuous,,,,\n", "infusion_h", "needs infusion_h"),
    ("1,1,mg,IV_infusion,,,,\n", "infusion_h", "needs infusion_h"),
    ("1,1,mg,IV,,,,\n", "infusion_h", "route IV needs infusion_h (hours); write IV_bolus for a bolus"),
    ("1,1,mg,iv,,7,29,\n", "infusion_h", "route IV needs infusion_h (hours); write IV_bolus for a bolus"),
    ("1,1,mg,IV_bolus,2,,,\n", "infusion_h", "takes no infusion_h (use IV for an IV infusion)"),
    ("1,1,mg,bolus,0.5,,,\n", "infusion_h", "takes no infusion_h"),
    ("1,1,mg,IV,0,,,\n", "infusion_h", "positive"),
    ("1,1,mg,IV,abc,,,\n", "infusion_h", "not a number"),
    ("1,1,mg,IV,200,7,30,\n", "infusion_h", "longer than the interdose interval"),
    ("1,1,mg,SC,,0,10,\n", "repeat_every_days", "positive"),
    ("1,1,mg,SC,,7,,\n", "repeat_until_day", "horizon"),
    ("10,1,mg,SC,,7,5,\n", "repeat_until_day", "before the dose's day"),
    ("1,1,mg,SC,,,20,\n", "repeat_until_day", "needs repeat_every_days"),
    ("1,1,mg,SC,,,\n", "row", "has 7 fields but the header has 8"),
    ("1,2,mg,SC,,,,\n", "day", "data rows 1 and 2 (file lines 2 and 3), day: both give a dose on day 1; "
                               "a split dose goes on consecutive days (or at a fractional day such as 1.5)"),
]


@pytest.mark.parametrize("row, fld, text", ROW_ERRORS, ids=[f"{e[1]}-{e[2]}" for e in ROW_ERRORS])
def test_each_row_error(row, fld, text):
    with pytest.raises(InputError) as ei:
        read(HDR + OK + row)
    e = ei.value
    assert not isinstance(e, InputErrors), str(e)
    msg = str(e)
    assert e.row == 2 and e.field == fld, msg
    if text.startswith("data rows"):  # an error about two rows names both
        assert msg.startswith(text), msg
    else:
        assert msg.startswith(f"data row 2 (file line 3), {fld}: "), msg
        assert text in msg, msg


def test_all_errors_at_once():
    with pytest.raises(InputErrors) as ei:
        read(HDR + "x,1,mg,SC,,,,\n1,-1,mg,SC,,,,\n1,1,mg,XX,,,,\n")
    assert [(e.row, e.field) for e in ei.value.errors] == [(1, "day"), (2, "dose"), (3, "route")]


@pytest.mark.parametrize("text, msg", [
    ("day,dose,unit\n1,1,mg\n", "required column 'route'"),
    ("day,dose,unit,route,day\n1,1,mg,SC,1\n", "more than once"),
    ("day,dose,unit,route\n", "no rows"),
    ("", "empty"),
])
def test_table_errors(text, msg):
    with pytest.raises(InputError, match=msg):
        read(text)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_regimen_csv(tmp_path / "none.csv")


# --------------------------------------------------------------------------------------------------
# the label library
# --------------------------------------------------------------------------------------------------
def test_project_table_is_the_shared_one_with_sources():
    df = pd.read_csv(DATA)
    assert list(df.columns) == ["drug", "regimen", "dose_no", "day", "dose", "unit", "route", "infusion_h",
                                "repeat_every_days", "repeat_until_day", "note", "source"]
    assert df.source.notna().all()


def _library_cases():
    return [pytest.param(drug, name, id=f"{drug}-{name}")
            for drug, name in label_regimens()[["drug", "regimen"]].itertuples(index=False)]


def test_library_has_the_expected_drugs():
    assert {"teclistamab", "glofitamab", "blinatumomab", "catumaxomab"} <= set(label_regimens().drug)


@pytest.mark.parametrize("drug, name", _library_cases())
def test_every_label_regimen_loads_and_every_iv_dose_has_a_duration(drug, name):
    lr = load_label_regimen(drug, name, until_day=400)
    assert len(lr.regimen) > 0 and lr.regimen.time_unit == "day"
    assert lr.sources and lr.regimen.doses[0].time >= 0
    for d in lr.regimen.doses + lr.pretreatment.doses:
        if d.route.startswith("IV"):
            assert d.route in ("IV_infusion", "IV_continuous") and d.duration > 0, (drug, name, d)
    days = [round(x.time, 9) for x in lr.regimen.expanded().doses]
    assert len(days) == len(set(days)), (drug, name)  # one dose of the drug a day


def test_every_iv_row_of_the_library_has_infusion_h():
    df = pd.read_csv(DATA)
    iv = df[df.route.str.upper().isin(["IV", "IV_INFUSION", "IV_CONTINUOUS"])]
    assert iv.infusion_h.notna().all(), iv[iv.infusion_h.isna()][["drug", "dose_no"]]
    assert not df.route.eq("IV_bolus").any()  # no label in the library gives an IV bolus


def test_assumed_infusion_durations_say_so():
    # Rows whose label duration could not be read carry an assumed 4 h and say so in the note.
    df = pd.read_csv(DATA)
    for drug, n in [("linvoseltamab", 2), ("linvoseltamab", 3), ("linvoseltamab", 4)] + \
            [("odronextamab", k) for k in range(1, 8)]:
        row = df[(df.drug == drug) & (df.dose_no == n)].iloc[0]
        assert row.infusion_h == 4.0 and "infusion_h 4 h assumed" in row.note, (drug, n)


def test_label_infusion_durations_as_found():
    df = pd.read_csv(DATA).set_index(["drug", "dose_no"])
    # Lynozyfic US PI Table 1: "Step-up Dosing Schedule | Day 1 | Step-up dose 1 | 5 mg | 4 hours"
    row = df.loc[("linvoseltamab", 1)]
    assert (row.day, row.dose, row.route, row.infusion_h) == (1, 5.0, "IV", 4.0)
    assert "duration of infusion 4 hours" in row.note and "Lynozyfic" in row.source


def test_teclistamab_label():
    lr = load_label_regimen("Teclistamab", until_day=35)
    assert lr.name == "label_weekly"  # the first listed regimen is the default
    d = lr.regimen.doses
    assert [x.time for x in d] == [0.0, 3.0, 6.0, 13.0]
    assert d[0] == Dose(0.0, 0.06, "mg/kg", "SC", label="step-up dose 1")
    assert (d[3].ii, d[3].addl) == (7.0, 3)  # days 14, 21, 28, 35
    assert lr.sources == ("US prescribing information (Tecvayli) section 2",)


def test_glofitamab_pretreatment_is_kept_apart():
    lr = load_label_regimen("glofitamab")
    assert all("obinutuzumab" not in d.label for d in lr.regimen.doses)
    assert [d.time for d in lr.regimen.doses] == [7.0, 14.0, 21.0]  # day 1 (time 0) is the pretreatment day
    assert lr.pretreatment.doses == (Dose(0.0, 1000.0, "mg", "IV_infusion", duration=4 / 24,
                                          label="obinutuzumab pretreatment (not glofitamab; debulks CD20+ cells)"),)
    assert "obinutuzumab" in lr.pretreatment_notes[0]
    last = lr.regimen.doses[-1]
    assert (last.ii, last.addl) == (21.0, 11)  # day 22 every 21 days up to day 253


def test_blinatumomab_and_catumaxomab():
    b = load_label_regimen("blinatumomab", until_day=100).regimen.doses
    assert b[0] == Dose(0.0, 9.0, "ug/day", "IV_continuous", duration=7.0, label=b[0].label)
    assert (b[1].duration, b[1].ii, b[1].addl) == (21.0, 42.0, 2)
    c = load_label_regimen("catumaxomab")
    assert c.day_origin == 0 and [d.time for d in c.regimen.doses] == [0.0, 3.0, 7.0, 10.0]


def test_label_round_trip_through_plain_csv():
    lr = load_label_regimen("mosunetuzumab")
    assert read(write_regimen_csv(lr.regimen)).doses == lr.regimen.doses


def test_label_errors(tmp_path):
    with pytest.raises(InputError, match="unknown drug 'nodrug'; the label table has: .*teclistamab"):
        load_label_regimen("nodrug")
    with pytest.raises(InputError, match="unknown regimen 'x' for talquetamab; allowed: label_weekly, label_biweekly"):
        load_label_regimen("talquetamab", "x")
    with pytest.raises(InputError, match=r"data row 4 \(file line 5\), repeat_until_day"):
        load_label_regimen("teclistamab")  # weekly "until progression": needs a horizon
    bad = tmp_path / "reg.csv"
    bad.write_text("drug,regimen,dose_no,day,dose,unit,route\n"
                   "a,r,1,1,1,mg,SC\na,r,1,8,1,mg,SC\na,r,x,9,1,mg,SC\nb,r,1,1,-1,mg,SC\n")
    with pytest.raises(InputErrors) as ei:
        load_label_regimen("a", table=bad)
    assert [(e.row, e.field) for e in ei.value.errors] == [(2, "dose_no"), (3, "dose_no")]
    assert load_label_regimen("a", table=pd.read_csv(bad).iloc[:1]).regimen.doses[0].amount == 1.0
    with pytest.raises(InputError, match=r"data row 4 \(file line 5\), dose: must be a positive"):
        load_label_regimen("b", table=bad)
    only_pre = tmp_path / "pre.csv"
    only_pre.write_text("drug,regimen,dose_no,day,dose,unit,route\na,r,0,1,1,mg,SC\n")
    with pytest.raises(InputError, match="no doses of the drug itself"):
        load_label_regimen("a", table=only_pre)
    with pytest.raises(InputError, match="required column 'dose_no'"):
        load_label_regimen("a", table=io.StringIO("drug,regimen,day,dose,unit,route\na,r,1,1,mg,SC\n"))


# --------------------------------------------------------------------------------------------------
# IV needs infusion_h; IV_bolus is explicit
# --------------------------------------------------------------------------------------------------
def test_iv_without_infusion_h_is_refused_for_every_such_row():
    with pytest.raises(InputErrors) as ei:
        read(HDR + "1,10,mg,IV,,,,\n8,10,mg,IV,2,,,\n15,10,mg,IV,,7,29,\n")
    assert [(e.row, e.field) for e in ei.value.errors] == [(1, "infusion_h"), (3, "infusion_h")]
    for e in ei.value.errors:
        assert "route IV needs infusion_h (hours); write IV_bolus for a bolus" in str(e)
    # a DataFrame too (no file lines)
    with pytest.raises(InputError, match=r"^data row 1, infusion_h: route IV needs infusion_h \(hours\)"):
        read_regimen_csv(pd.DataFrame(dict(day=[1], dose=[1.0], unit=["mg"], route=["IV"])))


def test_iv_bolus_is_accepted_and_round_trips():
    reg = read("day,dose,unit,route,label\n1,5,mg,IV_bolus,b1\n2,5,mg,bolus,b2\n3,5,mg,iv_bolus,b3\n")
    assert [d.route for d in reg.doses] == ["IV_bolus"] * 3 and all(d.duration is None for d in reg.doses)
    text = write_regimen_csv(reg)
    assert [line.split(",")[3] for line in text.splitlines()[1:]] == ["IV_bolus"] * 3
    assert read(text) == reg
    # an infusion is written as IV with infusion_h, a bolus as IV_bolus: both come back as they were
    mixed = Regimen((Dose(0.0, 1.0, "mg", "IV_infusion", duration=0.25), Dose(1.0, 2.0, "mg", "IV_bolus")))
    df = regimen_to_table(mixed)
    assert list(df.route) == ["IV", "IV_bolus"] and df.infusion_h.iloc[0] == 6.0 and pd.isna(df.infusion_h.iloc[1])
    assert read(write_regimen_csv(mixed)) == mixed


def test_iv_infusion_synonym_still_reads():
    reg = read(HDR + "1,1,mg,IV_infusion,2,,,\n")
    assert reg.doses[0] == Dose(0.0, 1.0, "mg", "IV_infusion", duration=2 / 24)
    assert write_regimen_csv(reg).splitlines()[1].startswith("1,1,mg,IV,2,")


# --------------------------------------------------------------------------------------------------
# one dose a day
# --------------------------------------------------------------------------------------------------
SPLIT = "a split dose goes on consecutive days (or at a fractional day such as 8.5)"


def test_two_rows_on_the_same_day_are_refused_naming_both():
    with pytest.raises(InputError) as ei:
        read(HDR + "1,1,mg,SC,,,,\n4,1,mg,SC,,,,\n8,2,mg,SC,,,,\n8,3,mg,SC,,,,\n")
    e = ei.value
    assert not isinstance(e, InputErrors)
    assert str(e) == f"data rows 3 and 4 (file lines 4 and 5), day: both give a dose on day 8; {SPLIT}"
    assert (e.field, e.row, e.rows) == ("day", 4, (3, 4))


def test_a_repeat_landing_on_another_rows_day_is_refused():
    # row 3 repeats weekly from day 1 (1, 8, 15, 22, 29): it lands on row 4's day 8 (and row 5's day 22)
    text = HDR + "1,1,mg,SC,,,,\n4,1,mg,SC,,,,\n1,2,mg,IV,1,7,29,\n8,3,mg,SC,,,,\n22,3,mg,SC,,,,\n"
    with pytest.raises(InputErrors) as ei:
        read(text)
    msgs = [str(e) for e in ei.value.errors]
    assert msgs == ["data rows 1 and 3 (file lines 2 and 4), day: both give a dose on day 1; "
                    "a split dose goes on consecutive days (or at a fractional day such as 1.5)",
                    f"data rows 3 and 4 (file lines 4 and 5), day: both give a dose on day 8; {SPLIT}",
                    "data rows 3 and 5 (file lines 4 and 6), day: both give a dose on day 22; "
                    "a split dose goes on consecutive days (or at a fractional day such as 22.5)"]
    assert all(e.field == "day" for e in ei.value.errors)


def test_repeats_up_to_the_horizon_are_checked_and_each_pair_is_reported_once():
    # two weekly rows from day 8, no repeat_until_day: they collide on every dose up to the horizon
    text = "day,dose,unit,route,repeat_every_days\n8,1,mg,SC,7\n8,2,mg,SC,7\n"
    with pytest.raises(InputError) as ei:
        read(text, until_day=50)
    assert not isinstance(ei.value, InputErrors)
    assert str(ei.value) == f"data rows 1 and 2 (file lines 2 and 3), day: both give a dose on day 8; {SPLIT}"
    # a repeat whose next dose falls after the horizon does not collide
    assert len(read("day,dose,unit,route,repeat_every_days\n1,1,mg,SC,7\n8.5,1,mg,SC,\n", until_day=8).doses) == 2


def test_split_doses_on_consecutive_or_fractional_days_are_fine():
    reg = read("day,dose,unit,route,infusion_h\n1,0.2,mg,IV,4\n2,0.5,mg,IV,4\n8,1,mg,IV,4\n8.5,1,mg,IV,4\n")
    assert [d.time for d in reg.doses] == [0.0, 1.0, 7.0, 7.5]
    # a DataFrame names the rows without file lines
    df = pd.DataFrame(dict(day=[8, 8], dose=[1.0, 1.0], unit=["mg", "mg"], route=["SC", "SC"]))
    with pytest.raises(InputError, match=r"^data rows 1 and 2, day: both give a dose on day 8;"):
        read_regimen_csv(df)


def test_label_loader_refuses_a_day_with_two_doses_but_not_the_pretreatment(tmp_path):
    t = tmp_path / "reg.csv"
    t.write_text("drug,regimen,dose_no,day,dose,unit,route,infusion_h,repeat_every_days,repeat_until_day\n"
                 "a,r,0,1,1000,mg,IV,4,,\n"  # another drug's pretreatment on day 1
                 "a,r,1,1,1,mg,IV,4,,\n"  # the drug itself on day 1 too: allowed
                 "a,r,2,8,2,mg,IV,4,7,29\n"
                 "a,r,3,15,3,mg,IV,4,,\n"  # day 15 is also a weekly repeat of dose_no 2
                 "b,r,1,1,1,mg,SC,,,\nb,r,2,2,1,mg,SC,,,\n")
    with pytest.raises(InputError) as ei:
        load_label_regimen("a", table=t)
    assert str(ei.value) == ("data rows 3 and 4 (file lines 4 and 5), day: both give a dose on day 15; a split "
                             "dose goes on consecutive days (or at a fractional day such as 15.5)")
    assert ei.value.field == "day"
    assert len(load_label_regimen("b", table=t).regimen) == 2
    ok = pd.read_csv(t)
    ok.loc[3, "day"] = 16
    lr = load_label_regimen("a", table=ok)
    assert [d.time for d in lr.pretreatment.doses] == [0.0] and [d.time for d in lr.regimen.doses] == [0.0, 7.0, 15.0]
