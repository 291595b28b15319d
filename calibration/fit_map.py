"""The joint MAP fit of the TCE class model to the published targets (data/targets/).

Usage (from the repository root)::

    python calibration/fit_map.py [--drugs teclistamab,elranatamab,...] [--patients 48] [--seed 1]
                                  [--starts 1] [--max-steps 100] [--draws 40] [--out calibration/fits/map]
    python calibration/fit_map.py --leave-out elranatamab:crs --out calibration/fits/loo_elranatamab

Class-level parameters (shared by every TCE): IL-6 production (T-cell drive KIL6, secretion delay KSEC, the
monocyte amplification IL6_MONO_MAX / MONO_EC50), T-cell recruitment threshold TPT50 and its spread over the
pool HILL, priming recovery KREC, and the CRS link (driven by the T-cell cytokine drive, scale CRS_X50). Drug-level parameters: cross-linking gain CHI, target density and tumour burden. A drug may deviate from
the class IL-6 production (``KIL6``, deviation SD 0.5 on the log scale); the fit reports how much of the
between-drug differences those deviations carry (deviations.json). Outputs: see qsp/calibrate/fit.py.

``--leave-out DRUG:crs`` drops that drug's CRS incidences, ``DRUG:il6`` its IL-6 series, ``DRUG`` all of
its targets, from the fit; the written targets.csv still predicts them (the held-out check).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# persistent compilation cache (see qsp/__init__.py): a second fit on this machine reuses the compiled study
# programs (measured: a study's setup 33 s -> 19 s; tracing is not cached). Equinox's runtime error checks are
# host callbacks, which make a program uncacheable; EQX_ON_ERROR=nan turns them into NaN results instead, which
# the likelihood already treats as a failed patient (solver status, non-finite outputs).
os.environ.setdefault("QSP_COMPILE_CACHE", str(Path(__file__).resolve().parent / ".jax_cache"))
os.environ.setdefault("EQX_ON_ERROR", "nan")

import numpy as np  # noqa: E402

from qsp.calibrate.export import write_calibrated  # imported up front: a fit runs for an hour or more, and a
from qsp.calibrate.fit import _within, run_map, structure_mismatch, warm_start, write_fit  # module imported at its end could have changed on disk
from qsp.calibrate.likelihood import build_problem, predict
from qsp.calibrate.space import ParameterSpace
from qsp.calibrate.targets import load_targets
from qsp.cards import load_card
from qsp.errors import InputError

CLASS = ("KIL6", "IL6_T_GAIN", "TPT50", "HILL", "KSEC", "KREC", "MONO_EC50", "IL6_MONO_MAX", "CRS_THETA1", "CRS_BETA",
         "CRS_X50", "CRS_TOL", "CRS_DELTA2", "CRS_DELTA3")
DRUG = ("CHI", "TAA_PER_CELL", "TUMOR0")
DEVIATIONS = {"KIL6": 0.5}
DEFAULT_DRUGS = ("teclistamab", "elranatamab", "epcoritamab", "mosunetuzumab", "blinatumomab", "talquetamab",
                 "glofitamab", "tebentafusp")


def _init_structure_note(space, init_meta: dict) -> str | None:
    """The note printed when a warm start's values come from another model structure (allowed: a start, not a
    result, but its values meant something else there), or from a hand-made folder that names no drugs."""
    if not init_meta.get("drugs"):  # names and x only: nothing to compare the structure with
        return "note: the warm start names no drugs and records no model structure; its values are used as they are"
    why = structure_mismatch(space, init_meta)
    return f"note: the warm start's fit has another structure: {why}" if why else None


def _leave_out(targets, spec: str):
    drug, _, what = spec.partition(":")
    ids = set(targets.studies.loc[targets.studies.drug == drug, "study_id"])
    if not ids:
        sys.exit(f"error: --leave-out: no targets for drug {drug!r}")
    crs, tc = targets.crs_incidence, targets.timecourses
    if what in ("", "crs"):
        crs = crs[~crs.study_id.isin(ids)]
    if what in ("", "il6"):
        tc = tc[~(tc.study_id.isin(ids) & (tc.quantity == "il6_pg_per_ml"))]
    if what == "":
        tc = tc[~tc.study_id.isin(ids)]
    if what not in ("", "crs", "il6"):
        sys.exit("error: --leave-out: use DRUG, DRUG:crs or DRUG:il6")
    from dataclasses import replace

    return replace(targets, crs_incidence=crs.reset_index(drop=True), timecourses=tc.reset_index(drop=True))


MAPS_PER_STUDY = 3000  # measured: 60,891 memory maps in a joint-fit process after its 20 study programs


def _check_memory_maps(n_studies: int) -> None:
    """XLA:CPU maps each compiled program's code in many small regions; the joint fit's ~40 programs (gradient
    and prediction per study) need more than Linux's default ``vm.max_map_count`` of 65,530, and past it the
    process dies in the middle of the fit ("LLVM ERROR: Unable to allocate section memory"). Refuse up front."""
    f = Path("/proc/sys/vm/max_map_count")
    if not f.exists():
        return
    limit, need = int(f.read_text()), 20000 + MAPS_PER_STUDY * n_studies
    if need > limit:
        sys.exit(f"error: this fit compiles programs for {n_studies} studies and needs about {need:,} memory maps; "
                 f"vm.max_map_count is {limit:,}. Raise it first: sudo sysctl -w vm.max_map_count=262144")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drugs", default=",".join(DEFAULT_DRUGS), help="comma-separated drugs of the joint fit")
    ap.add_argument("--patients", type=int, default=48, help="virtual patients per study (default 48)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the fixed virtual populations (default 1)")
    ap.add_argument("--starts", type=int, default=1, help="L-BFGS starts (the first at the prior median)")
    ap.add_argument("--max-steps", type=int, default=100, help="L-BFGS steps per start (default 100)")
    ap.add_argument("--draws", type=int, default=40,
                    help="Laplace draws for the predicted medians and 90%% intervals (default 40)")
    ap.add_argument("--leave-out", default="",
                    help="DRUG:KIND to hold out (e.g. elranatamab:crs, teclistamab:il6): fitted without it, "
                         "then predicted")
    ap.add_argument("--population", choices=("stratified", "plain"), default="stratified",
                    help="virtual patients per study: stratified (default; Latin-hypercube draws, "
                         "qsp.population.stratify_draws) or plain draws. Measured with the 24-patient fit's "
                         "parameters (calibration/check_fresh.py): MajesTEC-1 CRS after step-up dose 1 on two "
                         "48-patient populations 56.2 / 47.2%% plain, 46.8 / 43.6%% stratified; 47.8%% on 200 plain")
    ap.add_argument("--iiv", default="OMEGA_KIL6,CRS_OMEGA",
                    help="IIV SDs to fit as class parameters (default OMEGA_KIL6,CRS_OMEGA: the spread of IL-6 "
                         "production and of CRS sensitivity; 'none' keeps every omega at its assumed value)")
    ap.add_argument("--hessian", choices=("forward", "central"), default="forward",
                    help="finite differences of the gradient for the Laplace Hessian: forward (n + 1 gradients, the "
                         "default) or central (2 n)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                    help="studies evaluated side by side, each on about one core (default: 2, or 1 on a one-core "
                         "machine); use 1 for each of two fits run at the same time")
    ap.add_argument("--class-params", default=",".join(CLASS),
                    help="class-level parameters to fit (default: %(default)s)")
    ap.add_argument("--drug-params", default=",".join(DRUG),
                    help="drug-level parameters to fit, one value per drug (default: %(default)s)")
    ap.add_argument("--deviations", default=None,
                    help="class parameters that may deviate per drug, with the SD of the deviation on the "
                         "unconstrained scale, as P=SD,... (default: " +
                         ",".join(f"{k}={v:g}" for k, v in DEVIATIONS.items()) +
                         " for those of them in --class-params; 'none' for no deviations)")
    ap.add_argument("--targets", default=None,
                    help="a folder of target tables to fit instead of the shipped data/targets/ (e.g. the copy "
                         "written by calibration/per_dose_il6_targets.py); recorded in params.json")
    ap.add_argument("--out", default=None,
                    help="the fit folder to write (default calibration/fits/map, the shipped fit's; required with "
                         "--targets)")
    ap.add_argument("--calibrated", default=None,
                    help="where to write the calibrated parameter set (default: data/calibrated/tce_map.json for the "
                         "full fit with the default drugs and parameters, else none; 'none' to skip)")
    ap.add_argument("--init", default=None,
                    help="warm start: a fit folder whose params.json MAP (x by name) starts the first L-BFGS run; "
                         "entries it lacks start at the prior centre")
    a = ap.parse_args(argv)
    if a.targets is not None and a.out is None:
        ap.error("--targets needs --out: a fit on other tables must not replace the shipped fit's folder")
    a.out = a.out or "calibration/fits/map"
    drugs = [d.strip() for d in a.drugs.split(",") if d.strip()]
    models = {d: load_card(d).model() for d in drugs}
    iiv = () if a.iiv.strip().lower() == "none" else tuple(k.strip() for k in a.iiv.split(",") if k.strip())
    cls = tuple(k.strip() for k in a.class_params.split(",") if k.strip())
    drg = tuple(k.strip() for k in a.drug_params.split(",") if k.strip())
    devs = {k: v for k, v in DEVIATIONS.items() if k in cls} if a.deviations is None else {}
    if a.deviations is not None and a.deviations.strip().lower() != "none":
        for item in (x.strip() for x in a.deviations.split(",") if x.strip()):
            k, _, v = item.partition("=")
            try:
                sd = float(v)
            except ValueError:
                sd = float("nan")
            if k.strip() not in cls or not sd > 0:
                ap.error(f"--deviations: {item!r} must be P=SD with P one of --class-params and SD > 0")
            devs[k.strip()] = sd
    try:  # e.g. a parameter the cards do not declare (F_TONIC without [structure] tonic_secretion)
        space = ParameterSpace(models, class_params=cls + iiv, drug_params=drg, deviations=devs)
    except InputError as e:
        ap.error(str(e))
    init = None
    if a.init:  # refused before any work: not a fit folder, mismatched names and values, nothing shared
        try:
            im = json.loads((Path(a.init) / "params.json").read_text())
            names, xs = list(im["names"]), [float(v) for v in im["x"]]
            if len(names) != len(xs):
                raise ValueError(f"{len(names)} names but {len(xs)} values")
            init = dict(zip(names, xs))
            unused = warm_start(space.names(), np.zeros(len(space.names())), init)[1]
        except (OSError, ValueError, KeyError, TypeError, InputError) as e:
            ap.error(f"--init {a.init}: not a fit folder with a readable params.json (names, x): {e}")
        shared = len(init) - len(unused)
        if shared == 0:
            ap.error(f"--init {a.init}: shares no parameter with this fit (its names: {', '.join(names[:5])} ...)")
        print(f"warm start from {a.init}: {shared} of {len(space.names())} entries"
              + (f"; not in this fit: {', '.join(unused)}" if unused else ""), flush=True)
        note = _init_structure_note(space, im)
        if note:
            print(note, flush=True)
    try:  # a malformed table is refused here, before any work, naming file, row and field
        targets = load_targets(a.targets)
    except InputError as e:
        ap.error(f"--targets: {e}")
    fit_targets = _leave_out(targets, a.leave_out) if a.leave_out else targets
    t0 = time.time()
    stratified = a.population == "stratified"
    problem = build_problem(space, fit_targets, patients=a.patients, seed=a.seed, stratified=stratified)
    print(f"studies: {', '.join(s.study_id for s in problem.studies)}; skipped: {problem.skipped}", flush=True)
    _check_memory_maps(sum(1 for s in problem.studies if s.solve))
    def every_10(n, v, s):  # every evaluation of the first 10, then every 10th
        if n <= 10 or n % 10 == 0:
            print(f"  evaluation {n}: -log posterior {v:.2f} ({s:.0f} s in evaluations, {time.time() - t0:.0f} s)",
                  flush=True)

    fit = run_map(problem, starts=a.starts, init=init, max_steps=a.max_steps, draws=a.draws, hessian=a.hessian,
                  eval_progress=every_10, threads=a.threads,
                  compile_progress=lambda sid, s: print(f"compiled {sid} in {s:.0f} s ({time.time() - t0:.0f} s)",
                                                        flush=True),
                  progress=lambda i, n, v: print(f"MAP start {i}/{n}: -log posterior {v:.2f} "
                                                 f"({time.time() - t0:.0f} s)", flush=True))
    files = write_fit(fit, a.out)
    extra = {}
    if a.targets:  # which tables the fit saw
        extra["targets"] = str(Path(a.targets).resolve())
    if a.init:  # where its first L-BFGS run started (a warm-started fit needs that folder to be rerun)
        extra["init"] = str(Path(a.init).resolve())
    if extra:
        meta_file = Path(a.out) / "params.json"
        meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), **extra}, indent=2) + "\n")
    shipped_setup = (not a.leave_out and a.init is None and cls == CLASS and drg == DRUG and tuple(drugs) == DEFAULT_DRUGS
                     and devs == DEVIATIONS and a.targets is None)
    # only the full fit with the shipped settings replaces data/calibrated/tce_map.json (the joint MAP with its Laplace
    # approximation; the default file, tce_posterior.json, is shipped from a NUTS job by ship_posterior.py)
    ship = a.calibrated or ("data/calibrated/tce_map.json" if shipped_setup else "none")
    if ship != "none":
        files.append(write_calibrated(fit, ship, command="python calibration/fit_map.py " + " ".join(argv or sys.argv[1:])))
    if a.leave_out:  # the held-out targets, predicted by the parameters fitted without them
        held_ids = sorted(set(targets.studies.study_id[targets.studies.drug == a.leave_out.partition(":")[0]]))
        usable = set(targets.on_label_regimen().studies.study_id)
        held_prob = build_problem(space, targets, patients=a.patients, seed=a.seed, stratified=stratified,
                                  studies=[s for s in held_ids if s in usable])
        full = predict(fit.theta, held_prob, threads=a.threads)  # only the held-out drug's studies are compiled
        seen = set(zip(fit.targets.target, fit.targets.time_day.fillna(-1)))
        held = full[[(t, d) not in seen for t, d in zip(full.target, full.time_day.fillna(-1))]].copy()
        held["within"] = [_within(r) for r in held.itertuples(index=False)]
        held.to_csv(Path(a.out) / "heldout.csv", index=False, float_format="%.6g")
        print(held[["target", "time_day", "observed", "predicted", "within"]].to_string(index=False))
    print(f"done in {time.time() - t0:.0f} s; wrote {', '.join(str(f) for f in files)}")
    fitted = fit.targets[fit.targets["in_fit"].astype(bool)]
    print(f"fitted targets within tolerance: {100 * fitted['within'].mean():.0f}% of {len(fitted)} "
          f"({len(fit.targets) - len(fitted)} predicted, not fitted)")


if __name__ == "__main__":
    main()
