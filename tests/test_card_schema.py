"""Model-card validation: every built-in card passes; each kind of broken card is refused naming the file,
table and key; one broken card does not break the library listing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from qsp.card_schema import CARD_UNITS, required_params, validate_card_text
from qsp.cards import card_library, load_card
from qsp.cli import app
from qsp.errors import InputError

from conftest import patch_card_text

ROOT = Path(__file__).resolve().parent.parent
TEC = (ROOT / "models" / "teclistamab.toml").read_text()


@pytest.mark.parametrize("path", sorted((ROOT / "models").glob("*.toml")), ids=lambda p: p.stem)
def test_builtin_cards_are_valid(path):
    raw = validate_card_text(path.read_text(), f"models/{path.name}", path.stem)
    for k in required_params(raw["structure"]):
        assert k in raw["params"]


def test_required_parameters_follow_the_structure():
    base = {"pk": "1cmt", "absorption": "IV", "time_varying_cl": False, "soluble_target": False}
    assert "Q" not in required_params(base) and "KA" not in required_params(base)
    full = {"pk": "2cmt", "absorption": "SC", "time_varying_cl": True, "soluble_target": True}
    assert {"Q", "V2", "KA", "F", "CLSS", "KCL", "STAA0", "KD_STAA"} <= set(required_params(full))
    assert set(required_params(full)) <= set(CARD_UNITS)


@pytest.mark.parametrize("patch, words", [
    ({"values": {"CL": "-0.19"}}, ["[params] CL", "> 0", "-0.19"]),
    ({"values": {"F": "7.0"}}, ["[params] F", "0 < x <= 1"]),
    ({"values": {"V1": '"three"'}}, ["[params] V1", "number", "three"]),
    ({"values": {"ADA_PROB": "1.5"}}, ["[params] ADA_PROB", "<= 1"]),
    ({"replace": ("mw_kda = ", "mw_kda = -1.0 #")}, ["[drug] mw_kda"]),
    ({"replace": ('absorption = "SC"', 'absorption = "oral"')}, ["[structure] absorption", "oral"]),
    ({"replace": ("time_varying_cl = true", 'time_varying_cl = "yes"')}, ["[structure] time_varying_cl"]),
    ({"replace": ("time_varying_cl = true", "time_varying_cl = true\nsecretion_stages = 0")},
     ["[structure] secretion_stages", "greater than or equal to 1"]),
    ({"replace": ("time_varying_cl = true", "time_varying_cl = true\nsecretion_stages = 2.5")},
     ["[structure] secretion_stages", "integer"]),
    ({"replace": ("time_varying_cl = true", 'time_varying_cl = true\ndex_holds_secretion = "yes"')},
     ["[structure] dex_holds_secretion", "boolean"]),
    ({"replace": ("time_varying_cl = true", 'time_varying_cl = true\ntonic_secretion = "yes"')},
     ["[structure] tonic_secretion", "boolean"]),
    ({"replace": ("time_varying_cl = true", 'time_varying_cl = true\nmonocyte_priming = 1')},
     ["[structure] monocyte_priming", "boolean"]),
    ({"replace": ("weight_kg = ", "weight_kg = 740.0 #")}, ["[covariates] weight_kg"]),
    ({"units": {"KD_CD3": "uM"}}, ["[params] KD_CD3", "nM", "uM"]),
    ({"omegas": {"CL": "-0.3"}}, ["[population]", "omega"]),
])
def test_broken_card_is_refused_naming_table_and_key(card_patch, patch, words):
    patch = dict(patch)
    old, new = patch.pop("replace", ("", ""))
    text = card_patch("teclistamab", **patch)
    if old:
        assert old in text
        text = text.replace(old, new, 1)
    with pytest.raises(InputError) as ei:
        validate_card_text(text, "x/teclistamab.toml", "teclistamab")
    msg = str(ei.value)
    assert msg.startswith("model card x/teclistamab.toml:"), msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_required_parameter():
    text = "\n".join(ln for ln in TEC.splitlines() if not ln.startswith("KD_CD3 ="))
    with pytest.raises(InputError, match=r"\[params\] KD_CD3: .*missing"):
        validate_card_text(text, "t.toml", "teclistamab")


def test_population_table_checked_at_load(tmp_path, monkeypatch):
    (tmp_path / "popbad.toml").write_text(TEC.replace('name = "teclistamab"', 'name = "popbad"')
                                          .replace('correlations = []', 'correlations = [["CL", "XX", 0.4]]'))
    monkeypatch.setenv("QSP_MODELS_DIR", str(tmp_path))
    with pytest.raises(InputError, match=r"popbad.toml: \[population\].*XX"):
        load_card("popbad")


def test_one_broken_card_does_not_break_the_listing(tmp_path, monkeypatch):
    (tmp_path / "broken.toml").write_text(patch_card_text(TEC, values={"CL": "-1"})
                                          .replace('name = "teclistamab"', 'name = "broken"'))
    monkeypatch.setenv("QSP_MODELS_DIR", str(tmp_path))
    lib = {s.name: s for s in card_library()}
    assert lib["broken"].card is None and "[params] CL" in lib["broken"].error
    assert all(s.card is not None for n, s in lib.items() if n != "broken") and len(lib) == 13
    r = CliRunner().invoke(app, ["drugs"])
    assert r.exit_code == 0
    row = [ln for ln in r.stdout.splitlines() if ln.startswith("broken")][0]
    assert "INVALID" in row and "[params] CL" in row
    assert sum(1 for ln in r.stdout.splitlines() if "built-in" in ln) == 12
    assert "1 invalid card(s): broken" in r.stderr


def test_structure_options_reach_the_model(card_patch, tmp_path):
    """A card's [structure] secretion_stages, dex_holds_secretion, tonic_secretion and monocyte_priming build the
    model they name; the tonic option declares F_TONIC, which the card's [params] may then set (and without the
    option may not); the priming option declares the state mono_prime and KPRIME, KPRIME_OFF, PRIME_GAIN."""
    from qsp.cards import load_card_file
    from qsp.tce import structure_options_of

    options = ("time_varying_cl = true\nsecretion_stages = 4\ndex_holds_secretion = true\ntonic_secretion = true\n"
               "monocyte_priming = true")
    text = card_patch("teclistamab").replace("time_varying_cl = true", options, 1)
    path = tmp_path / "teclistamab.toml"
    path.write_text(text)
    model = load_card_file(path).model()
    assert structure_options_of(model) == {"secretion_stages": 4, "dex_holds_secretion": True,
                                           "tonic_secretion": True, "monocyte_priming": True}
    assert "T_new4" in model.state_names and model.param_info["F_TONIC"].value == 0.05
    assert "mono_prime" in model.state_names and {"KPRIME", "KPRIME_OFF", "PRIME_GAIN"} <= set(model.param_info)
    shipped = load_card_file(ROOT / "models" / "teclistamab.toml").model()
    assert structure_options_of(shipped) == {"secretion_stages": 1, "dex_holds_secretion": False,
                                             "tonic_secretion": False, "monocyte_priming": False}
    assert "F_TONIC" not in shipped.param_info and "mono_prime" not in shipped.state_names
    assert "PRIME_GAIN" not in shipped.param_info
    with_value = text.replace("[params]\n", '[params]\nF_TONIC = { value = 0.1, unit = "1", description = "tonic '
                                             'output", source = "test" }\n', 1)
    path.write_text(with_value)
    assert load_card_file(path).model().param_info["F_TONIC"].value == 0.1
    path.write_text(card_patch("teclistamab").replace("[params]\n", '[params]\nF_TONIC = { value = 0.1, unit = "1", '
                                                      'description = "tonic output", source = "test" }\n', 1))
    with pytest.raises(InputError, match="F_TONIC"):
        load_card_file(path)
