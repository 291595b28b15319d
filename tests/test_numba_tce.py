"""The compiled peer of the benchmark (benchmarks/numba_tce.py: numba + numbalsoda LSODA, prange over
patients) solves the same equations and events as the SciPy peer (benchmarks/numpy_tce.py).

Needs the ``bench`` extra (numbalsoda builds with a Fortran compiler); skipped without it.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numbalsoda")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from qsp.cards import load_card  # noqa: E402
from qsp.drugrun import with_premedication  # noqa: E402
from qsp.population import population_spec, sample_population  # noqa: E402
from qsp.trial import SEG_POINTS, dose_schedule, population_events  # noqa: E402
from numba_tce import NumbaPeer  # noqa: E402
from numpy_tce import NumpyTCE  # noqa: E402
import run as bench  # noqa: E402

DAYS = 21.0


@pytest.mark.parametrize("name", ["teclistamab", "epcoritamab", "blinatumomab"])  # SC + dex; tissue pool; infusions
def test_peer_matches_the_scipy_peer(name):
    card = load_card(name)
    model, ref = card.model(), card.covariates()
    pop = sample_population(model, 4, 3, population_spec(card, premed_fraction=1.0), weight_kg=ref.weight_kg,
                            height_cm=ref.height_cm)
    reg = with_premedication(card.regimen(until_day=DAYS), "label")
    ev = population_events(model, reg, pop, ref)
    ts = np.linspace(0.0, DAYS, int(DAYS) + 1)
    dose_t = dose_schedule(reg, DAYS).time.to_numpy(float)
    typ = model.params({})
    params = {k: (np.asarray(pop.params[k], float) if k in pop.params else float(v)) for k, v in typ.items()}
    il6, conc, peak, status = NumbaPeer(model).run(params, ev, ts, dose_t, SEG_POINTS, rtol=1e-8, atol=1e-12)
    assert status.tolist() == [0, 0, 0, 0]
    nt = NumpyTCE(model)
    for i in range(4):
        p = {k: float(pop.params[k][i]) if k in pop.params else float(v) for k, v in typ.items()}
        row = {f: np.asarray(getattr(ev, f))[i] for f in ev._fields}
        # SciPy's peaks come from its dense interpolant: tight tolerances so that it is the reference
        ref_i = bench.scipy_patient(nt, p, row, ts, dose_t, SEG_POINTS, rtol=1e-10, atol=1e-14)
        assert bench.rel_err(il6[i], ref_i["il6"]) < 1e-4
        assert bench.rel_err(conc[i][1:], ref_i["conc_nM"][1:]) < 1e-4
        assert bench.rel_err(peak[i], ref_i["il6_peak"]) < 1e-4
    assert np.all(np.isfinite(peak)) and peak.shape == (4, dose_t.shape[0])
