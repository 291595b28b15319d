"""Calibration job specs (``calibration/jobs/*.toml``): what to fit, how, and how long; validated before anything runs.

A spec is a TOML file with these tables (every key optional unless marked; unknown keys are refused)::

    [job]          name (required), description, method = "map" | "nuts" | "map+nuts"
    [data]         drugs (required, card names), studies (study ids; default every usable study of the drugs),
                   leave_out (["DRUG", "DRUG:crs", "DRUG:il6"]: fitted without, predicted in targets.csv)
    [parameters]   class, drug (parameter names), iiv (OMEGA_<P> / CRS_OMEGA, class level),
                   deviations = {P = tau}, priors = {P = {scale = s, value = v}}   (prior overrides)
    [population]   patients (per study, >= 2), seed (>= 0), stratified (bool)
    [map]          starts, max_steps, start_scale, checkpoint_every, hessian = "forward" | "central",
                   laplace_draws (predictive draws when the job has no NUTS phase), init (a calibrated file of
                   the same parameter vector, e.g. data/calibrated/tce_map.json: the first start is its MAP)
    [nuts]         chains, warmup, draws, target_accept (0-1), max_tree_depth (1-12), seed, checkpoint_every,
                   free (entries of the fit's flat vector, e.g. "class:CRS_BETA"; the others stay at the MAP;
                   default: all), thin (every thin-th draw is kept, and re-simulated for the predictive checks)

:func:`load_spec` returns a :class:`JobSpec` or raises :class:`~qsp.errors.InputError` whose message names the
file, the key and the allowed values (``qsp calibrate`` prints it on one line and exits 2). Names of drugs,
parameters and studies are checked against the cards and the target tables (:func:`check_against_data`) before
any model is compiled. :func:`spec_hash` is a SHA-256 of the canonical spec (what a checkpoint is keyed by,
together with :func:`qsp.jobs.store.data_hash`).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError

METHODS = ("map", "nuts", "map+nuts")
HESSIANS = ("forward", "central")

# table -> key -> (type, default); "required" marks a key without default
_SCHEMA: dict[str, dict[str, tuple]] = {
    "job": {"name": (str, "required"), "description": (str, ""), "method": (str, "map")},
    "data": {"drugs": (list, "required"), "studies": (list, []), "leave_out": (list, [])},
    "parameters": {"class": (list, []), "drug": (list, []), "iiv": (list, []), "deviations": (dict, {}),
                   "priors": (dict, {})},
    "population": {"patients": (int, 48), "seed": (int, 1), "stratified": (bool, True)},
    "map": {"starts": (int, 1), "max_steps": (int, 100), "start_scale": (float, 0.5), "checkpoint_every": (int, 5),
            "hessian": (str, "forward"), "laplace_draws": (int, 40), "init": (str, "")},
    "nuts": {"chains": (int, 2), "warmup": (int, 200), "draws": (int, 200), "target_accept": (float, 0.8),
             "max_tree_depth": (int, 6), "seed": (int, 0), "checkpoint_every": (int, 50), "free": (list, []),
             "thin": (int, 1)},
}
_TYPE_WORDS = {str: "a string", list: "a list", dict: "a table", int: "an integer", float: "a number",
               bool: "true or false"}


@dataclass(frozen=True)
class JobSpec:
    """A validated job spec (see the module docstring); ``path`` is where it was read from."""

    path: str
    name: str
    description: str
    method: str
    drugs: tuple[str, ...]
    studies: tuple[str, ...]
    leave_out: tuple[str, ...]
    class_params: tuple[str, ...]
    drug_params: tuple[str, ...]
    iiv: tuple[str, ...]
    deviations: dict
    priors: dict
    patients: int
    seed: int
    stratified: bool
    map: dict = field(default_factory=dict)
    nuts: dict = field(default_factory=dict)

    @property
    def runs_map(self) -> bool:
        return self.method in ("map", "map+nuts")

    @property
    def runs_nuts(self) -> bool:
        return self.method in ("nuts", "map+nuts")

    def canonical(self) -> dict:
        """The spec as plain data without its path (what :func:`spec_hash` hashes)."""
        d = asdict(self)
        d.pop("path")
        return d


def _err(path: str, key: str, why: str) -> InputError:
    return InputError(f"job spec {path}: {key}: {why}", field=key)


def _typed(path: str, key: str, v, typ):
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if typ is int and isinstance(v, bool) or not isinstance(v, typ):
        raise _err(path, key, f"must be {_TYPE_WORDS[typ]}, got {v!r}")
    return v


def _str_list(path: str, key: str, v) -> tuple[str, ...]:
    if any(not isinstance(x, str) or not x.strip() for x in v):
        raise _err(path, key, f"must be a list of non-empty strings, got {v!r}")
    out = tuple(x.strip() for x in v)
    dup = sorted({x for x in out if out.count(x) > 1})
    if dup:
        raise _err(path, key, f"repeats {dup}")
    return out


def parse_spec(raw: dict, path: str) -> JobSpec:
    """Validate a parsed TOML spec (see the module docstring); errors name ``path`` and the key."""
    extra = sorted(set(raw) - set(_SCHEMA))
    if extra:
        raise _err(path, extra[0], f"unknown table; allowed: {', '.join(_SCHEMA)}")
    vals: dict[str, dict] = {}
    for table, keys in _SCHEMA.items():
        got = raw.get(table, {})
        if not isinstance(got, dict):
            raise _err(path, table, "must be a table")
        unknown = sorted(set(got) - set(keys))
        if unknown:
            raise _err(path, f"{table}.{unknown[0]}", f"unknown key; allowed: {', '.join(keys)}")
        vals[table] = {}
        for k, (typ, default) in keys.items():
            if k not in got:
                if default == "required":
                    raise _err(path, f"{table}.{k}", "is required")
                vals[table][k] = default
            else:
                vals[table][k] = _typed(path, f"{table}.{k}", got[k], typ)
    job, data, par, pop, mp, nu = (vals[t] for t in ("job", "data", "parameters", "population", "map", "nuts"))
    if not job["name"].strip() or any(c in job["name"] for c in "/\\"):
        raise _err(path, "job.name", f"must be a non-empty name without slashes, got {job['name']!r}")
    if job["method"] not in METHODS:
        raise _err(path, "job.method", f"unknown method {job['method']!r}; allowed: {', '.join(METHODS)}")
    drugs = tuple(d.lower() for d in _str_list(path, "data.drugs", data["drugs"]))
    if not drugs:
        raise _err(path, "data.drugs", "must name at least one drug")
    leave_out = _str_list(path, "data.leave_out", data["leave_out"])
    for lo in leave_out:
        drug, _, kind = lo.partition(":")
        if kind not in ("", "crs", "il6"):
            raise _err(path, "data.leave_out", f"{lo!r}: allowed forms DRUG, DRUG:crs, DRUG:il6")
        if drug.lower() not in drugs:
            raise _err(path, "data.leave_out", f"{lo!r}: {drug!r} is not one of data.drugs ({', '.join(drugs)})")
    cls = _str_list(path, "parameters.class", par["class"])
    drg = _str_list(path, "parameters.drug", par["drug"])
    iiv = _str_list(path, "parameters.iiv", par["iiv"])
    if not (cls or drg or iiv):
        raise _err(path, "parameters", "names no parameter to fit (class, drug or iiv)")
    for k, tau in par["deviations"].items():
        if k not in cls:
            raise _err(path, f"parameters.deviations.{k}", f"deviations are for class parameters ({', '.join(cls)})")
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
            raise _err(path, f"parameters.deviations.{k}", f"must be a positive SD, got {tau!r}")
    priors = {}
    for k, ov in par["priors"].items():
        if k not in cls + drg + iiv:
            raise _err(path, f"parameters.priors.{k}", f"is not a fitted parameter ({', '.join(cls + drg + iiv)})")
        if not isinstance(ov, dict) or not ov or set(ov) - {"scale", "value"}:
            raise _err(path, f"parameters.priors.{k}", "must be a table with scale and/or value")
        for kk, v in ov.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise _err(path, f"parameters.priors.{k}.{kk}", f"must be a positive number, got {v!r}")
        priors[k] = {kk: float(v) for kk, v in ov.items()}
    if pop["patients"] < 2:
        raise _err(path, "population.patients", f"must be at least 2, got {pop['patients']}")
    if pop["seed"] < 0:
        raise _err(path, "population.seed", f"must be >= 0, got {pop['seed']}")
    for k in ("starts", "max_steps", "checkpoint_every"):
        if mp[k] < 1:
            raise _err(path, f"map.{k}", f"must be at least 1, got {mp[k]}")
    if mp["laplace_draws"] < 2:
        raise _err(path, "map.laplace_draws", f"must be at least 2, got {mp['laplace_draws']}")
    if mp["hessian"] not in HESSIANS:
        raise _err(path, "map.hessian", f"unknown scheme {mp['hessian']!r}; allowed: {', '.join(HESSIANS)}")
    if not 0 < mp["start_scale"] <= 1:
        raise _err(path, "map.start_scale", f"must lie in (0, 1], got {mp['start_scale']}")
    for k, lo in (("chains", 1), ("draws", 1), ("warmup", 0), ("checkpoint_every", 1), ("thin", 1), ("seed", 0)):
        if nu[k] < lo:
            raise _err(path, f"nuts.{k}", f"must be at least {lo}, got {nu[k]}")
    if not 0 < nu["target_accept"] < 1:
        raise _err(path, "nuts.target_accept", f"must lie in (0, 1), got {nu['target_accept']}")
    if not 1 <= nu["max_tree_depth"] <= 12:
        raise _err(path, "nuts.max_tree_depth", f"must be 1-12, got {nu['max_tree_depth']}")
    nu["free"] = list(_str_list(path, "nuts.free", nu["free"]))
    return JobSpec(path, job["name"].strip(), job["description"], job["method"], drugs,
                   _str_list(path, "data.studies", data["studies"]), leave_out, cls, drg, iiv,
                   {k: float(v) for k, v in par["deviations"].items()}, priors, pop["patients"], pop["seed"],
                   pop["stratified"], dict(mp), dict(nu))


def load_spec(path: str | Path) -> JobSpec:
    """Read and validate a job spec file (names checked against the data by :func:`check_against_data`)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"job spec {p}: no such file", field="JOB")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"job spec {p}: not valid TOML ({e})", field="JOB") from None
    spec = parse_spec(raw, str(p))
    check_against_data(spec)
    return spec


