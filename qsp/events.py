"""Regimens compiled to padded event arrays for the solver.

The solver sees two fixed-shape groups of events per patient (a pytree, so patients stack and ``vmap``):

* **jumps** (bolus doses and NONMEM resets): ``time``, ``amount`` (model amount unit, before F),
  ``state`` (index), ``route`` (index into the model's routes, for F and lag), ``reset`` (bool),
  ``mask`` (False for padding);
* **infusions**: ``start``, ``duration``, ``amount`` (total, before F), ``state``, ``route``, ``mask``.

Times are in the model's time unit. Padding rows have ``mask=False`` and are ignored by the solver,
so regimens of different lengths run in one batched call (:func:`stack_events`).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from .errors import InputError
from .model import Model
from .regimen import TIME_UNITS, Regimen, time_factor
from .units import Covariates, convert_dose


class EventArrays(NamedTuple):
    jump_time: np.ndarray
    jump_amount: np.ndarray
    jump_state: np.ndarray
    jump_route: np.ndarray
    jump_reset: np.ndarray
    jump_mask: np.ndarray
    inf_start: np.ndarray
    inf_duration: np.ndarray
    inf_amount: np.ndarray
    inf_state: np.ndarray
    inf_route: np.ndarray
    inf_mask: np.ndarray

    @property
    def n_jumps(self) -> int:
        return self.jump_time.shape[-1]

    @property
    def n_infusions(self) -> int:
        return self.inf_start.shape[-1]


def _route_and_state(model: Model, dose) -> tuple[int, int]:
    route = dose.route
    key = "IV_bolus" if route in ("IV_infusion", "IV_continuous") and route not in model.routes else route
    if key not in model.routes:
        raise InputError(f"model {model.name} cannot take route {route}; allowed: {', '.join(model.routes)}",
                         field="route")
    state = dose.cmt if dose.cmt is not None else model.routes[key].state
    return model.route_names.index(key), model.state_index(state)


def regimen_to_events(model: Model, regimen: Regimen, cov: Covariates | None = None, *,
                      pad_jumps: int | None = None, pad_infusions: int | None = None) -> EventArrays:
    """Compile a regimen to event arrays in the model's time and amount units.

    Amounts are converted with :func:`qsp.units.convert_dose` (mg/kg by weight, ug/m2 by BSA, nmol by the
    model's molecular weight). Repeats are expanded. ``pad_*`` set the padded lengths (at least 1).
    """
    reg = regimen.in_unit(model.time_unit).expanded()
    f_day = TIME_UNITS[model.time_unit]
    jumps, infs = [], []
    for d in reg.doses:
        r, s = _route_and_state(model, d)
        dur_day = None if d.duration is None else d.duration * f_day
        amt = convert_dose(d.amount, d.unit, model.amount_unit, cov, duration_day=dur_day,
                           mw_g_per_mol=model.mw_g_per_mol)
        if d.reset:
            jumps.append((d.time, 0.0, s, r, True))
        if d.is_infusion:
            infs.append((d.time, d.duration, amt, s, r))
        elif amt > 0 or not d.reset:
            jumps.append((d.time, amt, s, r, False))
    nj = max(len(jumps), 1) if pad_jumps is None else pad_jumps
    ni = max(len(infs), 1) if pad_infusions is None else pad_infusions
    if nj < len(jumps) or ni < len(infs):
        raise ValueError("padding shorter than the number of events")
    # A reset stops infusions running at that time (NONMEM EVID 3/4 semantics).
    reset_times = sorted(t for (t, _, _, _, rs) in jumps if rs)
    infs2 = []
    for (t0, dur, amt, s, r) in infs:
        later = [rt for rt in reset_times if t0 < rt < t0 + dur]
        if later:
            frac = (later[0] - t0) / dur
            infs2.append((t0, later[0] - t0, amt * frac, s, r))
        else:
            infs2.append((t0, dur, amt, s, r))

    def col(rows, i, n, dtype, fill):
        a = np.full(n, fill, dtype=dtype)
        if rows:
            a[: len(rows)] = [row[i] for row in rows]
        return a

    return EventArrays(
        jump_time=col(jumps, 0, nj, float, 0.0), jump_amount=col(jumps, 1, nj, float, 0.0),
        jump_state=col(jumps, 2, nj, np.int32, 0), jump_route=col(jumps, 3, nj, np.int32, 0),
        jump_reset=col(jumps, 4, nj, bool, False), jump_mask=np.arange(nj) < len(jumps),
        inf_start=col(infs2, 0, ni, float, 0.0), inf_duration=col(infs2, 1, ni, float, 1.0),
        inf_amount=col(infs2, 2, ni, float, 0.0), inf_state=col(infs2, 3, ni, np.int32, 0),
        inf_route=col(infs2, 4, ni, np.int32, 0), inf_mask=np.arange(ni) < len(infs2),
    )


def stack_events(events: Sequence[EventArrays]) -> EventArrays:
    """Pad a list of per-patient event arrays to common lengths and stack them (leading batch axis)."""
    if not events:
        raise InputError("no regimens to stack", field="regimens")
    nj = max(e.n_jumps for e in events)
    ni = max(e.n_infusions for e in events)

    def pad(a, n, fill):
        out = np.full(n, fill, dtype=a.dtype)
        out[: a.shape[0]] = a
        return out

    fills = dict(jump_time=0.0, jump_amount=0.0, jump_state=0, jump_route=0, jump_reset=False, jump_mask=False,
                 inf_start=0.0, inf_duration=1.0, inf_amount=0.0, inf_state=0, inf_route=0, inf_mask=False)
    cols = {}
    for name in EventArrays._fields:
        n = nj if name.startswith("jump") else ni
        cols[name] = np.stack([pad(getattr(e, name), n, fills[name]) for e in events])
    return EventArrays(**cols)


def events_in_time_unit(ev: EventArrays, src: str, dst: str) -> EventArrays:
    """Rescale event times and durations between time units."""
    f = time_factor(src, dst)
    return ev._replace(jump_time=ev.jump_time * f, inf_start=ev.inf_start * f, inf_duration=ev.inf_duration * f)
