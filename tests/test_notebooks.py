"""The pharmacometrician notebooks (``notebooks/*.ipynb``): stored without outputs, and each one executes top to
bottom in a fresh kernel with ``QSP_QUICK=1`` (small populations and draws). A notebook that raises fails.

The notebooks run in separate processes (``tests/notebook_runner.py``), two at a time by default
(``QSP_NOTEBOOK_WORKERS``): much of a notebook's time is single-threaded tracing and compiling, so two side by
side use the two cores of the CI machine better than one after the other."""

from __future__ import annotations

import os
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
    pending, running, done = list(NOTEBOOKS), {}, {}
    while pending or running:
        while pending and len(running) < workers:
            nb = pending.pop(0)
            work = out_dir / nb.stem
            work.mkdir()
            dst = out_dir / f"{nb.stem}.executed.ipynb"
            proc = subprocess.Popen([sys.executable, str(RUNNER), str(nb), str(dst), str(work)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            running[nb.stem] = (proc, dst, time.perf_counter())
        for name, (proc, dst, t0) in list(running.items()):
            if proc.poll() is not None:
                done[name] = (proc.returncode, dst, proc.stderr.read(), time.perf_counter() - t0)
                del running[name]
        time.sleep(0.5)
    return done


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
