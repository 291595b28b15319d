"""A MAP fit as the simulator's calibrated parameters: the file that :mod:`qsp.paramsets` reads.

:func:`export_calibrated` turns a :class:`~qsp.calibrate.fit.FitResult` into a versioned JSON document
(``"format": "qsp-calibrated/1"``, :data:`qsp.paramsets.FORMAT`); :func:`write_calibrated` writes it
atomically. ``data/calibrated/tce_map.json`` is written this way by the fit script; the default file,
``data/calibrated/tce_posterior.json``, is a NUTS job's ``params.toml`` (the same format with posterior draws),
shipped by ``calibration/ship_posterior.py``.

The fit works on the flat unconstrained vector ``x`` (entries named ``class:P``, ``drug:<drug>:Q``,
``dev:<drug>:P``; :meth:`ParameterSpace.names`) with the Laplace approximation ``x ~ N(x_map, Sigma)``.
A drug's own parameter vector is linear in ``x``:

    u_d = A_d x,   u_d[P] = x[class:P] + x[dev:d:P]  (class parameters; the deviation term only if allowed)
                   u_d[Q] = x[drug:d:Q]              (drug-level parameters)

so ``u_d ~ N(A_d x_map, A_d Sigma A_d^T)``; its constrained values are ``T^-1(u_d)`` (each parameter's prior
transform), the same numbers as ``FitResult.values[d]``. The file holds, in this order of use:

- ``drugs.<d>``: ``names``, ``transforms``, ``levels`` (``class``, ``class+deviation``, ``drug``), ``mean``
  (``A_d x_map``), ``sd``, ``cov`` (``A_d Sigma A_d^T``) and ``values`` (``T^-1(mean)``), per fitted drug;
- ``class``: the class parameters alone (``mean = x_map[class]``, ``cov`` the marginal of ``Sigma``,
  ``values``) and ``deviation_sd`` (the SD ``tau`` of a drug's deviation where the fit allowed one), for a
  drug that was not in the fit;
- ``fit``: the objective (negative log posterior at the MAP, smallest Hessian eigenvalue, each start's end),
  the settings (drugs, class/drug/deviation parameters, virtual patients, seed, studies, solver), the date,
  the package version and the command that ran the fit, if given.

Pure NumPy on the fit's arrays: nothing is simulated.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..paramsets import FORMAT, from_unconstrained_np, parse_calibrated
from ..tce import structure_options_of


def _parse_name(name: str) -> tuple[str, str | None, str]:
    """``class:P`` -> (class, None, P); ``drug:d:Q`` / ``dev:d:P`` -> (drug|dev, d, Q|P)."""
    parts = name.split(":")
    if parts[0] == "class" and len(parts) == 2:
        return "class", None, parts[1]
    if parts[0] in ("drug", "dev") and len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise ValueError(f"unexpected entry name {name!r} in the fit's parameter vector")


def drug_map(space, drug: str) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """(names, transforms, levels, ``A_d``) of ``drug``: ``u_d = A_d x`` over the flat vector of ``space``."""
    flat = space.names()
    pos = {}
    for i, n in enumerate(flat):
        pos[_parse_name(n)] = i
    names, transforms, levels, rows = [], [], [], []
    for k in space.class_params:
        row = np.zeros(len(flat))
        row[pos[("class", None, k)]] = 1.0
        lvl = "class"
        if ("dev", drug, k) in pos:
            row[pos[("dev", drug, k)]] = 1.0
            lvl = "class+deviation"
        names.append(k)
        transforms.append(space.class_prior(k)[0].transform)
        levels.append(lvl)
        rows.append(row)
    for k in space.drug_params:
        row = np.zeros(len(flat))
        row[pos[("drug", drug, k)]] = 1.0
        names.append(k)
        transforms.append(space.drug_prior(drug, k)[0].transform)
        levels.append("drug")
        rows.append(row)
    a = np.array(rows, dtype=float).reshape(len(rows), len(flat))
    return names, transforms, levels, a


def _section(names, transforms, mean, cov, levels=None, deviation_sd=None) -> dict:
    mean = np.asarray(mean, dtype=float)
    cov = np.asarray(cov, dtype=float)
    cov = 0.5 * (cov + cov.T)
    vals = [float(from_unconstrained_np(m, t)) for m, t in zip(mean, transforms)]
    out = {"names": list(names), "transforms": list(transforms)}
    if levels is not None:
        out["levels"] = list(levels)
    out.update({"mean": mean.tolist(), "sd": np.sqrt(np.clip(np.diag(cov), 0.0, None)).tolist(),
                "cov": cov.tolist(), "values": vals})
    if deviation_sd is not None:
        out["deviation_sd"] = dict(deviation_sd)
    return out


def export_calibrated(fit, *, command: str | None = None, created: str | None = None) -> dict:
    """The calibrated-parameter document of ``fit`` (a :class:`~qsp.calibrate.fit.FitResult`).

    Args:
        command: the command line that ran the fit (stored as metadata).
        created: the fit's date (ISO 8601); default: now, in UTC.
    """
    from .. import __version__

    space = fit.problem.space
    names = space.names()
    x = np.asarray(fit.map.x, dtype=float)
    if fit.map.cov is None:
        raise ValueError("the fit has no Laplace covariance (run_map with laplace=True)")
    cov = np.asarray(fit.map.cov, dtype=float)
    if x.shape != (len(names),) or cov.shape != (len(names), len(names)):
        raise ValueError(f"the fit's vector ({x.shape}) and covariance ({cov.shape}) do not match the space's "
                         f"{len(names)} entries")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(cov))):
        raise ValueError("the fit's optimum or covariance holds non-finite numbers")
    p = fit.problem
    cfg = p.cfg
    fit_meta = {
        "objective": {"kind": "MAP with Laplace covariance", "neg_log_posterior": float(fit.map.value),
                      "hessian_min_eig": None if fit.map.hessian_min_eig is None else float(fit.map.hessian_min_eig),
                      "starts": [{"value": float(r["value"]), "steps": int(r["steps"]), "ok": bool(r["ok"])}
                                 for r in fit.map.starts]},
        "settings": {"drugs": list(space.drugs), "class_params": list(space.class_params),
                     "drug_params": list(space.drug_params),
                     "deviations": {k: float(v) for k, v in space.deviations.items()},
                     "patients": int(p.patients), "seed": int(p.seed), "stratified": bool(p.stratified),
                     "studies": [s.study_id for s in p.studies],
                     "solver": {"solver": cfg.solver, "rtol": float(cfg.rtol), "atol": float(cfg.atol),
                                "max_steps": int(cfg.max_steps)}},
        "created": created or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "qsp_version": __version__,
        "command": command,
    }
    return export_normal(space, x, cov, fit_meta=fit_meta)


def structure_of(space) -> dict:
    """The model structure a fit's parameters belong to, stored in the document's ``fit`` table and checked when
    the file is applied (:func:`qsp.paramsets.check_structure`): each T-cell structure option
    (:data:`qsp.tce.STRUCTURE_DEFAULTS`: ``secretion_stages``, ``dex_holds_secretion``, ``tonic_secretion``, ``monocyte_priming``) per
    drug of the fit."""
    opts = {d: structure_options_of(space.models[d]) or {} for d in space.drugs}
    names = sorted({k for o in opts.values() for k in o})
    return {k: {d: opts[d][k] for d in space.drugs if k in opts[d]} for k in names}


def export_normal(space, x: np.ndarray, cov: np.ndarray, *, fit_meta: dict) -> dict:
    """The calibrated-parameter document of a normal approximation ``N(x, cov)`` of the space's flat vector
    (a MAP with its Laplace covariance); ``fit_meta``: the document's ``fit`` table."""
    names = space.names()
    x = np.asarray(x, dtype=float)
    cov = np.asarray(cov, dtype=float)
    cls_idx = [names.index(f"class:{k}") for k in space.class_params]
    cls = _section(list(space.class_params), [space.class_prior(k)[0].transform for k in space.class_params],
                   x[cls_idx], cov[np.ix_(cls_idx, cls_idx)],
                   deviation_sd={k: float(space.deviations.get(k, 0.0)) for k in space.class_params})
    drugs = {}
    for d in space.drugs:
        dn, tr, lv, a = drug_map(space, d)
        drugs[d] = _section(dn, tr, a @ x, a @ cov @ a.T, levels=lv)
    doc = {"format": FORMAT, "fit": dict(fit_meta, unconstrained_names=list(names), structure=structure_of(space)),
           "class": cls, "drugs": drugs}
    parse_calibrated(json.loads(json.dumps(doc)), "(exported document)")  # what we write must load
    return doc


