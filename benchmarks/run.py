"""Performance benchmark: the batched, compiled engine vs a SciPy LSODA loop on the same equations.

Reference scenario: teclistamab, label step-up regimen with label premedication, 35 days, daily
outputs plus the IL-6 peak after every dose, a virtual population (``qsp.population``, seed 0).

In one run it measures
  (a) the engine: ``qsp.trial.run_trial`` (jit + vmap, split over the host's CPU devices, CRS per
      dose included), compile time reported apart, median over ``--repeats`` runs;
  (b) SciPy: ``solve_ivp(method="LSODA")`` one patient at a time on ``benchmarks/numpy_tce.py`` (a
      NumPy transcription of the same right-hand side), same tolerances, with the same daily outputs
      and per-dose IL-6 peaks (IL-6 sampled on the same per-segment grid);
and checks agreement on the patients both solved. It also times the reverse-mode gradient of the mean
P(CRS >= 2 after dose 1) with respect to every model and CRS parameter against one forward solve of
the same function, and records the peak resident memory of the process.

    python benchmarks/run.py --patients 10000 --scipy-patients 200 --json benchmarks/results/n10000.json

``--scipy-patients 0`` skips (b); ``--grad-patients 0`` skips the gradient.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import qsp  # noqa: F401  (x64, host devices: before jax is used)
import jax
import jax.numpy as jnp

from qsp.cards import load_card
from qsp.crs import crs_params
from qsp.events import EventArrays
from qsp.population import population_spec, sample_population
from qsp.simulate import SolverConfig
from qsp.trial import SEG_POINTS, patient_batch_fn, population_events, run_trial

sys.path.insert(0, str(Path(__file__).resolve().parent))
from numpy_tce import NumpyTCE, solve_patient  # noqa: E402

DRUG, DAYS, RTOL, ATOL = "teclistamab", 35.0, 1e-6, 1e-9
# reverse mode: steps stored per solve, more than any solve takes (no recomputation): a dose segment takes < 128
# steps; the whole-horizon loop's single solve per patient ~150-400 on this scenario
GRAD_CHECKPOINTS = {"segments": 128, "whole": 512}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, {platform.system()} {platform.machine()}"


def scenario(n: int, seed: int):
    card = load_card(DRUG)
    model, ref = card.model(), card.covariates()
    spec = population_spec(card, premed_fraction=1.0)
    pop = sample_population(model, n, seed, spec, weight_kg=ref.weight_kg, height_cm=ref.height_cm)
    return card, model, ref, pop, card.regimen(until_day=DAYS)


def scipy_patient(nt: NumpyTCE, p: dict, ev_row: dict, ts, dose_t, k: int, rtol: float = RTOL, atol: float = ATOL):
    """One patient with SciPy: daily IL-6 and concentration, per-dose IL-6 peaks (same definition as qsp.crs)."""
    ev = EventArrays(**{f: np.asarray(v) for f, v in ev_row.items()})
    sol = solve_patient(nt, p, ev, ts, rtol=rtol, atol=atol, method="LSODA")
    # The engine's per-segment sample grid: K points over each integration segment [a, b], each segment's own
    # interpolant (post-jump state at a, left limit at b); a segment belongs to the dose window of its start.
    frac = np.linspace(0.0, 1.0, k)
    ends = np.r_[sol.seg_start[1:], float(ts[-1])]
    peaks = np.full(len(dose_t), -np.inf)
    for j, (a, b) in enumerate(zip(sol.seg_start, ends)):
        seg = sol.segments[j]
        grid = a + (b - a) * frac
        ys = np.repeat(seg[None, :], k, 0) if isinstance(seg, np.ndarray) else seg(grid).T
        ys[0] = sol.seg_y0[j]
        w = np.searchsorted(dose_t, a, side="right") - 1
        if w >= 0:
            peaks[w] = max(peaks[w], float(nt.il6(0.0, ys.T, p).max()))
    return {"il6": nt.il6(0.0, sol.ys.T, p), "conc_nM": nt.central_conc(sol.ys.T, p), "il6_peak": peaks,
            "status": sol.status}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def time_engine(model, reg, pop, ref, repeats: int, loop: str = "segments", peer=None):
    """Median engine time over ``repeats`` runs after a first (compiling) call. With ``peer`` (a callable
    running the compiled peer, already compiled), the peer is timed in the same loop, interleaved
    (engine, peer, engine, peer, ...), and its run times are returned too."""
    kw = dict(days=DAYS, follow_up_days=0.0, rtol=RTOL, atol=ATOL, out_names=("il6_pg_per_ml", "conc_nM"), loop=loop)
    t = time.perf_counter()
    first = run_trial(model, reg, pop, ref, **kw)
    t_first = time.perf_counter() - t
    runs, peer_runs, res, peer_out = [], [], first, None
    for _ in range(repeats):
        t = time.perf_counter()
        res = run_trial(model, reg, pop, ref, **kw)
        runs.append(time.perf_counter() - t)
        if peer is not None:
            t = time.perf_counter()
            peer_out = peer()
            peer_runs.append(time.perf_counter() - t)
    steady_chunk = statistics.median([res.timings["first_chunk_s"]])
    compile_s = max(first.timings["first_chunk_s"] - steady_chunk, 0.0)
    return res, statistics.median(runs), runs, compile_s, t_first, peer_runs, peer_out


def make_peer(model, reg, pop, ref, m: int):
    """The compiled peer (benchmarks/numba_tce.py) on the first ``m`` patients: a callable (compiled here,
    first-call time returned apart) and its inputs."""
    from numba_tce import NumbaPeer
    from qsp.trial import dose_schedule

    sub = pop.subset(np.arange(m))
    ev = population_events(model, reg, sub, ref)
    typ = model.params({})
    params = {k: (np.asarray(sub.params[k], float) if k in sub.params else float(v)) for k, v in typ.items()}
    ts = np.linspace(0.0, DAYS, int(DAYS) + 1)
    dose_t = dose_schedule(reg, DAYS).time.to_numpy(float)
    t = time.perf_counter()
    peer = NumbaPeer(model)

    def run():
        return peer.run(params, ev, ts, dose_t, SEG_POINTS, rtol=RTOL, atol=ATOL)

    run()
    return run, time.perf_counter() - t


def compare_loops(model, reg, pop, ref, repeats: int) -> dict:
    """The two integration loops (qsp.simulate.LOOPS) on the same patients, timed interleaved (segments,
    whole, segments, ...; medians), with their agreement and accepted steps."""
    kw = dict(days=DAYS, follow_up_days=0.0, rtol=RTOL, atol=ATOL, out_names=("il6_pg_per_ml", "conc_nM"))
    res, times, first = {}, {"segments": [], "whole": []}, {}
    for loop in times:  # compile both first
        t = time.perf_counter()
        res[loop] = run_trial(model, reg, pop, ref, loop=loop, **kw)
        first[loop] = time.perf_counter() - t
    for _ in range(repeats):
        for loop in times:
            t = time.perf_counter()
            res[loop] = run_trial(model, reg, pop, ref, loop=loop, **kw)
            times[loop].append(time.perf_counter() - t)
    ok = res["segments"].ok & res["whole"].ok
    a, b = res["whole"], res["segments"]
    out = {f"{k}_ms_per_patient": 1e3 * statistics.median(v) / pop.n for k, v in times.items()}
    out.update({f"{k}_runs_s": v for k, v in times.items()})
    out.update({f"{k}_first_call_s": v for k, v in first.items()})
    out["whole_speedup"] = out["segments_ms_per_patient"] / out["whole_ms_per_patient"]
    out["mean_accepted_steps"] = {k: float(r.n_steps[r.ok].mean()) for k, r in res.items()}
    out["failed_patients"] = {k: int((~r.ok).sum()) for k, r in res.items()}
    out["il6_daily_max_rel"] = rel_err(a.outputs["il6_pg_per_ml"][ok], b.outputs["il6_pg_per_ml"][ok])
    out["il6_peak_max_rel"] = rel_err(a.crs["il6_peak"][ok], b.crs["il6_peak"][ok])
    out["p_any_max_abs"] = float(np.nanmax(np.abs(a.crs["p_any"][ok] - b.crs["p_any"][ok])))
    return out


def time_gradient(model, reg, pop, ref, n: int, repeats: int, loop: str = "segments"):
    """Reverse-mode gradient of mean P(CRS >= 2 after dose 1) w.r.t. all parameters vs one forward solve."""
    sub = pop.subset(np.arange(n))
    typ = model.params({})
    offset = {k: np.asarray(v) - typ[k] for k, v in sub.params.items()}  # per-patient deviations from typical
    ev = population_events(model, reg, sub, ref)
    ev = EventArrays(*[jnp.asarray(getattr(ev, f)) for f in EventArrays._fields])
    from qsp.trial import dose_schedule

    dose_t = jnp.asarray(dose_schedule(reg, DAYS).time.to_numpy(float))
    ts = jnp.linspace(0.0, DAYS, int(DAYS) + 1)
    eta = jnp.asarray(sub.covariates.eta_crs.to_numpy(float))
    tcr = jnp.asarray(sub.covariates.prior_tcr.to_numpy(float))
    cfg = SolverConfig(rtol=RTOL, atol=ATOL, checkpoints=GRAD_CHECKPOINTS[loop], loop=loop)
    batch = patient_batch_fn(model, cfg, SEG_POINTS, ("il6_pg_per_ml",))

    def f(theta_model, theta_crs):
        p = {k: theta_model[k] + (jnp.asarray(offset[k]) if k in offset else jnp.zeros(n)) for k in theta_model}
        _, _, _, crs = batch(p, ev, ts, dose_t, jnp.ones(dose_t.shape[0], bool), theta_crs, eta, tcr)
        return jnp.mean(crs["p_g2plus"][:, 0])

    theta_m = {k: jnp.asarray(float(v)) for k, v in typ.items()}
    theta_c = {k: jnp.asarray(float(v)) for k, v in crs_params().items()}
    fwd = jax.jit(f)
    grd = jax.jit(jax.grad(f, argnums=(0, 1)))
    out = {}
    for name, fn in (("forward", fwd), ("gradient", grd)):
        t = time.perf_counter()
        val = jax.block_until_ready(fn(theta_m, theta_c))
        out[f"{name}_first_s"] = time.perf_counter() - t
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            val = jax.block_until_ready(fn(theta_m, theta_c))
            runs.append(time.perf_counter() - t)
        out[f"{name}_s"] = statistics.median(runs)
        if name == "gradient":
            leaves = jax.tree_util.tree_leaves(val)
            out["gradient_finite"] = bool(all(np.isfinite(np.asarray(v)).all() for v in leaves))
            out["n_gradient_entries"] = len(leaves)
            g_m, g_c = val
            top = sorted(((abs(float(v) * float(theta_m[k])), k) for k, v in g_m.items()), reverse=True)[:5]
            out["top_elasticities"] = {k: float(g_m[k]) * float(theta_m[k]) for _, k in top}
        else:
            out["mean_p_g2plus_dose1"] = float(val)
    out["ratio"] = out["gradient_s"] / out["forward_s"]
    out["patients"] = n
    return out


def time_objective(drug: str, patients: int, repeats: int) -> dict:
    """The calibration objective of one drug (the shipped fit's parameter layout: its class and drug parameters
    and deviations, from data/calibrated/tce_map.json; ``patients`` Latin-hypercube virtual patients per study):
    median seconds of ``-log posterior`` and of its ``value_and_grad`` (reverse mode through every study's
    batched solve), compile time apart."""
    from qsp.calibrate.likelihood import build_problem, neg_log_posterior_flat
    from qsp.calibrate.space import ParameterSpace
    from qsp.io.resources import data_root

    settings = json.loads((data_root() / "calibrated" / "tce_map.json").read_text())["fit"]["settings"]
    space = ParameterSpace({drug: load_card(drug).model()}, class_params=tuple(settings["class_params"]),
                           drug_params=tuple(settings["drug_params"]),
                           deviations={k: float(v) for k, v in settings["deviations"].items()})
    prob = build_problem(space, patients=patients, seed=1, stratified=True)
    f, x0, _ = neg_log_posterior_flat(prob)
    x0 = jnp.asarray(x0)
    out = {"drug": drug, "patients_per_study": patients, "studies": [s.study_id for s in prob.studies],
           "parameters": int(x0.size)}
    for name, fn in (("value", jax.jit(f)), ("value_and_grad", jax.jit(jax.value_and_grad(f)))):
        t = time.perf_counter()
        jax.block_until_ready(fn(x0))
        out[f"{name}_first_s"] = time.perf_counter() - t
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            r = jax.block_until_ready(fn(x0))
            runs.append(time.perf_counter() - t)
        out[f"{name}_s"] = statistics.median(runs)
        if name == "value_and_grad":
            out["gradient_finite"] = bool(np.all(np.isfinite(np.asarray(r[1]))))
    out["ratio"] = out["value_and_grad_s"] / out["value_s"]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="Engine vs SciPy LSODA on the teclistamab label scenario.")
    ap.add_argument("--patients", type=int, default=1000, help="engine population size")
    ap.add_argument("--scipy-patients", type=int, default=100, help="patients solved with SciPy (0: skip)")
    ap.add_argument("--grad-patients", type=int, default=256, help="patients in the gradient timing (0: skip)")
    ap.add_argument("--repeats", type=int, default=3, help="timed engine runs (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--loop", choices=("segments", "whole"), default="segments",
                    help="the engine's integration loop (qsp.simulate.LOOPS) for the timings above")
    ap.add_argument("--peer-patients", type=int, default=0,
                    help="patients solved by the compiled peer (numba + numbalsoda LSODA, prange over the cores; "
                         "benchmarks/numba_tce.py, the bench extra), timed interleaved with the engine (0: skip)")
    ap.add_argument("--objective-drug", default="",
                    help="also time the calibration objective of this drug and its gradient (objective key)")
    ap.add_argument("--objective-patients", type=int, default=48, help="virtual patients per study for that timing")
    ap.add_argument("--compare-loops", action="store_true",
                    help="also time both integration loops interleaved on the same patients (loop_comparison)")
    a = ap.parse_args(argv)
    if a.patients < 1 or a.scipy_patients < 0 or a.grad_patients < 0 or a.peer_patients < 0 or a.repeats < 1:
        ap.error("--patients and --repeats must be >= 1; --scipy-patients, --peer-patients and --grad-patients >= 0")

    card, model, ref, pop, reg = scenario(a.patients, a.seed)
    peer, peer_first = None, None
    if a.peer_patients:
        peer, peer_first = make_peer(model, reg, pop, ref, min(a.peer_patients, a.patients))
    res, eng_s, eng_runs, compile_s, first_s, peer_runs, peer_out = time_engine(model, reg, pop, ref, a.repeats,
                                                                                a.loop, peer)
    ok = res.ok
    out = {
        "scenario": f"{DRUG} label step-up regimen + label premedication, {DAYS:g} days, daily outputs, per-dose "
                    f"IL-6 peak (per-segment grid of {SEG_POINTS}), rtol {RTOL:g}, atol {ATOL:g}",
        "machine": machine(), "jax_devices": len(jax.devices()), "patients": a.patients, "seed": a.seed,
        "loop": a.loop,
        "engine_s": eng_s, "engine_runs_s": eng_runs, "engine_ms_per_patient": 1e3 * eng_s / a.patients,
        "compile_s": compile_s, "engine_first_call_s": first_s, "engine_failed_patients": int((~ok).sum()),
        "engine_mean_steps": float(res.n_steps.mean()), "engine_max_steps": int(res.n_steps.max()),
    }
    if peer is not None:
        m = min(a.peer_patients, a.patients)
        il6, conc, peak, st = peer_out
        good = ok[:m] & (st == 0)
        peer_ms = 1e3 * statistics.median(peer_runs) / m
        out.update({
            "peer_patients": m, "compiled_peer_first_call_s": peer_first, "compiled_peer_runs_s": peer_runs,
            "compiled_peer_ms_per_patient": peer_ms,
            "speedup_vs_compiled_peer": peer_ms / out["engine_ms_per_patient"],
            "compiled_peer_agreement": {
                "il6_daily_max_rel": rel_err(res.outputs["il6_pg_per_ml"][:m][good], il6[good]),
                "conc_daily_max_rel": rel_err(res.outputs["conc_nM"][:m][good][:, 1:], conc[good][:, 1:]),
                "il6_peak_max_rel": rel_err(res.crs["il6_peak"][:m][good], peak[good]),
                "peer_failed_patients": int((st != 0).sum())},
        })
    if a.scipy_patients:
        m = min(a.scipy_patients, a.patients)
        nt = NumpyTCE(model)
        ev = population_events(model, reg, pop.subset(np.arange(m)), ref)
        typ = model.params({})
        dose_t = res.doses.time.to_numpy(float)
        sp_runs, sp = [], []
        t = time.perf_counter()
        for i in range(m):
            p = {k: float(pop.params[k][i]) if k in pop.params else float(v) for k, v in typ.items()}
            row = {f: getattr(ev, f)[i] for f in EventArrays._fields}
            sp.append(scipy_patient(nt, p, row, res.times, dose_t, SEG_POINTS))
        sp_s = time.perf_counter() - t
        agree = {
            "il6_daily_max_rel": max(rel_err(res.outputs["il6_pg_per_ml"][i], sp[i]["il6"]) for i in range(m)),
            "conc_daily_max_rel": max(rel_err(res.outputs["conc_nM"][i][1:], sp[i]["conc_nM"][1:]) for i in range(m)),
            "il6_peak_max_rel": max(rel_err(res.crs["il6_peak"][i], sp[i]["il6_peak"]) for i in range(m)),
            "scipy_failed_patients": int(sum(s["status"] != 0 for s in sp)),
        }
        agree["agree"] = bool(agree["il6_daily_max_rel"] < 1e-3 and agree["conc_daily_max_rel"] < 1e-3
                              and agree["il6_peak_max_rel"] < 1e-3)
        out.update({"scipy_patients": m, "scipy_s": sp_s, "scipy_ms_per_patient": 1e3 * sp_s / m,
                    "speedup_vs_scipy": (1e3 * sp_s / m) / out["engine_ms_per_patient"], "agreement": agree})
    if a.compare_loops:
        out["loop_comparison"] = compare_loops(model, reg, pop, ref, a.repeats)
    if a.grad_patients:
        g = time_gradient(model, reg, pop, ref, min(a.grad_patients, a.patients), a.repeats, a.loop)
        out["gradient"] = g
        out["grad_to_forward_ratio"] = g["ratio"]
    if a.objective_drug:
        out["objective"] = time_objective(a.objective_drug, a.objective_patients, a.repeats)
    out["peak_memory_mb"] = peak_rss_mb()
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
