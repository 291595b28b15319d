"""The calibration likelihood: a plain JAX function of the parameter pytree over the published targets.

``log_likelihood(theta, problem)`` simulates, for every study with targets, a fixed virtual population
(common random numbers: the patients' random effects, covariates and CRS sensitivities are drawn once, with
a fixed seed, when the :class:`Problem` is built; a parameter set moves the typical values and every patient
moves with them, ``P_i = P_typ(theta) * P_i0 / P_typ0``; a fitted IIV SD ``OMEGA_P`` scales the patients'
random effects, ``P_i = P_typ(theta) * (P_i0 / P_typ0)^(OMEGA_P / omega_P0)``, and ``CRS_OMEGA`` their CRS
sensitivities), so the objective is a smooth function of ``theta``
and ``jax.grad`` goes through the batched solver. The model (numpyro style) is the plain function; MAP
(:mod:`qsp.calibrate.map`) and, later, NUTS wrap it unchanged.

Terms (each target row of :mod:`qsp.calibrate.targets`):

- **CRS incidence** (binomial, ``events`` of ``n``), by the row's ``at_risk`` (doses taken as independent
  given the patient): ``crs_after_dose`` at dose k, the mean over patients of the per-dose probability
  ``p_ik`` of :mod:`qsp.crs` for that grade; ``first_crs_after_dose`` at dose k, the mean of
  ``prod_{j<k} (1 - p_ij) p_ik`` (no CRS before it); ``k+`` (dose k and later) takes doses k..k+2
  (:data:`LATER_DOSES`) together, ``1 - prod (1 - p_ij)`` over them (times the no-CRS-before product for
  ``first_crs_after_dose``); overall, the mean over patients of ``1 - prod_k (1 - p_ik)`` over the doses of
  the first :data:`OVERALL_DAYS` days.
- **Time courses** (log-normal with the row's ``sigma``) by statistic and selection: ``mean``/``median``/
  ``band_lower``/``band_upper`` (5th/95th percentiles, the stated reading of an unlabelled band) over the
  patients at the row's time; selection ``all`` weighs every patient alike, ``crs_patients_before_tocilizumab``
  weighs patient i by its probability of at least one CRS event (the MajesTEC-1 IL-6 mean is over
  patients with CRS; dropping values after tocilizumab is not modelled); ``crs_after_dose_before_tocilizumab``
  weighs it, at a point with ``dose_no`` k, by its probability ``p_ik`` of CRS after dose k (one set of patients
  per dose interval: ``sum_i p_ik x_i(t) / sum_i p_ik``; a point must lie in dose k's interval, within
  :data:`INTERVAL_TOL_DAY`, or the problem is refused).
- **Individual values** (``individual_peak``, e.g. the blinatumomab patients' IL-6 peaks): each observed
  patient is one draw from the population, so each adds the log density of its value under the predicted
  between-patient distribution, taken log-normal with the virtual patients' mean ``mu`` and SD ``s`` of the
  log peak and the row's reading error ``sigma`` added in quadrature (a Gaussian synthetic likelihood, Wood,
  Nature 2010)::

      log L_j = -0.5 ((log y_j - mu) / S)^2 - log S ,   S^2 = s^2 + sigma^2

  The observed values inform the distribution as ``n`` draws from it should (its log-mean to about
  ``S / sqrt(n)``). Matching the sorted values to the virtual patients' quantiles at the same plotting
  positions, each with the reading error alone (the term until 2026-12-06), counted every order statistic
  as an independent measurement: with the log SD of the 52 fitted blinatumomab peaks, 1.25, it weighed a shift
  of the whole distribution ``(1.25^2 + 0.2^2) / 0.2^2`` = 40 times more than 52 draws carry. The predicted
  quantiles stay the reported predictions (and the 1.5-fold check in :mod:`qsp.calibrate.fit`). Not accounted
  for: ``mu`` and ``s`` come from a finite virtual population (with 48 patients the Monte Carlo error of ``mu``,
  about ``s / sqrt(48)``, is as large as what 52 observations pin; common random numbers make it a fixed offset,
  not noise in the objective), and the observed set is selected (the blinatumomab rows keep the patients whose
  peak fell in the first two steps) while ``mu``, ``s`` are over every virtual patient's peak in the horizon.
- **Failed virtual patients** (solver status != 0) are left out of every average and cost
  :data:`FAILURE_PENALTY` log-likelihood units each: the log density stays finite, never NaN;
  :func:`predict` reports how many failed.

- **Summaries** (Tmax, Cmax, Ctrough, accumulation ratios, terminal half-life, median CRS onset, ADA
  incidence), each with its row's error model: :mod:`qsp.calibrate.summaries` says what each means for the
  virtual population. A study's horizon is extended when a row needs it (the window of a later dose; a
  follow-up after the last dose for a half-life); a study with only ADA rows is not simulated.

Every target row the model cannot predict is listed in ``Problem.skipped`` as ``(row, reason)``, including
the studies :meth:`~qsp.calibrate.targets.TargetSet.on_label_regimen` drops (``nearest``); so are the rows
it predicts but does not fit: CRS counts under a grading system other than the consensus grading the CRS
layer predicts (``crs_grading`` not in :data:`~qsp.calibrate.targets.FIT_GRADINGS`, e.g. TOWER's CTCAE
v4.0). A study with no fitted row (:func:`is_fitted`) adds nothing to the likelihood, not even the failed-
patient penalty.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..cards import load_card
from ..crs import CRS_DEFAULTS
from ..errors import InputError
from ..events import EventArrays
from ..population import ALIASES, LINKED, fittable_omega, omega_target, population_spec, sample_population
from ..premedication import drug_doses
from ..reductions import peak as peak_of
from ..simulate import STATUS_OK, SolverConfig
from ..trial import _patient, patient_crs, patient_mechanism, population_events
from . import summaries as sumr
from .space import ParameterSpace
from .targets import FIT_GRADINGS, TargetSet, load_targets

OVERALL_DAYS = 35.0
LATER_DOSES = 3
FAILURE_PENALTY = 10.0
FOLLOW_UP_DAYS = 7.0
P_CLIP = 1e-6
PER_DOSE = "crs_after_dose_before_tocilizumab"  # the per-dose-interval selection of a time-course mean
INTERVAL_TOL_DAY = 0.1  # how far a per-dose point may lie outside its dose's interval (digitized times)
SEG_POINTS = 24
BAND_Q = {"band_lower": 0.05, "band_upper": 0.95, "p05": 0.05, "p95": 0.95}
SUMMARY_REGIMEN_DAYS = 400.0  # how far the label regimen is expanded to number doses for summary rows


@dataclass
class StudySim:
    """One study's fixed inputs: its model, regimen, virtual population, output grid and target rows."""

    study_id: str
    drug: str
    model: object
    ts: np.ndarray
    dose_t: np.ndarray
    events: EventArrays
    base: dict
    ratios: dict
    z_crs: np.ndarray
    tcr: np.ndarray
    crs_rows: list = field(default_factory=list)  # dicts: grade, dose indices, overall, events, n, label
    tc_groups: list = field(default_factory=list)  # dicts: quantity, statistic, selection, t_idx, obs, sigma
    out_names: tuple = ()
    fixed: dict = field(default_factory=dict)  # per-patient values that do not move with theta (ADA status)
    sum_rows: list = field(default_factory=list)  # qsp.calibrate.summaries.SummaryRow
    solve: bool = True  # False: only targets that need no simulation (ADA incidence)
    omega0: dict = field(default_factory=dict)  # P -> the omega the patients were drawn with (fitted OMEGA_P)
    etas: dict = field(default_factory=dict)  # parameter -> (OMEGA_ name, omega0, eta per patient) if fitted
    regimen: str = ""  # the study's regimen (the card's regimen name, as in studies.csv)
    covariates: dict = field(default_factory=dict)  # per-patient covariates (weight_kg, prior_tcr), for reports


