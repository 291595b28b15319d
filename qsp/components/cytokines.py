"""IL-6: T-cell cytokines from the activation burst, amplified by monocytes/macrophages; dexamethasone.

Structure (changed from the prior mechanism, and why)
------------------------------------------------------
The prior mechanism made IL-6 proportional to the *stock* of activated T cells times a linear monocyte
gain (``1 + MONO_EMAX mono``) with monocytes switched on by IL-6 itself: IL-6 rose only 1-3 fold, kept
rising through the week after a subcutaneous dose and had no way to span the 10-1000-fold range seen
between patients and doses. Serum IL-6 after a T-cell engager is a downstream, amplified readout: activated
T cells release TNF-a, IFN-g and IL-2 and little IL-6; these activate monocytes/macrophages (and
endothelium), which make most of the IL-6 (Leclercq-Cohen et al. Clin Cancer Res 2023, CD20xCD3 in whole
blood; Li et al. Sci Transl Med 2019; in CAR-T CRS, Giavridis et al. Nat Med 2018 and Norelli et al. Nat
Med 2018 show monocyte-derived IL-6). Here:

* the **T-cell cytokine drive** comes from the cells in their secreting phase (``T_act``, fed by the
  recruitment *burst* of :mod:`qsp.components.tcells`), in contact with target cells; it is expressed in
  IL-6-equivalent units (pg/mL, the IL-6 that T cells add directly at quasi-steady state)::

      X = KIL6 T_act contact (1 - I_dex) / KEL_IL6 ,   contact = TGT / (TGT + KTGT50)

  (production proportional to activated T cells times target density, Hosseini et al. npj Syst Biol Appl
  2020;6:28; debulking lowers later release);
* **monocyte/macrophage activation** ``mono`` (0-1) is a cooperative (Hill ``MONO_HILL``) switch on ``X``
  with its own on/off kinetics, and activated monocytes add up to ``IL6_MONO_MAX`` pg/mL of IL-6::

      dmono/dt = KMONO_ON X^n / (MONO_EC50^n + X^n) (1 - mono) - KMONO_OFF mono
      IL6      = IL6_0 + IL6_T_GAIN X + IL6_MONO_MAX mono                      (quasi-steady state, default)
      dIL6/dt  = KEL_IL6 (IL6_T_GAIN X + IL6_MONO_MAX mono + IL6_0 - IL6)              (``il6_state=True``)

  ``IL6_T_GAIN`` (default 1) separates the drive, which also sets the CRS risk (:mod:`qsp.crs`), from the IL-6
  the T cells add themselves: a fit without the MajesTEC-1 IL-6 series (calibration/fits/loo_teclistamab_il6)
  reproduced every per-dose CRS incidence with a drive that, added 1:1 to IL-6, predicted IL-6 in the
  thousands of pg/mL against the observed ~5-21; with the series, the joint fit shrank the drive and lost
  the CRS incidences. T cells make little IL-6 themselves (Leclercq-Cohen et al. 2023).

  The cooperative switch is what turns a few-fold spread of the T-cell drive (dose, route, T cells,
  tumour burden, ``KIL6``) into a 10-1000-fold spread of IL-6 peaks (blinatumomab individual peaks
  10-2000 pg/mL, Hijazi et al. 2018 via Hosseini et al. 2020; teclistamab individual maxima up to ~290
  pg/mL while the mean over patients with CRS peaks near 21 pg/mL, Willemin et al. CPT:PSP 2024), and
  ``KMONO_OFF`` makes IL-6 return to baseline within a day of the end of the burst (the MajesTEC-1 mean
  falls from 21 to 6 pg/mL between 48 and 72 h after the first treatment dose).

**Tonic secretion by engaged T cells** (``tonic_secretion = true``, a structure option of the card; default
false): engaged T cells past their secreting phase (``T_des``: primed, cytotoxic, refractory to a new burst) keep
a low cytokine output while they stay engaged with target cells, a fraction ``F_TONIC`` of a secreting cell's::

      X = KIL6 (T_act + F_TONIC T_des) contact (1 - I_dex) / KEL_IL6

Why: the MajesTEC-1 mean IL-6 of the patients with CRS sits at 4.1-4.5 pg/mL before the weekly doses of
weeks 2 and 3, above its 2.7-2.8 pg/mL before the first dose, but at 2.5-2.7 pg/mL in the hours after the
premedicated first treatment dose (Willemin et al. CPT:PSP 2024, Fig. 1): a floor that rises with the engaged
pool and that dexamethasone lowers. Without it every burst returns to ``IL6_0`` exactly and the mean a week
after the treatment dose is 1.6-fold low (``calibration/README.md``, "Tonic secretion and the monocyte switch's
kinetics"). Chronically engaged T cells keep a reduced cytokine output rather than none (IFN-g is the last
function lost in exhaustion; Wherry, Nat Immunol 2011;12:492). The value is assumed (prior wide, logit scale);
the calibration layer fits it.

**Monocyte priming by the T-cell cytokines** (``monocyte_priming = true``, a structure option of the card; default
false): IFN-g from the secreting T cells primes monocytes/macrophages, which then make more IL-6 for the same
later stimulus. A slow priming state ``mono_prime`` (0-1) builds with the drive and wears off over days, and raises the
IL-6 output of the activated monocytes::

      dmono_prime/dt = KPRIME X (1 - mono_prime) - KPRIME_OFF mono_prime
      IL6            = IL6_0 + IL6_T_GAIN X + IL6_MONO_MAX (1 + PRIME_GAIN mono_prime) mono

Why: in MajesTEC-1 the mean IL-6 of the patients with CRS doubles from each step-up dose to the next (5.0 ->
10.9 -> 21.3 pg/mL after 0.06, 0.3 and 1.5 mg/kg) while the per-dose CRS incidence falls (42 -> 36 -> 25%;
Willemin et al. CPT:PSP 2024, Fig. 1; Tecvayli US PI 5.1). Without priming, CRS and serum IL-6 both follow the
one T-cell drive ``X``, and the joint fit over all drugs makes that drive fall over the step-ups (every drug's
per-dose CRS falls), so the IL-6 bursts fall too (calibration/README.md, "Per-drug deviations of the secretion
kinetics, and who pulls"; re-optimised for the other drugs, teclistamab's regime costs their data 1.4 nats
and the class priors 7: "What the peaks really cost jointly").
Priming lets serum IL-6 per unit of drive grow from dose to dose while the drive, and with it the CRS risk
(:mod:`qsp.crs` reads ``X``, not IL-6), falls. IFN-g primes human macrophages' TNF and IL6 loci (sustained
STAT1/IRF-1 occupancy and histone acetylation) so that a later stimulus induces them several-fold more, without
inducing them itself (Qiao et al. Immunity 2013;39:454), and prevents the tolerance that would otherwise silence
IL-6 on repeated stimulation (Chen & Ivashkiv, PNAS 2010;107:19438). The priming rate, its decay and its gain are
assumed (wide priors); the calibration layer fits them. No CRS target sees them, only the IL-6 series.
Outcome (calibration/README.md, "Monocyte priming"): it does not give the rising series at the joint fit's values,
where the drive of the first step-up dose is the largest, so priming builds mostly during the first burst and
scales every later burst about alike (``calibration/priming_probe.py``); the shipped cards keep it off.

IL-6 elimination half-life ~20 min (``KEL_IL6 = ln2 / (20 min) = 49.9 /day``); baseline ``IL6_0`` ~2-5
pg/mL. With a 20-min half-life IL-6 follows its production within ~1 h, so the default quasi-steady-state
form removes the stiffest time scale; ``il6_state=True`` keeps IL-6 as a state (tests compare both).

Dexamethasone (premedication before step-up doses, e.g. 16 mg for teclistamab per the US label) enters
as dose events on route ``premed_dex`` into the ``DEX`` state (mg)::

    dDEX/dt = -KDEX DEX ;  I_dex = DEX_IMAX DEX / (DEX_IC50 + DEX)

it lowers the T-cell cytokine drive ``X`` (and through it monocyte activation, squared by the cooperative
switch) and T-cell proliferation (``I_dex`` is read by :mod:`qsp.components.tcells`), but not recruitment:
cells engaged under dexamethasone are primed without a burst (with the card's structure option
``dex_holds_secretion`` they keep the burst and release it as dexamethasone wanes: :mod:`qsp.components.tcells`).
Dexamethasone cuts TCE-induced cytokine release in whole blood more than anti-IL-6R does (Leclercq-Cohen et al.
2023). It acts once, on ``X``: also inhibiting the monocytes' IL-6 output would cube the effect and wipe out the
IL-6 of premedicated doses.

Class defaults were set by hand so that, with the T-cell defaults, a 200-patient teclistamab population
(label premedication) gives a mean IL-6 near 20 pg/mL ~1.5-2 days after the first treatment dose with
individual maxima of hundreds of pg/mL, and blinatumomab (with its drug-level cross-linking, see
``docs/mechanism_check.py``) first-step peaks spanning ~5 to ~2000 pg/mL with ``KIL6``'s IIV of 0.5;
``docs/mechanism_check.py`` prints these numbers. The calibration layer fits them.
"""

