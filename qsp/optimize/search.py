"""The search: every structure x interval pattern, step doses optimised by ``jax.grad`` through the batched trial.

**One compiled program for the whole search.** Candidates differ in their number of doses; every candidate's
per-patient events are padded to the same number of rows (padding rows masked, as :func:`qsp.trial.population_events`
pads), its dose times to the same length (padding at ``+inf``, ``dose_mask`` False: :func:`qsp.crs.crs_per_dose`),
and its step doses to ``MAX_STEPS`` entries, so one ``jit(value_and_grad)`` serves every structure.

**Step doses as a differentiable function of an unconstrained vector.** Dose amounts in the events are linear
in each step's fraction of the treatment dose (a split step's two halves alike; body-size scaling included):
``A(f) = A(f0) + sum_k J_k (f_k - f0_k)`` with ``J_k`` read off two event builds (exact). The fractions are
``rising_fractions(u)`` (:mod:`qsp.optimize.space`): rising, above the floor, below the treatment dose.

**Objective** (minimised; ``k_td`` the first treatment dose, ``q_ik``/``p_ik`` per-patient per-dose probabilities of
grade >= 2 / any CRS, doses up to ``k_td``):

* ``crs_g2``: ``100 mean_i [1 - prod_{k <= k_td} (1 - q_ik)]``;
* ``crs_any``: the same with ``p_ik``;
* ``inpatient_days``: ``stay * sum_{k <= k_td} sigmoid((100 mean_i q_ik - threshold) / 0.25)`` (the monitoring
  rule, smoothed so that it has a gradient) plus ``crs_g2 / 100`` to break ties.

Every candidate is optimised by L-BFGS (SciPy, on the jitted value and gradient) from ``starts`` starting points
(the label's fractions where the structure matches, a geometric ladder, random ladders). Stage 1 tries every
structure with equal intervals from ``interval_days``; stage 2 changes one interval at a time around the best
candidates of each structure (coordinate search), keeping ``reach_by_day``.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import InputError
from ..events import EventArrays
from ..trial import SEG_POINTS, CardTrialSetup, patient_batch_fn, prepare_trial
from .objectives import MonitoringRule, first_treatment_index
from .space import MAX_STEPS, Candidate, RegimenSpace, Structure

OBJECTIVES = ("crs_g2", "crs_any", "inpatient_days")
_FILLS = dict(jump_time=0.0, jump_amount=0.0, jump_state=0, jump_route=0, jump_reset=False, jump_mask=False,
              inf_start=0.0, inf_duration=1.0, inf_amount=0.0, inf_state=0, inf_route=0, inf_mask=False)


def masked_fractions(u, n_active, floor: float):
    """``rising_fractions`` on the first ``n_active`` of ``MAX_STEPS`` entries (the rest repeat the last; they
    move no dose). Traceable in ``n_active`` (a mask, not a shape)."""
    k = jnp.arange(MAX_STEPS)
    active = k < n_active
    logits = jnp.concatenate([jnp.where(active, u, -jnp.inf), jnp.zeros((1,))])
    w = jnp.exp(logits - jnp.max(logits))
    c = w / jnp.sum(w)
    return jnp.exp(math.log(floor) * (1.0 - jnp.cumsum(c)[:-1]))


def ladder(n: int, floor: float) -> np.ndarray:
    """Geometric ladder of ``n`` fractions between ``floor`` and 1 (exclusive)."""
    return np.array([floor ** (1.0 - (k + 1) / (n + 1)) for k in range(n)])


def fractions_to_u(fr: Sequence[float], floor: float) -> np.ndarray:
    """Inverse of :func:`masked_fractions` for ``len(fr)`` active steps (padded to ``MAX_STEPS``)."""
    fr = np.asarray(fr, float)
    n = fr.shape[0]
    u = np.zeros(MAX_STEPS)
    if n == 0:
        return u
    cum = 1.0 - np.log(fr) / math.log(floor)  # cumsum of c over the active entries
    c = np.diff(np.concatenate([[0.0], cum]))
    c_rest = 1.0 - cum[-1]
    u[:n] = np.log(np.maximum(c, 1e-300)) - math.log(max(c_rest, 1e-300))
    return u


@dataclass
class Prepared:
    """One candidate's padded inputs: events at the template fractions ``f0`` and their slopes ``J`` in each
    step's fraction, dose times and mask, which doses are in the step-up phase."""

    structure: Structure
    intervals: tuple[float, ...]
    f0: np.ndarray  # (MAX_STEPS,)
    events: EventArrays  # (N, NJ) / (N, NI), padded
    j_jump: np.ndarray  # (MAX_STEPS, N, NJ)
    j_inf: np.ndarray  # (MAX_STEPS, N, NI)
    dose_t: np.ndarray  # (ND,)
    dose_mask: np.ndarray
    stepup_mask: np.ndarray  # doses up to and including the first treatment dose