@dataclass
class Problem:
    space: ParameterSpace
    studies: list
    cfg: SolverConfig
    patients: int
    seed: int
    skipped: list = field(default_factory=list)  # (study_id or row, why)
    stratified: bool = False  # Latin-hypercube virtual patients (build_problem)
    # compiled predictions per study (id -> (study, function)); not an init field, so dataclasses.replace()
    # (a sub-problem of some studies) starts with its own empty cache
    _predict_fns: dict = field(default_factory=dict, init=False, repr=False, compare=False)


GRADE_KEY = {"any": "p_any", "g2plus": "p_g2plus", "g3plus": "p_g3plus"}


def _study_regimen(card, regimen: str, horizon: float):
    name = regimen.split("|")[0]
    return card.regimen(name, until_day=horizon + 1.0).in_unit("day").until(horizon)


def build_problem(space: ParameterSpace, targets: TargetSet | None = None, *, patients: int = 64, seed: int = 1,
                  studies: Sequence[str] | None = None, solver: str = "tsit5", rtol: float = 1e-6,
                  atol: float = 1e-9, max_steps: int = 4096, summaries: bool = True,
                  stratified: bool = False) -> Problem:
    """Fix everything a likelihood evaluation needs: per study, its population, events and target rows.

    ``stratified``: Latin-hypercube virtual patients (:func:`qsp.population.stratify_draws`: every random
    dimension's marginal exactly stratified over the study's patients). Off by default, as in the fits so far.
    Why it matters, measured on the 24-patient joint fit (``calibration/fits/map_n24``, plain draws): MajesTEC-1
    CRS after step-up dose 1 was 37.7% on its own patients and 58.5% / 47.8% on fresh populations of 48 / 200
    (``calibration/check_fresh.py``): the optimum had fitted its sample.

    Only studies of the space's drugs whose label regimen reproduces their dosing are used
    (:meth:`TargetSet.on_label_regimen`; the others are listed in ``skipped``); ``studies`` restricts them
    further (by id). ``summaries=False`` leaves the summary rows out (listed in ``skipped``).
    """
    if patients < 2:
        raise InputError(f"a fit needs at least 2 virtual patients per study, got {patients}", field="patients")
    full = targets or load_targets()
    ts_all = full.on_label_regimen()
    cfg = SolverConfig(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)
    out, skipped = [], []
    kept = set(ts_all.studies.study_id)
    for st in full.studies.itertuples(index=False):
        if st.drug in space.models and st.study_id not in kept and (studies is None or st.study_id in studies):
            skipped.append((st.study_id, f"regimen_match {st.regimen_match}: the label regimen does not "
                                         "reproduce the study's dosing"))
    for st in ts_all.studies.itertuples(index=False):
        if st.drug not in space.models or (studies is not None and st.study_id not in studies):
            continue
        crs = ts_all.crs_incidence[ts_all.crs_incidence.study_id == st.study_id]
        tc = ts_all.timecourses[ts_all.timecourses.study_id == st.study_id]
        sm = ts_all.summaries[ts_all.summaries.study_id == st.study_id]
        if not summaries:
            skipped.extend((sumr.row_label(r), "summary targets left out (summaries=False)")
                           for r in sm.itertuples(index=False))
            sm = sm.iloc[:0]
        if crs.empty and tc.empty and sm.empty:
            continue
        sim = _build_study(space, st, crs, tc, sm, patients, seed, skipped, stratified)
        if sim is not None:
            out.append(sim)
    if studies is not None:
        missing = set(studies) - {s.study_id for s in out}
        if missing:
            raise InputError(f"no usable targets for studies {sorted(missing)}", field="studies")
    if not out:
        raise InputError("no study with targets for the drugs of this parameter space", field="targets")
    return Problem(space, out, cfg, patients, seed, skipped, stratified)


