"""Regimens compiled to padded event arrays for the solver.

The solver sees two fixed-shape groups of events per patient (a pytree, so patients stack and ``vmap``):

* **jumps** (bolus doses and NONMEM resets): ``time``, ``amount`` (model amount unit, before F),
  ``state`` (index), ``route`` (index into the model's routes, for F and lag), ``reset`` (bool),
  ``mask`` (False for padding);
* **infusions**: ``start``, ``duration``, ``amount`` (total, before F), ``state``, ``route``, ``mask``,
  ``keep_rate`` (NONMEM's rule for F);
* both carry a window ``from``/``until``: the next reset or SS=1 record cancels what is pending;
* **steady-state records** (``ss_*``, NONMEM SS=1/2): each record's dose, interval and route, for
  :mod:`qsp.steady_state`; its state-setting jump is the jump with ``jump_ss`` = its row.

Times are in the model's time unit. Padding rows have ``mask=False`` and are ignored by the solver,
so regimens of different lengths run in one batched call (:func:`stack_events`).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np

from .errors import InputError
from .model import Model
from .regimen import TIME_UNITS, Regimen, time_factor
from .units import Covariates, convert_dose

SS_TAILS_EXTRA = 2  # dosing intervals covered beyond an SS infusion's duration, for a lag (see regimen_to_events)


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
    # dose windows (model time): a dose counts only if it enters at or after ``*_from`` and before
    # ``*_until`` (the next reset or SS=1 record cancels what is still pending: NONMEM); infusions are clipped
    jump_from: np.ndarray
    jump_until: np.ndarray
    inf_from: np.ndarray
    inf_until: np.ndarray
    inf_keep_rate: np.ndarray  # True: F changes the duration (NONMEM RATE > 0, -1); False: F scales the rate
    jump_ss: np.ndarray  # index into the ss_* group for a steady-state record's state-setting jump, else -1
    jump_tail: np.ndarray  # j >= 1: the dose of an SS pattern given j intervals before the record (else 0)
    jump_ii: np.ndarray  # that pattern's interval (for a tail: it enters at record time + lag - j II)
    # steady-state records (NONMEM SS=1/2), one row each (see qsp.steady_state)
    ss_mode: np.ndarray  # 1 (reset, then steady state) or 2 (steady state added to the current state)
    ss_ii: np.ndarray  # dosing interval (model time); 0 for a constant infusion
    ss_amount: np.ndarray  # dose amount (model amount unit, before F); the rate for a constant infusion
    ss_duration: np.ndarray  # 0 for a bolus, the infusion duration (before F), inf for a constant infusion
    ss_keep_rate: np.ndarray
    ss_state: np.ndarray
    ss_route: np.ndarray
    ss_mask: np.ndarray

    @property
    def n_jumps(self) -> int:
        return self.jump_time.shape[-1]

    @property
    def n_infusions(self) -> int:
        return self.inf_start.shape[-1]

    @property
    def n_ss(self) -> int:
        return self.ss_mode.shape[-1]


# Padding values per field (padding rows have mask False; the fills keep every arithmetic finite).
FILLS = dict(jump_time=0.0, jump_amount=0.0, jump_state=0, jump_route=0, jump_reset=False, jump_mask=False,
             inf_start=0.0, inf_duration=1.0, inf_amount=0.0, inf_state=0, inf_route=0, inf_mask=False,
             jump_from=-np.inf, jump_until=np.inf, inf_from=-np.inf, inf_until=np.inf, inf_keep_rate=True,
             jump_ss=-1, jump_tail=0, jump_ii=1.0, ss_mode=1, ss_ii=1.0, ss_amount=0.0, ss_duration=0.0,
             ss_keep_rate=True, ss_state=0, ss_route=0, ss_mask=False)
DTYPES = dict(jump_state=np.int32, jump_route=np.int32, jump_reset=bool, jump_mask=bool, inf_state=np.int32,
              inf_route=np.int32, inf_mask=bool, inf_keep_rate=bool, jump_ss=np.int32, jump_tail=np.int32,
              ss_mode=np.int32, ss_keep_rate=bool, ss_state=np.int32, ss_route=np.int32, ss_mask=bool)


def field_group(name: str) -> str:
    """``"jump"``, ``"inf"`` or ``"ss"``: which padded group (and length) a field belongs to."""
    return name.split("_", 1)[0]


def pad_field(name: str, a: np.ndarray, n: int) -> np.ndarray:
    """``a`` (last axis) padded to length ``n`` with the field's fill."""
    a = np.asarray(a)
    out = np.full(a.shape[:-1] + (n,), FILLS[name], dtype=a.dtype)
    out[..., : a.shape[-1]] = a
    return out


def group_sizes(events: Sequence[EventArrays]) -> dict[str, int]:
    """The common padded length of each group over ``events``."""
    return {"jump": max(e.n_jumps for e in events), "inf": max(e.n_infusions for e in events),
            "ss": max(e.n_ss for e in events)}


