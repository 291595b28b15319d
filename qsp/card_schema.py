"""The model-card schema: types, units, domains and required parameters, checked when a card is read.

A card (``models/<drug>.toml``, format in ``models/README.md``) is validated in two passes before any
model is built:

1. **Shape and types** (pydantic models below, unknown keys refused): ``[drug]`` (name equal to the file
   name, molecular weight > 0, ...), ``[structure]`` (``pk`` 1cmt/2cmt, ``absorption`` SC/IV/
   IV_continuous/IP, flags as booleans (``dex_holds_secretion``, ``tonic_secretion`` and ``monocyte_priming`` among them), ``secretion_stages`` an integer
   1-20), ``[covariates]`` (weight 20-300 kg, height 100-250 cm),
   ``[params]`` entries ``{ value, unit, description, source }`` with a number for ``value``,
   ``[pd]`` (informational entries of the same shape), ``[population]`` and ``[crs]``.
2. **Meaning**: every parameter the card's structure needs is present (:func:`required_params`), each
   parameter's unit is the one fixed for it (:data:`CARD_UNITS`, or the model's unit for other model
   parameters), and each value lies in its domain (the model's :attr:`qsp.model.Param.domain`:
   positive, non-negative, or a fraction in (0, 1]); ``[crs]`` values go through the CRS layer's own
   check and ``[population]`` through :meth:`qsp.population.PopulationSpec.check`.

Every problem is reported as :class:`~qsp.errors.InputError` naming the file, the table and the key
(``models/x.toml: [params] CL: value must be > 0 (L/day), got -0.19``); all problems of a card are
collected into one message.
"""

from __future__ import annotations

import math
import tomllib
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from .components.tcells import DEFAULT_SECRETION_STAGES, MAX_SECRETION_STAGES
from .errors import InputError

CARD_UNITS = {
    "CL": "L/day", "Q": "L/day", "CLSS": "L/day", "V1": "L", "V2": "L", "KA": "1/day", "KCL": "1/day",
    "KGROW": "1/day", "F": "fraction", "ADA_PROB": "fraction", "KD_CD3": "nM", "KD_TAA": "nM", "KD_STAA": "nM",
    "STAA0": "nM", "CD3_PER_TCELL": "receptors/cell", "TAA_PER_CELL": "receptors/cell", "T0": "cells/uL",
    "TUMOR0": "cells/uL", "NORMAL0": "cells/uL", "ADA_ONSET": "days",
    "TMDD_BASE": "nM", "TMDD_KSS": "nM", "TMDD_KINT": "1/day",
}
BASE_REQUIRED = ("CL", "V1", "KD_CD3", "KD_TAA", "CD3_PER_TCELL", "TAA_PER_CELL", "T0", "TUMOR0", "NORMAL0",
                 "KGROW", "ADA_PROB", "ADA_ONSET")
ABSORPTIONS = ("SC", "IV", "IV_continuous", "IP")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DrugTable(_Strict):
    name: str = Field(min_length=1)
    brand: str = ""
    target: str = Field(min_length=1)
    format: str = ""
    mw_kda: float = Field(gt=5.0, lt=2000.0, description="molecular weight (kDa)")
    indication: str = ""
    default_regimen: str = Field(min_length=1)
    source: str = Field(min_length=1)

    @field_validator("mw_kda", mode="before")
    @classmethod
    def _int_ok(cls, v):
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class StructureTable(_Strict):
    pk: Literal["1cmt", "2cmt"]
    absorption: Literal["SC", "IV", "IV_continuous", "IP"]
    time_varying_cl: StrictBool = False
    soluble_target: StrictBool = False
    target_kind: Literal["b_cell", "plasma_cell", "solid"]
    ada_common: StrictBool = False
    # transit stages between T-cell engagement and cytokine secretion (qsp.components.tcells): 1 = exponential delay
    secretion_stages: StrictInt = Field(default=DEFAULT_SECRETION_STAGES, ge=1, le=MAX_SECRETION_STAGES)
    # dexamethasone slows the end of the secreting phase as it slows secretion (qsp.components.tcells)
    dex_holds_secretion: StrictBool = False
    # engaged T cells past their secreting phase keep a low cytokine output, F_TONIC (qsp.components.cytokines)
    tonic_secretion: StrictBool = False
    # T-cell cytokines prime monocytes, which then make more IL-6 (KPRIME, KPRIME_OFF, PRIME_GAIN; qsp.components.cytokines)
    monocyte_priming: StrictBool = False