def check_against_data(spec: JobSpec) -> None:
    """Drugs are cards with targets; studies are target studies of those drugs; parameters exist in the models;
    ``nuts.free`` names entries of the fit's vector. Raises InputError naming the spec file and key."""
    from ..calibrate.targets import load_targets
    from ..cards import list_cards

    cards = list_cards()
    for d in spec.drugs:
        if d not in cards:
            raise _err(spec.path, "data.drugs", f"unknown drug {d!r}; allowed: {', '.join(cards)}")
    t = load_targets()
    have = set(t.studies.drug)
    missing = [d for d in spec.drugs if d not in have]
    if missing:
        raise _err(spec.path, "data.drugs", f"no calibration targets for {missing}; drugs with targets: "
                                            f"{', '.join(sorted(have))}")
    ids = set(t.studies.study_id[t.studies.drug.isin(spec.drugs)])
    bad = [s for s in spec.studies if s not in ids]
    if bad:
        raise _err(spec.path, "data.studies", f"unknown studies {bad} for these drugs; allowed: "
                                              f"{', '.join(sorted(ids))}")
    left = _after_leave_outs(t, spec.leave_out)
    per_study = (set(left.crs_incidence.study_id) | set(left.timecourses.study_id) | set(left.summaries.study_id))
    empty = [s for s in spec.studies if s not in per_study]
    if empty:
        raise _err(spec.path, "data.studies", f"{empty} keep no target after data.leave_out "
                                              f"({', '.join(spec.leave_out)}); name studies the fit can use")
    if not spec.studies and not per_study & ids:
        raise _err(spec.path, "data.leave_out", "leaves no target to fit")
    try:
        space = job_space(spec)
    except InputError as e:
        raise _err(spec.path, "parameters", str(e)) from None
    if spec.map["init"]:
        init_vector(spec, space)
    names = space.names()
    bad = [f for f in spec.nuts["free"] if f not in names]
    if bad:
        raise _err(spec.path, "nuts.free", f"{bad} are not entries of the fit's vector; allowed: {', '.join(names)}")