@dataclass
class SearchSettings:
    objective: str = "crs_g2"
    reach_by_day: float | None = None
    follow_days: float = 14.0  # horizon = latest first-treatment day allowed + this
    rule: MonitoringRule = field(default_factory=MonitoringRule)
    starts: int = 3
    max_iter: int = 30
    seed: int = 0
    seg_points: int = SEG_POINTS

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise InputError(f"unknown objective {self.objective!r}; allowed: {', '.join(OBJECTIVES)}",
                             field="objective")
        if self.reach_by_day is not None and not (self.reach_by_day >= 0 and math.isfinite(self.reach_by_day)):
            raise InputError(f"reach-by-day must be a non-negative number of days, got {self.reach_by_day}",
                             field="reach_by_day")
        if not (isinstance(self.starts, int) and self.starts >= 1):
            raise InputError(f"starts must be a positive integer, got {self.starts}", field="starts")


class Evaluator:
    """Padded, compiled evaluation of candidates of one space on one set of virtual patients."""

    def __init__(self, space: RegimenSpace, setup: CardTrialSetup, settings: SearchSettings, horizon: float):
        self.space, self.setup, self.settings, self.horizon = space, setup, settings, float(horizon)
        self.floor = space.floor
        # the largest shapes: max steps, all split, premedication with each dose
        n_max = max(space.max_steps * (2 if space.allow_splits else 1), space.label_candidate().structure.n_steps)
        self.nd = n_max + len([1 for dt, _ in space.maintenance if dt <= horizon]) + 1
        self.nj = 2 * self.nd + 2
        self.ni = self.nd + 1
        self._vg = None

    # --- inputs -----------------------------------------------------------------------------------
    def _trial_inputs(self, cand: Candidate):
        s = self.setup
        reg = self.space.regimen(cand, until_day=self.horizon)
        return prepare_trial(s.model, reg, s.population, s.ref, days=self.horizon, crs=s.crs, params=s.params or None,
                             out_names=("conc_ug_per_ml",), follow_up_days=0.0)

    def _pad(self, a: np.ndarray, n: int, name: str) -> np.ndarray:
        if a.shape[1] > n:
            raise InputError(f"candidate has {a.shape[1]} event rows, more than the search's {n}", field="candidate")
        out = np.full((a.shape[0], n), _FILLS[name], dtype=a.dtype)
        out[:, : a.shape[1]] = a
        return out

    def prepare(self, structure: Structure, intervals: Sequence[float]) -> Prepared:
        n = structure.n_steps
        f0 = ladder(n, self.floor)
        base = Candidate(structure, tuple(f0), tuple(intervals))
        ti = self._trial_inputs(base)
        ev = {f: self._pad(np.asarray(getattr(ti.events, f)), self.nj if f.startswith("jump") else self.ni, f)
              for f in EventArrays._fields}
        j_jump = np.zeros((MAX_STEPS,) + ev["jump_amount"].shape)
        j_inf = np.zeros((MAX_STEPS,) + ev["inf_amount"].shape)
        for k in range(n):
            f1 = f0.copy()
            f1[k] *= 0.999  # stays rising and above the floor: the ladder's gaps are wide
            t1 = self._trial_inputs(Candidate(structure, tuple(f1), tuple(intervals)))
            dk = f1[k] - f0[k]
            j_jump[k] = (self._pad(np.asarray(t1.events.jump_amount), self.nj, "jump_amount") - ev["jump_amount"]) / dk
            j_inf[k] = (self._pad(np.asarray(t1.events.inf_amount), self.ni, "inf_amount") - ev["inf_amount"]) / dk
        nd_real = ti.dose_t.shape[0]
        if nd_real > self.nd:
            raise InputError(f"candidate has {nd_real} doses in the horizon, more than the search's {self.nd}",
                             field="candidate")
        dose_t = np.full(self.nd, np.inf)
        dose_t[:nd_real] = ti.dose_t
        mask = np.zeros(self.nd, bool)
        mask[:nd_real] = True
        k_td = first_treatment_index(ti.regimen, self.space.treatment_dose)
        stepup = np.zeros(self.nd, bool)
        stepup[: k_td + 1] = True
        f0p = np.zeros(MAX_STEPS)
        f0p[:n] = f0
        if n < MAX_STEPS:
            f0p[n:] = f0[-1] if n else 0.0
        self._ts = ti.ts
        self._shared = (ti.params, ti.crs, ti.eta, ti.prior_tcr, ti.cfg)
        return Prepared(structure, tuple(intervals), f0p, EventArrays(**ev), j_jump, j_inf, dose_t, mask, stepup)

    # --- the compiled objective ---------------------------------------------------------------------
    def _build(self):
        pb, c, eta, tcr, cfg = self._shared
        batch = patient_batch_fn(self.setup.model, cfg, self.settings.seg_points, ("conc_ug_per_ml",))
        obj, rule, floor = self.settings.objective, self.settings.rule, self.floor
        pb_j = {k: jnp.asarray(v) for k, v in pb.items()}
        c_j = {k: jnp.asarray(v) for k, v in c.items()}
        eta_j, tcr_j, ts_j = jnp.asarray(eta), jnp.asarray(tcr), jnp.asarray(self._ts)

        def loss(u, n_active, f0, ev, j_jump, j_inf, dose_t, dose_mask, stepup):
            f = masked_fractions(u, n_active, floor)
            df = (f - f0)[:, None, None]
            ev = ev._replace(jump_amount=ev.jump_amount + jnp.sum(df * j_jump, 0),
                             inf_amount=ev.inf_amount + jnp.sum(df * j_inf, 0))
            _, status, _, crs = batch(pb_j, ev, ts_j, dose_t, dose_mask, c_j, eta_j, tcr_j)
            ok = status == 0
            n_ok = jnp.maximum(jnp.sum(ok), 1)
            sel = stepup[None, :] & ok[:, None]
            q = jnp.where(sel, jnp.nan_to_num(crs["p_g2plus"]), 0.0)
            p = jnp.where(sel, jnp.nan_to_num(crs["p_any"]), 0.0)
            g2 = 100.0 * jnp.sum(jnp.where(ok, 1.0 - jnp.prod(1.0 - q, axis=1), 0.0)) / n_ok
            anyc = 100.0 * jnp.sum(jnp.where(ok, 1.0 - jnp.prod(1.0 - p, axis=1), 0.0)) / n_ok
            per_dose = 100.0 * jnp.sum(q, axis=0) / n_ok
            inpat = rule.stay_days * jnp.sum(jnp.where(stepup, jax.nn.sigmoid((per_dose - rule.g2_threshold_pct) / 0.25),
                                                       0.0))
            val = {"crs_g2": g2, "crs_any": anyc, "inpatient_days": inpat + g2 / 100.0}[obj]
            return val, {"crs_g2_stepup_pct": g2, "crs_any_stepup_pct": anyc, "per_dose_g2_pct": per_dose,
                         "failed": jnp.sum(~ok)}

        self._vg = jax.jit(jax.value_and_grad(loss, has_aux=True))

    def value_and_grad(self, u, prep: Prepared):
        if self._vg is None:
            self._build()
        return self._vg(jnp.asarray(u), prep.structure.n_steps, jnp.asarray(prep.f0), prep.events,
                        jnp.asarray(prep.j_jump), jnp.asarray(prep.j_inf), jnp.asarray(prep.dose_t),
                        jnp.asarray(prep.dose_mask), jnp.asarray(prep.stepup_mask))

    def evaluate(self, cand: Candidate) -> dict:
        """The objective of one candidate as it is (no optimisation), e.g. the label regimen."""
        self.space.check(cand)
        prep = self.prepare(cand.structure, cand.intervals)
        u = fractions_to_u(cand.fractions, self.floor)
        (v, aux), _ = self.value_and_grad(u, prep)
        return {"candidate": cand, "objective": float(v), "crs_g2_stepup_pct": float(aux["crs_g2_stepup_pct"]),
                "crs_any_stepup_pct": float(aux["crs_any_stepup_pct"]), "failed": int(aux["failed"])}

    # --- one structure + intervals ------------------------------------------------------------------
    def optimise(self, structure: Structure, intervals: Sequence[float], starts: Sequence[np.ndarray]) -> dict:
        """Minimise the objective over the step doses from each start (L-BFGS); the best result."""
        from scipy.optimize import minimize

        prep = self.prepare(structure, intervals)
        n = structure.n_steps
        best = None
        for u0 in starts if n else [np.zeros(MAX_STEPS)]:
            def fg(x):
                u = np.zeros(MAX_STEPS)
                u[:n] = x
                (v, aux), g = self.value_and_grad(u, prep)
                return float(v), np.asarray(g, float)[:n]

            if n:
                r = minimize(fg, np.asarray(u0, float)[:n], jac=True, method="L-BFGS-B",
                             options={"maxiter": self.settings.max_iter})
                x = r.x
            else:
                x = np.zeros(0)
            u = np.zeros(MAX_STEPS)
            u[:n] = x
            (v, aux), _ = self.value_and_grad(u, prep)
            fr = tuple(float(f) for f in np.asarray(masked_fractions(jnp.asarray(u), n, self.floor))[:n])
            res = {"candidate": Candidate(structure, fr, tuple(intervals)), "objective": float(v),
                   "crs_g2_stepup_pct": float(aux["crs_g2_stepup_pct"]), "crs_any_stepup_pct":
                       float(aux["crs_any_stepup_pct"]), "failed": int(aux["failed"])}
            if best is None or res["objective"] < best["objective"]:
                best = res
        return best


