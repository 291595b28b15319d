"""`qsp simulate --model pk-1cmt|pk-2cmt --dataset ...`: closed-form agreement, outputs, user errors.

The closed forms are those of tests/closed_forms.py (superposition of single-dose 2-cmt solutions).
One CLI run covers IV bolus, infusion via RATE, SC with ALAG and F, ADDL/II, RATE -1/-2 and a reset,
so the whole file compiles the solver only twice (one per model).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from closed_forms import D, concentration
from qsp.cli import app

P2 = dict(CL=1.5, V1=12.0, Q=3.0, V2=25.0, KA=0.8, F=0.7, ALAG=0.75)
DS_PARAMS = dict(D2=3.0, R2=40.0)
TIGHT = ["--rtol", "1e-10", "--atol", "1e-12"]

# ID, TIME, AMT, EVID, CMT, RATE, II, ADDL, MDV, DV, WT
DATASET_2CMT = """\
ID,TIME,AMT,EVID,CMT,RATE,II,ADDL,MDV,DV,WT
# 1: IV boluses; observations before (pre-dose) and after a dose record at the same time
1,0,.,0,.,.,.,.,0,.,70
1,0,100,1,2,0,0,0,1,.,70
1,0,.,0,.,.,.,.,0,8.1,70
1,0.5,.,0,.,.,.,.,0,7.2,70
1,2,.,0,.,.,.,.,0,5.5,70
1,8,.,0,.,.,.,.,0,3.0,70
1,12,.,0,.,.,.,.,0,2.1,70
1,12,50,1,2,0,0,0,1,.,70
1,12,.,0,.,.,.,.,0,6.0,70
1,24,.,0,.,.,.,.,0,2.5,70
1,36,.,2,.,.,.,.,1,.,70
# 2: zero-order infusion, 120 mg over 4 h (RATE 30)
2,0,120,1,2,30,0,0,1,.,82
2,1,.,0,.,.,.,.,0,.,82
2,4,.,0,.,.,.,.,0,.,82
2,6,.,0,.,.,.,.,0,.,82
2,24,.,0,.,.,.,.,0,.,82
# 3: SC with lag and bioavailability
3,0,200,1,1,0,0,0,1,.,64
3,0.5,.,0,.,.,.,.,0,.,64
3,0.75,.,0,.,.,.,.,0,.,64
3,1,.,0,.,.,.,.,0,.,64
3,2,.,0,.,.,.,.,0,.,64
3,6,.,0,.,.,.,.,0,.,64
3,24,.,0,.,.,.,.,0,.,64
3,48,.,0,.,.,.,.,0,.,64
# 4: ADDL/II: IV every 12 h x4 and SC every 24 h x2 from 6 h
4,0,50,1,2,0,12,3,1,.,75
4,5,.,0,.,.,.,.,0,.,75
4,6,100,1,1,0,24,1,1,.,75
4,12,.,0,.,.,.,.,0,.,75
4,30,.,0,.,.,.,.,0,.,75
4,40,.,0,.,.,.,.,0,.,75
4,60,.,0,.,.,.,.,0,.,75
# 5: modelled duration (RATE -2, D2) and modelled rate (RATE -1, R2)
5,0,90,1,2,-2,0,0,1,.,90
5,1,.,0,.,.,.,.,0,.,90
5,3,.,0,.,.,.,.,0,.,90
5,10,80,1,2,-1,0,0,1,.,90
5,11,.,0,.,.,.,.,0,.,90
5,20,.,0,.,.,.,.,0,.,90
# 6: reset and SC dose (EVID 4) at 24 h: the observation before it is pre-reset
6,0,100,1,2,0,0,0,1,.,58
6,10,.,0,.,.,.,.,0,.,58
6,24,.,0,.,.,.,.,0,.,58
6,24,150,4,1,0,0,0,1,.,58
6,24,.,0,.,.,.,.,0,.,58
6,25,.,0,.,.,.,.,0,.,58
6,30,.,0,.,.,.,.,0,.,58
6,48,.,0,.,.,.,.,0,.,58
"""


def _reference_2cmt(df: pd.DataFrame) -> np.ndarray:
    """Closed-form CP for every row of DATASET_2CMT (same order)."""
    p = dict(CL=P2["CL"], V1=P2["V1"], Q=P2["Q"], V2=P2["V2"], KA=P2["KA"], F=P2["F"], ALAG=P2["ALAG"])
    doses = {
        1: [D(0, 100), D(12, 50)],
        2: [D(0, 120, "infusion", 4.0)],
        3: [D(0, 200, "oral")],
        4: [D(0, 50, ii=12, addl=3), D(6, 100, "oral", ii=24, addl=1)],
        5: [D(0, 90, "infusion", DS_PARAMS["D2"]), D(10, 80, "infusion", 80 / DS_PARAMS["R2"])],
    }
    ref = np.zeros(len(df))
    seen_dose_at = set()
    for k, row in enumerate(df.itertuples(index=False)):
        i, t = int(row.ID), float(row.TIME)
        if str(row.EVID) in ("1", "4"):  # a dose row's own prediction is post-dose
            seen_dose_at.add((i, t))
        if i in doses:
            ds = doses[i]
            if i == 1 and t == 12 and (1, 12) not in seen_dose_at:  # observation before the 12 h dose record
                ds = [D(0, 100)]
            if i == 1 and t == 0 and (1, 0) not in seen_dose_at:
                ds = []
            ref[k] = concentration([t], ds, **p)[0] if ds else 0.0
        else:  # ID 6: bolus until the reset at 24 h (the observation before the EVID 4 row is pre-reset)
            pre_reset = t < 24 or (t == 24 and (6, 24) not in seen_dose_at)
            if pre_reset:
                ref[k] = concentration([t], [D(0, 100)], **p)[0]
            else:
                ref[k] = concentration([t], [D(24, 150, "oral")], **p)[0]
    return ref


def _data_rows(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), comment="#", dtype=str)


def _invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _params(d):
    out = []
    for k, v in d.items():
        out += ["--param", f"{k}={v}"]
    return out


@pytest.fixture(scope="module")
def run_2cmt(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli2")
    data = d / "study.csv"
    data.write_text(DATASET_2CMT)
    out = d / "results"
    res = _invoke(["simulate", "--model", "pk-2cmt", "--dataset", data, *_params(P2), *_params(DS_PARAMS),
                   *TIGHT, "--out", out])
    return res, data, out


def test_closed_form_2cmt(run_2cmt):
    res, data, out = run_2cmt
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False)
    rows = _data_rows(DATASET_2CMT)
    # every input row, in input order, the input columns unchanged, plus CP
    assert list(pred.columns) == list(rows.columns) + ["CP"]
    assert len(pred) == len(rows)
    pd.testing.assert_frame_equal(pred.drop(columns="CP"), rows.fillna("."), check_dtype=False)
    cp = pred["CP"].astype(float).to_numpy()
    ref = _reference_2cmt(rows)
    nz = ref != 0
    assert nz.sum() > 30
    rel = np.abs(cp[nz] - ref[nz]) / np.abs(ref[nz])
    assert rel.max() < 1e-5, (rel.max(), pred[nz][rel > 1e-5])
    assert np.all(np.abs(cp[~nz]) < 1e-9)


def test_pre_and_post_dose_rows(run_2cmt):
    """An observation before a dose record at the same TIME is the pre-dose value; after it, post-dose."""
    _, _, out = run_2cmt
    pred = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False)
    one = pred[pred.ID == "1"]
    at0 = one[one.TIME == "0"]["CP"].astype(float).tolist()
    assert at0[0] == 0.0 and at0[1] == pytest.approx(100 / P2["V1"]) and at0[2] == pytest.approx(100 / P2["V1"])
    at12 = one[one.TIME == "12"]["CP"].astype(float).tolist()
    assert at12[1] - at12[0] == pytest.approx(50 / P2["V1"], rel=1e-6)
    six = pred[pred.ID == "6"]
    at24 = six[six.TIME == "24"]["CP"].astype(float).tolist()
    assert at24[0] > 0.5 and abs(at24[2]) < 1e-12  # reset: no drug right after (the SC dose has a lag)


def test_png_written(run_2cmt):
    res, _, out = run_2cmt
    png = out / "cp.png"
    assert png.exists() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == [".qsp-outputs-simulate", "cp.png", "predictions.csv"]
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]


def test_rerun_into_existing_dir_keeps_other_files(run_2cmt):
    _, data, out = run_2cmt
    keep = out / "notes.txt"
    keep.write_text("mine")
    (out / "predictions.csv").write_text("stale")
    res = _invoke(["simulate", "--model", "pk-2cmt", "--dataset", data, *_params(P2), *_params(DS_PARAMS),
                   *TIGHT, "--out", out])
    assert res.exit_code == 0, res.output
    assert keep.read_text() == "mine"
    assert (out / "predictions.csv").read_text().startswith("ID,TIME")
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]


def test_one_cmt_in_days(tmp_path):
    """pk-1cmt (V) with TIME in days, whitespace-separated, bolus + infusion + SC."""
    text = """ID TIME AMT CMT RATE EVID
