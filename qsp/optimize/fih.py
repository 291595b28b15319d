"""First-in-human starting dose (MABEL) of a TCE card, three ways, each with its assumption stated.

For a typical patient (the card's reference covariates and typical values) given one dose on the card's first-dose
route, the peak over ``days`` (default 7) of

1. **CD3 receptor occupancy** ``(DR3 + TRI) / R3_tot`` (:mod:`qsp.components.binding`): the MABEL is the dose whose
   peak occupancy is ``ro_pct`` (default 10%). FDA's survey of CD3 bispecific INDs found first-in-human doses
   set at 10-20% receptor occupancy or at 10-20% of the maximal in-vitro activity (Saber et al., Regul Toxicol
   Pharmacol 2017;90:144).
2. **Trimers per T cell at the in-vitro EC20 of activation**: the activation signal is ``hill(tpt, TPT50, HILL)``
   (:mod:`qsp.components.tcells`), so 20% activation is ``tpt20 = TPT50 (0.2/0.8)^(1/HILL)`` trimers per T cell; the
   MABEL is the dose whose peak reaches it (the card's TPT50 and HILL stand for the in-vitro activation curve).
3. **Minimal IL-6 rise**: the dose whose IL-6 peak is ``(1 + il6_rise)`` times baseline (default 20%: within the
   day-to-day variation of serum IL-6 in patients).

Each criterion is monotone in dose below the bell of the trimer curve; the dose is found on a log grid of single
doses solved in one batched call, then refined on a second grid, and interpolated in log dose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..regimen import Dose, Regimen


@dataclass(frozen=True)
class FihSettings:
    ro_pct: float = 10.0
    activation_pct: float = 20.0
    il6_rise: float = 0.2
    days: float = 7.0

    def __post_init__(self):
        if not 0 < self.ro_pct < 100:
            raise InputError(f"receptor occupancy must be a percentage in (0, 100), got {self.ro_pct}", field="ro_pct")
        if not 0 < self.activation_pct < 100:
            raise InputError(f"activation must be a percentage in (0, 100), got {self.activation_pct}",
                             field="activation_pct")
        if not self.il6_rise > 0:
            raise InputError(f"IL-6 rise must be positive, got {self.il6_rise}", field="il6_rise")


def _first_dose_form(card):
    """Route, unit and infusion duration (days) of the card's first label dose (SC / IV infusion 4 h if none)."""
    try:
        reg = card.regimen(until_day=1.0)
        d = next(x for x in reg.in_unit("day").doses if x.route != "premed_dex")
        unit = d.unit if d.unit in ("mg", "ug", "mg/kg", "ug/kg") else "mg"
        return d.route, unit, d.duration
    except (InputError, StopIteration):
        absn = str(card.structure.get("absorption", "SC"))
        return ("SC", "mg", None) if absn in ("SC", "IP") else ("IV_infusion", "mg", 4.0 / 24.0)


def _peaks(card, model, params, doses, route, unit, duration, days):
    import qsp

    regs = [Regimen((Dose(0.0, float(a), unit, route, duration),), "day") for a in doses]
    ts = np.linspace(0.0, days, int(days * 48) + 1)
    res = qsp.simulate(model, regs, ts, params, covariates=[card.covariates()] * len(regs))
    out = {k: np.max(np.asarray(res[k]), axis=1) for k in ("cd3_occupancy", "trimers_per_t_cell", "il6_pg_per_ml")}
    return out, np.asarray(res.status)


def _crossing(doses, values, target):
    """Smallest dose at which ``values`` reaches ``target`` (log-linear interpolation); None if never."""
    above = np.flatnonzero(values >= target)
    if above.size == 0:
        return None
    i = above[0]
    if i == 0:
        return float(doses[0])
    x0, x1 = np.log(doses[i - 1]), np.log(doses[i])
    y0, y1 = values[i - 1], values[i]
    w = (target - y0) / (y1 - y0) if y1 != y0 else 0.0
    return float(np.exp(x0 + w * (x1 - x0)))


def fih_doses(card, *, settings: FihSettings = FihSettings(), params=None, top_mg: float | None = None) -> list[dict]:
    """The three MABEL estimates (one dict each: method, criterion, dose, unit, assumption)."""
    model = card.model()
    vals = model.params(dict(params or {}))
    route, unit, duration = _first_dose_form(card)
    tpt20 = float(vals["TPT50"]) * (settings.activation_pct / (100 - settings.activation_pct)) ** (1 / float(vals["HILL"]))
    il6_target = float(vals["IL6_0"]) * (1 + settings.il6_rise)
    targets = {"cd3_occupancy": settings.ro_pct / 100.0, "trimers_per_t_cell": tpt20, "il6_pg_per_ml": il6_target}
    hi = top_mg if top_mg is not None else (10.0 if unit.endswith("/kg") else 1000.0)
    grid = np.geomspace(hi * 1e-9, hi, 73)
    peaks, status = _peaks(card, model, params, grid, route, unit, duration, settings.days)
    out = {}
    for k, tgt in targets.items():
        ok = status == 0
        d0 = _crossing(grid[ok], peaks[k][ok], tgt)
        if d0 is None:
            out[k] = None
            continue
        fine = np.geomspace(d0 / 1.5, d0 * 1.5, 25)
        pf, sf = _peaks(card, model, params, fine, route, unit, duration, settings.days)
        out[k] = _crossing(fine[sf == 0], pf[k][sf == 0], tgt) or d0
    rows = [
        {"method": "receptor occupancy", "criterion": f"peak CD3 occupancy {settings.ro_pct:g}%",
         "dose": out["cd3_occupancy"],
         "assumption": f"MABEL at {settings.ro_pct:g}% CD3 occupancy (FDA survey of CD3 bispecific FIH doses: 10-20% "
                       "RO; Saber et al. Regul Toxicol Pharmacol 2017;90:144); occupancy from the QE binding with the "
                       f"card's KD_CD3 {float(vals['KD_CD3']):g} nM, CD3 per T cell and KP"},
        {"method": "trimer at in-vitro EC20", "criterion": f"peak {tpt20:.3g} trimers per T cell "
                                                            f"({settings.activation_pct:g}% activation)",
         "dose": out["trimers_per_t_cell"],
         "assumption": f"the card's activation curve (TPT50 {float(vals['TPT50']):g} trimers/T cell, HILL "
                       f"{float(vals['HILL']):g}) is the in-vitro one; trimers from KD_CD3, KD_TAA, CHI and the "
                       "target density of the card"},
        {"method": "minimal IL-6 rise", "criterion": f"IL-6 peak {100 * settings.il6_rise:g}% above baseline "
                                                      f"({il6_target:.3g} pg/mL)",
         "dose": out["il6_pg_per_ml"],
         "assumption": f"a {100 * settings.il6_rise:g}% IL-6 rise is within day-to-day variation; IL-6 from the "
                       "calibrated (or the card's) cytokine parameters, no premedication"},
    ]
    for r in rows:
        r["unit"] = unit
        r["route"] = route
    return rows


__all__ = ["FihSettings", "fih_doses"]
