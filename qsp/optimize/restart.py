"""Re-step-up rules after a dose delay: for each dose and each delay, resume, step back, or restart.

For dose ``k`` of a regimen (``k >= 2``) delayed by ``d`` days (it and every later dose move by ``d``), three
actions are simulated on the same virtual patients (common random numbers):

* ``resume`` -- give dose ``k`` as planned after the delay;
* ``step_back`` -- give the previous dose's amount first (where it is lower), dose ``k`` one interval later (the
  interval the regimen had between the two);
* ``restart`` -- the whole step-up again from the first step, then dose ``k``'s amount.

The risk of an action is the population P(CRS >= 2) after its first dose given after the delay and after the
doses that follow up to (and including) the planned amount: ``max`` over those doses of ``100 mean_i q_ik``. The
reference is the regimen's own accepted risk: the largest per-dose P(CRS >= 2) of its step-up phase without any
delay. The rule for a (dose, delay) is the least disruptive action (resume < step_back < restart) whose risk is at
most the reference times ``tolerance`` (default 1.0); consecutive delays with the same action form the windows of
the table. Labels restart the step-up after long gaps because the priming memory fades (KREC in the T-cell
component); this computes where the model puts those gaps for any regimen.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError
from ..premedication import drug_doses
from ..regimen import Regimen
from ..trial import card_trial_setup

ACTIONS = ("resume", "step_back", "restart")


def delayed(regimen: Regimen, k: int, delay: float, action: str) -> tuple[Regimen, int, int]:
    """The regimen with drug dose ``k`` (1-based) delayed by ``delay`` days under ``action``; returns it with the
    indices (0-based, among drug doses) of the first dose after the delay and of the dose at ``k``'s amount."""
    if action not in ACTIONS:
        raise InputError(f"unknown action {action!r}; allowed: {', '.join(ACTIONS)}", field="action")
    doses = drug_doses(regimen.in_unit("day"))
    if not 2 <= k <= len(doses):
        raise InputError(f"dose {k} is not a delayable dose of this regimen (2-{len(doses)})", field="dose")
    before, after = doses[: k - 1], doses[k - 1:]
    t_k = after[0].time + delay
    shifted = [replace(d, time=d.time + delay) for d in after]
    if action == "resume":
        new = before + shifted
        first = k - 1
        return Regimen(tuple(new), "day", regimen.name), first, first
    if action == "step_back":
        prev = before[-1]
        gap = after[0].time - prev.time
        if prev.amount >= after[0].amount:  # nothing lower to step back to: as resume
            return delayed(regimen, k, delay, "resume")
        extra = replace(prev, time=t_k, label=f"{prev.label} (step back after a delay)")
        rest = [replace(d, time=d.time + gap) for d in shifted]
        new = before + [extra] + rest
        return Regimen(tuple(new), "day", regimen.name), k - 1, k
    # restart: every dose lower than dose k again, at the regimen's own spacing, then dose k
    steps = [d for d in doses[: k - 1] if d.amount < after[0].amount]
    if not steps:
        return delayed(regimen, k, delay, "resume")
    t0 = steps[0].time
    redo = [replace(d, time=t_k + (d.time - t0), label=f"{d.label} (restart)") for d in steps]
    # dose k follows the last redone step at the regimen's own spacing after that step
    span = doses[doses.index(steps[-1]) + 1].time - steps[0].time
    rest = [replace(d, time=d.time + span) for d in shifted]
    new = before + redo + rest
    return Regimen(tuple(new), "day", regimen.name), k - 1, k - 1 + len(redo)


