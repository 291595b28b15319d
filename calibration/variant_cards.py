"""Copies of the drug cards with structure options switched on, for fits of another structure.

The experiments of calibration/README.md fit the model with structure options the shipped cards do not use. This
script writes those cards to a folder (``QSP_MODELS_DIR=<folder>`` then makes every command use them):

* ``--stages-sc N``: ``secretion_stages = N`` in the subcutaneous cards (teclistamab, elranatamab, epcoritamab,
  talquetamab; a narrower secretion delay, :mod:`qsp.components.tcells`);
* ``--tonic``: ``tonic_secretion = true`` in every card (:mod:`qsp.components.cytokines`);
* ``--priming``: ``monocyte_priming = true`` in every card (:mod:`qsp.components.cytokines`);
* ``--sbcma-iiv``: the published between-patient SD of log baseline soluble BCMA, 1.346 (Hibma et al. Clin
  Pharmacokinet 2026;65:1173, Table 2, elranatamab population PK), as the ``STAA0`` omega of the BCMA cards
  (teclistamab, elranatamab), in place of teclistamab's assumed 0.6;
* ``--sbcma-tumour-corr``: baseline soluble BCMA correlated with tumour burden between patients in the BCMA
  cards, a correlation of 0.73 between the logs of ``STAA0`` and ``TUMOR0`` (a Gaussian copula of the published
  Spearman rho 0.710 between serum BCMA and the bone-marrow plasma-cell share, Ghermezi et al. Haematologica
  2017;102:785: r = 2 sin(pi rho / 6)), added to the card's own correlations (or the defaults of
  :mod:`qsp.population` where the card sets none).

Each written card is loaded back with the card validator before the script ends; nothing is written when an
option is invalid or the folder is not empty.

    python calibration/variant_cards.py /tmp/cards --stages-sc 6 --tonic --sbcma-iiv --priming
    python calibration/variant_cards.py /tmp/cards --stages-sc 6 --tonic --sbcma-iiv --sbcma-tumour-corr
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SC_CARDS = ("teclistamab", "elranatamab", "epcoritamab", "talquetamab")
BCMA_CARDS = ("teclistamab", "elranatamab")
SBCMA_IIV = 1.346
SBCMA_SOURCE = ("Hibma et al. Clin Pharmacokinet 2026;65:1173, Table 2 (elranatamab population PK, 321 r/r myeloma "
                "patients): between-patient SD of log baseline sBCMA")
SPEARMAN_SBCMA_BURDEN = 0.710  # Ghermezi et al. Haematologica 2017;102:785: serum BCMA vs marrow plasma-cell share
SBCMA_TUMOUR_CORR = round(2.0 * math.sin(math.pi * SPEARMAN_SBCMA_BURDEN / 6.0), 2)  # 0.73 on the log scale
SBCMA_TUMOUR_SOURCE = ("TUMOR0-STAA0 {r}: Ghermezi et al. Haematologica 2017;102:785, serum BCMA vs the share of "
                       "plasma cells in bone-marrow biopsies, Spearman rho 0.710; as a correlation of the logs "
                       "(Gaussian copula) r = 2 sin(pi rho / 6)").format(r=SBCMA_TUMOUR_CORR)


def variant_text(drug: str, text: str, *, stages_sc: int | None, tonic: bool, priming: bool,
                 sbcma_iiv: bool, sbcma_tumour_corr: bool = False) -> str:
    """One card's text with the options added to its ``[structure]`` table (and its ``[population.omega]``)."""
    add = []
    if stages_sc is not None and drug in SC_CARDS:
        add.append(f"secretion_stages = {stages_sc}")
    if tonic:
        add.append("tonic_secretion = true")
    if priming:
        add.append("monocyte_priming = true")
    for line in add:
        key = line.split(" = ")[0]
        if re.search(rf"^{key}\s*=", text, re.M):
            raise SystemExit(f"error: models/{drug}.toml already sets [structure] {key}; start from cards without it")
    if add:
        if "[structure]\n" not in text:
            raise SystemExit(f"error: models/{drug}.toml has no [structure] table")
        text = text.replace("[structure]\n", "[structure]\n" + "\n".join(add) + "\n", 1)
    if sbcma_iiv and drug in BCMA_CARDS:
        entry = f'STAA0 = {{ value = {SBCMA_IIV}, source = "{SBCMA_SOURCE}" }}'
        head, sep, tail = text.partition("[population.omega]\n")
        if sep:
            table, rest_sep, rest = tail.partition("\n[")
            table = re.sub(r"^STAA0\s*=.*\n?", "", table, flags=re.M)
            text = head + sep + entry + "\n" + table + rest_sep + rest
        else:
            text = text.rstrip("\n") + "\n\n[population.omega]\n" + entry + "\n"
    if sbcma_tumour_corr and drug in BCMA_CARDS:
        text = with_sbcma_tumour_corr(drug, text)
    return text


