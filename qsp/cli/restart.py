"""``qsp restart``: the re-step-up table after dose delays (resume, step back, or restart the step-up).

Thin over :func:`qsp.optimize.restart.restart_table`; arguments checked before any work (exit 2, one line).
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from .app import EXIT_USAGE, app, echo_error

HELP = """Print the re-step-up rules of a regimen: for each dose (2-7 by default) and delay window, whether to
resume as planned, step back one dose, or restart the step-up, so that the predicted P(CRS >= 2) after the
resumed dose stays at or below the largest per-dose P(CRS >= 2) of the regimen's own step-up.

Example:
  qsp restart --drug teclistamab --delays 3,7,14,28,42 --patients 100
"""


@app.command("restart", help=HELP)
def restart_command(
    drug: str = typer.Option(..., "--drug", help="drug card name (see `qsp drugs`)"),
    regimen: str = typer.Option(None, "--regimen", help="a label regimen name or a regimen CSV (default: the label)"),
    delays: str = typer.Option("3,7,14,21,28,42,56", "--delays", help="delays to test (days)"),
    doses: str = typer.Option("", "--doses", help="dose numbers to delay (default 2-7)"),
    patients: int = typer.Option(100, "--patients", help="virtual patients"),
    seed: int = typer.Option(0, "--seed", help="seed of the virtual patients"),
    tolerance: float = typer.Option(1.0, "--tolerance", help="accepted risk as a multiple of the step-up's own"),
    out: Path = typer.Option(None, "--out", help="also write restart_rules.csv and restart_risks.csv here"),
) -> None:
    from ..optimize.restart import restart_table
    from .optimize import _floats
    from .outputs import prepare_out
    from .sim_drug import resolve_card_and_regimen

    try:
        dl = _floats(delays, "--delays")
        try:
            ks = tuple(int(x) for x in doses.split(",") if x.strip())
        except ValueError:
            raise InputError(f"--doses must be comma-separated dose numbers, got {doses!r}", field="--doses") from None
        if patients < 10:
            raise InputError(f"--patients must be at least 10, got {patients}", field="--patients")
        if not tolerance > 0:
            raise InputError(f"--tolerance must be positive, got {tolerance}", field="--tolerance")
        out_dir = prepare_out(out) if out is not None else None
        card, reg, *_ = resolve_card_and_regimen(drug, regimen, 180.0, "none")
        from ..premedication import drug_doses

        n = len(drug_doses(reg))
        bad = [k for k in ks if not 2 <= k <= n]
        if bad:
            raise InputError(f"--doses {bad}: allowed 2-{n} for this regimen", field="--doses")
    except InputError as e:
        echo_error(str(e))
        raise typer.Exit(EXIT_USAGE)
    rules, raw = restart_table(card, reg, delays=dl, doses=ks or None, patients=patients, seed=seed,
                               tolerance=tolerance, progress=lambda m: typer.echo(m, err=True))
    shown = rules.copy()
    shown["delay"] = [f"{a:g}-{b:g} d" if a != b else f"{a:g} d" for a, b in zip(shown.delay_from_days,
                                                                               shown.delay_to_days)]
    typer.echo(shown[["dose_no", "planned_day", "dose", "unit", "delay", "action", "risk_g2_pct",
                      "reference_g2_pct"]].to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    if out_dir is not None:
        from .outputs import write_outputs

        try:
            write_outputs(out_dir, {"restart_rules.csv": rules.to_csv(index=False).encode(),
                                    "restart_risks.csv": raw.to_csv(index=False).encode()}, owner="restart")
        except InputError as e:  # e.g. the folder became read-only during the run
            echo_error(str(e))
            raise typer.Exit(EXIT_USAGE)