def pad_events(ev: EventArrays, sizes: Mapping[str, int]) -> EventArrays:
    """One patient's events padded to the group lengths ``sizes``."""
    return EventArrays(**{f: pad_field(f, getattr(ev, f), sizes[field_group(f)]) for f in EventArrays._fields})


def has_steady_state(ev: EventArrays) -> bool:
    """Whether any (unmasked) record is a steady-state dose (host-side, before tracing)."""
    return ev.n_ss > 0 and bool(np.any(np.asarray(ev.ss_mask)))


def _route_and_state(model: Model, dose) -> tuple[int, int]:
    """(index of the route whose F and lag apply, state index). F and lag belong to the dosed compartment:
    a dose sent to another state (``Dose.cmt``) takes that state's route parameters (none: F 1, lag 0)."""
    route = dose.route
    key = "IV_bolus" if route in ("IV_infusion", "IV_continuous") and route not in model.routes else route
    if key not in model.routes:
        raise InputError(f"model {model.name} cannot take route {route}; allowed: {', '.join(model.routes)}",
                         field="route")
    state = dose.cmt if dose.cmt is not None else model.routes[key].state
    s = model.state_index(state)
    if model.routes[key].state == state:
        return model.route_names.index(key), s
    same = [n for n, r in model.routes.items() if r.state == state and (r.f_param or r.lag_param)]
    if same:
        return model.route_names.index(same[0]), s
    return len(model.route_names), s  # no F/lag for this compartment (see qsp.simulate._route_vectors)


def regimen_to_events(model: Model, regimen: Regimen, cov: Covariates | None = None, *,
                      pad_jumps: int | None = None, pad_infusions: int | None = None) -> EventArrays:
    """Compile a regimen to event arrays in the model's time and amount units.

    Amounts are converted with :func:`qsp.units.convert_dose` (mg/kg by weight, ug/m2 by BSA, nmol by the
    model's molecular weight). Repeats are expanded. ``pad_*`` set the padded lengths (at least 1).

    NONMEM semantics compiled here (see :mod:`qsp.steady_state` and the README's event table):

    * a reset (EVID 3/4) or an SS=1 record cancels what earlier records still have pending: repeats (ADDL)
      after it, lagged doses not yet absorbed, the rest of running infusions (``*_until``);
    * an SS record becomes a state-setting jump at its time (no lag; ``jump_ss``), its own dose as an ordinary
      event, and the parts of the earlier doses of the periodic pattern that enter after its time (an infusion
      longer than II, a lag): ``SS_TAILS_EXTRA`` intervals beyond ``ceil(duration / II)`` are generated, and a
      patient whose lag plus duration reaches past them gets status :data:`qsp.simulate.STATUS_SS_TAILS`.
    """
    reg = regimen.in_unit(model.time_unit)
    f_day = TIME_UNITS[model.time_unit]
    # events: (seq, record time, kind, fields...)
    jumps, infs, sss = [], [], []
    resets = []  # (time, seq) of records that cancel what is pending
    seq = 0
    for rec in reg.doses:
        r, s = _route_and_state(model, rec)
        rec_t, rec_seq = rec.time, seq  # what a later reset cancels is decided by the record's time and order
        for d in rec.repeats():
            if rec.reset:  # each repeat of a resetting record is a record of its own
                rec_t, rec_seq = d.time, seq
            dur_day = None if d.duration is None else d.duration * f_day
            if d.rate is not None:
                amt = convert_dose(d.rate, d.unit, model.amount_unit, cov, mw_g_per_mol=model.mw_g_per_mol)
            else:
                amt = convert_dose(d.amount, d.unit, model.amount_unit, cov, duration_day=dur_day,
                                   mw_g_per_mol=model.mw_g_per_mol)
            if d.reset:
                jumps.append(dict(seq=seq, t=d.time, amt=0.0, s=s, r=r, reset=True, frm=-np.inf, ss=-1,
                                  rec=(rec_t, rec_seq)))
                resets.append((d.time, seq))
                seq += 1
            keep = d.keep == "rate"
            if d.ss:
                k = len(sss)
                dur = 0.0 if not d.is_infusion else (np.inf if d.rate is not None else d.duration)
                sss.append(dict(mode=d.ss, ii=d.ii, amt=amt, dur=dur, keep=keep, s=s, r=r))
                jumps.append(dict(seq=seq, t=d.time, amt=0.0, s=s, r=r, reset=False, frm=-np.inf, ss=k,
                                  rec=(rec_t, rec_seq)))
                if d.ss == 1:
                    resets.append((d.time, seq))
                seq += 1
                own = (d.time, seq)  # the record's own dose and its tails come after its state is set
                if d.rate is None:  # the earlier doses of the pattern that still enter after this record's time
                    n_tail = (int(np.ceil(d.duration / d.ii)) if d.is_infusion else 0) + SS_TAILS_EXTRA
                    for j in range(1, n_tail + 1):
                        t0 = d.time - j * d.ii
                        if d.is_infusion:
                            infs.append(dict(seq=seq, t=t0, dur=d.duration, amt=amt, s=s, r=r,
                                             keep=keep, frm=d.time, rec=own))
                        else:  # at the record's time: the solver adds lag - j II (the same arithmetic as the
                            # steady state's phase, so a lag that is a multiple of II is neither lost nor doubled)
                            jumps.append(dict(seq=seq, t=d.time, amt=amt, s=s, r=r, reset=False,
                                              frm=d.time, ss=-1, rec=own, tail=j, ii=d.ii))
            owner = own if d.ss else (rec_t, seq if rec.reset else rec_seq)
            if d.is_infusion:
                dur = np.inf if d.rate is not None else d.duration
                infs.append(dict(seq=seq, t=d.time, dur=dur, amt=amt, s=s, r=r, keep=keep, frm=-np.inf, rec=owner))
            elif amt > 0 or not d.reset:
                jumps.append(dict(seq=seq, t=d.time, amt=amt, s=s, r=r, reset=False, frm=-np.inf, ss=-1, rec=owner))
            seq += 1

    def until(e):
        """The first later reset or SS=1 record: it cancels what this event's record still has pending."""
        t, q = e["rec"]
        later = [rt for (rt, rs) in resets if rt > t or (rt == t and rs > q)]
        return min(later) if later else np.inf

    nj = max(len(jumps), 1) if pad_jumps is None else pad_jumps
    ni = max(len(infs), 1) if pad_infusions is None else pad_infusions
    if nj < len(jumps) or ni < len(infs):
        raise ValueError("padding shorter than the number of events")
    jumps.sort(key=lambda e: (e["t"], e["seq"]))  # stable order: the solver's sort keeps it at equal times
    infs.sort(key=lambda e: (e["t"], e["seq"]))

    def col(rows, key, n, name):
        a = np.full(n, FILLS[name], dtype=DTYPES.get(name, float))
        if rows:
            a[: len(rows)] = [row[key] if callable(key) is False else key(row) for row in rows]
        return a

    ns = len(sss)
    return EventArrays(
        jump_time=col(jumps, "t", nj, "jump_time"), jump_amount=col(jumps, "amt", nj, "jump_amount"),
        jump_state=col(jumps, "s", nj, "jump_state"), jump_route=col(jumps, "r", nj, "jump_route"),
        jump_reset=col(jumps, "reset", nj, "jump_reset"), jump_mask=np.arange(nj) < len(jumps),
        inf_start=col(infs, "t", ni, "inf_start"), inf_duration=col(infs, "dur", ni, "inf_duration"),
        inf_amount=col(infs, "amt", ni, "inf_amount"), inf_state=col(infs, "s", ni, "inf_state"),
        inf_route=col(infs, "r", ni, "inf_route"), inf_mask=np.arange(ni) < len(infs),
        jump_from=col(jumps, "frm", nj, "jump_from"), jump_until=col(jumps, until, nj, "jump_until"),
        inf_from=col(infs, "frm", ni, "inf_from"), inf_until=col(infs, until, ni, "inf_until"),
        inf_keep_rate=col(infs, "keep", ni, "inf_keep_rate"), jump_ss=col(jumps, "ss", nj, "jump_ss"),
        jump_tail=col(jumps, lambda e: e.get("tail", 0), nj, "jump_tail"),
        jump_ii=col(jumps, lambda e: e.get("ii", 1.0), nj, "jump_ii"),
        ss_mode=col(sss, "mode", ns, "ss_mode"), ss_ii=col(sss, "ii", ns, "ss_ii"),
        ss_amount=col(sss, "amt", ns, "ss_amount"), ss_duration=col(sss, "dur", ns, "ss_duration"),
        ss_keep_rate=col(sss, "keep", ns, "ss_keep_rate"), ss_state=col(sss, "s", ns, "ss_state"),
        ss_route=col(sss, "r", ns, "ss_route"), ss_mask=np.ones(ns, bool),
    )


