"""Published behaviours the mechanism's structure shows with its class defaults (docs/mechanism_check.py prints
the numbers). Typical patients and small populations; the values checked are loose on purpose: the class
parameters are priors that the calibration layer fits.

Sources: MajesTEC-1 mean IL-6 (Willemin et al. CPT:PSP 2024); blinatumomab individual IL-6 peaks (Hijazi et
al. 2018 via Hosseini et al. 2020); epcoritamab blood T cells 552 -> 243 /uL 6 h after dosing (Hosseini et al.
2020, SCIENCE.md 2.3); label step-up and re-step-up rules; CD20xCD3 B-cell depletion in cycle 1.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsp
from qsp import reductions
from qsp.cards import load_card
from qsp.events import regimen_to_events
from qsp.premedication import with_premedication
from qsp.regimen import Dose, Regimen
from qsp.simulate import SolverConfig, solve_events
from qsp.trial import run_card_trial

# MajesTEC-1 dosing as in the IL-6 figure: 0.06 / 0.3 / 1.5 mg/kg at 0 / 72 / 168 h, then weekly.
TEC_REG = Regimen((Dose(0, 0.06, "mg/kg", "SC"), Dose(3, 0.3, "mg/kg", "SC"),
                   Dose(7, 1.5, "mg/kg", "SC", ii=7, addl=3)), "day")
# Drug-level IL-6 drive blinatumomab needs beyond the class value (its card carries the BiTE's cross-linking
# gain CHI = 2e4 for its picomolar potency; the calibration fits KIL6 as a per-drug deviation).
BLINA_DRUG = {"KIL6": 18.0}
TS = np.linspace(0, 42, 42 * 24 + 1)


def _reg(times, amounts, unit="mg/kg", route="SC"):
    return Regimen(tuple(Dose(t, a, unit, route) for t, a in zip(times, amounts)), "day")


def _peak(ts, y, a, b):
    s = (ts >= a) & (ts < b)
    i = int(np.argmax(y[s]))
    return float(y[s][i]), float(ts[s][i] - a)


@pytest.fixture(scope="module")
def tec():
    card = load_card("teclistamab")
    return card, card.model(), card.covariates()


@pytest.fixture(scope="module")
def tec_runs(tec):
    """Typical patient: label-premedicated MajesTEC-1 dosing, and four unpremedicated schedules in one batch."""
    card, m, cov = tec
    lab = qsp.simulate(m, with_premedication(TEC_REG, "label"), TS, covariates=cov)
    regs = [_reg([0, 7], [1.5, 1.5]),                       # repeated treatment dose
            _reg([0, 3, 7], [0.06, 0.3, 1.5]),              # step-up
            _reg([0, 3, 7, 21], [0.06, 0.3, 1.5, 1.5]),     # step-up, then a dose 2 weeks later
            _reg([0, 3, 7, 91], [0.06, 0.3, 1.5, 1.5])]     # step-up, then a dose after a 12-week pause
    ts = np.linspace(0, 100, 100 * 24 + 1)
    # the pause scenario without killing, so that it isolates T-cell priming from debulking (a debulked tumour
    # forms fewer trimers and releases less IL-6 at any dose)
    no_kill = {k: np.array([m.params()[k]] * 3 + [1e-9]) for k in ("KKILL", "KKILL_NORMAL")}
    r = qsp.simulate(m, regs, ts, no_kill, covariates=[cov] * len(regs))
    return lab, ts, r["il6_pg_per_ml"], r["engaged_t_fraction"]


def test_teclistamab_il6_is_a_burst_after_each_dose_and_back_near_baseline_before_the_next(tec, tec_runs):
    lab = tec_runs[0]
    il6, base = lab["il6_pg_per_ml"], tec[1].params()["IL6_0"]
    for a, b in [(0, 3), (3, 7), (7, 14)]:  # step-up 1, step-up 2, first treatment dose
        pk, _ = _peak(TS, il6, a, b)
        assert pk > 1.05 * base, (a, pk)  # each new, higher dose raises IL-6 ...
    assert np.interp(13.9, TS, il6) < 1.2 * base  # ... and it is back near baseline before the next dose
    late, _ = _peak(TS, il6, 14, 28)
    assert late < 1.2 * base  # weekly treatment doses after the first give no new burst (priming)


def test_teclistamab_population_il6_peaks_tens_of_pg_per_ml_after_the_first_treatment_dose(tec):
    card, _, _ = tec
    tr = run_card_trial(card, TEC_REG, patients=100, seed=1, days=14, outputs_per_day=12,
                        out_names=("il6_pg_per_ml",))
    il, t = tr.outputs["il6_pg_per_ml"][tr.ok], tr.times
    mean = il.mean(axis=0)
    pk, when = _peak(t, mean, 7, 14)
    assert 8.0 < pk < 60.0  # MajesTEC-1 mean over patients with CRS: ~21 pg/mL
    assert 0.75 <= when <= 2.5  # ~1-2 days after the dose (data: 48 h)
    assert np.interp(13.9, t, mean) < 5.0  # back to 2-5 pg/mL before the next dose
    mx = il.max(axis=1)
    assert 100.0 < mx.max() < 3000.0  # individual maxima reach hundreds (MajesTEC-1: up to ~290)
    assert np.percentile(mx, 90) / np.percentile(mx, 10) > 10.0  # wide spread between patients


def test_priming_repeat_dose_stepup_and_its_duration(tec_runs):
    _, ts, il6, eng = tec_runs
    base = il6[0, 0]
    first, _ = _peak(ts, il6[0], 0, 7)
    second, _ = _peak(ts, il6[0], 7, 14)
    assert second - base < 0.2 * (first - base)  # the same dose again: much lower IL-6
    assert il6[1][ts < 14].max() < 0.5 * il6[0][ts < 14].max()  # step-up lowers the first-cycle peak
    naive = first - base
    two_weeks = _peak(ts, il6[2], 21, 28)[0] - np.interp(21 - 1e-3, ts, il6[2])
    assert two_weeks < 0.1 * naive  # priming protects for weeks ...

    def recruited(k, t0):  # rise of the engaged T-cell fraction within a week of a dose at t0
        return eng[k][(ts >= t0) & (ts < t0 + 7)].max() - np.interp(t0 - 1e-3, ts, eng[k])

    # ... and wears off after a long pause (labels re-start step-up): the T-cell pool is recruited again
    assert recruited(2, 21) < 0.1 * recruited(0, 0)
    assert recruited(3, 91) > 0.5 * recruited(0, 0)
    assert _peak(ts, il6[3], 91, 98)[0] - np.interp(91 - 1e-3, ts, il6[3]) > 0.3 * naive


def test_sc_gives_a_lower_and_later_il6_peak_than_iv_at_the_first_dose(tec):
    card, m, cov = tec
    ts = np.linspace(0, 10, 10 * 48 + 1)
    r = qsp.simulate(m, [_reg([0], [0.06]), _reg([0], [0.06], route="IV_bolus")], ts, covariates=[cov, cov])
    (sc_pk, sc_t), (iv_pk, iv_t) = (_peak(ts, r["il6_pg_per_ml"][i], 0, 10) for i in (0, 1))
    assert r["conc_ug_per_ml"][0].max() < r["conc_ug_per_ml"][1].max()
    assert iv_pk > 3.0 * sc_pk and iv_t < sc_t


def test_blinatumomab_population_il6_peaks_span_two_decades_mostly_in_the_first_days():
    card = load_card("blinatumomab")
    tr = run_card_trial(card, patients=100, seed=1, days=21, outputs_per_day=12, params=BLINA_DRUG,
                        out_names=("il6_pg_per_ml", "tumour_cells"))
    il, t = tr.outputs["il6_pg_per_ml"][tr.ok], tr.times
    first = il[:, t < 7].max(axis=1)
    assert np.percentile(first, 5) < 20.0 and np.percentile(first, 95) > 300.0  # data: ~10 to ~2000 pg/mL
    assert np.percentile(first, 95) / np.percentile(first, 5) > 20.0
    assert np.mean(t[np.argmax(il, axis=1)] < 3.0) > 0.8  # peaks in the first days of the infusion
    assert np.median(il[:, np.searchsorted(t, 6.0)]) < 4.0  # resolved while the infusion continues
    tu = tr.outputs["tumour_cells"][tr.ok]
    assert np.median(tu[:, -1] / tu[:, 0]) < 0.5  # blasts fall


_LABEL_42 = {}


def _label_42(name):
    """Typical patient, label regimen with label premedication, 42 days (one compiled model per drug)."""
    if name not in _LABEL_42:
        card = load_card(name)
        ts = np.linspace(0, 42, 42 * 4 + 1)
        _LABEL_42[name] = (card, ts, qsp.simulate(card.model(), with_premedication(card.regimen(until_day=42),
                                                                                    "label"), ts,
                                                   covariates=card.covariates()))
    return _LABEL_42[name]


@pytest.mark.parametrize("name", ["glofitamab", "epcoritamab", "mosunetuzumab", "odronextamab"])
def test_cd20_drugs_deplete_blood_b_cells(name):
    card, ts, r = _label_42(name)
    b = r["normal_target_cells"]
    t0 = min(d.time for d in card.regimen().expanded().doses)  # glofitamab: after obinutuzumab
    assert np.interp(t0 + 21, ts, b) < 0.1 * b[0]  # depleted within the first cycle's doses
    if name in ("glofitamab", "epcoritamab"):
        assert np.interp(t0 + 3, ts, b) < 0.35 * b[0]  # within days of the first dose


@pytest.mark.parametrize("name", ["teclistamab", "elranatamab", "epcoritamab", "glofitamab", "mosunetuzumab",
                                  "odronextamab", "tarlatamab"])
def test_tumour_falls_over_the_first_cycles_at_label_doses(name):
    _, _, r = _label_42(name)
    tu = r["tumour_cells"]
    assert tu[-1] < 0.5 * tu[0]


def test_epcoritamab_blood_t_cells_marginate_within_hours_and_return():
    card = load_card("epcoritamab")
    ts = np.linspace(0, 7, 7 * 96 + 1)
    t = qsp.simulate(card.model(), with_premedication(card.regimen(until_day=7), "label"), ts,
                     covariates=card.covariates())["blood_t_cells_per_ul"]
    six_h = np.interp(0.25, ts, t) / t[0]
    assert 0.3 < six_h < 0.6  # median 552 -> 243 /uL (44%) 6 h after dosing
    assert t[-1] > 0.8 * t[0]  # back within the week


def test_solver_steps_stay_moderate_and_il6_is_differentiable(tec):
    card, m, cov = tec
    lab = qsp.simulate(m, with_premedication(card.regimen(until_day=35), "label"), np.linspace(0, 35, 36),
                       covariates=cov)
    assert int(lab.status) == 0 and int(lab.n_steps) < 300  # prior mechanism: ~150
    cfg = SolverConfig(solver="tsit5", rtol=1e-6, atol=1e-9)
    ev = regimen_to_events(m, _reg([0, 3], [0.06, 0.3]), cov)
    ts = jnp.linspace(0.0, 6.0, 25)
    base = {k: jnp.asarray(v) for k, v in m.params().items()}
    names = ("KIL6", "KACT", "TPT50", "MONO_EC50", "KREC")

    def peak(x):
        p = {**base, **dict(zip(names, x))}
        ys, _, _, _ = solve_events(m, cfg, p, ev, ts)
        # qsp.reductions.peak, not jnp.max: under jit the latter's gradient here is all zeros (XLA recomputes the
        # outputs for the max's location test and they differ in the last bit)
        return reductions.peak(jax.vmap(lambda t, y: m.outputs(t, y, p)["il6_pg_per_ml"])(ts, ys))

    g = jax.jit(jax.grad(peak))(jnp.stack([base[n] for n in names]))  # reverse mode (the solver adjoint)
    assert np.all(np.isfinite(np.asarray(g))) and float(g[0]) > 0.0 and float(g[3]) < 0.0
