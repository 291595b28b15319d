"""Virtual trials: a sampled population through one compiled, batched solve, with CRS per dose.

``run_trial(card, regimen, population)`` builds every patient's dose events (mg/kg and per-m2 doses
scaled by that patient's weight/BSA; label premedication for the patients who get it), then solves
all patients with one compiled function (``jit(vmap(...))``, split over the host's CPU devices with
``pmap`` when there are several) in fixed-size chunks, so that N = 100,000 runs in bounded memory.
Per patient it returns the output time courses, the solver status (one failing patient is flagged,
the others complete) and per-dose CRS probabilities from :mod:`qsp.crs`, computed inside the same
compiled call from per-segment samples of the T-cell cytokine drive (exposure) and IL-6 (peaks).

Population summaries: :meth:`TrialResult.crs_by_dose` (per-dose incidence by grade, the labels' "CRS
after step-up dose 1: 42%") and :meth:`TrialResult.bands` (median and 5-95% band per output).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .crs import CRS_DEFAULTS, crs_params, crs_per_dose
from .errors import InputError
from .events import EventArrays, group_sizes, pad_events, regimen_to_events
from .model import Model
from .population import VirtualPopulation
from .premedication import drug_doses, with_premedication
from .regimen import Regimen
from .simulate import STATUS_OK, SolverConfig, _loop_for, solve_events_windows
from .units import Covariates

SIZED_AMOUNTS = ("jump_amount", "inf_amount", "ss_amount")  # event amounts that scale with weight / BSA

BAND_OUTPUTS = ("conc_ug_per_ml", "il6_pg_per_ml", "blood_t_cells_per_ul", "tumour_cells")
CRS_KEYS = ("il6_predose", "il6_peak", "il6_peak_h", "exposure", "tolerance", "p_any", "p_g2plus", "p_g3plus", "onset_h",
            "drive_predose", "drive_peak", "drive_peak_h")
DEFAULT_CHUNK = 2048
SEG_POINTS = 48


def patient_mechanism(model: Model, cfg: SolverConfig, seg_points: int, out_names: tuple, p, ev, ts):
    """One patient's solve without the CRS layer: (outputs at ``ts`` by name, status, steps, per-segment sample
    times ``seg_t`` and samples ``seg_y`` (..., 2) of serum IL-6 and the T-cell cytokine drive). The CRS layer
    (:func:`patient_crs`) reads only these, so a fit that moves CRS parameters alone can solve once and reuse
    them (:mod:`qsp.calibrate.likelihood`)."""
    def seg_fn(t, y, pp):
        o = model.outputs(t, y, pp)
        return jnp.stack([o["il6_pg_per_ml"], o["t_cytokine_drive"]])

    sol = solve_events_windows(model, cfg, p, ev, ts, None, seg_points=seg_points, seg_fn=seg_fn)
    outs = jax.vmap(lambda t, y: model.outputs(t, y, p))(ts, sol.ys)
    return {k: outs[k] for k in out_names}, sol.status, sol.n_steps, sol.seg_t, sol.seg_y


def patient_crs(seg_t, seg_y, il6_0, dose_t, dose_mask, c, eta, tcr):
    """The CRS layer of one patient (:func:`qsp.crs.crs_per_dose`) from :func:`patient_mechanism`'s samples."""
    x50 = c["CRS_X50"]  # exposure: the T-cell cytokine drive on the CRS_X50 scale (qsp.crs)
    return crs_per_dose(seg_t, x50 + seg_y[..., 1], x50, dose_t, dose_mask, c, eta, tcr, seg_il6=seg_y[..., 0],
                        il6_0=il6_0)


def _patient(model: Model, cfg: SolverConfig, seg_points: int, out_names: tuple, p, ev, ts, dose_t, dose_mask, c,
             eta, tcr):
    outs, status, n_steps, seg_t, seg_y = patient_mechanism(model, cfg, seg_points, out_names, p, ev, ts)
    return outs, status, n_steps, patient_crs(seg_t, seg_y, p["IL6_0"], dose_t, dose_mask, c, eta, tcr)


AXES = (0, 0, None, None, None, None, 0, 0)