from __future__ import annotations

from ..errors import InputError
from ..model import Component, Output, Param, State
from .tcells import hill

LN2 = 0.6931471805599453


class Cytokines(Component):
    name = "cytokines"

    def __init__(self, *, il6_state: bool = False, tonic: bool = False, priming: bool = False, **overrides):
        if not isinstance(tonic, bool):
            raise InputError(f"tonic_secretion must be true or false, got {tonic!r}", field="tonic_secretion")
        if not isinstance(priming, bool):
            raise InputError(f"monocyte_priming must be true or false, got {priming!r}", field="monocyte_priming")
        self.tonic = tonic
        self.priming = priming
        v = dict(KPRIME=0.1, KPRIME_OFF=LN2 / 7.0, PRIME_GAIN=2.0, F_TONIC=0.05, IL6_0=2.8, KIL6=10.0, IL6_T_GAIN=1.0, KTGT50=3000.0, KEL_IL6=LN2 / (20.0 / 60.0 / 24.0), IL6_MONO_MAX=5000.0,
                 MONO_EC50=35.0, MONO_HILL=2.0, KMONO_ON=3.0, KMONO_OFF=3.0, KDEX=LN2 / 1.0, DEX_IMAX=0.6,
                 DEX_IC50=4.0)
        v.update(overrides)
        self.il6_state = il6_state
        a = "assumed: class default set by hand to show the published behaviours (docs/mechanism_check.py)"
        sts = [State("mono", "1", "activated monocyte/macrophage fraction"),
               State("DEX", "mg", "dexamethasone effect-compartment amount")]
        if priming:
            sts.append(State("mono_prime", "1", "priming of monocytes/macrophages by T-cell cytokines (IFN-g)"))
        if il6_state:
            sts.insert(0, State("IL6", "pg/mL", "serum IL-6", "IL6_0"))
        self.states = tuple(sts)
        self.params = (
            Param("IL6_0", v["IL6_0"], "pg/mL", "baseline serum IL-6",
                  "MajesTEC-1 pre-dose mean 2.8 pg/mL (Willemin et al. CPT:PSP 2024, Fig. 1)"),
            Param("KIL6", v["KIL6"], "pg/mL/day per cell/uL",
                  "T-cell cytokine drive per secreting T cell in contact (IL-6-equivalent)", a),
            Param("IL6_T_GAIN", v["IL6_T_GAIN"], "1",
                  "serum IL-6 added directly per unit of T-cell cytokine drive (the drive's own IL-6 share)",
                  "assumed: activated T cells release TNF-a, IFN-g and IL-2 and little IL-6 (Leclercq-Cohen et al. "
                  "Clin Cancer Res 2023); 1 keeps the drive in IL-6-equivalent units"),
            Param("KTGT50", v["KTGT50"], "cells/uL", "target cells for half-maximal contact", a),
            Param("KEL_IL6", v["KEL_IL6"], "1/day", "IL-6 elimination rate (half-life ~20 min)",
                  "SCIENCE.md 2.5; Hosseini et al. 2020"),
            Param("IL6_MONO_MAX", v["IL6_MONO_MAX"], "pg/mL", "IL-6 excess with all monocytes/macrophages activated",
                  "assumed: individual IL-6 peaks reach ~2000 pg/mL (blinatumomab, Hijazi et al. 2018 via "
                  "Hosseini et al. 2020)"),
            Param("MONO_EC50", v["MONO_EC50"], "pg/mL", "T-cell cytokine drive X for half-maximal monocyte activation",
                  a),
            Param("MONO_HILL", v["MONO_HILL"], "1", "cooperativity of monocyte activation by T-cell cytokines",
                  "assumed: monocyte activation needs several T-cell signals (TNF-a, IFN-g, CD40L; "
                  "Leclercq-Cohen et al. Clin Cancer Res 2023)"),
            Param("KMONO_ON", v["KMONO_ON"], "1/day", "monocyte activation rate at full drive", a),
            Param("KMONO_OFF", v["KMONO_OFF"], "1/day", "monocyte deactivation rate",
                  "assumed: the MajesTEC-1 mean IL-6 falls ~4-fold within 24 h of its peak (Willemin et al. 2024)"),
            Param("KDEX", v["KDEX"], "1/day", "decay of the dexamethasone effect (t1/2 ~1 day)",
                  "assumed: biological half-life of dexamethasone 36-54 h"),
            Param("DEX_IMAX", v["DEX_IMAX"], "1", "maximal inhibition of cytokine production by dexamethasone", a,
                  upper=1.0),
            Param("DEX_IC50", v["DEX_IC50"], "mg", "dexamethasone amount for half-maximal inhibition", a),
        ) + ((Param("F_TONIC", v["F_TONIC"], "1",
                    "cytokine output of an engaged T cell past its secreting phase, relative to a secreting one",
                    "assumed: engaged, primed T cells keep a low cytokine output (the MajesTEC-1 mean IL-6 before "
                    "the doses of weeks 2-3, 4.1-4.5 pg/mL against 2.8 before the first; Willemin et al. CPT:PSP "
                    "2024, Fig. 1)", upper=1.0),) if tonic else ()) + ((
            Param("KPRIME", v["KPRIME"], "1/day per pg/mL", "priming rate of monocytes per unit of T-cell cytokine "
                  "drive X", "assumed: a one-day burst of a few pg/mL (IL-6-equivalent) primes a sizeable share of "
                  "the monocytes; IFN-g primes at low concentrations (Qiao et al. Immunity 2013;39:454)"),
            Param("KPRIME_OFF", v["KPRIME_OFF"], "1/day", "decay of monocyte priming (half-life ~7 days)",
                  "assumed: IFN-g-primed chromatin at the TNF/IL6 loci persists for days after IFN-g (Qiao et al. "
                  "Immunity 2013;39:454); MajesTEC-1's step-up doses are 3-4 days apart"),
            Param("PRIME_GAIN", v["PRIME_GAIN"], "1", "relative increase of the monocytes' maximal IL-6 output at "
                  "full priming (output x (1 + PRIME_GAIN))",
                  "assumed: IFN-g priming raises TLR-induced IL-6 and TNF of human macrophages several-fold (Qiao "
                  "et al. Immunity 2013;39:454)"),) if priming else ())
        self.outputs = (Output("il6_pg_per_ml", "pg/mL", "serum IL-6"),
                        Output("t_cytokine_drive", "pg/mL", "T-cell cytokine drive X (IL-6-equivalent)"),
                        Output("monocyte_activation", "1", "activated monocyte fraction"),
                        Output("dex_inhibition", "1", "inhibition of cytokine production by dexamethasone")) + (
            (Output("monocyte_priming", "1", "priming of monocytes/macrophages by T-cell cytokines"),) if priming else ())

    def derive(self, t, y, p, d):
        dex_i = p["DEX_IMAX"] * y["DEX"] / (p["DEX_IC50"] + y["DEX"])
        tgt = d["target_cells_total"]
        contact = tgt / (tgt + p["KTGT50"])
        secreting = y["T_act"] + p["F_TONIC"] * y["T_des"] if self.tonic else y["T_act"]
        x = p["KIL6"] * secreting * contact * (1.0 - dex_i) / p["KEL_IL6"]
        mono_max = p["IL6_MONO_MAX"] * (1.0 + p["PRIME_GAIN"] * y["mono_prime"]) if self.priming else p["IL6_MONO_MAX"]
        excess = p["IL6_T_GAIN"] * x + mono_max * y["mono"]
        il6 = y["IL6"] if self.il6_state else p["IL6_0"] + excess
        return {"dex_inhibition": dex_i, "t_cytokine_drive": x, "il6_production": p["KEL_IL6"] * excess, "il6": il6}

    def rates(self, t, y, p, d):
        on = hill(d["t_cytokine_drive"], p["MONO_EC50"], p["MONO_HILL"])
        out = {"mono": p["KMONO_ON"] * on * (1.0 - y["mono"]) - p["KMONO_OFF"] * y["mono"],
               "DEX": -p["KDEX"] * y["DEX"]}
        if self.priming:
            out["mono_prime"] = (p["KPRIME"] * d["t_cytokine_drive"] * (1.0 - y["mono_prime"])
                                 - p["KPRIME_OFF"] * y["mono_prime"])
        if self.il6_state:
            out["IL6"] = d["il6_production"] - p["KEL_IL6"] * (y["IL6"] - p["IL6_0"])
        return out

    def output_values(self, t, y, p, d):
        out = {"il6_pg_per_ml": d["il6"], "t_cytokine_drive": d["t_cytokine_drive"],
               "monocyte_activation": y["mono"], "dex_inhibition": d["dex_inhibition"]}
        if self.priming:
            out["monocyte_priming"] = y["mono_prime"]
        return out
