"""Virtual populations: inter-individual variability, covariates, seeded sampling of virtual patients.

Parameters with inter-individual variability (IIV) are log-normal around the card's typical value,
with correlated random effects::

    P_i = P_typ * exp(eta_i,P) * (WT_i / WT_ref)^a_P ,     eta_i ~ N(0, Omega),
    Omega_PQ = omega_P omega_Q rho_PQ

``omega`` is the SD of the log (about the CV for small values). ``CLSS`` (steady-state clearance of a
time-varying-CL card) shares the random effect and allometry of ``CL``. Allometric exponents (body
weight on clearances 0.75, on volumes 1.0) are the standard antibody population-PK choice (Dirks &
Sharma Clin Pharmacokinet 2010;49:633, review of mAb popPK: weight is the most frequent covariate).

Covariates per patient: body weight (log-normal around the card's weight, truncated; drives mg/kg
doses, BSA-based doses and the allometry), baseline blood T cells (``T0``) and tumour/target burden
(``TUMOR0``) through their IIV, prior T-cell-redirecting therapy (Bernoulli; lowers CRS risk in
:mod:`qsp.crs`), premedication (the fraction of patients given the label's dexamethasone), ADA status
(Bernoulli with the card's ``ADA_PROB``; see :mod:`qsp.components.ada`) and the patient's CRS
sensitivity (``eta_crs ~ N(0, CRS_OMEGA^2)``).

Sampling uses ``numpy.random.default_rng(seed)`` with a fixed order of draws, so the same seed gives the
same patients on every run. The card may override any default in a ``[population]`` table (keys of
:class:`PopulationSpec`, ``omega`` as a table of ``{ value, source }`` and ``correlations`` as a list of
``["CL", "V1", 0.4]`` triples).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np
import pandas as pd

from .errors import InputError
from .model import Model
from .units import BSA_FORMULAS

_MAB = "Dirks & Sharma Clin Pharmacokinet 2010;49:633 (mAb popPK review: IIV of CL and V typically 20-50% CV)"
DEFAULT_OMEGA = {
    "CL": (0.3, "assumed: " + _MAB),
    "V1": (0.2, "assumed: " + _MAB),
    "KA": (0.3, "assumed: SC absorption IIV of the order of 30-50% in mAb popPK"),
    "T0": (0.4, "assumed: adult blood CD3 T-cell reference range 550-2271 cells/uL spans ~4-fold"),
    "TUMOR0": (0.8, "assumed: myeloma/lymphoma burden varies over an order of magnitude between patients"),
    "STAA0": (0.6, "assumed: serum sBCMA varies several-fold between myeloma patients (Ghermezi et al. "
                    "Haematologica 2017;102:785)"),
    "KIL6": (0.5, "assumed: peak IL-6 after a TCE dose varies widely between patients (blinatumomab 10-2000 pg/mL, "
                  "SCIENCE.md 2.5)"),
}
DEFAULT_CORRELATIONS = {("CL", "V1"): 0.4}
ALLOMETRY = {"CL": 0.75, "CLSS": 0.75, "Q": 0.75, "V1": 1.0, "V2": 1.0, "V": 1.0}
LINKED = {"CLSS": "CL"}  # shares the random effect of


@dataclass(frozen=True)
class PopulationSpec:
    """How virtual patients vary. ``omega``: SD of log per parameter; ``correlations``: (P, Q) -> rho."""

    omega: Mapping[str, float] = field(default_factory=lambda: {k: v for k, (v, _) in DEFAULT_OMEGA.items()})
    correlations: Mapping[tuple[str, str], float] = field(default_factory=lambda: dict(DEFAULT_CORRELATIONS))
    weight_cv: float = 0.2
    weight_min_kg: float = 40.0
    weight_max_kg: float = 160.0
    prior_tcr_prob: float = 0.0
    premed_fraction: float = 1.0
    crs_omega: float = 1.0
    allometry: bool = True
    sources: Mapping[str, str] = field(default_factory=dict)

    def check(self, model: Model) -> None:
        """Validate against a model: parameter names, ranges, a positive-definite correlation matrix."""
        info = model.param_info
        for k, v in self.omega.items():
            if k not in info:
                raise InputError(f"IIV on unknown parameter {k!r}; allowed: {', '.join(info)}", field=f"omega.{k}")
            if not (np.isfinite(v) and v >= 0):
                raise InputError(f"omega of {k} must be >= 0, got {v!r}", field=f"omega.{k}")
        for (a, b), r in self.correlations.items():
            for k in (a, b):
                if k not in self.omega:
                    raise InputError(f"correlation names {k!r}, which has no IIV; parameters with IIV: "
                                     f"{', '.join(self.omega)}", field="correlations")
            if not -1.0 < r < 1.0:
                raise InputError(f"correlation {a}-{b} must lie in (-1, 1), got {r}", field="correlations")
        for name in ("prior_tcr_prob", "premed_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InputError(f"{name} must lie in [0, 1], got {v!r}", field=name)
        for name in ("weight_cv", "crs_omega"):
            if not getattr(self, name) >= 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)!r}", field=name)
        if not 0 < self.weight_min_kg < self.weight_max_kg:
            raise InputError("weight_min_kg must be positive and below weight_max_kg", field="weight_min_kg")
        self._chol()

    def covariance(self) -> tuple[list[str], np.ndarray]:
        names = [k for k, v in self.omega.items() if v > 0]
        om = np.array([self.omega[k] for k in names])
        rho = np.eye(len(names))
        for (a, b), r in self.correlations.items():
            if a in names and b in names:
                i, j = names.index(a), names.index(b)
                rho[i, j] = rho[j, i] = r
        return names, rho * np.outer(om, om)

    def _chol(self) -> tuple[list[str], np.ndarray]:
        names, cov = self.covariance()
        if not names:
            return names, np.zeros((0, 0))
        try:
            return names, np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise InputError("the IIV correlations do not form a positive-definite matrix", field="correlations") \
                from None


def population_spec(card=None, **overrides) -> PopulationSpec:
    """Defaults, then the card's ``[population]`` table, then keyword overrides."""
    spec = PopulationSpec(crs_omega=1.0)
    srcs = {k: s for k, (_, s) in DEFAULT_OMEGA.items()}
    table = dict(getattr(card, "population", {}) or {})
    if table:
        kw = {}
        if "omega" in table:
            om = dict(spec.omega)
            for k, v in table.pop("omega").items():
                om[k] = float(v["value"] if isinstance(v, Mapping) else v)
                if isinstance(v, Mapping) and "source" in v:
                    srcs[k] = str(v["source"])
            kw["omega"] = om
        if "correlations" in table:
            kw["correlations"] = {(str(a), str(b)): float(r) for a, b, r in table.pop("correlations")}
        allowed = {f for f in PopulationSpec.__dataclass_fields__ if f not in ("omega", "correlations", "sources")}
        for k, v in table.items():
            if k == "source":
                continue
            if k not in allowed:
                raise InputError(f"unknown [population] key {k!r}; allowed: omega, correlations, {', '.join(allowed)}",
                                 field=f"population.{k}")
            kw[k] = type(getattr(spec, k))(v)
        spec = replace(spec, **kw)
    spec = replace(spec, **overrides) if overrides else spec
    return replace(spec, sources={**srcs, **dict(spec.sources)})


