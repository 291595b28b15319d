"""The compiled peer of the speed benchmark: the NumPy transcription compiled with numba, solved with LSODA.

``benchmarks/numpy_tce.py`` holds the right-hand side as plain Python floats; this module compiles the same
functions (:func:`numpy_tce.free_drug`, ``_ramp``, ``_hill``, ``_sigmoid``) with numba, writes the vector
field as a numba ``cfunc`` for numbalsoda's LSODA (the ODEPACK algorithm, C++ port), and solves a whole
population in one compiled function with ``numba.prange`` (patients split over the cores). It is what a
performance-minded pharmacometrician would write by hand, and the peer the engine is measured against.

Per patient it integrates between dose breakpoints exactly as :func:`numpy_tce.solve_patient` (jumps at
event time + lag, amount x F, infusion rates ``amount x F / duration``, resets restore the initial state),
and returns what the engine's trial returns in the benchmark: IL-6 and serum drug at the output times and
the per-dose IL-6 peak sampled on ``k`` points of every integration segment (post-jump state at its start;
a segment belongs to the dose window of its start; :func:`qsp.trial`'s definition).

The structures are those :class:`numpy_tce.NumpyTCE` accepts (its ``NotImplementedError`` for the others):
``secretion_stages`` (transit stages ``T_new`` ... ``T_new<n>``) and ``tonic_secretion`` included; the vector
field is compiled per structure, so the default one (one stage, no tonic secretion) compiles the arithmetic it
always had.

Needs the ``bench`` extra (``pip install -e '.[bench]'``): numba and numbalsoda; numbalsoda builds from
source and needs a Fortran compiler (Debian/Ubuntu: ``apt-get install gfortran``; conda: ``gfortran``).
"""

from __future__ import annotations

import types

import numba as nb
import numpy as np
from numbalsoda import lsoda, lsoda_sig

import numpy_tce as npt
from numpy_tce import NumpyTCE, _PARAM_ORDER

_ramp = nb.njit(npt._ramp)
_sigmoid = nb.njit(npt._sigmoid)
_quadratic = nb.njit(npt._quadratic)


@nb.njit
def _hill(x, x50, h):
    """As ``numpy_tce._hill``: a logistic in ``log x``."""
    if not x > 0.0:
        return 0.0
    return _sigmoid(h * (np.log(x) - np.log(x50)))


# numpy_tce.free_drug compiled as is: its helpers are looked up by global name, so it is compiled from a copy
# whose globals hold the jitted _quadratic (math.sqrt/log/exp are understood by numba directly).
_free_drug = nb.njit(types.FunctionType(npt.free_drug.__code__, {**npt.free_drug.__globals__, "_quadratic": _quadratic},
                                        "free_drug", npt.free_drug.__defaults__))

P = {n: i for i, n in enumerate(_PARAM_ORDER)}
N_PAR = len(_PARAM_ORDER)
PER_CELL = npt._PER_CELL
NMPC = npt.NM_PER_CELL_RECEPTOR


