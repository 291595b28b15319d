"""T cells: resting -> activated -> desensitized, expansion, activation-induced death, margination.

States (cells per uL, blood-equivalent): ``T_rest``, ``T_act``, ``T_des`` in blood and ``T_marg``
(cells transiently out of the blood). Signal from the trimer load per T cell (``tpt``, derived by the
binding component), a Hill function ``S = tpt^H / (TPT50^H + tpt^H)``:

    dT_rest/dt = -KACT S T_rest + KREC T_des + KHOMEO (T0 - T_all) - m T_rest
    dT_act/dt  =  KACT S (T_rest + GAIN_DES T_des) + KPROLIF (1 - I_dex) (1 - T_all/(TMAX_FOLD T0)) T_act
                  - (KDEACT + KAICD) T_act - m T_act
    dT_des/dt  =  KDEACT T_act - KACT GAIN_DES S T_des - KREC T_des - m T_des + KRET T_marg
    dT_marg/dt =  m (T_rest + T_act + T_des) - KRET T_marg,        m = KMARG T_act / T_blood

Desensitized (post-activated) cells re-activate with the lower gain ``GAIN_DES`` and return to rest
slowly (``KREC``): this is the priming/tachyphylaxis that lowers the cytokine response to a repeated
dose, and recovers after a long pause. Marginated cells return to the blood as post-activated
(desensitized) cells. Margination (Hosseini et al. npj Syst Biol Appl 2020;6:28) takes
blood T cells to ~20-40% of baseline within hours of a dose and they return over days; it is driven by
the activated fraction of blood T cells, so it is transient and smaller once cells are desensitized. ``I_dex`` is the
dexamethasone inhibition derived by :mod:`qsp.components.cytokines`.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..model import Component, Output, Param, State

T_STATES = ("T_rest", "T_act", "T_des", "T_marg")


def hill(x, x50, h):
    x = jnp.maximum(x, 0.0)
    xh = x**h
    return xh / (x50**h + xh)


class TCells(Component):
    name = "tcells"

    def __init__(self, *, t0=550.0, sources=None, **overrides):
        src = sources or {}
        v = dict(KACT=8.0, TPT50=40.0, HILL=1.5, KDEACT=3.0, GAIN_DES=0.03, KREC=0.04, KPROLIF=0.35, TMAX_FOLD=4.0,
                 KAICD=0.15, KHOMEO=0.05, KMARG=8.0, KRET=0.5)
        v.update(overrides)
        self.states = (
            State("T_rest", "cells/uL", "resting T cells in blood", "T0"),
            State("T_act", "cells/uL", "activated T cells in blood"),
            State("T_des", "cells/uL", "desensitized (post-activated) T cells in blood"),
            State("T_marg", "cells/uL", "T cells marginated out of the blood (blood-equivalent)"),
        )
        a = "assumed: class default, calibrated to MajesTEC-1 IL-6/T-cell dynamics (see calibration/)"
        self.params = (
            Param("T0", t0, "cells/uL", "baseline blood T cells", src.get("T0", "assumed")),
            Param("KACT", v["KACT"], "1/day", "activation rate of resting T cells at full trimer signal", a),
            Param("TPT50", v["TPT50"], "1/cell", "trimers per T cell for half-maximal activation",
                  "assumed: tens of trimers per cell activate (Li et al. CPT 2022)"),
            Param("HILL", v["HILL"], "1", "Hill coefficient of the trimer signal", a),
            Param("KDEACT", v["KDEACT"], "1/day", "activated -> desensitized transition", a),
            Param("GAIN_DES", v["GAIN_DES"], "1", "relative re-activation gain of desensitized T cells", a),
            Param("KREC", v["KREC"], "1/day", "recovery of desensitized T cells to rest (priming wears off)", a),
            Param("KPROLIF", v["KPROLIF"], "1/day", "proliferation rate of activated T cells", a),
            Param("TMAX_FOLD", v["TMAX_FOLD"], "1", "T-cell expansion cap relative to baseline", a),
            Param("KAICD", v["KAICD"], "1/day", "activation-induced death of activated T cells", a),
            Param("KHOMEO", v["KHOMEO"], "1/day", "homeostatic return of total T cells to baseline", a),
            Param("KMARG", v["KMARG"], "1/day", "margination rate at full signal",
                  "assumed: blood T cells fall to 20-40% within hours (Hosseini et al. 2020)"),
            Param("KRET", v["KRET"], "1/day", "return of marginated T cells to blood",
                  "assumed: recovery over days (Hosseini et al. 2020)"),
        )
        self.outputs = (Output("blood_t_cells_per_ul", "cells/uL", "T cells in blood"),
                        Output("activated_t_fraction", "1", "activated fraction of blood T cells"),
                        Output("t_signal", "1", "trimer activation signal S (0-1)"))

    def derive(self, t, y, p, d):
        return {"t_signal": hill(d["tpt"], p["TPT50"], p["HILL"])}

    def rates(self, t, y, p, d):
        s = d["t_signal"]
        tr, ta, td, tm = (y[n] for n in T_STATES)
        t_all = tr + ta + td + tm
        m = p["KMARG"] * ta / jnp.maximum(tr + ta + td, 1e-12)
        act_r = p["KACT"] * s * tr
        act_d = p["KACT"] * p["GAIN_DES"] * s * td
        prolif = p["KPROLIF"] * (1.0 - d.get("dex_inhibition", 0.0)) * (1.0 - t_all / (p["TMAX_FOLD"] * p["T0"])) * ta
        return {
            "T_rest": -act_r + p["KREC"] * td + p["KHOMEO"] * (p["T0"] - t_all) - m * tr,
            "T_act": act_r + act_d + prolif - (p["KDEACT"] + p["KAICD"]) * ta - m * ta,
            "T_des": p["KDEACT"] * ta - act_d - p["KREC"] * td - m * td + p["KRET"] * tm,
            "T_marg": m * (tr + ta + td) - p["KRET"] * tm,
        }

    def output_values(self, t, y, p, d):
        blood = y["T_rest"] + y["T_act"] + y["T_des"]
        return {"blood_t_cells_per_ul": blood, "activated_t_fraction": y["T_act"] / jnp.maximum(blood, 1e-12),
                "t_signal": d["t_signal"]}
