"""Drug mode (``--drug NAME``, one typical patient) and population mode (``--drug NAME --patients N``).

Everything is checked before the model is solved: the card, ``--premed``, ``--days`` (and its limit), the
regimen (a label regimen name or a regimen CSV; its dose events counted before any repeat is expanded),
``--param`` (card parameters, each within its domain; ``CRS_*`` with ``--patients``), the parameter set
(``--parameters``: the calibrated file must exist and fit the drug's model), ``--uncertainty`` (K draws, needs
calibrated parameters), the population limits and the estimated memory.

The parameter set used is printed (one ``parameters: ...`` line before the table) and, in population mode,
recorded in ``summary.json`` (``parameters``: set, level, file, fit date, values).

Doses and the horizon: ``--days D`` simulates model time 0 to D, i.e. days 1 to D (day 1 = first dose).
A dose of a user regimen on day D + 1 or later is an error (the regimen and the horizon disagree); the
repeats of a row that started inside the horizon, and label doses after it, are not simulated and are
listed in a warning.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..limits import check_limit, check_memory, trial_memory_bytes
from .app import SolverFailure
from .simulate import SolveOptions

FLOAT_FORMAT = "%.6g"
DRUG_STEPS_PER_DAY = 48


def _csv(df) -> bytes:
    return df.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n").encode()


def _days(days: float | None) -> float:
    days = 35.0 if days is None else float(days)
    if not (math.isfinite(days) and days > 0):
        raise InputError(f"must be a positive number of days, got {days:g}", field="--days")
    check_limit("days", days, field="--days")
    return days


def _count_events(reg) -> int:
    """Dose events after repeat expansion, counted without expanding."""
    return int(sum(d.addl + 1 for d in reg.doses))


def resolve_card_and_regimen(drug: str, regimen: str | None, days: float, premed: str):
    """Validate ``--drug``, ``--premed`` and ``--regimen`` against the horizon ``days``.

    Returns (card, regimen inside the horizon in days, regimen name, whether it is a label regimen,
    warnings).
    """
    from ..cards import load_card
    from ..io.regimen_csv import read_regimen_csv
    from ..premedication import PREMED_OPTIONS, drug_doses

    try:
        card = load_card(drug)
    except InputError as e:
        raise InputError(str(e), field="--drug") from None
    if premed not in PREMED_OPTIONS:
        raise InputError(f"unknown premedication {premed!r}; allowed: {', '.join(PREMED_OPTIONS)}", field="--premed")
    warnings = []
    is_file = regimen is not None and (regimen.lower().endswith(".csv") or os.path.sep in regimen)
    if is_file:
        path = Path(regimen)
        if not path.is_file():
            raise InputError(f"regimen file not found: {regimen}", field="--regimen")
        try:
            reg = read_regimen_csv(path, until_day=days)
        except InputError as e:
            raise InputError(f"{regimen}: {e}", field="--regimen") from None
        name = regimen
    else:
        name = regimen or card.default_regimen
        if name not in card.label_regimens():
            raise InputError(f"unknown regimen {name!r} for {card.name}; allowed: "
                             f"{', '.join(card.label_regimens())} or a regimen CSV file", field="--regimen")
        reg = card.regimen(name, until_day=days)
    reg = reg.in_unit("day")
    check_limit("events", _count_events(reg), field="--regimen", hint="fewer repeats or a shorter --days")
    late_rows = [d for d in reg.doses if d.time >= days]
    if is_file and late_rows:
        d = late_rows[0]
        raise InputError(f"{regimen}: a dose on day {d.time + 1:g} lies after the simulated horizon (--days {days:g} "
                         f"simulates days 1-{days:g}); raise --days or remove the dose", field="--regimen")
    expanded = reg.expanded()
    beyond = [d for d in drug_doses(expanded) if d.time >= days]
    inside = expanded.with_doses([d for d in expanded.doses if d.time < days])
    if not drug_doses(inside):
        raise InputError(f"no dose of {name} falls within --days {days:g}", field="--days")
    if beyond:
        shown = ", ".join(f"{d.time + 1:g}" for d in beyond[:8]) + (" ..." if len(beyond) > 8 else "")
        warnings.append(f"{len(beyond)} dose(s) of the regimen after day {days:g} are not simulated (days {shown}); "
                        "raise --days to include them")
    return card, inside, name, not is_file, warnings


def _split_params(card, params: dict[str, float], population: bool) -> tuple[dict, dict]:
    """--param values -> (model parameter overrides, CRS overrides), validated against the card's model."""
    from ..crs import CRS_DEFAULTS, crs_params

    model = card.model()
    info = model.param_info
    mp, cp = {}, {}
    for k, v in params.items():
        key = "V" if (k == "V1" and "V" in info and "V1" not in info) else k  # 1-cmt cards call V "V1"
        if k in CRS_DEFAULTS:
            if not population:
                raise InputError(f"{k} is a CRS parameter: it applies with --patients (population mode)",
                                 field="--param")
            cp[k] = v
        elif key in info:
            mp[key] = v
        else:
            raise InputError(f"unknown parameter {k!r} for {card.name}; allowed: {', '.join(info)}"
                             + (f", {', '.join(CRS_DEFAULTS)}" if population else ""), field="--param")
    try:
        model.params(mp)
        crs_params(cp)
    except InputError as e:
        raise InputError(str(e), field="--param") from None
    return mp, cp


