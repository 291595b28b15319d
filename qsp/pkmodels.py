"""Built-in linear PK models with NONMEM parameter names: ``pk-1cmt`` and ``pk-2cmt``.

Compartments (NONMEM CMT): 1 = SC depot (KA, F, ALAG), 2 = central. Doses into CMT 2 are IV boluses,
or infusions when RATE > 0. Time unit is the dataset's (hours by default); parameters must be given in
matching units (CL in L/h with hours, as in NONMEM). Output ``CP`` = central amount / V (1-cmt) or V1.
"""

from __future__ import annotations

from .components.pk import Depot, LinearDisposition
from .errors import InputError
from .model import DoseRoute, Model

PK_MODELS = ("pk-1cmt", "pk-2cmt")


def pk_model(name: str, time_unit: str = "h", time_varying_cl: bool = False) -> Model:
    """Build ``pk-1cmt`` or ``pk-2cmt`` (SC depot + linear disposition) in ``time_unit``."""
    if name not in PK_MODELS:
        raise InputError(f"unknown model {name!r}; allowed: {', '.join(PK_MODELS)}", field="model")
    n = 1 if name == "pk-1cmt" else 2
    comps = (Depot("depot", time_unit=time_unit),
             LinearDisposition(n, time_unit=time_unit, time_varying=time_varying_cl))
    routes = {"SC": DoseRoute("depot", "F", "ALAG"), "IV_bolus": DoseRoute("central"),
              "IV_infusion": DoseRoute("central"), "IV_continuous": DoseRoute("central")}
    return Model(name=name, components=comps, time_unit=time_unit, amount_unit="mg", routes=routes,
                 cmt={1: ("depot", "SC"), 2: ("central", "IV_bolus")},
                 description=f"{n}-compartment linear PK with first-order SC absorption")
