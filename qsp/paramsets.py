"""Parameter sets: the model cards' prior values, or the calibrated values of a fit, as the simulator's defaults.

A *parameter set* is a set of typical values laid over a drug's model (its card values and the component
defaults, i.e. the prior centres):

* ``prior`` — nothing laid over: the card values and component defaults;
* ``calibrated`` — the typical values of the joint calibration fit, read from a calibrated-parameter file
  (format :data:`FORMAT`, written by :func:`qsp.calibrate.export.write_calibrated` or a calibration job).

Which file: ``$QSP_CALIBRATED`` (:data:`CALIBRATED_ENV`) if set — a path, or ``none`` for no file —, else
the file shipped as package data, ``data/calibrated/tce_posterior.json`` (:data:`SHIPPED_FILE`): the
``joint_crs_nuts`` job's posterior (the joint MAP of the mechanism, NUTS draws of the CRS layer;
``calibration/ship_posterior.py``). The joint MAP's Laplace file ``data/calibrated/tce_map.json`` ships too
(``QSP_CALIBRATED=<its path>``). The default set
(:func:`default_parameter_set`) is ``calibrated`` when such a file exists and ``prior`` otherwise; asking for
``calibrated`` when there is none, or when the file does not fit the drug's model, is an
:class:`~qsp.errors.InputError`, never a silent fallback to the prior.

What the file holds (all on the unconstrained scale ``u = T(value)`` of each parameter's prior transform,
:mod:`qsp.priors`, where the Laplace approximation of the fit is a normal distribution):

* ``drugs.<drug>``: for each drug in the fit, that drug's own parameter vector ``u_d`` (class parameters
  with the drug's deviation added, drug-level parameters) — its mean (the MAP), its covariance (the Laplace
  covariance mapped onto ``u_d``) and the constrained values ``T^-1(mean)``;
* ``class``: the class parameters alone (mean, the marginal of the Laplace covariance, values), used for a
  drug that was not in the fit, and ``deviation_sd``: the SD ``tau`` the fit allowed a drug's deviation from
  the class value. A drug outside the fit gets the class values; its draws add ``tau^2`` to the variance of
  the parameters that may deviate (a new drug's deviation is unknown: ``d ~ N(0, tau^2)``, the fit's prior);
* optionally, per section, ``draws``: posterior draws of ``u`` (a NUTS calibration job's ``params.toml``,
  :mod:`qsp.jobs`); :func:`draw_parameter_sets` then picks among them instead of the normal approximation.

A file is JSON, or TOML when its name ends in ``.toml`` (the same document). Its ``fit.structure`` records the
T-cell and cytokine structure options each fitted drug's model had (``secretion_stages``, ``dex_holds_secretion``,
``tonic_secretion``, ``monocyte_priming``; :func:`check_structure`): parameters fitted on one structure are not laid over another; an option missing from
the record predates it and was fitted at its default (:data:`qsp.tce.STRUCTURE_DEFAULTS`).

:func:`calibrated_values` gives a drug's calibrated typical values; :func:`draw_parameter_sets` draws K
parameter sets from the normal approximation (for intervals: :mod:`qsp.uncertainty`);
:func:`resolve_parameter_set` turns ``"prior"``/``"calibrated"``/``None``/a mapping into a
:class:`ParameterSet` that :func:`qsp.trial.run_card_trial` and :func:`qsp.drugrun.run_drug` lay under the
caller's explicit ``params`` (explicit values always win).

This module is engine level: it reads files and numbers, and imports nothing of :mod:`qsp.calibrate`.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import InputError
from .population import omega_target
from .priors import TRANSFORMS

FORMAT = "qsp-calibrated/1"
CALIBRATED_ENV = "QSP_CALIBRATED"
SHIPPED_FILE = ("calibrated", "tce_posterior.json")  # under data/ (package qsp._data)
PARAMETER_SETS = ("prior", "calibrated")
LEVELS = ("class", "class+deviation", "drug")
VALUE_RTOL = 1e-6  # stored values must equal T^-1(mean) to this relative tolerance
COV_TOL = 1e-8  # symmetry and smallest-eigenvalue tolerance of a stored covariance (relative to its scale)


# --------------------------------------------------------------------------------------------------
# transforms (NumPy; the same maps as qsp.priors)
# --------------------------------------------------------------------------------------------------
def to_unconstrained_np(x, transform: str) -> np.ndarray:
    """``T(x)`` in NumPy: log, logit or identity."""
    x = np.asarray(x, dtype=float)
    if transform == "log":
        return np.log(x)
    if transform == "logit":
        return np.log(x) - np.log1p(-x)
    return x


def from_unconstrained_np(u, transform: str) -> np.ndarray:
    """``T^-1(u)`` in NumPy (the logistic in a form that does not overflow)."""
    u = np.asarray(u, dtype=float)
    if transform == "log":
        return np.exp(u)
    if transform == "logit":
        e = np.exp(-np.abs(u))
        return np.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return u


# --------------------------------------------------------------------------------------------------
# the file
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    """One normal approximation on the unconstrained scale: a drug's parameter vector or the class one.

    ``mean`` is the MAP of ``u = T(value)`` (``T`` = ``transforms[i]``), ``cov`` its covariance (n x n),
    ``values`` the constrained typical values ``T^-1(mean)``; ``levels[i]`` says where parameter i came from
    in the fit (``class``, ``class+deviation``, ``drug``); ``deviation_sd`` (class section only) the SD of
    a drug's deviation from the class value, 0 where no deviation was allowed.
    """

    names: tuple[str, ...]
    transforms: tuple[str, ...]
    mean: np.ndarray
    cov: np.ndarray
    values: dict[str, float]
    levels: tuple[str, ...] = ()
    deviation_sd: dict[str, float] = field(default_factory=dict)
    draws: np.ndarray | None = None  # (m, n) posterior draws of u (a NUTS job's file), None for a Laplace fit

    def index(self, names) -> np.ndarray:
        pos = {k: i for i, k in enumerate(self.names)}
        return np.array([pos[k] for k in names], dtype=int)


@dataclass(frozen=True)
class CalibratedFile:
    """A validated calibrated-parameter file: where it is, the fit's metadata, the class and drug sections."""

    path: str
    fit: dict
    class_section: Section
    drugs: dict[str, Section]
    raw: dict = field(repr=False, default_factory=dict)

    def drug_section(self, drug: str) -> Section | None:
        return self.drugs.get(str(drug).strip().lower())

    @property
    def created(self) -> str:
        return str(self.fit.get("created", ""))


