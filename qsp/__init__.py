"""qsp: mechanistic, differentiable PK/PD models for model-informed dosing of CD3 T-cell engagers.

Importing the package switches JAX to float64 (``jax_enable_x64``): the engine computes in double
precision by default. ``QSP_COMPILE_CACHE=<folder>`` turns on JAX's persistent compilation cache there
(programs that took over a second to compile are stored and reused by later processes on the same machine;
the calibration scripts use it so that a re-run or a leave-one-out fit does not compile again;
:func:`enable_compile_cache` turns it on from code, and ``qsp calibrate`` does so by default). This module
is the one place where process-wide JAX configuration is set.
"""

import os
import sys


def _ask_for_host_devices() -> None:
    """One XLA CPU device per available core, so batched solves can be split over cores (``pmap``).

    Only possible before JAX is first imported; ``QSP_HOST_DEVICES=<n>`` sets the number (1 turns it
    off) and an ``XLA_FLAGS`` that already sets the device count is left alone.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" in sys.modules or "xla_force_host_platform_device_count" in flags:
        return
    want = os.environ.get("QSP_HOST_DEVICES", "")
    try:
        n = int(want) if want else len(os.sched_getaffinity(0))
    except (ValueError, AttributeError):
        n = os.cpu_count() or 1
    if n > 1:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


_ask_for_host_devices()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)


def enable_compile_cache(folder: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache for this process and the processes it starts (the folder goes
    into ``QSP_COMPILE_CACHE``, which child processes such as Dask workers read when they import qsp).

    ``folder``: ``None`` keeps ``QSP_COMPILE_CACHE`` when set, else ``$XDG_CACHE_HOME/qsp-tce/jax``
    (``~/.cache/qsp-tce/jax``); ``QSP_COMPILE_CACHE=none`` turns the cache off. Call it before anything is
    compiled. Returns the folder, or ``None`` when off. ``qsp calibrate`` calls it, so that a resumed job, a
    second job and every Dask worker reuse the study programs compiled once on the machine.
    """
    env = os.environ.get("QSP_COMPILE_CACHE", "")
    if folder is None:
        if env.lower() == "none":
            return None
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = env or os.path.join(base, "qsp-tce", "jax")
    folder = os.path.abspath(os.path.expanduser(folder))  # workers in another directory find the same one
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:  # an unwritable cache is no reason to fail: compile as usual
        import warnings

        warnings.warn(f"compilation cache off: cannot create {folder} ({e})", stacklevel=2)
        return None
    os.environ["QSP_COMPILE_CACHE"] = folder
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return folder


if os.environ.get("QSP_COMPILE_CACHE", "").lower() not in ("", "none"):
    enable_compile_cache(os.environ["QSP_COMPILE_CACHE"])

from .errors import InputError  # noqa: E402
from .events import EventArrays, regimen_to_events, stack_events  # noqa: E402
from .model import Component, DoseRoute, Model, Output, Param, State  # noqa: E402
from .pkmodels import pk_model  # noqa: E402
from .regimen import Dose, Regimen  # noqa: E402
from .simulate import SimulationResult, SolverConfig, simulate, solve_events  # noqa: E402
from .units import Covariates, convert_dose  # noqa: E402

__version__ = "0.1.0"
__all__ = ["InputError", "EventArrays", "regimen_to_events", "stack_events", "Component", "DoseRoute", "Model",
           "Output", "Param", "State", "pk_model", "Dose", "Regimen", "SimulationResult", "SolverConfig",
           "simulate", "solve_events", "Covariates", "convert_dose"]
