"""``qsp calibrate``: run calibration job specs (MAP, NUTS) as batch jobs with checkpoint/resume and Dask.

Thin over :mod:`qsp.jobs`: the spec is read and validated (names checked against the cards and target tables)
and ``--out`` checked before any model is built; a bad spec or argument exits 2 with one line naming the file,
key and allowed values. The job itself: :func:`qsp.jobs.runner.run_job`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import InputError
from .app import EXIT_USAGE, app, echo_error

JOBS_DIR = Path("calibration") / "jobs"

HELP = """Run a calibration job spec (calibration/jobs/*.toml): MAP (multi-start L-BFGS, Laplace) and/or NUTS
(NumPyro) on the published targets, with checkpoints every few iterations.

Writes into --out: fit.nc (ArviZ InferenceData: posterior, sample_stats, log_likelihood, posterior_predictive,
observed_data, constant_data), summary.csv (mean, sd, 90% HDI, R-hat, ESS), targets.csv (observed vs predicted
median and 90% interval, within tolerance), params.toml (load with QSP_CALIBRATED=DIR/params.toml), trace.png,
rank.png, pairs.png, ppc_<drug>.png, and job.json last (status "finished"). A killed job continues with --resume
and ends with the same numbers; a second process on the same --out is refused.

Examples:
  qsp calibrate calibration/jobs/smoke.toml --out runs/smoke
  qsp calibrate calibration/jobs/smoke.toml --out runs/smoke --resume
  qsp calibrate calibration/jobs/joint_crs_nuts.toml --out runs/crs --workers 2
  qsp calibrate --list
  qsp calibrate --all --out runs
"""


def _jobs_dir() -> Path:
    return JOBS_DIR


def _list_specs():
    from ..jobs.spec import load_spec

    folder = _jobs_dir()
    if not folder.is_dir():
        raise InputError(f"no job folder {folder} here: run from the repository root", field="--list")
    return [load_spec(p) for p in sorted(folder.glob("*.toml"))]


@app.command("calibrate", help=HELP)
def calibrate_command(
    job: Path = typer.Argument(None, help="the job spec (TOML)"),
    out: Path = typer.Option(None, "--out", help="output folder (with --all: the parent of one folder per job)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the checkpoints in --out"),
    scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler address (chains and MAP starts run on "
                                                             "its workers; --out must be on a shared file system)"),
    workers: int = typer.Option(0, "--workers", help="start a local Dask cluster of N worker processes"),
    threads: int = typer.Option(None, "--threads", help="studies evaluated side by side in this process "
                                                         "(default: min(2, cores))"),
    all_jobs: bool = typer.Option(False, "--all", help="run every spec in calibration/jobs/ (into --out/<name>)"),
    list_jobs: bool = typer.Option(False, "--list", help="list the job specs in calibration/jobs/ and exit"),
    progress: bool = typer.Option(None, "--progress/--no-progress",
                                  help="progress bars on stderr (default: when stderr is a terminal)"),
) -> None:
    from ..jobs.spec import load_spec

    try:
        if list_jobs:
            for s in _list_specs():
                typer.echo(f"{s.name:<20} {s.method:<9} {','.join(s.drugs):<40} {s.path}"
                           + (f"  {s.description}" if s.description else ""))
            return
        if workers < 0:
            raise InputError(f"--workers must be >= 0, got {workers}", field="--workers")
        if threads is not None and threads < 1:
            raise InputError(f"--threads must be >= 1, got {threads}", field="--threads")
        if scheduler is not None and workers:
            raise InputError("give --scheduler ADDRESS or --workers N, not both", field="--workers")
        if all_jobs == (job is not None):
            raise InputError("give one job spec (JOB.toml) or --all", field="JOB")
        specs = _list_specs() if all_jobs else [load_spec(job)]
        names = [s.name for s in specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(f"job names {dup} repeat in calibration/jobs/: each job needs its own --out folder",
                             field="--all")
        if out is None:
            raise InputError("--out DIR is required", field="--out")
        out = Path(out).expanduser().absolute()
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out} exists and is not a directory", field="--out")
        targets = [(s, out / s.name if all_jobs else out) for s in specs]
        for s, d in targets:
            if d.exists() and not resume and any(p.name == ".checkpoint" for p in d.iterdir()):
                from ..jobs.store import JobDir

                if JobDir(d).finished() is None:  # a killed run: say how to continue it, do not wipe it silently
                    raise InputError(f"{d} holds checkpoints of an unfinished run: continue it with --resume, or "
                                     "remove the folder to start again", field="--resume")
    except InputError as e:
        echo_error(str(e))
        raise typer.Exit(EXIT_USAGE)

    from .. import enable_compile_cache
    from ..jobs.runner import run_job

    enable_compile_cache()  # a resumed job, the next job and the Dask workers reuse what this one compiles
    bars = sys.stderr.isatty() if progress is None else progress
    for s, d in targets:
        try:
            run_job(s, d, resume=resume, scheduler=scheduler, workers=workers, threads=threads,
                    say=lambda m: typer.echo(m, err=True), bars=bars)
        except InputError as e:  # the lock, or a resume of another spec or data
            echo_error(str(e))
            raise typer.Exit(EXIT_USAGE)
