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
``SC``            subcutaneous injection into the absorption depot (bioavailability F, lag); with a
                  ``duration``, a zero-order input into the depot (NONMEM RATE > 0 into CMT 1)
``IP``            intraperitoneal injection into the peritoneal depot (where a model has one; a
                  ``duration`` makes it zero-order, as for SC)
``premed_dex``    dexamethasone premedication (mg) into the TCE model's DEX state

Bioavailability and lag belong to the dosed compartment and are model parameters (``F``/``ALAG`` for the
depot, NONMEM's ``F1``/``ALAG1``; ``F2``/``ALAG2`` for the central compartment); see
:class:`qsp.model.DoseRoute`.

Infusions and F (NONMEM's rules): ``keep="rate"`` (the default; NONMEM RATE > 0 and RATE = -1) keeps the
rate ``amount/duration`` and lets F change the duration to ``F * duration``; ``keep="duration"`` (NONMEM
RATE = -2, a modelled duration) keeps the duration and scales the rate by F.

Steady state (NONMEM SS): ``ss=1`` resets the system and puts it in the periodic steady state of this dose
repeated every ``ii`` (earlier doses still pending are cancelled); ``ss=2`` adds that steady state to the
current state. With ``rate`` (and ``amount=0``, ``ii=0``) an ``ss`` dose is a constant infusion at steady
state that keeps running. See :mod:`qsp.steady_state`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from .errors import InputError
from .units import Covariates, convert_dose, is_rate_unit, normalize_unit

ROUTES = ("IV_bolus", "IV_infusion", "IV_continuous", "SC", "IP", "premed_dex")
INFUSION_ROUTES = ("IV_infusion", "IV_continuous")  # routes that need a duration (or an SS rate)
ZERO_ORDER_ROUTES = INFUSION_ROUTES + ("SC", "IP")  # routes that take a duration (zero-order input)
SS_MODES = (0, 1, 2)
KEEP = ("rate", "duration")
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
        cmt: explicit target compartment (model state name) overriding the route's default; the
            bioavailability and lag are those of that compartment. ``compartment=`` is accepted for it.
        reset: reset the system to its initial state before this dose (NONMEM EVID 3/4).
        label: free text ("step-up dose 1").
        ss: NONMEM SS: 0 none; 1 reset, then the periodic steady state of this dose every ``ii``; 2 that
            steady state added to the current state. Repeats (``addl``) after it are ordinary doses.
        keep: for an infusion with F != 1: ``"rate"`` (NONMEM RATE > 0 or -1: F changes the duration) or
            ``"duration"`` (NONMEM RATE = -2: F changes the rate).
        rate: constant-infusion steady state (NONMEM SS=1/2, AMT=0, RATE>0, II=0): the rate in ``unit`` per
            regimen time unit; the infusion keeps running after this record (until a reset or SS=1 record).
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
    ss: int = 0
    keep: str = "rate"
    rate: float | None = None
    compartment: str | None = None  # the dosed compartment (state name): another spelling of ``cmt``

    def __post_init__(self):
        if self.compartment is not None:  # stored as ``cmt`` (one field; equal doses compare equal)
            if self.cmt is not None and self.cmt != self.compartment:
                raise InputError(f"compartment {self.compartment!r} and cmt {self.cmt!r} disagree; give one",
                                 field="compartment")
            object.__setattr__(self, "cmt", self.compartment)
            object.__setattr__(self, "compartment", None)
        if not _finite(self.time):
            raise InputError(f"dose time must be a finite number, got {self.time!r}", field="time")
        if not _finite(self.amount) or self.amount < 0:
            raise InputError(f"dose amount must be a non-negative finite number, got {self.amount!r}", field="amount")
        object.__setattr__(self, "unit", normalize_unit(self.unit))
        object.__setattr__(self, "route", normalize_route(self.route))
        if self.duration is not None and (not _finite(self.duration) or self.duration <= 0):
            raise InputError(f"infusion duration must be a positive number, got {self.duration!r}", field="duration")
        if self.route in INFUSION_ROUTES and self.duration is None and self.rate is None:
            raise InputError(f"route {self.route} needs an infusion duration", field="duration")
        if self.route not in ZERO_ORDER_ROUTES and self.duration is not None:
            raise InputError(f"route {self.route} takes no duration (zero-order input: "
                             f"{', '.join(ZERO_ORDER_ROUTES)})", field="duration")
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
        if self.keep not in KEEP:
            raise InputError(f"unknown keep {self.keep!r}; allowed: {', '.join(KEEP)}", field="keep")
        if isinstance(self.ss, bool) or not isinstance(self.ss, numbers.Integral) or int(self.ss) not in SS_MODES:
            raise InputError(f"SS must be one of {', '.join(map(str, SS_MODES))}, got {self.ss!r}", field="ss")
        object.__setattr__(self, "ss", int(self.ss))
        if self.rate is not None:
            if not _finite(self.rate) or self.rate <= 0:
                raise InputError(f"a constant-infusion rate must be a positive number, got {self.rate!r}",
                                 field="rate")
            if self.ss == 0:
                raise InputError("a rate without a duration is a steady-state constant infusion: it needs SS=1 "
                                 "or SS=2 (else give amount and duration)", field="rate")
            if self.amount != 0 or self.duration is not None or self.ii != 0 or self.addl != 0:
                raise InputError("a steady-state constant infusion (rate given) takes amount 0, no duration, "
                                 "II 0 and ADDL 0", field="addl" if self.addl else "rate")
            if self.route not in ZERO_ORDER_ROUTES:
                raise InputError(f"route {self.route} takes no infusion; allowed: {', '.join(ZERO_ORDER_ROUTES)}",
                                 field="route")
            if is_rate_unit(self.unit):
                raise InputError(f"give a constant infusion's rate in an amount unit per time unit, not "
                                 f"{self.unit}", field="unit")
        elif self.ss:
            if self.duration is not None and self.addl > 0:
                raise InputError("a steady-state infusion takes no ADDL (NONMEM: ADDL must be 0 for steady-state "
                                 "infusions); give the following doses as their own records", field="addl")
            if not self.ii > 0:
                raise InputError(f"a steady-state dose (SS={self.ss}) needs a positive II (interdose interval), "
                                 f"got {self.ii:g}", field="ii")
            if not self.amount > 0:
                raise InputError(f"a steady-state dose (SS={self.ss}) needs a positive amount", field="amount")

    @property
    def is_infusion(self) -> bool:
        """A zero-order input: a duration, or a steady-state constant-infusion rate."""
        return self.duration is not None or self.rate is not None

    def repeats(self) -> list["Dose"]:
        """This dose and its ``addl`` repeats every ``ii``, as single doses.

        The first keeps its ``ss`` (and its ``ii``, the steady state's period); the repeats are ordinary doses.
        """
        first = self if self.ss else replace(self, ii=0.0, addl=0)
        if self.addl == 0:
            return [first]
        base = replace(self, ii=0.0, addl=0, ss=0)
        return [replace(first, addl=0)] + [replace(base, time=self.time + k * self.ii) for k in range(1, self.addl + 1)]


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
        conv = [replace(d, time=d.time * f, ii=d.ii * f, duration=None if d.duration is None else d.duration * f,
                        rate=None if d.rate is None else d.rate / f)
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
            ss = f" SS{d.ss} q{d.ii:g}{self.time_unit}" if d.ss and d.rate is None else ""
            if d.rate is not None:
                parts.append(f"t={d.time:g}{self.time_unit}: {d.rate:g} {d.unit}/{self.time_unit} {d.route} "
                             f"constant infusion at steady state (SS{d.ss})")
                continue
            parts.append(f"t={d.time:g}{self.time_unit}: {d.amount:g} {d.unit} {d.route}{inf}{rep}{ss}")
        return "; ".join(parts)
