"""The pharmacometrician notebooks (``notebooks/*.ipynb``): stored without outputs, and each one executes top to
bottom in a fresh kernel with ``QSP_QUICK=1`` (small populations and draws). A notebook that raises fails."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT, SHIPPED_CALIBRATED

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path, monkeypatch):
    monkeypatch.setenv("QSP_QUICK", "1")
    if SHIPPED_CALIBRATED.is_file():  # what a user gets: the shipped calibrated parameters
        monkeypatch.setenv("QSP_CALIBRATED", str(SHIPPED_CALIBRATED))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the cell on any exception
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}))
    assert images >= 2, f"{path.name} drew {images} figures"
