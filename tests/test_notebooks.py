"""The pharmacometrician notebooks (``notebooks/*.ipynb``): stored without outputs, and each one executes top to
bottom in a fresh kernel with ``QSP_QUICK=1`` (small populations and draws). A notebook that raises fails.

The notebooks run in separate processes (``tests/notebook_runner.py``), two at a time by default
(``QSP_NOTEBOOK_WORKERS``): much of a notebook's time is single-threaded tracing and compiling, so two side by
side use the two cores of the CI machine better than one after the other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, SHIPPED_CALIBRATED

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RUNNER = Path(__file__).with_name("notebook_runner.py")


def test_the_notebooks_exist():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_quickstart", "02_nonmem_data", "03_virtual_trial", "04_calibration", "05_stepup_design",
                     "06_new_molecule"], names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{path.name} cell {i} has outputs"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook executed (at most ``QSP_NOTEBOOK_WORKERS`` at a time): name -> (exit code, executed copy,
    stderr, seconds)."""
    out_dir = tmp_path_factory.mktemp("notebooks")
    env = {**os.environ, "QSP_QUICK": "1"}
    if SHIPPED_CALIBRATED.is_file():  # what a user gets: the shipped calibrated parameters
        env["QSP_CALIBRATED"] = str(SHIPPED_CALIBRATED)
    workers = max(1, int(os.environ.get("QSP_NOTEBOOK_WORKERS", "2")))
    deadline = time.perf_counter() + float(os.environ.get("QSP_NOTEBOOK_DEADLINE_S", "2400"))
    pending, running, done = list(NOTEBOOKS), {}, {}
    try:
        _run_all(pending, running, done, workers, deadline, out_dir, env)
    finally:  # interrupted or failed: no runner (and its kernel) left behind
        for proc, *_ in running.values():
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and the kernel it started (one process group)
            proc.wait()
    return done


def _run_all(pending, running, done, workers, deadline, out_dir, env):
    while pending or running:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"notebooks still running past the deadline: {sorted(running)}")
        while pending and len(running) < workers:
            nb = pending.pop(0)
            work = out_dir / nb.stem
            work.mkdir()
            dst = out_dir / f"{nb.stem}.executed.ipynb"
            log = out_dir / f"{nb.stem}.stderr.txt"  # a file, not a pipe: a chatty kernel cannot fill it and block
            with open(log, "w") as fh:
                proc = subprocess.Popen([sys.executable, str(RUNNER), str(nb), str(dst), str(work)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=fh, start_new_session=True)
            running[nb.stem] = (proc, dst, log, time.perf_counter())
        for name, (proc, dst, log, t0) in list(running.items()):
            if proc.poll() is not None:
                done[name] = (proc.returncode, dst, log.read_text()[-6000:], time.perf_counter() - t0)
                del running[name]
        time.sleep(0.5)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, executed):
    rc, dst, err, seconds = executed[path.stem]
    assert rc == 0, f"{path.name} raised:\n{err}"
    nb = nbformat.read(dst, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}))
    assert images >= 2, f"{path.name} drew {images} figures"