def _bad(where: str, fld: str, why: str) -> InputError:
    return InputError(f"calibrated parameter file {where}: field {fld!r}: {why}", field=fld)


def _number_list(obj, where: str, fld: str, n: int | None = None) -> np.ndarray:
    if not isinstance(obj, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in obj):
        raise _bad(where, fld, "must be a list of numbers")
    a = np.asarray(obj, dtype=float)
    if not np.all(np.isfinite(a)):
        raise _bad(where, fld, "must hold finite numbers")
    if n is not None and a.size != n:
        raise _bad(where, fld, f"must have {n} entries (one per name), has {a.size}")
    return a


def _section(obj, where: str, name: str, *, is_class: bool) -> Section:
    if not isinstance(obj, Mapping):
        raise _bad(where, name, "must be a table (JSON object)")
    for k in ("names", "transforms", "mean", "cov", "values"):
        if k not in obj:
            raise _bad(where, f"{name}.{k}", "is missing")
    names = obj["names"]
    if not isinstance(names, list) or not all(isinstance(s, str) and s.strip() for s in names):
        raise _bad(where, f"{name}.names", "must be a list of parameter names")
    if len(set(names)) != len(names):
        raise _bad(where, f"{name}.names", f"has repeated names: {sorted({s for s in names if names.count(s) > 1})}")
    n = len(names)
    tr = obj["transforms"]
    if not isinstance(tr, list) or len(tr) != n:
        raise _bad(where, f"{name}.transforms", f"must be a list of {n} transforms (one per name)")
    for t in tr:
        if t not in TRANSFORMS:
            raise _bad(where, f"{name}.transforms", f"unknown transform {t!r}; allowed: {', '.join(TRANSFORMS)}")
    mean = _number_list(obj["mean"], where, f"{name}.mean", n)
    cov_raw = obj["cov"]
    if not isinstance(cov_raw, list) or len(cov_raw) != n or any(not isinstance(r, list) or len(r) != n
                                                                 for r in cov_raw):
        raise _bad(where, f"{name}.cov", f"must be a {n} x {n} matrix (a list of {n} rows of {n} numbers)")
    cov = np.array([_number_list(r, where, f"{name}.cov") for r in cov_raw], dtype=float).reshape(n, n)
    scale = max(1.0, float(np.max(np.abs(cov)))) if n else 1.0
    if n and not np.allclose(cov, cov.T, rtol=0.0, atol=COV_TOL * scale):
        raise _bad(where, f"{name}.cov", "must be symmetric")
    if n and float(np.linalg.eigvalsh(0.5 * (cov + cov.T)).min()) < -COV_TOL * scale:
        raise _bad(where, f"{name}.cov", "must be positive semi-definite (a covariance matrix)")
    vals = obj["values"]
    if not isinstance(vals, list):
        raise _bad(where, f"{name}.values", "must be a list of numbers (one per name)")
    values = _number_list(vals, where, f"{name}.values", n)
    for i, k in enumerate(names):
        back = float(from_unconstrained_np(mean[i], tr[i]))
        if not math.isclose(back, values[i], rel_tol=VALUE_RTOL, abs_tol=1e-12):
            raise _bad(where, f"{name}.values", f"{k} = {values[i]:g} is not T^-1(mean) = {back:g} "
                                                f"(transform {tr[i]})")
    levels = obj.get("levels", ["class" if is_class else "drug"] * n)
    if not isinstance(levels, list) or len(levels) != n or any(lv not in LEVELS for lv in levels):
        raise _bad(where, f"{name}.levels", f"must be a list of {n} of: {', '.join(LEVELS)}")
    dev = {}
    if is_class:
        raw = obj.get("deviation_sd", {})
        if not isinstance(raw, Mapping):
            raise _bad(where, f"{name}.deviation_sd", "must be a table {name: SD}")
        for k, v in raw.items():
            if k not in names:
                raise _bad(where, f"{name}.deviation_sd", f"{k!r} is not one of the section's names")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
                raise _bad(where, f"{name}.deviation_sd", f"{k}: must be a non-negative number, got {v!r}")
            dev[k] = float(v)
    draws = None
    if "draws" in obj:
        raw_d = obj["draws"]
        if not isinstance(raw_d, list) or not raw_d or any(not isinstance(r, list) or len(r) != n for r in raw_d):
            raise _bad(where, f"{name}.draws", f"must be a non-empty list of draws, each a list of {n} numbers "
                                               "(one per name)")
        draws = np.array([_number_list(r, where, f"{name}.draws") for r in raw_d], dtype=float).reshape(-1, n)
    return Section(tuple(names), tuple(tr), mean, 0.5 * (cov + cov.T), dict(zip(names, values.tolist())),
                   tuple(levels), dev, draws)


