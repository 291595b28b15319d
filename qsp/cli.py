"""Command line: thin commands over library calls.

``qsp simulate --model pk-2cmt --dataset data.csv --param CL=0.2 ... --out results/`` reads a NONMEM-style
dataset (:mod:`qsp.io.nonmem`), simulates every ID in one batched call of :func:`qsp.simulate.simulate`
and writes ``predictions.csv`` (every input row, in input order, with ``CP``) and ``cp.png``.
``qsp simulate --drug NAME`` simulates a drug's model card for its typical patient; with ``--patients N``
it runs a virtual trial (:func:`qsp.trial.run_card_trial`; tables, plot and summary from
:mod:`qsp.trial_report`) and prints the CRS incidence per dose by grade.

User mistakes (a bad file, parameter, flag or record) end with one line on stderr starting with
``error:`` and exit code 2, never a traceback, and leave no output behind: files are written to a
temporary directory next to ``--out`` and moved into place only when everything succeeded (other files
already in ``--out`` are left alone).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException as _ClickException

from .errors import InputError

EXIT_USAGE = 2

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
  / --param D2=... (modelled rate / duration).
Output: DIR/predictions.csv (every input row, in input order, plus CP =
  central amount / V1 in AMT units per volume unit) and DIR/cp.png.

Drug mode, one typical patient (timecourse.csv, doses.csv, timecourse.png):

\b
  qsp simulate --drug teclistamab --days 35 --out tec/

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
  The same --seed gives identical files. A progress bar (stderr) shows by
  default above 2048 patients (--progress / --no-progress).
"""


