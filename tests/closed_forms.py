"""Analytic solutions of linear 1- and 2-compartment PK (numpy), used to verify the ODE engine.

Notation (one time unit throughout; rate constants in 1/T, clearances in L/T, volumes in L):

1-compartment:  k = CL / V.
2-compartment:  k10 = CL/V1, k12 = Q/V1, k21 = Q/V2.  The central/peripheral system

    dAc/dt = -(k10 + k12) Ac + k21 Ap,     dAp/dt = k12 Ac - k21 Ap

has the characteristic polynomial s^2 + (k10 + k12 + k21) s + k10 k21, whose roots are -alpha and -beta
with alpha + beta = k10 + k12 + k21 and alpha * beta = k10 k21 (alpha > beta > 0):

    alpha, beta = (S +- sqrt(S^2 - 4 k10 k21)) / 2,   S = k10 + k12 + k21.

Unit impulse response (amount in the central compartment after a unit bolus into it at time 0):

    g(tau) = sum_i c_i exp(-lambda_i tau)
    1-cmt:  lambda = (k,),            c = (1,)
    2-cmt:  lambda = (alpha, beta),   c = ((alpha - k21)/(alpha - beta), (k21 - beta)/(alpha - beta))

(at tau = 0 the 2-cmt coefficients sum to 1; the derivative is -(alpha c_1 + beta c_2) = -(k10 + k12),
which is the central compartment's own outflow, as it must be). The peripheral amount after a unit bolus
into the central compartment is  k12 (exp(-beta tau) - exp(-alpha tau)) / (alpha - beta).

Every other input is a convolution of its input rate with g:

* bolus D at t0:                 Ac = D g(tau),  tau = t - t0 >= 0   (right-continuous: Ac(t0) = D)
* zero-order infusion D over T:  rate R = D/T on [t0, t0 + T); for any tau >= 0
                                 Ac = R sum_i c_i/lambda_i (exp(-lambda_i max(tau - T, 0)) - exp(-lambda_i tau))
                                 (during the infusion max(...) = 0, giving R sum c_i (1 - exp(-lambda_i tau))/lambda_i)
* first-order absorption (Bateman) of F D after a lag tlag: input F D ka exp(-ka s), s = tau - tlag >= 0,
                                 Ac = F D ka sum_i c_i (exp(-lambda_i s) - exp(-ka s)) / (ka - lambda_i)
                                 (1-cmt: the Bateman function F D ka/(ka - k) (e^{-k s} - e^{-ka s}));
                                 the depot holds F D exp(-ka s).

Cumulative eliminated amount = k10 * integral_0^tau Ac, in closed form from the integrals of the
exponentials above. Multiple doses add (the system is linear and time invariant): ``superpose`` sums
single-dose curves, expanding NONMEM II/ADDL repeats. Concentration = central amount / V1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# ------------------------------------------------------------------------------------------------
# Disposition: exponents and coefficients
# ------------------------------------------------------------------------------------------------
def macro_constants(CL, V1, Q=None, V2=None):
    """``(lambdas, coefs)`` of the central unit impulse response (1-cmt when Q is None)."""
    if Q is None:
        return np.array([CL / V1]), np.array([1.0])
    k10, k12, k21 = CL / V1, Q / V1, Q / V2
    s = k10 + k12 + k21
    disc = np.sqrt(s * s - 4.0 * k10 * k21)
    alpha, beta = 0.5 * (s + disc), 0.5 * (s - disc)
    c1 = (alpha - k21) / (alpha - beta)
    c2 = (k21 - beta) / (alpha - beta)
    return np.array([alpha, beta]), np.array([c1, c2])


def _tau(t, t0):
    tau = np.asarray(t, dtype=float) - t0
    return tau, tau >= 0


# ------------------------------------------------------------------------------------------------
# 1-compartment
# ------------------------------------------------------------------------------------------------
def one_cmt_bolus(t, dose, CL, V, t0=0.0):
    """Concentration after an IV bolus ``dose`` at ``t0`` (right-continuous at t0)."""
    tau, on = _tau(t, t0)
    k = CL / V
    return np.where(on, dose / V * np.exp(-k * np.where(on, tau, 0.0)), 0.0)


def one_cmt_infusion(t, dose, duration, CL, V, t0=0.0):
    """Concentration for a zero-order infusion of total ``dose`` over ``duration`` from ``t0``.

    During (0 <= tau <= T): R/CL (1 - e^{-k tau}); after: R/CL (1 - e^{-k T}) e^{-k (tau - T)}, R = dose/T.
    """
    tau, on = _tau(t, t0)
    tau = np.where(on, tau, 0.0)
    k, R = CL / V, dose / duration
    during = R / CL * (1.0 - np.exp(-k * tau))
    after = R / CL * (1.0 - np.exp(-k * duration)) * np.exp(-k * (tau - duration))
    return np.where(on, np.where(tau <= duration, during, after), 0.0)


def one_cmt_oral(t, dose, CL, V, KA, F=1.0, ALAG=0.0, t0=0.0):
    """Bateman function: first-order absorption of ``F*dose`` given at ``t0`` with lag ``ALAG``."""
    s, on = _tau(t, t0 + ALAG)
    s = np.where(on, s, 0.0)
    k = CL / V
    if np.isclose(KA, k, rtol=1e-12, atol=0.0):
        c = F * dose * k * s * np.exp(-k * s) / V
    else:
        c = F * dose * KA / (V * (KA - k)) * (np.exp(-k * s) - np.exp(-KA * s))
    return np.where(on, c, 0.0)


# ------------------------------------------------------------------------------------------------
# 2-compartment
# ------------------------------------------------------------------------------------------------
def two_cmt_bolus(t, dose, CL, V1, Q, V2, t0=0.0):
    """Bi-exponential concentration after an IV bolus: dose/V1 (c1 e^{-alpha tau} + c2 e^{-beta tau})."""
    tau, on = _tau(t, t0)
    tau = np.where(on, tau, 0.0)
    lam, c = macro_constants(CL, V1, Q, V2)
    ac = dose * (c[0] * np.exp(-lam[0] * tau) + c[1] * np.exp(-lam[1] * tau))
    return np.where(on, ac / V1, 0.0)


def two_cmt_infusion(t, dose, duration, CL, V1, Q, V2, t0=0.0):
    """Zero-order infusion (during and after): R sum_i c_i/lambda_i (e^{-lambda_i max(tau-T,0)} - e^{-lambda_i tau})."""
    tau, on = _tau(t, t0)
    tau = np.where(on, tau, 0.0)
    lam, c = macro_constants(CL, V1, Q, V2)
    R = dose / duration
    after = np.maximum(tau - duration, 0.0)
    ac = R * sum(c[i] / lam[i] * (np.exp(-lam[i] * after) - np.exp(-lam[i] * tau)) for i in range(2))
    return np.where(on, ac / V1, 0.0)


def two_cmt_oral(t, dose, CL, V1, Q, V2, KA, F=1.0, ALAG=0.0, t0=0.0):
    """Tri-exponential concentration after first-order absorption of ``F*dose`` with lag ``ALAG``."""
    s, on = _tau(t, t0 + ALAG)
    s = np.where(on, s, 0.0)
    lam, c = macro_constants(CL, V1, Q, V2)
    ac = F * dose * KA * sum(c[i] * (np.exp(-lam[i] * s) - np.exp(-KA * s)) / (KA - lam[i]) for i in range(2))
    return np.where(on, ac / V1, 0.0)


# ------------------------------------------------------------------------------------------------
# Amounts (for mass balance): depot, peripheral and cumulative elimination
# ------------------------------------------------------------------------------------------------
def depot_amount(t, dose, KA, F=1.0, ALAG=0.0, t0=0.0):
    """Amount left in the absorption depot: F dose e^{-KA s} (0 before the lagged dose time)."""
    s, on = _tau(t, t0 + ALAG)
    return np.where(on, F * dose * np.exp(-KA * np.where(on, s, 0.0)), 0.0)


def oral_peripheral_amount(t, dose, CL, V1, Q, V2, KA, F=1.0, ALAG=0.0, t0=0.0):
    """2-cmt peripheral amount after a first-order absorbed dose.

    The peripheral impulse response to a unit central input is h(u) = k12 (e^{-beta u} - e^{-alpha u})/(alpha-beta);
    convolving with F D KA e^{-KA s} gives F D KA k12/(alpha-beta) [E(beta) - E(alpha)],
    E(l) = (e^{-l s} - e^{-KA s}) / (KA - l).
    """
    s, on = _tau(t, t0 + ALAG)
    s = np.where(on, s, 0.0)
    (alpha, beta), _ = macro_constants(CL, V1, Q, V2)
    k12 = Q / V1

    def E(lam):
        return (np.exp(-lam * s) - np.exp(-KA * s)) / (KA - lam)

    ap = F * dose * KA * k12 / (alpha - beta) * (E(beta) - E(alpha))
    return np.where(on, ap, 0.0)


def oral_eliminated_amount(t, dose, CL, V1, KA, F=1.0, ALAG=0.0, Q=None, V2=None, t0=0.0):
    """Cumulative amount eliminated, k10 * int_0^s Ac, after a first-order absorbed dose (1- or 2-cmt).

    int_0^s (e^{-l u} - e^{-KA u}) du = (1 - e^{-l s})/l - (1 - e^{-KA s})/KA.
    """
    s, on = _tau(t, t0 + ALAG)
    s = np.where(on, s, 0.0)
    lam, c = macro_constants(CL, V1, Q, V2)
    k10 = CL / V1
    integral = F * dose * KA * sum(
        c[i] / (KA - lam[i]) * ((1.0 - np.exp(-lam[i] * s)) / lam[i] - (1.0 - np.exp(-KA * s)) / KA)
        for i in range(len(lam)))
    return np.where(on, k10 * integral, 0.0)


def bolus_eliminated_amount(t, dose, CL, V1, Q=None, V2=None, t0=0.0):
    """Cumulative amount eliminated after an IV bolus: k10 D sum_i c_i (1 - e^{-lambda_i tau}) / lambda_i."""
    tau, on = _tau(t, t0)
    tau = np.where(on, tau, 0.0)
    lam, c = macro_constants(CL, V1, Q, V2)
    el = CL / V1 * dose * sum(c[i] * (1.0 - np.exp(-lam[i] * tau)) / lam[i] for i in range(len(lam)))
    return np.where(on, el, 0.0)


# ------------------------------------------------------------------------------------------------
# Multiple dosing by superposition
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class D:
    """A dose for :func:`superpose`: route ``bolus``, ``infusion`` or ``oral`` with NONMEM II/ADDL repeats."""

    time: float
    amount: float
    route: str = "bolus"
    duration: float | None = None
    ii: float = 0.0
    addl: int = 0

    def expanded(self):
        if self.addl and not self.ii > 0:
            raise ValueError("ADDL needs II > 0")
        return [D(self.time + j * self.ii, self.amount, self.route, self.duration) for j in range(self.addl + 1)]


def concentration(t, doses, *, CL, V1, Q=None, V2=None, KA=None, F=1.0, ALAG=0.0):
    """Concentration for a list of :class:`D` doses: the sum of the single-dose closed forms.

    1-cmt when ``Q`` is None. ``F`` and ``ALAG`` apply to ``oral`` (first-order absorbed) doses only.
    """
    t = np.asarray(t, dtype=float)
    total = np.zeros_like(t)
    two = Q is not None
    for dose in doses:
        for d in dose.expanded():
            if d.route == "bolus":
                c = two_cmt_bolus(t, d.amount, CL, V1, Q, V2, d.time) if two else \
                    one_cmt_bolus(t, d.amount, CL, V1, d.time)
            elif d.route == "infusion":
                c = two_cmt_infusion(t, d.amount, d.duration, CL, V1, Q, V2, d.time) if two else \
                    one_cmt_infusion(t, d.amount, d.duration, CL, V1, d.time)
            elif d.route == "oral":
                c = two_cmt_oral(t, d.amount, CL, V1, Q, V2, KA, F, ALAG, d.time) if two else \
                    one_cmt_oral(t, d.amount, CL, V1, KA, F, ALAG, d.time)
            else:
                raise ValueError(d.route)
            total = total + c
    return total


def superpose(t, single, dose_times, amounts=None):
    """Sum ``single(t - t_i) * a_i`` over dose times (a generic superposition helper; ``single(tau)`` must be
    zero for tau < 0)."""
    t = np.asarray(t, dtype=float)
    amounts = np.ones(len(dose_times)) if amounts is None else amounts
    return sum(a * single(t - ti) for ti, a in zip(dose_times, amounts))


def relative_error(sim, ref):
    """Max relative error over entries where the reference is nonzero."""
    sim, ref = np.asarray(sim), np.asarray(ref)
    nz = ref != 0
    return float(np.max(np.abs(sim[nz] - ref[nz]) / np.abs(ref[nz])))
