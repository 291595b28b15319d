"""T cells: threshold recruitment of resting cells, a delayed and short cytokine-secreting phase, an engaged
(primed, cytotoxic) pool that recovers slowly, expansion, activation-induced death and transient margination.

States (cells per uL, blood-equivalent scale; the whole pool, blood + marginated): ``T_rest`` (resting,
cytokine-competent), ``T_new`` (newly engaged, before secreting; with ``secretion_stages = n > 1`` its transit
stages ``T_new``, ``T_new2`` ... ``T_new<n>``), ``T_act`` (secreting T-cell cytokines),
``T_des`` (engaged after the secreting phase: primed, cytotoxic while engaged, refractory to a new cytokine
burst) and ``marg`` (fraction of the pool marginated out of the blood, 0-1).

Structure (changed from the prior mechanism, and why)
------------------------------------------------------
The prior mechanism activated resting cells at ``KACT S T_rest`` with ``S`` the trimer signal, so any
signal, however small, kept recruiting cells as long as it lasted: IL-6 (proportional to the *stock* of
activated cells) kept rising through the week after a subcutaneous dose, SC and IV gave the same IL-6, and
a long low-dose exposure primed the whole pool. Here the Hill curve of the trimer load is read as the
**distribution of activation thresholds over the polyclonal T-cell pool** (the fraction of cells whose
threshold lies below the current trimers per T cell; single-cell TCR/CD3 activation is digital with
heterogeneous thresholds, Altan-Bonnet & Germain PLoS Biol 2005;3:e356): a cell responds once, when the
signal first exceeds its threshold. With ``T = T_rest + T_new + T_act + T_des``, the engaged cells
``E = T_new + T_act + T_des`` (``T_new`` summed over its secretion stages) and ``e = E / T``::

    S    = tpt^HILL / (TPT50^HILL + tpt^HILL)        fraction of the pool with threshold below tpt
    u    = T ramp(S - e)                              cells above threshold not yet engaged (<= T_rest)
    w    = T ramp(e - S)                              engaged cells whose threshold the signal has left
    Phi  = KACT u                                     recruitment (activation) flux   [cells/uL/day]
    R    = KREC w T_des / E                           recovery of engaged cells to rest
    P    = KPROLIF (1 - I_dex) (1 - T/(TMAX_FOLD T0)) T_act         expansion of secreting cells
    H    = KHOMEO (T0 - T) T_rest / T                 homeostasis through the resting pool

    dT_rest/dt = -Phi + R + H
    dT_new/dt  =  Phi - n KSEC T_new                          (n = secretion_stages; here T_new is stage 1)
    dT_newj/dt =  n KSEC (T_new(j-1) - T_newj),  j = 2..n
    dT_act/dt  =  n KSEC T_newn + P - (D + KAICD) T_act
    dT_des/dt  =  D T_act - R
    D          =  KDEACT                  (D = KDEACT (1 - I_dex) with dex_holds_secretion, below)
    dmarg/dt   =  KMARG (u / T) (MARG_MAX - marg) - KRET marg
    blood T cells = (1 - marg) T

**Secretion stages** (``secretion_stages = n``, a structure option of the card; default 1): the delay from
engagement to secretion passes through ``n`` transit stages of rate ``n KSEC`` each, an Erlang delay of mean
``1/KSEC`` and coefficient of variation ``1/sqrt(n)`` (transit compartments: Sun & Jusko J Pharm Sci
1998;87:732; Savic et al. J Pharmacokinet Pharmacodyn 2007;34:711). With ``n = 1`` (exponential, CV 1) a delay
long enough to put the IL-6 peak ~2 days after an SC dose also spreads secretion over several days; the steps
between CD3 cross-linking and monocyte IL-6 (signalling, transcription, T-cell cytokines, monocyte activation)
make a delay that is late and narrow, which ``n > 1`` represents. Why it is an option and not the default: see
``calibration/README.md`` (teclistamab-only fits with 3, 6 and 12 stages).

**Dexamethasone holds the secreting phase** (``dex_holds_secretion = true``, a structure option of the card;
default false): glucocorticoids block cytokine gene transcription in activated T cells (NF-kB / AP-1
repression; Leclercq-Cohen et al. Clin Cancer Res 2023 show dexamethasone cutting TCE-induced cytokines in
whole blood) without undoing their activation. With the option the end of the secreting phase slows by the
same factor as secretion itself, ``D = KDEACT (1 - I_dex)``: a cell that reaches its secreting phase while the
premedication acts keeps its cytokine burst and releases it as dexamethasone wanes, instead of spending it
suppressed (the default, in which cells engaged under dexamethasone are primed without a burst). Cytokines
after a premedicated dose then peak about two days after it, as the MajesTEC-1 mean IL-6 does after each
step-up and the first treatment dose (Willemin et al. CPT:PSP 2024) and as its median CRS onset (2 days, van de
Donk et al. Cancer 2023) does. Why it is an option: ``calibration/README.md``.

``ramp(x) = x^2 / (x + 0.01)`` for ``x > 0`` and 0 otherwise is ``max(x, 0)`` with a continuous
derivative (:func:`ramp`; the engaged fraction slides along ``S = e`` while the drug stays, and a plain
``max`` would cost the explicit solver rejected steps there).

Consequences, each a published behaviour:

* the activation flux is a **burst**: it lasts while the signal rises into new thresholds and ends when
  the engaged fraction has caught up with ``S``, however long the drug stays. IL-6, which follows the
  secreting cells ``T_act`` through the monocytes (:mod:`qsp.components.cytokines`), peaks and returns to
  baseline: blinatumomab cytokines peak in the first 1-2 days of a continuous infusion and resolve while it
  continues (Klinger et al. Blood 2012;119:6226); the MajesTEC-1 mean IL-6 peaks ~2 days after each SC
  dose and is back near baseline before the next (Willemin et al. CPT:PSP 2024);
* secretion starts on average ``1/KSEC`` (~16 h) after engagement and lasts ``1/KDEACT`` (~16 h): TCE-induced
  T-cell cytokines accumulate over the first day in whole-blood assays (Leclercq-Cohen et al. Clin Cancer
  Res 2023), and serum IL-6 peaks ~1 day after an IV dose and ~2 days after an SC one;
* **priming**: a repeated dose that reaches no higher signal recruits nobody, and each step-up dose
  recruits only the cells between the previous and the new signal, so a step-up path spreads the first
  cycle's recruitment over several doses (Chen et al. Clin Transl Sci 2019;12:600: the cytokine response
  to a repeated T-cell-engager dose is blunted, a "priming" effect);
* priming lasts while the drug keeps the signal up and wears off over weeks after it falls (``KREC``):
  labels restart step-up dosing only after delays of weeks (Tecvayli US PI 2.4);
* **route**: an IV bolus lifts ``S`` at once (a large, short flux), an SC dose over days (a lower one). At
  doses far above the trimer's bell maximum an IV bolus can sit in the hook (lower ``S`` at Cmax) and an SC
  dose then recruits more (teclistamab 1.5 mg/kg in this binding model);
* cytotoxicity is not desensitised: all engaged cells kill target cells (:mod:`qsp.components.targets`)
  while cytokine release has stopped, as clinically (B-cell depletion and tumour responses continue after
  CRS has resolved);
* **margination** follows the recruitment flux (``u/T``, the share of the pool being newly engaged):
  blood T cells fall within hours of a new, higher signal and return over days (``KRET``) while the drug
  stays (Hosseini et al. npj Syst Biol Appl 2020;6:28: to ~20-40% of baseline; epcoritamab median 552 ->
  243 /uL 6 h after dosing; blinatumomab: T-cell redistribution within hours of the start of each dose
  step, recovery within days, Klinger et al. 2012). Marginated cells keep their state: ``marg`` is a
  fraction of the whole pool, so all cells still carry CD3 for binding.

``I_dex`` is the dexamethasone inhibition derived by :mod:`qsp.components.cytokines`. Class defaults were
set by hand (``docs/mechanism_check.py`` prints the behaviours they give); the calibration layer fits them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..errors import InputError
from ..model import Component, Output, Param, State

DEFAULT_SECRETION_STAGES = 1
MAX_SECRETION_STAGES = 20


def t_new_states(stages: int = DEFAULT_SECRETION_STAGES) -> tuple[str, ...]:
    """Names of the transit stages between engagement and secretion: ``T_new``, ``T_new2`` ... ``T_new<n>``."""
    return ("T_new",) + tuple(f"T_new{j}" for j in range(2, int(stages) + 1))


def t_states(stages: int = DEFAULT_SECRETION_STAGES) -> tuple[str, ...]:
    """The T-cell states that carry CD3 (every state but ``marg``), for a given number of secretion stages."""
    return ("T_rest",) + t_new_states(stages) + ("T_act", "T_des")


T_STATES = t_states()  # the default structure (one stage)


def hill(x, x50, h):
    """``x^h / (x50^h + x^h)`` for ``x >= 0``, written as a logistic in ``log x`` (finite gradients at 0)."""
    pos = x > 0.0
    lx = jnp.log(jnp.where(pos, x, 1.0))
    return jnp.where(pos, jax.nn.sigmoid(h * (lx - jnp.log(x50))), 0.0)


RAMP_DELTA = 0.01  # smoothing width of the recruitment/recovery ramp, as a fraction of the T-cell pool


def ramp(x, delta=RAMP_DELTA):
    """``max(x, 0)`` with a continuous derivative: ``x^2 / (x + delta)`` for ``x > 0``, 0 otherwise.

    The engaged fraction tracks the signal along ``x = 0`` (recruitment replaces cells lost while the drug
    stays); a plain ``max`` makes the vector field's derivative jump there at every step, which an explicit
    solver pays for with many rejected steps. ``ramp(x) <= x``, so recruitment never exceeds the resting pool.
    """
    xp = jnp.maximum(x, 0.0)
    return xp * xp / (xp + delta)


class TCells(Component):
    name = "tcells"

    def __init__(self, *, t0=550.0, sources=None, stages: int = DEFAULT_SECRETION_STAGES,
                 dex_hold: bool = False, **overrides):
        if isinstance(stages, bool) or not isinstance(stages, int) or not 1 <= stages <= MAX_SECRETION_STAGES:
            raise InputError(f"secretion_stages must be an integer from 1 to {MAX_SECRETION_STAGES}, got {stages!r}",
                             field="secretion_stages")
        if not isinstance(dex_hold, bool):
            raise InputError(f"dex_holds_secretion must be true or false, got {dex_hold!r}",
                             field="dex_holds_secretion")
        self.stages = stages
        self.dex_hold = dex_hold
        self.t_new = t_new_states(stages)
        self.t_states = t_states(stages)
        src = sources or {}
        v = dict(KSEC=1.5, KACT=6.0, TPT50=40.0, HILL=1.0, KDEACT=1.5, KREC=0.04, KPROLIF=0.3, TMAX_FOLD=3.0,
                 KAICD=0.1, KHOMEO=0.05, KMARG=100.0, MARG_MAX=0.8, KRET=0.7)
        v.update(overrides)
        self.states = (
            State("T_rest", "cells/uL", "resting (cytokine-competent) T cells, blood + marginated", "T0"),
            State("T_new", "cells/uL", "newly engaged T cells, before their cytokine-secreting phase"
                  + ("" if stages == 1 else " (transit stage 1)")),
            *(State(n, "cells/uL", f"newly engaged T cells, transit stage {j} before secreting")
              for j, n in enumerate(self.t_new[1:], start=2)),
            State("T_act", "cells/uL", "recently recruited T cells in their cytokine-secreting phase"),
            State("T_des", "cells/uL", "engaged T cells after the secreting phase (primed, cytotoxic, refractory)"),
            State("marg", "1", "fraction of the T-cell pool marginated out of the blood"),
        )
        a = "assumed: class default set by hand to show the published behaviours (docs/mechanism_check.py)"
        self.params = (
            Param("T0", t0, "cells/uL", "baseline blood T cells", src.get("T0", "assumed")),
            Param("KACT", v["KACT"], "1/day", "recruitment rate of resting cells whose threshold the signal exceeds",
                  "assumed: T cells engage within hours of CD3 cross-linking (early activation markers at 4-6 h, "
                  "Klinger et al. Blood 2012)"),
            Param("TPT50", v["TPT50"], "1/cell", "median activation threshold, trimers per T cell",
                  "assumed: tens of trimers per cell activate (Li et al. CPT 2022)"),
            Param("HILL", v["HILL"], "1", "spread of activation thresholds over the pool (Hill coefficient)", a),
            Param("KSEC", v["KSEC"], "1/day", "onset of cytokine secretion after engagement: 1/KSEC is the mean "
                  "delay T_new -> T_act (over all secretion stages)",
                  "assumed: TCE-induced cytokines accumulate over the first day in whole blood (Leclercq-Cohen et "
                  "al. Clin Cancer Res 2023); serum IL-6 peaks ~1 day after IV and ~2 days after SC doses"),
            Param("KDEACT", v["KDEACT"], "1/day", "end of the cytokine-secreting phase (T_act -> T_des)",
                  "assumed: the MajesTEC-1 mean IL-6 is back near baseline within ~1-2 days of its peak "
                  "(Willemin et al. CPT:PSP 2024)"),
            Param("KREC", v["KREC"], "1/day", "recovery of engaged cells to rest once the signal is below their "
                  "threshold (priming wears off)",
                  "assumed: priming protects for weeks; labels restart step-up after delays of ~4 weeks "
                  "(Tecvayli US PI 2.4)"),
            Param("KPROLIF", v["KPROLIF"], "1/day", "proliferation rate of activated T cells", a),
            Param("TMAX_FOLD", v["TMAX_FOLD"], "1", "T-cell expansion cap relative to baseline", a),
            Param("KAICD", v["KAICD"], "1/day", "activation-induced death of activated T cells", a),
            Param("KHOMEO", v["KHOMEO"], "1/day", "homeostatic return of total T cells to baseline", a),
            Param("KMARG", v["KMARG"], "1/day", "margination rate per unit of newly engaged fraction (u/T)",
                  "assumed: blood T cells fall to 20-45% within hours of a first dose (Hosseini et al. 2020; "
                  "epcoritamab median 552 -> 243 /uL at 6 h)"),
            Param("MARG_MAX", v["MARG_MAX"], "1", "largest fraction of the T-cell pool that can marginate",
                  "assumed: blood T cells fall to no less than ~20% of baseline after a dose (Hosseini et al. 2020)",
                  upper=1.0),
            Param("KRET", v["KRET"], "1/day", "return of marginated T cells to blood",
                  "assumed: recovery over 2-4 days (Hosseini et al. 2020; Klinger et al. Blood 2012)"),
        )
        self.outputs = (Output("blood_t_cells_per_ul", "cells/uL", "T cells in blood"),
                        Output("activated_t_fraction", "1", "fraction of T cells in the cytokine-secreting phase"),
                        Output("engaged_t_fraction", "1", "fraction of T cells engaged (new + secreting + primed)"),
                        Output("activation_flux", "cells/uL/day", "recruitment of resting T cells (Phi)"),
                        Output("marginated_fraction", "1", "fraction of the T-cell pool out of the blood"),
                        Output("t_signal", "1", "trimer activation signal S (0-1)"))

    def derive(self, t, y, p, d):
        s = hill(d["tpt"], p["TPT50"], p["HILL"])
        tr, ta, td = y["T_rest"], y["T_act"], y["T_des"]
        tn = sum(y[n] for n in self.t_new)
        tot = jnp.maximum(tr + tn + ta + td, 1e-12)
        eng = tn + ta + td
        u = tot * ramp(s - eng / tot)
        return {"t_signal": s, "t_total": tot, "t_engaged": eng, "t_unengaged_above": u,
                "activation_flux": p["KACT"] * u}

    def rates(self, t, y, p, d):
        s, tot, eng, u = d["t_signal"], d["t_total"], d["t_engaged"], d["t_unengaged_above"]
        tr, ta, td = y["T_rest"], y["T_act"], y["T_des"]
        w = tot * ramp(eng / tot - s)
        rec = p["KREC"] * w * td / jnp.maximum(eng, 1e-12)
        prolif = p["KPROLIF"] * (1.0 - d.get("dex_inhibition", 0.0)) * (1.0 - tot / (p["TMAX_FOLD"] * p["T0"])) * ta
        homeo = p["KHOMEO"] * (p["T0"] - tot) * tr / tot
        phi = d["activation_flux"]
        # end of the secreting phase; with dex_holds_secretion it slows as secretion does
        deact = p["KDEACT"] * (1.0 - d.get("dex_inhibition", 0.0)) if self.dex_hold else p["KDEACT"]
        k = self.stages * p["KSEC"]  # each stage lasts 1/(n KSEC): the whole delay has mean 1/KSEC
        transit = {self.t_new[0]: phi - k * y[self.t_new[0]]}
        for prev, cur in zip(self.t_new[:-1], self.t_new[1:]):
            transit[cur] = k * (y[prev] - y[cur])
        return {
            "T_rest": -phi + rec + homeo,
            **transit,
            "T_act": k * y[self.t_new[-1]] + prolif - (deact + p["KAICD"]) * ta,
            "T_des": deact * ta - rec,
            "marg": p["KMARG"] * (u / tot) * (p["MARG_MAX"] - y["marg"]) - p["KRET"] * y["marg"],
        }

    def output_values(self, t, y, p, d):
        tot = d["t_total"]
        return {"blood_t_cells_per_ul": (1.0 - y["marg"]) * tot, "activated_t_fraction": y["T_act"] / tot,
                "engaged_t_fraction": d["t_engaged"] / tot, "activation_flux": d["activation_flux"],
                "marginated_fraction": y["marg"], "t_signal": d["t_signal"]}