def patient_batch_fn(model: Model, cfg: SolverConfig, seg_points: int = SEG_POINTS, out_names=BAND_OUTPUTS):
    """The un-jitted batched function ``(params, events, ts, dose_t, dose_mask, crs, eta, prior_tcr)``.

    Per-patient arguments carry a leading axis; ``ts``, dose times and CRS parameters are shared. Pure
    JAX: wrap it in ``jax.grad`` for sensitivities of population CRS risk.
    """
    return jax.vmap(functools.partial(_patient, model, cfg, seg_points, tuple(out_names)), in_axes=AXES)


@functools.lru_cache(maxsize=16)
def compiled_trial(model: Model, cfg: SolverConfig, seg_points: int, out_names: tuple, n_dev: int):
    fn = patient_batch_fn(model, cfg, seg_points, out_names)
    if n_dev > 1:
        return jax.pmap(fn, in_axes=AXES)
    return jax.jit(fn)


def host_devices() -> int:
    """CPU devices JAX exposes (``qsp`` asks for one per core at import, unless XLA_FLAGS says otherwise)."""
    try:
        return max(1, jax.local_device_count())
    except RuntimeError:  # pragma: no cover
        return 1


def population_events(model: Model, regimen: Regimen, pop: VirtualPopulation, ref: Covariates) -> EventArrays:
    """Per-patient event arrays (leading patient axis) without a Python loop over patients.

    Each event's amount is linear in body size: ``a = a_ref (1 + k_w (WT/WT_ref - 1) + k_b (BSA/BSA_ref - 1))``,
    where ``k_w`` (1 for mg/kg doses) and ``k_b`` (1 for per-m2 doses) are read off by compiling the
    regimen at doubled weight and doubled BSA. Patients with ``premed = 1`` get the label premedication.
    """
    w_ref = float(ref.weight_kg or 70.0)
    bsa_ref = ref.bsa() or 1.8
    variants = []
    for premed in ("none", "label"):
        reg = with_premedication(regimen, premed)
        e0 = regimen_to_events(model, reg, Covariates(weight_kg=w_ref, bsa_m2=bsa_ref))
        ew = regimen_to_events(model, reg, Covariates(weight_kg=2 * w_ref, bsa_m2=bsa_ref))
        eb = regimen_to_events(model, reg, Covariates(weight_kg=w_ref, bsa_m2=2 * bsa_ref))
        variants.append((e0, ew, eb))
    sizes = group_sizes([v[0] for v in variants])

    def padded(e: EventArrays) -> dict:
        return pad_events(e, sizes)._asdict()

    def slope(x0, x1):
        return np.where(x0 != 0, x1 / np.where(x0 != 0, x0, 1.0) - 1.0, 0.0)

    tabs = []
    for e0, ew, eb in variants:
        p0, pw, pb = padded(e0), padded(ew), padded(eb)
        tabs.append((p0, {k: slope(p0[k], pw[k]) for k in SIZED_AMOUNTS},
                     {k: slope(p0[k], pb[k]) for k in SIZED_AMOUNTS}))
    which = pop.covariates["premed"].to_numpy().astype(int)
    rel_w = pop.covariates["weight_kg"].to_numpy() / w_ref - 1.0
    rel_b = (pop.covariates["bsa_m2"].to_numpy() / bsa_ref - 1.0) if "bsa_m2" in pop.covariates else 0.0 * rel_w
    cols = {}
    for name in EventArrays._fields:
        stacked = np.stack([t[0][name] for t in tabs])[which]
        if name in SIZED_AMOUNTS:
            kw = np.stack([t[1][name] for t in tabs])[which]
            kb = np.stack([t[2][name] for t in tabs])[which]
            stacked = stacked * (1.0 + kw * rel_w[:, None] + kb * rel_b[:, None])
        cols[name] = stacked
    return EventArrays(**cols)


