"""The model-card library: all 12 approved TCEs load, carry sources, and simulate their label regimen."""
import numpy as np
import pytest

import qsp
from qsp.cards import load_card, list_cards
from qsp.errors import InputError

DRUGS = ["blinatumomab", "catumaxomab", "elranatamab", "epcoritamab", "glofitamab", "linvoseltamab",
         "mosunetuzumab", "odronextamab", "talquetamab", "tarlatamab", "tebentafusp", "teclistamab"]


def test_library_has_all_twelve():
    assert list_cards() == DRUGS


@pytest.mark.parametrize("drug", DRUGS)
def test_card_parameters_have_value_unit_source(drug):
    card = load_card(drug)
    model = card.model()
    info = model.param_info
    for k, spec in card.params.items():
        assert spec["source"] and spec["description"] and spec["unit"]
        key = "V" if (k == "V1" and "V" in info) else k
        if key in info:
            assert info[key].value == pytest.approx(float(spec["value"]))
    assert card.mw_g_per_mol > 50_000
    assert card.default_regimen in card.label_regimens()


@pytest.mark.parametrize("drug", DRUGS)
def test_label_regimen_simulates_without_solver_failure(drug):
    card = load_card(drug)
    res = qsp.simulate(card.model(), card.regimen(until_day=35), np.linspace(0, 35, 71), covariates=card.covariates())
    assert int(res.status) == 0
    assert np.all(np.isfinite(res["conc_ug_per_ml"])) and res["conc_ug_per_ml"].max() > 0
    assert res["il6_pg_per_ml"].min() >= card.model().param_info["IL6_0"].value * 0.999


def test_unknown_drug_lists_library():
    with pytest.raises(InputError, match="allowed: blinatumomab"):
        load_card("nodrugmab")
