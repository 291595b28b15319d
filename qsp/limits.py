"""Up-front limits on the size of a run, checked before any work is done.

A request that would run for hours or exhaust memory is refused at once, with a message that names the
option, the value, the limit and how to raise it. Every limit has a documented default and an
environment variable that overrides it (a positive number):

==================  =====================  =========  ===================================================
limit               environment variable   default    what it bounds
==================  =====================  =========  ===================================================
``patients``        ``QSP_MAX_PATIENTS``   200000     virtual patients in one run (``--patients``)
``days``            ``QSP_MAX_DAYS``       3650       simulated days (``--days``; 10 years)
``events``          ``QSP_MAX_EVENTS``     5000       dose events per patient or dataset ID after ADDL /
                                                      repeat expansion (each event is an integration
                                                      segment)
``output_points``   ``QSP_MAX_OUTPUTS``    200000     output times per patient (``--days`` x
                                                      ``--outputs-per-day``, or rows + grid of an ID)
``memory_gb``       ``QSP_MAX_MEMORY_GB``  6          estimated memory of one run's results (GB)
``ids``             ``QSP_MAX_IDS``        100000     IDs in one NONMEM dataset
``segment_outputs`` ``QSP_MAX_SEGMENT_``   2e7        integration segments x output times of one dataset
                    ``OUTPUTS``                       ID (every segment saves at every output time: about
                                                      1-1.4 us per pair, so 2e7 is ~30 s)
``draws``           ``QSP_MAX_DRAWS``      200        parameter sets drawn for intervals
                                                      (``--uncertainty K``; each is a whole virtual trial)
``patient_solves``  ``QSP_MAX_PATIENT_``   2e6        virtual patients x trials of one run
                    ``SOLVES``                        (``--patients`` x (``--uncertainty`` + 1))
==================  =====================  =========  ===================================================

The memory estimate is deliberately simple (results held in memory and their CSV text, plus one
chunk's working set); see :func:`trial_memory_bytes`. Larger cohorts are run as several runs with
different seeds or, in Python, by calling :func:`qsp.trial.run_trial` on sub-populations
(:meth:`qsp.population.VirtualPopulation.subset`): virtual patient *i* depends only on the seed and *i*,
so pieces of a cohort can be simulated separately and concatenated.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class Limit:
    name: str
    default: float
    env: str
    what: str


LIMITS = {
    "patients": Limit("patients", 200_000, "QSP_MAX_PATIENTS", "virtual patients in one run"),
    "days": Limit("days", 3650, "QSP_MAX_DAYS", "simulated days"),
    "events": Limit("events", 5_000, "QSP_MAX_EVENTS", "dose events per patient (after ADDL/repeat expansion)"),
    "output_points": Limit("output_points", 200_000, "QSP_MAX_OUTPUTS", "output times per patient"),
    "memory_gb": Limit("memory_gb", 6.0, "QSP_MAX_MEMORY_GB", "estimated memory of one run (GB)"),
    "ids": Limit("ids", 100_000, "QSP_MAX_IDS", "IDs in one dataset"),
    "segment_outputs": Limit("segment_outputs", 2e7, "QSP_MAX_SEGMENT_OUTPUTS",
                             "integration segments x output times per ID"),
    "draws": Limit("draws", 200, "QSP_MAX_DRAWS", "parameter draws (each a whole virtual trial)"),
    "patient_solves": Limit("patient_solves", 2e6, "QSP_MAX_PATIENT_SOLVES",
                            "patient solves in one run (patients x trials)"),
}


def limit(name: str) -> float:
    """The limit in force: the environment variable if set (a positive number), else the default."""
    lim = LIMITS[name]
    raw = os.environ.get(lim.env, "").strip()
    if not raw:
        return float(lim.default)
    try:
        v = float(raw)
    except ValueError:
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"environment variable {lim.env}={raw!r} must be a positive number", field=lim.env)
    return v


def _fmt(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.3g}"


def check_limit(name: str, value: float, *, field: str, hint: str = "", row: int | None = None) -> None:
    """Raise :class:`~qsp.errors.InputError` when ``value`` exceeds limit ``name``.

    The message names ``field``, the value, the limit, the environment variable that raises it and
    ``hint`` (another way to get there, e.g. splitting a cohort).
    """
    lim = LIMITS[name]
    cap = limit(name)
    if value > cap:
        extra = f"; {hint}" if hint else ""
        raise InputError(f"{_fmt(value)} exceeds the limit of {_fmt(cap)} {lim.what} (raise it with the "
                         f"environment variable {lim.env}{extra})", field=field, row=row)


def trial_memory_bytes(n_patients: int, n_times: int, n_outputs: int, n_doses: int, n_params: int, *,
                       chunk: int, seg_points: int, n_segments: int) -> float:
    """Estimated peak memory (bytes) of a virtual trial: results, their tables, one chunk's working set.

    - time courses: ``N x n_times x n_outputs`` float64, plus the band computation (x2);
    - per-dose CRS quantities (9 per dose) and the per-patient table text (~40 columns x ~12 bytes per
      patient and dose, held twice: DataFrame and CSV bytes);
    - parameters and covariates (``N x (n_params + 8)`` float64);
    - one chunk in the solver: per-segment IL-6 samples and output states
      (``chunk x n_segments x seg_points`` and ``chunk x n_times x 16``, float64, x4 for the solver's
      buffers).
    """
    f8 = 8.0
    results = n_patients * n_times * n_outputs * f8 * 2
    crs = n_patients * n_doses * 9 * f8
    table = n_patients * max(n_doses, 1) * 40 * 12 * 2
    params = n_patients * (n_params + 8) * f8
    working = chunk * (n_segments * seg_points + n_times * 16) * f8 * 4
    return results + crs + table + params + working


def check_memory(estimate_bytes: float, *, field: str, hint: str = "") -> None:
    """Refuse a run whose estimated memory exceeds ``QSP_MAX_MEMORY_GB``."""
    gb = estimate_bytes / 1e9
    cap = limit("memory_gb")
    if gb > cap:
        extra = f"; {hint}" if hint else ""
        raise InputError(f"the run would need about {gb:,.1f} GB of memory, above the limit of {_fmt(cap)} GB "
                         f"(raise it with the environment variable QSP_MAX_MEMORY_GB{extra})", field=field)


__all__ = ["LIMITS", "Limit", "limit", "check_limit", "trial_memory_bytes", "check_memory"]
