"""Fit one drug's PK parameters and PK IIV to its PK targets, with the PD at the shipped calibrated values.

For a card whose PK has no published population-PK parameter table in this project's sources (talquetamab:
Gong et al. Clin Pharmacol Ther 2025 report the half-lives, not the table), the card's PK values were set by hand.
This script replaces such a hand fit with a MAP fit of the same calibration layer (:mod:`qsp.calibrate`) to the
drug's PK targets only (its summaries and concentration time courses in ``data/targets/``): the chosen PK
parameters are drug-level, the chosen omegas (``OMEGA_CL``, ``OMEGA_V1``, ``OMEGA_KA``: the between-patient
SDs of ``data/targets`` rows with statistic ``sd`` pin them) are fitted for this drug alone. Everything else (binding,
T cells, IL-6, CRS) stays at the shipped calibrated values, so target-mediated drug loss is that of the default
model. Nothing is written into the card: the script prints the fitted values and writes a fit folder
(``params.json``, ``targets.csv``, ...) for the card's ``source`` entries to cite.

    # talquetamab's PK and PK IIV (calibration/fits/pk_talquetamab; the card cites it):
    python calibration/fit_card_pk.py --drug talquetamab --iiv OMEGA_CL,OMEGA_V1,OMEGA_KA --patients 100 \\
        --max-steps 80 --draws 10 --out calibration/fits/pk_talquetamab
    # the IIV alone, the card's typical PK kept: --params '' (calibration/README.md)

Each parameter's prior is the card's (wide for ``assumed:`` values); each omega's prior is
:data:`qsp.population.OMEGA_PRIOR` around the default of :data:`qsp.population.DEFAULT_OMEGA` (the
class prior, as in every fit; the patients are drawn with the card's omegas, if it has any).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("EQX_ON_ERROR", "nan")

from qsp.calibrate.fit import run_map, write_fit  # noqa: E402
from qsp.calibrate.likelihood import build_problem  # noqa: E402
from qsp.calibrate.space import ParameterSpace  # noqa: E402
from qsp.calibrate.targets import load_targets  # noqa: E402
from qsp.cards import list_cards, load_card  # noqa: E402
from qsp.errors import InputError  # noqa: E402
from qsp.population import omega_target  # noqa: E402

PK_QUANTITIES = ("conc_ug_per_ml",)
NOT_PK_SUMMARIES = ("crs_onset_h", "ada_incidence_pct")


def pk_studies(targets, drug: str) -> list[str]:
    """The drug's studies that hold PK targets only (concentration time courses or PK summaries, no CRS rows)."""
    ids = set(targets.studies.study_id[targets.studies.drug == drug])
    crs_ids = set(targets.crs_incidence.study_id)
    tc = targets.timecourses
    sm = targets.summaries
    out = []
    for sid in sorted(ids - crs_ids):
        q = set(tc.quantity[tc.study_id == sid])
        kinds = set(sm.quantity[sm.study_id == sid])
        if (q or kinds) and q <= set(PK_QUANTITIES) and not (kinds & set(NOT_PK_SUMMARIES)):
            out.append(sid)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drug", required=True, help="the card whose PK is fitted")
    ap.add_argument("--params", default="CL,V1,KA,CLSS,KCL", help="PK parameters to fit (default %(default)s)")
    ap.add_argument("--iiv", default="OMEGA_CL,OMEGA_V1,OMEGA_KA",
                    help="PK IIV SDs to fit for this drug ('none' keeps the card's; default %(default)s)")
    ap.add_argument("--patients", type=int, default=200, help="virtual patients per study (default 200)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="fit folder to write")
    a = ap.parse_args(argv)
    if a.drug not in list_cards():
        sys.exit(f"error: --drug: no card named {a.drug!r}; cards: {', '.join(list_cards())}")
    card = load_card(a.drug)
    model = card.model()
    params = tuple(p.strip() for p in a.params.split(",") if p.strip())
    iiv = () if a.iiv.strip().lower() == "none" else tuple(p.strip() for p in a.iiv.split(",") if p.strip())
    bad = [p for p in params if p not in model.param_info]
    if bad:
        sys.exit(f"error: --params: {', '.join(bad)} not parameters of {a.drug}")
    bad = [p for p in iiv if omega_target(p) is None]
    if bad:
        sys.exit(f"error: --iiv: {', '.join(bad)} are not fittable IIV SDs (OMEGA_<P> of qsp.population.DEFAULT_OMEGA)")
    try:
        shipped = card.parameter_set("calibrated").model_values
    except InputError as e:
        sys.exit(f"error: the PD is held at the shipped calibrated values, and: {e}")
    model = model.with_defaults({k: v for k, v in shipped.items() if k in model.param_info})
    targets = load_targets()
    studies = pk_studies(targets, a.drug)
    if not studies:
        sys.exit(f"error: {a.drug} has no PK-only studies in data/targets/")
    space = ParameterSpace({a.drug: model}, class_params=iiv, drug_params=params)
    t0 = time.time()
    problem = build_problem(space, targets, patients=a.patients, seed=a.seed, studies=studies, stratified=True)
    print(f"studies: {', '.join(s.study_id for s in problem.studies)}; skipped: {problem.skipped}", flush=True)
    fit = run_map(problem, starts=1, max_steps=a.max_steps, draws=a.draws, hessian="forward", threads=a.threads,
                  progress=lambda i, n, v: print(f"MAP: -log posterior {v:.3f} ({time.time() - t0:.0f} s)",
                                                 flush=True))
    write_fit(fit, Path(a.out))
    vals = fit.values[a.drug]
    print(f"\n{a.drug}: fitted in {time.time() - t0:.0f} s; -log posterior {fit.map.value:.3f}")
    for k in params + iiv:
        prior = model.param_info[k].value if k in model.param_info else None
        print(f"  {k} = {vals[k]:.6g}" + (f"  (card {prior:.6g})" if prior is not None else ""))
    cols = ["target", "observed", "predicted_map", "predicted_p05", "predicted_p95", "within"]
    print(fit.targets[cols].to_string(index=False))
    print(f"within tolerance: {int(fit.targets.within.sum())} of {len(fit.targets)}; wrote {a.out}")


if __name__ == "__main__":
    main()
