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
sensitivity (``eta_crs ~ N(0, CRS_OMEGA^2)``, CRS_OMEGA from the model's namespace unless the spec's
``crs_omega`` overrides it).

Sampling is counter-based, so a cohort is stable: patient ``i``'s covariates and random effects depend on
``(seed, i)`` (and the spec) only, never on the number of patients drawn: growing ``n`` appends patients and
leaves the first ones bit-for-bit unchanged (``pop.subset(range(m))`` of a large cohort equals the cohort of
``m``). Each variate is one evaluation of the threefry-2x32 function of ``jax.random`` (integer arithmetic,
the same bits on every platform; evaluated in numpy by :func:`threefry2x32`, bit-identical to
``jax.random.fold_in`` and with nothing to compile): the seed (an integer below 2**64) is the key
``(seed >> 32, seed & 0xffffffff)`` (``jax.random.PRNGKey(seed)``), patient ``i``'s key is
``fold_in(key, i)`` and each named *stream* folds in the CRC-32 of its name (``zlib.crc32``, not Python's
salted ``hash``): ``fold_in(fold_in(key, i), crc32(name))``. The 64 bits of that key give one variate: a
uniform ``(bits >> 11) * 2**-53`` in [0, 1) or a standard normal ``ndtri(((bits >> 12) + 0.5) * 2**-52)``
(``scipy.special.ndtri``, the inverse normal CDF). Streams: ``eta:<P>`` (the uncorrelated standard normal
``z_P`` of each parameter with IIV; ``eta = L z`` with ``L`` the Cholesky factor of ``Omega`` in the order
of the spec's ``omega``, summed elementwise in a fixed order rather than by BLAS, whose blocking could
depend on ``n``), ``weight`` (normal), ``prior_tcr``, ``premed``, ``ada`` (uniforms; Bernoulli as
``u < p``) and ``eta_crs`` (normal). As the streams are named, adding or removing IIV on a parameter leaves
unchanged every covariate draw and the random effects of the parameters that correlate with no other (those
in a correlated block may change through ``L``). No global numpy or JAX random state is used.

The IIV SDs can be fitted (:mod:`qsp.calibrate`): the parameter ``OMEGA_<P>`` (e.g. ``OMEGA_KIL6``) is
``omega_P`` with the prior :data:`OMEGA_PRIOR` around the default below (:func:`omega_target`,
:func:`fittable_omega`). A fitted value is applied to the spec (``replace(spec, omega=...)``); as the streams
are named, the patients keep their ``z_P`` and only the spread scales: ``P_i = P_typ exp(omega_P z_P,i)``
(times the allometric factor, which does not move; a correlated parameter keeps its correlation coefficients).

The card may override any default in a ``[population]`` table (keys of :class:`PopulationSpec`, ``omega`` as
a table of ``{ value, source }`` and ``correlations`` as a list of ``["CL", "V1", 0.4]`` triples).

One-compartment cards (``structure.pk = "1cmt"``) name their central volume ``V`` rather than ``V1``: for a
model that has ``V`` and no ``V1``, an omega, correlation or source on ``V1`` (the defaults included)
applies to ``V`` (:meth:`PopulationSpec.for_model`); if the spec gives an omega for ``V`` itself, that wins
and the ``V1`` entries are ignored.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtri

from .errors import InputError
from .model import Model
from .priors import Prior
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
OMEGA_PREFIX = "OMEGA_"
# Every default omega above is assumed: a fit moves it with an SD of 0.5 on log(omega) (a factor ~1.65).
OMEGA_PRIOR = Prior(scale=0.5, transform="log")
ALLOMETRY = {"CL": 0.75, "CLSS": 0.75, "Q": 0.75, "V1": 1.0, "V2": 1.0, "V": 1.0}
LINKED = {"CLSS": "CL"}  # shares the random effect of
ALIASES = {"V1": "V"}  # IIV named on the key applies to the value in a model that has the value and not the key


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
    crs_omega: float | None = None  # None: the model's CRS_OMEGA (qsp.components.crs_link)
    allometry: bool = True
    sources: Mapping[str, str] = field(default_factory=dict)

    def for_model(self, model: Model) -> "PopulationSpec":
        """This spec with ``V1`` entries moved to ``V`` for a model that has ``V`` and no ``V1`` (1-cmt PK).

        If the spec already gives an omega for ``V``, the ``V1`` omega and correlations are dropped instead.
        """
        info = model.param_info
        spec = self
        for old, new in ALIASES.items():
            if old in info or new not in info:
                continue
            named = old in spec.omega or any(old in pair for pair in spec.correlations)
            if not named:
                continue
            if new in spec.omega:  # the spec's own entry for the model's name wins
                omega = {k: v for k, v in spec.omega.items() if k != old}
                corr = {pair: r for pair, r in spec.correlations.items() if old not in pair}
            else:
                omega = {(new if k == old else k): v for k, v in spec.omega.items()}
                corr = {tuple(new if k == old else k for k in pair): r for pair, r in spec.correlations.items()}
            sources = {(new if k == old and new not in spec.sources else k): v for k, v in spec.sources.items()}
            spec = replace(spec, omega=omega, correlations=corr, sources=sources)
        return spec

    def check(self, model: Model) -> None:
        """Validate against a model: parameter names, ranges, a positive-definite correlation matrix.

        The spec is first mapped onto the model's parameter names (:meth:`for_model`).
        """
        self.for_model(model)._check(model)

    def _check(self, model: Model) -> None:
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
            if getattr(self, name) is not None and not getattr(self, name) >= 0:
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
    spec = PopulationSpec()
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
            cur = getattr(spec, k)
            kw[k] = float(v) if cur is None else type(cur)(v)
        spec = replace(spec, **kw)
    spec = replace(spec, **overrides) if overrides else spec
    return replace(spec, sources={**srcs, **dict(spec.sources)})


def omega_target(name: str) -> str | None:
    """``P`` for a fittable IIV parameter name ``OMEGA_<P>`` with a default omega, else None."""
    if name.startswith(OMEGA_PREFIX) and name[len(OMEGA_PREFIX):] in DEFAULT_OMEGA:
        return name[len(OMEGA_PREFIX):]
    return None


def fittable_omega(target: str, spec: PopulationSpec) -> str | None:
    """Why ``omega_<target>`` cannot be fitted by rescaling the patients' random effects (None if it can).

    A fit rescales each patient's random effect, ``eta_i = omega z_i`` with ``z_i`` fixed, keeping the
    allometric factor apart: ``P_i = P_typ exp(omega z_i) (WT_i / WT_ref)^a``. That is the population
    :func:`sample_population` draws with the new omega (:func:`with_omegas`), correlations included: with
    ``Omega = D R D`` (``D`` the omegas, ``R`` the correlations) the Cholesky factor is ``D chol(R)``, so changing
    one omega scales that parameter's random effect and no other, at the same correlation coefficients. A
    parameter sharing its random effect (``CLSS`` with ``CL``, :data:`LINKED`) moves with it. Only a parameter
    without IIV in ``spec`` (omega 0) cannot be fitted."""
    if target in LINKED:
        return f"{target} shares the random effect of {LINKED[target]} (fit OMEGA_{LINKED[target]})"
    if spec.omega.get(target, 0.0) <= 0.0:
        return f"{target} has no IIV in this population (omega 0)"
    return None


def with_omegas(spec: PopulationSpec, values: Mapping[str, float]) -> PopulationSpec:
    """``spec`` with the omegas of ``{OMEGA_<P>: value}`` replaced (names checked; values >= 0)."""
    om = dict(spec.omega)
    for name, v in values.items():
        target = omega_target(name)
        if target is None:
            raise InputError(f"unknown IIV parameter {name!r}; allowed: "
                             f"{', '.join(OMEGA_PREFIX + k for k in DEFAULT_OMEGA)}", field=name)
        if not (np.isfinite(v) and v >= 0):
            raise InputError(f"{name} must be >= 0, got {v!r}", field=name)
        om[target] = float(v)
    return replace(spec, omega=om)


