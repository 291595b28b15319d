"""Priors of model parameters, on named transforms: one place for how a fit may move a parameter.

Every :class:`qsp.model.Param` carries a :class:`Prior`: a normal distribution on a transformed scale,

    z = T(value),   z ~ Normal(loc, scale),   loc = T(typical value) unless given,

with the transform ``T`` named after the parameter's domain:

=============  ===========================  ==========================================================
transform      domain                       z
=============  ===========================  ==========================================================
``log``        positive (``x > 0``)         ``log x``: a log-normal prior; ``scale`` is the SD of log x
``logit``      fraction (``0 < x < 1``)     ``log(x / (1 - x))``: a logit-normal prior
``identity``   real                         ``x``: a normal prior
=============  ===========================  ==========================================================

Default scales follow the source (:func:`default_prior`): a value measured or read from a label or paper
gets a tight prior (``SOURCED_SCALE``: SD 0.1 on the log scale, about +-10%); an ``assumed:`` value gets
a wide one (``ASSUMED_SCALE``: SD 1.0 on the log scale, a factor e ~ 2.7 per SD). A model card may set
``prior = { scale = 0.3 }`` (and ``loc``, ``transform``) on any parameter. Calibration works on the
unconstrained ``z`` (:func:`to_unconstrained`, :func:`from_unconstrained`); :func:`log_density` is the
prior's log density in ``z`` (the Jacobian of the transform is the caller's business: fits are done in z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp

TRANSFORMS = ("log", "logit", "identity")
SOURCED_SCALE = 0.1
ASSUMED_SCALE = 1.0


@dataclass(frozen=True)
class Prior:
    """Normal(loc, scale) on the ``transform`` scale; ``loc`` None means "at the typical value"."""

    scale: float
    transform: str = "log"
    loc: float | None = None

    def __post_init__(self):
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r}; allowed: {', '.join(TRANSFORMS)}")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"prior scale must be a positive number, got {self.scale!r}")

    def center(self, value: float) -> float:
        """The prior mean on the transformed scale (``loc`` or the transform of ``value``; plain floats, so it
        can be called while JAX traces a function)."""
        if self.loc is not None:
            return float(self.loc)
        v = float(value)
        if self.transform == "log":
            return math.log(v)
        if self.transform == "logit":
            return math.log(v) - math.log1p(-v)
        return v

    def describe(self, value: float) -> str:
        name = {"log": "log-normal", "logit": "logit-normal", "identity": "normal"}[self.transform]
        if self.transform == "log":
            return f"{name}(median {math.exp(self.center(value)):.4g}, SD of log {self.scale:g})"
        return f"{name}(loc {self.center(value):.4g}, scale {self.scale:g})"


def transform_for(positive: bool, upper: float | None) -> str:
    """The transform that maps a parameter's domain onto the real line."""
    if upper is not None and positive is not None and upper == 1.0:
        return "logit"
    if positive:
        return "log"
    return "identity"


def default_prior(source: str, *, positive: bool = True, upper: float | None = None,
                  real: bool = False) -> Prior:
    """Tight for a sourced value, wide for an ``assumed`` one, on the domain's transform."""
    assumed = (source or "assumed").strip().lower().startswith("assumed")
    transform = "identity" if real else transform_for(positive, upper)
    return Prior(scale=ASSUMED_SCALE if assumed else SOURCED_SCALE, transform=transform)


def to_unconstrained(x, transform: str):
    """``T(x)``: log, logit or identity (works on floats and JAX arrays)."""
    if transform == "log":
        return jnp.log(x)
    if transform == "logit":
        return jnp.log(x) - jnp.log1p(-x)
    return x


def from_unconstrained(z, transform: str):
    """``T^-1(z)``."""
    if transform == "log":
        return jnp.exp(z)
    if transform == "logit":
        return 1.0 / (1.0 + jnp.exp(-z))
    return z


def log_density(z, prior: Prior, value: float):
    """Normal log density of ``z`` under ``prior`` centred for typical value ``value``."""
    mu = prior.center(value)
    r = (z - mu) / prior.scale
    return -0.5 * r * r - jnp.log(prior.scale) - 0.5 * math.log(2.0 * math.pi)


__all__ = ["Prior", "TRANSFORMS", "SOURCED_SCALE", "ASSUMED_SCALE", "transform_for", "default_prior",
           "to_unconstrained", "from_unconstrained", "log_density"]
