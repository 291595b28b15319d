"""PK building blocks: absorption depot and linear 1-/2-compartment disposition with CL(t).

Parameter names follow NONMEM conventions so that datasets and popPK reports map directly
(CL, V/V1, Q, V2, KA, F, ALAG). Units: amounts in the model amount unit (A), volumes in L,
clearances in L per model time unit (T), rate constants in 1/T.

Equations (A_d depot, A_c central, A_p peripheral):

* Depot (first-order absorption; Bateman): ``dA_d/dt = -KA A_d``, ``dA_c/dt += KA A_d``. The dose
  enters the depot scaled by ``F`` after the lag ``ALAG`` (applied by the dose router, see
  :mod:`qsp.simulate`).
* Disposition: ``dA_c/dt += -CL(t)/V1 * A_free - Q/V1 A_c + Q/V2 A_p``, ``dA_p/dt = Q/V1 A_c - Q/V2 A_p``.
  ``A_free`` is the central amount, or the free amount derived by a binding component (the
  target-mediated hook; then ``Q`` also transports free drug only).
* Time-decreasing clearance (mosunetuzumab popPK, Bender et al. Clin Transl Sci 2024; teclistamab,
  Girgis et al. Target Oncol 2022): ``CL(t) = CLSS + (CL - CLSS) exp(-KCL t)`` with ``t`` the time since
  the start of treatment (model time 0). ``CL`` is the initial clearance; ``KCL = ln2 / t_half``.
* ADA hook: clearance is multiplied by ``d["cl_factor"]`` when an ADA component derives it.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..model import Component, Output, Param, State


class Depot(Component):
    """First-order absorption depot (SC or IP) feeding the central compartment."""

    def __init__(self, state: str = "depot", ka: float = 1.0, f: float = 1.0, lag: float = 0.0, *, time_unit="h",
                 names=("KA", "F", "ALAG"), target: str = "central", sources: dict | None = None,
                 description: str = "subcutaneous depot"):
        src = sources or {}
        self.name = state
        self.target = target
        self.ka_name, self.f_name, self.lag_name = names
        self.states = (State(state, "A", f"drug amount in the {description}"),)
        self.params = (
            Param(self.ka_name, ka, f"1/{time_unit}", "first-order absorption rate constant", src.get("ka", "assumed")),
            Param(self.f_name, f, "1", "bioavailability (fraction of the dose absorbed)", src.get("f", "assumed"),
                  upper=1.0),
            Param(self.lag_name, lag, time_unit, "absorption lag time", src.get("lag", "assumed"), positive=False),
        )

    def rates(self, t, y, p, d):
        flux = p[self.ka_name] * y[self.name]
        return {self.name: -flux, self.target: flux}


class CentralDosing(Component):
    """Bioavailability and lag of doses into the central compartment (NONMEM's ``F2`` and ``ALAG2``).

    No states and no rates: the dose router (:mod:`qsp.simulate`) scales a bolus into the central
    compartment by ``F2`` and delays it by ``ALAG2``; for an infusion, ``F2`` changes its duration (rate
    kept, NONMEM RATE > 0 or -1) or its rate (duration kept, RATE = -2). Defaults 1 and 0: an IV dose as
    given. Reference: NONMEM Users Guide Part VI (PREDPP), V.D-E (F and ALAG per compartment).
    """

    name = "central_dosing"

    def __init__(self, time_unit: str = "h"):
        self.params = (
            Param("F2", 1.0, "1", "bioavailability of doses into the central compartment",
                  "NONMEM default: 1 (the dose as given)", upper=1.0),
            Param("ALAG2", 0.0, time_unit, "lag of doses into the central compartment",
                  "NONMEM default: 0 (no lag)", positive=False),
        )


def time_varying_clearance(t, cl0, clss, kcl):
    """``CL(t) = CLSS + (CL0 - CLSS) exp(-KCL t)``, with t clipped at 0."""
    return clss + (cl0 - clss) * jnp.exp(-kcl * jnp.maximum(t, 0.0))


class LinearDisposition(Component):
    """1- or 2-compartment linear disposition (optionally with time-decreasing clearance).

    Outputs ``CP`` = central amount / V1 (A per L); with a binding component present, ``CP`` is the
    total drug concentration and the binding component reports the free one.
    """

    def __init__(self, n_cmt: int = 1, *, cl: float = 1.0, v1: float = 10.0, q: float = 1.0, v2: float = 10.0,
                 time_varying: bool = False, clss: float | None = None, kcl: float = 0.0, time_unit: str = "h",
                 amount_unit: str = "A", sources: dict | None = None):
        if n_cmt not in (1, 2):
            raise ValueError("n_cmt must be 1 or 2")
        src = sources or {}
        self.name = f"pk{n_cmt}"
        self.n_cmt = n_cmt
        self.time_varying = time_varying
        self.v1_name = "V" if n_cmt == 1 else "V1"
        sts = [State("central", amount_unit, "drug amount in the central compartment (total)")]
        ps = [Param("CL", cl, f"L/{time_unit}", "linear clearance (initial value when time-varying)",
                    src.get("CL", "assumed")),
              Param(self.v1_name, v1, "L", "central volume of distribution", src.get("V1", "assumed"))]
        if n_cmt == 2:
            sts.append(State("peripheral", amount_unit, "drug amount in the peripheral compartment"))
            ps += [Param("Q", q, f"L/{time_unit}", "intercompartmental clearance", src.get("Q", "assumed")),
                   Param("V2", v2, "L", "peripheral volume of distribution", src.get("V2", "assumed"))]
        if time_varying:
            ps += [Param("CLSS", clss if clss is not None else cl, f"L/{time_unit}",
                         "steady-state clearance reached as CL(t) decays", src.get("CLSS", "assumed")),
                   Param("KCL", kcl, f"1/{time_unit}", "rate constant of the clearance decrease (ln2/transition t1/2)",
                         src.get("KCL", "assumed"), positive=False)]
        self.states = tuple(sts)
        self.params = tuple(ps)
        self.outputs = (Output("CP", f"{amount_unit}/L", "total drug concentration in the central compartment"),)

    def clearance(self, t, p, d):
        cl = p["CL"]
        if self.time_varying:
            cl = time_varying_clearance(t, p["CL"], p["CLSS"], p["KCL"])
        return cl * d.get("cl_factor", 1.0)

    def rates(self, t, y, p, d):
        v1 = p[self.v1_name]
        free = d.get("central_free", y["central"])
        out = {"central": -self.clearance(t, p, d) / v1 * free}
        if self.n_cmt == 2:
            q, v2 = p["Q"], p["V2"]
            flux = q / v1 * free - q / v2 * y["peripheral"]
            out["central"] = out["central"] - flux
            out["peripheral"] = flux
        return out

    def output_values(self, t, y, p, d):
        return {"CP": y["central"] / p[self.v1_name]}
