"""Library layers never import application modules (drug runs, the CLI): imports flow one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

QSP = Path(__file__).resolve().parent.parent / "qsp"
APP = ("drugrun", "cli", "trial_report")
LIBRARY = ["units", "regimen", "premedication", "events", "model", "simulate", "population", "crs", "trial", "tce",
           "pkmodels", "cards", "card_schema", "limits", "paramsets", "uncertainty", "subgroups"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.lstrip("."))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("mod", LIBRARY)
def test_library_module_imports_no_app_module(mod):
    imported = {m.split(".")[0] if not m.startswith("qsp.") else m.split(".")[1] for m in _imports(QSP / f"{mod}.py")}
    assert not imported & set(APP), (mod, imported & set(APP))


def test_premedication_policy_imports_no_model():
    imported = _imports(QSP / "premedication.py")
    assert imported <= {"__future__", "errors", "regimen"}, imported


def test_only_the_cli_imports_the_optimizer():
    """qsp.optimize sits on top: no engine, calibration or application module below it imports it."""
    for path in QSP.rglob("*.py"):
        rel = path.relative_to(QSP).parts
        if rel[0] in ("optimize", "cli"):
            continue
        mods = _imports(path)
        assert not any(m == "optimize" or m.startswith("optimize.") or m.startswith("qsp.optimize") for m in mods), path


def test_only_the_cli_imports_the_calibration_jobs():
    """qsp.jobs sits on the calibration layer: nothing below it (engine, calibration, optimizer) imports it."""
    for path in QSP.rglob("*.py"):
        rel = path.relative_to(QSP).parts
        if rel[0] in ("jobs", "cli"):
            continue
        mods = _imports(path)
        assert not any(m == "jobs" or m.startswith("jobs.") or m.startswith("qsp.jobs") for m in mods), path
