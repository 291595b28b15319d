"""``qsp simulate``: one command, three modes, every option checked against its mode before any work.

* dataset mode, ``--model pk-1cmt|pk-2cmt --dataset FILE --param ...`` (:mod:`qsp.cli.sim_dataset`);
* drug mode, ``--drug NAME`` — one typical patient (:mod:`qsp.cli.sim_drug`);
* population mode, ``--drug NAME --patients N`` — a virtual trial with CRS per dose.

Options that do not apply to the chosen mode are errors (exit 2), never silently ignored. Defaults are
applied only after that check, so "not given" and "given the default value" are told apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError
from .app import EXIT_SOLVER, EXIT_USAGE, SolverFailure, app, echo_error
from .outputs import prepare_out, write_outputs

SIMULATE_EPILOG = """\
Example (2-compartment model; TIME in hours, so CL and Q in L/h, KA in 1/h):

\b
  qsp simulate --model pk-2cmt --dataset study.csv \\
      --param CL=0.2 --param V1=3 --param Q=0.5 --param V2=2 \\
      --param KA=0.3 --param F=0.7 --param ALAG=0.5 --out results/

\b
Dataset: CSV (or whitespace separated) with ID and TIME, and optionally
AMT, EVID, CMT, RATE, II, ADDL, MDV, DV and covariate columns (kept).
  CMT 1 = SC depot (KA, F, ALAG); CMT 2 = central (IV bolus, or an
  infusion over AMT/RATE with RATE > 0). RATE -1 / -2 need --param R2=...
  / --param D2=... (modelled rate / duration). Required: CL and V
  (pk-1cmt) or CL, V1, Q, V2 (pk-2cmt), and KA when a dose goes into
  CMT 1; F and ALAG default to 1 and 0, as in NONMEM.
Output: DIR/predictions.csv (every input row, in input order, plus CP =
  central amount / V1 in AMT units per volume unit) and DIR/cp.png.

Drug mode, one typical patient (timecourse.csv, doses.csv, timecourse.png):

\b
  qsp simulate --drug teclistamab --days 35 --out tec/
  qsp simulate --drug teclistamab --param KD_CD3=10 --out tec_kd10/

\b
  --param NAME=VALUE sets a card parameter (see the card in models/),
  checked against its domain (positive, fraction, ...). doses.csv has
  one row per dose inside the horizon (Cmax, Tmax, AUC and Ctrough within
  the dose's own window; IL-6 at the dose and the peak it causes).

Drug mode, a virtual population with CRS per dose (--patients N):

\b
  qsp simulate --drug teclistamab --patients 1000 --seed 1 --out trial/

\b
  Patients vary (IIV, weight, T cells, tumour burden, CRS sensitivity);
  --premed defaults to label (dexamethasone before the step-up doses) here,
  to none for one patient. Prints the CRS incidence per dose by grade and
  writes DIR/crs_by_dose.csv, population_timecourse.csv (median and 5-95%
  band per day; --outputs-per-day K for a finer grid), patients.csv (per
  patient and dose, with covariates), population.png and summary.json.
  The same --seed gives identical files, and patient i depends only on
  the seed and i. --param sets typical values (and CRS_* parameters).
  A progress bar (stderr) shows by default above 2048 patients.

\b
Parameter sets (drug and population mode):
  --parameters prior       the model cards' values (the priors' centres)
  --parameters calibrated  the calibration fit's values, from the file
                           named by $QSP_CALIBRATED or shipped with qsp
  The default is calibrated when such a file exists, else prior; the
  set used is printed and recorded in summary.json. --param wins.

\b
  qsp simulate --drug teclistamab --patients 1000 --uncertainty 50 \\
      --parameters calibrated --out trial/

\b
  --uncertainty K reruns the trial with K parameter sets drawn from the
  calibrated file: among its posterior draws (the shipped default, a
  NUTS job's posterior) or from its Laplace approximation (a MAP file such
  as data/calibrated/tce_map.json); same patients, draws seeded by --seed,
  and adds crs_*_pct_p05 / crs_*_pct_p95 (5th/95th percentiles over the
  draws) next to each percentage of crs_by_dose.csv and the table.

\b
Limits (checked before any work; raise with the environment variable):
  --patients <= 200000 (QSP_MAX_PATIENTS), --days <= 3650 (QSP_MAX_DAYS),
  dose events per patient/ID <= 5000 (QSP_MAX_EVENTS), output times per
  patient <= 200000 (QSP_MAX_OUTPUTS), estimated memory <= 6 GB
  (QSP_MAX_MEMORY_GB), IDs per dataset <= 100000 (QSP_MAX_IDS),
  --uncertainty <= 200 (QSP_MAX_DRAWS), --patients x (--uncertainty + 1)
  <= 2000000 (QSP_MAX_PATIENT_SOLVES).
