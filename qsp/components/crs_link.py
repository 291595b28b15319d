"""The CRS layer's parameters as a model component: they live in the model's parameter namespace.

The per-dose CRS probabilities are an observation layer (:mod:`qsp.crs`) computed from the simulated T-cell
cytokine drive,
not part of the vector field; this component has no states and no rates. It exists so that the CRS
parameters sit beside every other parameter (value, unit, source, prior), reach the solver's parameter
dict like the others (``simulate(..., params={"CRS_BETA": ...})``, per-patient arrays included), and can be
overridden by a card's ``[crs]`` table and fitted jointly with the mechanism. The equations are in
:mod:`qsp.crs`. Their values were fitted to one drug's data (teclistamab), so their priors are wide (explicit
below): SD 2 on the log-odds scale for the intercept and the tolerance weight, SD 1 of log for positive ones.
"""

from __future__ import annotations

from ..model import Component, Param
from ..priors import Prior

_CHOSEN = ("prior fitted by calibration/crs_prior.py (1000 virtual patients, seed 1, prior mechanistic model) to "
           "the per-dose CRS incidence of teclistamab's label step-up regimen, Tecvayli US PI 5.1 (42/36/25/2%; "
           "the prior gives 41.6/38.6/17.4/8.3%)")
_GRADES = ("prior fitted by calibration/crs_prior.py to MajesTEC-1 overall CRS grade >= 2 (21.8%) and grade 3 "
           "(0.6%) (van de Donk et al. Cancer 2023, data/crs_overall.csv)")
CRS_PARAMS = (
    Param("CRS_THETA1", -2.784, "1",
          "log-odds of CRS grade >= 1 at zero rise of the T-cell cytokine drive (typical patient)", _CHOSEN,
          real=True, prior=Prior(2.0, "identity")),
    Param("CRS_DELTA2", 2.511, "1", "log-odds gap from grade >= 1 to grade >= 2", _GRADES, prior=Prior(1.0, "log")),
    Param("CRS_DELTA3", 4.404, "1", "log-odds gap from grade >= 2 to grade >= 3", _GRADES, prior=Prior(1.0, "log")),
    Param("CRS_BETA", 1.264, "1", "log-odds per unit log rise of the T-cell cytokine drive after the dose",
          _CHOSEN, prior=Prior(1.0, "log")),
    Param("CRS_X50", 0.029, "pg/mL", "scale of the T-cell cytokine drive (IL-6-equivalent) in the CRS exposure "
          "log((CRS_X50 + X_peak) / (CRS_X50 + X_dose))", _CHOSEN, prior=Prior(2.0, "log")),
    Param("CRS_TOL", 0.0, "1", "log-odds removed per unit of tolerance memory from earlier doses", _CHOSEN,
          real=True, prior=Prior(2.0, "identity")),
    Param("CRS_TOL_TAU", 21.0, "day", "decay time of tolerance (risk returns after long pauses)",
          "assumed: labels re-start step-up after dose delays of ~4 weeks or more (Tecvayli US PI 2.4)",
          prior=Prior(1.0, "log")),
    Param("CRS_PRIOR_TCR", -0.7, "1", "log-odds shift for prior T-cell-redirecting therapy",
          "assumed: fewer CRS events after prior T-cell-redirecting therapy (SCIENCE.md 2.5)", real=True,
          prior=Prior(1.0, "identity")),
    Param("CRS_OMEGA", 1.0, "1", "SD of patient-level CRS sensitivity (log-odds)",
          "assumed: patient-level sensitivity, order of the random effects of ordinal CRS models",
          prior=Prior(0.5, "log")),
)


class CRSLink(Component):
    """No states: the CRS layer's parameters (:data:`CRS_PARAMS`), with optional new default values."""

    name = "crs_link"
    states = ()

    def __init__(self, values: dict | None = None, sources: dict | None = None):
        from dataclasses import replace

        v, src = dict(values or {}), dict(sources or {})
        self.params = tuple(replace(p, value=float(v[p.name]), source=src.get(p.name, p.source)) if p.name in v else p
                            for p in CRS_PARAMS)
