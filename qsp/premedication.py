"""Premedication policy: which doses get dexamethasone, as regimen data (no model imports).

Label premedication ``label``: dexamethasone 16 mg (the teclistamab, talquetamab and elranatamab label
dose; other labels give 8-20 mg) 1 h before every drug dose up to and including the first treatment dose
(the first dose at the regimen's highest amount), on route ``premed_dex`` (the TCE model's DEX state).
``none``: no premedication.

The virtual-trial layer (:mod:`qsp.trial`) and drug runs (:mod:`qsp.drugrun`) both take the policy
from here, so no library layer imports an application module for it.
"""

from __future__ import annotations

from .errors import InputError
from .regimen import Dose, Regimen

PREMED_OPTIONS = ("none", "label")
PREMED_ROUTE = "premed_dex"
DEX_MG = 16.0
DEX_LEAD_DAY = 1.0 / 24.0


def drug_doses(regimen: Regimen) -> list[Dose]:
    """The regimen's drug doses (premedication excluded), repeats expanded, in time order."""
    return [d for d in regimen.expanded().doses if d.route != PREMED_ROUTE]


def with_premedication(regimen: Regimen, premed: str) -> Regimen:
    """Add label premedication (dexamethasone) to a regimen; ``premed`` is ``none`` or ``label``."""
    if premed not in PREMED_OPTIONS:
        raise InputError(f"unknown premedication {premed!r}; allowed: {', '.join(PREMED_OPTIONS)}", field="premed")
    if premed == "none":
        return regimen
    doses = drug_doses(regimen.in_unit("day"))
    if not doses:
        return regimen
    top = max(d.amount for d in doses)
    pre = []
    for d in doses:
        pre.append(Dose(d.time - DEX_LEAD_DAY, DEX_MG, "mg", PREMED_ROUTE, label="dexamethasone premedication"))
        if d.amount >= top:
            break
    return regimen.in_unit("day") + Regimen(tuple(pre), "day")


__all__ = ["PREMED_OPTIONS", "PREMED_ROUTE", "DEX_MG", "DEX_LEAD_DAY", "drug_doses", "with_premedication"]
