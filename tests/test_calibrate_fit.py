"""The CI fit: a small MAP fit end to end (one drug, 24 virtual patients, mechanism and CRS parameters, so the
gradients go through the ODE solves): the objective falls from the prior centre, Laplace (forward differences)
gives a covariance, and the fit's files are complete."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from qsp.calibrate.fit import run_map, write_fit
from qsp.calibrate.likelihood import build_problem, neg_log_posterior_flat
from qsp.calibrate.space import ParameterSpace
from qsp.cards import load_card


@pytest.fixture(scope="module")
def fit():
    models = {"teclistamab": load_card("teclistamab").model()}
    space = ParameterSpace(models, class_params=("KIL6", "CRS_THETA1", "CRS_BETA"), drug_params=("TUMOR0",))
    prob = build_problem(space, patients=24, seed=2)
    return run_map(prob, starts=1, max_steps=10, draws=3, hessian="forward")


def test_map_improves_on_the_prior_centre(fit):
    f, x0, _ = neg_log_posterior_flat(fit.problem)
    assert fit.map.value < float(f(x0)) - 1.0
    assert fit.map.cov.shape == (4, 4) and (fit.map.sd > 0).all()


def test_fit_files(fit, tmp_path):
    files = {p.name for p in write_fit(fit, tmp_path / "fit")}
    assert files == {"params.json", "targets.csv", "identifiability.csv", "deviations.json", "fit_teclistamab.png"}
    params = json.loads((tmp_path / "fit" / "params.json").read_text())
    assert set(params["values"]["teclistamab"]) == {"KIL6", "CRS_THETA1", "CRS_BETA", "TUMOR0"}
    assert len(params["cov"]) == 4
    tab = pd.read_csv(tmp_path / "fit" / "targets.csv")
    for col in ("target", "observed", "predicted_map", "predicted_median", "predicted_p05", "predicted_p95", "within"):
        assert col in tab.columns
    assert (tab.predicted_p05 <= tab.predicted_p95 + 1e-9).all()


def test_fit_folder_records_its_structure_and_a_mismatch_is_named(calibrated_fit, tmp_path):
    """``params.json`` records the secretion stages of each drug's model; scripts that re-apply a fit folder
    (check_fresh, profile_map, tocilizumab_censoring) refuse a space of another structure."""
    from qsp.calibrate.fit import structure_mismatch
    from qsp.tce import build_tce_model

    fit, _ = calibrated_fit
    write_fit(fit, tmp_path / "fit")
    meta = json.loads((tmp_path / "fit" / "params.json").read_text())
    assert meta["structure"] == {"secretion_stages": {"teclistamab": 1}, "dex_holds_secretion": {"teclistamab": False},
                                 "tonic_secretion": {"teclistamab": False},
                                 "monocyte_priming": {"teclistamab": False}}
    space = fit.problem.space
    assert structure_mismatch(space, meta) is None
    old = {k: v for k, v in meta.items() if k != "structure"}  # a folder written before the record: one stage
    assert structure_mismatch(space, old) is None
    six = ParameterSpace({"teclistamab": build_tce_model("tce-six", {}, mw_g_per_mol=148_000.0, secretion_stages=6)},
                         class_params=space.class_params, drug_params=space.drug_params,
                         deviations=space.deviations)
    why = structure_mismatch(six, meta)
    assert why is not None and "teclistamab = 1" in why and "teclistamab = 6" in why and "QSP_MODELS_DIR" in why
    held = ParameterSpace({"teclistamab": build_tce_model("tce-held", {}, mw_g_per_mol=148_000.0,
                                                          dex_holds_secretion=True)},
                          class_params=space.class_params, drug_params=space.drug_params, deviations=space.deviations)
    why = structure_mismatch(held, old)  # a folder without the record was fitted without the option
    assert why is not None and "dex_holds_secretion" in why and "teclistamab = true" in why
    # a malformed or unknown record is named, not a traceback
    for bad in ([1], {"secretion_stages": 1}):
        assert "malformed structure record" in structure_mismatch(space, dict(meta, structure=bad))
    why = structure_mismatch(space, dict(meta, structure=dict(meta["structure"], dex_hold={"teclistamab": True})))
    assert "does not know: dex_hold" in why


def test_warm_start_takes_the_shared_names_and_reports_the_others():
    """A warm start (``run_map(init=...)``, ``fit_map.py --init``) replaces the entries it names, keeps the prior
    centre elsewhere, reports names the space lacks, and refuses a non-finite value naming the entry."""
    import numpy as np

    from qsp.calibrate.fit import warm_start
    from qsp.errors import InputError

    names = ["class:KIL6", "class:HILL", "drug:teclistamab:TUMOR0"]
    centre = np.array([1.0, 2.0, 3.0])
    x, unused = warm_start(names, centre, {"class:HILL": -0.5, "class:KDEACT": 0.3, "drug:elranatamab:TUMOR0": 7.0})
    assert x.tolist() == [1.0, -0.5, 3.0] and centre.tolist() == [1.0, 2.0, 3.0]  # the centre is not modified
    assert unused == ["class:KDEACT", "drug:elranatamab:TUMOR0"]
    with pytest.raises(InputError, match="class:KIL6"):
        warm_start(names, centre, {"class:KIL6": float("nan")})