def parse_calibrated(obj: Any, where: str) -> CalibratedFile:
    """Validate a parsed calibrated-parameter file; errors name the file (``where``) and the field."""
    if not isinstance(obj, Mapping):
        raise _bad(where, "(top level)", "must be a JSON object")
    fmt = obj.get("format")
    if fmt != FORMAT:
        raise _bad(where, "format", f"must be {FORMAT!r}, got {fmt!r}")
    fit = obj.get("fit")
    if not isinstance(fit, Mapping):
        raise _bad(where, "fit", "must be a table (JSON object) of the fit's metadata")
    if "class" not in obj:
        raise _bad(where, "class", "is missing")
    cls = _section(obj["class"], where, "class", is_class=True)
    drugs_raw = obj.get("drugs")
    if not isinstance(drugs_raw, Mapping):
        raise _bad(where, "drugs", "must be a table {drug: section}")
    drugs = {}
    for d, sec in drugs_raw.items():
        key = str(d).strip().lower()
        if not key:
            raise _bad(where, "drugs", "has an empty drug name")
        drugs[key] = _section(sec, where, f"drugs.{d}", is_class=False)
    if not cls.names and not drugs:
        raise _bad(where, "class", "the file holds no parameter (no class parameter and no drug)")
    structure = fit.get("structure")
    if structure is not None:
        from .components.tcells import MAX_SECRETION_STAGES

        from .tce import STRUCTURE_DEFAULTS

        if not isinstance(structure, Mapping):
            raise _bad(where, "fit.structure", "must be a table {option: {drug: value}}")
        extra = sorted(str(k) for k in set(structure) - set(STRUCTURE_DEFAULTS))
        if extra:
            raise _bad(where, f"fit.structure.{extra[0]}",
                       f"is not a structure option; allowed: {', '.join(STRUCTURE_DEFAULTS)}")
        stages = structure.get("secretion_stages", {})
        if not isinstance(stages, Mapping) or not all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SECRETION_STAGES
                for v in stages.values()):
            raise _bad(where, "fit.structure.secretion_stages",
                       f"must be a table {{drug: integer 1-{MAX_SECRETION_STAGES}}}")
        for flag in ("dex_holds_secretion", "tonic_secretion", "monocyte_priming"):
            table = structure.get(flag, {})
            if not isinstance(table, Mapping) or not all(isinstance(v, bool) for v in table.values()):
                raise _bad(where, f"fit.structure.{flag}", "must be a table {drug: true or false}")
    return CalibratedFile(where, dict(fit), cls, drugs, dict(obj))


