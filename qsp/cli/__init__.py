"""Command line: thin commands over library calls, one module per command.

``qsp simulate`` (:mod:`qsp.cli.simulate`: dataset, drug and population modes), ``qsp drugs``
(:mod:`qsp.cli.drugs`), ``qsp optimize`` (:mod:`qsp.cli.optimize`: the step-up optimizer), ``qsp restart`` (:mod:`qsp.cli.restart`:
re-step-up rules after dose delays), ``qsp fih`` (:mod:`qsp.cli.fih`: first-in-human doses), ``qsp calibrate`` (:mod:`qsp.cli.calibrate`:
calibration job specs), ``qsp --version``. Exit codes and error handling: :mod:`qsp.cli.app`.
"""

from . import calibrate, drugs, fih, optimize, restart, simulate  # noqa: F401  (register the commands)
from .app import EXIT_SOLVER, EXIT_USAGE, app, main

__all__ = ["app", "main", "EXIT_USAGE", "EXIT_SOLVER"]