@dataclass
class VirtualPopulation:
    """Sampled patients: per-patient parameter arrays and a covariate table (one row per patient)."""

    seed: int
    spec: PopulationSpec
    params: dict[str, np.ndarray]
    covariates: pd.DataFrame
    # P -> the patients' random effects eta_P (log scale, omega_P times a correlated standard normal), for every
    # parameter with IIV; a fit that rescales omega_P rescales these (qsp.calibrate.likelihood)
    etas: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.covariates)

    def subset(self, idx) -> "VirtualPopulation":
        idx = np.asarray(idx)
        return VirtualPopulation(self.seed, self.spec, {k: v[idx] for k, v in self.params.items()},
                                 self.covariates.iloc[idx].reset_index(drop=True),
                                 {k: v[idx] for k, v in self.etas.items()})


def stream_id(name: str) -> int:
    """The stable 32-bit id of a named random stream (CRC-32 of the UTF-8 name)."""
    return zlib.crc32(name.encode("utf-8"))


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry2x32(k0, k1, x0, x1) -> tuple[np.ndarray, np.ndarray]:
    """Threefry-2x32, 20 rounds (Salmon et al., SC'11), exactly as ``jax.random``'s; uint32 arrays, broadcast.

    Counter-based: the output for a (key, counter) pair depends on nothing else. Integer arithmetic only,
    so every platform gives the same bits. ``threefry2x32(*key, 0, d)`` is ``jax.random.fold_in(key, d)``.
    """
    u32 = np.uint32
    k0, k1 = np.asarray(k0, u32), np.asarray(k1, u32)
    ks = (k0, k1, k0 ^ k1 ^ u32(0x1BD11BDA))
    x0, x1 = np.broadcast_arrays(np.add(x0, k0, dtype=u32), np.add(x1, k1, dtype=u32))
    x0, x1 = x0.copy(), x1.copy()
    tmp = np.empty_like(x1)
    for r in range(5):
        for rot in _ROTATIONS[r % 2]:
            x0 += x1
            np.left_shift(x1, u32(rot), out=tmp)
            x1 >>= u32(32 - rot)
            x1 |= tmp
            x1 ^= x0
        x0 += ks[(r + 1) % 3]
        x1 += ks[(r + 2) % 3]
        x1 += u32(r + 1)
    return x0, x1


