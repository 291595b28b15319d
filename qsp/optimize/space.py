"""The regimen space of the step-up optimizer: candidates are plain :class:`~qsp.regimen.Regimen` objects.

A candidate is a **structure** (number of step-up doses 0-4, route per dose, which steps are split over two
consecutive days) and **continuous values** (each step's dose as a fraction of the treatment dose, on a log
scale; the interval in days before each following dose). The treatment dose, its unit and the maintenance
schedule after the first treatment dose come from the drug's label regimen (``data/regimens.csv``) unless given:
the label's largest dose is the treatment dose, its first occurrence is the first treatment dose, the doses before
it are the label's step-ups, and every dose from it on is kept, at its label time relative to the first treatment
dose (so later schedule changes, e.g. weekly to every two weeks, are kept).

Step doses must rise: ``floor <= s_1 < s_2 < ... < s_n < 1`` (fractions of the treatment dose). A split step
gives half its dose on each of two consecutive days (odronextamab, glofitamab). IV doses are infusions of
``iv_infusion_h`` hours (the label's where it has one). Premedication (dexamethasone) goes with every step-up
dose and the first treatment dose, as in the labels (:func:`qsp.premedication.with_premedication`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from ..errors import InputError
from ..premedication import drug_doses
from ..regimen import Dose, Regimen

MAX_STEPS = 4
OPT_ROUTES = ("SC", "IV")


@dataclass(frozen=True)
class Structure:
    """The discrete part of a candidate: ``routes`` has one entry per step plus one for the treatment doses."""

    n_steps: int
    routes: tuple[str, ...]
    splits: tuple[bool, ...]

    def __post_init__(self):
        if not 0 <= self.n_steps <= MAX_STEPS:
            raise InputError(f"number of step-up doses must be 0-{MAX_STEPS}, got {self.n_steps}", field="n_steps")
        if len(self.routes) != self.n_steps + 1:
            raise InputError(f"routes: {self.n_steps + 1} entries needed (steps + treatment dose), "
                             f"got {len(self.routes)}", field="routes")
        if len(self.splits) != self.n_steps:
            raise InputError(f"splits: one entry per step needed, got {len(self.splits)}", field="splits")
        bad = [r for r in self.routes if r not in OPT_ROUTES]
        if bad:
            raise InputError(f"unknown route(s) {bad}; allowed: {', '.join(OPT_ROUTES)}", field="routes")


@dataclass(frozen=True)
class Candidate:
    """A structure with its step doses (fractions of the treatment dose, rising) and intervals (days).

    ``intervals[k]`` is the time from step ``k`` (its first day, if split) to the next dose (the next step, or the
    first treatment dose after the last step).
    """

    structure: Structure
    fractions: tuple[float, ...]
    intervals: tuple[float, ...]

    def __post_init__(self):
        n = self.structure.n_steps
        if len(self.fractions) != n or len(self.intervals) != n:
            raise InputError(f"a {n}-step candidate needs {n} dose fractions and {n} intervals, got "
                             f"{len(self.fractions)} and {len(self.intervals)}", field="candidate")


@dataclass(frozen=True)
class RegimenSpace:
    """Where the optimizer searches, for one drug.

    Attributes:
        drug: card name.
        label: the drug's label regimen (repeats expanded), the reference every candidate is compared with.
        treatment_dose / unit: the treatment dose and its unit (the label's largest dose).
        maintenance: the label's doses from the first treatment dose on, times relative to it (days).
        floor: smallest step dose, as a fraction of the treatment dose.
        interval_days: the allowed intervals between doses (days; the search picks among them).
        max_steps: largest number of step-up doses (0-4).
        routes: routes a dose may take (``SC``, ``IV``).
        iv_infusion_h: duration of an IV dose (hours).
        allow_splits: whether step doses may be split over two days.
    """

    drug: str
    label: Regimen
    treatment_dose: float
    unit: str
    maintenance: tuple[tuple[float, float], ...]
    floor: float = 1e-3
    interval_days: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 7.0)
    max_steps: int = MAX_STEPS
    routes: tuple[str, ...] = ("SC",)
    iv_infusion_h: float = 4.0
    allow_splits: bool = False
    label_route: str = field(default="SC")

    def __post_init__(self):
        if not 0 <= self.max_steps <= MAX_STEPS:
            raise InputError(f"max-steps must be 0-{MAX_STEPS}, got {self.max_steps}", field="max_steps")
        if not (0.0 < self.floor < 1.0):
            raise InputError(f"dose floor must be a fraction of the treatment dose in (0, 1), got {self.floor}",
                             field="floor")
        if not self.interval_days or any(not (d > 0 and math.isfinite(d)) for d in self.interval_days):
            raise InputError(f"intervals must be positive numbers of days, got {self.interval_days}",
                             field="interval_days")
        bad = [r for r in self.routes if r not in OPT_ROUTES]
        if not self.routes or bad:
            raise InputError(f"routes must be among {', '.join(OPT_ROUTES)}, got {list(self.routes)}", field="routes")
        if not (self.iv_infusion_h > 0 and math.isfinite(self.iv_infusion_h)):
            raise InputError(f"IV infusion duration must be a positive number of hours, got {self.iv_infusion_h}",
                             field="iv_infusion_h")

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_label(cls, drug: str, label: Regimen, **kw) -> "RegimenSpace":
        """The space around a label regimen (see the module docstring for what is taken from it)."""
        lab = label.in_unit("day").expanded()
        doses = drug_doses(lab)
        if not doses:
            raise InputError(f"{drug}: the label regimen has no drug dose", field="regimen")
        units = {d.unit for d in doses}
        if len(units) != 1:
            raise InputError(f"{drug}: the label regimen mixes dose units {sorted(units)}; the optimizer needs one",
                             field="regimen")
        top = max(d.amount for d in doses)
        first = next(i for i, d in enumerate(doses) if d.amount >= top)
        t1 = doses[first].time
        maint = tuple((d.time - t1, d.amount) for d in doses[first:])
        route = "IV" if doses[first].route.startswith("IV") else "SC"
        iv_h = kw.pop("iv_infusion_h", None)
        if iv_h is None:
            iv = [d.duration for d in doses if d.route == "IV_infusion" and d.duration]
            iv_h = (iv[0] * 24.0) if iv else 4.0
        kw.setdefault("routes", (route,))
        return cls(drug=drug, label=lab, treatment_dose=float(top), unit=doses[0].unit, maintenance=maint,
                   iv_infusion_h=float(iv_h), label_route=route, **kw)

    # --- the label as a candidate -----------------------------------------------------------------
    def label_candidate(self) -> Candidate:
        """The label regimen's own structure and values (its intervals need not be in ``interval_days``)."""
        doses = drug_doses(self.label)
        top = self.treatment_dose
        first = next(i for i, d in enumerate(doses) if d.amount >= top)
        steps = doses[:first]
        routes = tuple("IV" if d.route.startswith("IV") else "SC" for d in doses[: first + 1])
        times = [d.time for d in doses[: first + 1]]
        return Candidate(Structure(len(steps), routes, (False,) * len(steps)),
                         tuple(d.amount / top for d in steps), tuple(b - a for a, b in zip(times, times[1:])))

    # --- enumeration ------------------------------------------------------------------------------
    def structures(self, *, min_steps: int = 0) -> Iterator[Structure]:
        """Every structure: steps ``min_steps..max_steps``, a route per dose from ``routes`` (the treatment doses
        keep one route), splits per step where allowed."""
        for n in range(min_steps, self.max_steps + 1):
            for routes in itertools.product(self.routes, repeat=n + 1):
                for splits in itertools.product((False, True) if self.allow_splits else (False,), repeat=n):
                    yield Structure(n, tuple(routes), tuple(splits))

    def check(self, cand: Candidate) -> None:
        """Refuse a candidate outside the space (doses not rising, below the floor, unknown interval)."""
        s = cand.structure  # (more steps than max_steps is allowed here: the label is always evaluated)
        fr = cand.fractions
        if any(not (self.floor * (1 - 1e-12) <= f < 1.0) for f in fr):
            raise InputError(f"step doses must lie in [{self.floor:g}, 1) of the treatment dose, got {fr}",
                             field="fractions")
        if any(b <= a for a, b in zip(fr, fr[1:])):
            raise InputError(f"step doses must rise, got {fr}", field="fractions")
        if any(i <= 0 for i in cand.intervals):
            raise InputError(f"intervals must be positive, got {cand.intervals}", field="intervals")
        for k, (sp, iv) in enumerate(zip(s.splits, cand.intervals)):
            if sp and iv < 2.0:
                raise InputError(f"step {k + 1} is split over two days: its interval must be >= 2 days, got {iv}",
                                 field="intervals")

    # --- candidate -> regimen ---------------------------------------------------------------------
    def _dose(self, t: float, amount: float, route: str, label: str) -> Dose:
        if route == "IV":
            return Dose(t, amount, self.unit, "IV_infusion", duration=self.iv_infusion_h / 24.0, label=label)
        return Dose(t, amount, self.unit, "SC", label=label)

    def days_to_treatment_dose(self, cand: Candidate) -> float:
        """Days from the first dose to the first treatment dose."""
        return float(sum(cand.intervals))

    def regimen(self, cand: Candidate, *, until_day: float | None = None, name: str = "") -> Regimen:
        """The candidate as a plain regimen (day clock, first dose at day 0), maintenance as in the label."""
        self.check(cand)
        s = cand.structure
        doses: list[Dose] = []
        t = 0.0
        for k in range(s.n_steps):
            amt = cand.fractions[k] * self.treatment_dose
            lab = f"step-up dose {k + 1}"
            if s.splits[k]:
                doses += [self._dose(t, amt / 2, s.routes[k], lab + " (day 1 of 2)"),
                          self._dose(t + 1.0, amt / 2, s.routes[k], lab + " (day 2 of 2)")]
            else:
                doses.append(self._dose(t, amt, s.routes[k], lab))
            t += cand.intervals[k]
        for j, (dt, amt) in enumerate(self.maintenance):
            doses.append(self._dose(t + dt, amt, s.routes[-1], "first treatment dose" if j == 0 else "treatment dose"))
        reg = Regimen(tuple(doses), "day", name=name or self.describe(cand))
        return reg.until(until_day) if until_day is not None else reg

    def describe(self, cand: Candidate) -> str:
        """The candidate in words: ``0.004 -> 0.2 -> 1 (x1.5 mg/kg) at days 0, 2, 4; SC``."""
        s = cand.structure
        parts, t, days = [], 0.0, []
        for k in range(s.n_steps):
            amt = cand.fractions[k] * self.treatment_dose
            parts.append(f"{amt:.3g}{' split' if s.splits[k] else ''}{' IV' if s.routes[k] == 'IV' else ''}")
            days.append(t)
            t += cand.intervals[k]
        parts.append(f"{self.treatment_dose:g}{' IV' if s.routes[-1] == 'IV' else ''}")
        days.append(t)
        return (f"{' -> '.join(parts)} {self.unit} on days {', '.join(f'{d:g}' for d in days)}"
                f" ({s.n_steps} step{'s' if s.n_steps != 1 else ''})")


def rising_fractions(u: Sequence[float], floor: float):
    """Map unconstrained ``u`` (one per step) to rising fractions in ``(floor, 1)`` of the treatment dose.

    ``log s_k = log floor + (-log floor) * (c_1 + ... + c_k)`` with ``c = softmax([u, 0])``: every step strictly
    above the previous and strictly below the treatment dose; works on NumPy and JAX arrays (differentiable).
    """
    import jax.numpy as jnp

    u = jnp.asarray(u)
    w = jnp.exp(jnp.concatenate([u, jnp.zeros((1,))]) - jnp.max(jnp.concatenate([u, jnp.zeros((1,))])))
    c = w / jnp.sum(w)
    return jnp.exp(math.log(floor) * (1.0 - jnp.cumsum(c)[:-1]))


__all__ = ["MAX_STEPS", "OPT_ROUTES", "Structure", "Candidate", "RegimenSpace", "rising_fractions"]
