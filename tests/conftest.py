"""Shared fixtures.

The engine's tests run on the cards' (prior) values, whatever calibrated parameter file ships: the session
sets ``QSP_CALIBRATED=none`` unless the caller set it. Tests of the calibrated set name its file themselves
(``shipped_calibrated`` below, or their own fit through ``calibrated_fit``).

One persistent JAX compilation cache per test session, in a fresh temporary folder removed at the end (unless
the caller set ``QSP_COMPILE_CACHE``): the many CLI subprocesses that compile the same programs load them
instead (measured: a 20-patient ``qsp simulate --drug teclistamab`` 48 s the first time, 28 s from the cache),
and so do the two pytest-xdist workers (``addopts`` in ``pyproject.toml``; the controller process makes the
folder and the workers inherit its environment).
``EQX_ON_ERROR=nan`` turns equinox's runtime checks into NaN results instead of host callbacks, which would make
a program uncacheable; the engine reads failed solves from the solver status, not from exceptions.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("QSP_CALIBRATED", "none")
if "QSP_COMPILE_CACHE" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="qsp-test-jax-cache-")
    os.environ["QSP_COMPILE_CACHE"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.setdefault("EQX_ON_ERROR", "nan")
SHIPPED_CALIBRATED = ROOT / "data" / "calibrated" / "tce_posterior.json"


@pytest.fixture
def shipped_calibrated(monkeypatch):
    """Point the session at the shipped calibrated parameter file (skips when none ships)."""
    if not SHIPPED_CALIBRATED.is_file():
        pytest.skip("no calibrated parameter file ships yet")
    monkeypatch.setenv("QSP_CALIBRATED", str(SHIPPED_CALIBRATED))
    return SHIPPED_CALIBRATED


def patch_card_text(text: str, *, values: dict | None = None, units: dict | None = None,
                    omegas: dict | None = None) -> str:
    """A card's TOML text with ``[params]`` values/units or ``[population.omega]`` values replaced (by key,
    whatever the current value is), so tests do not depend on the numbers a card happens to hold."""
    head, sep, rest = text.partition("[params]")
    assert sep, "card has no [params] table"
    params, sep2, tail = rest.partition("\n[")
    for key, new in (values or {}).items():
        params, n = re.subn(rf"(?m)^({re.escape(key)} = \{{ value = )[^,]+", lambda m: m.group(1) + str(new), params)
        assert n == 1, key
    for key, new in (units or {}).items():
        params, n = re.subn(rf'(?m)^({re.escape(key)} = \{{ value = [^,]+, unit = )"[^"]*"',
                            lambda m: m.group(1) + f'"{new}"', params)
        assert n == 1, key
    text = head + sep + params + sep2 + tail
    if omegas:
        head, sep, rest = text.partition("[population.omega]")
        assert sep, "card has no [population.omega] table"
        for key, new in omegas.items():
            rest, n = re.subn(rf"(?m)^({re.escape(key)} = \{{ value = )[^,]+", lambda m: m.group(1) + str(new), rest,
                              count=1)
            assert n == 1, key
        text = head + sep + rest
    return text


@pytest.fixture
def card_patch():
    """``card_patch(drug, **kw)``: the built-in card's text patched by :func:`patch_card_text`."""
    def make(drug: str, **kw) -> str:
        return patch_card_text((ROOT / "models" / f"{drug}.toml").read_text(), **kw)
    return make


@pytest.fixture(scope="session")
def calibrated_fit(tmp_path_factory):
    """A tiny real MAP fit and its calibrated-parameter file: ``(fit, path)``.

    teclistamab only, 8 virtual patients, CRS-layer parameters only (no ODE sensitivities, so it runs in about
    a minute): two class parameters (``CRS_THETA1``; ``CRS_BETA`` with a drug deviation) and one drug-level
    one (``CRS_TOL``), 12 L-BFGS steps from the prior centre.
    """
    from qsp.calibrate.export import write_calibrated
    from qsp.calibrate.fit import run_map
    from qsp.calibrate.likelihood import build_problem
    from qsp.calibrate.space import ParameterSpace
    from qsp.cards import load_card

    space = ParameterSpace({"teclistamab": load_card("teclistamab").model()}, class_params=("CRS_THETA1", "CRS_BETA"),
                           drug_params=("CRS_TOL",), deviations={"CRS_BETA": 0.5})
    fit = run_map(build_problem(space, patients=8, seed=2), starts=1, max_steps=12, draws=1)
    path = write_calibrated(fit, tmp_path_factory.mktemp("calibrated") / "tce_map.json",
                            command="pytest tests/conftest.py::calibrated_fit")
    return fit, path
