"""A job's results from its draws: the ArviZ InferenceData, the summary, the targets table, the figures.

Given the fit's draws of the flat unconstrained vector (NUTS: chains x draws; a MAP job: one "chain" of
Laplace draws) and, for each draw, every study's predictions (from the objective's compiled programs):

- ``posterior``: the free entries on their constrained scale (a class parameter by its name, ``drug.P`` for a
  drug-level one, ``dev.drug.P`` for a deviation on its transformed scale), dims ``(chain, draw)``;
- ``sample_stats``: ``lp`` (log posterior), ``diverging``, ``acceptance_rate``, ``n_steps``, ``tree_depth``,
  ``step_size`` (NUTS);
- ``log_likelihood``: ``target``, the pointwise log likelihood of every fitted target row
  (:func:`qsp.calibrate.likelihood.pointwise_log_likelihood`), dim ``fitted_row``;
- ``posterior_predictive``: ``target``, the model's prediction of every target row (CRS %, concentrations, IL-6,
  summaries), dim ``row``; ``observed_data``: ``target``, the observed values;
- ``constant_data``: per row its ``n`` (incidences) and study; per study its regimen, virtual patients, seed,
  and the virtual patients' body weight (the covariate the engine carries), dims ``(study, patient)``.

``targets.csv``: per row, observed, predicted median and 5-95% interval over the draws, and ``within``
(the median within the row's tolerance, :data:`qsp.calibrate.fit.TOLERANCES`).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from ..calibrate.fit import _within
from ..calibrate.likelihood import pointwise_log_likelihood, predict
from ..priors import from_unconstrained


def free_variable_names(space, names: list[str], free_idx) -> list[str]:
    """The posterior variable name of each free entry (see the module docstring)."""
    out = []
    for i in free_idx:
        parts = names[i].split(":")
        out.append(parts[1] if parts[0] == "class" else ".".join(parts[1:]) if parts[0] == "drug"
                   else "dev." + ".".join(parts[1:]))
    return out


def constrained(space, name: str, u: np.ndarray) -> np.ndarray:
    """An entry of the flat vector on its constrained scale (deviations stay on the transformed scale)."""
    parts = name.split(":")
    if parts[0] == "class":
        tr = space.class_prior(parts[1])[0].transform
    elif parts[0] == "drug":
        tr = space.drug_prior(parts[1], parts[2])[0].transform
    else:
        return np.asarray(u)
    return np.asarray(from_unconstrained(np.asarray(u), tr))


def draw_predictions(problem, unravel, x: np.ndarray, preds: dict) -> tuple[pd.DataFrame, np.ndarray]:
    """(the rows of :func:`~qsp.calibrate.likelihood.predict` at ``x``, the pointwise log likelihood of the
    fitted rows) from the studies' predictions ``preds`` (study id -> predictions)."""
    import jax.numpy as jnp

    rows = predict(unravel(jnp.asarray(x)), problem, known=preds)
    ll = []
    for sim in problem.studies:
        if sim.study_id in preds:
            ll.extend(float(t) for t in pointwise_log_likelihood(preds[sim.study_id], sim))
    return rows, np.asarray(ll, dtype=float)


