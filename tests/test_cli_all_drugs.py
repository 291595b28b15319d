"""Every drug card runs every mode of ``qsp simulate``: one typical patient (label regimen), a custom regimen
file, and a small virtual population — exit 0, complete files, no failed solve."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qsp.cards import list_cards, load_card
from qsp.cli import app
from qsp.io.regimen_csv import regimen_to_table

DRUGS = ["blinatumomab", "catumaxomab", "elranatamab", "epcoritamab", "glofitamab", "linvoseltamab",
         "mosunetuzumab", "odronextamab", "talquetamab", "tarlatamab", "tebentafusp", "teclistamab"]
runner = CliRunner()


def test_the_library_is_the_twelve_approved_tces():
    assert list_cards() == DRUGS


@pytest.mark.parametrize("drug", DRUGS)
def test_single_patient_label_regimen(drug, tmp_path):
    out = tmp_path / "o"
    r = runner.invoke(app, ["simulate", "--drug", drug, "--days", "21", "--out", str(out)])
    assert r.exit_code == 0, r.output
    doses = pd.read_csv(out / "doses.csv")
    card = load_card(drug)
    expected = [d for d in card.regimen(until_day=21).expanded().doses if d.time < 21]
    assert list(doses.day) == [d.time + 1.0 for d in expected]
    assert (doses.cmax_ug_per_ml > 0).all() and (doses.auc_ug_day_per_ml > 0).all()
    iv = doses.route.isin(["IV_infusion", "IV_continuous"])
    assert doses.infusion_h[iv].notna().all() and not doses.route.eq("IV_bolus").any()
    assert (doses.window_end_day > doses.day).all()
    tc = pd.read_csv(out / "timecourse.csv")
    assert np.isfinite(tc.drop(columns=["time_day"]).to_numpy()).all()


@pytest.mark.parametrize("drug", DRUGS)
def test_custom_regimen_file(drug, tmp_path):
    """The label's first two doses at half the amount, written as a regimen table and read back by the CLI."""
    card = load_card(drug)
    reg = card.regimen(until_day=21).expanded()
    first = reg.with_doses([d.__class__(**{**d.__dict__, "amount": d.amount / 2}) for d in reg.doses[:2]])
    f = tmp_path / "custom.csv"
    regimen_to_table(first).to_csv(f, index=False)
    out = tmp_path / "o"
    r = runner.invoke(app, ["simulate", "--drug", drug, "--regimen", str(f), "--days", "21", "--out", str(out)])
    assert r.exit_code == 0, r.output
    doses = pd.read_csv(out / "doses.csv")
    assert list(doses.dose) == pytest.approx([d.amount for d in first.doses])
    assert (doses.cmax_ug_per_ml > 0).all()


# The default selection runs the small population for four cards of different structure (SC mg/kg step-up,
# 1-cmt continuous IV, IV with pretreatment, a gp100 TCR bispecific); the other eight are `slow` (CI time), and
# every card's 200-patient population is checked by the slow test below.
FAST_POP = ("teclistamab", "blinatumomab", "glofitamab", "tebentafusp")


@pytest.mark.parametrize("drug", [d if d in FAST_POP else pytest.param(d, marks=pytest.mark.slow) for d in DRUGS])
def test_population(drug, tmp_path):
    out = tmp_path / "o"
    r = runner.invoke(app, ["simulate", "--drug", drug, "--patients", "6", "--seed", "2", "--days", "10",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    crs = pd.read_csv(out / "crs_by_dose.csv")
    assert len(crs) >= 1 and crs.crs_any_pct.between(0, 100).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_failed"] == 0
    pts = pd.read_csv(out / "patients.csv")
    assert (pts.status == 0).all() and pts.id.nunique() == 6


@pytest.mark.slow
@pytest.mark.parametrize("drug", DRUGS)
def test_population_of_200_on_the_label_regimen(drug, tmp_path):
    """The calibration issue's check: ``qsp simulate --drug NAME --patients 200`` (label regimen, 35 days) runs
    for every card with every virtual patient solved and a per-dose CRS table of valid percentages."""
    out = tmp_path / "o"
    r = runner.invoke(app, ["simulate", "--drug", drug, "--patients", "200", "--seed", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_failed"] == 0
    crs = pd.read_csv(out / "crs_by_dose.csv")
    assert crs.crs_any_pct.between(0, 100).all() and (crs.crs_g2plus_pct <= crs.crs_any_pct + 1e-9).all()
    assert pd.read_csv(out / "patients.csv").id.nunique() == 200
