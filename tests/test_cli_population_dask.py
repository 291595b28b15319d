"""`qsp simulate --patients N --scheduler ADDRESS`: the patients split over a Dask cluster's workers give the
same files as a local run (slow); an unreachable scheduler is refused with one line naming the option."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _qsp(*args):
    return subprocess.run([sys.executable, "-m", "qsp", *args], capture_output=True, text=True, timeout=1200,
                          cwd=ROOT)


def test_an_unreachable_scheduler_is_refused(tmp_path):
    r = _qsp("simulate", "--drug", "teclistamab", "--patients", "10", "--scheduler", "tcp://127.0.0.1:9",
             "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.startswith("error:") and "--scheduler" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_patients_split_over_dask_workers_give_the_files_of_a_local_run(tmp_path):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        r = _qsp("simulate", "--drug", "teclistamab", "--patients", "30", "--seed", "5", "--scheduler",
                 cluster.scheduler_address, "--out", str(tmp_path / "dask"))
    assert r.returncode == 0, r.stderr[-2000:]
    r = _qsp("simulate", "--drug", "teclistamab", "--patients", "30", "--seed", "5", "--out", str(tmp_path / "local"))
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ("crs_by_dose.csv", "population_timecourse.csv", "patients.csv"):
        assert (tmp_path / "dask" / f).read_bytes() == (tmp_path / "local" / f).read_bytes(), f