def make_rhs(nt: NumpyTCE):
    """The vector field of ``nt``'s structure as a numbalsoda cfunc; ``data`` = packed params then the rate vector."""
    n = nt.n_states
    i_dep, i_c, i_p, i_tr, i_tn, i_ta, i_td, i_mg, i_tu, i_no, i_mo, i_dx, i_ad = nt._idx
    two_cmt, time_varying = nt.two_cmt, nt.time_varying
    multi, tonic = nt._multi, nt.tonic  # secretion stages > 1; tonic secretion (compile-time constants)
    tn_idx = nt._tn_idx  # T_new, T_new2 ... T_new<n>
    n_tn = len(tn_idx)
    n_stages = float(nt.stages)
    L = N_PAR + n
    (KA, CL, V1, Q, V2, CLSS, KCL, KD3, KDT, CHI, CD3, TAA, S0, KDS, KP, KINT, KDEG_S, POOL, KSSP, KINTP,
     T0, KACT, TPT50, HILL, KSEC, KDEACT, KREC, KPROLIF, TMAX_FOLD, KAICD, KHOMEO, KMARG, MARG_MAX, KRET,
     NORMAL0, KGROW, KKILL, KKILL_NORMAL, TPC50, KNRM, IL6_0, KIL6, KTGT50, KEL_IL6, IL6_MONO_MAX, MONO_EC50,
     MONO_HILL, KMONO_ON, KMONO_OFF, KDEX, DEX_IMAX, DEX_IC50, ADA_POS, ADA_ONSET, ADA_WIDTH, ADA_KRISE, ADA_EMAX,
     ADA50, F_TONIC, IL6_T_GAIN) = range(N_PAR)

    @nb.cfunc(lsoda_sig)
    def rhs(t, y_, du_, p_):
        y = nb.carray(y_, (n,))
        du = nb.carray(du_, (n,))
        p = nb.carray(p_, (L,))
        dep, cen, tr, tn, ta, td, mg = y[i_dep], y[i_c], y[i_tr], y[i_tn], y[i_ta], y[i_td], y[i_mg]
        tu, no, mono, dex, ada = y[i_tu], y[i_no], y[i_mo], y[i_dx], y[i_ad]
        v1 = p[V1]
        if multi:  # the binding sums T_rest, T_new ... T_new<n>, T_act, T_des in that order; T_new over its stages
            t_cells = tr
            tn = 0.0
            for j in range(n_tn):
                t_cells = t_cells + y[tn_idx[j]]
                tn = tn + y[tn_idx[j]]
            t_cells = t_cells + ta + td
            t_sum = tr + tn + ta + td
        else:
            t_cells = tr + tn + ta + td
            t_sum = t_cells
        tgt = tu + no
        r3_tot = t_cells * p[CD3] * NMPC
        rt_tot = tgt * p[TAA] * NMPC
        free, dr3, drt, tri, ds, dp = _free_drug(cen / v1, r3_tot, rt_tot, p[S0], p[KD3], p[KDT], p[KDS], p[CHI],
                                                 p[KP], p[POOL], p[KSSP])
        central_free = free * v1
        tpt = tri * PER_CELL / (t_cells if t_cells > 1e-12 else 1e-12)
        tpc = tri * PER_CELL / (tgt if tgt > 1e-12 else 1e-12)
        sig = _hill(tpt, p[TPT50], p[HILL])
        tot = t_sum if t_sum > 1e-12 else 1e-12
        eng = tn + ta + td
        u = tot * _ramp(sig - eng / tot)
        phi = p[KACT] * u
        eff = eng / p[T0] * tpc / (p[TPC50] + tpc)
        kill = p[KKILL] * eff
        kill_n = p[KKILL_NORMAL] * eff
        dex_i = p[DEX_IMAX] * dex / (p[DEX_IC50] + dex)
        contact = tgt / (tgt + p[KTGT50])
        if tonic:  # engaged cells past the secreting phase keep F_TONIC of the output
            x_t = p[KIL6] * (ta + p[F_TONIC] * td) * contact * (1.0 - dex_i) / p[KEL_IL6]
        else:
            x_t = p[KIL6] * ta * contact * (1.0 - dex_i) / p[KEL_IL6]
        cl_factor = 1.0 + p[ADA_EMAX] * ada / (p[ADA50] + ada)
        flux_a = p[KA] * dep
        if time_varying:
            cl = p[CLSS] + (p[CL] - p[CLSS]) * np.exp(-p[KCL] * (t if t > 0.0 else 0.0))
        else:
            cl = p[CL]
        d_cen = flux_a - cl * cl_factor / v1 * central_free
        flux_p = 0.0
        if two_cmt:
            flux_p = p[Q] / v1 * central_free - p[Q] / p[V2] * y[i_p]
            d_cen = d_cen - flux_p
        d_cen = d_cen - (p[KINT] * (dr3 + drt + tri) + p[KDEG_S] * ds + p[KINTP] * dp) * v1
        w = tot * _ramp(eng / tot - sig)
        rec = p[KREC] * w * td / (eng if eng > 1e-12 else 1e-12)
        prolif = p[KPROLIF] * (1.0 - dex_i) * (1.0 - tot / (p[TMAX_FOLD] * p[T0])) * ta
        homeo = p[KHOMEO] * (p[T0] - tot) * tr / tot
        for k in range(n):
            du[k] = p[N_PAR + k]  # input rates (infusions)
        du[i_dep] += -flux_a
        du[i_c] += d_cen
        if two_cmt:
            du[i_p] += flux_p
        du[i_tr] += -phi + rec + homeo
        if multi:  # transit stages of rate n KSEC each
            k = n_stages * p[KSEC]
            du[i_tn] += phi - k * y[i_tn]
            for j in range(1, n_tn):
                du[tn_idx[j]] += k * (y[tn_idx[j - 1]] - y[tn_idx[j]])
            du[i_ta] += k * y[tn_idx[n_tn - 1]] + prolif - (p[KDEACT] + p[KAICD]) * ta
        else:
            du[i_tn] += phi - p[KSEC] * tn
            du[i_ta] += p[KSEC] * tn + prolif - (p[KDEACT] + p[KAICD]) * ta
        du[i_td] += p[KDEACT] * ta - rec
        du[i_mg] += p[KMARG] * (u / tot) * (p[MARG_MAX] - mg) - p[KRET] * mg
        du[i_tu] += (p[KGROW] - kill) * tu
        du[i_no] += p[KNRM] * (p[NORMAL0] - no) - kill_n * no
        du[i_mo] += p[KMONO_ON] * _hill(x_t, p[MONO_EC50], p[MONO_HILL]) * (1.0 - mono) - p[KMONO_OFF] * mono
        du[i_dx] += -p[KDEX] * dex
        du[i_ad] += p[ADA_POS] * p[ADA_KRISE] * _sigmoid((t - p[ADA_ONSET]) / p[ADA_WIDTH]) * (1.0 - ada)

    @nb.njit
    def il6(y, p):
        dex = y[i_dx]
        tgt = y[i_tu] + y[i_no]
        dex_i = p[DEX_IMAX] * dex / (p[DEX_IC50] + dex)
        secreting = y[i_ta] + p[F_TONIC] * y[i_td] if tonic else y[i_ta]  # T_act (+ F_TONIC T_des)
        x_t = p[KIL6] * secreting * (tgt / (tgt + p[KTGT50])) * (1.0 - dex_i) / p[KEL_IL6]
        return p[IL6_0] + p[IL6_T_GAIN] * x_t + p[IL6_MONO_MAX] * y[i_mo]

    @nb.njit
    def serum_nm(y, p):
        tot = y[i_c] / p[V1]
        if not p[POOL] > 0.0:
            return tot
        t_cells = y[i_tr]
        for j in range(n_tn):
            t_cells = t_cells + y[tn_idx[j]]
        t_cells = t_cells + y[i_ta] + y[i_td]
        tgt = y[i_tu] + y[i_no]
        res = _free_drug(tot, t_cells * p[CD3] * NMPC, tgt * p[TAA] * NMPC, p[S0], p[KD3], p[KDT], p[KDS], p[CHI],
                         p[KP], p[POOL], p[KSSP])
        return tot - res[5]

    return rhs, il6, serum_nm


