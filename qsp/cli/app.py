"""The ``qsp`` Typer application, its error handling and exit codes.

Exit codes (documented in the README and ``qsp --help``):

* ``0`` — done;
* ``2`` — bad input (a file, option, card or record): one line ``error: ...`` on stderr naming the field
  (and row/file), nothing written, no traceback;
* ``3`` — the run completed but the ODE solver failed for some (or all) patients or dataset IDs: the
  outputs are written with the failures marked, and one ``failed: ...`` line on stderr names them.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException as _ClickException

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SOLVER = 3

ROOT_HELP = """Mechanistic, differentiable PK/PD models for CD3 T-cell engagers.

Exit codes: 0 done; 2 bad input (one 'error:' line naming the field, nothing written); 3 the solver
failed for some patients or IDs (outputs written with them marked, one 'failed:' line)."""


class SolverFailure(Exception):
    """A run whose only patient failed to solve: nothing to write, exit code 3."""


class OneLineErrors(TyperGroup):
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
                echo_error(e.format_message())
            code = EXIT_USAGE
        except typer.Abort:
            echo_error("aborted")
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


def echo_error(msg: str, prefix: str = "error") -> None:
    line = " ".join(str(msg).split())
    typer.echo(f"{prefix}: {line}", err=True)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"qsp {__version__}")
        raise typer.Exit(0)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help=ROOT_HELP, context_settings={"help_option_names": ["-h", "--help"]})


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """qsp: simulate PK/PD models of T-cell engagers (see `qsp COMMAND --help`)."""


def main() -> None:
    """Console entry point (``qsp``)."""
    app()