def export_draws(space, xs: np.ndarray, *, fit_meta: dict, max_draws: int = 400) -> dict:
    """The calibrated-parameter document of posterior draws ``xs`` (m draws x the space's flat vector): per
    section the draws' mean and covariance of ``u`` (``values = T^-1(mean)``) and up to ``max_draws`` of the
    draws themselves (evenly thinned), which :func:`qsp.paramsets.draw_parameter_sets` then samples from.
    ``fit_meta``: the document's ``fit`` table (the job's settings and diagnostics)."""
    xs = np.asarray(xs, dtype=float)
    names = space.names()
    if xs.ndim != 2 or xs.shape[1] != len(names) or len(xs) < 2 or not np.all(np.isfinite(xs)):
        raise ValueError(f"need at least 2 finite draws of {len(names)} entries, got shape {xs.shape}")
    keep = xs[np.unique(np.linspace(0, len(xs) - 1, min(max_draws, len(xs))).round().astype(int))]

    def section(u, u_keep, **kw):
        sec = _section(kw.pop("names"), kw.pop("transforms"), u.mean(axis=0), np.atleast_2d(np.cov(u.T)), **kw)
        sec["draws"] = u_keep.tolist()
        return sec

    cls_idx = [names.index(f"class:{k}") for k in space.class_params]
    cls = section(xs[:, cls_idx], keep[:, cls_idx], names=list(space.class_params),
                  transforms=[space.class_prior(k)[0].transform for k in space.class_params],
                  deviation_sd={k: float(space.deviations.get(k, 0.0)) for k in space.class_params})
    drugs = {}
    for d in space.drugs:
        dn, tr, lv, a = drug_map(space, d)
        drugs[d] = section(xs @ a.T, keep @ a.T, names=dn, transforms=tr, levels=lv)
    doc = {"format": FORMAT, "fit": dict(fit_meta, unconstrained_names=list(names), structure=structure_of(space)),
           "class": cls, "drugs": drugs}
    parse_calibrated(json.loads(json.dumps(doc)), "(exported document)")  # what we write must load
    return doc


