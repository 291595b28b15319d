"""A MAP calibration run: problem -> multi-start MAP -> Laplace -> predictions with intervals -> files.

:func:`run_map` fits a :class:`~qsp.calibrate.space.ParameterSpace` to the targets (the likelihood of
:mod:`qsp.calibrate.likelihood`), and :func:`write_fit` writes what a user needs to judge and reuse it:

- ``params.json`` — the fitted values per drug (constrained), the unconstrained optimum with parameter names,
  the Laplace covariance, the objective, the settings (patients, seed, starts), timings and the package version;
- ``targets.csv`` — per target: observed, predicted at the MAP, median and 90% interval over Laplace draws,
  and whether the observation falls within the stated tolerance (:data:`TOLERANCES`);
- ``identifiability.csv`` — per fitted parameter: prior SD, Laplace posterior SD, their ratio;
- ``deviations.json`` — how much of the between-drug differences the drug-level deviations carry;
- ``fit_<drug>.png`` — observed vs predicted (median and 90% interval) for every target of the drug.

Files are written to a temporary folder and moved into place together.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..errors import InputError
from .export import structure_of
from .likelihood import Problem, neg_log_posterior_flat, predict
from .map import MapResult, identifiability, map_fit
from .objective import SplitObjective

# tolerances of the calibration issue: per-dose / overall CRS in percentage points, time courses as fold
# (the issue's); summaries: PK summaries and CRS onset within 2-fold, ADA incidence within 5 points (ours)
TOLERANCES = {"crs_dose_pp": 7.0, "crs_overall_pp": 10.0, "il6_fold": 1.5, "pk_fold": 2.0, "summary_fold": 2.0,
              "onset_fold": 2.0, "ada_pp": 5.0}


@dataclass
class FitResult:
    problem: Problem
    map: MapResult
    names: list
    theta: dict
    values: dict  # drug -> {param: value}
    targets: pd.DataFrame
    identifiability: pd.DataFrame
    seconds: dict


def _within(row) -> bool:
    """Whether a prediction is within the tolerance of its target (:data:`TOLERANCES`): percentage points for
    incidences, folds for time courses and summaries; a summary with a range (``lower``/``upper``) is within
    when the prediction lies inside the range widened by the tolerance."""
    if row.kind == "crs_incidence":
        tol = TOLERANCES["crs_overall_pp"] if row.target.endswith("overall") else TOLERANCES["crs_dose_pp"]
        return abs(row.predicted - row.observed) <= tol
    if row.kind == "summary":
        lo = getattr(row, "lower", None)
        hi = getattr(row, "upper", None)
        lo = None if lo is None or pd.isna(lo) else float(lo)
        hi = None if hi is None or pd.isna(hi) else float(hi)
        if row.unit == "ada_incidence_pct":
            tol = TOLERANCES["ada_pp"]
            if lo is not None or hi is not None:
                return (lo is None or row.predicted >= lo - tol) and (hi is None or row.predicted <= hi + tol)
            return abs(row.predicted - row.observed) <= tol
        fold = TOLERANCES["onset_fold"] if row.unit == "crs_onset_h" else TOLERANCES["summary_fold"]
        if not row.predicted > 0:
            return False
        if lo is not None or hi is not None:
            return (lo is None or row.predicted >= lo / fold) and (hi is None or row.predicted <= hi * fold)
        return max(row.predicted / row.observed, row.observed / row.predicted) <= fold
    fold = TOLERANCES["il6_fold"] if row.unit == "il6_pg_per_ml" else TOLERANCES["pk_fold"]
    if row.predicted <= 0 or row.observed <= 0:
        return False
    return max(row.predicted / row.observed, row.observed / row.predicted) <= fold


def warm_start(names: Sequence[str], x_centre: np.ndarray, init: Mapping[str, float]) -> tuple[np.ndarray, list[str]]:
    """``x_centre`` with the entries named in ``init`` replaced by its values; also the names of ``init`` that the
    space does not have (not used)."""
    x = np.array(x_centre, dtype=float, copy=True)
    pos = {n: i for i, n in enumerate(names)}
    for n, v in init.items():
        if n in pos:
            if not np.isfinite(v):
                raise InputError(f"warm start: {n} is not finite ({v!r})", field="init")
            x[pos[n]] = float(v)
    return x, sorted(n for n in init if n not in pos)


def run_map(problem: Problem, *, starts: int = 3, seed: int = 0, max_steps: int = 200, draws: int = 50,
            start_scale: float = 0.5, progress=None, split: bool = True,
            compile_progress=None, hessian: str = "central", eval_progress=None, threads: int = 1,
            init: Mapping[str, float] | None = None) -> FitResult:
    """Multi-start MAP (the prior centre plus ``starts - 1`` prior draws shrunk by ``start_scale``), Laplace
    covariance, and ``draws`` Laplace draws for the predictive intervals of every target.

    ``init`` (a warm start): unconstrained values by flat name (:meth:`ParameterSpace.names`, e.g. an earlier
    fit's ``params.json`` ``names`` and ``x``); the first start takes them for the names it shares, the prior
    centre elsewhere. Names the space does not have are ignored (:func:`warm_start` reports them).

    ``split`` (default) evaluates the objective study by study, each study compiled on its own
    (:class:`~qsp.calibrate.objective.SplitObjective`); ``split=False`` traces the whole sum into one program
    (same values; only practical for one or two studies). ``hessian``: the Laplace Hessian's finite-difference
    scheme (:func:`~qsp.calibrate.map.laplace_covariance`). ``eval_progress(evaluations, value, seconds)`` is
    called after every objective evaluation of the split objective. ``threads``: studies evaluated (and
    predicted) side by side, each on about one core (:class:`~qsp.calibrate.objective.SplitObjective`)."""
    t0 = time.perf_counter()
    f, x0, unravel = neg_log_posterior_flat(problem)
    t_compile = 0.0
    if split:  # one compiled program per study (see qsp.calibrate.objective)
        obj = SplitObjective(problem, on_eval=eval_progress, eval_threads=threads)
        t_compile = obj.compile(progress=compile_progress)
        f = obj.jax_function()
    keys = jax.random.split(jax.random.PRNGKey(seed), max(starts - 1, 1))
    if init is not None:
        x0 = warm_start(problem.space.names(), np.asarray(x0), init)[0]
    xs = [np.asarray(x0)] + [np.asarray(problem.space.flatten(problem.space.sample_prior(k, start_scale))[0])
                             for k in keys[: starts - 1]]
    prior_sd = np.asarray(problem.space.flatten(problem.space._sds())[0])
    res = map_fit(f, xs, max_steps=max_steps, progress=progress, min_eig=1.0 / float(np.max(prior_sd)) ** 2,
                  scale=prior_sd,
                  hessian=hessian)
    t_fit = time.perf_counter() - t0
    theta = unravel(jnp.asarray(res.x))
    names = problem.space.names()
    values = {d: {k: float(v) for k, v in problem.space.values(theta, d).items()} for d in problem.space.drugs}
    known = (lambda x: obj.predictions(x)) if split else (lambda x: None)  # the objective's programs predict too
    at_map = predict(theta, problem, threads=threads, known=known(res.x))
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(res.cov + 1e-12 * np.eye(res.cov.shape[0]))
    sims = []
    for _ in range(draws):
        x = res.x + chol @ rng.standard_normal(res.x.size)
        sims.append(predict(unravel(jnp.asarray(x)), problem, threads=threads, known=known(x)).predicted.to_numpy())
    sims = np.array(sims)
    tab = at_map.rename(columns={"predicted": "predicted_map"})
    tab["predicted_median"] = np.median(sims, axis=0)
    tab["predicted_p05"] = np.percentile(sims, 5, axis=0)
    tab["predicted_p95"] = np.percentile(sims, 95, axis=0)
    tab["within"] = [_within(r) for r in tab.assign(predicted=tab.predicted_map).itertuples(index=False)]
    ident = pd.DataFrame(identifiability(prior_sd, res.sd, names))
    secs = {"compile_s": t_compile, "map_s": t_fit - t_compile, "total_s": time.perf_counter() - t0}
    return FitResult(problem, res, names, theta, values, tab, ident, secs)


def structure_mismatch(space, meta: dict) -> str | None:
    """Why a fit folder's ``params.json`` (``meta``) does not belong to ``space``'s model structure (None if it
    does): its parameters would run on a mechanism they were not fitted to. An option missing from the folder's
    ``structure`` predates it and was fitted at its default (:data:`qsp.tce.STRUCTURE_DEFAULTS`)."""
    from ..tce import STRUCTURE_DEFAULTS

    def shown(table):
        return ", ".join(f"{d} = {str(v).lower() if isinstance(v, bool) else v}" for d, v in table.items())

    rec = meta.get("structure") or {}
    if not isinstance(rec, dict) or not all(isinstance(v, dict) for v in rec.values()):
        return "its params.json has a malformed structure record (a table {option: {drug: value}} expected)"
    extra = sorted(set(rec) - set(STRUCTURE_DEFAULTS))
    if extra:
        return f"the fit records structure options this version does not know: {', '.join(extra)}"
    have = structure_of(space)
    for opt, default in STRUCTURE_DEFAULTS.items():
        want = {d: rec.get(opt, {}).get(d, default) for d in meta.get("drugs", [])}
        now = have.get(opt, {})
        if want != now or any(type(want[d]) is not type(now.get(d)) for d in want):
            return (f"the fit was made with {opt}: {shown(want)}; the current cards give {shown(now)} "
                    "(set QSP_MODELS_DIR to the cards the fit used)")
    return None


def write_fit(fit: FitResult, out: Path) -> list[Path]:
    """Write the fit's files into ``out`` (atomically: a temporary folder, then moved into place)."""
    from .. import __version__
    from .report import plot_fit

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        p = fit.problem
        params = {
            "qsp_version": __version__, "created_unix": time.time(),
            "drugs": p.space.drugs, "class_params": list(p.space.class_params),
            "drug_params": list(p.space.drug_params), "deviations": dict(p.space.deviations),
            "values": fit.values, "names": fit.names, "x": [float(v) for v in fit.map.x],
            "cov": np.asarray(fit.map.cov).tolist(), "neg_log_posterior": fit.map.value,
            "hessian_min_eig": fit.map.hessian_min_eig,
            "starts": [{"value": r["value"], "steps": r["steps"], "ok": r["ok"], "seconds": r["seconds"]}
                       for r in fit.map.starts],
            "patients": p.patients, "seed": p.seed, "stratified": bool(p.stratified),
            "studies": [s.study_id for s in p.studies],
            "skipped": [list(s) for s in p.skipped], "seconds": fit.seconds,
            "structure": structure_of(p.space),
        }
        (tmp / "params.json").write_text(json.dumps(params, indent=2) + "\n")
        fit.targets.to_csv(tmp / "targets.csv", index=False, float_format="%.6g")
        fit.identifiability.to_csv(tmp / "identifiability.csv", index=False, float_format="%.6g")
        (tmp / "deviations.json").write_text(json.dumps(p.space.deviation_report(fit.theta), indent=2) + "\n")
        for drug in p.space.drugs:
            sub = fit.targets[fit.targets.drug == drug]
            if len(sub):
                (tmp / f"fit_{drug}.png").write_bytes(plot_fit(sub, drug))
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
            written.append(out / f.name)
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["FitResult", "run_map", "write_fit", "TOLERANCES"]
