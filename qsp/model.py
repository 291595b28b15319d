"""Models as compositions of components with named states and named parameters.

A :class:`Component` declares its states (:class:`State`), parameters (:class:`Param`, with unit,
description and source) and two pure functions of ``(t, y, p, d)``, where ``y`` maps state names to
values, ``p`` maps parameter names to values and ``d`` holds derived quantities:

* ``derive(t, y, p, d) -> dict`` adds derived quantities (e.g. free drug from a binding equilibrium);
  every component's ``derive`` runs, in order, before any ``rates``;
* ``rates(t, y, p, d) -> dict`` returns contributions to ``dy/dt``; the model sums them per state.

This is how one component's terms reach another's states (the target-mediated hook): PK disposition
eliminates ``d["central_free"]`` when a binding component derives it (QE binding, only free drug is
cleared linearly) and the central amount otherwise, and multiplies its clearance by
``d["cl_factor"]`` when ADA derives one.

A :class:`Model` fixes the state order (one flat array for the solver, never indexed by hand outside
:meth:`Model.unpack`/:meth:`Model.pack`), the dose routes and the NONMEM compartment numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

import jax.numpy as jnp

from .errors import InputError
from .priors import Prior, default_prior


@dataclass(frozen=True)
class Param:
    """A model parameter: name, default value, unit, description, source (citation or "assumed: why"), its
    domain and its prior.

    Domain: ``positive`` (``x > 0``; False: ``x >= 0``), ``upper`` (inclusive upper bound, 1 for a fraction),
    or ``real`` (any finite number, e.g. a log-odds). ``prior``: a :class:`qsp.priors.Prior` on the domain's
    transform; None means :func:`qsp.priors.default_prior` (tight for a sourced value, wide for an assumed
    one), see :meth:`get_prior`.
    """

    name: str
    value: float
    unit: str
    description: str
    source: str = "assumed"
    positive: bool = True  # False: non-negative (a lag may be 0)
    upper: float | None = None  # inclusive upper bound (1 for a fraction or probability)
    real: bool = False  # any finite value (log-odds, shifts)
    prior: Prior | None = None

    @property
    def domain(self) -> str:
        """The allowed values in words: ``> 0``, ``>= 0``, ``0 < x <= 1``, ``0 <= x <= 1`` or ``finite``."""
        if self.real:
            return "finite"
        lo = "0 < x" if self.positive else "0 <= x"
        if self.upper is not None:
            return f"{lo} <= {self.upper:g}"
        return "> 0" if self.positive else ">= 0"

    def violation(self, value) -> str | None:
        """Why ``value`` is not allowed for this parameter (None if it is)."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            return f"must be a number, got {value!r}"
        if v != v or v in (float("inf"), float("-inf")):
            return f"must be a finite number, got {value!r}"
        if self.real:
            return None
        if (self.positive and not v > 0) or (not self.positive and not v >= 0) or \
                (self.upper is not None and v > self.upper):
            unit = f" ({self.unit})" if self.unit not in ("", "1") else ""
            return f"must be {self.domain}{unit}, got {v:g}"
        return None

    def get_prior(self) -> Prior:
        """The declared prior, or the default for this parameter's domain and source."""
        if self.prior is not None:
            return self.prior
        if not self.real and not self.positive and self.value == 0:
            return default_prior(self.source, real=True)  # a zero default (lag, growth): normal around 0
        return default_prior(self.source, positive=self.positive or self.value > 0, upper=self.upper,
                             real=self.real)


@dataclass(frozen=True)
class State:
    """A model state. ``initial`` is a number or the name of a parameter holding the initial value."""

    name: str
    unit: str
    description: str
    initial: float | str = 0.0


@dataclass(frozen=True)
class Output:
    """A named model output with its unit."""

    name: str
    unit: str
    description: str


@dataclass(frozen=True)
class DoseRoute:
    """Where a route delivers its dose and which parameters give its bioavailability and lag."""

    state: str
    f_param: str | None = None
    lag_param: str | None = None


