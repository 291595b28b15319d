"""The mechanistic TCE model: SC/IV PK + trimer binding + T cells + targets + IL-6 + ADA.

Time unit: day. Amount unit: nmol (doses in mg, mg/kg, ug/m2, ug/day are converted with the drug's
molecular weight). Concentration outputs: ``conc_ug_per_ml`` (serum drug: total minus the tissue target pool, ``nM * MW * 1e-6``),
``il6_pg_per_ml``, ``blood_t_cells_per_ul``, trimers per cell, activated T fraction, target cells,
ADA titre.

Routes: ``SC`` (depot: KA, F, ALAG), ``IP`` (same depot, with the card's intraperitoneal KA/F),
``IV_bolus``, ``IV_infusion``, ``IV_continuous`` (central), ``premed_dex`` (dexamethasone, mg, into
the DEX state). NONMEM CMT numbers: 1 = depot, 2 = central.
"""

from __future__ import annotations

from typing import Mapping

from .components.ada import ADA
from .components.binding import BindingFull, BindingQE
from .components.crs_link import CRSLink
from .components.cytokines import Cytokines
from .components.pk import CentralDosing, Depot, LinearDisposition
from .components.targets import TARGET_STATES, TargetCells
from .components.tcells import DEFAULT_SECRETION_STAGES, TCells
from .errors import InputError
from .model import Component, DoseRoute, Model, Output, Param

BINDING_FORMS = ("qe", "full")


class DrugOutputs(Component):
    """Serum drug concentration in ug/mL: ``conc = serum_nM * MW[g/mol] * 1e-6``.

    ``serum_nM`` is the total drug of the central volume (free, cell-bound, soluble-target-bound) minus the drug
    bound to the tissue target pool (``TMDD_BASE``; :mod:`qsp.components.binding`), which is not in serum.
    Without a pool it is the total drug.
    """

    name = "drug_outputs"
    states = ()

    def __init__(self, mw_g_per_mol: float, source: str = "data/drugs.csv"):
        self.params = (Param("MW", mw_g_per_mol, "g/mol", "molecular weight", source),)
        self.outputs = (Output("conc_ug_per_ml", "ug/mL", "drug concentration in serum (total minus tissue pool)"),
                        Output("conc_nM", "nM", "drug concentration in serum (total minus tissue pool)"))

    def output_values(self, t, y, p, d):
        serum = d["serum_drug_nM"]
        return {"conc_ug_per_ml": serum * p["MW"] * 1e-6, "conc_nM": serum}


