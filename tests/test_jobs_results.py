"""The job's InferenceData (qsp/jobs/results.py): every group, the log likelihood over the fitted rows only
(rows predicted but not fitted have no term), constrained posterior variables, the targets table."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from qsp.calibrate.space import ParameterSpace
from qsp.cards import load_card
from qsp.jobs.results import inference_data, targets_table


def _inputs():
    space = ParameterSpace({"teclistamab": load_card("teclistamab").model()}, class_params=("CRS_BETA", "CRS_THETA1"))
    names = space.names()
    rows = pd.DataFrame({"study_id": ["A", "A", "B"], "drug": "teclistamab", "kind": "crs_incidence",
                         "target": ["A any CRS after dose 1", "A any CRS overall", "B any CRS overall"],
                         "time_day": np.nan, "observed": [42.0, 70.0, 14.0], "predicted": 0.0, "unit": "%",
                         "lower": np.nan, "upper": np.nan, "n_failed": 0, "in_fit": [True, True, False]})
    sims = [SimpleNamespace(study_id=s, regimen="label", covariates={"weight_kg": np.array([70.0, 80.0])})
            for s in ("A", "B")]
    problem = SimpleNamespace(studies=sims, patients=2)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(2, 5, len(names)))
    pp = 40 + rng.normal(size=(2, 5, 3))
    ll = -rng.random((2, 5, 2))
    stats = {"lp": -rng.random((2, 5)), "diverging": np.zeros((2, 5), bool)}
    return space, names, xs, pp, ll, stats, rows, problem


def test_inference_data_groups_and_the_fitted_rows_dimension():
    space, names, xs, pp, ll, stats, rows, problem = _inputs()
    idata = inference_data(space=space, names=names, free_idx=np.arange(len(names)), xs=xs, stats=stats, rows=rows,
                           pp=pp, ll=ll, problem=problem, inference="nuts", attrs={"job": "t"})
    for g in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data",
              "constant_data"):
        assert g in idata.groups(), g
    assert idata.log_likelihood["target"].dims == ("chain", "draw", "fitted_row")
    assert list(idata.log_likelihood["fitted_row"].values) == ["0: A any CRS after dose 1", "1: A any CRS overall"]
    assert idata.posterior_predictive["target"].shape == (2, 5, 3)
    # CRS_BETA has a log prior transform: its posterior variable is exp of the unconstrained draw
    i = names.index("class:CRS_BETA")
    np.testing.assert_allclose(idata.posterior["CRS_BETA"].values, np.exp(xs[:, :, i]))
    np.testing.assert_allclose(idata.posterior["CRS_THETA1"].values, xs[:, :, names.index("class:CRS_THETA1")])
    assert idata.constant_data["body_weight_kg"].shape == (2, 2) and idata.attrs["inference"] == "nuts"


def test_targets_table_median_interval_and_within():
    *_, pp, _, _, rows, _ = _inputs()
    tab = targets_table(rows, pp)
    flat = pp.reshape(-1, 3)
    np.testing.assert_allclose(tab.predicted_median, np.median(flat, axis=0))
    assert (tab.predicted_p05 <= tab.predicted_median).all() and (tab.predicted_median <= tab.predicted_p95).all()
    assert list(tab.within) == [True, False, False]  # 42 vs ~40 within 7 points; 70 vs ~40 and 14 vs ~40 not