@dataclass
class TrialResult:
    """A simulated virtual trial.

    ``times`` are days since the first dose (day 1 = first dose in tables: ``day = time + 1``);
    ``outputs[name]`` (N, n_times); ``crs[key]`` (N, n_doses) per :func:`qsp.crs.crs_per_dose`;
    ``status`` (N,) 0 = ok; ``doses`` one row per drug dose.
    """

    model: Model
    regimen: Regimen
    population: VirtualPopulation
    times: np.ndarray
    outputs: dict[str, np.ndarray]
    status: np.ndarray
    n_steps: np.ndarray
    crs: dict[str, np.ndarray]
    doses: pd.DataFrame
    crs_parameters: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    parameter_set: object = None  # the qsp.paramsets.ParameterSet of run_card_trial (None from run_trial)

    @property
    def ok(self) -> np.ndarray:
        return self.status == STATUS_OK

    def crs_by_dose(self) -> pd.DataFrame:
        """Population per-dose CRS incidence (% of evaluable patients) by grade and median onset (h).

        Incidence is the expected percentage, the mean of the patients' probabilities; the median onset
        is the probability-weighted median of the patients' median onsets.
        """
        ok = self.ok
        rows = []
        for k, d in self.doses.iterrows():
            p1 = self.crs["p_any"][ok, k]
            present = np.isfinite(p1)
            if not present.any():
                continue
            on = self.crs["onset_h"][ok, k][present]
            w = p1[present]
            sel = np.isfinite(on) & (w > 0)
            rows.append({"dose_no": int(d.dose_no), "day": float(d.day), "dose": float(d.dose),
                         "crs_any_pct": 100.0 * float(np.mean(p1[present])),
                         "crs_g2plus_pct": 100.0 * float(np.mean(self.crs["p_g2plus"][ok, k][present])),
                         "crs_g3plus_pct": 100.0 * float(np.mean(self.crs["p_g3plus"][ok, k][present])),
                         "median_onset_h": weighted_median(on[sel], w[sel]) if sel.any() else float("nan"),
                         "unit": d.unit, "route": d.route,
                         "il6_peak_median_pg_per_ml": float(np.median(self.crs["il6_peak"][ok, k][present])),
                         "n_evaluable": int(present.sum())})
        return pd.DataFrame(rows)

    def any_crs_pct(self) -> dict[str, float]:
        """Expected % of patients with at least one CRS event of each grade over the horizon.

        Given a patient's parameters and sensitivity, doses are taken as independent:
        ``P(any) = 1 - prod_k (1 - P_k)``.
        """
        out = {}
        for key in ("p_any", "p_g2plus", "p_g3plus"):
            p = np.nan_to_num(self.crs[key][self.ok], nan=0.0)
            out[key] = 100.0 * float(np.mean(1.0 - np.prod(1.0 - p, axis=1)))
        return out

    def bands(self, q=(5.0, 50.0, 95.0)) -> pd.DataFrame:
        """Median and 5-95% band of every stored output over evaluable patients, per output time."""
        df = pd.DataFrame({"time_day": self.times + 1.0})
        ok = self.ok
        for name, v in self.outputs.items():
            lo, med, hi = np.percentile(v[ok], q, axis=0) if ok.any() else (np.full(len(self.times), np.nan),) * 3
            df[f"{name}_p05"] = lo
            df[f"{name}_median"] = med
            df[f"{name}_p95"] = hi
        return df

    def patients(self) -> pd.DataFrame:
        """One row per patient and dose: covariates, status and the per-dose CRS quantities."""
        n, nd = self.crs["p_any"].shape
        cov = self.population.covariates
        df = cov.loc[np.repeat(np.arange(n), nd)].reset_index(drop=True)
        df.insert(1, "dose_no", np.tile(self.doses.dose_no.to_numpy(), n))
        df["status"] = np.repeat(self.status, nd)
        for k in CRS_KEYS:
            df[k] = self.crs[k].reshape(-1)
        return df


def weighted_median(x, w) -> float:
    o = np.argsort(x, kind="stable")
    x, w = np.asarray(x)[o], np.asarray(w)[o]
    c = np.cumsum(w)
    return float(x[np.searchsorted(c, 0.5 * c[-1])])


def dose_schedule(regimen: Regimen, days: float) -> pd.DataFrame:
    """Drug doses (premedication excluded) inside ``[0, days]``: dose_no, time (day), day, dose, unit, route."""
    rows = []
    for i, d in enumerate(d for d in drug_doses(regimen.in_unit("day")) if d.time <= days):
        rows.append({"dose_no": i + 1, "time": float(d.time), "day": float(d.time) + 1.0, "dose": float(d.amount),
                     "unit": d.unit, "route": d.route})
    return pd.DataFrame(rows)