def stack_events(events: Sequence[EventArrays]) -> EventArrays:
    """Pad a list of per-patient event arrays to common lengths and stack them (leading batch axis)."""
    if not events:
        raise InputError("no regimens to stack", field="regimens")
    sizes = group_sizes(events)
    return EventArrays(**{f: np.stack([pad_field(f, getattr(e, f), sizes[field_group(f)]) for e in events])
                          for f in EventArrays._fields})


def events_in_time_unit(ev: EventArrays, src: str, dst: str) -> EventArrays:
    """Rescale event times, durations and intervals between time units (a constant infusion's rate too)."""
    f = time_factor(src, dst)
    const = np.isinf(np.asarray(ev.ss_duration))
    return ev._replace(jump_time=ev.jump_time * f, jump_ii=ev.jump_ii * f, inf_start=ev.inf_start * f,
                       inf_duration=ev.inf_duration * f,
                       jump_from=ev.jump_from * f, jump_until=ev.jump_until * f, inf_from=ev.inf_from * f,
                       inf_until=ev.inf_until * f, ss_ii=ev.ss_ii * f, ss_duration=ev.ss_duration * f,
                       inf_amount=np.where(np.isinf(np.asarray(ev.inf_duration)), ev.inf_amount / f, ev.inf_amount),
                       ss_amount=np.where(const, ev.ss_amount / f, ev.ss_amount))
