"""Target cells: tumour and normal target-bearing cells, killed by activated T cells.

States (cells per uL, blood-equivalent scale): ``tumour`` and ``normal_target`` (B cells for CD19/CD20,
normal plasma cells for BCMA/GPRC5D). Killing needs activated T cells and trimers on the target cell
(``tpc``, trimers per target cell; threshold ~24 per cell for epcoritamab, Li et al. CPT 2022):

    kill = KKILL * (T_act / T0) * tpc / (TPC50 + tpc)                          [1/day]
    dtumour/dt        = KGROW tumour - kill tumour
    dnormal_target/dt = KNRM (NORMAL0 - normal_target) - kill normal_target

Depleting targets lowers later cytokine release (Hosseini et al. 2020): IL-6 production uses the
target-cell contact term in :mod:`qsp.components.cytokines`.
"""

from __future__ import annotations

from ..model import Component, Output, Param, State

TARGET_STATES = ("tumour", "normal_target")


class TargetCells(Component):
    name = "targets"

    def __init__(self, *, tumour0=500.0, normal0=100.0, kgrow=0.005, sources=None, kkill=1.0, tpc50=24.0, knrm=0.02):
        src = sources or {}
        self.states = (State("tumour", "cells/uL", "tumour cells carrying the target (blood-equivalent)", "TUMOR0"),
                       State("normal_target", "cells/uL", "normal target-bearing cells", "NORMAL0"))
        self.params = (
            Param("TUMOR0", tumour0, "cells/uL", "baseline tumour burden (blood-equivalent scale)",
                  src.get("TUMOR0", "assumed"), positive=False),
            Param("NORMAL0", normal0, "cells/uL", "baseline normal target-bearing cells", src.get("NORMAL0", "assumed"),
                  positive=False),
            Param("KGROW", kgrow, "1/day", "tumour net growth rate", src.get("KGROW", "assumed"), positive=False),
            Param("KKILL", kkill, "1/day", "maximal kill rate per target cell at T_act = T0",
                  "assumed: class default"),
            Param("TPC50", tpc50, "1/cell", "trimers per target cell for half-maximal killing",
                  "Li et al. Clin Pharmacol Ther 2022 (activation threshold ~24 trimers per target cell)"),
            Param("KNRM", knrm, "1/day", "replenishment of normal target cells",
                  "assumed: B-cell recovery over months after depletion"),
        )
        self.outputs = (Output("tumour_cells", "cells/uL", "tumour target cells"),
                        Output("normal_target_cells", "cells/uL", "normal target-bearing cells"))

    def derive(self, t, y, p, d):
        tpc = d["tpc"]
        return {"kill_rate": p["KKILL"] * (y["T_act"] / p["T0"]) * tpc / (p["TPC50"] + tpc)}

    def rates(self, t, y, p, d):
        k = d["kill_rate"]
        return {"tumour": (p["KGROW"] - k) * y["tumour"],
                "normal_target": p["KNRM"] * (p["NORMAL0"] - y["normal_target"]) - k * y["normal_target"]}

    def output_values(self, t, y, p, d):
        return {"tumour_cells": y["tumour"], "normal_target_cells": y["normal_target"]}
