"""Built-in linear PK models with NONMEM parameter names: ``pk-1cmt`` and ``pk-2cmt``.

Compartments (NONMEM CMT): 1 = SC depot (KA, F, ALAG; NONMEM's F1 and ALAG1 are accepted as aliases),
2 = central (F2, ALAG2). Doses into either are boluses, or zero-order inputs when RATE != 0. Without a
time-varying clearance both models are linear and time-invariant: steady states come in closed form. Time unit is the dataset's (hours by default); parameters must be given in
matching units (CL in L/h with hours, as in NONMEM). Output ``CP`` = central amount / V (1-cmt) or V1.
"""

from __future__ import annotations

from .components.pk import CentralDosing, Depot, LinearDisposition
from .errors import InputError
from .model import DoseRoute, Model

PK_MODELS = ("pk-1cmt", "pk-2cmt")


def pk_model(name: str, time_unit: str = "h", time_varying_cl: bool = False) -> Model:
    """Build ``pk-1cmt`` or ``pk-2cmt`` (SC depot + linear disposition) in ``time_unit``."""
    if name not in PK_MODELS:
        raise InputError(f"unknown model {name!r}; allowed: {', '.join(PK_MODELS)}", field="model")
    n = 1 if name == "pk-1cmt" else 2
    comps = (Depot("depot", time_unit=time_unit),
             LinearDisposition(n, time_unit=time_unit, time_varying=time_varying_cl), CentralDosing(time_unit))
    routes = {"SC": DoseRoute("depot", "F", "ALAG"), "IV_bolus": DoseRoute("central", "F2", "ALAG2"),
              "IV_infusion": DoseRoute("central", "F2", "ALAG2"), "IV_continuous": DoseRoute("central", "F2", "ALAG2")}
    return Model(name=name, components=comps, time_unit=time_unit, amount_unit="mg", routes=routes,
                 cmt={1: ("depot", "SC"), 2: ("central", "IV_bolus")}, linear=not time_varying_cl,
                 aliases={"F1": "F", "ALAG1": "ALAG"},
                 description=f"{n}-compartment linear PK with first-order SC absorption")
