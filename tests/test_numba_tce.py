"""The compiled peer of the benchmark (benchmarks/numba_tce.py: numba + numbalsoda LSODA, prange over
patients) solves the same equations and events as the SciPy peer (benchmarks/numpy_tce.py).

Needs the ``bench`` extra (numbalsoda builds with a Fortran compiler); skipped without it.
"""
import ctypes
import dataclasses
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
from qsp.tce import build_tce_model  # noqa: E402
from numba_tce import N_PAR, NumbaPeer, make_rhs  # noqa: E402
from numpy_tce import NumpyTCE  # noqa: E402
import run as bench  # noqa: E402

DAYS = 21.0


@pytest.mark.parametrize("name", ["teclistamab", "epcoritamab", "blinatumomab"])  # SC + dex; tissue pool; infusions
def test_peer_matches_the_scipy_peer(name):
    _compare_with_scipy_peer(load_card(name))


def _compare_with_scipy_peer(card, over=None):
    model, ref = card.model(), card.covariates()
    pop = sample_population(model, 4, 3, population_spec(card, premed_fraction=1.0), weight_kg=ref.weight_kg,
                            height_cm=ref.height_cm)
    reg = with_premedication(card.regimen(until_day=DAYS), "label")
    ev = population_events(model, reg, pop, ref)
    ts = np.linspace(0.0, DAYS, int(DAYS) + 1)
    dose_t = dose_schedule(reg, DAYS).time.to_numpy(float)
    typ = model.params(over or {})
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


# Card structure options the ports support (as tests/test_numpy_tce.py): secretion stages and tonic secretion.
VARIANTS = {"stages6": {"secretion_stages": 6}, "tonic": {"tonic_secretion": True},
            "stages6_tonic": {"secretion_stages": 6, "tonic_secretion": True}}


def _variant_card(name, structure):
    card = load_card(name)
    return dataclasses.replace(card, structure={**card.structure, **structure})


def _overrides(model):
    return {"IL6_T_GAIN": 0.7, **({"F_TONIC": 0.2} if "F_TONIC" in model.param_info else {})}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_peer_matches_the_scipy_peer_structure_options(variant):
    """Teclistamab (SC + dex) with secretion stages and/or tonic secretion: the compiled peer follows the SciPy peer
    (itself checked against the JAX model in tests/test_numpy_tce.py)."""
    card = _variant_card("teclistamab", VARIANTS[variant])
    _compare_with_scipy_peer(card, _overrides(card.model()))


@pytest.mark.parametrize("name, structure", [("teclistamab", {}), ("epcoritamab", VARIANTS["stages6_tonic"]),
                                             ("teclistamab", {"secretion_stages": 20, "tonic_secretion": True})])
def test_compiled_vector_field_matches_numpy(name, structure):
    """The compiled vector field (numbalsoda cfunc), IL-6 and serum drug equal the NumPy port's at random states."""
    model = _variant_card(name, structure).model()
    nt = NumpyTCE(model)
    rhs, il6, serum_nm = make_rhs(nt)
    p = model.params(_overrides(model))
    packed = NumbaPeer(model).pack(p, 1)[0]
    n = nt.n_states
    rng = np.random.default_rng(3)
    y0 = nt.initial_state(p)
    dptr = ctypes.POINTER(ctypes.c_double)
    for t in np.linspace(0.0, 30.0, 8):
        y = np.abs(y0 + rng.uniform(0.0, 1.0, n) * np.maximum(y0, 50.0))
        y[nt._idx[1]] *= 20.0
        rate = rng.uniform(0.0, 1.0, n)
        data = np.concatenate([packed, rate])
        du = np.zeros(n)
        rhs.ctypes(float(t), y.ctypes.data_as(dptr), du.ctypes.data_as(dptr), data.ctypes.data_as(dptr))
        ref = nt.rhs(t, y, p, rate)
        np.testing.assert_allclose(du, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
        assert il6(y, packed[:N_PAR]) == pytest.approx(float(nt.il6(t, y, p)), rel=1e-13)
        assert serum_nm(y, packed[:N_PAR]) == pytest.approx(float(nt.central_conc(y[:, None], p)[0]), rel=1e-13)


def test_monocyte_priming_is_refused():
    model = build_tce_model("x", {}, mw_g_per_mol=148_000.0, secretion_stages=6, monocyte_priming=True)
    with pytest.raises(NotImplementedError, match="monocyte_priming = true is not supported"):
        NumbaPeer(model)
