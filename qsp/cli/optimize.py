"""``qsp optimize``: search step-up regimens for the least CRS that still reaches the treatment dose in time.

Thin over :mod:`qsp.optimize`: every argument is checked before any work (exit 2, one line, nothing written);
the search runs on ``--search-patients`` virtual patients; the best regimens of each number of steps and the
Pareto front are re-simulated on ``--patients`` fresh patients (seed ``--seed`` + 1) with ``--uncertainty K``
parameter draws; the outputs are written atomically into ``--out``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from ..errors import InputError
from .app import EXIT_USAGE, app, echo_error

HELP = """Search step-up regimens (number of steps, step doses, intervals, routes, splits) for the lowest CRS that
still reaches the label's treatment dose by --reach-by-day, robust over parameter uncertainty.

Writes into --out: pareto.csv (re-simulated on fresh patients; intervals with --uncertainty), regimens/*.csv (each
loadable by `qsp simulate --regimen`), label_comparison.csv, monitoring_plan.csv and restart_rules.csv (the best
regimen), stratified.csv with --subgroups, pareto.png, per_dose_crs.png, bands.png.

Example:
  qsp optimize --drug teclistamab --max-steps 3 --reach-by-day 7 --objective crs_g2 --uncertainty 20 --out opt_tec
"""


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"{name} must be comma-separated numbers of days, got {text!r}", field=name) from None
    if not vals or any(not (v > 0) for v in vals):
        raise InputError(f"{name} must be positive numbers of days, got {text!r}", field=name)
    return vals


@app.command("optimize", help=HELP)
def optimize_command(
    drug: str = typer.Option(..., "--drug", help="drug card name (see `qsp drugs`)"),
    max_steps: int = typer.Option(4, "--max-steps", help="largest number of step-up doses, 0-4"),
    reach_by_day: float = typer.Option(None, "--reach-by-day",
                                       help="reach the treatment dose within this many days of the first dose "
                                            "(default: as the label)"),
    objective: str = typer.Option("crs_g2", "--objective", help="crs_g2, crs_any or inpatient_days (step-up phase)"),
    min_exposure: float = typer.Option(0.8, "--min-exposure",
                                       help="exposure (AUC over the horizon) at least this fraction of the label's"),
    routes: str = typer.Option("", "--routes", help="routes a dose may take: SC, IV or SC,IV (default: the label's)"),
    intervals: str = typer.Option("1,2,3,4,7", "--intervals", help="allowed days between doses"),
    splits: bool = typer.Option(False, "--splits/--no-splits", help="allow a step split over two consecutive days"),
    uncertainty: int = typer.Option(0, "--uncertainty", help="parameter draws for intervals (0 or >= 2)"),
    search_draws: int = typer.Option(None, "--search-draws",
                                     help="parameter draws the search averages its objective over (default: "
                                          "min(--uncertainty, 4); 0: the point estimate)"),
    max_stays: int = typer.Option(None, "--max-inpatient-stays", help="at most this many inpatient stays"),
    subgroups: str = typer.Option("", "--subgroups",
                                  help="also search within subgroups: comma-separated from high_tumour_burden, "
                                       "low_t_cells, prior_tcr, or 'all'"),
    restart: bool = typer.Option(True, "--restart-rules/--no-restart-rules",
                                 help="write restart_rules.csv for the best regimen"),
    patients: int = typer.Option(200, "--patients", help="fresh virtual patients for the re-simulation"),
    search_patients: int = typer.Option(48, "--search-patients", help="virtual patients during the search"),
    seed: int = typer.Option(0, "--seed", help="seed of the search population (the fresh one is seed + 1)"),
    top: int = typer.Option(5, "--top", help="regimens re-simulated besides each step count's best"),
    threshold: float = typer.Option(5.0, "--inpatient-threshold",
                                    help="inpatient monitoring after a dose whose P(CRS >= 2) exceeds this %"),
    parameters: str = typer.Option("default", "--parameters", help="default, calibrated or prior"),
    out: Path = typer.Option(None, "--out", help="output folder"),
    bar: bool = typer.Option(None, "--progress/--no-progress",
                             help="progress bars on stderr (default: when stderr is a terminal)"),
) -> None:
    from ..cards import load_card
    from ..optimize.objectives import MonitoringRule
    from ..optimize.search import OBJECTIVES, SearchSettings
    from ..optimize.space import MAX_STEPS, OPT_ROUTES, RegimenSpace
    from ..uncertainty import check_draws
    from .outputs import prepare_out

    try:
        if not 0 <= max_steps <= MAX_STEPS:
            raise InputError(f"--max-steps must be 0-{MAX_STEPS}, got {max_steps}", field="--max-steps")
        if objective not in OBJECTIVES:
            raise InputError(f"unknown --objective {objective!r}; allowed: {', '.join(OBJECTIVES)}",
                             field="--objective")
        if not 0.0 <= min_exposure <= 1.0:
            raise InputError(f"--min-exposure must be a fraction 0-1 of the label's exposure, got {min_exposure}",
                             field="--min-exposure")
        if reach_by_day is not None and not reach_by_day >= 0:
            raise InputError(f"--reach-by-day must be a day on or after the first dose (>= 0), got {reach_by_day}",
                             field="--reach-by-day")
        rts = tuple(r.strip().upper() for r in routes.split(",") if r.strip())
        bad = [r for r in rts if r not in OPT_ROUTES]
        if bad:
            raise InputError(f"unknown route(s) {bad} in --routes; allowed: {', '.join(OPT_ROUTES)}", field="--routes")
        ivs = _floats(intervals, "--intervals")
        if uncertainty:
            check_draws(uncertainty, field="--uncertainty")
        for name, v, lo in (("--patients", patients, 10), ("--search-patients", search_patients, 4), ("--top", top, 1)):
            if v < lo:
                raise InputError(f"{name} must be at least {lo}, got {v}", field=name)
        if search_draws is None:
            search_draws = min(uncertainty, 4)
        if search_draws and search_draws < 2:
            raise InputError(f"--search-draws must be 0 or at least 2, got {search_draws}", field="--search-draws")
        if search_draws < 0:
            raise InputError(f"--search-draws must be 0 or at least 2, got {search_draws}", field="--search-draws")
        if max_stays is not None and max_stays < 0:
            raise InputError(f"--max-inpatient-stays must be a non-negative integer, got {max_stays}",
                             field="--max-inpatient-stays")
        from ..subgroups import SUBGROUPS

        sgs = tuple(SUBGROUPS) if subgroups.strip() == "all" else tuple(
            x.strip() for x in subgroups.split(",") if x.strip())
        bad = [x for x in sgs if x not in SUBGROUPS]
        if bad:
            raise InputError(f"unknown subgroup(s) {bad} in --subgroups; allowed: {', '.join(SUBGROUPS)}, all",
                             field="--subgroups")
        if parameters not in ("default", "calibrated", "prior"):
            raise InputError(f"unknown --parameters {parameters!r}; allowed: default, calibrated, prior",
                             field="--parameters")
        rule = MonitoringRule(g2_threshold_pct=threshold)
        out_dir = prepare_out(out)
        card = load_card(drug)
        kw = {"routes": rts} if rts else {}
        space = RegimenSpace.from_label(card.name, card.regimen(until_day=120), max_steps=max_steps,
                                        interval_days=ivs, allow_splits=splits, **kw)
        lab_days = space.days_to_treatment_dose(space.label_candidate())
        if reach_by_day is None:
            reach_by_day = lab_days
        settings = SearchSettings(objective=objective, reach_by_day=reach_by_day, rule=rule, seed=seed)
        pset = None if parameters == "default" else parameters
        if pset is not None or uncertainty or search_draws:
            from ..paramsets import resolve_parameter_set

            got = resolve_parameter_set(card.name, card.model(), pset)  # refuse a missing calibrated file now
            if (uncertainty or search_draws) and got.name != "calibrated":
                flag = "--uncertainty" if uncertainty else "--search-draws"
                why = ("--parameters prior was given" if pset == "prior" else
                       "no calibrated parameter file is available, so the default set is prior")
                raise InputError(f"{flag} draws from the calibrated fit: it needs --parameters calibrated ({why})",
                                 field=flag)
    except InputError as e:
        echo_error(str(e))
        raise typer.Exit(EXIT_USAGE)

    from ..optimize.workflow import run_optimize

    t0 = time.perf_counter()
    files, summary = run_optimize(card, space, settings, rule=rule, search_patients=search_patients,
                                  patients=patients, seed=seed, draws=uncertainty, search_draws=search_draws,
                                  top=top, min_exposure=min_exposure, max_inpatient_stays=max_stays,
                                  subgroups=sgs, restart=restart, parameters=pset,
                                  progress=lambda msg: typer.echo(msg, err=True),
                                  bar=sys.stderr.isatty() if bar is None else bar)
    from .outputs import write_outputs

    try:
        written = write_outputs(out_dir, files, owner="optimize")
    except InputError as e:
        echo_error(str(e))
        raise typer.Exit(EXIT_USAGE)
    typer.echo(summary)
    typer.echo(f"done in {time.perf_counter() - t0:.0f} s; wrote {len(written)} files into {out_dir}")