class Component:
    """Base class: a pure piece of a vector field over named states and parameters."""

    name: str = "component"
    states: tuple[State, ...] = ()
    params: tuple[Param, ...] = ()
    outputs: tuple[Output, ...] = ()

    def derive(self, t, y: Mapping, p: Mapping, d: dict) -> dict:
        return {}

    def rates(self, t, y: Mapping, p: Mapping, d: Mapping) -> dict:
        return {}

    def initial(self, p: Mapping, y0: dict) -> dict:
        """Initial values of this component's states (may use parameters and other initial values)."""
        out = {}
        for s in self.states:
            out[s.name] = p[s.initial] if isinstance(s.initial, str) else jnp.asarray(s.initial, dtype=float)
        return out

    def output_values(self, t, y: Mapping, p: Mapping, d: Mapping) -> dict:
        return {}


@dataclass(frozen=True, eq=False)
class Model:
    """A composed model.

    Args:
        name: model identifier (``pk-2cmt``).
        components: ordered components; their states form the state vector in this order.
        time_unit: ``"h"`` or ``"day"``: the unit of ``t`` and of every rate constant.
        amount_unit: unit of dose amounts in the state (``"mg"`` or ``"nmol"``).
        routes: route name -> :class:`DoseRoute`.
        cmt: NONMEM compartment number -> (state name, route used for F/lag when dosed there).
        mw_g_per_mol: molecular weight for molar conversion (None for mass-only models).
        linear: the vector field is linear (affine) in the state with time-invariant coefficients; steady
            states then come in closed form (:mod:`qsp.steady_state`). Checked by the tests.
        aliases: other accepted names of parameters (NONMEM's ``F1`` for the depot's ``F``), alias -> name.
    """

    name: str
    components: tuple[Component, ...]
    time_unit: str = "day"
    amount_unit: str = "mg"
    routes: Mapping[str, DoseRoute] = field(default_factory=dict)
    cmt: Mapping[int, tuple[str, str]] = field(default_factory=dict)
    mw_g_per_mol: float | None = None
    description: str = ""
    overrides: Mapping[str, float] = field(default_factory=dict)  # card values replacing component defaults
    override_sources: Mapping[str, str] = field(default_factory=dict)
    override_priors: Mapping[str, Prior] = field(default_factory=dict)  # card priors replacing the defaults
    linear: bool = False
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        names = [s.name for c in self.components for s in c.states]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate state names in {self.name}: {names}")
        pnames = [p.name for c in self.components for p in c.params]
        if len(set(pnames)) != len(pnames):
            dup = sorted({n for n in pnames if pnames.count(n) > 1})
            raise ValueError(f"duplicate parameter names in {self.name}: {dup}")
        for r, dr in self.routes.items():
            if dr.state not in names:
                raise ValueError(f"route {r} targets unknown state {dr.state}")

    # --- names ------------------------------------------------------------------------------------
    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for c in self.components for s in c.states)

    @property
    def state_info(self) -> dict[str, State]:
        return {s.name: s for c in self.components for s in c.states}

    @property
    def param_info(self) -> dict[str, Param]:
        info = {p.name: p for c in self.components for p in c.params}
        for k, v in self.overrides.items():
            info[k] = replace(info[k], value=float(v), source=self.override_sources.get(k, info[k].source))
        for k, pr in self.override_priors.items():
            info[k] = replace(info[k], prior=pr)
        return info

    def with_priors(self, priors: Mapping[str, Prior]) -> "Model":
        """A copy whose parameters ``priors`` (name -> :class:`qsp.priors.Prior`) replace the declared ones."""
        info = {p.name for c in self.components for p in c.params}
        unknown = sorted(set(priors) - info)
        if unknown:
            raise InputError(f"prior for unknown parameter(s) {unknown} of model {self.name}", field="prior")
        return replace(self, override_priors={**self.override_priors, **priors})

    def priors(self) -> dict[str, Prior]:
        """Every parameter's prior (declared, card-given or default), by name."""
        return {k: p.get_prior() for k, p in self.param_info.items()}

    def with_defaults(self, values: Mapping[str, float], sources: Mapping[str, str] | None = None) -> "Model":
        """A copy whose default parameter values (and sources) are replaced by ``values``."""
        info = {p.name for c in self.components for p in c.params}
        unknown = sorted(set(values) - info)
        if unknown:
            raise InputError(f"unknown parameter(s) {unknown} for model {self.name}", field="params")
        srcs = {k: s for k, s in (sources or {}).items() if k in values and s}
        return replace(self, overrides={**self.overrides, **values}, override_sources={**self.override_sources, **srcs})

    @property
    def output_info(self) -> dict[str, Output]:
        return {o.name: o for c in self.components for o in c.outputs}

    @property
    def route_names(self) -> tuple[str, ...]:
        return tuple(self.routes)

    def state_index(self, name: str) -> int:
        try:
            return self.state_names.index(name)
        except ValueError:
            raise InputError(f"unknown state {name!r}; allowed: {', '.join(self.state_names)}", field="cmt") from None

    # --- parameters ---------------------------------------------------------------------------------
    def default_params(self) -> dict[str, float]:
        return {n: float(p.value) for n, p in self.param_info.items()}

    def params(self, overrides: Mapping[str, float] | None = None, **kw) -> dict[str, float]:
        """Default parameters with overrides; unknown names or values outside a parameter's domain
        (:attr:`Param.domain`: positive, non-negative, fraction) raise InputError."""
        out = self.default_params()
        info = self.param_info
        for k, v in self.resolve_aliases({**(overrides or {}), **kw}).items():
            if k not in info:
                raise InputError(f"unknown parameter {k!r} for model {self.name}; allowed: {', '.join(info)}",
                                 field="param")
            why = info[k].violation(v)
            if why is not None:
                raise InputError(f"parameter {k} {why}", field="param")
            out[k] = float(v)
        return out

    def resolve_aliases(self, values: Mapping) -> dict:
        """``values`` with alias names (:attr:`aliases`, e.g. NONMEM's ``F1``) replaced by the parameter names;
        an alias given together with its parameter is refused."""
        out = {}
        for k, v in values.items():
            name = self.aliases.get(k, k)
            if name in out:
                raise InputError(f"parameter {name} given twice (as {name} and as its alias "
                                 f"{[a for a, n in self.aliases.items() if n == name][0]})", field="param")
            out[name] = v
        return out

    # --- state packing -------------------------------------------------------------------------
    def unpack(self, y) -> dict:
        return {n: y[..., i] for i, n in enumerate(self.state_names)}

    def pack(self, ydict: Mapping) -> jnp.ndarray:
        return jnp.stack([jnp.asarray(ydict[n], dtype=float) for n in self.state_names], axis=-1)

    def initial_state(self, p: Mapping) -> jnp.ndarray:
        y0: dict = {}
        for c in self.components:
            y0.update(c.initial(p, y0))
        return self.pack(y0)

    # --- the vector field ---------------------------------------------------------------------------
    def derived(self, t, y: Mapping, p: Mapping) -> dict:
        d: dict = {}
        for c in self.components:
            d.update(c.derive(t, y, p, d))
        return d

    def rhs_dict(self, t, y: Mapping, p: Mapping, inputs: Mapping | None = None) -> dict:
        """``dy/dt`` as a dict; ``inputs`` adds zero-order input rates (infusions) per state."""
        d = self.derived(t, y, p)
        dy = {n: jnp.zeros_like(y[n]) for n in self.state_names}
        for c in self.components:
            for k, v in c.rates(t, y, p, d).items():
                dy[k] = dy[k] + v
        if inputs is not None:
            for k, v in inputs.items():
                dy[k] = dy[k] + v
        return dy

    def vector_field(self, t, y, args):
        """Flat-array vector field for the solver: ``args = (params, input_rate_vector)``."""
        p, rate = args
        dy = self.rhs_dict(t, self.unpack(y), p)
        return self.pack(dy) + rate

    def outputs(self, t, y, p: Mapping) -> dict:
        """All named outputs at state ``y`` (flat array)."""
        yd = self.unpack(y)
        d = self.derived(t, yd, p)
        out = {}
        for c in self.components:
            out.update(c.output_values(t, yd, p, d))
        return out

    def check_complete(self) -> None:
        """Every output and rate refers to known states (called by tests)."""
        y = {n: jnp.asarray(1.0) for n in self.state_names}
        p = {k: jnp.asarray(v) for k, v in self.default_params().items()}
        dy = self.rhs_dict(0.0, y, p)
        assert set(dy) == set(self.state_names)


def compose(name: str, components: Sequence[Component], **kw) -> Model:
    return Model(name=name, components=tuple(components), **kw)


ParamFn = Callable[[Mapping], float]
