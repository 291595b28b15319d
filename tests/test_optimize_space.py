"""The optimizer's regimen space: label structure, candidates as plain regimens, bad candidates refused."""
from __future__ import annotations

import numpy as np
import pytest

from qsp.cards import load_card
from qsp.errors import InputError
from qsp.optimize.space import Candidate, RegimenSpace, Structure, rising_fractions
from qsp.premedication import drug_doses


@pytest.fixture(scope="module")
def tec():
    return RegimenSpace.from_label("teclistamab", load_card("teclistamab").regimen(until_day=70))


def test_label_is_read_as_steps_treatment_dose_and_maintenance(tec):
    assert tec.treatment_dose == 1.5 and tec.unit == "mg/kg" and tec.label_route == "SC"
    lab = tec.label_candidate()
    assert lab.structure.n_steps == 2
    assert lab.fractions == pytest.approx((0.04, 0.2))
    assert lab.intervals == pytest.approx((3.0, 3.0))
    assert tec.maintenance[0] == (0.0, 1.5) and tec.maintenance[1] == (7.0, 1.5)


def test_label_candidate_rebuilds_the_label_regimen(tec):
    reg = tec.regimen(tec.label_candidate())
    got = [(d.time, d.amount, d.route) for d in drug_doses(reg)]
    want = [(d.time - drug_doses(tec.label)[0].time, d.amount, d.route) for d in drug_doses(tec.label)]
    assert [(round(a, 9), b, c) for a, b, c in got] == \
        [(round(a, 9), b, c) for a, b, c in want]


def test_candidate_regimen_with_split_and_iv_steps():
    card = load_card("mosunetuzumab")
    sp = RegimenSpace.from_label("mosunetuzumab", card.regimen(until_day=50), routes=("IV", "SC"), allow_splits=True)
    assert sp.label_route == "IV" and sp.iv_infusion_h == pytest.approx(4.0)
    cand = Candidate(Structure(2, ("IV", "SC", "IV"), (True, False)), (0.01, 0.1), (3.0, 2.0))
    reg = sp.regimen(cand)
    d = drug_doses(reg)
    assert [x.time for x in d[:4]] == [0.0, 1.0, 3.0, 5.0]
    assert [x.amount for x in d[:3]] == pytest.approx([0.3, 0.3, 6.0])
    assert [x.route for x in d[:4]] == ["IV_infusion", "IV_infusion", "SC", "IV_infusion"]
    assert d[0].duration == pytest.approx(4.0 / 24.0)
    assert sp.days_to_treatment_dose(cand) == 5.0
    assert "split" in sp.describe(cand) and "mg" in sp.describe(cand)


@pytest.mark.parametrize("cand, field", [
    (Candidate(Structure(2, ("SC",) * 3, (False, False)), (0.2, 0.1), (2.0, 2.0)), "fractions"),  # falling
    (Candidate(Structure(1, ("SC",) * 2, (False,)), (1e-5,), (2.0,)), "fractions"),  # below the floor
    (Candidate(Structure(1, ("SC",) * 2, (False,)), (1.0,), (2.0,)), "fractions"),  # the treatment dose itself
    (Candidate(Structure(1, ("SC",) * 2, (True,)), (0.1,), (1.0,)), "intervals"),  # split needs two days
])
def test_bad_candidates_are_refused_naming_the_field(tec, cand, field):
    with pytest.raises(InputError) as e:
        tec.regimen(cand)
    assert e.value.field == field


def test_structure_checks():
    with pytest.raises(InputError):
        Structure(5, ("SC",) * 6, (False,) * 5)
    with pytest.raises(InputError):
        Structure(1, ("SC", "IM"), (False,))
    with pytest.raises(InputError):
        Structure(1, ("SC",), (False,))


def test_structures_enumerate_steps_routes_and_splits(tec):
    sp = RegimenSpace.from_label("teclistamab", tec.label, routes=("SC", "IV"), allow_splits=True, max_steps=2)
    got = list(sp.structures())
    # n=0: 2 routes; n=1: 4 route combos x 2 splits; n=2: 8 x 4
    assert len(got) == 2 + 8 + 32 and len(set(got)) == len(got)


def test_rising_fractions_are_rising_inside_floor_and_one():
    rng = np.random.default_rng(0)
    for n in range(1, 5):
        for _ in range(50):
            f = np.asarray(rising_fractions(rng.normal(0, 3, n), 1e-3))
            assert np.all(np.diff(f) > 0) and f[0] > 1e-3 and f[-1] < 1.0