def _build_study(space, st, crs: pd.DataFrame, tc: pd.DataFrame, sm: pd.DataFrame, patients: int, seed: int,
                 skipped: list, stratified: bool = False):
    card = load_card(st.drug)
    model = space.models[st.drug]
    ref = card.covariates()
    t_max = float(tc.time_day.max()) if len(tc) else 0.0
    base_last = max(OVERALL_DAYS, t_max)  # doses up to here; then a follow-up for the last dose's window
    horizon = max(OVERALL_DAYS + FOLLOW_UP_DAYS, t_max + 1.0)
    rows, need = [], sumr.needs([])
    if len(sm):
        dose_full = np.array([d.time for d in drug_doses(_study_regimen(card, st.regimen, SUMMARY_REGIMEN_DAYS))])
        rows = sumr.plan_rows(sm, st, dose_full, model, skipped)
        need = sumr.needs(rows)
        if crs.empty and tc.empty and rows and not need["simulate"]:
            sim = StudySim(st.study_id, st.drug, model, np.zeros(1), np.zeros(0), None, model.params(), {},
                           np.zeros(patients), np.zeros(patients), solve=False, regimen=str(st.regimen))
            sim.sum_rows = rows
            return sim
        if not rows and crs.empty and tc.empty:
            return None
        if need["last_dose"] >= 0:
            base_last = max(base_last, float(dose_full[need["last_dose"]]))
        horizon = max(horizon, need["window_end"])
    reg = _study_regimen(card, st.regimen, base_last)
    doses = drug_doses(reg)
    dose_t = np.array([d.time for d in doses], float)
    premed = 1.0 if st.premedication == "label" else 0.0
    tcr_p = 0.0 if pd.isna(st.prior_tcr_fraction) else float(st.prior_tcr_fraction)
    spec = population_spec(card, premed_fraction=premed, prior_tcr_prob=tcr_p)
    pop = sample_population(model, patients, seed, spec, weight_kg=ref.weight_kg, height_cm=ref.height_cm,
                            stratified=stratified)
    iiv0, omega_names = {}, {}
    for k in space.class_params:  # fitted IIV SDs: P_i = P_typ allo_i exp(eta_i omega / omega0), eta_i = omega0 z_i
        target = omega_target(k)
        if target is None:
            continue
        # an omega named on V1 is the central volume's in a one-compartment model, which calls it V (ALIASES)
        target = ALIASES.get(target, target) if target not in model.param_info else target
        mspec = spec.for_model(model)
        why = fittable_omega(target, mspec)
        if why is not None:
            raise InputError(f"{k} cannot be fitted for {st.drug}: {why}", field="params")
        iiv0[target] = float(mspec.omega[target])
        omega_names[target] = k
    typ = model.default_params()
    # per-patient values relative to the typical one (they move with theta); a zero-typical per-patient value
    # (the ADA indicator) is kept as drawn
    ratios = {k: np.asarray(v, float) / typ[k] for k, v in pop.params.items() if typ.get(k, 0.0) != 0.0}
    fixed = {k: np.asarray(v, float) for k, v in pop.params.items() if typ.get(k, 0.0) == 0.0}
    etas = {}  # parameter -> (its fitted OMEGA_ name, omega0, its random effect); its ratio keeps the allometry
    for k in list(ratios):
        target = LINKED.get(k, k)
        if target in iiv0:
            etas[k] = (omega_names[target], iiv0[target], np.asarray(pop.etas[target], float))
            ratios[k] = ratios[k] / np.exp(etas[k][2])
    omega0 = float(typ.get("CRS_OMEGA", 1.0)) if spec.crs_omega is None else float(spec.crs_omega)
    z_crs = pop.covariates["eta_crs"].to_numpy(float) / (omega0 if omega0 > 0 else 1.0)
    tcr = pop.covariates["prior_tcr"].to_numpy(float)
    events = population_events(model, reg, pop, ref)
    im = np.asarray(events.inf_mask[0], bool)
    inf_end = (np.asarray(events.inf_start[0]) + np.asarray(events.inf_duration[0]))[im]
    if need["half_life"]:  # a follow-up without doses after the last dose's input ends
        horizon = max(horizon, sumr.decay_start(dose_t, inf_end) + sumr.HL_FOLLOW_UP_DAYS)
    grid = np.arange(0.0, horizon + 1e-9, 0.25)
    extra = np.zeros(0)
    if rows:
        extra = sumr.grid_points(rows, dose_t, horizon, inf_end)
    ts = sumr.merge_grid(grid, tc.time_day.to_numpy(float), extra)
    sim = StudySim(st.study_id, st.drug, model, ts, dose_t, events, model.params(), ratios, z_crs, tcr)
    sim.fixed = fixed
    sim.omega0 = iiv0
    sim.etas = etas
    sim.regimen = str(st.regimen)
    sim.covariates = {c: pop.covariates[c].to_numpy(float) for c in ("weight_kg", "prior_tcr")
                      if c in pop.covariates}
    overall_idx = np.flatnonzero(dose_t < OVERALL_DAYS)
    n_base = int(np.sum(dose_t <= max(OVERALL_DAYS, t_max)))  # k+ rows: doses of the CRS horizon only
    in_fit = str(st.crs_grading) in FIT_GRADINGS
    for r in crs.itertuples(index=False):
        label = f"{r.study_id} {r.grade} CRS " + (f"after dose {r.dose_no}" if r.scope == "dose" else "overall")
        if r.scope == "overall":
            idx, overall = overall_idx, True
        else:
            s = str(r.dose_no)
            k = int(s.rstrip("+")) - 1
            idx = np.arange(k, min(k + LATER_DOSES, n_base)) if s.endswith("+") else np.array([k])
            overall = False
            if idx.size == 0 or idx.max() >= n_base:
                skipped.append((label, "dose beyond the simulated horizon"))
                continue
        first = (not overall) and r.at_risk == "first_crs_after_dose"
        sim.crs_rows.append({"label": label, "grade": GRADE_KEY[r.grade], "idx": idx, "overall": overall,
                             "before": np.arange(int(idx.min())) if first else None,
                             "events": float(r.events), "n": float(r.n), "pct": float(r.pct),
                             "in_fit": in_fit})
        if not in_fit:
            skipped.append((label, f"graded by {st.crs_grading}: predicted and reported, not fitted (the CRS layer "
                                   f"predicts consensus-graded CRS; fitted gradings: {', '.join(FIT_GRADINGS)})"))
    needed = {"il6_pg_per_ml"}
    if need["conc"]:
        needed.add(sumr.CONC)
    for (q, stat, sel), g in tc.groupby(["quantity", "statistic", "selection"], sort=False):
        g = g.sort_values("time_day")
        if stat not in ("mean", "median", "individual_peak") and stat not in BAND_Q:
            skipped.append((f"{st.study_id} {stat} {q}", f"statistic {stat} not in the likelihood"))
            continue
        if sel not in ("all", "crs_patients_before_tocilizumab", PER_DOSE, "individual"):
            skipped.append((f"{st.study_id} {stat} {q}", f"selection {sel} not in the likelihood"))
            continue
        dose_idx = None
        if sel == PER_DOSE:  # each point's dose interval: the CRS column its patients are weighted by
            dose_idx = pd.to_numeric(g.dose_no).to_numpy(int) - 1
            _check_intervals(st.study_id, g.time_day.to_numpy(float), dose_idx, dose_t)
            late = dose_idx >= int(np.sum(dose_t <= ts[-1]))
            if late.any():
                skipped.append((f"{st.study_id} {stat} {q}", f"{int(late.sum())} points after doses beyond the "
                                                             f"simulated horizon"))
                g, dose_idx = g[~late], dose_idx[~late]
            if not len(g):
                continue
        needed.add(q)
        t_idx = sumr.nearest(ts, g.time_day.to_numpy(float))
        sim.tc_groups.append({"label": f"{st.study_id} {stat} {q} ({sel})", "quantity": q, "statistic": stat,
                              "selection": sel, "t_idx": t_idx, "times": g.time_day.to_numpy(float),
                              "obs": g.value.to_numpy(float), "sigma": g.sigma.to_numpy(float),
                              "dose_idx": dose_idx})
    sumr.attach_grid(rows, ts, dose_t, overall_idx, horizon, inf_end)
    sim.sum_rows = rows
    sim.out_names = tuple(sorted(needed))
    return sim


