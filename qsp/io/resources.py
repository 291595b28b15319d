"""Where the package finds its model cards and published data: package data, not repository paths.

The repository keeps the cards in ``models/`` and the curated data in ``data/`` (top level, as the
project's layout asks); ``pyproject.toml`` installs those two folders as the packages ``qsp._models``
and ``qsp._data``, so a wheel, an sdist install and an editable install all find them through
:mod:`importlib.resources`, whatever the working directory.

User cards: ``QSP_MODELS_DIR`` names one folder of ``<drug>.toml`` cards (or several, separated by
``os.pathsep``) searched *before* the built-in library, so a user card adds a drug or replaces a
built-in one of the same name (``qsp drugs`` shows where each card comes from).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ..errors import InputError

MODELS_PACKAGE = "qsp._models"
DATA_PACKAGE = "qsp._data"
MODELS_ENV = "QSP_MODELS_DIR"


def builtin_models() -> Traversable:
    """The built-in card folder (the repository's ``models/``, installed as ``qsp._models``)."""
    return resources.files(MODELS_PACKAGE)


def data_root() -> Traversable:
    """The curated data folder (the repository's ``data/``, installed as ``qsp._data``)."""
    return resources.files(DATA_PACKAGE)


def data_file(*parts: str) -> Traversable:
    """A file of the curated data, e.g. ``data_file("regimens.csv")``; InputError if it is missing."""
    node = data_root()
    for p in parts:
        node = node.joinpath(p)
    if not node.is_file():
        raise InputError(f"the package data file data/{'/'.join(parts)} is missing from this installation "
                         "(reinstall the package)", field="data")
    return node


def user_model_dirs() -> list[Path]:
    """Folders named by ``QSP_MODELS_DIR`` (each must exist and be a directory)."""
    raw = os.environ.get(MODELS_ENV, "")
    out = []
    for part in raw.split(os.pathsep):
        if not part.strip():
            continue
        p = Path(part).expanduser()
        if not p.is_dir():
            raise InputError(f"{MODELS_ENV}={raw!r}: {p} is not a directory of model cards", field=MODELS_ENV)
        out.append(p)
    return out


@dataclass(frozen=True)
class CardFile:
    """One card file: drug name (file stem, lower case), where it lives, and its text."""

    name: str
    location: str  # "built-in" or the user folder
    path: str  # a display path (the file inside the package for built-ins)
    node: object  # Path or Traversable

    def read_text(self) -> str:
        return self.node.read_text(encoding="utf-8")


def card_files() -> dict[str, CardFile]:
    """Every available card by drug name: user folders first (they win), then the built-in library."""
    out: dict[str, CardFile] = {}
    for d in user_model_dirs():
        for p in sorted(d.glob("*.toml")):
            key = p.stem.lower()
            out.setdefault(key, CardFile(key, str(d), str(p), p))
    root = builtin_models()
    for node in sorted(root.iterdir(), key=lambda n: n.name):
        if node.name.endswith(".toml") and node.is_file():
            key = node.name[: -len(".toml")].lower()
            out.setdefault(key, CardFile(key, "built-in", f"models/{node.name}", node))
    return dict(sorted(out.items()))


__all__ = ["builtin_models", "data_root", "data_file", "user_model_dirs", "CardFile", "card_files", "MODELS_ENV"]