def inference_data(*, space, names, free_idx, xs, stats: dict | None, rows: pd.DataFrame, pp: np.ndarray,
                   ll: np.ndarray, problem, inference: str, attrs: dict):
    """The InferenceData of a job (see the module docstring). ``xs``: (chains, draws, n) flat vectors; ``pp``
    (chains, draws, rows) predictions; ``ll`` (chains, draws, fitted rows); ``stats``: NUTS sample stats
    (chains, draws) or None."""
    import arviz as az

    var_names = free_variable_names(space, names, free_idx)
    posterior = {v: constrained(space, names[i], xs[:, :, i]) for v, i in zip(var_names, free_idx)}
    fitted = rows.in_fit.astype(bool).to_numpy()
    row_ids = [f"{i}: {t}" + ("" if pd.isna(d) else f" @ {d:g} d") for i, (t, d) in
               enumerate(zip(rows.target, rows.time_day))]
    studies = [s.study_id for s in problem.studies]
    weights = np.full((len(studies), problem.patients), np.nan)
    regimens = []
    for j, sim in enumerate(problem.studies):
        w = np.asarray(sim.covariates.get("weight_kg", np.full(problem.patients, np.nan)), float).reshape(-1)
        weights[j, : min(w.size, problem.patients)] = w[: problem.patients]
        regimens.append(sim.regimen)
    n_col = rows["n"].to_numpy(float) if "n" in rows else np.full(len(rows), np.nan)
    coords = {"row": row_ids, "study": studies, "patient": np.arange(problem.patients)}
    groups = dict(
        posterior=posterior,
        posterior_predictive={"target": pp},
        observed_data={"target": rows.observed.to_numpy(float)},
        constant_data={"row_n": n_col, "row_study": rows.study_id.to_numpy(str),
                       "study_regimen": np.asarray(regimens, dtype=str),
                       "study_patients": np.full(len(studies), problem.patients), "body_weight_kg": weights},
    )
    if stats is not None:
        groups["sample_stats"] = stats
    idata = az.from_dict(**groups, coords=coords,
                         dims={"target": ["row"], "row_n": ["row"], "row_study": ["row"], "study_regimen": ["study"],
                               "study_patients": ["study"], "body_weight_kg": ["study", "patient"]},
                         attrs={"inference": inference, **attrs})
    # the pointwise log likelihood runs over the fitted rows only (a CRS count under another grading is
    # predicted, not fitted): its own dimension
    ll_idata = az.from_dict(log_likelihood={"target": ll},
                            coords={"fitted_row": [r for r, f in zip(row_ids, fitted) if f]},
                            dims={"target": ["fitted_row"]})
    idata.extend(ll_idata)
    return idata


def targets_table(rows: pd.DataFrame, pp: np.ndarray) -> pd.DataFrame:
    """Per row: observed, predicted median and 5-95% interval over the draws (``pp``: draws x rows), within."""
    flat = pp.reshape(-1, pp.shape[-1])
    tab = rows.drop(columns=["predicted"]).copy()
    tab["predicted_median"] = np.median(flat, axis=0)
    tab["predicted_p05"] = np.percentile(flat, 5, axis=0)
    tab["predicted_p95"] = np.percentile(flat, 95, axis=0)
    tab["within"] = [_within(r) for r in tab.assign(predicted=tab.predicted_median).itertuples(index=False)]
    return tab


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def diagnostic_figures(idata, targets: pd.DataFrame, class_vars: list[str], drugs: list[str]) -> dict[str, bytes]:
    """``trace.png`` and ``rank.png`` (every free parameter, at most 16), ``pairs.png`` (the class parameters, at
    most 6; needs two), ``ppc_<drug>.png`` (observed vs predicted median and 90% interval per target)."""
    import arviz as az
    import matplotlib.pyplot as plt  # ArviZ draws through pyplot; each figure is closed once saved (_png), and the backend is
    # left as the caller has it (switching it to Agg here would stop a notebook's inline figures)

    from ..calibrate.report import plot_fit

    out = {}
    var = list(idata.posterior.data_vars)[:16]
    axes = az.plot_trace(idata, var_names=var, compact=True, figsize=(11, 1.9 * len(var)))
    out["trace.png"] = _png(np.ravel(axes)[0].figure)
    axes = az.plot_rank(idata, var_names=var, figsize=(11, 1.9 * len(var)))
    out["rank.png"] = _png(np.ravel(axes)[0].figure)
    cv = [v for v in class_vars if v in idata.posterior][:6]
    if len(cv) >= 2:
        axes = az.plot_pair(idata, var_names=cv, kind="kde" if idata.posterior.sizes["draw"] >= 50 else "scatter",
                            marginals=True, figsize=(2.2 * len(cv), 2.2 * len(cv)))
        out["pairs.png"] = _png(np.ravel(axes)[0].figure)
    for d in drugs:
        sub = targets[targets.drug == d]
        if len(sub):
            out[f"ppc_{d}.png"] = plot_fit(sub, d)
    return out


__all__ = ["free_variable_names", "constrained", "draw_predictions", "inference_data", "targets_table",
           "diagnostic_figures"]
