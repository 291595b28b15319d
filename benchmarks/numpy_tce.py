"""NumPy transcription of the TCE model's right-hand side, and a SciPy (LSODA) reference solver.

This module is the "SciPy peer" of the speed benchmark: the same equations as the JAX model that
``qsp.cards.load_card(name).model()`` builds (:func:`qsp.tce.build_tce_model` with QE binding and the
IL-6 quasi-steady state), written by hand on Python floats (``math``) so that
``scipy.integrate.solve_ivp`` can integrate one patient at a time with no JAX in its hot path.

The equations are not restated here; see the component modules, whose terms are transcribed one by one
and in the same order (so that the two agree to round-off):

* :mod:`qsp.components.pk` -- SC/IP depot and 1-/2-compartment linear disposition with CL(t),
  clearing the free drug (the QE hook) and scaled by the ADA clearance factor;
* :mod:`qsp.components.binding` -- :class:`~qsp.components.binding.BindingQE` and
  :func:`~qsp.components.binding.solve_free_drug` (Newton in log D until the step is below ``NEWTON_TOL``, at most ``NEWTON_MAX`` iterations, from
  the sink-only solution; the Newton slope here is the analytic derivative instead of ``jax.jvp``);
* :mod:`qsp.components.tcells`, :mod:`qsp.components.targets`, :mod:`qsp.components.cytokines`
  (IL-6 quasi-steady state, monocytes, dexamethasone) and :mod:`qsp.components.ada`.

Dose events follow :func:`qsp.simulate.solve_events`: a jump at event time + the route's lag (ALAG),
amount times the route's F; infusions are constant rates ``amount * F / duration`` between
``start + lag`` and ``start + lag + duration``; a reset restores the initial state; the output at a
breakpoint is the post-jump (right-continuous) state.

Only ``binding="qe"`` with ``il6_state=False`` is supported (other compositions raise
``NotImplementedError``); 1- and 2-compartment PK, with or without time-varying clearance, are. Of the card's
T-cell/cytokine structure options, ``secretion_stages`` (1 to ``MAX_SECRETION_STAGES`` transit stages
``T_new`` ... ``T_new<n>`` of rate ``n KSEC`` each) and ``tonic_secretion`` (drive from ``T_act + F_TONIC T_des``)
are supported; ``monocyte_priming`` and ``dex_holds_secretion`` raise ``NotImplementedError``. The default
structure (one stage, no tonic secretion) takes the same arithmetic path as before these options existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp

from qsp.components.binding import N_NEWTON, NEWTON_MAX, NEWTON_TOL, NM_PER_CELL_RECEPTOR
from qsp.components.tcells import MAX_SECRETION_STAGES, RAMP_DELTA, t_new_states, t_states as tcell_states

_exp, _log, _sqrt = math.exp, math.log, math.sqrt
_PER_CELL = 1.0 / NM_PER_CELL_RECEPTOR

# Parameters read by the hot path, in the order of the packed tuple (see NumpyTCE.pack).
_PARAM_ORDER = (
    "KA", "CL", "V1", "Q", "V2", "CLSS", "KCL",
    "KD_CD3", "KD_TAA", "CHI", "CD3_PER_TCELL", "TAA_PER_CELL", "STAA0", "KD_STAA", "KP", "KINT", "KDEG_STAA",
    "TMDD_BASE", "TMDD_KSS", "TMDD_KINT",
    "T0", "KACT", "TPT50", "HILL", "KSEC", "KDEACT", "KREC", "KPROLIF", "TMAX_FOLD", "KAICD", "KHOMEO",
    "KMARG", "MARG_MAX", "KRET",
    "NORMAL0", "KGROW", "KKILL", "KKILL_NORMAL", "TPC50", "KNRM",
    "IL6_0", "KIL6", "KTGT50", "KEL_IL6", "IL6_MONO_MAX", "MONO_EC50", "MONO_HILL", "KMONO_ON", "KMONO_OFF", "KDEX",
    "DEX_IMAX", "DEX_IC50",
    "ADA_POS", "ADA_ONSET", "ADA_WIDTH", "ADA_KRISE", "ADA_EMAX", "ADA50",
    "F_TONIC", "IL6_T_GAIN",  # F_TONIC: only with tonic_secretion (0.0 otherwise, unused); IL6_T_GAIN: IL-6 output
)


def _quadratic(x, kd3, kdt, chi, rsum, r3r):
    """Coefficients of the trimer quadratic at site drug ``x`` (see qsp.components.binding) and its discriminant."""
    a = 1.0 + x / kd3
    b = 1.0 + x / kdt
    c = chi * x / (kd3 * kdt)
    bq = c * rsum + a * b
    return a, b, c, bq, bq * bq - 4.0 * c * c * r3r


def free_drug(d_tot, r3_tot, rt_tot, s_tot, kd3, kdt, kds, chi, kp, pool=0.0, kssp=1.0, n_iter=N_NEWTON):
    """Free drug (nM) of the QE balance, as :func:`qsp.components.binding.solve_free_drug` (scalar floats).

    Returns ``(free, DR3, DRT, TRI, DS, DP)``: the bound species at the returned free drug
    (:func:`qsp.components.binding.species_given_free`).
    """
    if not d_tot > 1e-30:
        d_tot = 1e-30
    kk = kssp if pool > s_tot else kds
    bb = s_tot + pool + kk - d_tot
    d0 = 2.0 * kk * d_tot / (bb + _sqrt(bb * bb + 4.0 * kk * d_tot))
    u = _log(d0 if d0 > 1e-30 else 1e-30)
    log_dt = _log(d_tot)
    r3r = r3_tot * rt_tot
    rsum = r3_tot + rt_tot
    a_x = 1.0 / kd3
    b_x = 1.0 / kdt
    c_x = chi / (kd3 * kdt)
    for _ in range(n_iter if n_iter else NEWTON_MAX):
        d = _exp(u)
        # total_drug(d) and its derivative in d (the trimer quadratic's small root, cancellation-free).
        x = kp * d
        a, b, c, bq, disc = _quadratic(x, kd3, kdt, chi, rsum, r3r)
        bq_x = c_x * rsum + a_x * b + a * b_x
        if disc > 0.0:
            sq = _sqrt(disc)
            sq_x = (2.0 * bq * bq_x - 8.0 * c * c_x * r3r) / (2.0 * sq)
        else:
            sq = 0.0
            sq_x = 0.0
        den = bq + sq
        tri = 2.0 * c * r3r / den
        r3 = (r3_tot - tri) / a
        rt = (rt_tot - tri) / b
        kd = kds + d
        kp_d = kssp + d
        total = d + x * r3 / kd3 + x * rt / kdt + tri + s_tot * d / kd + pool * d / kp_d
        tri_x = (2.0 * c_x * r3r - tri * (bq_x + sq_x)) / den
        r3_x = (-tri_x - r3 * a_x) / a
        rt_x = (-tri_x - rt * b_x) / b
        dtot = 1.0 + kp * ((r3 + x * r3_x) / kd3 + (rt + x * rt_x) / kdt + tri_x) + s_tot * kds / (kd * kd) + pool * kssp / (kp_d * kp_d)
        val = _log(total) - log_dt
        slope = dtot * d / total
        step = val / (slope if slope > 1e-12 else 1e-12)
        if step > 5.0:
            step = 5.0
        elif step < -5.0:
            step = -5.0
        u = u - step
        if not n_iter and abs(step) <= NEWTON_TOL:  # the engine's rule (n_iter 0): stop once the step is small
            break
    free = _exp(u)
    if free > d_tot:
        free = d_tot
    # species_given_free at the solution
    x = kp * free
    a, b, c, bq, disc = _quadratic(x, kd3, kdt, chi, rsum, r3r)
    tri = 2.0 * c * r3r / (bq + _sqrt(disc if disc > 0.0 else 0.0))
    r3 = (r3_tot - tri) / a
    rt = (rt_tot - tri) / b
    return free, x * r3 / kd3, x * rt / kdt, tri, s_tot * free / (kds + free), pool * free / (kssp + free)


def _ramp(x, delta=RAMP_DELTA):
    """``max(x, 0)`` with a continuous derivative, as :func:`qsp.components.tcells.ramp`."""
    if not x > 0.0:
        return 0.0
    return x * x / (x + delta)


def _hill(x, x50, h):
    """``x^h / (x50^h + x^h)`` for ``x >= 0`` as a logistic in ``log x`` (as :func:`qsp.components.tcells.hill`)."""
    if not x > 0.0:
        return 0.0
    return _sigmoid(h * (_log(x) - _log(x50)))


def _sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + _exp(-z))
    e = _exp(z)
    return e / (1.0 + e)


@dataclass
class PatientSolution:
    """Result of :func:`solve_patient`: states at ``ts`` and the piecewise dense solution."""

    ts: np.ndarray
    ys: np.ndarray
    status: int
    n_states: int
    seg_start: np.ndarray = field(repr=False)
    seg_y0: list = field(repr=False)  # exact state at each segment start (post-jump)
    segments: list = field(repr=False)  # per segment: OdeSolution, or an array (constant state)
    nfev: int = 0
    n_segments: int = 0

    def dense(self, t) -> np.ndarray:
        """States at times ``t`` (any 1-D array), shape (len(t), n_states); right-continuous at breakpoints."""
        t = np.atleast_1d(np.asarray(t, dtype=float))
        out = np.empty((t.shape[0], self.n_states))
        k = np.clip(np.searchsorted(self.seg_start, t, side="right") - 1, 0, len(self.segments) - 1)
        for j in np.unique(k):
            sel = k == j
            seg = self.segments[j]
            out[sel] = seg if isinstance(seg, np.ndarray) else seg(t[sel]).T
            out[sel & (t == self.seg_start[j])] = self.seg_y0[j]
        return out

    def __getitem__(self, key):  # dict-style access: sol["ys"], sol["status"]
        return getattr(self, key)


class NumpyTCE:
    """Hand-written NumPy/``math`` right-hand side of a TCE model (QE binding, IL-6 QSS).

    ``model`` is a :class:`qsp.model.Model` from :func:`qsp.tce.build_tce_model` (``binding="qe"``,
    ``il6_state=False``, no ``monocyte_priming``, no ``dex_holds_secretion``). The structure (1-/2-compartment,
    time-varying CL, secretion stages, tonic secretion, state order, routes) is read from its components;
    parameter values are passed per call as a dict (``model.params({...})``).
    """

    _KNOWN = {"Depot", "LinearDisposition", "BindingQE", "TCells", "TargetCells", "Cytokines", "ADA",
              "DrugOutputs", "CRSLink", "CentralDosing"}  # the last two: parameters only (no states, no rates)

    def __init__(self, model):
        self.model = model
        comps = {type(c).__name__: c for c in model.components}
        kinds = [type(c).__name__ for c in model.components]
        unknown = [k for k in kinds if k not in self._KNOWN]
        if unknown or len(set(kinds)) != len(kinds):
            raise NotImplementedError(f"unsupported composition for the NumPy port: {kinds}")
        for k in ("Depot", "LinearDisposition", "BindingQE", "TCells", "TargetCells", "Cytokines", "ADA"):
            if k not in comps:
                raise NotImplementedError(f"the NumPy port needs a {k} component (QE binding only); have {kinds}")
        if comps["Cytokines"].il6_state:
            raise NotImplementedError("il6_state=True is not supported by the NumPy port")
        tc, cy = comps["TCells"], comps["Cytokines"]
        if cy.priming:
            raise NotImplementedError("monocyte_priming = true is not supported by the NumPy/numba ports (the "
                                      "mono_prime state and PRIME_GAIN are not transcribed); secretion_stages and "
                                      "tonic_secretion are")
        if tc.dex_hold:
            raise NotImplementedError("dex_holds_secretion = true is not supported by the NumPy/numba ports; "
                                      "secretion_stages and tonic_secretion are")
        stages = tc.stages
        if isinstance(stages, bool) or not isinstance(stages, int) or not 1 <= stages <= MAX_SECRETION_STAGES:
            raise NotImplementedError(f"secretion_stages must be 1 to {MAX_SECRETION_STAGES}, got {stages!r}")
        dep, pk, bnd = comps["Depot"], comps["LinearDisposition"], comps["BindingQE"]
        if dep.target != "central" or bnd.v1_name != pk.v1_name:
            raise NotImplementedError("unexpected depot target or binding volume")
        self.state_names = tuple(model.state_names)
        self.n_states = len(self.state_names)
        ix = {n: i for i, n in enumerate(self.state_names)}
        self.two_cmt = pk.n_cmt == 2
        self.time_varying = bool(pk.time_varying)
        self._v1 = pk.v1_name
        self._ka = dep.ka_name
        t_states = tuple(bnd.t_states)
        tg_states = tuple(bnd.target_states)
        expected = tcell_states(stages)  # T_rest, T_new ... T_new<n>, T_act, T_des: the pool that carries CD3
        if t_states != expected or tuple(tc.t_states) != expected or tg_states != ("tumour", "normal_target"):
            raise NotImplementedError(f"unexpected cell states {t_states} {tg_states}")
        self.stages = stages
        self.tonic = bool(cy.tonic)
        self._multi = stages > 1  # the default (one stage) keeps its own arithmetic path in _rhs
        self._idx = (ix[dep.name], ix["central"], ix["peripheral"] if self.two_cmt else -1,
                     ix["T_rest"], ix["T_new"], ix["T_act"], ix["T_des"], ix["marg"], ix["tumour"], ix["normal_target"],
                     ix["mono"], ix["DEX"], ix["ADA"])
        self._tn_idx = tuple(ix[n] for n in t_new_states(stages))  # T_new, T_new2 ... T_new<n>
        self._t_idx = tuple(ix[n] for n in expected)  # the binding's T-cell pool, in its summation order
        self._il6_idx = (ix["T_act"], ix["tumour"], ix["normal_target"], ix["mono"], ix["DEX"])
        # Routes, in model.route_names order: (state index, F param or None, lag param or None).
        self.route_names = tuple(model.route_names)
        self.routes = tuple((ix[r.state], r.f_param, r.lag_param) for r in model.routes.values())
        self._init = tuple(s.initial for s in (model.state_info[n] for n in self.state_names))

    # --- parameters ---------------------------------------------------------------------------------
    def pack(self, p) -> tuple:
        """The parameter tuple read by the hot path (absent 2-cmt / CL(t) parameters are unused)."""
        g = {"V1": self._v1, "KA": self._ka}
        out = []
        for n in _PARAM_ORDER:
            n = g.get(n, n)
            out.append(float(p[n]) if n in p else 0.0)
        if not self.time_varying:  # CL(t) == CL
            out[_PARAM_ORDER.index("CLSS")] = out[_PARAM_ORDER.index("CL")]
        return tuple(out)

    def initial_state(self, p) -> np.ndarray:
        return np.array([float(p[v]) if isinstance(v, str) else float(v) for v in self._init])

    # --- the vector field ---------------------------------------------------------------------------
    def rhs(self, t, y, p, rate=None) -> np.ndarray:
        """``dy/dt`` at ``(t, y)`` for the parameter dict ``p`` (plus the input rate vector ``rate``)."""
        return self._rhs(float(t), y, self.pack(p), None if rate is None else np.asarray(rate, dtype=float))

    def _rhs(self, t, y, pp, rate=None):
        (KA, CL, V1, Q, V2, CLSS, KCL,
         KD3, KDT, CHI, CD3, TAA, S0, KDS, KP, KINT, KDEG_S, POOL, KSSP, KINTP,
         T0, KACT, TPT50, HILL, KSEC, KDEACT, KREC, KPROLIF, TMAX_FOLD, KAICD, KHOMEO, KMARG, MARG_MAX, KRET,
         NORMAL0, KGROW, KKILL, KKILL_NORMAL, TPC50, KNRM,
         IL6_0, KIL6, KTGT50, KEL_IL6, IL6_MONO_MAX, MONO_EC50, MONO_HILL, KMONO_ON, KMONO_OFF, KDEX, DEX_IMAX,
         DEX_IC50,
         ADA_POS, ADA_ONSET, ADA_WIDTH, ADA_KRISE, ADA_EMAX, ADA50, F_TONIC, _IL6_T_GAIN) = pp
        multi = self._multi
        i_dep, i_c, i_p, i_tr, i_tn, i_ta, i_td, i_mg, i_tu, i_no, i_mo, i_dx, i_ad = self._idx
        yl = y.tolist()
        dep = yl[i_dep]
        cen = yl[i_c]
        tr = yl[i_tr]
        tn = yl[i_tn]
        ta = yl[i_ta]
        td = yl[i_td]
        mg = yl[i_mg]
        tu = yl[i_tu]
        no = yl[i_no]
        mono = yl[i_mo]
        dex = yl[i_dx]
        ada = yl[i_ad]

        # derive: binding (QE); the T-cell pool (blood + marginated) carries CD3
        if multi:  # secretion stages: the binding sums T_rest, T_new ... T_new<n>, T_act, T_des in that order
            tns = [yl[i] for i in self._tn_idx]
            t_cells = tr
            for v in tns:
                t_cells = t_cells + v
            t_cells = t_cells + ta + td
            tn = sum(tns)  # T_new over its stages (as qsp.components.tcells)
            t_sum = tr + tn + ta + td
        else:
            t_cells = tr + tn + ta + td
            t_sum = t_cells
        tgt = tu + no
        r3_tot = t_cells * CD3 * NM_PER_CELL_RECEPTOR
        rt_tot = tgt * TAA * NM_PER_CELL_RECEPTOR
        free, dr3, drt, tri, ds, dp = free_drug(cen / V1, r3_tot, rt_tot, S0, KD3, KDT, KDS, CHI, KP, POOL, KSSP)
        central_free = free * V1
        tpt = tri * _PER_CELL / (t_cells if t_cells > 1e-12 else 1e-12)
        tpc = tri * _PER_CELL / (tgt if tgt > 1e-12 else 1e-12)
        # derive: T cells, targets, cytokines, ADA
        sig = _hill(tpt, TPT50, HILL)
        tot = t_sum if t_sum > 1e-12 else 1e-12
        eng = tn + ta + td
        u = tot * _ramp(sig - eng / tot)
        phi = KACT * u
        eff = eng / T0 * tpc / (TPC50 + tpc)
        kill = KKILL * eff
        kill_n = KKILL_NORMAL * eff
        dex_i = DEX_IMAX * dex / (DEX_IC50 + dex)
        contact = tgt / (tgt + KTGT50)
        if self.tonic:  # engaged cells past the secreting phase keep F_TONIC of the output
            x_t = KIL6 * (ta + F_TONIC * td) * contact * (1.0 - dex_i) / KEL_IL6
        else:
            x_t = KIL6 * ta * contact * (1.0 - dex_i) / KEL_IL6
        cl_factor = 1.0 + ADA_EMAX * ada / (ADA50 + ada)

        # rates: depot, disposition, binding losses
        flux_a = KA * dep
        if self.time_varying:
            cl = CLSS + (CL - CLSS) * _exp(-KCL * (t if t > 0.0 else 0.0))
        else:
            cl = CL
        d_cen = flux_a - cl * cl_factor / V1 * central_free
        if i_p >= 0:
            per = yl[i_p]
            flux_p = Q / V1 * central_free - Q / V2 * per
            d_cen = d_cen - flux_p
        d_cen = d_cen + -(KINT * (dr3 + drt + tri) + KDEG_S * ds + KINTP * dp) * V1
        # T cells
        w = tot * _ramp(eng / tot - sig)
        rec = KREC * w * td / (eng if eng > 1e-12 else 1e-12)
        prolif = KPROLIF * (1.0 - dex_i) * (1.0 - tot / (TMAX_FOLD * T0)) * ta
        homeo = KHOMEO * (T0 - tot) * tr / tot

        out = [0.0] * self.n_states
        out[i_dep] = -flux_a
        out[i_c] = d_cen
        if i_p >= 0:
            out[i_p] = flux_p
        out[i_tr] = -phi + rec + homeo
        if multi:  # transit stages of rate n KSEC each
            k = self.stages * KSEC
            tn_idx = self._tn_idx
            out[i_tn] = phi - k * tns[0]
            for j in range(1, len(tns)):
                out[tn_idx[j]] = k * (tns[j - 1] - tns[j])
            out[i_ta] = k * tns[-1] + prolif - (KDEACT + KAICD) * ta
        else:
            out[i_tn] = phi - KSEC * tn
            out[i_ta] = KSEC * tn + prolif - (KDEACT + KAICD) * ta
        out[i_td] = KDEACT * ta - rec
        out[i_mg] = KMARG * (u / tot) * (MARG_MAX - mg) - KRET * mg
        out[i_tu] = (KGROW - kill) * tu
        out[i_no] = KNRM * (NORMAL0 - no) - kill_n * no
        out[i_mo] = KMONO_ON * _hill(x_t, MONO_EC50, MONO_HILL) * (1.0 - mono) - KMONO_OFF * mono
        out[i_dx] = -KDEX * dex
        out[i_ad] = ADA_POS * ADA_KRISE * _sigmoid((t - ADA_ONSET) / ADA_WIDTH) * (1.0 - ada)
        dy = np.array(out)
        if rate is not None:
            dy += rate
        return dy

    def il6(self, t, y, p) -> np.ndarray:
        """IL-6 (pg/mL, quasi-steady state); ``y`` is (n_states,) or (n_states, m)."""
        y = np.asarray(y, dtype=float)
        ta, tu, no, mono, dex = (y[i] for i in self._il6_idx)
        dex_i = p["DEX_IMAX"] * dex / (p["DEX_IC50"] + dex)
        tgt = tu + no
        contact = tgt / (tgt + p["KTGT50"])
        secreting = ta + p["F_TONIC"] * y[self._idx[6]] if self.tonic else ta  # T_act (+ F_TONIC T_des)
        x_t = p["KIL6"] * secreting * contact * (1.0 - dex_i) / p["KEL_IL6"]
        return np.asarray(p["IL6_0"] + p["IL6_T_GAIN"] * x_t + p["IL6_MONO_MAX"] * mono)

    def central_conc(self, y, p) -> np.ndarray:
        """Serum drug, nM (``conc_nM``): total drug of the central compartment minus the tissue target pool."""
        y = np.asarray(y, dtype=float)
        tot = y[self._idx[1]] / p[self._v1]
        pool = float(p["TMDD_BASE"])
        if pool <= 0.0:
            return np.asarray(tot)
        flat_y = y.reshape(y.shape[0], -1)
        flat_tot = np.ravel(tot)
        out = np.empty_like(flat_tot)
        for j in range(flat_tot.size):  # the pool-bound part needs the free drug of each state (QE solve)
            yj = flat_y[:, j]
            t_cells = sum(yj[i] for i in self._t_idx)
            tgt = yj[self._idx[8]] + yj[self._idx[9]]
            res = free_drug(flat_tot[j], t_cells * p["CD3_PER_TCELL"] * NM_PER_CELL_RECEPTOR,
                            tgt * p["TAA_PER_CELL"] * NM_PER_CELL_RECEPTOR, p["STAA0"], p["KD_CD3"], p["KD_TAA"],
                            p["KD_STAA"], p["CHI"], p["KP"], pool, p["TMDD_KSS"])
            out[j] = flat_tot[j] - res[5]
        return out.reshape(np.shape(tot))


def _route_vectors(nt: NumpyTCE, p):
    f = np.array([float(p[fp]) if fp else 1.0 for (_, fp, _) in nt.routes])
    lag = np.array([float(p[lp]) if (lp and lp in p) else 0.0 for (_, _, lp) in nt.routes])
    return f, lag


def solve_patient(nt: NumpyTCE, p: dict, ev, ts, *, rtol=1e-6, atol=1e-9, method="LSODA") -> PatientSolution:
    """Integrate one patient with ``scipy.integrate.solve_ivp``, piecewise between dose breakpoints.

    ``ev`` is one patient's :class:`qsp.events.EventArrays` (padding rows masked). Breakpoints (jumps with
    lag and F applied, infusion starts/stops) are handled as in :func:`qsp.simulate.solve_events`: the
    integration starts at ``min(ts[0], first event)``, events after ``ts[-1]`` are ignored, jumps at the
    same time are applied in event order, each segment is one ``solve_ivp`` call (dense output,
    ``t_eval`` = the output times in it) with the infusion rates active at its midpoint.
    """
    ts = np.asarray(ts, dtype=float)
    pp = nt.pack(p)
    n = nt.n_states
    f_route, lag_route = _route_vectors(nt, p)
    y0 = nt.initial_state(p)

    # Jumps: (time with lag, event index, reset, state index, amount * F); infusions: (start, stop, state, rate).
    bps = []
    jm = np.asarray(ev.jump_mask, bool)
    for j in np.flatnonzero(jm):
        r = int(ev.jump_route[j])
        reset = bool(ev.jump_reset[j])
        tj = float(ev.jump_time[j]) + (0.0 if reset else lag_route[r])
        bps.append((tj, j, reset, int(ev.jump_state[j]), float(ev.jump_amount[j]) * f_route[r]))
    infs = []
    for k in np.flatnonzero(np.asarray(ev.inf_mask, bool)):
        r = int(ev.inf_route[k])
        i0 = float(ev.inf_start[k]) + lag_route[r]
        i1 = i0 + float(ev.inf_duration[k])
        infs.append((i0, i1, int(ev.inf_state[k]), float(ev.inf_amount[k]) * f_route[r] / float(ev.inf_duration[k])))
    times = sorted({b[0] for b in bps} | {i[0] for i in infs} | {i[1] for i in infs})
    t_start = min(ts[0], times[0]) if times else ts[0]
    t_end = ts[-1]
    cuts = [tb for tb in times if t_start < tb <= t_end]
    bps.sort(key=lambda b: (b[0], b[1]))  # stable: event order at equal times

    def rate_on(a, b):
        mid = 0.5 * (a + b)
        rv = np.zeros(n)
        for (i0, i1, st, rt) in infs:
            if i0 <= mid < i1:
                rv[st] += rt
        return rv if np.any(rv) else None

    ys = np.zeros((ts.shape[0], n))
    seg_start, seg_y0, segments = [], [], []
    status, nfev = 0, 0
    y = y0.copy()
    ib = 0

    def apply_jumps(tb, y):
        nonlocal ib
        while ib < len(bps) and bps[ib][0] <= tb:
            _, _, reset, st, amt = bps[ib]
            if reset:
                y = y0.copy()
            y[st] += amt
            ib += 1
        return y

    y = apply_jumps(t_start, y)  # events exactly at the start
    a = t_start
    bounds = cuts + ([t_end] if (not cuts or cuts[-1] < t_end) else [])
    for b in bounds:
        last = b == t_end and b == bounds[-1]
        sel = (ts >= a) & ((ts <= b) if last else (ts < b))
        rate = rate_on(a, b)
        if b > a:
            fun = (lambda t, yy, _r=rate: nt._rhs(t, yy, pp, _r))
            t_eval = ts[sel]
            end_in = t_eval.shape[0] > 0 and t_eval[-1] == b
            if not end_in:  # also return the state at the segment end
                t_eval = np.append(t_eval, b)
            sol = solve_ivp(fun, (a, b), y, method=method, t_eval=t_eval, dense_output=True, rtol=rtol, atol=atol)
            nfev += sol.nfev
            if sol.status < 0:  # flag the patient; no output from here on
                status = 1
                ys[ts >= a] = np.nan
                seg_start.append(a)
                seg_y0.append(np.full(n, np.nan))
                segments.append(np.full(n, np.nan))
                break
            else:
                ys[sel] = (sol.y if end_in else sol.y[:, :-1]).T
                ys[ts == a] = y  # exact (post-jump) state at the segment start, not the interpolant
                seg_start.append(a)
                seg_y0.append(y.copy())
                segments.append(sol.sol)
                y = sol.y[:, -1].copy()
        else:
            ys[sel] = y
        if b in cuts:
            y = apply_jumps(b, y)
            ys[ts == b] = y
        a = b
    if not segments or seg_start[-1] < a:  # constant state after the last jump at t_end
        seg_start.append(a)
        seg_y0.append(y.copy())
        segments.append(y.copy())
    if status == 0 and not np.all(np.isfinite(ys)):
        status = 2
    return PatientSolution(ts=ts, ys=ys, status=status, n_states=n, seg_start=np.asarray(seg_start),
                           seg_y0=seg_y0, segments=segments, nfev=nfev, n_segments=len(segments))