def build_tce_model(name: str, values: Mapping[str, float], *, mw_g_per_mol: float, pk: str = "2cmt",
                    time_varying_cl: bool = True, binding: str = "qe", il6_state: bool = False,
                    secretion_stages: int = DEFAULT_SECRETION_STAGES, dex_holds_secretion: bool = False,
                    tonic_secretion: bool = False, monocyte_priming: bool = False,
                    sources: Mapping[str, str] | None = None, description: str = "") -> Model:
    """Compose the TCE model; ``values`` override component defaults (drug-specific parameters).

    Args:
        binding: ``"qe"`` (quasi-equilibrium, explicit solvers, fast) or ``"full"`` (mass action; stiff,
            use ``solver="kvaerno5"``).
        il6_state: keep IL-6 as an ODE state instead of its quasi-steady state.
        secretion_stages: transit stages between T-cell engagement and cytokine secretion (an Erlang delay of
            mean ``1/KSEC`` and coefficient of variation ``1/sqrt(n)``; :mod:`qsp.components.tcells`).
        dex_holds_secretion: dexamethasone slows the end of the T cells' secreting phase as it slows their
            secretion, so a premedicated dose's cytokine burst is delayed, not lost (:mod:`qsp.components.tcells`).
        tonic_secretion: engaged T cells past their secreting phase keep a fraction ``F_TONIC`` of a secreting
            cell's cytokine output (:mod:`qsp.components.cytokines`).
        monocyte_priming: T-cell cytokines prime monocytes/macrophages (a slow state ``mono_prime``), which then
            make up to ``1 + PRIME_GAIN`` times as much IL-6 for the same stimulus (:mod:`qsp.components.cytokines`).
    """
    if binding not in BINDING_FORMS:
        raise InputError(f"unknown binding form {binding!r}; allowed: {', '.join(BINDING_FORMS)}", field="binding")
    if pk not in ("1cmt", "2cmt"):
        raise InputError(f"unknown pk structure {pk!r}; allowed: 1cmt, 2cmt", field="pk")
    src = dict(sources or {})
    v = dict(values)
    n_cmt = 1 if pk == "1cmt" else 2
    v1_name = "V" if n_cmt == 1 else "V1"
    # Components are built with their own defaults (the one place for a default value and its source); the
    # drug's values then replace them through ``with_defaults`` below, with their sources.
    comps: list[Component] = [
        Depot("depot", time_unit="day"),
        LinearDisposition(n_cmt, time_varying=time_varying_cl, time_unit="day", amount_unit="nmol"),
        CentralDosing(time_unit="day"),
    ]
    tcells = TCells(stages=secretion_stages, dex_hold=dex_holds_secretion)
    bkw = dict(t_states=tcells.t_states, target_states=TARGET_STATES, v1_name=v1_name)
    comps.append(BindingQE(**bkw) if binding == "qe" else BindingFull(**bkw))
    comps += [tcells, TargetCells(), Cytokines(il6_state=il6_state, tonic=tonic_secretion, priming=monocyte_priming), ADA(),
              DrugOutputs(mw_g_per_mol, src.get("MW", "data/drugs.csv")), CRSLink()]
    routes = {"SC": DoseRoute("depot", "F", "ALAG"), "IP": DoseRoute("depot", "F", "ALAG"),
              "IV_bolus": DoseRoute("central", "F2", "ALAG2"), "IV_infusion": DoseRoute("central", "F2", "ALAG2"),
              "IV_continuous": DoseRoute("central", "F2", "ALAG2"), "premed_dex": DoseRoute("DEX")}
    model = Model(name=name, components=tuple(comps), time_unit="day", amount_unit="nmol", routes=routes,
                  cmt={1: ("depot", "SC"), 2: ("central", "IV_bolus")}, mw_g_per_mol=mw_g_per_mol,
                  aliases={"F1": "F", "ALAG1": "ALAG"},
                  description=description)
    # The drug's values (a card's [params] and [crs]) replace the component defaults, with their sources.
    info = model.param_info
    unknown = sorted(k for k in v if k not in info)
    if unknown:
        raise InputError(f"unknown parameter(s) {unknown} for the TCE model; allowed: {', '.join(info)}",
                         field="params")
    return model.with_defaults(v, src)


# The T-cell structure options a card may set ([structure]) and their defaults (the shipped structure). A fit
# records them per drug (qsp.calibrate.export.structure_of); a record without an option predates it: default.
STRUCTURE_DEFAULTS = {"secretion_stages": DEFAULT_SECRETION_STAGES, "dex_holds_secretion": False,
                      "tonic_secretion": False, "monocyte_priming": False}


def structure_options_of(model: Model) -> dict | None:
    """The T-cell and cytokine structure options of a TCE model, as its card spells them (None: the model has no
    T cells): ``{"secretion_stages": n, "dex_holds_secretion": bool, "tonic_secretion": bool,
    "monocyte_priming": bool}``."""
    out = None
    for c in model.components:
        if isinstance(c, TCells):
            out = {"secretion_stages": c.stages, "dex_holds_secretion": c.dex_hold}
    if out is not None:
        out["tonic_secretion"] = any(isinstance(c, Cytokines) and c.tonic for c in model.components)
        out["monocyte_priming"] = any(isinstance(c, Cytokines) and c.priming for c in model.components)
    return out