def with_sbcma_tumour_corr(drug: str, text: str) -> str:
    """``text`` with the TUMOR0-STAA0 correlation added to the card's ``[population] correlations`` (the
    defaults of :data:`qsp.population.DEFAULT_CORRELATIONS` where the card sets none)."""
    from qsp.population import DEFAULT_CORRELATIONS

    pop = tomllib.loads(text).get("population", {})
    corr = [tuple(c) for c in pop["correlations"]] if "correlations" in pop else \
        [(a, b, r) for (a, b), r in DEFAULT_CORRELATIONS.items()]
    if any({a, b} == {"TUMOR0", "STAA0"} for a, b, _ in corr):
        raise SystemExit(f"error: models/{drug}.toml already correlates TUMOR0 and STAA0")
    corr.append(("TUMOR0", "STAA0", SBCMA_TUMOUR_CORR))
    line = "correlations = [" + ", ".join(f'["{a}", "{b}", {r}]' for a, b, r in corr) + "]"
    line = f"# {SBCMA_TUMOUR_SOURCE}\n{line}"
    # a comment that says the card has no correlation at all would now be wrong: keep only its PK meaning
    text = text.replace("# no covariances were reported (diagonal omega)\n",
                        "# no PK covariances were reported (diagonal PK omega)\n")
    if re.search(r"^correlations\s*=", text, re.M):
        if len(re.findall(r"^correlations\s*=.*\]\s*$", text, re.M)) != 1:
            raise SystemExit(f"error: models/{drug}.toml: its correlations must be one line to be edited")
        return re.sub(r"^correlations\s*=.*$", lambda _: line, text, count=1, flags=re.M)
    if "[population]\n" in text:
        return text.replace("[population]\n", "[population]\n" + line + "\n", 1)
    head, sep, tail = text.partition("[population.omega]\n")
    if sep:
        return head + "[population]\n" + line + "\n\n" + sep + tail
    return text.rstrip("\n") + "\n\n[population]\n" + line + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder to write the cards to (created; must be empty if it exists)")
    ap.add_argument("--stages-sc", type=int, default=None, help="secretion_stages of the SC cards (1-20)")
    ap.add_argument("--tonic", action="store_true", help="tonic_secretion = true in every card")
    ap.add_argument("--priming", action="store_true", help="monocyte_priming = true in every card")
    ap.add_argument("--sbcma-iiv", action="store_true", help=f"STAA0 omega {SBCMA_IIV} in the BCMA cards")
    ap.add_argument("--sbcma-tumour-corr", action="store_true",
                    help=f"TUMOR0-STAA0 correlation {SBCMA_TUMOUR_CORR} in the BCMA cards (Ghermezi et al. 2017)")
    ap.add_argument("--models", default=str(ROOT / "models"), help="the cards to start from (default: models/)")
    a = ap.parse_args(argv)
    from qsp.card_schema import MAX_SECRETION_STAGES

    if a.stages_sc is not None and not 1 <= a.stages_sc <= MAX_SECRETION_STAGES:
        ap.error(f"--stages-sc must be an integer 1-{MAX_SECRETION_STAGES}, got {a.stages_sc}")
    src, out = Path(a.models), Path(a.out)
    cards = sorted(src.glob("*.toml"))
    if not cards:
        ap.error(f"--models {src} holds no cards (*.toml)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        ap.error(f"{out} exists and is not an empty folder")
    texts = {p.stem: variant_text(p.stem, p.read_text(), stages_sc=a.stages_sc, tonic=a.tonic, priming=a.priming,
                                  sbcma_iiv=a.sbcma_iiv, sbcma_tumour_corr=a.sbcma_tumour_corr) for p in cards}
    out.mkdir(parents=True, exist_ok=True)
    for drug, text in texts.items():
        (out / f"{drug}.toml").write_text(text)
    from qsp.cards import load_card_file
    from qsp.errors import InputError

    try:
        for drug in texts:
            load_card_file(out / f"{drug}.toml")
    except InputError as e:
        for drug in texts:
            (out / f"{drug}.toml").unlink()
        raise SystemExit(f"error: a variant card does not validate ({e}); nothing written")
    print(f"wrote {len(texts)} cards to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