def _after_leave_outs(targets, leave_out):
    """The target tables without the left-out ones: ``DRUG`` (all its targets), ``DRUG:crs`` (its CRS
    incidences), ``DRUG:il6`` (its IL-6 series)."""
    from dataclasses import replace

    for lo in leave_out:
        drug, _, kind = lo.partition(":")
        ids = set(targets.studies.study_id[targets.studies.drug == drug.lower()])
        crs, tc, sm = targets.crs_incidence, targets.timecourses, targets.summaries
        if kind in ("", "crs"):
            crs = crs[~crs.study_id.isin(ids)]
        if kind == "il6":
            tc = tc[~(tc.study_id.isin(ids) & (tc.quantity == "il6_pg_per_ml"))]
        if kind == "":
            tc = tc[~tc.study_id.isin(ids)]
            sm = sm[~sm.study_id.isin(ids)]
        targets = replace(targets, crs_incidence=crs.reset_index(drop=True), timecourses=tc.reset_index(drop=True),
                          summaries=sm.reset_index(drop=True))
    return targets


def job_space(spec: JobSpec):
    """The :class:`~qsp.calibrate.space.ParameterSpace` of a spec (models from the cards, prior overrides)."""
    from ..calibrate.space import ParameterSpace
    from ..cards import load_card

    models = {d: load_card(d).model() for d in spec.drugs}
    return ParameterSpace(models, class_params=spec.class_params + spec.iiv, drug_params=spec.drug_params,
                          deviations=spec.deviations, prior_overrides=spec.priors)


