"""``qsp fih``: first-in-human starting-dose estimates (MABEL) for a card, each with its assumption.

Thin over :func:`qsp.optimize.fih.fih_doses`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from .app import EXIT_USAGE, app, echo_error

HELP = """Print first-in-human starting doses (MABEL) of a TCE card three ways: peak CD3 receptor occupancy,
trimers per T cell at the in-vitro EC20 of activation, and a minimal IL-6 rise; each with its assumptions.

Example:
  qsp fih --card my_new_tce.toml
  qsp fih --drug teclistamab --ro 20
"""


@app.command("fih", help=HELP)
def fih_command(
    card_file: Path = typer.Option(None, "--card", help="a model card TOML file (a new drug)"),
    drug: str = typer.Option(None, "--drug", help="or a card of the library (its calibrated values by default)"),
    ro: float = typer.Option(10.0, "--ro", help="receptor occupancy criterion, %"),
    activation: float = typer.Option(20.0, "--activation", help="in-vitro activation level, %"),
    il6_rise: float = typer.Option(0.2, "--il6-rise", help="IL-6 rise over baseline (fraction)"),
    parameters: str = typer.Option("default", "--parameters", help="default, calibrated or prior (--drug only)"),
) -> None:
    from ..optimize.fih import FihSettings, fih_doses

    try:
        if (card_file is None) == (drug is None):
            raise InputError("give exactly one of --card FILE or --drug NAME", field="--card")
        try:
            settings = FihSettings(ro_pct=ro, activation_pct=activation, il6_rise=il6_rise)
        except InputError as e:
            flag = {"ro_pct": "--ro", "activation_pct": "--activation", "il6_rise": "--il6-rise"}.get(e.field, e.field)
            raise InputError(str(e).split(": ", 1)[-1], field=flag) from None
        if parameters not in ("default", "calibrated", "prior"):
            raise InputError(f"unknown --parameters {parameters!r}; allowed: default, calibrated, prior",
                             field="--parameters")
        if card_file is not None:
            from ..cards import load_card_file

            if parameters != "default":
                raise InputError("--parameters applies to library cards (--drug) only", field="--parameters")
            card = load_card_file(card_file)
            params, used = None, "the card's own values"
        else:
            from ..cards import load_card
            from ..paramsets import resolve_parameter_set

            card = load_card(drug)
            pset = resolve_parameter_set(card.name, card.model(), None if parameters == "default" else parameters)
            params, used = pset.model_values, f"parameter set: {pset.name}"
    except InputError as e:
        echo_error(str(e))
        raise typer.Exit(EXIT_USAGE)
    rows = fih_doses(card, settings=settings, params=params)
    typer.echo(f"{card.name}: first-in-human starting dose estimates, one dose on the card's first-dose route "
               f"({rows[0]['route']}), typical patient ({used})")
    for r in rows:
        dose = "not reached up to the largest dose tried" if r["dose"] is None else f"{r['dose']:.3g} {r['unit']}"
        typer.echo(f"- {r['method']}: {dose} ({r['criterion']})\n    assumption: {r['assumption']}")