class _OneLineErrors(TyperGroup):
    """Usage errors (a missing option, a bad number) as one line ``error: ...`` and exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                              **extra)
            code = rv if isinstance(rv, int) else 0
        except _ClickException as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # `qsp` or `qsp simulate` alone: show the help
                typer.echo(e.format_message())
            else:
                _echo_error(e.format_message())
            code = EXIT_USAGE
        except typer.Abort:
            _echo_error("aborted")
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Mechanistic, differentiable PK/PD models for CD3 T-cell engagers.",
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.callback()
def _root() -> None:
    """qsp: simulate PK/PD models of T-cell engagers (see `qsp COMMAND --help`)."""


def _echo_error(msg: str) -> None:
    line = " ".join(str(msg).split())
    typer.echo(f"error: {line}", err=True)


class _Fail(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# the simulate command
# --------------------------------------------------------------------------------------------------
@app.command(epilog=SIMULATE_EPILOG, no_args_is_help=True)
def simulate(
    model: Annotated[Optional[str], typer.Option("--model", metavar="pk-1cmt|pk-2cmt", help="PK model: pk-1cmt or pk-2cmt (with --dataset).",
                                                 show_default=False)] = None,
    dataset: Annotated[Optional[Path], typer.Option("--dataset", metavar="FILE", help="NONMEM-style dataset (CSV).",
                                                    show_default=False)] = None,
    time_unit: Annotated[str, typer.Option("--time-unit", metavar="h|day", help="Unit of TIME, II and RATE: h or day.")] = "h",
    param: Annotated[Optional[list[str]], typer.Option(
        "--param", "-p", metavar="NAME=VALUE", help="NAME=VALUE, repeatable: CL, V (1-cmt) or V1, Q, V2, KA, F, ALAG; "
                              "R<cmt>/D<cmt> for RATE -1/-2.", show_default=False)] = None,
    solver: Annotated[str, typer.Option("--solver", metavar="tsit5|kvaerno5", help="ODE solver: tsit5 (explicit) or kvaerno5 (implicit).")
                      ] = "tsit5",
    rtol: Annotated[float, typer.Option("--rtol", metavar="FLOAT", help="Relative tolerance.")] = 1e-6,
    atol: Annotated[float, typer.Option("--atol", metavar="FLOAT", help="Absolute tolerance.")] = 1e-9,
    max_steps: Annotated[int, typer.Option("--max-steps", metavar="INT", help="Solver steps allowed between two events.")] = 4096,
    out: Annotated[Optional[Path], typer.Option("--out", metavar="DIR", help="Output directory (created; other files kept).",
                                                show_default=False)] = None,
    drug: Annotated[Optional[str], typer.Option("--drug", metavar="NAME",
                                                help="Simulate a drug's model card (see `qsp drugs`).",
                                                show_default=False)] = None,
    regimen: Annotated[Optional[str], typer.Option("--regimen", metavar="LABEL_NAME|FILE.csv",
                                                   help="With --drug: a label regimen name or a regimen CSV "
                                                        "(day,dose,unit,route[,infusion_h]); default: the card's.",
                                                   show_default=False)] = None,
    days: Annotated[float, typer.Option("--days", metavar="D", help="With --drug: days to simulate.")] = 35.0,
    premed: Annotated[Optional[str], typer.Option(
        "--premed", metavar="none|label", help="With --drug: premedication (label = dexamethasone 16 mg); default: "
                                               "none for one patient, label with --patients.",
        show_default=False)] = None,
    patients: Annotated[Optional[int], typer.Option(
        "--patients", metavar="N", help="With --drug: simulate N virtual patients (population mode, CRS per dose).",
        show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", metavar="S",
                                                help="With --patients: random seed of the population [default: 0].",
                                                show_default=False)] = None,
    outputs_per_day: Annotated[Optional[int], typer.Option(
        "--outputs-per-day", metavar="K", help="With --patients: time-course points per day [default: 1].",
        show_default=False)] = None,
    progress: Annotated[Optional[bool], typer.Option(
        "--progress/--no-progress", help="With --patients: progress bar on stderr [default: on above 2048 patients].",
        show_default=False)] = None,
) -> None:
    """Simulate a NONMEM dataset with a PK model (--model), or a drug's TCE model card (--drug)."""
    try:
        # --- branch point: dataset mode (--model) or drug mode (--drug) ---------------------------
        if model is not None and drug is not None:
            raise InputError("--model and --drug are mutually exclusive; give one", field="--model")
        if model is None and drug is None:
            raise InputError("give --model (with --dataset) or --drug NAME", field="--model")
        if out is None:
            raise InputError("--out DIR is required", field="--out")
        _check_out(out)
        if solver not in ("tsit5", "kvaerno5"):
            raise InputError(f"unknown solver {solver!r}; allowed: tsit5, kvaerno5", field="--solver")
        for name, v in (("--rtol", rtol), ("--atol", atol)):
            if not (math.isfinite(v) and v > 0):
                raise InputError(f"must be a positive number, got {v}", field=name)
        if max_steps < 1:
            raise InputError(f"must be a positive integer, got {max_steps}", field="--max-steps")
        opts = _SolveOptions(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)
        pop_opts = {"--patients": patients, "--seed": seed, "--outputs-per-day": outputs_per_day,
                    "--progress": progress}
        if patients is None:
            for name, v in pop_opts.items():
                if v is not None and name != "--patients":
                    raise InputError(f"{name} needs --patients N (population mode)", field=name)
        if patients is not None and drug is None:
            raise InputError("--patients needs --drug NAME", field="--patients")
        if drug is not None and patients is not None:
            files = _simulate_population(drug, regimen, days, premed, patients, seed, outputs_per_day, progress,
                                         opts)
        elif drug is not None:
            files = _simulate_drug(drug, regimen, days, "none" if premed is None else premed)
        else:
            if dataset is None:
                raise InputError("--model needs --dataset FILE", field="--dataset")
            files = _simulate_dataset(model, dataset, time_unit, _parse_params(param or []), opts)
        _write_outputs(out, files)
    except InputError as e:
        _echo_error(str(e))
        raise typer.Exit(EXIT_USAGE)
    for w in files.get("_warnings", []):
        typer.echo(f"warning: {w}", err=True)
    if "_table" in files:
        typer.echo(files["_table"])
    written = sorted(k for k in files if not k.startswith("_"))
    typer.echo("wrote " + ", ".join(str(out / k) for k in written))


@dataclass(frozen=True)
class _SolveOptions:
    solver: str
    rtol: float
    atol: float
    max_steps: int


_PARAM_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\S.*?)\s*$")


def _parse_params(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for it in items:
        m = _PARAM_RE.match(it)
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


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory", field="--out")
    parent = out.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"{parent} is not a directory", field="--out")


