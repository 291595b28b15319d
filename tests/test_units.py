"""Dose units, molar conversion, body-surface area and their error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qsp.errors import InputError
from qsp.units import (Covariates, bsa_dubois, bsa_mosteller, convert_dose, dose_to_mass_mg, is_rate_unit,
                       mass_to_nmol, nmol_to_mg, normalize_unit)

MW_IGG = 147_000.0  # g/mol, a typical IgG-sized antibody
COV = Covariates(weight_kg=70.0, height_cm=170.0)


def raises_naming(field, fn, *args, **kw):
    """Call ``fn`` and check it raises InputError whose ``field`` is ``field`` and whose message names it."""
    with pytest.raises(InputError) as ei:
        fn(*args, **kw)
    assert ei.value.field == field
    assert field in str(ei.value)
    return str(ei.value)


# ------------------------------------------------------------------------------------------------
# Conversions
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("amount, unit, target, expected", [
    (1.0, "mg", "mg", 1.0),
    (1.0, "mg", "ug", 1e3),
    (1.0, "mg", "ng", 1e6),
    (250.0, "ug", "mg", 0.25),
    (250.0, "ug", "ug", 250.0),
    (250.0, "ug", "ng", 2.5e5),
    (5e5, "ng", "mg", 0.5),
    (5e5, "ng", "ug", 500.0),
])
def test_mass_units(amount, unit, target, expected):
    assert convert_dose(amount, unit, target) == pytest.approx(expected, rel=1e-15)


def test_per_weight_units():
    assert convert_dose(1.5, "mg/kg", "mg", COV) == pytest.approx(105.0, rel=1e-15)
    assert convert_dose(720.0, "ug/kg", "mg", COV) == pytest.approx(50.4, rel=1e-15)
    assert convert_dose(720.0, "ug/kg", "ug", COV) == pytest.approx(50400.0, rel=1e-15)
    assert convert_dose(1.0, "mg/kg", "mg", Covariates(weight_kg=55.0)) == 55.0


def test_per_bsa_units():
    bsa = math.sqrt(170.0 * 70.0 / 3600.0)
    assert convert_dose(2.0, "mg/m2", "mg", COV) == pytest.approx(2.0 * bsa, rel=1e-14)
    assert convert_dose(500.0, "ug/m2", "ug", COV) == pytest.approx(500.0 * bsa, rel=1e-14)
    # an explicit BSA wins over weight/height
    assert convert_dose(500.0, "ug/m2", "mg", Covariates(weight_kg=70.0, height_cm=170.0, bsa_m2=1.5)) == \
        pytest.approx(0.75, rel=1e-15)
    # DuBois on request
    dub = Covariates(weight_kg=70.0, height_cm=170.0, bsa_formula="dubois")
    assert convert_dose(1.0, "mg/m2", "mg", dub) == pytest.approx(bsa_dubois(70.0, 170.0), rel=1e-15)


def test_continuous_rate_units():
    # ug/day times the duration in days
    assert convert_dose(2400.0, "ug/day", "mg", duration_day=2.0) == pytest.approx(4.8, rel=1e-15)
    assert convert_dose(2400.0, "ug/day", "ug", duration_day=0.5) == pytest.approx(1200.0, rel=1e-15)
    assert convert_dose(3.0, "mg/day", "mg", duration_day=7.0) == pytest.approx(21.0, rel=1e-15)
    # ug/m2/day: rate per m2 times BSA times duration
    assert convert_dose(100.0, "ug/m2/day", "ug", Covariates(bsa_m2=1.8), duration_day=3.0) == \
        pytest.approx(540.0, rel=1e-14)
    assert is_rate_unit("ug/day") and is_rate_unit("mcg/day") and not is_rate_unit("ug/kg")


def test_molar_conversion_with_molecular_weight():
    # 1 mg of a 147 kDa antibody is 1e6/147000 = 6.8027 nmol
    assert convert_dose(1.0, "mg", "nmol", mw_g_per_mol=MW_IGG) == pytest.approx(6.802721088, rel=1e-9)
    assert convert_dose(6.802721088435374, "nmol", "mg", mw_g_per_mol=MW_IGG) == pytest.approx(1.0, rel=1e-12)
    assert convert_dose(10.0, "nmol", "ug", mw_g_per_mol=MW_IGG) == pytest.approx(1470.0, rel=1e-14)
    assert convert_dose(3.0, "nmol", "nmol") == 3.0  # no MW needed for nmol -> nmol
    assert convert_dose(1.0, "mg/kg", "nmol", COV, mw_g_per_mol=MW_IGG) == pytest.approx(70e6 / MW_IGG, rel=1e-14)
    assert mass_to_nmol(nmol_to_mg(12.5, MW_IGG), MW_IGG) == pytest.approx(12.5, rel=1e-15)


def test_dose_to_mass_mg_all_units():
    cov = Covariates(weight_kg=80.0, bsa_m2=2.0)
    assert dose_to_mass_mg(3.0, "ug/kg", cov) == pytest.approx(0.24, rel=1e-15)
    assert dose_to_mass_mg(3.0, "mg/m2", cov) == pytest.approx(6.0, rel=1e-15)
    assert dose_to_mass_mg(147.0, "nmol", mw_g_per_mol=MW_IGG) == pytest.approx(21.609, rel=1e-12)


@pytest.mark.parametrize("spelling, canonical", [
    ("mg", "mg"), ("MG", "mg"), ("µg", "ug"), ("μg", "ug"), ("mcg", "ug"), (" ug ", "ug"), ("mg / kg", "mg/kg"),
    ("mcg/kg", "ug/kg"), ("ug/m^2", "ug/m2"), ("mg/m^2", "mg/m2"), ("ug/d", "ug/day"), ("NMOL", "nmol"),
])
def test_unit_aliases(spelling, canonical):
    assert normalize_unit(spelling) == canonical


# ------------------------------------------------------------------------------------------------
# Body-surface area
# ------------------------------------------------------------------------------------------------
def test_bsa_mosteller_known_values():
    assert bsa_mosteller(80.0, 180.0) == pytest.approx(2.0, rel=1e-15)  # sqrt(180*80/3600) = sqrt(4)
    assert bsa_mosteller(90.0, 160.0) == pytest.approx(2.0, rel=1e-15)
    assert bsa_mosteller(70.0, 170.0) == pytest.approx(1.8181, abs=1e-4)  # the usual "1.82 m2" adult
    assert COV.bsa() == bsa_mosteller(70.0, 170.0)  # the default formula


def test_bsa_dubois_known_values():
    # 0.007184 * 70^0.425 * 170^0.725 = 1.8097 m2 (calculators: 1.81 m2)
    assert bsa_dubois(70.0, 170.0) == pytest.approx(1.8097, abs=1e-4)
    assert bsa_dubois(60.0, 165.0) == pytest.approx(1.6587, abs=1e-4)
    assert Covariates(weight_kg=70.0, height_cm=170.0, bsa_formula="dubois").bsa() == bsa_dubois(70.0, 170.0)
    # the two formulas differ, so the option matters
    assert abs(bsa_dubois(70.0, 170.0) - bsa_mosteller(70.0, 170.0)) > 5e-3


def test_bsa_not_computable():
    assert Covariates(weight_kg=70.0).bsa() is None
    assert Covariates(height_cm=170.0).bsa() is None
    assert Covariates(bsa_m2=1.7).bsa() == 1.7


def test_covariates_accept_numpy_numbers():
    cov = Covariates(weight_kg=np.int64(70), height_cm=np.float32(170.0))
    assert convert_dose(1.0, "mg/kg", "mg", cov) == pytest.approx(70.0)
    assert cov.bsa() == pytest.approx(bsa_mosteller(70.0, 170.0), rel=1e-6)


# ------------------------------------------------------------------------------------------------
# Error paths: each message names the field
# ------------------------------------------------------------------------------------------------
def test_per_kg_without_weight():
    msg = raises_naming("weight_kg", convert_dose, 1.0, "mg/kg", "mg")
    assert "mg/kg" in msg
    raises_naming("weight_kg", convert_dose, 1.0, "ug/kg", "mg", Covariates(height_cm=170.0, bsa_m2=1.8))


def test_per_m2_without_bsa():
    msg = raises_naming("bsa_m2", convert_dose, 1.0, "mg/m2", "mg")
    assert "height_cm" in msg  # it says how to provide it
    raises_naming("bsa_m2", convert_dose, 1.0, "ug/m2", "mg", Covariates(weight_kg=70.0))  # height missing
    raises_naming("bsa_m2", convert_dose, 1.0, "ug/m2/day", "mg", Covariates(weight_kg=70.0), duration_day=1.0)


def test_rate_without_duration():
    msg = raises_naming("infusion_h", convert_dose, 100.0, "ug/day", "mg")
    assert "duration" in msg
    raises_naming("infusion_h", convert_dose, 100.0, "ug/day", "mg", duration_day=0.0)


def test_unknown_unit():
    msg = raises_naming("unit", convert_dose, 1.0, "grains", "mg")
    assert "grains" in msg and "mg/kg" in msg  # lists the allowed units
    raises_naming("unit", normalize_unit, 5)
    e = raises_naming("unit", convert_dose, 1.0, "mL", "mg", row=4)
    assert e.startswith("row 4")


def test_unknown_target_unit():
    raises_naming("target", convert_dose, 1.0, "mg", "g")


def test_nmol_without_molecular_weight():
    msg = raises_naming("unit", convert_dose, 5.0, "nmol", "mg")
    assert "molecular weight" in msg
    msg = raises_naming("mw", convert_dose, 5.0, "mg", "nmol")
    assert "molecular weight" in msg
    raises_naming("mw", mass_to_nmol, 1.0, 0.0)


@pytest.mark.parametrize("name, value", [("weight_kg", -70.0), ("height_cm", 0.0), ("bsa_m2", float("nan")),
                                         ("weight_kg", "70")])
def test_bad_covariates(name, value):
    raises_naming(name, Covariates, **{name: value})


def test_unknown_bsa_formula():
    msg = raises_naming("bsa_formula", Covariates, weight_kg=70.0, height_cm=170.0, bsa_formula="haycock")
    assert "mosteller" in msg
