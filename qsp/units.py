"""Dose units, molar conversion and body-size covariates.

A dose is written as an amount and a unit string. Supported units:

=============  =========================================  ===========================
unit           meaning                                    needs
=============  =========================================  ===========================
``mg``         milligram                                  --
``ug``         microgram                                  --
``ng``         nanogram                                   --
``nmol``       nanomole                                   molecular weight for mass
``mg/kg``      milligram per kg body weight               ``weight_kg``
``ug/kg``      microgram per kg body weight               ``weight_kg``
``mg/m2``      milligram per m2 body-surface area         ``bsa_m2`` (or weight+height)
``ug/m2``      microgram per m2 body-surface area         ``bsa_m2`` (or weight+height)
``ug/day``     continuous infusion rate, ug per day       an infusion duration
``ug/m2/day``  continuous infusion rate per m2 BSA        duration and ``bsa_m2``
=============  =========================================  ===========================

Molar conversion: ``nmol = mass_mg * 1e6 / MW[g/mol]`` (1 mg of a 147 kDa antibody is 6.80 nmol).

Body-surface area: Mosteller (N Engl J Med 1987;317:1098), ``BSA[m2] = sqrt(height_cm * weight_kg / 3600)``;
the DuBois & DuBois formula (Arch Intern Med 1916;17:863),
``BSA = 0.007184 * weight_kg**0.425 * height_cm**0.725``, is available as an option.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .errors import InputError

MASS_UNITS_MG = {"mg": 1.0, "ug": 1e-3, "ng": 1e-6}
PER_WEIGHT = {"mg/kg": 1.0, "ug/kg": 1e-3}
PER_BSA = {"mg/m2": 1.0, "ug/m2": 1e-3}
RATE_UNITS = {"ug/day": 1e-3, "mg/day": 1.0, "ug/m2/day": 1e-3}
AMOUNT_UNITS = tuple(MASS_UNITS_MG) + ("nmol",) + tuple(PER_WEIGHT) + tuple(PER_BSA)
ALL_UNITS = AMOUNT_UNITS + tuple(RATE_UNITS)
TARGET_UNITS = ("mg", "ug", "ng", "nmol")

_ALIASES = {"µg": "ug", "mcg": "ug", "μg": "ug", "mg/m^2": "mg/m2", "ug/m^2": "ug/m2", "ug/d": "ug/day",
            "mcg/kg": "ug/kg", "µg/kg": "ug/kg", "mcg/day": "ug/day"}


def normalize_unit(unit: str, *, field: str = "unit", row: int | None = None) -> str:
    """Return the canonical spelling of a dose unit or raise :class:`InputError` naming the allowed ones."""
    if not isinstance(unit, str):
        raise InputError(f"unit must be text, one of {', '.join(ALL_UNITS)}; got {unit!r}", field=field, row=row)
    u = unit.strip().lower().replace(" ", "")
    u = _ALIASES.get(u, u)
    if u not in ALL_UNITS:
        raise InputError(f"unknown dose unit {unit!r}; allowed: {', '.join(ALL_UNITS)}", field=field, row=row)
    return u


def is_rate_unit(unit: str) -> bool:
    """True for continuous-infusion rate units (amount per day)."""
    return normalize_unit(unit) in RATE_UNITS


def bsa_mosteller(weight_kg: float, height_cm: float) -> float:
    """Body-surface area [m2] by Mosteller (1987): sqrt(height_cm * weight_kg / 3600)."""
    return (height_cm * weight_kg / 3600.0) ** 0.5  # works on floats and NumPy arrays


def bsa_dubois(weight_kg: float, height_cm: float) -> float:
    """Body-surface area [m2] by DuBois & DuBois (1916): 0.007184 W^0.425 H^0.725."""
    return 0.007184 * weight_kg**0.425 * height_cm**0.725


BSA_FORMULAS = {"mosteller": bsa_mosteller, "dubois": bsa_dubois}


@dataclass(frozen=True)
class Covariates:
    """Patient body-size covariates used for dose conversion.

    ``bsa_m2`` is taken as given when set; otherwise it is computed from weight and height with
    ``bsa_formula`` (``"mosteller"`` by default).
    """

    weight_kg: float | None = None
    height_cm: float | None = None
    bsa_m2: float | None = None
    bsa_formula: str = "mosteller"

    def __post_init__(self):
        for name in ("weight_kg", "height_cm", "bsa_m2"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                                       and v > 0):
                raise InputError(f"must be a positive number, got {v!r}", field=name)
        if self.bsa_formula not in BSA_FORMULAS:
            raise InputError(f"unknown BSA formula {self.bsa_formula!r}; allowed: {', '.join(BSA_FORMULAS)}",
                             field="bsa_formula")

    def bsa(self) -> float | None:
        if self.bsa_m2 is not None:
            return self.bsa_m2
        if self.weight_kg is not None and self.height_cm is not None:
            return BSA_FORMULAS[self.bsa_formula](self.weight_kg, self.height_cm)
        return None


def mass_to_nmol(mass_mg: float, mw_g_per_mol: float) -> float:
    """Convert a mass in mg to nmol: ``mg * 1e6 / MW`` (MW in g/mol)."""
    if not (mw_g_per_mol and mw_g_per_mol > 0):
        raise InputError(f"molecular weight must be positive, got {mw_g_per_mol!r}", field="mw")
    return mass_mg * 1e6 / mw_g_per_mol


def nmol_to_mg(nmol: float, mw_g_per_mol: float) -> float:
    """Convert nmol to mg: ``nmol * MW / 1e6``."""
    return nmol * mw_g_per_mol / 1e6


def dose_to_mass_mg(amount: float, unit: str, cov: Covariates | None = None, *, duration_day: float | None = None,
                    mw_g_per_mol: float | None = None, row: int | None = None) -> float:
    """Total dose mass in mg for an amount in any supported unit.

    * ``mg/kg``, ``ug/kg``: multiplied by ``cov.weight_kg`` (error if missing).
    * ``mg/m2``, ``ug/m2``: multiplied by the BSA (error if it cannot be computed).
    * ``ug/day``-type rates: multiplied by ``duration_day`` (error if missing).
    * ``nmol``: needs ``mw_g_per_mol``.
    """
    u = normalize_unit(unit, row=row)
    cov = cov or Covariates()
    if u in MASS_UNITS_MG:
        return amount * MASS_UNITS_MG[u]
    if u == "nmol":
        if mw_g_per_mol is None:
            raise InputError("a dose in nmol needs the molecular weight to convert to mass", field="unit", row=row)
        return nmol_to_mg(amount, mw_g_per_mol)
    if u in PER_WEIGHT:
        if cov.weight_kg is None:
            raise InputError(f"a dose in {u} needs the patient's body weight (weight_kg)", field="weight_kg", row=row)
        return amount * PER_WEIGHT[u] * cov.weight_kg
    if u in PER_BSA or u == "ug/m2/day":
        bsa = cov.bsa()
        if bsa is None:
            raise InputError(f"a dose in {u} needs the body-surface area (bsa_m2, or weight_kg and height_cm)",
                             field="bsa_m2", row=row)
        if u in PER_BSA:
            return amount * PER_BSA[u] * bsa
        amount = amount * bsa
    if u in RATE_UNITS:
        if duration_day is None or not duration_day > 0:
            raise InputError(f"a dose rate in {u} needs a positive infusion duration", field="infusion_h", row=row)
        return amount * RATE_UNITS[u] * duration_day
    raise AssertionError(u)  # pragma: no cover - normalize_unit guards this


def convert_dose(amount: float, unit: str, target: str, cov: Covariates | None = None, *,
                 duration_day: float | None = None, mw_g_per_mol: float | None = None,
                 row: int | None = None) -> float:
    """Convert a dose to ``target`` (one of mg, ug, ng, nmol). See :func:`dose_to_mass_mg`."""
    if target not in TARGET_UNITS:
        raise InputError(f"unknown target unit {target!r}; allowed: {', '.join(TARGET_UNITS)}", field="target")
    if normalize_unit(unit, row=row) == "nmol" and target == "nmol":
        return float(amount)
    mg = dose_to_mass_mg(amount, unit, cov, duration_day=duration_day, mw_g_per_mol=mw_g_per_mol, row=row)
    if target == "nmol":
        if mw_g_per_mol is None:
            raise InputError("converting to nmol needs the molecular weight", field="mw")
        return mass_to_nmol(mg, mw_g_per_mol)
    return mg / MASS_UNITS_MG[target]
