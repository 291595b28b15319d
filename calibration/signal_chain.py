"""The typical patient's signal chain at a fit's MAP: from drug to trimers to recruited T cells to IL-6.

For one drug and regimen (default: teclistamab, its label step-up regimen with the label premedication), the
card's typical patient (no IIV) with the fit's values for that drug, printed at chosen days:

* ``conc``: serum drug (ug/mL); ``taa_occ``: fraction of the target antigen bound by drug; ``tpt``: trimers
  per T cell;
* ``S``: the activation signal, the share of the T-cell pool whose threshold lies below ``tpt``
  (:mod:`qsp.components.tcells`); ``engaged``: the share engaged so far; ``secreting``: the share in the
  secreting phase;
* ``drive``: the T-cell cytokine drive (pg/mL IL-6-equivalent, what the CRS layer reads); ``il6``: serum IL-6
  (pg/mL); ``dex``: the dexamethasone inhibition; ``tumour``: tumour cells (blood-equivalent scale); with the
  card's ``monocyte_priming``, ``prime``: the monocytes' priming state (0-1).

Per dose it also prints the rise of ``S`` the dose gives (its maximum in the dose's window less its value at
the dose) and the drive's peak: a dose recruits only the cells between the signal already reached and its
new maximum, so these bound the burst it can give.

    python calibration/signal_chain.py --fit calibration/fits/map
    QSP_MODELS_DIR=<cards> python calibration/signal_chain.py --fit <DIR>/fit --days 0,1,2,3,5,6,6.5,8,13
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from qsp.cards import list_cards, load_card
from qsp.drugrun import run_drug
from qsp.premedication import drug_doses

COLUMNS = (("conc", "conc_ug_per_ml", "8.3f"), ("taa_occ", "taa_occupancy", "7.3f"),
           ("tpt", "trimers_per_t_cell", "8.2f"), ("S", "t_signal", "6.3f"), ("engaged", "engaged_t_fraction", "7.3f"),
           ("secreting", "activated_t_fraction", "9.4f"), ("drive", "t_cytokine_drive", "7.3f"),
           ("il6", "il6_pg_per_ml", "7.2f"), ("dex", "dex_inhibition", "5.2f"), ("tumour", "tumour_cells", "8.1f"))
DEFAULT_DAYS = "0,0.5,1,2,2.99,3.5,4,5,6,6.5,7,8,9,10,13,14"


def drug_values(meta: dict, drug: str) -> dict:
    """The fit's values for ``drug`` without the IIV SDs (the typical patient)."""
    vals = meta["values"][drug]
    return {k: v for k, v in vals.items() if not k.startswith("OMEGA_") and k != "CRS_OMEGA"}


def per_dose_rise(t: np.ndarray, signal: np.ndarray, dose_t: list[float]) -> list[tuple[float, float, float]]:
    """Per dose: ``(value at the dose, maximum in its window [t_k, t_k+1), maximum less value)``."""
    out = []
    edges = list(dose_t) + [np.inf]
    for k in range(len(dose_t)):
        m = (t >= edges[k]) & (t < edges[k + 1])
        if not m.any():
            continue
        start = float(signal[np.flatnonzero(m)[0]])
        top = float(signal[m].max())
        out.append((start, top, top - start))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", default="calibration/fits/map", help="a fit folder (its params.json)")
    ap.add_argument("--drug", default="teclistamab", help="a drug of the fit (default teclistamab)")
    ap.add_argument("--regimen", default=None, help="a label regimen of the card (default: the card's default)")
    ap.add_argument("--days", default=DEFAULT_DAYS, help="model days to print (day 0 = first dose)")
    ap.add_argument("--horizon", type=float, default=16.0, help="days simulated (default 16)")
    a = ap.parse_args(argv)
    meta_file = Path(a.fit) / "params.json"
    if not meta_file.is_file():
        ap.error(f"--fit: {meta_file} not found")
    meta = json.loads(meta_file.read_text())
    if a.drug not in meta["values"]:
        ap.error(f"--drug: {a.drug!r} is not a drug of the fit; allowed: {', '.join(meta['values'])}")
    if a.drug not in list_cards():
        ap.error(f"--drug: no card {a.drug!r}")
    try:
        days = [float(x) for x in a.days.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--days: {a.days!r} must be comma-separated numbers")
    if not days or any(not 0 <= d <= a.horizon for d in days) or not a.horizon > 0:
        ap.error(f"--days must lie within 0..--horizon ({a.horizon:g})")
    card = load_card(a.drug)
    if a.regimen is not None and a.regimen not in card.label_regimens():
        ap.error(f"--regimen: {a.regimen!r} is not a label regimen of {a.drug}; "
                 f"allowed: {', '.join(card.label_regimens())}")
    reg = card.regimen(a.regimen, until_day=a.horizon + 1.0)
    run = run_drug(card, reg, days=a.horizon, premed="label", params=drug_values(meta, a.drug), parameters="prior")
    res = run.result
    t = np.asarray(res.times)
    columns = COLUMNS + ((("prime", "monocyte_priming", "6.3f"),) if "monocyte_priming" in res.outputs else ())
    out = {name: np.asarray(res.outputs[key]) for name, key, _ in columns}
    print(f"{a.drug}, {reg.name if hasattr(reg, 'name') else a.regimen or 'default regimen'}, label premedication; "
          f"typical patient at the MAP of {a.fit}")
    print(f"{'day':>6s} " + " ".join(f"{name:>{len(format(0.0, fmt))}s}" for name, _, fmt in columns))
    for d in days:
        i = int(np.argmin(np.abs(t - d)))
        print(f"{t[i]:6.2f} " + " ".join(format(out[name][i], fmt) for name, _, fmt in columns))
    dose_t = [d.time for d in drug_doses(run.regimen)]
    print("\nper dose (window to the next dose): S at the dose -> its maximum (rise); drive at the dose -> peak")
    for k, ((s0, s1, ds), (x0, x1, _)) in enumerate(zip(per_dose_rise(t, out["S"], dose_t),
                                                         per_dose_rise(t, out["drive"], dose_t)), start=1):
        print(f"  dose {k} (day {dose_t[k - 1]:.2f}): S {s0:.3f} -> {s1:.3f} (+{ds:.3f}); drive {x0:.3f} -> {x1:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
