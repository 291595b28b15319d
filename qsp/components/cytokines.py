"""IL-6 release with monocyte amplification, and dexamethasone premedication.

IL-6 (pg/mL) is produced by activated T cells in contact with target cells and amplified by activated
monocytes/macrophages (Li et al. Sci Transl Med 2019); production is proportional to activated T cells
times the target-cell contact (Hosseini et al. npj Syst Biol Appl 2020;6:28). Elimination half-life
~20 min (``KEL_IL6 = ln2 / (20 min) = 49.9 /day``); baseline ``IL6_0`` ~2-5 pg/mL.

    prod  = KIL6 * T_act * TGT / (TGT + KTGT50) * (1 + MONO_EMAX * mono) * (1 - I_dex)  [pg/mL/day]
    dIL6/dt  = prod - KEL_IL6 (IL6 - IL6_0)                              (``il6_state=True``)
    IL6      = IL6_0 + prod / KEL_IL6                                     (default: quasi-steady state)
    dmono/dt = KMONO_ON (IL6 - IL6_0)/(IL6 - IL6_0 + MONO_EC50) (1 - mono) - KMONO_OFF mono
    dDEX/dt  = -KDEX DEX ;  I_dex = DEX_IMAX DEX / (DEX_IC50 + DEX)

With a 20-min half-life IL-6 follows its production within ~1 h, so the default quasi-steady-state
form (exact as KEL_IL6 -> infinity) removes the stiffest time scale from the system; ``il6_state=True``
keeps IL-6 as a state (use it to check the QSS; tests compare both). ``mono`` (0-1) is the activated
fraction of monocytes: it carries the amplification's own, slower time course.

Dexamethasone (premedication before step-up doses, e.g. 16 mg for teclistamab per the US label) enters
as dose events on route ``premed_dex`` into the ``DEX`` state (mg); it lowers cytokine production and
T-cell proliferation (``I_dex`` is read by :mod:`qsp.components.tcells`).
"""

from __future__ import annotations

import jax.numpy as jnp

from ..model import Component, Output, Param, State

LN2 = 0.6931471805599453


class Cytokines(Component):
    name = "cytokines"

    def __init__(self, *, il6_state: bool = False, **overrides):
        v = dict(IL6_0=2.8, KIL6=12.0, KTGT50=3000.0, KEL_IL6=LN2 / (20.0 / 60.0 / 24.0), MONO_EMAX=10.0,
                 MONO_EC50=10.0, KMONO_ON=0.7, KMONO_OFF=0.5, KDEX=LN2 / 1.0, DEX_IMAX=0.6, DEX_IC50=4.0)
        v.update(overrides)
        self.il6_state = il6_state
        a = "assumed: class default, calibrated to MajesTEC-1 mean IL-6 (see calibration/)"
        sts = [State("mono", "1", "activated monocyte/macrophage fraction"),
               State("DEX", "mg", "dexamethasone effect-compartment amount")]
        if il6_state:
            sts.insert(0, State("IL6", "pg/mL", "serum IL-6", "IL6_0"))
        self.states = tuple(sts)
        self.params = (
            Param("IL6_0", v["IL6_0"], "pg/mL", "baseline serum IL-6",
                  "MajesTEC-1 pre-dose mean 2.8 pg/mL (Willemin et al. CPT:PSP 2024, Fig. 1)"),
            Param("KIL6", v["KIL6"], "pg/mL/day per cell/uL", "IL-6 production per activated T cell in contact", a),
            Param("KTGT50", v["KTGT50"], "cells/uL", "target cells for half-maximal contact", a),
            Param("KEL_IL6", v["KEL_IL6"], "1/day", "IL-6 elimination rate (half-life ~20 min)",
                  "SCIENCE.md 2.5; Hosseini et al. 2020"),
            Param("MONO_EMAX", v["MONO_EMAX"], "1", "maximal monocyte amplification of IL-6 production",
                  "assumed: monocytes amplify T-cell cytokines (Li et al. Sci Transl Med 2019)"),
            Param("MONO_EC50", v["MONO_EC50"], "pg/mL", "IL-6 excess for half-maximal monocyte activation", a),
            Param("KMONO_ON", v["KMONO_ON"], "1/day", "monocyte activation rate", a),
            Param("KMONO_OFF", v["KMONO_OFF"], "1/day", "monocyte deactivation rate", a),
            Param("KDEX", v["KDEX"], "1/day", "decay of the dexamethasone effect (t1/2 ~1 day)",
                  "assumed: biological half-life of dexamethasone 36-54 h"),
            Param("DEX_IMAX", v["DEX_IMAX"], "1", "maximal inhibition of cytokine production by dexamethasone", a,
                  upper=1.0),
            Param("DEX_IC50", v["DEX_IC50"], "mg", "dexamethasone amount for half-maximal inhibition", a),
        )
        self.outputs = (Output("il6_pg_per_ml", "pg/mL", "serum IL-6"),
                        Output("monocyte_activation", "1", "activated monocyte fraction"),
                        Output("dex_inhibition", "1", "inhibition of cytokine production by dexamethasone"))

    def derive(self, t, y, p, d):
        dex_i = p["DEX_IMAX"] * y["DEX"] / (p["DEX_IC50"] + y["DEX"])
        tgt = d["target_cells_total"]
        contact = tgt / (tgt + p["KTGT50"])
        prod = p["KIL6"] * y["T_act"] * contact * (1.0 + p["MONO_EMAX"] * y["mono"]) * (1.0 - dex_i)
        il6 = y["IL6"] if self.il6_state else p["IL6_0"] + prod / p["KEL_IL6"]
        return {"dex_inhibition": dex_i, "il6_production": prod, "il6": il6}

    def rates(self, t, y, p, d):
        excess = jnp.maximum(d["il6"] - p["IL6_0"], 0.0)
        out = {"mono": p["KMONO_ON"] * excess / (excess + p["MONO_EC50"]) * (1.0 - y["mono"]) - p["KMONO_OFF"] * y["mono"],
               "DEX": -p["KDEX"] * y["DEX"]}
        if self.il6_state:
            out["IL6"] = d["il6_production"] - p["KEL_IL6"] * (y["IL6"] - p["IL6_0"])
        return out

    def output_values(self, t, y, p, d):
        return {"il6_pg_per_ml": d["il6"], "monocyte_activation": y["mono"], "dex_inhibition": d["dex_inhibition"]}