def make_population_solver(nt: NumpyTCE):
    """``solve(PP, Y0, F, LAG, ev..., ts, dose_t, k, rtol, atol)`` -> (il6, conc_nM, il6_peak, status), compiled.

    ``PP`` (n_patients, N_PAR): packed parameters; ``Y0`` initial states; ``F``/``LAG`` (n_patients, n_routes).
    """
    rhs, il6, serum_nm = make_rhs(nt)
    fptr = rhs.address
    n = nt.n_states

    @nb.njit(parallel=True)
    def solve(PP, Y0, F, LAG, jt, jst, jam, jres, jroute, jmask, it0, idur, ist, iam, iroute, imask, ts, dose_t, k,
              rtol, atol):
        npat = PP.shape[0]
        nts = ts.shape[0]
        ndose = dose_t.shape[0]
        out_il6 = np.full((npat, nts), np.nan)
        out_conc = np.full((npat, nts), np.nan)
        out_peak = np.full((npat, ndose), -np.inf)
        status = np.zeros(npat, np.int64)
        frac = np.linspace(0.0, 1.0, k)
        t_end = ts[nts - 1]
        for i in nb.prange(npat):
            data = np.zeros(N_PAR + n)
            data[:N_PAR] = PP[i]
            p = data[:N_PAR]
            y0 = Y0[i].copy()
            # jumps (time with lag unless a reset), sorted stably by time
            nj = 0
            for j in range(jt.shape[1]):
                if jmask[i, j]:
                    nj += 1
            jtime = np.empty(nj)
            jstate = np.empty(nj, np.int64)
            jamount = np.empty(nj)
            jreset = np.empty(nj, np.bool_)
            c = 0
            for j in range(jt.shape[1]):
                if jmask[i, j]:
                    r = jroute[i, j]
                    jtime[c] = jt[i, j] + (0.0 if jres[i, j] else LAG[i, r])
                    jstate[c] = jst[i, j]
                    jamount[c] = jam[i, j] * F[i, r]
                    jreset[c] = jres[i, j]
                    c += 1
            order = np.argsort(jtime, kind="mergesort")
            ni = 0
            for m in range(it0.shape[1]):
                if imask[i, m]:
                    ni += 1
            i_a = np.empty(ni)
            i_b = np.empty(ni)
            i_s = np.empty(ni, np.int64)
            i_r = np.empty(ni)
            c = 0
            for m in range(it0.shape[1]):
                if imask[i, m]:
                    r = iroute[i, m]
                    i_a[c] = it0[i, m] + LAG[i, r]
                    i_b[c] = i_a[c] + idur[i, m]
                    i_s[c] = ist[i, m]
                    i_r[c] = iam[i, m] * F[i, r] / idur[i, m]
                    c += 1
            bp = np.concatenate((jtime, i_a, i_b))
            bp = np.unique(bp)
            t_start = ts[0]
            if bp.shape[0] > 0 and bp[0] < t_start:
                t_start = bp[0]
            # segment bounds: breakpoints in (t_start, t_end], then t_end
            nb_ = 0
            for b in bp:
                if t_start < b <= t_end:
                    nb_ += 1
            bounds = np.empty(nb_ + 1)
            c = 0
            for b in bp:
                if t_start < b <= t_end:
                    bounds[c] = b
                    c += 1
            nbounds = nb_
            if nb_ == 0 or bounds[nb_ - 1] < t_end:
                bounds[nb_] = t_end
                nbounds = nb_ + 1
            y = y0.copy()
            ib = 0
            while ib < nj and jtime[order[ib]] <= t_start:
                jj = order[ib]
                if jreset[jj]:
                    y[:] = y0
                y[jstate[jj]] += jamount[jj]
                ib += 1
            a = t_start
            failed = False
            seg0 = -np.inf  # start of the last integrated segment
            for sb in range(nbounds):
                b = bounds[sb]
                last = sb == nbounds - 1 and b == t_end
                if b > a:
                    mid = 0.5 * (a + b)
                    data[N_PAR:] = 0.0
                    for m in range(ni):
                        if i_a[m] <= mid < i_b[m]:
                            data[N_PAR + i_s[m]] += i_r[m]
                    # evaluation times: the K-point grid of [a, b] and the output times in the segment
                    nsel = 0
                    for q in range(nts):
                        if ts[q] >= a and (ts[q] <= b if last else ts[q] < b):
                            nsel += 1
                    tev = np.empty(k + nsel)
                    tev[:k] = a + (b - a) * frac
                    c = k
                    for q in range(nts):
                        if ts[q] >= a and (ts[q] <= b if last else ts[q] < b):
                            tev[c] = ts[q]
                            c += 1
                    tu_ = np.unique(tev)
                    usol, ok = lsoda(fptr, y, tu_, data=data, rtol=rtol, atol=atol, mxstep=100000)
                    if not ok:
                        failed = True
                        break
                    w = np.searchsorted(dose_t, a, side="right") - 1
                    if w >= 0:  # the peak samples the K-point grid only (the engine's definition)
                        for q in range(k):
                            v = il6(usol[np.searchsorted(tu_, tev[q])], p)
                            if v > out_peak[i, w]:
                                out_peak[i, w] = v
                    for q in range(nts):
                        if ts[q] >= a and (ts[q] <= b if last else ts[q] < b):
                            pos = np.searchsorted(tu_, ts[q])
                            out_il6[i, q] = il6(usol[pos], p)
                            out_conc[i, q] = serum_nm(usol[pos], p)
                    y = usol[tu_.shape[0] - 1].copy()
                    seg0 = a
                else:
                    for q in range(nts):
                        if ts[q] == a:
                            out_il6[i, q] = il6(y, p)
                            out_conc[i, q] = serum_nm(y, p)
                if b < t_end or (b == t_end and sb < nb_):
                    while ib < nj and jtime[order[ib]] <= b:
                        jj = order[ib]
                        if jreset[jj]:
                            y[:] = y0
                        y[jstate[jj]] += jamount[jj]
                        ib += 1
                    for q in range(nts):
                        if ts[q] == b:
                            out_il6[i, q] = il6(y, p)
                            out_conc[i, q] = serum_nm(y, p)
                a = b
            if not failed and seg0 < a:  # jumps at the last output time: a constant final segment (its state)
                w = np.searchsorted(dose_t, a, side="right") - 1
                if w >= 0:
                    v = il6(y, data[:N_PAR])
                    if v > out_peak[i, w]:
                        out_peak[i, w] = v
            if failed:
                status[i] = 1
                for q in range(nts):
                    out_il6[i, q] = np.nan
                    out_conc[i, q] = np.nan
        return out_il6, out_conc, out_peak, status

    return solve


