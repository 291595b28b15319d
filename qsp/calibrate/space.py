"""The fitted parameter space: class-level parameters shared by all TCEs, drug-level ones per drug, and
drug-level deviations of class parameters where the data ask for them.

A fit works on an unconstrained pytree ``theta`` (every leaf a float64 scalar):

    theta = {"class": {P: z_P},                 # shared by every drug
             "drug":  {drug: {Q: z_Q}},         # per drug
             "dev":   {drug: {P: d_P}}}         # optional per-drug deviation of a class parameter

and a drug's parameter values are

    P_drug = T_P^-1(z_P + d_P,drug)      Q_drug = T_Q^-1(z_Q,drug)

with ``T`` each parameter's prior transform (:mod:`qsp.priors`: log, logit or identity). The log prior is

    sum_P N(z_P | mu_P, s_P) + sum_drug,Q N(z_Q,drug | mu_Q,drug, s_Q,drug) + sum_drug,P N(d_P,drug | 0, tau_P)

where ``mu, s`` come from the parameters' declared priors (``Param.get_prior()``: tight for sourced values,
wide for assumed ones; a card's value and prior for drug-level parameters), and ``tau_P`` is the SD allowed
for a drug's deviation from the class (:data:`DEFAULT_DEVIATION_SD`). How much of the between-drug
differences the deviations carry is read off the fitted ``d`` (:meth:`ParameterSpace.deviation_report`): a
fit that explains the drugs only by deviations has not calibrated the class mechanism.

Class parameters take their prior from the component defaults (the class value), not from any one card.

The population's IIV SDs join as class parameters named ``OMEGA_<P>`` (e.g. ``OMEGA_KIL6``; prior
:data:`qsp.population.OMEGA_PRIOR` around the default omega of :data:`qsp.population.DEFAULT_OMEGA`); the
likelihood rescales the virtual patients' random effects of ``P`` with them. ``CRS_OMEGA`` (the patients' CRS
sensitivity) is a model parameter like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..errors import InputError
from ..model import Model
from ..population import DEFAULT_OMEGA, OMEGA_PRIOR, omega_target
from ..priors import Prior, from_unconstrained, log_density, to_unconstrained

DEFAULT_DEVIATION_SD = 0.5


@dataclass(frozen=True)
class ParameterSpace:
    """Which parameters a fit moves, at which level, and their priors.

    Args:
        models: drug -> the drug's model (its card values and priors).
        class_params: names shared by all drugs (prior from ``class_model``'s declarations).
        drug_params: names fitted per drug (prior from each drug's model).
        deviations: class parameters that may deviate per drug, with the deviation SD ``tau``.
        class_model: the model whose declarations give the class priors (default: the first model with
            card values stripped, i.e. component defaults; pass one explicitly to override).
        prior_overrides: name -> ``{"scale": s, "value": v}``: the prior's SD on its transformed scale and/or
            its centre (a constrained value), replacing the declared ones (a job spec's ``[parameters.priors]``);
            a drug-level name applies to every drug.
    """

    models: Mapping[str, Model]
    class_params: Sequence[str]
    drug_params: Sequence[str] = ()
    deviations: Mapping[str, float] = field(default_factory=dict)
    class_model: Model | None = None
    prior_overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self):
        if not self.models:
            raise InputError("a parameter space needs at least one drug model", field="models")
        for drug, m in self.models.items():
            info = m.param_info
            for k in list(self.class_params) + list(self.drug_params):
                target = omega_target(k)
                if target is not None and k in self.drug_params:
                    raise InputError(f"{k} is an IIV SD of the population: it can only be a class parameter",
                                     field="params")
                if target is not None and target not in info and not (target == "V1" and "V" in info):
                    raise InputError(f"{k}: {drug}'s model has no parameter {target}", field="params")
                if target is None and k not in info:
                    raise InputError(f"parameter {k!r} is not in the model of {drug}; allowed: {', '.join(info)}, "
                                     f"or an IIV SD {', '.join('OMEGA_' + p for p in DEFAULT_OMEGA)}",
                                     field="params")
        both = set(self.class_params) & set(self.drug_params)
        if both:
            raise InputError(f"parameters {sorted(both)} are both class- and drug-level", field="params")
        extra = set(self.deviations) - set(self.class_params)
        if extra:
            raise InputError(f"deviations for non-class parameters {sorted(extra)}", field="deviations")
        for k, tau in self.deviations.items():
            if not (np.isfinite(tau) and tau > 0):
                raise InputError(f"deviation SD of {k} must be positive, got {tau}", field="deviations")
        fitted = set(self.class_params) | set(self.drug_params)
        for k, ov in self.prior_overrides.items():
            if k not in fitted:
                raise InputError(f"prior override for {k!r}, which is not fitted; fitted: {', '.join(sorted(fitted))}",
                                 field="priors")
            bad = set(ov) - {"scale", "value"}
            if bad or not all(np.isfinite(v) and v > 0 for v in ov.values()):
                raise InputError(f"prior override of {k}: scale and/or value, each a positive number; got {dict(ov)}",
                                 field="priors")

    def _override(self, name: str, prior: Prior, value: float) -> tuple[Prior, float]:
        ov = self.prior_overrides.get(name)
        if not ov:
            return prior, value
        if "scale" in ov:
            prior = Prior(scale=float(ov["scale"]), transform=prior.transform, loc=prior.loc)
        if "value" in ov:
            prior, value = Prior(scale=prior.scale, transform=prior.transform), float(ov["value"])
        return prior, value

    # --- priors ---------------------------------------------------------------------------------------
    @property
    def drugs(self) -> list[str]:
        return list(self.models)

    def class_prior(self, name: str) -> tuple[Prior, float]:
        """(prior, typical value) of a class parameter: the component default, not a card's value."""
        target = omega_target(name)
        if target is not None:  # an IIV SD: the population's default omega, assumed
            return self._override(name, OMEGA_PRIOR, float(DEFAULT_OMEGA[target][0]))
        m = self.class_model or next(iter(self.models.values()))
        base = {p.name: p for c in m.components for p in c.params}[name]  # component declaration
        return self._override(name, base.get_prior(), float(base.value))

    def drug_prior(self, drug: str, name: str) -> tuple[Prior, float]:
        p = self.models[drug].param_info[name]
        return self._override(name, p.get_prior(), float(p.value))

    # --- theta ----------------------------------------------------------------------------------------
    def init(self) -> dict:
        """``theta`` at the prior centres (class defaults, each drug's card values, zero deviations)."""
        th = {"class": {}, "drug": {d: {} for d in self.drugs}, "dev": {d: {} for d in self.drugs}}
        for k in self.class_params:
            pr, v = self.class_prior(k)
            th["class"][k] = jnp.asarray(pr.center(v), dtype=float)
        for d in self.drugs:
            for k in self.drug_params:
                pr, v = self.drug_prior(d, k)
                th["drug"][d][k] = jnp.asarray(pr.center(v), dtype=float)
            for k in self.deviations:
                th["dev"][d][k] = jnp.asarray(0.0)
        return th

    def sample_prior(self, key, scale: float = 1.0) -> dict:
        """A draw of ``theta`` from the prior (``scale`` < 1 shrinks it, e.g. for multi-start points)."""
        th = self.init()
        flat, unravel = ravel_pytree(th)
        sd = ravel_pytree(self._sds())[0]
        return unravel(flat + scale * sd * jax.random.normal(key, flat.shape, dtype=flat.dtype))

    def _sds(self) -> dict:
        th = {"class": {}, "drug": {d: {} for d in self.drugs}, "dev": {d: {} for d in self.drugs}}
        for k in self.class_params:
            th["class"][k] = jnp.asarray(self.class_prior(k)[0].scale)
        for d in self.drugs:
            for k in self.drug_params:
                th["drug"][d][k] = jnp.asarray(self.drug_prior(d, k)[0].scale)
            for k, tau in self.deviations.items():
                th["dev"][d][k] = jnp.asarray(float(tau))
        return th

    def values(self, theta: Mapping, drug: str) -> dict:
        """The drug's fitted parameter values (constrained), as JAX scalars, by name."""
        out = {}
        for k in self.class_params:
            pr, _ = self.class_prior(k)
            z = theta["class"][k] + (theta["dev"][drug][k] if k in self.deviations else 0.0)
            out[k] = from_unconstrained(z, pr.transform)
        for k in self.drug_params:
            pr, _ = self.drug_prior(drug, k)
            out[k] = from_unconstrained(theta["drug"][drug][k], pr.transform)
        return out

    def log_prior(self, theta: Mapping):
        lp = 0.0
        for k in self.class_params:
            pr, v = self.class_prior(k)
            lp = lp + log_density(theta["class"][k], pr, v)
        for d in self.drugs:
            for k in self.drug_params:
                pr, v = self.drug_prior(d, k)
                lp = lp + log_density(theta["drug"][d][k], pr, v)
            for k, tau in self.deviations.items():
                lp = lp + log_density(theta["dev"][d][k], Prior(scale=float(tau), transform="identity", loc=0.0), 0.0)
        return lp

    def flatten(self, theta: Mapping):
        """(flat vector, unravel function) of ``theta`` (fixed leaf order)."""
        return ravel_pytree(theta)

    def names(self) -> list[str]:
        """Names of the flat vector's entries, in order (``class:KIL6``, ``drug:teclistamab:TUMOR0``, ...)."""
        th = self.init()
        leaves = jax.tree_util.tree_leaves_with_path(th)
        out = []
        for path, _ in leaves:
            out.append(":".join(str(getattr(p, "key", p)) for p in path))
        return out

    def deviation_report(self, theta: Mapping) -> dict:
        """Per class parameter: the drugs' fitted deviations (on the transformed scale) and their SD relative
        to the allowed ``tau``; near 0 means the class value serves all drugs."""
        rep = {}
        for k, tau in self.deviations.items():
            d = np.array([float(theta["dev"][drug][k]) for drug in self.drugs])
            rep[k] = {"deviations": dict(zip(self.drugs, d.tolist())), "sd_over_tau": float(np.std(d) / tau)}
        return rep


def unconstrained_of(values: Mapping[str, float], priors: Mapping[str, Prior]) -> dict:
    """Transform constrained values to the unconstrained scale of their priors."""
    return {k: float(to_unconstrained(float(v), priors[k].transform)) for k, v in values.items()}


__all__ = ["ParameterSpace", "DEFAULT_DEVIATION_SD", "unconstrained_of"]
