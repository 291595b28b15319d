"""Target cells: tumour and normal target-bearing cells, killed by engaged T cells.

States (cells per uL, blood-equivalent scale): ``tumour`` and ``normal_target`` (B cells for CD19/CD20,
normal plasma cells for BCMA/GPRC5D). Killing needs engaged T cells and trimers on the target cell
(``tpc``, trimers per target cell; threshold ~24 per cell for epcoritamab, Li et al. CPT 2022)::

    engaged = (T_new + T_act + T_des) / T0             engaged effector T cells relative to baseline (T_new
                                                       summed over its secretion stages)
    occ     = tpc / (TPC50 + tpc)
    dtumour/dt        = KGROW tumour - KKILL engaged occ tumour
    dnormal_target/dt = KNRM (NORMAL0 - normal_target) - KKILL_NORMAL engaged occ normal_target

Structure (changed from the prior mechanism, and why)
------------------------------------------------------
The prior mechanism killed with the stock of *activated* T cells only (``T_act / T0``), which is small and
transient, so the median tumour barely moved at label doses (blinatumomab's grew 6-fold) and CD20 drugs
did not deplete blood B cells. Cytotoxicity is not what desensitises after the first doses: cytokine
release falls from dose to dose while B-cell depletion and tumour responses continue (e.g. blinatumomab:
cytokines peak in the first days, B-cell depletion and blast clearance continue over the 4-week infusion,
Klinger et al. Blood 2012;119:6226). So killing uses all *engaged* T cells (``T_new`` and its transit stages, the secreting
``T_act`` and the primed ``T_des`` of :mod:`qsp.components.tcells`), which stay engaged while the drug keeps
the signal up.

Normal target cells in blood meet blood T cells at a high effector:target ratio and full drug exposure,
while the tumour sits in nodes and marrow: peripheral B cells are depleted early in cycle 1 of CD20xCD3
therapy (mosunetuzumab, Budde et al. J Clin Oncol 2022;40:481; epcoritamab, Thieblemont et al. J Clin Oncol
2023;41:2238) while tumours shrink over the first cycles (first response assessments at 6-8 weeks). Hence a
separate, faster kill rate constant for normal targets (``KKILL_NORMAL``).

Depleting targets lowers later cytokine release (Hosseini et al. 2020): IL-6 production uses the
target-cell contact term in :mod:`qsp.components.cytokines`.
"""

from __future__ import annotations

from ..model import Component, Output, Param, State

TARGET_STATES = ("tumour", "normal_target")


class TargetCells(Component):
    name = "targets"

    def __init__(self, *, tumour0=500.0, normal0=100.0, kgrow=0.005, sources=None, kkill=0.4, kkill_normal=3.0,
                 tpc50=24.0, knrm=0.02):
        src = sources or {}
        self.states = (State("tumour", "cells/uL", "tumour cells carrying the target (blood-equivalent)", "TUMOR0"),
                       State("normal_target", "cells/uL", "normal target-bearing cells", "NORMAL0"))
        self.params = (
            Param("TUMOR0", tumour0, "cells/uL", "baseline tumour burden (blood-equivalent scale)",
                  src.get("TUMOR0", "assumed"), positive=False),
            Param("NORMAL0", normal0, "cells/uL", "baseline normal target-bearing cells", src.get("NORMAL0", "assumed"),
                  positive=False),
            Param("KGROW", kgrow, "1/day", "tumour net growth rate", src.get("KGROW", "assumed"), positive=False),
            Param("KKILL", kkill, "1/day", "maximal tumour kill rate per target cell with all baseline T cells engaged",
                  "assumed: class default set by hand so that label doses debulk over the first cycles "
                  "(objective responses in 40-80% of patients at the first assessments, 6-8 weeks)"),
            Param("KKILL_NORMAL", kkill_normal, "1/day",
                  "maximal kill rate of normal (blood) target cells with all baseline T cells engaged",
                  "assumed: peripheral B cells are depleted early in cycle 1 of CD20xCD3 therapy (Budde et al. "
                  "J Clin Oncol 2022; Thieblemont et al. J Clin Oncol 2023)"),
            Param("TPC50", tpc50, "1/cell", "trimers per target cell for half-maximal killing",
                  "Li et al. Clin Pharmacol Ther 2022 (activation threshold ~24 trimers per target cell)"),
            Param("KNRM", knrm, "1/day", "replenishment of normal target cells",
                  "assumed: B-cell recovery over months after depletion"),
        )
        self.outputs = (Output("tumour_cells", "cells/uL", "tumour target cells"),
                        Output("normal_target_cells", "cells/uL", "normal target-bearing cells"))

    def derive(self, t, y, p, d):
        tpc = d["tpc"]
        eff = d["t_engaged"] / p["T0"] * tpc / (p["TPC50"] + tpc)
        return {"kill_rate": p["KKILL"] * eff, "kill_rate_normal": p["KKILL_NORMAL"] * eff}

    def rates(self, t, y, p, d):
        nt = y["normal_target"]
        return {"tumour": (p["KGROW"] - d["kill_rate"]) * y["tumour"],
                "normal_target": p["KNRM"] * (p["NORMAL0"] - nt) - d["kill_rate_normal"] * nt}

    def output_values(self, t, y, p, d):
        return {"tumour_cells": y["tumour"], "normal_target_cells": y["normal_target"]}
