"""Anti-drug antibodies (ADA): a patient-level process that adds clearance.

``ADA_POS`` (0 or 1 per patient; the population layer draws it with probability ``ADA_PROB``) switches
the process on. The normalized titre (0-1) rises after the onset lag:

    dADA/dt    = ADA_POS * ADA_KRISE * sigmoid((t - ADA_ONSET) / ADA_WIDTH) * (1 - ADA)
    cl_factor  = 1 + ADA_EMAX * ADA / (ADA50 + ADA)

and linear clearance is multiplied by ``cl_factor`` (the PK hook), as in SCIENCE.md 2.6:
CL * (1 + Emax ADA / (ADA50 + ADA)); ADA as an elimination pathway follows Campagne et al. Clin Cancer
Res 2018 and Chen et al. AAPS J 2013;15:1141. ADA is rare for B-/plasma-cell-depleting TCEs
(epcoritamab 2.9%, blinatumomab <1%) and common for some solid-tumour TCEs (56.8% for a PSMAxCD3 SC).
"""

from __future__ import annotations

import jax

from ..model import Component, Output, Param, State


class ADA(Component):
    name = "ada"

    def __init__(self, *, prob=0.03, onset=28.0, sources=None):
        src = sources or {}
        self.states = (State("ADA", "1", "normalized anti-drug antibody titre (0-1)"),)
        self.params = (
            Param("ADA_POS", 0.0, "1", "1 if this patient develops ADA, else 0 (drawn per patient)",
                  "patient-level; population draws it with probability ADA_PROB", positive=False, upper=1.0),
            Param("ADA_PROB", prob, "1", "probability that a patient develops treatment-emergent ADA",
                  src.get("ADA_PROB", "assumed"), positive=False, upper=1.0),
            Param("ADA_ONSET", onset, "day", "typical time of ADA onset after the first dose",
                  src.get("ADA_ONSET", "assumed: treatment-emergent ADA appear after weeks")),
            Param("ADA_WIDTH", 3.0, "day", "spread of the onset (logistic width)", "assumed"),
            Param("ADA_KRISE", 0.15, "1/day", "rate of titre rise after onset", "assumed"),
            Param("ADA_EMAX", 4.0, "1", "maximal fold increase of clearance by ADA",
                  "assumed: ADA markedly reduced exposure of a PSMAxCD3 TCE (FIH report, data/ada.csv)"),
            Param("ADA50", 0.3, "1", "titre for half-maximal clearance increase", "assumed"),
        )
        self.outputs = (Output("ada_titre", "1", "normalized ADA titre"),
                        Output("cl_factor", "1", "clearance multiplier from ADA"))

    def derive(self, t, y, p, d):
        return {"cl_factor": 1.0 + p["ADA_EMAX"] * y["ADA"] / (p["ADA50"] + y["ADA"])}

    def rates(self, t, y, p, d):
        on = jax.nn.sigmoid((t - p["ADA_ONSET"]) / p["ADA_WIDTH"])
        return {"ADA": p["ADA_POS"] * p["ADA_KRISE"] * on * (1.0 - y["ADA"])}

    def output_values(self, t, y, p, d):
        return {"ada_titre": y["ADA"], "cl_factor": d["cl_factor"]}
