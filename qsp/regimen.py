"""Regimens as data: dose events with time, amount, unit, route, infusion duration and repeats.

A :class:`Regimen` is an immutable, validated list of :class:`Dose` records in one time unit
(``"h"`` or ``"day"``). Regimens compose: ``stepup + maintenance`` concatenates two regimens on the
same clock, ``r.shifted(7)`` moves one in time, and NONMEM-style repeats (``ii``/``addl``) expand into
single doses with :meth:`Regimen.expanded`.

Routes
------
``IV_bolus``      instantaneous IV injection (an exact jump of the central amount)
``IV_infusion``   zero-order IV infusion over ``duration`` (needed)
``IV_continuous`` continuous IV infusion; the dose is a rate (``ug/day``) over ``duration``
``SC``            subcutaneous injection into the absorption depot (bioavailability F, lag)
``IP``            intraperitoneal injection into the peritoneal depot (where a model has one)
``premed_dex``    dexamethasone premedication (mg) into the TCE model's DEX state

Bioavailability and lag belong to the route and are model parameters (e.g. ``F`` and ``ALAG`` for SC);
see :class:`qsp.model.DoseRoute`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from .errors import InputError
from .units import Covariates, convert_dose, is_rate_unit, normalize_unit

ROUTES = ("IV_bolus", "IV_infusion", "IV_continuous", "SC", "IP", "premed_dex")
INFUSION_ROUTES = ("IV_infusion", "IV_continuous")
TIME_UNITS = {"h": 1.0 / 24.0, "day": 1.0}  # value: days per unit
_ROUTE_ALIASES = {"iv": "IV_bolus", "iv_bolus": "IV_bolus", "bolus": "IV_bolus", "iv_infusion": "IV_infusion",
                  "infusion": "IV_infusion", "iv_continuous": "IV_continuous", "civ": "IV_continuous",
                  "sc": "SC", "subcutaneous": "SC", "ip": "IP", "intraperitoneal": "IP", "premed_dex": "premed_dex",
                  "dexamethasone": "premed_dex"}


def normalize_route(route: str, *, row: int | None = None, field_name: str = "route") -> str:
    """Canonical route name, or :class:`InputError` listing the allowed routes."""
    key = str(route).strip().lower()
    if key not in _ROUTE_ALIASES:
        raise InputError(f"unknown route {route!r}; allowed: {', '.join(ROUTES)} (or IV)", field=field_name, row=row)
    return _ROUTE_ALIASES[key]


def check_time_unit(unit: str) -> str:
    if unit not in TIME_UNITS:
        raise InputError(f"unknown time unit {unit!r}; allowed: {', '.join(TIME_UNITS)}", field="time_unit")
    return unit


def time_factor(src: str, dst: str) -> float:
    """Multiply a time in ``src`` units by this to get ``dst`` units."""
    return TIME_UNITS[check_time_unit(src)] / TIME_UNITS[check_time_unit(dst)]


def _finite(x) -> bool:
    # numbers.Real also admits numpy scalars (np.int64 is not an int subclass), e.g. times from np.arange
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Dose:
    """One dose record (times and durations in the owning regimen's time unit).

    Attributes:
        time: administration time (before any route lag).
        amount: dose amount in ``unit``; for ``IV_continuous`` with a rate unit it is the rate.
        unit: one of :data:`qsp.units.ALL_UNITS`.
        route: one of :data:`ROUTES`.
        duration: infusion duration (needed for infusions, not allowed for SC/bolus).
        ii: interdose interval of repeats; ``addl``: number of additional doses (NONMEM II/ADDL).
        cmt: explicit target compartment (model state name) overriding the route's default.
        reset: reset the system to its initial state before this dose (NONMEM EVID 3/4).
        label: free text ("step-up dose 1").
    """

    time: float
    amount: float
    unit: str = "mg"
    route: str = "IV_bolus"
    duration: float | None = None
    ii: float = 0.0
    addl: int = 0
    cmt: str | None = None
    reset: bool = False
    label: str = ""

    def __post_init__(self):
        if not _finite(self.time):
            raise InputError(f"dose time must be a finite number, got {self.time!r}", field="time")
        if not _finite(self.amount) or self.amount < 0:
            raise InputError(f"dose amount must be a non-negative finite number, got {self.amount!r}", field="amount")
        object.__setattr__(self, "unit", normalize_unit(self.unit))
        object.__setattr__(self, "route", normalize_route(self.route))
        if self.duration is not None and (not _finite(self.duration) or self.duration <= 0):
            raise InputError(f"infusion duration must be a positive number, got {self.duration!r}", field="duration")
        if self.route in INFUSION_ROUTES and self.duration is None:
            raise InputError(f"route {self.route} needs an infusion duration", field="duration")
        if self.route not in INFUSION_ROUTES and self.duration is not None:
            raise InputError(f"route {self.route} takes no duration (use IV_infusion for an infusion)",
                             field="duration")
        if is_rate_unit(self.unit) and self.route != "IV_continuous":
            raise InputError(f"a rate unit ({self.unit}) needs route IV_continuous, got {self.route}", field="unit")
        if not _finite(self.ii) or self.ii < 0:
            raise InputError(f"II must be a non-negative number, got {self.ii!r}", field="ii")
        if not isinstance(self.addl, numbers.Integral) or isinstance(self.addl, bool) or self.addl < 0:
            raise InputError(f"ADDL must be a non-negative integer, got {self.addl!r}", field="addl")
        object.__setattr__(self, "addl", int(self.addl))
        if self.addl > 0 and self.ii <= 0:
            raise InputError("ADDL > 0 needs a positive II (interdose interval)", field="addl")
        if self.duration is not None and self.addl > 0 and self.duration > self.ii:
            raise InputError("infusion duration is longer than the interdose interval II", field="duration")

    @property
    def is_infusion(self) -> bool:
        return self.route in INFUSION_ROUTES

    def repeats(self) -> list["Dose"]:
        """This dose and its ``addl`` repeats every ``ii``, as single doses."""
        base = replace(self, ii=0.0, addl=0)
        return [replace(base, time=self.time + k * self.ii) for k in range(self.addl + 1)]


@dataclass(frozen=True)
class Regimen:
    """An ordered list of doses on one clock (``time_unit`` is ``"h"`` or ``"day"``)."""

    doses: tuple[Dose, ...] = ()
    time_unit: str = "day"
    name: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self):
        check_time_unit(self.time_unit)
        doses = tuple(self.doses)
        for d in doses:
            if not isinstance(d, Dose):
                raise InputError(f"regimen entries must be Dose records, got {type(d).__name__}", field="doses")
        object.__setattr__(self, "doses", tuple(sorted(doses, key=lambda d: d.time)))

    # --- construction helpers -------------------------------------------------------------------
    @classmethod
    def single(cls, amount: float, unit: str = "mg", route: str = "IV_bolus", time: float = 0.0, *,
               duration: float | None = None, time_unit: str = "day", **kw) -> "Regimen":
        return cls((Dose(time, amount, unit, route, duration, **kw),), time_unit=time_unit)

    @classmethod
    def repeat(cls, amount: float, unit: str, route: str, *, start: float, every: float, count: int,
               duration: float | None = None, time_unit: str = "day", label: str = "") -> "Regimen":
        """``count`` doses every ``every`` starting at ``start`` (a maintenance schedule)."""
        if not isinstance(count, int) or count < 1:
            raise InputError(f"count must be a positive integer, got {count!r}", field="count")
        return cls((Dose(start, amount, unit, route, duration, ii=every if count > 1 else 0.0, addl=count - 1,
                         label=label),), time_unit=time_unit)

    @classmethod
    def stepup(cls, steps: Sequence[tuple[float, float]], unit: str, route: str, *, duration: float | None = None,
               time_unit: str = "day") -> "Regimen":
        """Step-up doses from ``(time, amount)`` pairs."""
        return cls(tuple(Dose(t, a, unit, route, duration, label=f"step {i + 1}") for i, (t, a) in enumerate(steps)),
                   time_unit=time_unit)

    def __add__(self, other: "Regimen") -> "Regimen":
        if not isinstance(other, Regimen):
            return NotImplemented
        other = other.in_unit(self.time_unit)
        return Regimen(self.doses + other.doses, self.time_unit, name=self.name or other.name)

    def shifted(self, dt: float) -> "Regimen":
        return Regimen(tuple(replace(d, time=d.time + dt) for d in self.doses), self.time_unit, self.name)

    def in_unit(self, time_unit: str) -> "Regimen":
        """The same regimen with times, durations and II converted to ``time_unit``."""
        f = time_factor(self.time_unit, time_unit)
        if f == 1.0:
            return self
        conv = [replace(d, time=d.time * f, ii=d.ii * f, duration=None if d.duration is None else d.duration * f)
                for d in self.doses]
        return Regimen(tuple(conv), time_unit, self.name)

    def expanded(self) -> "Regimen":
        """All repeats written out as single doses."""
        return Regimen(tuple(x for d in self.doses for x in d.repeats()), self.time_unit, self.name)

    def until(self, t_end: float) -> "Regimen":
        """Doses at or before ``t_end`` (repeats expanded)."""
        return Regimen(tuple(d for d in self.expanded().doses if d.time <= t_end), self.time_unit, self.name)

    def __len__(self) -> int:
        return len(self.doses)

    def __iter__(self):
        return iter(self.doses)

    def with_doses(self, doses: Iterable[Dose]) -> "Regimen":
        return Regimen(tuple(doses), self.time_unit, self.name)

    def dose_amounts(self, target: str, cov: Covariates | None = None, *, mw_g_per_mol: float | None = None
                     ) -> list[float]:
        """Total amount of each (expanded) dose in ``target`` units (mg, ug, ng or nmol)."""
        out = []
        for d in self.expanded().doses:
            dur_day = None if d.duration is None else d.duration * TIME_UNITS[self.time_unit]
            out.append(convert_dose(d.amount, d.unit, target, cov, duration_day=dur_day, mw_g_per_mol=mw_g_per_mol))
        return out

    def describe(self) -> str:
        parts = []
        for d in self.doses:
            rep = f" x{d.addl + 1} q{d.ii:g}{self.time_unit}" if d.addl else ""
            inf = f" over {d.duration:g}{self.time_unit}" if d.duration else ""
            parts.append(f"t={d.time:g}{self.time_unit}: {d.amount:g} {d.unit} {d.route}{inf}{rep}")
        return "; ".join(parts)