def _check_intervals(study: str, times: np.ndarray, dose_idx: np.ndarray, dose_t: np.ndarray) -> None:
    """A per-dose point must lie in its dose's interval ``[t_k, t_k+1)``, within :data:`INTERVAL_TOL_DAY` at
    either end (a point at a dose's time may close the interval before it): a ``dose_no`` that does not fit its
    time is refused, naming the study, the point and the interval."""
    bad = []
    for t, k in zip(times, dose_idx):
        if k < 0 or k >= dose_t.size:
            bad.append(f"day {t:g}: dose_no {k + 1} is not a dose of the regimen (1..{dose_t.size})")
            continue
        end = dose_t[k + 1] if k + 1 < dose_t.size else np.inf
        if not (dose_t[k] - INTERVAL_TOL_DAY <= t < end + INTERVAL_TOL_DAY):
            bad.append(f"day {t:g}: dose_no {k + 1} is the interval from day {dose_t[k]:g} to "
                       f"{'the end' if np.isinf(end) else f'day {end:g}'}")
    if bad:
        raise InputError(f"{study}: time-course points with selection {PER_DOSE} outside their dose's interval "
                         f"(tolerance {INTERVAL_TOL_DAY:g} day): " + "; ".join(bad), field="dose_no")


# --------------------------------------------------------------------------------------------------
# the model, as a plain function of theta
# --------------------------------------------------------------------------------------------------
def _params(theta, space: ParameterSpace, sim: StudySim, n: int):
    vals = space.values(theta, sim.drug)
    p, c = {}, {}
    for k, v in sim.base.items():
        if k in CRS_DEFAULTS:
            c[k] = vals.get(k, jnp.asarray(v))
            continue
        typ = vals.get(k, jnp.asarray(v))
        if k in sim.fixed:
            p[k] = jnp.asarray(sim.fixed[k])
        elif k in sim.etas:  # fitted spread: exp(eta omega / omega0); as drawn where the omega is not in theta
            name, om0, eta = sim.etas[k]
            scale = vals[name] / om0 if name in vals else 1.0
            p[k] = typ * jnp.asarray(sim.ratios[k]) * jnp.exp(jnp.asarray(eta) * scale)
        else:
            p[k] = typ * jnp.asarray(sim.ratios[k]) if k in sim.ratios else jnp.broadcast_to(typ, (n,))
    for k in CRS_DEFAULTS:  # CRS parameters are in the model namespace but the trial takes them apart
        p[k] = jnp.broadcast_to(c[k], (n,))
    return p, c