def init_path(spec: JobSpec) -> Path:
    """Where ``map.init`` points: the working directory first, then the spec's folder."""
    p = Path(spec.map["init"])
    if not p.is_absolute() and not p.is_file():
        p = Path(spec.path).parent / p
    return p


def init_vector(spec: JobSpec, space):
    """The MAP start of ``map.init`` (a calibrated file; a relative path is taken from the working directory,
    then from the spec's folder), checked against the space; InputError naming the key otherwise."""
    from ..calibrate.export import x_from_calibrated
    from ..paramsets import read_calibrated

    p = init_path(spec)
    try:
        return x_from_calibrated(space, read_calibrated(p))
    except (InputError, ValueError, KeyError) as e:
        raise _err(spec.path, "map.init", f"cannot start from {spec.map['init']}: {e}") from None


def fit_targets(spec: JobSpec):
    """The targets a job fits: every target table, less ``data.leave_out``."""
    from ..calibrate.targets import load_targets

    return _after_leave_outs(load_targets(), spec.leave_out)


def spec_hash(spec: JobSpec) -> str:
    """SHA-256 of the canonical spec (sorted JSON, path left out)."""
    return hashlib.sha256(json.dumps(spec.canonical(), sort_keys=True, default=list).encode()).hexdigest()


__all__ = ["JobSpec", "METHODS", "parse_spec", "load_spec", "check_against_data", "job_space", "spec_hash",
           "fit_targets", "init_vector"]