def _pad_rows(a, n):
    a = np.asarray(a)
    if a.shape[0] == n:
        return a
    return np.concatenate([a, np.repeat(a[-1:], n - a.shape[0], axis=0)])


@dataclass
class TrialInputs:
    """Everything one batched trial call takes, built once (:func:`prepare_trial`): the solver settings, the
    regimen cut to the reported days, the dose table, output times, dose times and mask, CRS parameters,
    per-patient parameters (name -> (N,)), per-patient events, CRS sensitivities and prior-TCR flags."""

    cfg: SolverConfig
    regimen: Regimen
    doses: pd.DataFrame
    ts: np.ndarray
    dose_t: np.ndarray
    dose_mask: np.ndarray
    crs: dict
    params: dict
    events: EventArrays
    eta: np.ndarray
    prior_tcr: np.ndarray


def prepare_trial(model: Model, regimen: Regimen, pop: VirtualPopulation, ref: Covariates, *, days: float = 35.0,
                  outputs_per_day: int = 1, crs: Mapping[str, float] | None = None, params: Mapping | None = None,
                  solver: str = "tsit5", rtol: float = 1e-6, atol: float = 1e-9, max_steps: int = 4096,
                  out_names: Sequence[str] = BAND_OUTPUTS, follow_up_days: float = 7.0,
                  loop: str = "segments") -> TrialInputs:
    """The inputs of :func:`run_trial`'s batched call (arguments as there), checked; no solve. The optimizer
    (:mod:`qsp.optimize`) differentiates :func:`patient_batch_fn` on them."""
    if not (isinstance(days, (int, float)) and days > 0):
        raise InputError(f"days must be a positive number, got {days!r}", field="days")
    if not (isinstance(outputs_per_day, int) and outputs_per_day >= 1):
        raise InputError(f"outputs_per_day must be a positive integer, got {outputs_per_day!r}",
                         field="outputs_per_day")
    unknown = [k for k in out_names if k not in model.output_info]
    if unknown:
        raise InputError(f"unknown output(s) {unknown}; allowed: {', '.join(model.output_info)}", field="outputs")
    cfg = SolverConfig(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps, loop=loop)
    regimen = regimen.in_unit("day").until(float(days))  # no dose after the reported ones is simulated
    n = pop.n
    doses = dose_schedule(regimen, days)
    if doses.empty:
        raise InputError(f"the regimen has no drug dose within the first {days} days", field="regimen")
    dose_t = doses.time.to_numpy(float)
    horizon = max(float(days), float(dose_t[-1]) + float(follow_up_days))
    ts = np.linspace(0.0, horizon, int(round(horizon * outputs_per_day)) + 1)
    dose_mask = np.ones(len(dose_t), bool)

    base = model.params({k: v for k, v in (params or {}).items() if np.ndim(v) == 0})
    # The CRS parameters are part of the model's namespace (qsp.components.crs_link); ``crs`` overrides them.
    c = crs_params({**{k: base[k] for k in CRS_DEFAULTS if k in base}, **dict(crs or {})})
    per = {k: np.broadcast_to(np.asarray(v, float), (n,)) for k, v in pop.params.items()}
    typ = model.default_params()
    for k, v in (params or {}).items():  # a scalar override moves the typical value of a varying parameter
        if np.ndim(v) == 0 and k in per:
            t0 = float(typ[k])
            per[k] = per[k] * (float(v) / t0) if t0 != 0 else per[k] + (float(v) - t0)
    per.update({k: np.broadcast_to(np.asarray(v, float), (n,)) for k, v in (params or {}).items() if np.ndim(v) > 0})
    for k in per:
        if k not in base:
            raise InputError(f"unknown parameter {k!r}; allowed: {', '.join(base)}", field="params")
    pb = {k: np.array(per[k], dtype=float) if k in per else np.full(n, float(v)) for k, v in base.items()}
    ev = population_events(model, regimen, pop, ref)
    cfg = _loop_for(cfg, ev)  # resets: the segmented loop
    eta = pop.covariates["eta_crs"].to_numpy(float)
    tcr = pop.covariates["prior_tcr"].to_numpy(float)

    return TrialInputs(cfg, regimen, doses, ts, dose_t, dose_mask, c, pb, ev, eta, tcr)