def x_from_calibrated(space, cf) -> np.ndarray:
    """The flat unconstrained vector of ``space`` at a calibrated file's centre (the MAP of a Laplace file, the
    posterior mean of a draws file): ``class:P`` from the class section, ``drug:d:Q`` from drug ``d``'s section,
    ``dev:d:P`` as drug ``d``'s value of ``P`` less the class value. Raises ValueError when the file was
    written for another parameter vector (its ``fit.unconstrained_names``). The file's model structure
    (``fit.structure``) is not checked here: a warm start may come from a fit of another structure, and what is
    fitted from it records its own."""
    names = space.names()
    saved = list(cf.fit.get("unconstrained_names", []))
    if saved != names:
        raise ValueError(f"the calibrated file {cf.path} was fitted on another parameter vector "
                         f"({len(saved)} entries) than this space ({len(names)})")
    cls = dict(zip(cf.class_section.names, cf.class_section.mean))
    x = []
    for n in names:
        kind, d, k = _parse_name(n)
        if kind == "class":
            x.append(cls[k])
        else:
            sec = cf.drug_section(d)
            v = dict(zip(sec.names, sec.mean))[k]
            x.append(v if kind == "drug" else v - cls[k])
    return np.asarray(x, dtype=float)


def _scalar(v) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def dumps(obj, level: int = 0) -> str:
    """JSON text, indented, with every list of numbers on one line (a covariance matrix one row a line)."""
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(_scalar(v) for v in obj):
            return json.dumps(list(obj), allow_nan=False)
        return "[\n" + ",\n".join(inner + dumps(v, level + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=False)


def write_calibrated(fit, path, *, command: str | None = None, created: str | None = None) -> Path:
    """Write :func:`export_calibrated` of ``fit`` to ``path`` (JSON; a temporary file moved into place)."""
    doc = export_calibrated(fit, command=command, created=created)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumps(doc) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


__all__ = ["export_calibrated", "export_normal", "x_from_calibrated", "export_draws", "write_calibrated", "drug_map", "dumps"]