def _batch_fn(sim: StudySim, problem: Problem):
    """The batched per-patient solve with per-patient CRS parameters (so a failed patient's parameters can be
    cut from the gradient one by one)."""
    key = (id(sim.model), sim.out_names, problem.cfg)
    fn = _BATCH.get(key)
    if fn is None:
        one = functools.partial(_patient, sim.model, problem.cfg, SEG_POINTS, sim.out_names)
        fn = jax.vmap(one, in_axes=(0, 0, None, None, None, 0, 0, 0))
        _BATCH[key] = fn
    return fn


_BATCH: dict = {}


def simulate_study(theta, problem: Problem, sim: StudySim):
    """(outputs (N, T) by name, status (N,), per-dose CRS quantities (N, D)) for one study at ``theta``.

    Failed patients and gradients: a solve that fails (max steps, non-finite state) has NaN in its backward
    pass, which would poison every shared parameter's gradient. So the batch is solved twice: a first pass
    without gradients finds the patients whose solve fails, and in the second pass their parameters enter
    through ``stop_gradient`` (they then contribute nothing to the gradient, and the likelihood leaves them out
    and penalises them). The first pass costs one forward solve, about a seventh of a gradient.
    """
    n = sim.z_crs.size
    p, c = _params(theta, problem.space, sim, n)
    c_pp = {k: jnp.broadcast_to(v, (n,)) for k, v in c.items()}
    eta = c["CRS_OMEGA"] * jnp.asarray(sim.z_crs)
    fn = _batch_fn(sim, problem)
    shared = (jnp.asarray(sim.ts), jnp.asarray(sim.dose_t), jnp.ones(sim.dose_t.size, bool))
    tcr = jnp.asarray(sim.tcr)
    sg = jax.lax.stop_gradient
    status0 = sg(fn(sg(p), sim.events, *shared, sg(c_pp), sg(eta), tcr)[1])
    ok = status0 == STATUS_OK

    def guard(a):
        return jnp.where(ok, a, sg(a))

    outs, status, _, crs = fn({k: guard(v) for k, v in p.items()}, sim.events, *shared,
                              {k: guard(v) for k, v in c_pp.items()}, guard(eta), tcr)
    return outs, status, crs


