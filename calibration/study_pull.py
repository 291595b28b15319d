"""Which studies pull which parameters: each study's -log likelihood and its gradient at a fit's MAP (and at
other points), so a joint fit that walks away from one drug's regime can be traced to the data that move it.

Usage (from the repository root; the cards of the fit, e.g. ``QSP_MODELS_DIR=<cards>``)::

    python calibration/study_pull.py --fit <FIT> [--at <FIT2>[,<FIT3>...]] [--params KDEACT,HILL,...]
                                     [--leave-out DRUG:KIND] [--out pull.csv]

The problem is the fit's own (drugs, parameters, deviations, virtual patients, seed and targets from its
``params.json``; ``--leave-out`` as the fit had it). The points: the fit's MAP (``map``) and, for each ``--at``
folder, that fit's MAP laid over it by parameter name (:func:`overlay`: a drug it covers takes its values,
deviations it lacks set to 0; other names keep the first fit's value; a warm-start folder of ``fit_map.py
--init`` with only ``names`` and ``x`` will do). For each
point and study (and the prior): ``-log L_s`` and ``d(-log L_s)/dz_P`` for each parameter ``P`` asked, on its
unconstrained scale ``z`` (log for positive, logit for fractions; class parameters by name, or any full name
such as ``dev:tebentafusp:HILL``). A positive gradient means that raising ``P`` costs that study likelihood:
the study pulls ``P`` down. At a MAP the study gradients and the prior's sum to about zero.

Writes the table as CSV (``--out``, default ``<FIT>/study_pull.csv``; columns point, study, neg_log_term,
d_<name>...) and prints it. One compiled program per study (as the fit: loaded from the compilation cache
when the fit ran on this machine), one evaluation per point.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QSP_COMPILE_CACHE", str(Path(__file__).resolve().parent / ".jax_cache"))
os.environ.setdefault("EQX_ON_ERROR", "nan")


def _fit_meta(ap, folder: str, full: bool = True) -> dict:
    path = Path(folder) / "params.json"
    if not path.is_file():
        ap.error(f"{folder}: not a fit folder (no params.json)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        ap.error(f"{path}: not JSON ({e})")
    keys = ("names", "x")
    if full:
        keys += ("drugs", "class_params", "drug_params", "deviations", "patients", "seed")
    for key in keys:
        if key not in meta:
            ap.error(f"{path}: field {key!r} missing (not a fit_map.py fit)")
    names, x = meta["names"], meta["x"]
    if not (isinstance(names, list) and isinstance(x, list) and all(isinstance(n, str) for n in names)):
        ap.error(f"{path}: 'names' must be a list of strings and 'x' a list of numbers")
    if len(names) != len(x):
        ap.error(f"{path}: {len(names)} names but {len(x)} values")
    bad = [n for n, v in zip(names, x) if isinstance(v, bool) or not isinstance(v, (int, float))
           or not math.isfinite(v)]
    if bad:
        ap.error(f"{path}: 'x' must hold finite numbers; not for {', '.join(bad[:5])}")
    return meta


def overlay(names: list, x_first, other: dict) -> tuple[list, list, list]:
    """The first fit's point with another fit's values laid over it by name: ``(x, used, ignored)``.

    A drug the other fit covers takes that fit's values for the drug: its deviations the other fit lacks are set
    to 0 (there the drug's value was the class value), so the drug's class + deviation is the other fit's. A drug
    it does not cover keeps the first fit's deviations (on the other fit's class values). Names of the other
    fit that this fit lacks are ignored."""
    pos = {n: i for i, n in enumerate(names)}
    x = list(map(float, x_first))
    theirs = dict(zip(other["names"], other["x"]))
    drugs = set(other.get("drugs") or {n.split(":")[1] for n in theirs if n.count(":") == 2})
    used = []
    for n in names:
        if n in theirs:
            x[pos[n]] = float(theirs[n])
            used.append(n)
        elif n.startswith("dev:") and n.split(":")[1] in drugs:
            x[pos[n]] = 0.0
            used.append(n)
    return x, used, sorted(n for n in theirs if n not in pos)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", required=True, help="fit folder (params.json) whose problem and MAP are used")
    ap.add_argument("--at", default="", help="comma-separated fit folders: their MAPs as further points")
    ap.add_argument("--params", default="",
                    help="parameters to report, class parameters by name or full names (default: every class "
                         "parameter of the fit)")
    ap.add_argument("--leave-out", default="", help="DRUG:KIND held out of the fit (as fit_map.py --leave-out)")
    ap.add_argument("--out", default=None, help="CSV to write, or a folder to write study_pull.csv in (default <FIT>/study_pull.csv)")
    a = ap.parse_args(argv)
    meta = _fit_meta(ap, a.fit)
    folders = [s.strip() for s in a.at.split(",") if s.strip()]
    if len(set(folders)) != len(folders):
        ap.error("--at: a folder is named twice")
    others = [(f, _fit_meta(ap, f, full=False)) for f in folders]
    asked = [p.strip() for p in a.params.split(",") if p.strip()] or list(meta["class_params"])
    cols = [p if ":" in p else f"class:{p}" for p in asked]
    unknown = [p for p, c in zip(asked, cols) if c not in meta["names"]]
    if unknown:
        ap.error(f"--params: {', '.join(unknown)} not in the fit; allowed: {', '.join(meta['class_params'])} "
                 "or a full name from its params.json names")
    out = Path(a.out) if a.out else Path(a.fit) / "study_pull.csv"
    if out.is_dir():  # a folder: the table goes into it under its default name
        out = out / "study_pull.csv"
    if not out.parent.is_dir():
        ap.error(f"--out: folder {out.parent} does not exist")
    points = [("map", list(map(float, meta["x"])))]
    for folder, m in others:
        x, used, ignored = overlay(meta["names"], meta["x"], m)
        if not used:
            ap.error(f"--at {folder}: shares no parameter with the fit")
        print(f"{folder}: {len(used)} of {len(meta['names'])} values from it, the rest from the fit"
              + (f"; not in the fit, ignored: {', '.join(ignored[:5])}{' ...' if len(ignored) > 5 else ''}"
                 if ignored else ""), flush=True)
        points.append((folder, x))

    import numpy as np
    import pandas as pd

    from qsp.calibrate.fit import structure_mismatch
    from qsp.calibrate.likelihood import build_problem
    from qsp.calibrate.objective import SplitObjective
    from qsp.calibrate.space import ParameterSpace
    from qsp.calibrate.targets import load_targets
    from qsp.cards import load_card
    from qsp.errors import InputError

    try:
        space = ParameterSpace({d: load_card(d).model() for d in meta["drugs"]},
                               class_params=tuple(meta["class_params"]), drug_params=tuple(meta["drug_params"]),
                               deviations=meta["deviations"])
    except InputError as e:
        ap.error(f"--fit: {e}")
    if space.names() != meta["names"]:
        ap.error("--fit: the fit's parameter names do not match the space rebuilt from its params.json "
                 "(cards or code changed)")
    why = structure_mismatch(space, meta)
    if why:
        ap.error(f"--fit: {why}")
    try:
        targets = load_targets(meta.get("targets"))
    except (InputError, OSError) as e:
        ap.error(f"--fit: its targets ({meta.get('targets') or 'data/targets'}): {e}")
    if a.leave_out:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from fit_map import _leave_out

        targets = _leave_out(targets, a.leave_out)
    t0 = time.time()
    problem = build_problem(space, targets, patients=meta["patients"], seed=meta["seed"],
                            stratified=bool(meta.get("stratified", False)))
    obj = SplitObjective(problem)
    obj.compile(progress=lambda sid, s: print(f"compiled {sid} in {s:.0f} s ({time.time() - t0:.0f} s)", flush=True))
    idx = [meta["names"].index(c) for c in cols]
    rows = []
    for label, x in points:
        terms = obj.study_terms_and_grads(np.asarray(x, float))
        for sid, (v, g) in terms.items():
            rows.append({"point": label, "study": sid, "neg_log_term": v,
                         **{f"d_{c}": float(g[i]) for c, i in zip(cols, idx)}})
        total = sum(v for v, _ in terms.values())
        print(f"{label}: -log posterior {total:.3f} ({time.time() - t0:.0f} s)", flush=True)
        recorded = meta.get("neg_log_posterior")
        off = isinstance(recorded, (int, float)) and abs(total - recorded) > 1e-6 * max(1.0, abs(recorded))
        if label == "map" and off:
            print(f"warning: the fit recorded {recorded:.3f} at its MAP: this is not the problem it fitted (cards, "
                  "code or --leave-out differ)", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(df.round(3).to_string(index=False))
    print(f"wrote {out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