def interval_patterns(n: int, choices: Sequence[float], reach_by: float | None) -> list[tuple[float, ...]]:
    """Equal-interval patterns (stage 1) that reach the treatment dose by ``reach_by``."""
    out = []
    for d in sorted(set(choices)):
        pat = (float(d),) * n
        if reach_by is None or sum(pat) <= reach_by + 1e-9:
            out.append(pat)
    return out if n else [()]


def starts_for(space: RegimenSpace, structure: Structure, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Starting points: the label's fractions (same number of steps), a geometric ladder, random ladders."""
    n = structure.n_steps
    out = []
    lab = space.label_candidate()
    if lab.structure.n_steps == n and n:
        out.append(fractions_to_u(lab.fractions, space.floor))
    out.append(fractions_to_u(ladder(n, space.floor), space.floor))
    while len(out) < k:
        out.append(np.concatenate([rng.normal(0.0, 1.0, n), np.zeros(MAX_STEPS - n)]))
    return out[:k]


def search(space: RegimenSpace, setup: CardTrialSetup, settings: SearchSettings, *,
           progress: Callable[[str], None] | None = None) -> tuple[list[dict], dict]:
    """Every structure of ``space`` (stage 1: equal intervals; stage 2: one-interval moves around each structure's
    best), step doses optimised. Returns one result per structure x interval pattern tried (best first) and the
    label regimen's own result on the same patients and horizon."""
    reach = settings.reach_by_day
    lab_days = space.days_to_treatment_dose(space.label_candidate())
    latest = reach if reach is not None else max(lab_days, max(space.interval_days) * space.max_steps)
    ev = Evaluator(space, setup, settings, horizon=latest + settings.follow_days)
    rng = np.random.default_rng(settings.seed)
    results, t0 = [], time.perf_counter()
    label = ev.evaluate(space.label_candidate())
    structures = list(space.structures())
    for si, st in enumerate(structures):
        tried = {}
        for pat in interval_patterns(st.n_steps, space.interval_days, reach):
            tried[pat] = ev.optimise(st, pat, starts_for(space, st, settings.starts, rng))
        if not tried:
            continue
        # stage 2: coordinate moves of single intervals around this structure's best
        best = min(tried.values(), key=lambda r: r["objective"])
        improved = True
        while improved and st.n_steps:
            improved = False
            cur = best["candidate"].intervals
            for i, d in itertools.product(range(st.n_steps), sorted(set(space.interval_days))):
                pat = tuple(d if j == i else x for j, x in enumerate(cur))
                if pat in tried or (reach is not None and sum(pat) > reach + 1e-9):
                    continue
                starts = [fractions_to_u(best["candidate"].fractions, space.floor)]
                tried[pat] = ev.optimise(st, pat, starts)
                if tried[pat]["objective"] < best["objective"] - 1e-9:
                    best, improved = tried[pat], True
        results += list(tried.values())
        if progress:
            progress(f"structure {si + 1}/{len(structures)} ({st.n_steps} steps, {','.join(st.routes)}): best "
                     f"{best['objective']:.3g} ({time.perf_counter() - t0:.0f} s)")
    return sorted(results, key=lambda r: r["objective"]), label


__all__ = ["OBJECTIVES", "SearchSettings", "Evaluator", "search", "masked_fractions", "fractions_to_u", "ladder",
           "interval_patterns", "starts_for"]