class CovariateTable(_Strict):
    weight_kg: float = Field(ge=20.0, le=300.0)
    height_cm: float | None = Field(default=None, ge=100.0, le=250.0)
    bsa_m2: float | None = Field(default=None, ge=0.5, le=3.5)
    source: str = ""

    @field_validator("weight_kg", "height_cm", "bsa_m2", mode="before")
    @classmethod
    def _int_ok(cls, v):
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class PriorEntry(_Strict):
    """``prior = { scale = 0.3, transform = "log", loc = ... }`` on a parameter (see :mod:`qsp.priors`)."""

    scale: float = Field(gt=0.0, le=10.0)
    transform: Literal["log", "logit", "identity"] | None = None
    loc: float | None = None

    @field_validator("scale", "loc", mode="before")
    @classmethod
    def _int_ok(cls, v):
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class ParamEntry(_Strict):
    value: float
    unit: str = Field(min_length=1)
    description: str = Field(min_length=1)
    source: str = Field(min_length=1)
    prior: PriorEntry | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _number(cls, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"must be a number, got {v!r}")
        if not math.isfinite(float(v)):
            raise ValueError(f"must be a finite number, got {v!r}")
        return float(v)


class OmegaEntry(_Strict):
    value: float = Field(ge=0.0, le=3.0)
    source: str = ""

    @field_validator("value", mode="before")
    @classmethod
    def _number(cls, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"must be a number, got {v!r}")
        return float(v)


class PopulationTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = ""
    omega: dict[str, OmegaEntry | float] = {}
    correlations: list[tuple[str, str, float]] = []
    weight_cv: float | None = Field(default=None, ge=0.0, le=1.0)
    weight_min_kg: float | None = Field(default=None, gt=0.0)
    weight_max_kg: float | None = Field(default=None, gt=0.0)
    prior_tcr_prob: float | None = Field(default=None, ge=0.0, le=1.0)
    premed_fraction: float | None = Field(default=None, ge=0.0, le=1.0)
    crs_omega: float | None = Field(default=None, ge=0.0, le=5.0)
    allometry: bool | None = None


class CardFile(_Strict):
    drug: DrugTable
    structure: StructureTable
    covariates: CovariateTable
    params: dict[str, ParamEntry]
    pd: dict[str, ParamEntry] = {}
    population: PopulationTable | None = None
    crs: dict[str, Any] = {}


def required_params(structure: Mapping) -> tuple[str, ...]:
    """The ``[params]`` keys a card with this ``[structure]`` must give."""
    req = list(BASE_REQUIRED)
    if structure.get("pk") == "2cmt":
        req += ["Q", "V2"]
    if structure.get("absorption") in ("SC", "IP"):
        req += ["KA", "F"]
    if structure.get("time_varying_cl"):
        req += ["CLSS", "KCL"]
    if structure.get("soluble_target"):
        req += ["STAA0", "KD_STAA"]
    return tuple(req)


def _loc(loc: tuple) -> str:
    """pydantic error location -> ``[table] key.field``."""
    parts = [str(x) for x in loc]
    if not parts:
        return "card"
    head = f"[{parts[0]}]"
    rest = ".".join(p for p in parts[1:] if p not in ("OmegaEntry", "float", "function-after[_number(), float]"))
    return f"{head} {rest}".strip()


