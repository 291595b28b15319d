"""``python -m qsp``: the command line (see :mod:`qsp.cli`)."""

from .cli import main

main()