def _mechanism_fn(sim: StudySim, problem: Problem):
    key = ("mechanism", id(sim.model), sim.out_names, problem.cfg)
    fn = _BATCH.get(key)
    if fn is None:
        one = functools.partial(patient_mechanism, sim.model, problem.cfg, SEG_POINTS, sim.out_names)
        fn = _BATCH[key] = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
    return fn


def study_mechanism(theta, problem: Problem, sim: StudySim) -> dict:
    """The study's solves without the CRS layer at ``theta`` (:func:`qsp.trial.patient_mechanism`): outputs,
    status and the per-segment IL-6 / T-cell drive samples the CRS layer reads, as NumPy arrays. With them
    :func:`study_predictions` (``mechanism=``) gives the same predictions for any ``theta`` that differs only
    in CRS-layer parameters (:data:`qsp.crs.CRS_DEFAULTS`), without solving again."""
    if not sim.solve:
        return {}
    p, _ = _params(theta, problem.space, sim, sim.z_crs.size)
    outs, status, _, seg_t, seg_y = _mechanism_fn(sim, problem)(p, sim.events, jnp.asarray(sim.ts))
    ok = np.asarray(status) == STATUS_OK
    fin = lambda a: np.where(ok.reshape((-1,) + (1,) * (np.ndim(a) - 1)), np.nan_to_num(np.asarray(a)), 1.0)  # noqa
    return {"outs": {k: np.asarray(v) for k, v in outs.items()}, "status": np.asarray(status),
            "seg_t": fin(seg_t), "seg_y": fin(seg_y)}


def crs_from_mechanism(theta, problem: Problem, sim: StudySim, mech: dict):
    """(outputs, status, per-dose CRS quantities) like :func:`simulate_study`, the CRS layer evaluated at
    ``theta`` on the stored solves ``mech`` of :func:`study_mechanism` (failed patients' samples are
    placeholders; they are left out downstream as in :func:`simulate_study`)."""
    n = sim.z_crs.size
    p, c = _params(theta, problem.space, sim, n)
    c_pp = {k: jnp.broadcast_to(v, (n,)) for k, v in c.items()}
    eta = c["CRS_OMEGA"] * jnp.asarray(sim.z_crs)
    fn = jax.vmap(patient_crs, in_axes=(0, 0, 0, None, None, 0, 0, 0))
    crs = fn(jnp.asarray(mech["seg_t"]), jnp.asarray(mech["seg_y"]), p["IL6_0"], jnp.asarray(sim.dose_t),
             jnp.ones(sim.dose_t.size, bool), c_pp, eta, jnp.asarray(sim.tcr))
    return {k: jnp.asarray(v) for k, v in mech["outs"].items()}, jnp.asarray(mech["status"]), crs


def mechanism_fixed(names) -> bool:
    """Whether entries of the flat vector (``class:P``, ``drug:d:P``, ``dev:d:P``) are all CRS-layer
    parameters: then the solves do not depend on them (:func:`study_mechanism`)."""
    return all(n.split(":")[-1] in CRS_DEFAULTS for n in names)


def _weighted_mean(x, w):
    return jnp.sum(x * w[:, None], axis=0) / jnp.maximum(jnp.sum(w), 1e-12)


def _log_moments(lx, w):
    """``[mean, SD]`` of the log values ``lx`` (N,) over the patients with weight ``w`` 1 (0: failed), the SD with
    ``n - 1`` in the denominator; the population's between-patient distribution for individual-value targets."""
    n = jnp.sum(w)
    mu = jnp.sum(w * lx) / jnp.maximum(n, 1.0)
    var = jnp.sum(w * (lx - mu) ** 2) / jnp.maximum(n - 1.0, 1.0)
    return jnp.stack([mu, jnp.sqrt(var + 1e-12)])


def _ada_prob(theta, problem: Problem, sim: StudySim):
    vals = problem.space.values(theta, sim.drug)
    return vals["ADA_PROB"] if "ADA_PROB" in vals else jnp.asarray(float(sim.base.get("ADA_PROB", 0.0)))