@dataclass
class VirtualPopulation:
    """Sampled patients: per-patient parameter arrays and a covariate table (one row per patient)."""

    seed: int
    spec: PopulationSpec
    params: dict[str, np.ndarray]
    covariates: pd.DataFrame

    @property
    def n(self) -> int:
        return len(self.covariates)

    def subset(self, idx) -> "VirtualPopulation":
        idx = np.asarray(idx)
        return VirtualPopulation(self.seed, self.spec, {k: v[idx] for k, v in self.params.items()},
                                 self.covariates.iloc[idx].reset_index(drop=True))


def sample_population(model: Model, n: int, seed: int, spec: PopulationSpec | None = None, *,
                      weight_kg: float | None = None, height_cm: float | None = None,
                      bsa_formula: str = "mosteller") -> VirtualPopulation:
    """Draw ``n`` virtual patients for ``model`` (typical values = the model's defaults).

    Args:
        weight_kg, height_cm: the reference patient (the card's covariates); weight is the allometric
            reference and the centre of the weight distribution; height gives each patient's BSA.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"number of patients must be a positive integer, got {n!r}", field="patients")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}", field="seed")
    spec = spec or PopulationSpec()
    spec.check(model)
    rng = np.random.default_rng(int(seed))
    typ = model.default_params()
    names, chol = spec._chol()
    eta = rng.standard_normal((n, len(names))) @ chol.T if names else np.zeros((n, 0))
    w_ref = float(weight_kg or 70.0)
    sig_w = np.sqrt(np.log1p(spec.weight_cv**2))
    wt = w_ref * np.exp(sig_w * rng.standard_normal(n) - 0.5 * sig_w**2)
    wt = np.clip(wt, spec.weight_min_kg, spec.weight_max_kg)
    prior_tcr = (rng.random(n) < spec.prior_tcr_prob).astype(float)
    premed = (rng.random(n) < spec.premed_fraction).astype(float)
    ada = (rng.random(n) < float(typ.get("ADA_PROB", 0.0))).astype(float)
    eta_crs = spec.crs_omega * rng.standard_normal(n)

    params: dict[str, np.ndarray] = {}
    for k in typ:
        src = LINKED.get(k, k)
        e = eta[:, names.index(src)] if src in names else None
        a = ALLOMETRY.get(k) if spec.allometry else None
        if e is None and a is None:
            continue
        v = np.full(n, float(typ[k]))
        if e is not None:
            v = v * np.exp(e)
        if a is not None:
            v = v * (wt / w_ref) ** a
        params[k] = v
    if "ADA_POS" in typ:
        params["ADA_POS"] = ada
    cov = pd.DataFrame({"id": np.arange(n), "weight_kg": wt})
    if height_cm:
        cov["bsa_m2"] = BSA_FORMULAS[bsa_formula](wt, float(height_cm))
    for k in ("T0", "TUMOR0"):
        if k in typ:
            cov[k] = params.get(k, np.full(n, float(typ[k])))
    cov["prior_tcr"] = prior_tcr
    cov["premed"] = premed
    cov["ada_pos"] = ada
    cov["eta_crs"] = eta_crs
    return VirtualPopulation(int(seed), spec, params, cov)
