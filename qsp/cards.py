"""Model cards: one TOML file per drug in ``models/`` (format: ``models/README.md``).

``load_card("teclistamab")`` parses and validates a card; ``card.model()`` builds the TCE model with
the card's values as defaults (and their sources); ``card.regimen()`` returns a label regimen from
``data/regimens.csv``; ``card.covariates()`` the default patient.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from .errors import InputError
from .model import Model
from .regimen import Regimen
from .tce import build_tce_model
from .units import Covariates

CARD_UNITS = {
    "CL": "L/day", "Q": "L/day", "CLSS": "L/day", "V1": "L", "V2": "L", "KA": "1/day", "KCL": "1/day",
    "KGROW": "1/day", "F": "fraction", "ADA_PROB": "fraction", "KD_CD3": "nM", "KD_TAA": "nM", "KD_STAA": "nM",
    "STAA0": "nM", "CD3_PER_TCELL": "receptors/cell", "TAA_PER_CELL": "receptors/cell", "T0": "cells/uL",
    "TUMOR0": "cells/uL", "NORMAL0": "cells/uL", "ADA_ONSET": "days",
}
REQUIRED_TABLES = ("drug", "structure", "covariates", "params")


def models_dir() -> Path:
    """The model-card folder: ``$QSP_MODELS_DIR`` or the repository's ``models/``."""
    env = os.environ.get("QSP_MODELS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "models"


def list_cards() -> list[str]:
    return sorted(p.stem for p in models_dir().glob("*.toml"))


@dataclass(frozen=True)
class DrugCard:
    """A parsed model card."""

    name: str
    drug: Mapping
    structure: Mapping
    covariate_values: Mapping
    params: Mapping[str, Mapping]
    pd: Mapping = field(default_factory=dict)
    path: str = ""
    population: Mapping = field(default_factory=dict)
    crs: Mapping = field(default_factory=dict)

    @property
    def mw_g_per_mol(self) -> float:
        return float(self.drug["mw_kda"]) * 1000.0

    @property
    def target(self) -> str:
        return str(self.drug.get("target", ""))

    @property
    def route(self) -> str:
        return str(self.structure.get("absorption", ""))

    @property
    def default_regimen(self) -> str:
        return str(self.drug.get("default_regimen", ""))

    def values(self) -> dict[str, float]:
        return {k: float(v["value"]) for k, v in self.params.items()}

    def sources(self) -> dict[str, str]:
        return {k: str(v.get("source", "")) for k, v in self.params.items()}

    def model(self, *, binding: str = "qe", il6_state: bool = False) -> Model:
        """The TCE model for this drug (see :func:`qsp.tce.build_tce_model`)."""
        return _model_cached(self.name, self.path, binding, il6_state)

    def crs_values(self) -> dict[str, float]:
        """The card's ``[crs]`` overrides of the CRS layer's defaults (:mod:`qsp.crs`)."""
        return {k: float(v["value"] if isinstance(v, Mapping) else v) for k, v in self.crs.items()}

    def covariates(self) -> Covariates:
        c = self.covariate_values
        return Covariates(weight_kg=c.get("weight_kg"), height_cm=c.get("height_cm"), bsa_m2=c.get("bsa_m2"))

    def label_regimens(self) -> list[str]:
        from .io.regimen_csv import label_regimens

        df = label_regimens()
        return sorted(df.loc[df["drug"] == self.name, "regimen"].tolist())

    def regimen(self, name: str | None = None, *, until_day: float = 35.0) -> Regimen:
        """A label regimen by name (default: the card's ``default_regimen``), repeats up to ``until_day``."""
        from .io.regimen_csv import load_label_regimen

        lab = load_label_regimen(self.name, name or self.default_regimen, until_day=until_day)
        return lab.regimen


def _parse(path: Path) -> DrugCard:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"model card {path.name} is not valid TOML: {e}", field="card") from None
    for t in REQUIRED_TABLES:
        if t not in raw:
            raise InputError(f"model card {path.name} lacks the [{t}] table", field=t)
    params = raw["params"]
    for k, v in params.items():
        for f in ("value", "unit", "description", "source"):
            if f not in v:
                raise InputError(f"model card {path.name}: parameter {k} lacks '{f}'", field=f"params.{k}")
        if k in CARD_UNITS and v["unit"] != CARD_UNITS[k]:
            raise InputError(f"model card {path.name}: parameter {k} must be in {CARD_UNITS[k]}, got {v['unit']}",
                             field=f"params.{k}")
    return DrugCard(name=raw["drug"]["name"], drug=raw["drug"], structure=raw["structure"],
                    covariate_values=raw["covariates"], params=params, pd=raw.get("pd", {}), path=str(path),
                    population=raw.get("population", {}), crs=raw.get("crs", {}))


@lru_cache(maxsize=64)
def _load_cached(path: str) -> DrugCard:
    return _parse(Path(path))


def load_card(name: str) -> DrugCard:
    """Load a drug's card by name (case-insensitive); unknown names list the library."""
    key = str(name).strip().lower()
    path = models_dir() / f"{key}.toml"
    if not path.exists():
        raise InputError(f"unknown drug {name!r}; allowed: {', '.join(list_cards())}", field="drug")
    return _load_cached(str(path))


@lru_cache(maxsize=64)
def _model_cached(name: str, path: str, binding: str, il6_state: bool) -> Model:
    card = _load_cached(path)
    vals = card.values()
    srcs = card.sources()
    st = card.structure
    pk = st.get("pk", "2cmt")
    if pk == "1cmt":
        vals["V"] = vals.pop("V1")
        srcs["V"] = srcs.pop("V1", "")
        for k in ("Q", "V2"):
            vals.pop(k, None)
    tv = bool(st.get("time_varying_cl", False))
    if not tv:
        for k in ("CLSS", "KCL"):
            vals.pop(k, None)
    model_name = f"tce-{card.name}" + ("" if binding == "qe" else f"-{binding}")
    desc = f"{card.name} ({card.drug.get('brand', '')}; {card.target} x CD3)"
    return build_tce_model(model_name, vals, mw_g_per_mol=card.mw_g_per_mol, pk=pk, time_varying_cl=tv,
                           binding=binding, il6_state=il6_state, sources=srcs, description=desc)