def study_predictions(theta, problem: Problem, sim: StudySim, mechanism: dict | None = None) -> dict:
    """Predicted value of every target row of the study (JAX arrays), plus the count of failed patients.
    ``mechanism``: the stored solves of :func:`study_mechanism` (only the CRS layer is evaluated at ``theta``)."""
    if not sim.solve:  # targets that need no simulation (ADA incidence)
        ada = _ada_prob(theta, problem, sim)
        return {"crs": [], "tc": [], "tc_spread": [],
                "summary": [sumr.predict_row(r, sim.ts, None, None, None, None, None, ada)
                                                  for r in sim.sum_rows], "n_failed": jnp.asarray(0.0)}
    if mechanism is not None:
        outs, status, crs = crs_from_mechanism(theta, problem, sim, mechanism)
    else:
        outs, status, crs = simulate_study(theta, problem, sim)
    ok = status == STATUS_OK
    okf = ok.astype(float)
    safe = {k: jnp.where(ok[:, None], jnp.nan_to_num(v, nan=0.0, posinf=0.0), 0.0) for k, v in crs.items()}
    p_any_all = 1.0 - jnp.prod(1.0 - safe["p_any"], axis=1)
    pred = {"crs": [], "tc": [], "tc_spread": [], "summary": [], "n_failed": jnp.sum(1.0 - okf)}
    for r in sim.crs_rows:
        pk = safe[r["grade"]][:, r["idx"]]
        per_patient = 1.0 - jnp.prod(1.0 - pk, axis=1)  # one dose: p_k; several (k+, overall): any of them
        if r.get("before") is not None and r["before"].size:  # first CRS event: none at the earlier doses
            per_patient = per_patient * jnp.prod(1.0 - safe[r["grade"]][:, r["before"]], axis=1)
        pred["crs"].append(jnp.sum(per_patient * okf) / jnp.maximum(jnp.sum(okf), 1.0))
    for g in sim.tc_groups:
        x = jnp.where(ok[:, None], jnp.nan_to_num(outs[g["quantity"]], nan=0.0), 0.0)
        if g["statistic"] == "individual_peak":
            peak = peak_of(x, axis=1)  # not jnp.max: its gradient can vanish under jit (qsp.reductions)
            m = g["obs"].size
            q = (np.argsort(np.argsort(g["obs"])) + 0.5) / m
            pred["tc"].append(jnp.nanquantile(jnp.where(ok, peak, jnp.nan), jnp.asarray(q)))
            pred["tc_spread"].append(_log_moments(jnp.log(jnp.where(ok, jnp.maximum(peak, 1e-12), 1.0)), okf))
            continue
        pred["tc_spread"].append(jnp.zeros(2))
        xt = x[:, g["t_idx"]]
        if g["statistic"] == "mean" and g["selection"] == PER_DOSE:  # (N, points): CRS after each point's dose
            w = okf[:, None] * safe["p_any"][:, g["dose_idx"]]
            pred["tc"].append(jnp.sum(xt * w, axis=0) / jnp.maximum(jnp.sum(w, axis=0), 1e-12))
        elif g["statistic"] == "mean":
            w = okf * p_any_all if g["selection"] == "crs_patients_before_tocilizumab" else okf
            pred["tc"].append(_weighted_mean(xt, w))
        else:
            q = 0.5 if g["statistic"] == "median" else BAND_Q[g["statistic"]]
            pred["tc"].append(jnp.nanquantile(jnp.where(ok[:, None], xt, jnp.nan), q, axis=0))
    if sim.sum_rows:
        conc = None
        if sumr.CONC in outs:  # failed patients: a positive placeholder (weight 0), so logs stay finite
            conc = jnp.where(ok[:, None], jnp.nan_to_num(outs[sumr.CONC], nan=1.0, posinf=1.0, neginf=1.0), 1.0)
        onset = jnp.where(ok[:, None], crs["onset_h"], jnp.nan)
        ada = _ada_prob(theta, problem, sim)
        for r in sim.sum_rows:
            pred["summary"].append(sumr.predict_row(r, sim.ts, conc, okf, p_any_all, onset, safe["p_any"], ada))
    return pred


def is_fitted(sim: StudySim) -> bool:
    """Whether a study has at least one row in the likelihood (a CRS row in a fitted grading, a time course or a
    summary)."""
    return any(r["in_fit"] for r in sim.crs_rows) or bool(sim.tc_groups) or bool(sim.sum_rows)


def pointwise_log_likelihood(pred: dict, sim: StudySim) -> list:
    """The fitted rows' log-likelihood terms of one study, in :func:`predict`'s row order (CRS rows in a fitted
    grading, then every time-course point, then the summaries): binomial, log-normal and summary terms (JAX
    scalars). :func:`study_log_likelihood` is their sum less the failed-patient penalty, which belongs to no
    row; the pointwise terms are what ArviZ's ``log_likelihood`` group holds (:mod:`qsp.jobs`)."""
    terms = []
    for r, pr in zip(sim.crs_rows, pred["crs"]):
        if not r["in_fit"]:  # a CRS count under another grading system (see targets.FIT_GRADINGS)
            continue
        p = jnp.clip(pr, P_CLIP, 1.0 - P_CLIP)
        terms.append(r["events"] * jnp.log(p) + (r["n"] - r["events"]) * jnp.log1p(-p))
    for g, pr, spread in zip(sim.tc_groups, pred["tc"], pred["tc_spread"]):
        sig = jnp.asarray(g["sigma"])
        if g["statistic"] == "individual_peak":  # each observed patient: a draw from the predicted distribution
            sd = jnp.sqrt(spread[1] ** 2 + sig**2)
            resid = (jnp.log(jnp.asarray(g["obs"])) - spread[0]) / sd
            terms.extend(list(-0.5 * resid**2 - jnp.log(sd)))
            continue
        resid = (jnp.log(jnp.asarray(g["obs"])) - jnp.log(jnp.maximum(pr, 1e-12))) / sig
        terms.extend(list(-0.5 * resid**2 - jnp.log(sig)))
    for r, pr in zip(sim.sum_rows, pred["summary"]):
        terms.append(sumr.log_density(r, pr))
    return terms


