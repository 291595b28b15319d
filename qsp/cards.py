"""Model cards: one TOML file per drug in ``models/`` (format: ``models/README.md``).

``load_card("teclistamab")`` parses and validates a card; ``card.model()`` builds the TCE model with
the card's values as defaults (and their sources); ``card.regimen()`` returns a label regimen from
``data/regimens.csv``; ``card.covariates()`` the default patient; ``card.parameter_set("calibrated")`` the
calibrated typical values (:mod:`qsp.paramsets`) to lay over the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from .card_schema import CARD_UNITS, validate_card_text
from .errors import InputError
from .io.resources import CardFile, builtin_models, card_files
from .model import Model
from .regimen import Regimen
from .components.tcells import DEFAULT_SECRETION_STAGES
from .tce import build_tce_model
from .units import Covariates

REQUIRED_TABLES = ("drug", "structure", "covariates", "params")


def models_dir() -> Path:
    """The built-in card folder (``models/`` in the repository, the package ``qsp._models`` when installed)."""
    return Path(str(builtin_models()))


def list_cards() -> list[str]:
    """Names of every available card (built-in and ``$QSP_MODELS_DIR``), valid or not."""
    return list(card_files())


@dataclass(frozen=True, eq=False)
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
    location: str = "built-in"
    text: str = field(default="", repr=False)

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
        return _model_cached(self, binding, il6_state)

    def parameter_set(self, parameters=None, *, binding: str = "qe"):
        """The typical values a run lays over :meth:`model` (:class:`qsp.paramsets.ParameterSet`).

        ``parameters``: ``None`` (calibrated when a calibrated file is available, else prior), ``"prior"`` or
        ``"calibrated"``. ``.values`` are overrides for :func:`qsp.simulate.simulate` /
        :meth:`qsp.model.Model.params`, e.g. ``model.params(card.parameter_set("calibrated").model_values)``
        (``.model_values``: without the fitted IIV SDs, which describe a population);
        :meth:`model` itself always carries the card's (prior) values.
        """
        from .paramsets import resolve_parameter_set

        return resolve_parameter_set(self.name, self.model(binding=binding), parameters)

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


def _parse(cf: CardFile) -> DrugCard:
    try:
        text = cf.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"model card {cf.path}: cannot be read: {e}", field="card") from None
    return _parse_text(cf.name, cf.path, cf.location, text)


@lru_cache(maxsize=64)
def _parse_text(name: str, path: str, location: str, text: str) -> DrugCard:
    raw = validate_card_text(text, path, name)
    card = DrugCard(name=raw["drug"]["name"], drug=raw["drug"], structure=raw["structure"],
                    covariate_values=raw["covariates"], params=raw["params"], pd=raw.get("pd", {}), path=path,
                    population=raw.get("population", {}), crs=raw.get("crs", {}), location=location, text=text)
    _check_population(card)
    return card


def _check_population(card: DrugCard) -> None:
    from .population import population_spec

    try:
        population_spec(card).check(card.model())
    except InputError as e:
        raise InputError(f"model card {card.path}: [population] {e}", field="card") from None


def load_card(name: str) -> DrugCard:
    """Load and validate a drug's card by name (case-insensitive); unknown names list the library.

    User cards in ``$QSP_MODELS_DIR`` come before the built-in ones. A card that fails validation
    raises :class:`InputError` naming the file, table and key.
    """
    key = str(name).strip().lower()
    files = card_files()
    if key not in files:
        raise InputError(f"unknown drug {name!r}; allowed: {', '.join(files) or '(no cards found)'}", field="drug")
    return _parse(files[key])


def load_card_file(path) -> DrugCard:
    """Load and validate a card from a TOML file (a new drug's card, not in the library); the drug name is the
    file stem. Errors name the file, table and key."""
    from pathlib import Path

    from .io.resources import CardFile

    p = Path(path)
    if not p.is_file():
        raise InputError(f"card file not found: {path}", field="card")
    return _parse(CardFile(p.stem.lower(), "file", str(p), p))


@dataclass(frozen=True)
class CardStatus:
    """A card in the library listing: its name, where it comes from, and the card or why it is invalid."""

    name: str
    location: str
    path: str
    card: "DrugCard | None"
    error: str = ""


def card_library() -> list[CardStatus]:
    """Every available card, each loaded or with the reason it is invalid (one broken card breaks nothing)."""
    out = []
    for key, cf in card_files().items():
        try:
            out.append(CardStatus(key, cf.location, cf.path, _parse(cf)))
        except InputError as e:
            out.append(CardStatus(key, cf.location, cf.path, None, str(e)))
    return out


@lru_cache(maxsize=64)
def _model_cached(card: "DrugCard", binding: str, il6_state: bool) -> Model:
    vals = card.values()
    srcs = card.sources()
    st = card.structure
    pk = st.get("pk", "2cmt")
    if pk == "1cmt":
        vals["V"] = vals.pop("V1")
        srcs["V"] = srcs.pop("V1", "")
        for k in ("Q", "V2"):
            vals.pop(k, None)
    for k, v in card.crs.items():  # [crs]: numbers or { value, source }
        vals[k] = float(v["value"] if isinstance(v, Mapping) else v)
        if isinstance(v, Mapping) and v.get("source"):
            srcs[k] = str(v["source"])
    tv = bool(st.get("time_varying_cl", False))
    if not tv:
        for k in ("CLSS", "KCL"):
            vals.pop(k, None)
    model_name = f"tce-{card.name}" + ("" if binding == "qe" else f"-{binding}")
    desc = f"{card.name} ({card.drug.get('brand', '')}; {card.target} x CD3)"
    model = build_tce_model(model_name, vals, mw_g_per_mol=card.mw_g_per_mol, pk=pk, time_varying_cl=tv,
                            binding=binding, il6_state=il6_state, sources=srcs, description=desc,
                            secretion_stages=int(st.get("secretion_stages", DEFAULT_SECRETION_STAGES)),
                            dex_holds_secretion=bool(st.get("dex_holds_secretion", False)),
                            tonic_secretion=bool(st.get("tonic_secretion", False)),
                            monocyte_priming=bool(st.get("monocyte_priming", False)))
    priors = card_priors(card, model)
    return model.with_priors(priors) if priors else model


def card_priors(card: "DrugCard", model: Model) -> dict:
    """The card's ``prior = { scale, transform, loc }`` entries as :class:`qsp.priors.Prior` (by model name)."""
    from .priors import Prior

    info = model.param_info
    out = {}
    for k, entry in card.params.items():
        pr = entry.get("prior") if isinstance(entry, Mapping) else None
        if not pr:
            continue
        key = "V" if (k == "V1" and "V" in info and "V1" not in info) else k
        if key not in info:
            continue
        base = info[key].get_prior()
        out[key] = Prior(scale=float(pr["scale"]), transform=pr.get("transform") or base.transform,
                         loc=None if pr.get("loc") is None else float(pr["loc"]))
    return out