def resolve_parameters(card, parameters: str | None):
    """``--parameters`` (None: the default set) -> a :class:`qsp.paramsets.ParameterSet` for the card's model;
    errors name ``--parameters`` and the allowed values."""
    from ..paramsets import check_parameter_set_name, resolve_parameter_set

    try:
        if parameters is not None:
            parameters = check_parameter_set_name(parameters)
        return resolve_parameter_set(card.name, card.model(), parameters)
    except InputError as e:
        if e.field != "parameters":  # a bad $QSP_CALIBRATED or a malformed file: its own field
            raise
        msg = str(e).removeprefix("parameters: ").replace("use the prior parameters", "use --parameters prior")
        raise InputError(msg, field="--parameters") from None


def simulate_drug(drug: str, regimen: str | None, days: float | None, premed: str | None, params: dict,
                  opts: SolveOptions, parameters: str | None = None) -> dict:
    """One typical patient: ``timecourse.csv``, ``doses.csv``, ``timecourse.png`` (and the printed table)."""
    from ..drugrun import WINDOW_POINTS, SolveFailed, plot_drug_run, run_drug

    days = _days(days)
    premed = "none" if premed is None else premed
    card, reg, _, _, warnings = resolve_card_and_regimen(drug, regimen, days, premed)
    mp, _ = _split_params(card, params, population=False)
    pset = resolve_parameters(card, parameters)
    n_doses = sum(1 for d in reg.doses if d.route != "premed_dex")
    check_limit("output_points", days * DRUG_STEPS_PER_DAY + n_doses * (WINDOW_POINTS + 1), field="--days")
    try:
        run = run_drug(card, reg, days=days, premed=premed, params=mp or None, steps_per_day=DRUG_STEPS_PER_DAY,
                       solver=opts.solver, rtol=opts.rtol, atol=opts.atol, max_steps=opts.max_steps,
                       parameters=pset)
    except SolveFailed as e:
        raise SolverFailure(str(e)) from None
    buf = io.BytesIO()
    plot_drug_run(run, buf)
    table = run.doses.to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")
    n_ss = int(run.result.ss_intervals)
    notes = (f"steady state: {n_ss} dosing intervals iterated to convergence (NONMEM's empirical method; "
             "qsp.steady_state)") if n_ss else ""
    return {"timecourse.csv": _csv(run.timecourse), "doses.csv": _csv(run.doses), "timecourse.png": buf.getvalue(),
            "_parameters": pset.describe(), "_table": table, "_warnings": warnings, "_notes": notes}


def _dask_client(address: str):
    """A Dask client of ``--scheduler``; an unreachable address is an InputError naming the option."""
    try:
        from dask.distributed import Client

        return Client(address, timeout="5s")
    except (OSError, TimeoutError, ValueError) as e:
        raise InputError(f"cannot reach the Dask scheduler {address!r} ({type(e).__name__}: {e}); start one with "
                         "`dask scheduler` and workers with `dask worker ADDRESS`", field="--scheduler") from None


