"""First-in-human doses: the crossing interpolation, the criteria's order, and `qsp fih` argument checks."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from qsp.optimize.fih import _crossing


def test_crossing_interpolates_in_log_dose():
    d = np.geomspace(1e-3, 1e3, 13)
    v = np.log10(d) + 3.0  # 0 .. 6, linear in log dose
    assert _crossing(d, v, 2.5) == pytest.approx(10 ** -0.5, rel=1e-12)
    assert _crossing(d, v, 7.0) is None and _crossing(d, v, -1.0) == d[0]


@pytest.mark.parametrize("args", [["--drug", "teclistamab", "--card", "x.toml"], [], ["--card", "nofile.toml"],
                                  ["--drug", "teclistamab", "--ro", "150"], ["--drug", "teclistamab", "--il6-rise", "0"],
                                  ["--drug", "nodrug"]])
def test_fih_refuses_bad_arguments(args):
    r = subprocess.run([sys.executable, "-m", "qsp", "fih", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.slow
def test_fih_on_a_card_file_orders_with_its_criteria(tmp_path):
    from qsp.cards import load_card_file
    from qsp.optimize.fih import FihSettings, fih_doses

    shutil.copy(ROOT / "models" / "teclistamab.toml", tmp_path / "teclistamab.toml")
    card = load_card_file(tmp_path / "teclistamab.toml")
    lo = fih_doses(card, settings=FihSettings(ro_pct=10.0, il6_rise=0.2))
    hi = fih_doses(card, settings=FihSettings(ro_pct=20.0, il6_rise=0.5))
    for a, b in zip(lo, hi):
        if a["method"] != "trimer at in-vitro EC20":
            assert a["dose"] is not None and b["dose"] > a["dose"], (a, b)
    r = subprocess.run([sys.executable, "-m", "qsp", "fih", "--card", str(tmp_path / "teclistamab.toml")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and r.stdout.count("assumption:") == 3, r.stderr[-2000:]
