"""Run a calibration job: spec -> problem -> MAP -> NUTS -> predictive draws -> files, resumable at every phase.

Phases (each announced by a status line; MAP starts and NUTS chains get progress bars on stderr):

1. **setup**: lock ``--out`` (a second process on the same folder is refused), key the checkpoints by the spec
   and data hashes (:mod:`qsp.jobs.store`), build the calibration problem (:func:`qsp.calibrate.likelihood.
   build_problem`: the spec's drugs, studies, virtual patients and seed, leave-outs removed) and compile one
   program per study (:class:`qsp.calibrate.objective.SplitObjective`).
2. **map** (``map``, ``map+nuts``): multi-start L-BFGS and the Laplace Hessian (:mod:`qsp.jobs.map_phase`).
3. **nuts** (``nuts``, ``map+nuts``): the chains (:mod:`qsp.jobs.nuts_phase`), one after another in this
   process, or one per Dask worker with ``scheduler``/``workers``: each worker rebuilds the problem from the spec
   file, compiles it, runs its chain and checkpoints it into the same folder (a shared file system).
4. **predict**: every retained draw (NUTS draws after thinning; for a MAP job, ``map.laplace_draws`` draws of
   the Laplace approximation) re-evaluated for its predictions and pointwise log likelihood, checkpointed
   every 10 draws.
5. **outputs**: ``fit.nc``, ``summary.csv``, ``targets.csv``, ``params.toml``, the PNGs, each written atomically,
   and last ``job.json`` with ``"status": "finished"`` (spec and data hashes, package version, seeds, start
   and end, per-phase seconds).

Resuming (``resume=True``) with the same spec and data picks every phase up where its checkpoint left it; the
results equal those of an uninterrupted run (same draws, same numbers).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .spec import JobSpec, fit_targets, job_space, load_spec, spec_hash
from .store import JOB_FILE, JobDir, data_hash

PREDICT_CHECKPOINT_EVERY = 10
MAPS_PER_STUDY = 3000  # measured: 60,891 memory maps in a joint-fit process after its 20 study programs


def check_memory_maps(n_studies: int) -> None:
    """XLA:CPU maps each compiled program's code in many small regions; a joint fit's programs (gradient and
    prediction per study) need more than Linux's default ``vm.max_map_count`` of 65,530, and past it the process
    dies in the middle of the fit ("LLVM ERROR: Unable to allocate section memory"). Refused up front (an
    InputError naming the setting), before anything is written."""
    from ..errors import InputError

    f = Path("/proc/sys/vm/max_map_count")
    if not f.exists():
        return
    limit, need = int(f.read_text()), 20000 + MAPS_PER_STUDY * n_studies
    if need > limit:
        raise InputError(f"this job compiles programs for {n_studies} studies and needs about {need:,} memory maps; "
                         f"vm.max_map_count is {limit:,}. Raise it first: sudo sysctl -w vm.max_map_count=262144",
                         field="vm.max_map_count")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def build(spec: JobSpec):
    """The calibration problem of a spec (its drugs, studies, virtual patients, seed; leave-outs removed)."""
    from ..calibrate.likelihood import build_problem

    space = job_space(spec)
    return build_problem(space, fit_targets(spec), patients=spec.patients, seed=spec.seed,
                         studies=list(spec.studies) or None, stratified=spec.stratified)


def objective(problem, names, x_fixed, threads: int):
    """The objective for moving ``names`` (entries of the flat vector) with the rest at ``x_fixed``: the
    CRS layer on solves fixed at ``x_fixed`` when every moved entry is a CRS-layer parameter
    (:class:`~qsp.calibrate.objective.FixedMechanismObjective`, exact for them), else every study solved at
    every evaluation (:class:`~qsp.calibrate.objective.SplitObjective`, compiled here)."""
    from ..calibrate.likelihood import mechanism_fixed
    from ..calibrate.objective import FixedMechanismObjective, SplitObjective

    if mechanism_fixed(names):
        return FixedMechanismObjective(problem, x_fixed)
    obj = SplitObjective(problem, eval_threads=threads)
    obj.compile()
    return obj


def _fault_injection(chain: int) -> None:
    """``QSP_JOBS_FAIL_CHAIN=<c>`` makes chain ``c`` raise before it starts: a hook for the tests of failure
    handling (a failing chain is reported and the others finish), in this process and on Dask workers."""
    if os.environ.get("QSP_JOBS_FAIL_CHAIN", "") == str(chain):
        raise RuntimeError(f"chain {chain} failed on purpose (QSP_JOBS_FAIL_CHAIN={chain})")


def _remote_chain(spec_path: str, out: str, chain: int, x_fixed, free_idx, z0, threads: int) -> dict:
    """One NUTS chain on a Dask worker: rebuild and compile the problem, run and checkpoint the chain."""
    from .nuts_phase import run_chain

    _fault_injection(chain)
    spec = load_spec(spec_path)
    problem = build(spec)
    names = problem.space.names()
    obj = objective(problem, [names[i] for i in free_idx], x_fixed, threads)
    nu = spec.nuts
    return run_chain(obj.jax_function(), x_fixed, free_idx, z0, chain=chain, seed=nu["seed"], warmup=nu["warmup"],
                     draws=nu["draws"], target_accept=nu["target_accept"], max_tree_depth=nu["max_tree_depth"],
                     store=JobDir(out), every=nu["checkpoint_every"])


def _remote_start(spec_path: str, out: str, i: int, x0, scale, threads: int) -> dict:
    """One MAP start on a Dask worker."""
    from .map_phase import minimise_start

    spec = load_spec(spec_path)
    problem = build(spec)
    obj = objective(problem, problem.space.names(), np.asarray(problem.space.flatten(problem.space.init())[0]),
                    threads)
    mp = spec.map
    return minimise_start(obj.jax_function(), x0, scale, max_steps=mp["max_steps"], store=JobDir(out),
                          name=f"map_start_{i}", every=mp["checkpoint_every"])


class _Bars:
    """tqdm bars on stderr: one per MAP start (steps) and per chain (iterations)."""

    def __init__(self, on: bool):
        self.on = on
        self.bars = {}

    def update(self, key, total, n, desc, postfix=None):
        if not self.on:
            return
        from tqdm import tqdm

        bar = self.bars.get(key)
        if bar is None:
            bar = self.bars[key] = tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True, leave=True)
        bar.n = n
        if postfix:
            bar.set_postfix_str(postfix, refresh=False)
        bar.refresh()
        if n >= total:
            bar.close()

    def close(self):
        for b in self.bars.values():
            b.close()


def run_job(spec: JobSpec, out: str | Path, *, resume: bool = False, scheduler: str | None = None,
            workers: int = 0, threads: int | None = None, say: Callable[[str], None] = print,
            bars: bool = True) -> dict:
    """Run ``spec`` into ``out`` (see the module docstring); returns the ``job.json`` metadata."""
    from .. import __version__
    from ..calibrate.likelihood import mechanism_fixed

    threads = threads or min(2, os.cpu_count() or 1)
    store = JobDir(out)
    t_build = time.perf_counter()
    problem = build(spec)  # populations, events, target rows: a bad combination is refused before any file is written
    t_build = time.perf_counter() - t_build
    from ..calibrate.likelihood import mechanism_fixed as _fixed

    if not _fixed(problem.space.names()):
        check_memory_maps(sum(1 for s in problem.studies if s.solve))
    store.lock()
    progress = _Bars(bars)
    closers = []  # the Dask client and the local cluster it started: closed whatever happens
    try:
        t_start, started = time.perf_counter(), _now()
        from .spec import init_path

        sh = spec_hash(spec)
        dh = data_hash(spec.drugs, [init_path(spec)] if spec.map["init"] else [])
        reused = store.prepare(sh, dh, resume)
        meta = {"status": "running", "job": spec.name, "spec_file": spec.path, "spec_hash": sh, "data_hash": dh,
                "qsp_version": __version__, "method": spec.method, "started": started, "resumed": reused,
                "seeds": {"population": spec.seed, "nuts": spec.nuts["seed"]}, "phases_s": {}}
        store.write(JOB_FILE, json.dumps(meta, indent=1) + "\n")
        phases = meta["phases_s"]

        t = time.perf_counter()
        say(f"[setup] {spec.name}: {', '.join(spec.drugs)}; {spec.patients} virtual patients per study, seed "
            f"{spec.seed}; method {spec.method}" + (" (resuming from checkpoints)" if reused else ""))
        space = problem.space
        names = space.names()
        x0, unravel = space.flatten(space.init())
        x0 = np.asarray(x0, float)
        if mechanism_fixed(names):
            say(f"[setup] every fitted parameter is a CRS-layer parameter: each of {len(problem.studies)} studies "
                "is solved once and only the CRS layer is evaluated")
        else:
            say(f"[setup] compiling {len(problem.studies)} study programs")
        obj = objective(problem, names, x0, threads)
        phases["setup"] = time.perf_counter() - t + t_build
        f = obj.jax_function()
        prior_sd = np.asarray(space.flatten(space._sds())[0], float)
        client, cluster = _client(scheduler, workers, say) if (scheduler or workers) else (None, None)
        closers.extend(c for c in (client, cluster) if c is not None)

        x_fixed, cov, map_res = x0, None, None
        if spec.runs_map:
            map_res, cov = _map(spec, store, f, space, x0, prior_sd, client, out, threads, progress, say, phases)
            x_fixed = map_res["x"]
        pred_obj = obj
        if spec.runs_nuts:
            free = spec.nuts["free"] or names
            if not mechanism_fixed(names) and mechanism_fixed(free):
                say(f"[nuts] the {len(free)} sampled parameters are CRS-layer parameters: the studies are solved "
                    "once at the MAP and the chains evaluate the CRS layer on those solves (exact for them)")
                pred_obj = objective(problem, free, x_fixed, threads)
            draws, stats, free_idx = _nuts(spec, store, pred_obj.jax_function(), names, x_fixed, cov, client, out,
                                           progress, say, phases, prior_sd)
        else:
            draws, stats, free_idx = _laplace_draws(spec, map_res, cov, names)
        rows, pp, ll = _predict(spec, store, pred_obj, problem, unravel, draws, progress, say, phases)
        _outputs(spec, store, space, problem, names, free_idx, draws, stats, rows, pp, ll, map_res, meta, say,
                 phases)
        if spec.leave_out:
            _heldout(spec, store, space, unravel, draws, rows, say, phases)
        failed = phases.pop("failed_chains", [])
        if failed:
            meta["failed_chains"] = failed
            say(f"warning: {len(failed)} chain(s) failed ({', '.join(str(f_['chain'] + 1) for f_ in failed)}); the "
                "results use the others (job.json: failed_chains)")
        meta.update(status="finished", finished=_now(), total_s=time.perf_counter() - t_start,
                    files=sorted(p.name for p in store.out.iterdir() if not p.name.startswith(".")))
        store.write(JOB_FILE, json.dumps(meta, indent=1) + "\n")
        say(f"[done] {spec.name} in {meta['total_s']:.0f} s; results in {store.out}")
        return meta
    finally:
        for c in closers:
            try:
                c.close()
            except Exception:  # noqa: BLE001 -- closing is best effort
                pass
        progress.close()
        store.unlock()


def _client(scheduler, workers, say):
    from dask.distributed import Client, LocalCluster

    if scheduler:
        say(f"[dask] connecting to the scheduler at {scheduler}")
        return Client(scheduler), None
    say(f"[dask] starting a local cluster of {workers} worker processes")
    cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True)
    return Client(cluster), cluster


def _map(spec, store, f, space, x0, prior_sd, client, out, threads, progress, say, phases):
    import jax

    from .map_phase import run_map_phase

    t = time.perf_counter()
    mp = spec.map
    keys = jax.random.split(jax.random.PRNGKey(spec.seed), max(mp["starts"] - 1, 1))
    first = x0
    if mp["init"]:
        from .spec import init_vector

        first = init_vector(spec, space)
        say(f"[map] the first start is the centre of {mp['init']}")
    starts = [first] + [np.asarray(space.flatten(space.sample_prior(k, mp["start_scale"]))[0], float)
                        for k in keys[: mp["starts"] - 1]]
    say(f"[map] {len(starts)} L-BFGS start(s), up to {mp['max_steps']} steps each, checkpoint every "
        f"{mp['checkpoint_every']} steps")
    runner = None
    if client is not None and len(starts) > 1:
        futs = [client.submit(_remote_start, spec.path, str(out), i, s, prior_sd, 1, pure=False)
                for i, s in enumerate(starts)]
        results = {}

        def runner(i):
            if i not in results:
                results[i] = futs[i].result()
            return results[i]

    def on(kind, i, n, v):
        if kind == "map_step":
            progress.update(("map", i), mp["max_steps"], n, f"MAP start {i + 1}", f"-log posterior {v:.4g}")
        elif kind == "map_start":
            say(f"[map] start {i + 1}/{n}: -log posterior {v:.4f}")
        elif kind == "laplace":
            progress.update("laplace", n, i, "Laplace Hessian columns")

    res = run_map_phase(f, starts, prior_sd, max_steps=mp["max_steps"], store=store, every=mp["checkpoint_every"],
                        hessian=mp["hessian"], min_eig=1.0 / float(np.max(prior_sd)) ** 2, progress=on,
                        starts_runner=runner)
    phases["map"] = time.perf_counter() - t
    say(f"[map] best -log posterior {res['value']:.4f}; smallest Hessian eigenvalue {res['hessian_min_eig']:.3g}")
    return res, res["cov"]


def _nuts(spec, store, f, names, x_fixed, cov, client, out, progress, say, phases, prior_sd):
    from .nuts_phase import chain_start, run_chain

    t = time.perf_counter()
    nu = spec.nuts
    free = nu["free"] or names
    free_idx = np.array([names.index(k) for k in free], dtype=int)
    say(f"[nuts] {nu['chains']} chain(s) x ({nu['warmup']} warm-up + {nu['draws']} draws) over {len(free_idx)} of "
        f"{len(names)} parameters" + ("" if len(free_idx) == len(names) else " (the others at the MAP)")
        + f", max tree depth {nu['max_tree_depth']}, checkpoint every {nu['checkpoint_every']} iterations")
    if cov is None:  # no MAP phase: disperse the starts by the prior SDs instead of the Laplace covariance
        cov = np.diag(np.asarray(prior_sd, float) ** 2)
    z0s = [chain_start(x_fixed, free_idx, cov, c, nu["seed"]) for c in range(nu["chains"])]
    total = nu["warmup"] + nu["draws"]
    chains, failed = {}, []

    def report(c, ch, where=""):
        say(f"[nuts] chain {c + 1}/{nu['chains']}{where}: {total} iterations in {ch['seconds']:.0f} s, "
            f"{int(np.sum(ch['diverging']))} divergent, mean acceptance {np.mean(ch['accept_prob']):.2f}")

    def failure(c, e):  # one failing chain is reported; the others run to their end
        failed.append({"chain": c, "error": f"{type(e).__name__}: {e}"})
        say(f"[nuts] chain {c + 1}/{nu['chains']} FAILED ({type(e).__name__}: {e}); the other chains go on")

    if client is not None:
        futs = [client.submit(_remote_chain, spec.path, str(out), c, x_fixed, free_idx, z0s[c], 1, pure=False)
                for c in range(nu["chains"])]
        for c, fu in enumerate(futs):
            try:
                chains[c] = fu.result()
                report(c, chains[c], " (on a Dask worker)")
            except Exception as e:  # noqa: BLE001 -- a task's failure is reported, not fatal
                failure(c, e)
    else:
        for c in range(nu["chains"]):
            try:
                _fault_injection(c)
                chains[c] = run_chain(f, x_fixed, free_idx, z0s[c], chain=c, seed=nu["seed"], warmup=nu["warmup"],
                                      draws=nu["draws"], target_accept=nu["target_accept"],
                                      max_tree_depth=nu["max_tree_depth"], store=store, every=nu["checkpoint_every"],
                                      on_iter=lambda i, n, c=c: progress.update(("chain", c), n, i,
                                                                                f"chain {c + 1}/{nu['chains']}"))
                report(c, chains[c])
            except Exception as e:  # noqa: BLE001
                failure(c, e)
    phases["failed_chains"] = failed
    if not chains:
        raise RuntimeError(f"every NUTS chain failed: {failed}")
    chains = [chains[c] for c in sorted(chains)]
    thin = nu["thin"]
    z = np.stack([c["z"][::thin] for c in chains])  # (chains, draws, free)
    xs = np.broadcast_to(np.asarray(x_fixed, float), z.shape[:2] + (len(names),)).copy()
    xs[:, :, free_idx] = z
    stats = {"lp": -np.stack([c["potential_energy"][::thin] for c in chains]),
             "diverging": np.stack([c["diverging"][::thin] for c in chains]).astype(bool),
             "acceptance_rate": np.stack([c["accept_prob"][::thin] for c in chains]),
             "n_steps": np.stack([c["num_steps"][::thin] for c in chains]),
             "step_size": np.stack([c["step_size"][::thin] for c in chains])}
    stats["tree_depth"] = np.floor(np.log2(np.maximum(stats["n_steps"], 1))).astype(int)
    phases["nuts"] = time.perf_counter() - t
    return xs, stats, free_idx


def _laplace_draws(spec, map_res, cov, names):
    """A MAP job's draws: ``map.laplace_draws`` of N(MAP, Laplace covariance) (seeded by the population seed),
    one chain; every entry free."""
    n = spec.map["laplace_draws"]
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    root = v * np.sqrt(np.clip(w, 0.0, None))
    rng = np.random.default_rng(spec.seed)
    xs = map_res["x"][None, :] + rng.standard_normal((n, len(names))) @ root.T
    return xs[None, :, :], None, np.arange(len(names))


def _predict(spec, store, obj, problem, unravel, xs, progress, say, phases):
    from .results import draw_predictions

    t = time.perf_counter()
    c, d, n = xs.shape
    flat = xs.reshape(c * d, n)
    say(f"[predict] {c * d} draws re-simulated for the predictive checks and pointwise log likelihood")
    saved = store.load("predict")
    if saved is not None and not np.array_equal(saved.get("draws", np.empty(0)), flat):
        saved = None  # made from other draws (e.g. a chain that failed before and ran on resume): start over
    pp, ll, done = ([], [], 0) if saved is None else (list(saved["pp"]), list(saved["ll"]), int(saved["done"]))
    rows = None
    for i in range(done, c * d):
        rows, l_ = draw_predictions(problem, unravel, flat[i], obj.predictions(flat[i]))
        pp.append(rows.predicted.to_numpy(float))
        ll.append(l_)
        done = i + 1
        if done % PREDICT_CHECKPOINT_EVERY == 0:
            store.save("predict", {"pp": np.asarray(pp), "ll": np.asarray(ll), "done": done, "draws": flat})
        progress.update("predict", c * d, done, "predictive draws")
    if rows is None:  # every draw was done before a resume: one evaluation gives the rows' layout
        rows, _ = draw_predictions(problem, unravel, flat[0], obj.predictions(flat[0]))
    store.save("predict", {"pp": np.asarray(pp), "ll": np.asarray(ll), "done": done, "draws": flat})
    phases["predict"] = time.perf_counter() - t
    return rows, np.asarray(pp).reshape(c, d, -1), np.asarray(ll).reshape(c, d, -1)


def _outputs(spec, store, space, problem, names, free_idx, xs, stats, rows, pp, ll, map_res, meta, say, phases):
    import arviz as az

    from ..calibrate.export import export_draws, export_normal
    from .results import diagnostic_figures, free_variable_names, inference_data, targets_table
    from .toml_out import dumps

    t = time.perf_counter()
    say("[outputs] fit.nc, summary.csv, targets.csv, params.toml, figures")
    inference = "nuts" if spec.runs_nuts else "laplace"
    idata = inference_data(space=space, names=names, free_idx=free_idx, xs=xs, stats=stats, rows=rows, pp=pp,
                           ll=ll, problem=problem, inference=inference,
                           attrs={"job": spec.name, "spec_hash": meta["spec_hash"], "data_hash": meta["data_hash"],
                                  "qsp_version": meta["qsp_version"]})
    tmp = store.out / ".fit.nc.tmp"
    idata.to_netcdf(str(tmp))
    with open(tmp, "rb+") as fh:  # on disk before the rename, like every other file (store.atomic_write_bytes)
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, store.out / "fit.nc")
    summ = az.summary(idata, hdi_prob=0.9, kind="all" if inference == "nuts" else "stats")
    store.write("summary.csv", summ.to_csv(float_format="%.6g"))
    tab = targets_table(rows, pp)
    store.write("targets.csv", tab.to_csv(index=False, float_format="%.6g"))
    fit_meta = {"objective": {"kind": "NUTS posterior draws" if inference == "nuts" else
                              "MAP with Laplace covariance",
                              "neg_log_posterior_map": None if map_res is None else float(map_res["value"])},
                "settings": {"job": spec.name, "drugs": list(spec.drugs), "class_params": list(space.class_params),
                             "drug_params": list(space.drug_params),
                             "deviations": {k: float(v) for k, v in space.deviations.items()},
                             "patients": int(problem.patients), "seed": int(problem.seed),
                             "stratified": bool(problem.stratified), "studies": [s.study_id for s in problem.studies],
                             "free": [names[i] for i in free_idx]},
                "created": _now(), "qsp_version": meta["qsp_version"], "command": f"qsp calibrate {spec.path}"}
    if inference == "nuts":
        doc = export_draws(space, xs.reshape(-1, xs.shape[-1]), fit_meta=fit_meta)
    else:
        doc = export_normal(space, map_res["x"], map_res["cov"], fit_meta=fit_meta)
    store.write("params.toml", "# qsp calibrated parameters (format " + doc["format"] + "); load with\n"
                "# QSP_CALIBRATED=<this file> qsp simulate ... (or qsp.paramsets.read_calibrated)\n"
                + dumps(json.loads(json.dumps(doc))) + "\n")
    class_vars = free_variable_names(space, names, [i for i in free_idx if names[i].startswith("class:")])
    for name, png in diagnostic_figures(idata, tab, class_vars, list(spec.drugs)).items():
        store.write(name, png)
    phases["outputs"] = time.perf_counter() - t


def _heldout(spec, store, space, unravel, xs, rows, say, phases):
    """``heldout.csv``: the left-out targets predicted by the fit made without them (median and 5-95% over the
    job's draws, within tolerance of the median) -- the leave-one-out check."""
    import jax.numpy as jnp

    from ..calibrate.likelihood import build_problem, predict
    from ..calibrate.targets import load_targets
    from .results import targets_table

    t = time.perf_counter()
    targets = load_targets()
    usable = set(targets.on_label_regimen().studies.study_id)
    drugs = {lo.partition(":")[0].lower() for lo in spec.leave_out}
    ids = sorted(s for s in set(targets.studies.study_id[targets.studies.drug.isin(drugs)]) if s in usable)
    held = build_problem(space, targets, patients=spec.patients, seed=spec.seed, stratified=spec.stratified,
                         studies=ids)
    flat = xs.reshape(-1, xs.shape[-1])
    say(f"[heldout] {', '.join(spec.leave_out)}: predicting {', '.join(ids)} at {len(flat)} draws")
    preds = [predict(unravel(jnp.asarray(x)), held) for x in flat]
    seen = set(zip(rows.target, rows.time_day.fillna(-1)))
    full = preds[0]
    keep = np.array([(tg, d) not in seen for tg, d in zip(full.target, full.time_day.fillna(-1))])
    pp = np.stack([p.predicted.to_numpy(float)[keep] for p in preds])
    tab = targets_table(full[keep].reset_index(drop=True), pp)
    store.write("heldout.csv", tab.to_csv(index=False, float_format="%.6g"))
    say(f"[heldout] {int(tab.within.sum())} of {len(tab)} held-out targets within tolerance")
    phases["heldout"] = time.perf_counter() - t


__all__ = ["run_job", "build", "objective"]