"""

# option name -> the modes it applies to
MODES = ("dataset", "drug", "population")
APPLIES = {
    "--dataset": ("dataset",), "--time-unit": ("dataset",),
    "--regimen": ("drug", "population"), "--days": ("drug", "population"), "--premed": ("drug", "population"),
    "--seed": ("population",), "--outputs-per-day": ("population",), "--progress": ("population",),
    "--parameters": ("drug", "population"), "--uncertainty": ("population",), "--scheduler": ("population",),
}
MODE_TEXT = {"dataset": "dataset mode (--model)", "drug": "drug mode (--drug, one patient)",
             "population": "population mode (--drug with --patients)"}


@dataclass(frozen=True)
class SolveOptions:
    solver: str
    rtol: float
    atol: float
    max_steps: int


def _solve_options(solver, rtol, atol, max_steps) -> SolveOptions:
    solver = "tsit5" if solver is None else solver
    rtol = 1e-6 if rtol is None else rtol
    atol = 1e-9 if atol is None else atol
    max_steps = 4096 if max_steps is None else max_steps
    if solver not in ("tsit5", "kvaerno5"):
        raise InputError(f"unknown solver {solver!r}; allowed: tsit5, kvaerno5", field="--solver")
    for name, v in (("--rtol", rtol), ("--atol", atol)):
        if not (math.isfinite(v) and 0 < v < 1):
            raise InputError(f"must be a number between 0 and 1, got {v}", field=name)
    if not 1 <= max_steps <= 1_000_000:
        raise InputError(f"must be an integer from 1 to 1000000, got {max_steps}", field="--max-steps")
    return SolveOptions(solver, rtol, atol, max_steps)


@app.command(epilog=SIMULATE_EPILOG, no_args_is_help=True)
def simulate(
    model: Annotated[Optional[str], typer.Option(
        "--model", metavar="pk-1cmt|pk-2cmt", help="PK model: pk-1cmt or pk-2cmt (with --dataset).",
        show_default=False)] = None,
    dataset: Annotated[Optional[Path], typer.Option(
        "--dataset", metavar="FILE", help="NONMEM-style dataset (CSV).", show_default=False)] = None,
    time_unit: Annotated[Optional[str], typer.Option(
        "--time-unit", metavar="h|day", help="With --dataset: unit of TIME, II and RATE: h or day [default: h].",
        show_default=False)] = None,
    param: Annotated[Optional[list[str]], typer.Option(
        "--param", "-p", metavar="NAME=VALUE",
        help="NAME=VALUE, repeatable. Dataset mode: CL, V (1-cmt) or V1, Q, V2, KA, F, ALAG; R<cmt>/D<cmt> for "
             "RATE -1/-2. Drug mode: any card parameter (CL, KD_CD3, T0, ...); with --patients also CRS_*.",
        show_default=False)] = None,
    solver: Annotated[Optional[str], typer.Option(
        "--solver", metavar="tsit5|kvaerno5", help="ODE solver: tsit5 (explicit) or kvaerno5 (implicit) "
                                                   "[default: tsit5].", show_default=False)] = None,
    rtol: Annotated[Optional[float], typer.Option("--rtol", metavar="FLOAT", help="Relative tolerance [default: 1e-6].",
                                                  show_default=False)] = None,
    atol: Annotated[Optional[float], typer.Option("--atol", metavar="FLOAT", help="Absolute tolerance [default: 1e-9].",
                                                  show_default=False)] = None,
    max_steps: Annotated[Optional[int], typer.Option(
        "--max-steps", metavar="INT", help="Solver steps allowed between two events [default: 4096].",
        show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", metavar="DIR", help="Output directory (created; a rerun replaces its own earlier outputs, other "
                                     "files kept).", show_default=False)] = None,
    drug: Annotated[Optional[str], typer.Option(
        "--drug", metavar="NAME", help="Simulate a drug's model card (see `qsp drugs`).", show_default=False)] = None,
    regimen: Annotated[Optional[str], typer.Option(
        "--regimen", metavar="LABEL_NAME|FILE.csv", help="With --drug: a label regimen name or a regimen CSV "
                                                          "(day,dose,unit,route[,infusion_h]); default: the card's.",
        show_default=False)] = None,
    days: Annotated[Optional[float], typer.Option(
        "--days", metavar="D", help="With --drug: days to simulate (doses on days 1 to D) [default: 35].",
        show_default=False)] = None,
    premed: Annotated[Optional[str], typer.Option(
        "--premed", metavar="none|label", help="With --drug: premedication (label = dexamethasone 16 mg); default: "
                                               "none for one patient, label with --patients.",
        show_default=False)] = None,
    patients: Annotated[Optional[int], typer.Option(
        "--patients", metavar="N", help="With --drug: simulate N virtual patients (population mode, CRS per dose).",
        show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", metavar="S", help="With --patients: random seed of the population [default: 0].",
        show_default=False)] = None,
    outputs_per_day: Annotated[Optional[int], typer.Option(
        "--outputs-per-day", metavar="K", help="With --patients: time-course points per day [default: 1].",
        show_default=False)] = None,
    progress: Annotated[Optional[bool], typer.Option(
        "--progress/--no-progress", help="With --patients: progress bar on stderr [default: on above 2048 patients].",
        show_default=False)] = None,
    parameters: Annotated[Optional[str], typer.Option(
        "--parameters", metavar="prior|calibrated",
        help="With --drug: typical values from the model card (prior) or from the calibration fit (calibrated; "
             "$QSP_CALIBRATED or the shipped file) [default: calibrated when a calibrated file is available, "
             "else prior]. --param values win over the set.", show_default=False)] = None,
    uncertainty: Annotated[Optional[int], typer.Option(
        "--uncertainty", metavar="K",
        help="With --patients and calibrated parameters: rerun the trial with K parameter sets drawn from the "
             "fit (same patients) and add 5th-95th percentile columns next to each CRS percentage.",
        show_default=False)] = None,
    scheduler: Annotated[Optional[str], typer.Option(
        "--scheduler", metavar="ADDRESS",
        help="With --patients: a Dask scheduler (tcp://HOST:8786); the patients are split over its workers and "
             "give the same numbers as a local run.", show_default=False)] = None,
) -> None:
    """Simulate a NONMEM dataset with a PK model (--model), or a drug's TCE model card (--drug)."""
    try:
        if model is not None and drug is not None:
            raise InputError("--model and --drug are mutually exclusive; give one", field="--model")
        if model is None and drug is None:
            raise InputError("give --model (with --dataset) or --drug NAME", field="--model")
        mode = "dataset" if model is not None else ("population" if patients is not None else "drug")
        if patients is not None and model is not None:
            raise InputError("--patients needs --drug NAME (population mode), not --model", field="--patients")
        given = {"--dataset": dataset, "--time-unit": time_unit, "--regimen": regimen, "--days": days,
                 "--premed": premed, "--seed": seed, "--outputs-per-day": outputs_per_day, "--progress": progress,
                 "--parameters": parameters, "--uncertainty": uncertainty, "--scheduler": scheduler}
        for name, v in given.items():
            if v is not None and mode not in APPLIES[name]:
                where = " or ".join(MODE_TEXT[m] for m in APPLIES[name])
                raise InputError(f"{name} does not apply to {MODE_TEXT[mode]}; it is for {where}", field=name)
        out_dir = prepare_out(out)
        opts = _solve_options(solver, rtol, atol, max_steps)
        params = parse_params(param or [])
        if mode == "dataset":
            from .sim_dataset import simulate_dataset

            files = simulate_dataset(model, dataset, time_unit or "h", params, opts)
        elif mode == "drug":
            from .sim_drug import simulate_drug

            files = simulate_drug(drug, regimen, days, premed, params, opts, parameters=parameters)
        else:
            from .sim_drug import simulate_population

            files = simulate_population(drug, regimen, days, premed, patients, seed, outputs_per_day, progress,
                                        params, opts, parameters=parameters, uncertainty=uncertainty,
                                        scheduler=scheduler)
        written = write_outputs(out_dir, files, owner="simulate")
    except InputError as e:
        echo_error(str(e))
        raise typer.Exit(EXIT_USAGE)
    except SolverFailure as e:
        echo_error(str(e), prefix="failed")
        raise typer.Exit(EXIT_SOLVER)
    for w in files.get("_warnings", []):
        typer.echo(f"warning: {w}", err=True)
    if "_parameters" in files:
        typer.echo(files["_parameters"])
    if "_table" in files:
        typer.echo(files["_table"])
    if files.get("_notes"):
        typer.echo(files["_notes"])
    typer.echo("wrote " + ", ".join(str(p) for p in sorted(written)))
    if files.get("_failed"):
        echo_error(files["_failed"], prefix="failed")
        raise typer.Exit(EXIT_SOLVER)


def parse_params(items: list[str]) -> dict[str, float]:
    """``NAME=VALUE`` strings -> {name: float}; malformed, non-finite or repeated names are errors."""
    import re

    pattern = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\S.*?)\s*$")
    out: dict[str, float] = {}
    for it in items:
        m = pattern.match(it)
        if not m:
            raise InputError(f"expected NAME=VALUE, got {it!r}", field="--param")
        name, val = m.group(1), m.group(2)
        try:
            x = float(val)
        except ValueError:
            raise InputError(f"{name}: value {val!r} is not a number", field="--param") from None
        if not math.isfinite(x):
            raise InputError(f"{name}: value must be finite, got {val!r}", field="--param")
        if name in out:
            raise InputError(f"{name} is given twice", field="--param")
        out[name] = x
    return out