def patient_draws(seed: int, n: int, streams: list[str], kinds: tuple[str, ...] | list[str]) -> np.ndarray:
    """``(len(streams), n)`` float64 draws: row ``s`` column ``i`` depends on ``(seed, i, streams[s])`` only.

    ``kinds[s]`` is ``"normal"`` (standard normal) or ``"uniform"`` ([0, 1)). See the module docstring.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise InputError(f"seed must be a non-negative integer below 2**64, got {seed!r}", field="seed")
    if not 0 <= n < 2**32:
        raise InputError(f"number of patients must lie in [0, 2**32), got {n!r}", field="patients")
    if len(kinds) != len(streams):
        raise ValueError("one kind of draw per stream")
    ids = [stream_id(s) for s in streams]
    if len(set(ids)) != len(ids):
        raise ValueError(f"random stream names repeated or with the same CRC-32: {streams}")
    seed = int(seed)
    zero = np.zeros(n, np.uint32)
    # the patient's key: jax.random.fold_in(jax.random.PRNGKey(seed), i)
    p0, p1 = threefry2x32(seed >> 32, seed & 0xFFFFFFFF, zero, np.arange(n, dtype=np.uint32))
    out = np.empty((len(streams), n))
    for s, (sid, kind) in enumerate(zip(ids, kinds)):
        w0, w1 = threefry2x32(p0, p1, zero, np.uint32(sid))  # fold_in(patient key, crc32(name))
        bits = (w0.astype(np.uint64) << np.uint64(32)) | w1.astype(np.uint64)
        if kind == "uniform":
            out[s] = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
        elif kind == "normal":
            out[s] = ndtri(((bits >> np.uint64(12)).astype(np.float64) + 0.5) * 2.0**-52)
        else:
            raise ValueError(f"unknown kind of draw {kind!r}")
    return out


def stratify_draws(u: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    """Latin-hypercube version of :func:`patient_draws`' rows: each row's values replaced by the quantiles of its
    distribution at the draws' ranks, ``Phi^-1((r_i - 1/2) / n)`` (normal) or ``(r_i - 1/2) / n`` (uniform). The
    patients keep their order in every dimension; each marginal is exactly stratified."""
    out = np.empty_like(u, dtype=float)
    n = u.shape[1]
    for s, kind in enumerate(kinds):
        ranks = np.empty(n)
        ranks[np.argsort(u[s], kind="stable")] = np.arange(1, n + 1)
        q = (ranks - 0.5) / n
        out[s] = ndtri(q) if kind == "normal" else q
    return out


def sample_population(model: Model, n: int, seed: int, spec: PopulationSpec | None = None, *,
                      weight_kg: float | None = None, height_cm: float | None = None,
                      bsa_formula: str = "mosteller", stratified: bool = False) -> VirtualPopulation:
    """Draw ``n`` virtual patients for ``model`` (typical values = the model's defaults).

    Args:
        weight_kg, height_cm: the reference patient (the card's covariates); weight is the allometric
            reference and the centre of the weight distribution; height gives each patient's BSA.
        stratified: Latin-hypercube draws (:func:`stratify_draws`: every random dimension's marginal exactly
            stratified over the ``n`` patients, which keep their ranks). For a small fixed population that
            stands in for a large one (the calibration likelihood); patient i then depends on ``n`` too.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"number of patients must be a positive integer, got {n!r}", field="patients")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise InputError(f"seed must be a non-negative integer below 2**64, got {seed!r}", field="seed")
    n, seed = int(n), int(seed)
    spec = (spec or PopulationSpec()).for_model(model)
    spec._check(model)
    typ = model.default_params()
    names, chol = spec._chol()
    tags = ("normal",) * len(names) + ("normal", "uniform", "uniform", "uniform", "normal")
    u = patient_draws(seed, n, [f"eta:{k}" for k in names] + ["weight", "prior_tcr", "premed", "ada", "eta_crs"],
                      tags)
    if stratified:
        u = stratify_draws(u, tags)
    z, (z_w, u_tcr, u_premed, u_ada, z_crs) = u[:len(names)], u[len(names):]
    eta = np.zeros((n, len(names)))
    for j in range(len(names)):  # eta = L z, elementwise in a fixed order (no BLAS: row i cannot depend on n)
        acc = np.zeros(n)
        for m in range(j + 1):
            acc = acc + chol[j, m] * z[m]
        eta[:, j] = acc
    w_ref = float(weight_kg or 70.0)
    sig_w = np.sqrt(np.log1p(spec.weight_cv**2))
    wt = w_ref * np.exp(sig_w * z_w - 0.5 * sig_w**2)
    wt = np.clip(wt, spec.weight_min_kg, spec.weight_max_kg)
    prior_tcr = (u_tcr < spec.prior_tcr_prob).astype(float)
    premed = (u_premed < spec.premed_fraction).astype(float)
    ada = (u_ada < float(typ.get("ADA_PROB", 0.0))).astype(float)
    crs_omega = spec.crs_omega if spec.crs_omega is not None else float(typ.get("CRS_OMEGA", 1.0))
    eta_crs = crs_omega * z_crs

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
    return VirtualPopulation(int(seed), spec, params, cov, {k: eta[:, j] for j, k in enumerate(names)})