def run_trial(model: Model, regimen: Regimen, pop: VirtualPopulation, ref: Covariates, *, days: float = 35.0,
              outputs_per_day: int = 1, seg_points: int = SEG_POINTS, chunk_size: int = DEFAULT_CHUNK,
              crs: Mapping[str, float] | None = None, params: Mapping | None = None, solver: str = "tsit5",
              rtol: float = 1e-6, atol: float = 1e-9, max_steps: int = 4096, progress: bool = False,
              out_names: Sequence[str] = BAND_OUTPUTS, devices: int | None = None,
              follow_up_days: float = 7.0, loop: str = "segments", client=None) -> TrialResult:
    """Simulate every patient of ``pop`` on ``regimen`` for ``days`` days, with CRS per dose.

    Args:
        ref: the reference covariates (the card's patient; weight scaling of doses and allometry).
        outputs_per_day: output grid density for the time courses (1 = daily).
        seg_points: samples per integration segment for per-dose IL-6 peaks and onset.
        chunk_size: patients per compiled call (memory bound); the last chunk is padded.
        params: scalar overrides of typical values (a parameter with IIV keeps each patient's deviation:
            its values are scaled by new / old typical value), or per-patient arrays (replace the population's).
        progress: show a progress bar (stderr) over chunks.
        follow_up_days: the horizon is extended (if needed) to this long after the last dose given within
            ``days``, so the last dose's CRS window is not cut short.
        loop: the integration loop (:data:`qsp.simulate.LOOPS`): ``segments`` (one solve per segment between
            events) or ``whole`` (one solve per patient over its horizon, :mod:`qsp.whole_horizon`; a
            regimen with resets takes the segmented loop).
        client: a Dask ``distributed.Client``: the patients are split into one chunk per worker (at most
            ``chunk_size`` each), each solved on a worker (:func:`solve_chunk`); every patient's numbers are those
            of a local run (each patient's solve is independent of the others in its batch; tested).
    """
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise InputError(f"chunk_size must be a positive integer, got {chunk_size!r}", field="chunk_size")
    ti = prepare_trial(model, regimen, pop, ref, days=days, outputs_per_day=outputs_per_day, crs=crs, params=params,
                       solver=solver, rtol=rtol, atol=atol, max_steps=max_steps, out_names=out_names,
                       follow_up_days=follow_up_days, loop=loop)
    cfg, regimen, doses, ts, dose_t, dose_mask = ti.cfg, ti.regimen, ti.doses, ti.ts, ti.dose_t, ti.dose_mask
    c, pb, ev, eta, tcr, n = ti.crs, ti.params, ti.events, ti.eta, ti.prior_tcr, pop.n

    n_dev = host_devices() if devices is None else max(1, int(devices))
    chunk = min(chunk_size, n)
    chunk = -(-chunk // n_dev) * n_dev
    fn = compiled_trial(model, cfg, int(seg_points), tuple(out_names), n_dev)
    c_j = {k: jnp.asarray(v) for k, v in c.items()}
    shared = (jnp.asarray(ts), jnp.asarray(dose_t), jnp.asarray(dose_mask), c_j)

    def shard(a):
        a = np.asarray(a)
        return a.reshape((n_dev, a.shape[0] // n_dev) + a.shape[1:]) if n_dev > 1 else a

    def unshard(a):
        a = np.asarray(a)
        return a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:]) if n_dev > 1 else a

    if client is not None:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        chunk = min(chunk_size, -(-n // n_workers))
        pieces = []
        futs = []
        for s0 in range(0, n, chunk):
            sl = slice(s0, min(s0 + chunk, n))
            futs.append(client.submit(solve_chunk, model, cfg, int(seg_points), tuple(out_names),
                                      {k: np.asarray(v[sl]) for k, v in pb.items()},
                                      EventArrays(*[np.asarray(getattr(ev, f)[sl]) for f in EventArrays._fields]),
                                      tuple(np.asarray(a) for a in (ts, dose_t, dose_mask)),
                                      {k: np.asarray(v) for k, v in c.items()}, np.asarray(eta[sl]),
                                      np.asarray(tcr[sl]), pure=False))
        pieces = [f.result() for f in futs]
        return _assemble(model, regimen, pop, ts, out_names, pieces, doses, c, {})
    starts = list(range(0, n, chunk))
    it = starts
    if progress:
        from tqdm import tqdm

        it = tqdm(starts, desc=f"{n} patients", unit="chunk", leave=False)
    pieces = []
    timings = {}
    for s in it:
        sl = slice(s, min(s + chunk, n))
        m = sl.stop - sl.start
        args = ({k: shard(_pad_rows(v[sl], chunk)) for k, v in pb.items()},
                EventArrays(*[shard(_pad_rows(getattr(ev, f)[sl], chunk)) for f in EventArrays._fields]))
        t0 = time.perf_counter()
        out = fn(*args, *shared, shard(_pad_rows(eta[sl], chunk)), shard(_pad_rows(tcr[sl], chunk)))
        out = jax.tree_util.tree_map(lambda a: unshard(a)[:m], jax.block_until_ready(out))
        timings.setdefault("first_chunk_s", time.perf_counter() - t0)
        pieces.append(out)
    return _assemble(model, regimen, pop, ts, out_names, pieces, doses, c, timings)


def _assemble(model, regimen, pop, ts, out_names, pieces, doses, c, timings) -> TrialResult:
    outs = {k: np.concatenate([p[0][k] for p in pieces]) for k in out_names}
    status = np.concatenate([p[1] for p in pieces]).astype(int)
    steps = np.concatenate([p[2] for p in pieces]).astype(int)
    crs_out = {k: np.concatenate([p[3][k] for p in pieces]) for k in CRS_KEYS}
    bad = status != STATUS_OK
    for k in crs_out:
        crs_out[k][bad] = np.nan
    return TrialResult(model, regimen, pop, ts, outs, status, steps, crs_out, doses, c, timings)


def solve_chunk(model: Model, cfg: SolverConfig, seg_points: int, out_names: tuple, params: dict, events,
                shared: tuple, crs: dict, eta, tcr):
    """One chunk of a trial's patients (NumPy in, NumPy out): what a Dask worker runs for
    :func:`run_trial` with ``client``; the batch is padded to the worker's devices like a local chunk."""
    n_dev = host_devices()
    m = len(eta)
    size = -(-m // n_dev) * n_dev
    fn = compiled_trial(model, cfg, seg_points, out_names, n_dev)

    def shard(a):
        a = _pad_rows(np.asarray(a), size)
        return a.reshape((n_dev, size // n_dev) + a.shape[1:]) if n_dev > 1 else a

    out = fn({k: shard(v) for k, v in params.items()}, EventArrays(*[shard(a) for a in events]),
             *(jnp.asarray(a) for a in shared), {k: jnp.asarray(v) for k, v in crs.items()}, shard(eta), shard(tcr))

    def unshard(a):
        a = np.asarray(a)
        return (a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:]) if n_dev > 1 else a)[:m]

    return jax.tree_util.tree_map(unshard, jax.block_until_ready(out))


def run_card_trial(card, regimen: Regimen | None = None, *, patients: int = 1000, seed: int = 0,
                   days: float = 35.0, premed: str = "label", progress: bool = False, parameters=None,
                   prior_tcr: float | None = None, **kw) -> TrialResult:
    """A virtual trial of a drug card: its population spec, its reference patient, its CRS priors.

    Args:
        card: a :class:`qsp.cards.DrugCard`.
        regimen: default the card's label regimen (doses up to ``days``).
        premed: ``label`` (every patient gets the label's dexamethasone) or ``none``.
        prior_tcr: fraction of patients with prior T-cell-redirecting therapy (0-1; default: the card's
            population); each patient's draw is its own (same seed, same patients otherwise).
        parameters: the typical values laid over the card (:mod:`qsp.paramsets`): ``None`` = the default set
            (``calibrated`` when a calibrated file is shipped or named by ``$QSP_CALIBRATED``, else ``prior``),
            ``"prior"``, ``"calibrated"``, or a mapping ``{name: value}`` (e.g. a draw of
            :func:`qsp.paramsets.draw_parameter_sets`). Explicit ``params`` / ``crs`` win over the set. The
            set used is on :attr:`TrialResult.parameter_set`.
        **kw: passed to :func:`run_trial` (``outputs_per_day``, ``chunk_size``, ``params``, ``crs``, ...).

    A parameter set moves typical values only: the virtual patients (random effects, covariates, CRS
    sensitivity ``z``) are those of ``seed`` whatever the set, so runs with different sets are paired (common
    random numbers). A ``CRS_OMEGA`` from the set or the caller rescales every patient's CRS sensitivity,
    ``eta_i = CRS_OMEGA z_i``; a fitted IIV SD ``OMEGA_<P>`` in the set (or ``params``) rescales every
    patient's random effect of ``P`` the same way (:func:`qsp.population.with_omegas`).
    """
    setup = card_trial_setup(card, patients=patients, seed=seed, premed=premed, parameters=parameters,
                             prior_tcr=prior_tcr, params=kw.pop("params", None), crs=kw.pop("crs", None))
    reg = regimen if regimen is not None else card.regimen(until_day=days)
    trial = run_trial(setup.model, reg, setup.population, setup.ref, days=days, progress=progress, crs=setup.crs,
                      params=setup.params or None, **kw)
    trial.parameter_set = setup.parameter_set
    return trial


@dataclass
class CardTrialSetup:
    """A card's virtual trial before any regimen: model, reference patient, virtual patients, the typical values
    laid over the card (``params``), CRS values and the parameter set used (:func:`card_trial_setup`)."""

    model: Model
    ref: Covariates
    population: VirtualPopulation
    params: dict
    crs: dict
    parameter_set: object


def card_trial_setup(card, *, patients: int = 1000, seed: int = 0, premed: str = "label", parameters=None,
                     prior_tcr: float | None = None, params: Mapping | None = None,
                     crs: Mapping | None = None, stratified: bool = False) -> CardTrialSetup:
    """What :func:`run_card_trial` builds before it runs a regimen (arguments as there): the same patients and
    values for every regimen of a comparison (the optimizer's candidates). ``stratified``: Latin-hypercube
    patients (:func:`qsp.population.sample_population`), for a small population standing in for a large one."""
    from .paramsets import resolve_parameter_set
    from .population import omega_target, population_spec, sample_population, with_omegas

    if premed not in ("none", "label"):
        raise InputError(f"unknown premedication {premed!r}; allowed: none, label", field="premed")
    model, ref = card.model(), card.covariates()
    pset = resolve_parameter_set(card.name, model, parameters)
    user_crs = dict(crs or {})
    params = {**pset.values, **dict(params or {})}
    iiv = {k: params.pop(k) for k in list(params) if omega_target(k) is not None}  # fitted IIV SDs: the population
    # the card's [crs] values are the model's defaults too: they give way to the set's and the caller's values
    crs = {**{k: v for k, v in card.crs_values().items() if k not in params}, **user_crs}
    omega = user_crs.get("CRS_OMEGA", params.get("CRS_OMEGA"))
    extra = {"crs_omega": float(omega)} if omega is not None and np.ndim(omega) == 0 else {}
    if prior_tcr is not None:
        if isinstance(prior_tcr, bool) or not isinstance(prior_tcr, (int, float)) or not 0.0 <= prior_tcr <= 1.0:
            raise InputError(f"prior_tcr must be a fraction between 0 and 1, got {prior_tcr!r}", field="prior_tcr")
        extra["prior_tcr_prob"] = float(prior_tcr)
    spec = population_spec(card, premed_fraction=1.0 if premed == "label" else 0.0, **extra)
    if iiv:  # same patients (named random streams), their spread rescaled
        spec = with_omegas(spec, {k: float(v) for k, v in iiv.items()})
    pop = sample_population(model, patients, seed, spec, weight_kg=ref.weight_kg, height_cm=ref.height_cm,
                            stratified=bool(stratified))
    return CardTrialSetup(model, ref, pop, params, crs, pset)