def _pydantic_errors(e: ValidationError) -> list[str]:
    out = []
    for err in e.errors(include_url=False):
        msg = err["msg"]
        msg = msg.removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is required and missing"
        elif err["type"] == "extra_forbidden":
            msg = "is not a known key (typo?)"
        elif err["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be one of")
        if "input" in err and err["type"] not in ("missing", "extra_forbidden") and "got" not in msg:
            msg += f", got {err['input']!r}"
        out.append(f"{_loc(err['loc'])}: {msg}")
    # a union (OmegaEntry | float) reports the same location twice: keep the first
    return list(dict.fromkeys(out))


def _model_param_info(structure: Mapping) -> dict:
    """Parameter declarations (units, domains) of the TCE model for this structure, before card values."""
    from .tce import build_tce_model

    model = build_tce_model("card-check", {}, mw_g_per_mol=150_000.0, pk=str(structure.get("pk", "2cmt")),
                            time_varying_cl=bool(structure.get("time_varying_cl", False)),
                            tonic_secretion=structure.get("tonic_secretion", False) is True,
                            monocyte_priming=structure.get("monocyte_priming", False) is True)
    return model.param_info


def validate_card_text(text: str, display: str, stem: str) -> dict:
    """Parse and validate a card's TOML text; returns the raw tables. ``display`` names the file in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"model card {display}: not valid TOML: {e}", field="card") from None
    try:
        card = CardFile.model_validate(raw)
    except ValidationError as e:
        msgs = _pydantic_errors(e)
        raise InputError(f"model card {display}: " + "; ".join(msgs), field="card") from None
    errors: list[str] = []
    if card.drug.name.strip().lower() != stem.lower():
        errors.append(f"[drug] name: {card.drug.name!r} differs from the file name {stem!r}")
    st = card.structure.model_dump()
    for k in required_params(st):
        if k not in card.params:
            errors.append(f"[params] {k}: is required for a {st['pk']} card with {st['absorption']} dosing"
                          + (" and time-varying CL" if k in ("CLSS", "KCL") else "")
                          + (" and a soluble target" if k in ("STAA0", "KD_STAA") else "") + " and missing")
    info = _model_param_info(st)
    for k, entry in card.params.items():
        key = "V" if (k == "V1" and "V" in info) else k
        if k in CARD_UNITS:
            if entry.unit != CARD_UNITS[k]:
                errors.append(f"[params] {k}: unit must be {CARD_UNITS[k]!r}, got {entry.unit!r}")
        elif key in info:
            if entry.unit != info[key].unit:
                errors.append(f"[params] {k}: unit must be {info[key].unit!r} (the model's), got {entry.unit!r}")
        elif k in ("Q", "V2", "CLSS", "KCL"):
            pass  # kept by a 1cmt / constant-CL card as documentation; not used by its model
        else:
            errors.append(f"[params] {k}: not a parameter of the TCE model; allowed: "
                          f"{', '.join(sorted(set(CARD_UNITS) | set(info)))}")
            continue
        if key in info:
            why = info[key].violation(entry.value)
            if why is not None:
                errors.append(f"[params] {k}: value {why}")
            tr = entry.prior.transform if entry.prior is not None else None
            p = info[key]
            if tr == "logit" and p.upper != 1.0:
                errors.append(f"[params] {k}: prior transform 'logit' is for fractions; {k} is {p.domain}")
            elif tr == "log" and p.real:
                errors.append(f"[params] {k}: prior transform 'log' needs a positive parameter; {k} is {p.domain}")
        elif entry.value < 0 or (entry.value == 0 and k not in ("KCL", "KGROW")):
            errors.append(f"[params] {k}: value must be > 0 ({entry.unit}), got {entry.value:g}")
    if card.crs:
        from .crs import crs_params

        vals = {}
        for k, v in card.crs.items():
            v = v.get("value") if isinstance(v, Mapping) else v
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                errors.append(f"[crs] {k}: must be a number or {{ value, source }}, got {v!r}")
                continue
            vals[k] = v
        try:
            crs_params(vals)
        except InputError as e:
            errors.append(f"[crs] {e}")
    if errors:
        raise InputError(f"model card {display}: " + "; ".join(errors), field="card")
    return raw


__all__ = ["CARD_UNITS", "ABSORPTIONS", "required_params", "validate_card_text"]