class NumbaPeer:
    """The compiled peer for one model structure: ``run(params, events, ts, dose_t, k)``."""

    def __init__(self, model):
        self.nt = NumpyTCE(model)
        self._solve = make_population_solver(self.nt)

    def pack(self, params: dict, n: int) -> np.ndarray:
        """(n, N_PAR) packed parameters from a dict of scalars or per-patient arrays (as ``NumpyTCE.pack``)."""
        g = {"V1": self.nt._v1, "KA": self.nt._ka}
        cols = []
        for name in _PARAM_ORDER:
            key = g.get(name, name)
            cols.append(np.broadcast_to(np.asarray(params[key], float), (n,)) if key in params else np.zeros(n))
        pp = np.stack(cols, 1).copy()
        if not self.nt.time_varying:
            pp[:, P["CLSS"]] = pp[:, P["CL"]]
        return pp

    def run(self, params: dict, ev, ts, dose_t, k: int, *, rtol=1e-6, atol=1e-9):
        """Solve every patient: ``params`` name -> (n,) or scalar; ``ev`` batched :class:`qsp.events.EventArrays`."""
        n = int(np.asarray(ev.jump_time).shape[0])
        pp = self.pack(params, n)
        init = []
        for v in self.nt._init:
            init.append(np.broadcast_to(np.asarray(params[v], float) if isinstance(v, str) else float(v), (n,)))
        y0 = np.stack(init, 1).copy()
        f = np.stack([np.broadcast_to(np.asarray(params[fp], float), (n,)) if fp else np.ones(n)
                      for (_, fp, _) in self.nt.routes], 1).copy()
        lag = np.stack([np.broadcast_to(np.asarray(params[lp], float), (n,)) if (lp and lp in params) else np.zeros(n)
                        for (_, _, lp) in self.nt.routes], 1).copy()
        a = {fld: np.ascontiguousarray(np.asarray(getattr(ev, fld))) for fld in ev._fields}
        return self._solve(pp, y0, f, lag, a["jump_time"].astype(float), a["jump_state"].astype(np.int64),
                           a["jump_amount"].astype(float), a["jump_reset"].astype(np.bool_),
                           a["jump_route"].astype(np.int64), a["jump_mask"].astype(np.bool_),
                           a["inf_start"].astype(float), a["inf_duration"].astype(float),
                           a["inf_state"].astype(np.int64), a["inf_amount"].astype(float),
                           a["inf_route"].astype(np.int64), a["inf_mask"].astype(np.bool_),
                           np.asarray(ts, float), np.asarray(dose_t, float), int(k), float(rtol), float(atol))