def read_calibrated(path: str | os.PathLike) -> CalibratedFile:
    """Read and validate a calibrated-parameter file from a path (an InputError names file and field)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"calibrated parameter file {p} does not exist", field="calibrated")
    st = p.stat()
    return _read_cached(str(p), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _read_cached(path: str, mtime_ns: int, size: int) -> CalibratedFile:
    return _parse_text(Path(path).read_bytes(), path)


def _parse_text(data: bytes, where: str) -> CalibratedFile:
    if str(where).endswith(".toml"):  # a calibration job's params.toml (qsp.jobs): the same document in TOML
        try:
            obj = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise InputError(f"calibrated parameter file {where}: not valid TOML ({e})", field="calibrated") from None
        return parse_calibrated(obj, where)
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"calibrated parameter file {where}: not UTF-8 text ({e})", field="calibrated") from None
    except json.JSONDecodeError as e:
        raise InputError(f"calibrated parameter file {where}: not valid JSON (line {e.lineno}, column {e.colno}: "
                         f"{e.msg})", field="calibrated") from None
    return parse_calibrated(obj, where)


def shipped_file():
    """The calibrated file shipped as package data (``data/calibrated/tce_posterior.json``), or None."""
    from .io.resources import data_root

    node = data_root()
    for part in SHIPPED_FILE:
        node = node.joinpath(part)
    return node if node.is_file() else None


def calibrated_file() -> CalibratedFile | None:
    """The calibrated file in force: ``$QSP_CALIBRATED`` (a path; ``none`` = no file), else the shipped one,
    else None. A named file that is missing or malformed raises InputError."""
    raw = os.environ.get(CALIBRATED_ENV, "").strip()
    if raw:
        if raw.lower() == "none":
            return None
        p = Path(raw).expanduser()
        if not p.is_file():
            raise InputError(f"{CALIBRATED_ENV}={raw!r}: no such file (a calibrated parameter file, or 'none')",
                             field=CALIBRATED_ENV)
        return read_calibrated(p)
    node = shipped_file()
    if node is None:
        return None
    return _shipped_cached(node.read_bytes())


@lru_cache(maxsize=2)
def _shipped_cached(data: bytes) -> CalibratedFile:
    return _parse_text(data, "data/" + "/".join(SHIPPED_FILE))


def default_parameter_set() -> str:
    """``calibrated`` when a calibrated file is available (shipped or ``$QSP_CALIBRATED``), else ``prior``."""
    return "calibrated" if calibrated_file() is not None else "prior"


# --------------------------------------------------------------------------------------------------
# a drug's calibrated values and draws
# --------------------------------------------------------------------------------------------------
def _no_file_reason() -> str:
    """Why no calibrated file is in force (for messages): switched off, or none shipped and none named."""
    if os.environ.get(CALIBRATED_ENV, "").strip().lower() == "none":
        return f"no calibrated parameter file in force ({CALIBRATED_ENV}=none switches it off)"
    return f"no calibrated parameter file is shipped with this installation and {CALIBRATED_ENV} is not set"


def _require_file(cf: CalibratedFile | None) -> CalibratedFile:
    if cf is None:
        raise InputError(f"{_no_file_reason()}; use the prior parameters, or set "
                         f"{CALIBRATED_ENV} to a file written by qsp.calibrate.export.write_calibrated",
                         field="parameters")
    return cf


def fitted_structure(cf: CalibratedFile, drug: str, option: str) -> set:
    """The values of the structure ``option`` (:data:`qsp.tce.STRUCTURE_DEFAULTS`) the file's parameters were
    fitted with for ``drug`` (its own entry; for a drug outside the fit, those of every fitted drug). An option
    the file does not record predates it: its default."""
    from .tce import STRUCTURE_DEFAULTS

    rec = {str(k).strip().lower(): v for k, v in ((cf.fit.get("structure") or {}).get(option) or {}).items()}
    key = str(drug).strip().lower()
    if key in rec:
        return {rec[key]}
    return set(rec.values()) or {STRUCTURE_DEFAULTS[option]}


def check_structure(drug: str, model, cf: CalibratedFile) -> None:
    """Refuse to lay a file's parameters over a model whose structure differs from the fit's (they would run
    silently on a mechanism they were not fitted to); the error names the option (the card's ``[structure]`` key)."""
    from .tce import structure_options_of

    have = structure_options_of(model)
    if have is None:
        return
    for option, value in have.items():
        fitted = fitted_structure(cf, drug, option)
        if fitted != {value}:
            shown = " / ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in sorted(fitted))
            now = str(value).lower() if isinstance(value, bool) else str(value)
            raise InputError(f"calibrated parameter file {cf.path}: its parameters were fitted with {option} = "
                             f"{shown}, but the model of {drug} has {now} ([structure] {option} of its card): use "
                             "the prior parameters or a file fitted with this structure", field=option)


def _drug_normal(drug: str, model, cf: CalibratedFile):
    """(names, transforms, mean, covariance for draws, level, skipped names) of ``drug`` on ``model``."""
    check_structure(drug, model, cf)
    info = model.param_info

    def known(k):  # a model parameter, or the IIV SD of one (OMEGA_<P>, applied to the population)
        t = omega_target(k)
        return k in info if t is None else (t in info or (t == "V1" and "V" in info))

    sec = cf.drug_section(drug)
    if sec is not None:
        missing = [k for k in sec.names if not known(k)]
        if missing:
            raise InputError(f"calibrated parameter file {cf.path}: {drug} was fitted with parameter(s) "
                             f"{', '.join(missing)} that its model {model.name} does not have; the file and the "
                             "model disagree (refit, or use the prior parameters)", field="parameters")
        return list(sec.names), list(sec.transforms), sec.mean, sec.cov, "drug", []
    sec = cf.class_section
    keep = [k for k in sec.names if known(k)]
    skipped = [k for k in sec.names if not known(k)]
    if not keep:
        fitted = ", ".join(sorted(cf.drugs)) or "none"
        raise InputError(f"calibrated parameter file {cf.path}: no calibrated parameter applies to {drug}: it was not "
                         f"in the fit (fitted drugs: {fitted}) and its model {model.name} has none of the class "
                         f"parameters ({', '.join(sec.names) or 'none'})", field="parameters")
    idx = sec.index(keep)
    cov = sec.cov[np.ix_(idx, idx)] + np.diag([sec.deviation_sd.get(k, 0.0) ** 2 for k in keep])
    return keep, [sec.transforms[i] for i in idx], sec.mean[idx], cov, "class", skipped


def calibrated_values(drug: str, model, *, file: CalibratedFile | None = None) -> dict[str, float]:
    """The calibrated values of ``drug`` for ``model`` (by parameter name, constrained scale), fitted IIV SDs
    (``OMEGA_<P>``) included: for a single patient's :func:`~qsp.simulate.simulate` take
    :attr:`ParameterSet.model_values` of :func:`resolve_parameter_set` instead.

    A drug in the fit gets its own section (class values plus its deviation, and its drug-level values); any
    other drug the class section (only the names its model has). Raises InputError when there is no
    calibrated file, or when it does not fit the model (never falls back to the prior silently).
    """
    cf = _require_file(file if file is not None else calibrated_file())
    names, tr, mean, _, _, _ = _drug_normal(drug, model, cf)
    return {k: float(from_unconstrained_np(m, t)) for k, t, m in zip(names, tr, mean)}


def _posterior_draws(drug: str, names: list, cf: CalibratedFile) -> tuple[np.ndarray, np.ndarray] | None:
    """(draws of ``names`` (m, n), variance added per name) when the file holds posterior draws, else None: the
    drug's own draws, or, for a drug outside the fit, the class draws plus a deviation ``N(0, tau^2)``."""
    sec = cf.drug_section(drug)
    extra = np.zeros(len(names))
    if sec is None:
        sec = cf.class_section
        extra = np.array([sec.deviation_sd.get(k, 0.0) ** 2 for k in names])
    if sec.draws is None:
        return None
    return sec.draws[:, sec.index(names)], extra


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    """``L`` with ``L L^T = cov`` for a positive semi-definite ``cov`` (eigenvalues below 0 set to 0)."""
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    return v * np.sqrt(np.clip(w, 0.0, None))


def draw_parameter_sets(drug: str, model, k: int, seed: int, *, file: CalibratedFile | None = None
                        ) -> list[dict[str, float]]:
    """``k`` parameter sets drawn from the fit, mapped back to the constrained scale.

    A file with posterior draws (a NUTS job's ``params.toml``, :mod:`qsp.jobs`): ``k`` of its draws, picked at
    random without replacement (with replacement when ``k`` exceeds them), plus the deviation ``N(0, tau^2)``
    for a drug outside the fit. Otherwise the normal approximation:
    ``u ~ N(mean, cov)`` on the unconstrained scale of ``drug``'s section (a drug outside the fit: the class
    section with the deviation variance ``tau^2`` added), then ``value = T^-1(u)`` per parameter; seeded by
    ``seed`` (NumPy ``default_rng``), so the same seed gives the same draws.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"number of parameter draws must be a positive integer, got {k!r}", field="draws")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}", field="seed")
    cf = _require_file(file if file is not None else calibrated_file())
    names, tr, mean, cov, _, _ = _drug_normal(drug, model, cf)
    post = _posterior_draws(drug, names, cf)
    rng = np.random.default_rng(int(seed))
    if post is not None:  # a sampled posterior: K of its draws (without replacement while there are enough)
        draws, extra_var = post
        pick = rng.choice(len(draws), size=int(k), replace=int(k) > len(draws))
        u = draws[pick] + rng.standard_normal((int(k), len(names))) * np.sqrt(extra_var)[None, :]
    else:
        z = rng.standard_normal((int(k), len(names)))
        u = mean[None, :] + z @ _sqrt_psd(cov).T
    cols = [from_unconstrained_np(u[:, j], tr[j]) for j in range(len(names))]
    return [{n: float(cols[j][i]) for j, n in enumerate(names)} for i in range(int(k))]


# --------------------------------------------------------------------------------------------------
# a resolved parameter set, as the simulator uses it
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParameterSet:
    """The typical values a run lays over the drug's model, and where they come from.

    ``values`` are overrides (empty for ``prior``); explicit ``params`` of a run win over them. ``level``:
    ``prior``; ``drug`` (the drug was in the fit: its own calibrated values); ``class`` (not in the fit: the
    class values); ``given`` (a mapping passed by the caller, e.g. one draw).
    """

    name: str
    values: dict[str, float] = field(default_factory=dict)
    level: str = "prior"
    file: str | None = None
    fit: dict = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    @property
    def model_values(self) -> dict[str, float]:
        """The typical values of model parameters, for :func:`qsp.simulate.simulate` / :meth:`Model.params`: the
        set without its fitted IIV SDs (``OMEGA_<P>``, which describe a population, :attr:`omegas`)."""
        return {k: v for k, v in self.values.items() if omega_target(k) is None}

    @property
    def omegas(self) -> dict[str, float]:
        """The set's fitted IIV SDs (``OMEGA_<P>``): a virtual population's spread
        (:func:`qsp.population.with_omegas`; :func:`qsp.trial.run_card_trial` applies them)."""
        return {k: v for k, v in self.values.items() if omega_target(k) is not None}

    def describe(self) -> str:
        """One line for the CLI: which set, from which file and fit."""
        if self.name == "prior":
            try:
                cf = calibrated_file()
                why = f"; {_no_file_reason()}" if cf is None else f"; not the calibrated {cf.path}"
            except InputError:
                why = f"; {CALIBRATED_ENV} names a file that cannot be used"
            return f"parameters: prior (model card values and component defaults{why})"
        if self.level == "given":
            return f"parameters: {self.name} ({len(self.values)} values given)"
        lvl = "the drug's own fitted values" if self.level == "drug" else "class values (the drug was not in the fit)"
        when = self.fit.get("created", "")
        return (f"parameters: calibrated ({self.file}; fit {when or 'of unknown date'}; {lvl}; "
                f"{len(self.values)} parameters)")

    def summary(self) -> dict:
        """The ``parameters`` entry of a run's ``summary.json``."""
        out: dict = {"set": self.name, "level": self.level}
        if self.name != "prior":
            out["file"] = self.file
            out["fit_created"] = self.fit.get("created")
            out["fit_qsp_version"] = self.fit.get("qsp_version")
            out["values"] = {k: float(f"{v:.6g}") for k, v in sorted(self.values.items())}
            if self.skipped:
                out["not_in_model"] = list(self.skipped)
        return out


def check_parameter_set_name(parameters: str) -> str:
    """``prior`` or ``calibrated`` (case-insensitive); anything else is an InputError naming the allowed ones."""
    key = str(parameters).strip().lower()
    if key not in PARAMETER_SETS:
        raise InputError(f"unknown parameter set {parameters!r}; allowed: {', '.join(PARAMETER_SETS)}",
                         field="parameters")
    return key


def resolve_parameter_set(drug: str, model, parameters: "str | Mapping | ParameterSet | None" = None
                          ) -> ParameterSet:
    """A :class:`ParameterSet` for ``drug``'s ``model``.

    ``parameters``: ``None`` (the default set, :func:`default_parameter_set`), ``"prior"``, ``"calibrated"``,
    a :class:`ParameterSet` (returned as is), or a mapping ``{name: value}`` (e.g. one of
    :func:`draw_parameter_sets`), checked against the model's names and domains.
    """
    if isinstance(parameters, ParameterSet):
        return parameters
    if isinstance(parameters, Mapping):
        vals = {str(k): float(v) for k, v in parameters.items()}
        _check_values(model, vals)  # unknown names / values outside a domain: InputError
        return ParameterSet("given", vals, "given")
    key = default_parameter_set() if parameters is None else check_parameter_set_name(parameters)
    if key == "prior":
        return ParameterSet("prior")
    cf = _require_file(calibrated_file())
    names, tr, mean, _, level, skipped = _drug_normal(drug, model, cf)
    vals = {k: float(from_unconstrained_np(m, t)) for k, t, m in zip(names, tr, mean)}
    _check_values(model, vals)
    return ParameterSet("calibrated", vals, level, cf.path, dict(cf.fit), tuple(skipped))


def _check_values(model, vals: Mapping[str, float]) -> None:
    """Model parameters against the model's names and domains; IIV SDs (``OMEGA_<P>``) by name and sign."""
    iiv = {k: v for k, v in vals.items() if omega_target(k) is not None}
    model.params({k: v for k, v in vals.items() if k not in iiv})
    for k, v in iiv.items():
        if not (math.isfinite(v) and v >= 0):
            raise InputError(f"{k} must be >= 0, got {v!r}", field=k)


__all__ = ["FORMAT", "CALIBRATED_ENV", "SHIPPED_FILE", "PARAMETER_SETS", "Section", "CalibratedFile",
           "ParameterSet", "parse_calibrated", "read_calibrated", "calibrated_file", "shipped_file",
           "default_parameter_set", "calibrated_values", "draw_parameter_sets", "resolve_parameter_set",
           "check_parameter_set_name", "to_unconstrained_np", "from_unconstrained_np"]