def _write_outputs(out: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a temporary directory next to ``out``, then move them into place."""
    out = out.resolve()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise InputError(f"cannot create the output directory {out}: {e.strerror}", field="--out") from None
    try:
        for name, data in files.items():
            if name.startswith("_"):
                continue
            (tmp / name).write_bytes(data)
        if not out.exists():
            os.rename(tmp, out)
            return
        for name in os.listdir(tmp):
            os.replace(tmp / name, out / name)
    except OSError as e:
        raise InputError(f"cannot write into {out}: {e.strerror}", field="--out") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# dataset mode
# --------------------------------------------------------------------------------------------------
_N_GRID = 200
_MODELS: dict = {}


def _pk_model(name: str, time_unit: str):
    """One model object per (name, time unit), so that repeated calls in a process reuse the compiled solver."""
    from .pkmodels import pk_model

    key = (name, time_unit)
    if key not in _MODELS:
        _MODELS[key] = pk_model(name, time_unit=time_unit)
    return _MODELS[key]


def _simulate_dataset(model_name: str, dataset: Path, time_unit: str, params: dict[str, float],
                      opts: _SolveOptions) -> dict[str, bytes]:
    """Validate everything, simulate all IDs in one batched call; return the output files' bytes."""
    from .io.nonmem import read_nonmem
    from .regimen import check_time_unit
    from .simulate import STATUS_TEXT, simulate

    check_time_unit(time_unit)
    model = _pk_model(model_name, time_unit)
    ds_params = {k: v for k, v in params.items() if re.fullmatch(r"[RD]\d+", k)}
    mp = {k: v for k, v in params.items() if k not in ds_params}
    for k in ds_params:
        if int(k[1:]) not in model.cmt:
            raise InputError(f"{k}: compartment {k[1:]} is not one of the model's CMT numbers {sorted(model.cmt)}",
                             field="--param")
        if not ds_params[k] > 0:
            raise InputError(f"{k} must be positive, got {ds_params[k]}", field="--param")
    model_params = model.params(mp)  # names and values checked before the dataset is read
    if not dataset.exists():
        raise InputError(f"file not found: {dataset}", field="--dataset")
    ds = read_nonmem(dataset, model, time_unit=time_unit, params=ds_params)
    if "CP" in ds.raw.columns:
        raise InputError("the dataset already has a column named CP (the prediction column); rename it",
                         field="--dataset")

    # One batched call: per ID, the row times plus a plotting grid and both sides of every dose time.
    regs, tss, lefts, row_pos, grid_pos, dose_ts = [], [], [], [], [], []
    for s in ds.subjects:
        t_row = s.times
        t_lo = min(t_row.min(), min((d.time for d in s.regimen.doses), default=t_row.min()))
        t_hi = t_row.max()
        dts = np.array(sorted({d.time for d in s.regimen.expanded().doses if t_lo <= d.time <= t_hi and
                               not (d.reset and d.amount == 0)}), dtype=float)
        grid = np.linspace(t_lo, t_hi, _N_GRID) if t_hi > t_lo else np.array([t_lo])
        t_all = np.concatenate([t_row, grid, dts, dts])
        l_all = np.concatenate([s.left, np.zeros(grid.size, bool), np.ones(dts.size, bool), np.zeros(dts.size, bool)])
        kind = np.concatenate([np.zeros(t_row.size, int), np.ones(grid.size, int), np.full(2 * dts.size, 2)])
        # at equal times: left-limit points first, so the plotted curve jumps vertically at a bolus
        order = np.lexsort((~l_all, t_all))
        regs.append(s.regimen)
        tss.append(t_all[order])
        lefts.append(l_all[order])
        inv = np.empty(order.size, int)
        inv[order] = np.arange(order.size)
        row_pos.append(inv[: t_row.size])
        grid_pos.append(np.sort(inv[t_row.size:]))
        dose_ts.append(dts)
    n_max = max(t.size for t in tss)
    ts = np.stack([np.concatenate([t, np.full(n_max - t.size, t[-1])]) for t in tss])
    left = np.stack([np.concatenate([lf, np.zeros(n_max - lf.size, bool)]) for lf in lefts])
    res = simulate(model, regs, ts, model_params, times_left=left, solver=opts.solver, rtol=opts.rtol,
                   atol=opts.atol, max_steps=opts.max_steps)
    cp = np.asarray(res.outputs["CP"], dtype=float)

    warnings = []
    pred = np.full(len(ds.raw), np.nan)
    curves = []
    for j, s in enumerate(ds.subjects):
        st = int(res.status[j])
        c = cp[j].copy()
        if st != 0:
            warnings.append(f"ID {s.id}: {STATUS_TEXT.get(st, 'solver status ' + str(st))}; its CP is written as '.'")
            c[:] = np.nan
        pred[s.rows] = c[row_pos[j]]
        curves.append((s, ts[j][grid_pos[j]], c[grid_pos[j]], dose_ts[j]))

    table = ds.raw.copy()
    table["CP"] = ["." if not np.isfinite(v) else f"{v:.12g}" for v in pred]
    csv_bytes = table.to_csv(index=False, lineterminator="\n").encode()
    png = _plot_cp(curves, model, time_unit)
    return {"predictions.csv": csv_bytes, "cp.png": png, "_warnings": warnings}


def _plot_cp(curves, model, time_unit: str) -> bytes:
    import io

    from matplotlib.figure import Figure

    vname = "V" if model.name == "pk-1cmt" else "V1"
    fig = Figure(figsize=(11, 4.5), dpi=110, layout="constrained")
    ax_lin, ax_log = fig.subplots(1, 2)
    colors = [f"C{i % 10}" for i in range(len(curves))]
    any_pos = False
    for (s, t, c, dts), col in zip(curves, colors):
        lab = f"ID {s.id}"
        ax_lin.plot(t, c, color=col, lw=1.4, label=lab)
        pos = np.where(c > 0, c, np.nan)
        if np.any(np.isfinite(pos)):
            any_pos = True
            ax_log.plot(t, pos, color=col, lw=1.4, label=lab)
        obs = (s.evid == 0) & (s.mdv == 0) & np.isfinite(s.dv)
        if obs.any():
            ax_lin.plot(s.times[obs], s.dv[obs], "o", ms=4, mfc="none", color=col)
            dvp = s.dv[obs]
            ax_log.plot(s.times[obs][dvp > 0], dvp[dvp > 0], "o", ms=4, mfc="none", color=col)
        for ax in (ax_lin, ax_log):
            if dts.size:
                ax.plot(dts, np.full(dts.size, 0.0), "^", ms=7, color=col, clip_on=False,
                        transform=ax.get_xaxis_transform(), zorder=5)
    ax_lin.set_ylim(bottom=0)
    if any_pos:
        ax_log.set_yscale("log")
    else:
        ax_log.text(0.5, 0.5, "no positive CP", ha="center", va="center", transform=ax_log.transAxes)
    for ax, title in ((ax_lin, "linear scale"), (ax_log, "log scale")):
        ax.set_xlabel(f"time ({time_unit})")
        ax.set_ylabel(f"CP = central amount / {vname}\n(AMT units per volume unit)")
        ax.set_title(f"{model.name}: {title}  (\u25b2 doses, \u25cb DV)", fontsize=10)
        ax.grid(True, alpha=0.3)
    if len(curves) <= 12:
        ax_lin.legend(fontsize=8, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# drug mode
# --------------------------------------------------------------------------------------------------
def _simulate_drug(drug: str, regimen: str | None, days: float, premed: str) -> dict:
    """``--drug NAME [--regimen LABEL|FILE.csv] [--days D] [--premed none|label]``.

    Returns the bytes of ``timecourse.csv``, ``doses.csv`` and ``timecourse.png`` (moved into place by
    ``_write_outputs`` only when all succeeded).
    """
    import io

    from .drugrun import plot_drug_run, run_drug

    card, reg, _ = _drug_card_and_regimen(drug, regimen, days, premed)
    run = run_drug(card, reg, days=days, premed=premed)
    buf = io.BytesIO()
    plot_drug_run(run, buf)
    return {"timecourse.csv": run.timecourse.to_csv(index=False).encode(),
            "doses.csv": run.doses.to_csv(index=False).encode(), "timecourse.png": buf.getvalue(),
            "_table": run.doses.to_string(index=False, float_format=lambda x: f"{x:.4g}")}


def _drug_card_and_regimen(drug: str, regimen: str | None, days: float, premed: str):
    """Validate ``--drug``, ``--premed``, ``--days`` and ``--regimen``; return (card, regimen, regimen name).

    The regimen name is the label regimen's name, or the CSV file as given.
    """
    from .cards import load_card
    from .drugrun import PREMED_OPTIONS
    from .io.regimen_csv import read_regimen_csv

    try:
        card = load_card(drug)
    except InputError as e:
        raise InputError(str(e), field="--drug") from None
    if premed not in PREMED_OPTIONS:
        raise InputError(f"unknown premedication {premed!r}; allowed: {', '.join(PREMED_OPTIONS)}", field="--premed")
    if not (math.isfinite(days) and days > 0):
        raise InputError(f"must be a positive number of days, got {days}", field="--days")
    if regimen is not None and (regimen.lower().endswith(".csv") or os.path.sep in regimen):
        path = Path(regimen)
        if not path.is_file():
            raise InputError(f"regimen file not found: {regimen}", field="--regimen")
        reg = read_regimen_csv(path, until_day=days + 1)
        return card, reg, regimen
    name = regimen or card.default_regimen
    if name not in card.label_regimens():
        raise InputError(f"unknown regimen {name!r} for {card.name}; allowed: {', '.join(card.label_regimens())} "
                         "or a regimen CSV file", field="--regimen")
    return card, card.regimen(name, until_day=days + 1), name


# --------------------------------------------------------------------------------------------------
# population mode
# --------------------------------------------------------------------------------------------------
def _simulate_population(drug: str, regimen: str | None, days: float, premed: str | None, patients: int,
                         seed: int | None, outputs_per_day: int | None, progress: bool | None,
                         opts: _SolveOptions) -> dict:
    """``--drug NAME --patients N [--seed S] [--outputs-per-day K] [--progress]``: a virtual trial.

    Returns the bytes of ``crs_by_dose.csv``, ``population_timecourse.csv``, ``patients.csv``,
    ``population.png`` and ``summary.json``, and the printed table (``_table``).
    """
    from . import trial_report as rep
    from .trial import DEFAULT_CHUNK, run_card_trial

    premed = "label" if premed is None else premed
    seed = 0 if seed is None else seed
    outputs_per_day = 1 if outputs_per_day is None else outputs_per_day
    if patients < 1:
        raise InputError(f"must be a positive integer, got {patients}", field="--patients")
    if seed < 0:
        raise InputError(f"must be a non-negative integer, got {seed}", field="--seed")
    if outputs_per_day < 1:
        raise InputError(f"must be a positive integer, got {outputs_per_day}", field="--outputs-per-day")
    card, reg, reg_name = _drug_card_and_regimen(drug, regimen, days, premed)
    # Only the doses inside the horizon: the CRS layer counts doses at t <= days, and a later dose
    # still simulated would add its IL-6 rise to the window of the last counted dose.
    reg = reg.in_unit("day").until(days)
    if progress is None:
        progress = patients > DEFAULT_CHUNK
    trial = run_card_trial(card, reg, patients=patients, seed=seed, days=days, premed=premed, progress=progress,
                           outputs_per_day=outputs_per_day, solver=opts.solver, rtol=opts.rtol, atol=opts.atol,
                           max_steps=opts.max_steps)
    warnings = []
    nf = rep.n_failed(trial)
    if nf:
        from .simulate import STATUS_TEXT

        why = ", ".join(f"{k} x {STATUS_TEXT.get(c, f'status {c}')}" for c, k in rep.failure_counts(trial).items())
        warnings.append(f"{nf} of {patients} patients failed to solve ({why}); they are left out of the summaries "
                        "(status column of patients.csv)")
    is_label = reg_name in card.label_regimens()
    published = rep.published_crs(card.name, reg_name if is_label else None)
    note = f"label regimen {published['regimen'].iloc[0]}" if len(published) and not is_label else ""
    title = (f"{card.name}, regimen {reg_name}: {patients} virtual patients (seed {seed}), premedication {premed}")
    return {
        "crs_by_dose.csv": rep.crs_csv(trial),
        "population_timecourse.csv": rep.bands_csv(trial),
        "patients.csv": rep.patients_csv(trial),
        "population.png": rep.plot_population(trial, title=title, published=published, published_note=note),
        "summary.json": rep.summary_json(trial, drug=card.name, regimen=reg_name, patients=patients, seed=seed,
                                         days=days, premed=premed, outputs_per_day=outputs_per_day),
        "_table": rep.format_crs_table(trial),
        "_warnings": warnings,
    }


@app.command("drugs")
def drugs_command() -> None:
    """List the model-card library: drug, target, route, label regimens."""
    from .cards import list_cards, load_card

    rows = []
    for name in list_cards():
        c = load_card(name)
        rows.append((name, c.target, c.route, ", ".join(c.label_regimens())))
    w = [max(len(r[i]) for r in rows + [("drug", "target", "route", "")]) for i in range(3)]
    typer.echo(f"{'drug':<{w[0]}}  {'target':<{w[1]}}  {'route':<{w[2]}}  label regimens")
    for r in rows:
        typer.echo(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")


def main() -> None:
    """Console entry point (``qsp``)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