def study_log_likelihood(theta, problem: Problem, sim: StudySim, mechanism: dict | None = None):
    """``(log L_s, predictions)`` of one study: its rows' binomial / log-normal / summary terms
    (:func:`pointwise_log_likelihood`), less the failed-patient penalty, and :func:`study_predictions` (so one
    compiled program can give both); ``mechanism`` as for :func:`study_predictions`."""
    pred = study_predictions(theta, problem, sim, mechanism)
    total = 0.0
    for t in pointwise_log_likelihood(pred, sim):
        total = total + t
    total = total - FAILURE_PENALTY * pred["n_failed"]
    return total, pred


def log_likelihood(theta, problem: Problem):
    """Sum over studies and target rows of the binomial / log-normal / summary log likelihoods (a JAX scalar)."""
    total = 0.0
    for sim in problem.studies:
        if is_fitted(sim):
            total = total + study_log_likelihood(theta, problem, sim)[0]
    return total


def log_posterior(theta, problem: Problem):
    return problem.space.log_prior(theta) + log_likelihood(theta, problem)


def neg_log_posterior_flat(problem: Problem):
    """``(f, x0, unravel)``: ``f(x) = -log posterior`` of the flat unconstrained vector, for :func:`map_fit`."""
    x0, unravel = problem.space.flatten(problem.space.init())
    return (lambda x: -log_posterior(unravel(x), problem)), x0, unravel


def predict(theta, problem: Problem, threads: int = 1, known: Mapping | None = None) -> pd.DataFrame:
    """One row per target: study, kind (``crs_incidence``, ``timecourse``, ``summary``), label, time, observed,
    predicted (numbers), unit (for time courses and summaries the quantity's name; ``cv_pct`` for a spread
    summary), ``lower``/``upper`` (interval and upper-bound summaries; NaN otherwise), failed patients, and
    ``in_fit`` (False for a row predicted but left out of the likelihood). ``threads`` runs that many studies at
    once. ``known``: study id -> predictions already computed at ``theta`` (e.g. by
    :meth:`~qsp.calibrate.objective.SplitObjective.predictions`, from the objective's own compiled programs);
    the other studies are compiled here."""
    rows = []
    nan = np.nan
    known = dict(known or {})

    def one(sim):
        if sim.study_id in known:
            return jax.tree_util.tree_map(np.asarray, known[sim.study_id])
        hit = problem._predict_fns.get(id(sim))
        if hit is None or hit[0] is not sim:  # compiled once per problem and study (eager costs ~100x more)
            hit = problem._predict_fns[id(sim)] = (sim, jax.jit(functools.partial(study_predictions, problem=problem,
                                                                                  sim=sim)))
        return jax.tree_util.tree_map(np.asarray, hit[1](theta))

    if threads > 1:  # studies run side by side (each on about one core); rows stay in study order
        with ThreadPoolExecutor(threads) as ex:
            preds = list(ex.map(one, problem.studies))
    else:
        preds = [one(sim) for sim in problem.studies]
    for sim, pred in zip(problem.studies, preds):
        nf = int(round(float(pred["n_failed"])))
        for r, pr in zip(sim.crs_rows, pred["crs"]):
            rows.append({"study_id": sim.study_id, "drug": sim.drug, "kind": "crs_incidence", "target": r["label"],
                         "time_day": nan, "observed": r["pct"], "predicted": 100.0 * float(pr), "unit": "%",
                         "lower": nan, "upper": nan, "n_failed": nf, "in_fit": r["in_fit"]})
        for g, pr in zip(sim.tc_groups, pred["tc"]):
            for t, o, v in zip(g["times"], g["obs"], np.atleast_1d(pr)):
                rows.append({"study_id": sim.study_id, "drug": sim.drug, "kind": "timecourse", "target": g["label"],
                             "time_day": float(t), "observed": float(o), "predicted": float(v), "unit": g["quantity"],
                             "lower": nan, "upper": nan, "n_failed": nf, "in_fit": True})
        for r, pr in zip(sim.sum_rows, pred["summary"]):
            rows.append({"study_id": sim.study_id, "drug": sim.drug, "kind": "summary", "target": r.label,
                         "time_day": nan, "observed": r.observed, "predicted": float(pr), "unit": r.unit,
                         "lower": r.lower, "upper": r.upper, "n_failed": nf, "in_fit": True})
    return pd.DataFrame(rows)


__all__ = ["Problem", "StudySim", "build_problem", "simulate_study", "study_predictions", "is_fitted", "study_log_likelihood",
           "pointwise_log_likelihood", "study_mechanism", "crs_from_mechanism", "mechanism_fixed",
           "log_likelihood",
           "log_posterior", "neg_log_posterior_flat", "predict", "OVERALL_DAYS", "FAILURE_PENALTY"]
