"""The optimizer's objectives from a virtual trial: definitions checked against the trial's own tables."""
from __future__ import annotations

import numpy as np
import pytest

from qsp.cards import load_card
from qsp.errors import InputError
from qsp.optimize.objectives import MonitoringRule, first_treatment_index, trial_metrics
from qsp.optimize.space import RegimenSpace
from qsp.trial import run_card_trial


@pytest.fixture(scope="module")
def tec_trial():
    card = load_card("teclistamab")
    sp = RegimenSpace.from_label("teclistamab", card.regimen(until_day=28))
    res = run_card_trial(card, sp.regimen(sp.label_candidate()), patients=16, seed=4, days=21.0)
    return sp, res


def test_metrics_follow_their_definitions(tec_trial):
    sp, res = tec_trial
    m = trial_metrics(res, sp.treatment_dose)
    tab = res.crs_by_dose()
    assert m["first_treatment_dose_no"] == 3 and m["days_to_treatment_dose"] == pytest.approx(6.0)
    np.testing.assert_allclose(m["per_dose_g2_pct"], tab.crs_g2plus_pct.to_numpy(), rtol=1e-12)
    assert m["worst_dose_g2_pct"] == pytest.approx(tab.crs_g2plus_pct.max())
    overall = res.any_crs_pct()
    assert m["crs_any_pct"] == pytest.approx(overall["p_any"]) and m["crs_g2_pct"] == pytest.approx(overall["p_g2plus"])
    # the step-up phase is a prefix of the horizon: no more risk than the whole
    assert m["crs_g2_stepup_pct"] <= m["crs_g2_pct"] + 1e-12 and m["crs_any_stepup_pct"] <= m["crs_any_pct"] + 1e-12
    assert m["crs_any_stepup_pct"] >= tab.crs_any_pct.iloc[0] - 1e-9
    # monitoring: inpatient exactly where the per-dose P(CRS >= 2) exceeds the threshold
    rule = MonitoringRule(g2_threshold_pct=float(np.median(m["per_dose_g2_pct"])), stay_days=1.5)
    m2 = trial_metrics(res, sp.treatment_dose, rule)
    assert m2["inpatient_days"] == pytest.approx(1.5 * np.sum(m["per_dose_g2_pct"] > rule.g2_threshold_pct))
    assert trial_metrics(res, sp.treatment_dose, MonitoringRule(100.0))["inpatient_days"] == 0.0
    assert m["exposure_auc"] > 0


def test_bad_rules_and_unreached_treatment_dose(tec_trial):
    sp, res = tec_trial
    with pytest.raises(InputError):
        MonitoringRule(g2_threshold_pct=120.0)
    with pytest.raises(InputError):
        MonitoringRule(stay_days=0.0)
    with pytest.raises(InputError):
        first_treatment_index(res.regimen, 10.0)