1 0 10 2 . 1
1 0.5 . . . 0
1 1 20 2 40 1
1 1.25 . . . 0
1 3 . . . 0
2 0 30 1 . 1
2 0.2 . . . 0
2 2 . . . 0
"""
    data = tmp_path / "d.txt"
    data.write_text(text)
    p1 = dict(CL=2.0, V=5.0, KA=3.0, F=0.6, ALAG=0.1)
    out = tmp_path / "o"
    res = _invoke(["simulate", "--model", "pk-1cmt", "--dataset", data, "--time-unit", "day", *_params(p1),
                   *TIGHT, "--out", out])
    assert res.exit_code == 0, res.output
    cp = pd.read_csv(out / "predictions.csv")["CP"].to_numpy()
    kw = dict(CL=2.0, V1=5.0, KA=3.0, F=0.6, ALAG=0.1)
    d1 = [D(0, 10), D(1, 20, "infusion", 0.5)]
    ref = np.r_[concentration([0, 0.5, 1, 1.25, 3], d1, **kw), concentration([0, 0.2, 2], [D(0, 30, "oral")], **kw)]
    ref[0] = 10 / 5.0
    nz = ref != 0
    assert np.max(np.abs(cp[nz] - ref[nz]) / ref[nz]) < 1e-5
    assert np.all(np.abs(cp[~nz]) < 1e-12)


def test_solver_failure_is_flagged_not_fatal(tmp_path):
    """An ID whose solve fails (here: max steps) gets CP '.', is listed in failed.csv and on one 'failed:' line,
    the other IDs complete, and the command exits with code 3 (not 0)."""
    data = tmp_path / "d.csv"
    data.write_text("ID,TIME,AMT,CMT\n1,0,100,2\n1,1000,.,.\n2,0,100,2\n2,0.001,.,.\n")
    out = tmp_path / "o"
    res = _invoke(["simulate", "--model", "pk-1cmt", "--dataset", data, "--param", "CL=1", "--param", "V=10",
                   "--max-steps", "2", "--rtol", "1e-12", "--atol", "1e-14", "--out", out])
    assert res.exit_code == 3, res.output
    fail_lines = [ln for ln in res.stderr.splitlines() if ln.startswith("failed:")]
    assert len(fail_lines) == 1 and "1 of 2 IDs" in fail_lines[0] and "failed.csv" in fail_lines[0]
    assert pd.read_csv(out / "predictions.csv", dtype=str)["CP"].tolist()[:2] == [".", "."]
    assert pd.read_csv(out / "predictions.csv", dtype=str)["CP"].tolist()[2] == "10"
    failed = pd.read_csv(out / "failed.csv")
    assert failed.ID.tolist() == [1] and failed.status.ne(0).all()


def test_every_id_failing_exits_3(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("ID,TIME,AMT,CMT\n1,0,100,2\n1,1000,.,.\n")
    res = _invoke(["simulate", "--model", "pk-1cmt", "--dataset", data, "--param", "CL=1", "--param", "V=10",
                   "--max-steps", "2", "--rtol", "1e-12", "--atol", "1e-14", "--out", tmp_path / "o"])
    assert res.exit_code == 3 and "1 of 1 IDs" in res.stderr


# --------------------------------------------------------------------------------------------------
# user mistakes: one line "error: ...", exit code 2, no output directory
# --------------------------------------------------------------------------------------------------
GOOD = "ID,TIME,AMT,CMT\n1,0,100,2\n1,1,.,.\n"
REQ2 = ["--param", "CL=0.2", "--param", "V1=3", "--param", "Q=0.5", "--param", "V2=2"]  # pk-2cmt's required set


def _assert_user_error(res, out: Path, *needles):
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("error:"), err
    assert "\n" not in err, err
    assert "Traceback" not in res.output
    for n in needles:
        assert n in err, (n, err)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("text, needles", [
    ("ID,TIME,AMT,CMT\n1,0,-100,2\n1,1,.,.\n", ["data row 1", "AMT"]),
    ("ID,TIME,AMT,CMT\n1,0,100,7\n", ["data row 1", "CMT"]),
    ("ID,AMT,CMT\n1,100,2\n", ["TIME", "missing"]),
    ("ID,TIME,AMT,CMT\n1,5,100,2\n1,1,.,.\n", ["data row 2", "TIME"]),
    ("ID,TIME,AMT,CMT,ADDL\n1,0,100,2,3\n", ["data row 1", "ADDL", "II"]),
    ("ID,TIME,AMT,CMT,RATE\n1,0,100,2,-1\n", ["data row 1", "RATE", "R2"]),
    ("ID,TIME,AMT,CMT,EVID\n1,0,100,2,9\n1,x,.,.,0\n", ["2 invalid record(s)", "data row 1", "EVID",
                                                       "data row 2", "TIME"]),
    ("", ["empty"]),
    ("ID,TIME,AMT,CMT,CP\n1,0,100,2,1\n", ["column named CP"]),
])
def test_malformed_dataset(tmp_path, text, needles):
    data = tmp_path / "bad.csv"
    data.write_text(text)
    out = tmp_path / "out"
    res = _invoke(["simulate", "--model", "pk-2cmt", *REQ2, "--dataset", data, "--out", out])
    _assert_user_error(res, out, *needles)


@pytest.mark.parametrize("args, needles", [
    (["--model", "pk-3cmt"], ["unknown model", "pk-2cmt"]),
    (["--model", "pk-2cmt", "--param", "CLX=1"], ["unknown parameter", "CLX"]),
    (["--model", "pk-2cmt", "--param", "CL=abc"], ["CL", "not a number"]),
    (["--model", "pk-2cmt", "--param", "CL"], ["NAME=VALUE"]),
    (["--model", "pk-2cmt", "--param", "CL=-2"], ["CL", "> 0"]),
    (["--model", "pk-2cmt", "--param", "F=7"], ["F", "0 < x <= 1"]),
    (["--model", "pk-2cmt"], ["pk-2cmt needs CL, V1, Q, V2", "--param"]),
    (["--model", "pk-1cmt", "--param", "CL=1"], ["pk-1cmt needs V", "--param"]),
    (["--model", "pk-2cmt", *REQ2, "--days", "3"], ["--days", "does not apply"]),
    (["--model", "pk-2cmt", *REQ2, "--seed", "3"], ["--seed", "does not apply"]),
    (["--model", "pk-2cmt", "--param", "CL=1", "--param", "CL=2"], ["CL", "twice"]),
    (["--model", "pk-2cmt", "--param", "D7=1"], ["D7", "compartment"]),
    (["--model", "pk-1cmt", "--param", "V1=3"], ["unknown parameter", "V1"]),
    (["--model", "pk-2cmt", "--time-unit", "min"], ["time unit", "min"]),
    (["--model", "pk-2cmt", "--solver", "euler"], ["solver", "euler"]),
    (["--model", "pk-2cmt", "--rtol", "-1"], ["--rtol"]),
    (["--model", "pk-2cmt", "--rtol", "abc"], ["--rtol"]),
    (["--model", "pk-2cmt", "--bogus", "1"], ["--bogus"]),
    (["--model", "pk-2cmt", "--drug", "teclistamab"], ["mutually exclusive"]),
])
def test_bad_options(tmp_path, args, needles):
    data = tmp_path / "ok.csv"
    data.write_text(GOOD)
    out = tmp_path / "out"
    res = _invoke(["simulate", *args, "--dataset", data, "--out", out])
    _assert_user_error(res, out, *needles)


def test_depot_dose_needs_ka(tmp_path):
    data = tmp_path / "sc.csv"
    data.write_text("ID,TIME,AMT,CMT\n1,0,100,1\n1,1,.,.\n")
    out = tmp_path / "out"
    res = _invoke(["simulate", "--model", "pk-2cmt", *REQ2, "--dataset", data, "--out", out])
    _assert_user_error(res, out, "CMT 1", "KA")


def test_missing_dataset_file(tmp_path):
    out = tmp_path / "out"
    res = _invoke(["simulate", "--model", "pk-2cmt", *REQ2, "--dataset", tmp_path / "nope.csv", "--out", out])
    _assert_user_error(res, out, "not found", "nope.csv")


def test_missing_required_options(tmp_path):
    out = tmp_path / "out"
    res = _invoke(["simulate", "--model", "pk-2cmt", "--out", out])
    _assert_user_error(res, out, "--dataset")
    data = tmp_path / "ok.csv"
    data.write_text(GOOD)
    res = _invoke(["simulate", "--model", "pk-2cmt", "--dataset", data])
    assert res.exit_code == 2 and res.stderr.startswith("error:") and "--out" in res.stderr


def test_out_is_a_file(tmp_path):
    data = tmp_path / "ok.csv"
    data.write_text(GOOD)
    out = tmp_path / "taken"
    out.write_text("x")
    res = _invoke(["simulate", "--model", "pk-2cmt", "--dataset", data, "--out", out])
    assert res.exit_code == 2 and res.stderr.startswith("error:") and "not a directory" in res.stderr
    assert out.read_text() == "x"


def test_help_shows_example():
    res = _invoke(["simulate", "--help"])
    assert res.exit_code == 0
    assert "qsp simulate --model pk-2cmt --dataset" in res.output
    assert "--param" in res.output and "predictions.csv" in res.output


def test_module_entry_point_subprocess(tmp_path):
    """`python -m qsp`: help works; a malformed dataset gives one stderr line, exit 2, no traceback."""
    r = subprocess.run([sys.executable, "-m", "qsp", "simulate", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Example" in r.stdout
    data = tmp_path / "bad.csv"
    data.write_text("ID,TIME,AMT,CMT\n1,0,abc,2\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "qsp", "simulate", "--model", "pk-2cmt", *REQ2, "--dataset", str(data),
                        "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("error:") and r.stderr.count("\n") == 1 and "data row 1" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
