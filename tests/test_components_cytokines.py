"""The cytokine component's T-cell drive: secreting cells, and with ``tonic_secretion`` the engaged cells past their
secreting phase at the fraction F_TONIC; dexamethasone lowers both. With ``monocyte_priming`` the monocytes' IL-6
output grows with the priming state, and the drive does not."""

from __future__ import annotations

import pytest

from qsp.components.cytokines import Cytokines
from qsp.errors import InputError


def _drive(comp, t_act, t_des, dex=0.0, **p_over):
    p = {q.name: q.value for q in comp.params}
    p.update(p_over)
    y = {"T_act": t_act, "T_des": t_des, "mono": 0.0, "DEX": dex}
    d = {"target_cells_total": 500.0}
    return comp.derive(0.0, y, p, d)["t_cytokine_drive"], p


def test_tonic_secretion_adds_the_engaged_cells_at_f_tonic():
    plain, tonic = Cytokines(), Cytokines(tonic=True)
    assert "F_TONIC" not in {q.name for q in plain.params}
    x_plain, p = _drive(plain, 20.0, 300.0)
    contact = 500.0 / (500.0 + p["KTGT50"])
    assert x_plain == pytest.approx(p["KIL6"] * 20.0 * contact / p["KEL_IL6"])  # T_des makes no cytokines
    x_tonic, pt = _drive(tonic, 20.0, 300.0, F_TONIC=0.04)
    assert x_tonic == pytest.approx(pt["KIL6"] * (20.0 + 0.04 * 300.0) * contact / pt["KEL_IL6"])
    # dexamethasone lowers the tonic part by the same factor as the burst
    x_dex, _ = _drive(tonic, 20.0, 300.0, dex=8.0, F_TONIC=0.04)
    i_dex = pt["DEX_IMAX"] * 8.0 / (pt["DEX_IC50"] + 8.0)
    assert x_dex == pytest.approx(x_tonic * (1.0 - i_dex))


def test_tonic_secretion_must_be_a_boolean():
    with pytest.raises(InputError, match="tonic_secretion must be true or false") as e:
        Cytokines(tonic="yes")
    assert e.value.field == "tonic_secretion"


def test_monocyte_priming_raises_the_monocytes_il6_but_not_the_drive():
    """With ``monocyte_priming`` the activated monocytes' IL-6 is scaled by 1 + PRIME_GAIN mono_prime; the T-cell
    drive X (which the CRS layer reads) is unchanged; mono_prime builds at KPRIME X and decays at KPRIME_OFF."""
    plain, primed = Cytokines(), Cytokines(priming=True)
    assert "mono_prime" not in {s.name for s in plain.states}
    assert {"KPRIME", "KPRIME_OFF", "PRIME_GAIN"}.isdisjoint({q.name for q in plain.params})
    assert "mono_prime" in {s.name for s in primed.states}
    p = {q.name: q.value for q in primed.params}
    p.update(PRIME_GAIN=3.0, KPRIME=0.2, KPRIME_OFF=0.1)
    d0 = {"target_cells_total": 500.0}
    y = {"T_act": 20.0, "T_des": 0.0, "mono": 0.01, "DEX": 0.0, "mono_prime": 0.4}
    d_pl = plain.derive(0.0, y, {q.name: q.value for q in plain.params}, d0)
    d_pr = primed.derive(0.0, y, p, d0)
    x = d_pr["t_cytokine_drive"]
    assert x == pytest.approx(d_pl["t_cytokine_drive"])
    assert d_pl["il6"] == pytest.approx(p["IL6_0"] + x + p["IL6_MONO_MAX"] * 0.01)
    assert d_pr["il6"] == pytest.approx(p["IL6_0"] + x + p["IL6_MONO_MAX"] * (1.0 + 3.0 * 0.4) * 0.01)
    rates = primed.rates(0.0, y, p, {**d0, **d_pr})
    assert rates["mono_prime"] == pytest.approx(0.2 * x * 0.6 - 0.1 * 0.4)
    assert "mono_prime" not in plain.rates(0.0, y, {q.name: q.value for q in plain.params}, {**d0, **d_pl})


def test_monocyte_priming_must_be_a_boolean():
    with pytest.raises(InputError, match="monocyte_priming must be true or false") as e:
        Cytokines(priming=1)
    assert e.value.field == "monocyte_priming"
