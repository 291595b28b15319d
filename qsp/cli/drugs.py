"""``qsp drugs``: the model-card library, built-in and user cards (``QSP_MODELS_DIR``).

A card that fails validation is listed as invalid with the reason (file, table, key); the others are
listed as usual, so one broken user card breaks nothing.
"""

from __future__ import annotations

import typer

from ..errors import InputError
from .app import EXIT_USAGE, app, echo_error


@app.command("drugs")
def drugs_command() -> None:
    """List the model-card library: drug, target, route, label regimens (and invalid cards with the reason)."""
    from ..cards import card_library

    try:
        lib = card_library()
    except InputError as e:  # e.g. QSP_MODELS_DIR names no folder
        echo_error(str(e))
        raise typer.Exit(EXIT_USAGE)
    if not lib:
        echo_error("no model cards found (the installation has no qsp._models package data)")
        raise typer.Exit(EXIT_USAGE)
    rows = []
    for s in lib:
        if s.card is None:
            rows.append((s.name, "-", "-", f"INVALID: {s.error}", s.location))
        else:
            c = s.card
            rows.append((s.name, c.target, c.route, ", ".join(c.label_regimens()) or "-", s.location))
    w = [max(len(r[i]) for r in rows + [("drug", "target", "route", "", "")]) for i in range(3)]
    user = any(r[4] != "built-in" for r in rows)
    typer.echo(f"{'drug':<{w[0]}}  {'target':<{w[1]}}  {'route':<{w[2]}}  label regimens" + ("  [source]" if user else ""))
    for r in rows:
        src = f"  [{r[4]}]" if user else ""
        typer.echo(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}{src}")
    bad = [s for s in lib if s.card is None]
    if bad:
        typer.echo(f"warning: {len(bad)} invalid card(s): {', '.join(s.name for s in bad)}", err=True)
