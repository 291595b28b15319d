"""Re-step-up after a delay: the delayed regimens are built as stated; `qsp restart` refuses bad arguments."""
from __future__ import annotations

import subprocess
import sys

import pytest

from qsp.errors import InputError
from qsp.optimize.restart import delayed
from qsp.premedication import drug_doses
from qsp.regimen import Dose, Regimen

REG = Regimen((Dose(0, 0.06, "mg/kg", "SC"), Dose(3, 0.3, "mg/kg", "SC"), Dose(6, 1.5, "mg/kg", "SC"),
               Dose(13, 1.5, "mg/kg", "SC"), Dose(20, 1.5, "mg/kg", "SC")), "day")


def _td(r):
    return [(d.time, d.amount) for d in drug_doses(r)]


def test_resume_shifts_the_delayed_dose_and_the_rest():
    r, i0, i1 = delayed(REG, 4, 10.0, "resume")
    assert _td(r) == [(0, 0.06), (3, 0.3), (6, 1.5), (23, 1.5), (30, 1.5)] and (i0, i1) == (3, 3)


def test_step_back_gives_the_previous_amount_first():
    r, i0, i1 = delayed(REG, 3, 7.0, "step_back")
    assert _td(r) == [(0, 0.06), (3, 0.3), (13, 0.3), (16, 1.5), (23, 1.5), (30, 1.5)] and (i0, i1) == (2, 3)
    # no lower dose to step back to: as resume
    r2, j0, j1 = delayed(REG, 5, 7.0, "step_back")
    assert _td(r2) == _td(delayed(REG, 5, 7.0, "resume")[0]) and (j0, j1) == (4, 4)


def test_restart_repeats_the_step_up_at_its_spacing():
    r, i0, i1 = delayed(REG, 4, 28.0, "restart")
    assert _td(r) == [(0, 0.06), (3, 0.3), (6, 1.5), (41, 0.06), (44, 0.3), (47, 1.5), (54, 1.5)]
    assert (i0, i1) == (3, 5)


def test_bad_dose_or_action():
    with pytest.raises(InputError):
        delayed(REG, 1, 7.0, "resume")
    with pytest.raises(InputError):
        delayed(REG, 2, 7.0, "skip")


@pytest.mark.parametrize("args, field", [(["--delays", "0,7"], "--delays"), (["--doses", "1"], "--doses"),
                                         (["--patients", "2"], "--patients"), (["--regimen", "nope"], "--regimen")])
def test_restart_cli_refuses_bad_arguments(args, field):
    r = subprocess.run([sys.executable, "-m", "qsp", "restart", "--drug", "teclistamab", *args], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 2 and r.stderr.startswith("error:") and field in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