def padded_g2(setup, regimens: Sequence[Regimen], horizon: float) -> list[np.ndarray]:
    """Per-dose population P(CRS >= 2) (%) of each regimen on the setup's patients, one compiled program for all:
    events and dose times padded to the largest regimen (padding masked; :func:`qsp.crs.crs_per_dose`)."""
    import jax
    import jax.numpy as jnp

    from ..events import EventArrays, field_group, pad_field
    from ..trial import SEG_POINTS, patient_batch_fn, prepare_trial

    tis = [prepare_trial(setup.model, r, setup.population, setup.ref, days=horizon, crs=setup.crs,
                         params=setup.params or None, out_names=("conc_ug_per_ml",), follow_up_days=0.0)
           for r in regimens]
    sizes = {g: max(getattr(t.events, f).shape[1] for t in tis)
             for g, f in (("jump", "jump_amount"), ("inf", "inf_amount"), ("ss", "ss_mode"))}
    nd = max(t.dose_t.shape[0] for t in tis)
    t0 = tis[0]
    batch = jax.jit(patient_batch_fn(setup.model, t0.cfg, SEG_POINTS, ("conc_ug_per_ml",)))
    shared = ({k: jnp.asarray(v) for k, v in t0.params.items()}, jnp.asarray(t0.ts))
    c = {k: jnp.asarray(v) for k, v in t0.crs.items()}
    out = []
    for t in tis:
        ev = {}
        for f in EventArrays._fields:
            ev[f] = pad_field(f, np.asarray(getattr(t.events, f)), sizes[field_group(f)])
        k = t.dose_t.shape[0]
        dose_t = np.full(nd, np.inf)
        dose_t[:k] = t.dose_t
        mask = np.arange(nd) < k
        _, status, _, crs = batch(shared[0], EventArrays(**ev), shared[1], jnp.asarray(dose_t), jnp.asarray(mask), c,
                                  jnp.asarray(t.eta), jnp.asarray(t.prior_tcr))
        ok = np.asarray(status) == 0
        q = np.asarray(crs["p_g2plus"])[ok][:, :k]
        out.append(100.0 * np.nanmean(q, axis=0))
    return out


def restart_table(card, regimen: Regimen | None = None, *, delays: Sequence[float] = (3, 7, 14, 21, 28, 42, 56),
                  doses: Sequence[int] | None = None, patients: int = 100, seed: int = 0, tolerance: float = 1.0,
                  parameters=None, follow_days: float = 10.0,
                  progress: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rule table (one row per dose and delay window) and the raw risks (one row per dose, delay, action)."""
    say = progress or (lambda m: None)
    reg = (regimen or card.regimen(until_day=120)).in_unit("day")
    dd = drug_doses(reg)
    if len(dd) < 2:
        raise InputError("the regimen has fewer than two doses: nothing to delay", field="regimen")
    if any(not (x > 0) for x in delays):
        raise InputError(f"delays must be positive numbers of days, got {list(delays)}", field="delays")
    ks = list(doses) if doses else list(range(2, min(len(dd), 7) + 1))
    bad = [k for k in ks if not 2 <= k <= len(dd)]
    if bad:
        raise InputError(f"dose(s) {bad} cannot be delayed; allowed: 2-{len(dd)}", field="doses")
    setup = card_trial_setup(card, patients=patients, seed=seed, parameters=parameters)
    top = max(d.amount for d in dd)
    k_td = next(i for i, d in enumerate(dd) if d.amount >= top)
    jobs = [(None, None, None, reg, 0, k_td)]
    for k in ks:
        for d in delays:
            for a in ACTIONS:
                jobs.append((k, float(d), a, *delayed(reg, k, float(d), a)))
    horizon = max(drug_doses(j[3])[j[5]].time for j in jobs) + follow_days
    say(f"{len(jobs)} regimens on {patients} virtual patients over {horizon:g} days")
    q_all = padded_g2(setup, [j[3] for j in jobs], horizon)
    reference = float(np.max(q_all[0][: k_td + 1]))
    say(f"reference: largest per-dose P(CRS>=2) of the step-up without delay {reference:.2f}%")
    raw = [{"dose_no": k, "delay_days": d, "action": a, "risk_g2_pct": float(np.max(q[i0: i1 + 1]))}
           for (k, d, a, _, i0, i1), q in zip(jobs[1:], q_all[1:])]
    raw = pd.DataFrame(raw)
    rules = []
    for k in ks:
        sub = raw[raw.dose_no == k]
        prev = None
        for d in delays:
            r = sub[sub.delay_days == float(d)].set_index("action").risk_g2_pct
            ok = [a for a in ACTIONS if r[a] <= reference * tolerance + 1e-12]
            act = ok[0] if ok else min(ACTIONS, key=lambda a: r[a])
            if prev is not None and prev["action"] == act:
                prev["delay_to_days"] = float(d)
                continue
            prev = {"dose_no": k, "planned_day": dd[k - 1].time + 1.0, "dose": dd[k - 1].amount,
                    "unit": dd[k - 1].unit, "delay_from_days": float(d), "delay_to_days": float(d), "action": act,
                    "risk_g2_pct": float(r[act]), "within_reference": bool(ok)}
            rules.append(prev)
    out = pd.DataFrame(rules)
    out["reference_g2_pct"] = reference
    return out, raw


__all__ = ["ACTIONS", "delayed", "padded_g2", "restart_table"]
