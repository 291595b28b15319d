"""Copies of the drug cards with structure options switched on, for fits of another structure.

The experiments of calibration/README.md fit the model with structure options the shipped cards do not use. This
script writes those cards to a folder (``QSP_MODELS_DIR=<folder>`` then makes every command use them):

* ``--stages-sc N``: ``secretion_stages = N`` in the subcutaneous cards (teclistamab, elranatamab, epcoritamab,
  talquetamab; a narrower secretion delay, :mod:`qsp.components.tcells`);
* ``--tonic``: ``tonic_secretion = true`` in every card (:mod:`qsp.components.cytokines`);
* ``--priming``: ``monocyte_priming = true`` in every card (:mod:`qsp.components.cytokines`);
* ``--sbcma-iiv``: the published between-patient SD of log baseline soluble BCMA, 1.346 (Hibma et al. Clin
  Pharmacokinet 2026;65:1173, Table 2, elranatamab population PK), as the ``STAA0`` omega of the BCMA cards
  (teclistamab, elranatamab), in place of teclistamab's assumed 0.6.

Each written card is loaded back with the card validator before the script ends; nothing is written when an
option is invalid or the folder is not empty.

    python calibration/variant_cards.py /tmp/cards --stages-sc 6 --tonic --sbcma-iiv --priming
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SC_CARDS = ("teclistamab", "elranatamab", "epcoritamab", "talquetamab")
BCMA_CARDS = ("teclistamab", "elranatamab")
SBCMA_IIV = 1.346
SBCMA_SOURCE = ("Hibma et al. Clin Pharmacokinet 2026;65:1173, Table 2 (elranatamab population PK, 321 r/r myeloma "
                "patients): between-patient SD of log baseline sBCMA")


def variant_text(drug: str, text: str, *, stages_sc: int | None, tonic: bool, priming: bool,
                 sbcma_iiv: bool) -> str:
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
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder to write the cards to (created; must be empty if it exists)")
    ap.add_argument("--stages-sc", type=int, default=None, help="secretion_stages of the SC cards (1-20)")
    ap.add_argument("--tonic", action="store_true", help="tonic_secretion = true in every card")
    ap.add_argument("--priming", action="store_true", help="monocyte_priming = true in every card")
    ap.add_argument("--sbcma-iiv", action="store_true", help=f"STAA0 omega {SBCMA_IIV} in the BCMA cards")
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
                                  sbcma_iiv=a.sbcma_iiv) for p in cards}
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