def simulate_population(drug: str, regimen: str | None, days: float | None, premed: str | None, patients: int,
                        seed: int | None, outputs_per_day: int | None, progress: bool | None, params: dict,
                        opts: SolveOptions, parameters: str | None = None, uncertainty: int | None = None,
                        scheduler: str | None = None) -> dict:
    """A virtual trial: ``crs_by_dose.csv``, ``population_timecourse.csv``, ``patients.csv``,
    ``population.png``, ``summary.json`` (and ``failed_patients.csv`` when some patients failed).

    ``parameters``: the parameter set (``--parameters``); ``uncertainty``: K parameter draws from the fit
    (``--uncertainty``, :mod:`qsp.uncertainty`), checked with everything else before any solve; ``scheduler``: a
    Dask scheduler address whose workers solve the patients (connected to before any solve)."""
    from .. import trial_report as rep
    from ..trial import DEFAULT_CHUNK, SEG_POINTS, run_card_trial

    premed = "label" if premed is None else premed
    seed = 0 if seed is None else seed
    outputs_per_day = 1 if outputs_per_day is None else outputs_per_day
    if patients < 1:
        raise InputError(f"must be a positive integer, got {patients}", field="--patients")
    check_limit("patients", patients, field="--patients",
                hint="or run the cohort in pieces: patient i depends only on --seed and i")
    if not 0 <= seed < 2**63:
        raise InputError(f"must be an integer from 0 to 2^63-1, got {seed}", field="--seed")
    if not 1 <= outputs_per_day <= 1440:
        raise InputError(f"must be an integer from 1 to 1440, got {outputs_per_day}", field="--outputs-per-day")
    days = _days(days)
    card, reg, reg_name, is_label, warnings = resolve_card_and_regimen(drug, regimen, days, premed)
    mp, cp = _split_params(card, params, population=True)
    pset = resolve_parameters(card, parameters)
    if uncertainty is not None:
        from ..uncertainty import check_draws

        k = check_draws(uncertainty, field="--uncertainty")
        if pset.name != "calibrated":
            why = ("--parameters prior was given" if parameters is not None else
                   "no calibrated parameter file is available, so the default set is prior")
            raise InputError(f"draws from the calibrated fit: it needs --parameters calibrated ({why})",
                             field="--uncertainty")
        check_limit("patient_solves", patients * (k + 1), field="--uncertainty",
                    hint="or fewer --patients / draws")
    n_doses = sum(1 for d in reg.doses if d.route != "premed_dex")
    horizon = days + 7.0
    n_times = int(round(horizon * outputs_per_day)) + 1
    check_limit("output_points", n_times, field="--outputs-per-day")
    est = trial_memory_bytes(patients, n_times, 4, n_doses, len(card.model().param_info),
                             chunk=min(patients, DEFAULT_CHUNK), seg_points=SEG_POINTS, n_segments=2 * n_doses + 2)
    check_memory(est, field="--patients", hint="or fewer --patients / --outputs-per-day per run")
    if progress is None:
        progress = patients > DEFAULT_CHUNK
    client = _dask_client(scheduler) if scheduler else None
    trial = run_card_trial(card, reg, patients=patients, seed=seed, days=days, premed=premed, progress=progress,
                           outputs_per_day=outputs_per_day, solver=opts.solver, rtol=opts.rtol, atol=opts.atol,
                           max_steps=opts.max_steps, params=mp or None, crs=cp or None, parameters=pset,
                           client=client)
    unc = None
    if uncertainty is not None:
        from ..uncertainty import run_trial_uncertainty

        unc = run_trial_uncertainty(card, reg, draws=k, seed=seed, patients=patients, days=days, premed=premed,
                                    progress=progress, outputs_per_day=outputs_per_day, solver=opts.solver,
                                    rtol=opts.rtol, atol=opts.atol, max_steps=opts.max_steps, params=mp or None,
                                    crs=cp or None, client=client)
        n_draw_failed = sum(unc.n_failed)
        if n_draw_failed:
            warnings.append(f"the solver failed for {n_draw_failed} patient solve(s) over the {k} parameter draws "
                            f"(per draw: {', '.join(str(n) for n in unc.n_failed)}); each draw's percentages "
                            "leave its failed patients out")
    published = rep.published_crs(card.name, reg_name if is_label else None)
    note = f"label regimen {published['regimen'].iloc[0]}" if len(published) and not is_label else ""
    title = (f"{card.name}, regimen {reg_name}: {patients} virtual patients (seed {seed}), premedication {premed}, "
             f"{pset.name} parameters")
    files = {
        "crs_by_dose.csv": rep.crs_csv(trial, unc),
        "population_timecourse.csv": rep.bands_csv(trial),
        "patients.csv": rep.patients_csv(trial),
        "population.png": rep.plot_population(trial, title=title, published=published, published_note=note,
                                              uncertainty=unc),
        "summary.json": rep.summary_json(trial, drug=card.name, regimen=reg_name, patients=patients, seed=seed,
                                         days=days, premed=premed, outputs_per_day=outputs_per_day,
                                         parameters=pset.summary(),
                                         **({"uncertainty": unc.summary()} if unc is not None else {})),
        "_parameters": pset.describe(),
        "_table": rep.format_crs_table(trial, unc),
        "_warnings": warnings,
    }
    nf = rep.n_failed(trial)
    if nf:
        from ..simulate import STATUS_TEXT

        ids = np.flatnonzero(np.asarray(trial.status) != 0)
        lines = ["id,status,reason"] + [f"{i},{int(trial.status[i])},"
                                        f"{STATUS_TEXT.get(int(trial.status[i]), 'solver status')}" for i in ids]
        files["failed_patients.csv"] = ("\n".join(lines) + "\n").encode()
        why = ", ".join(f"{k} x {STATUS_TEXT.get(c, f'status {c}')}" for c, k in rep.failure_counts(trial).items())
        shown = ", ".join(str(i) for i in ids[:20]) + (" ..." if ids.size > 20 else "")
        files["_failed"] = (f"the solver failed for {nf} of {patients} patients ({why}; ids {shown}; see "
                            "failed_patients.csv); they are left out of the summaries")
    return files
