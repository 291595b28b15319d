"""The README's step-up optimizer results: `qsp optimize` on the calibrated model for four drugs, then one table.

Run: ``python docs/optimizer_results.py [--drugs teclistamab,elranatamab,epcoritamab,mosunetuzumab]
[--uncertainty 20] [--max-steps 4] [--out docs/optimize]`` (runs each drug's ``qsp optimize`` as a subprocess,
one after the other, and times it; about 10-25 min per drug on 2 CPU cores).

For each drug it writes ``<out>/<drug>/`` (every file of ``qsp optimize``) and, into ``<out>/results.md``, the
label regimen next to the best regimen that reaches the treatment dose no later than the label (fresh virtual
patients, seed + 1; intervals: 5th-95th percentile over the parameter draws of the calibrated fit): per-dose
P(CRS >= 2) of the step-up phase, P(CRS >= 2) over the step-up, inpatient days (a dose is inpatient when its
P(CRS >= 2) exceeds 5%) and exposure (cycle-1 AUC) as a ratio to the label's. The best regimen is also compared
with the label draw by draw (same parameter draw, same patients); where that paired difference's 90% interval
reaches zero, the label is reported as near-optimal.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DRUGS = ("teclistamab", "elranatamab", "epcoritamab", "mosunetuzumab")


def _fmt(v, lo=None, hi=None) -> str:
    if lo is None or pd.isna(lo):
        return f"{v:.1f}"
    return f"{v:.1f} ({lo:.1f}-{hi:.1f})"


def _per_dose(plan: pd.DataFrame, prefix: str, n: int) -> str:
    rows = plan.dropna(subset=[f"{prefix}crs_g2_pct"]).head(n)
    lo, hi = f"{prefix}crs_g2_pct_p05", f"{prefix}crs_g2_pct_p95"
    return "; ".join(f"{r[f'{prefix}dose']:.3g}: " + _fmt(r[f"{prefix}crs_g2_pct"], r.get(lo), r.get(hi))
                     for _, r in rows.iterrows())


def table_for(drug: str, folder: Path, seconds: float) -> str:
    tab = pd.read_csv(folder / "pareto.csv")
    comp = pd.read_csv(folder / "label_comparison.csv")
    lab = tab[tab.is_label].iloc[0]
    ok = tab[~tab.is_label & tab.meets_constraints & (tab.days_to_treatment_dose <= lab.days_to_treatment_dose + 1e-9)]
    best = ok.sort_values("crs_g2_stepup_pct").iloc[0] if len(ok) else lab
    n_lab = int((comp.label_label.fillna("").str.contains("step-up")).sum()) + 1
    n_best = int((comp.best_label.fillna("").str.contains("step-up")).sum()) + 1

    def line(name, r, plan_prefix, n):
        iv = lambda k: (r.get(f"{k}_p05"), r.get(f"{k}_p95"))  # noqa: E731
        return (f"| {name} | {r.description} | {r.days_to_treatment_dose:g} | {_per_dose(comp, plan_prefix, n)} | "
                f"{_fmt(r.crs_g2_stepup_pct, *iv('crs_g2_stepup_pct'))} | "
                f"{_fmt(r.inpatient_days, *iv('inpatient_days'))} | {_fmt(r.exposure_ratio, *iv('exposure_ratio'))} |")

    if best is lab:
        verdict = "no regimen meeting the constraints beats the label: the label is near-optimal"
    else:
        lo, hi = best.get("crs_g2_stepup_diff_vs_label_p05"), best.get("crs_g2_stepup_diff_vs_label_p95")
        paired = (f"; paired with the label draw by draw: {lo:+.1f} to {hi:+.1f} points (90%), lower in "
                  f"{100 * best.p_lower_crs_g2_than_label:.0f}% of draws" if lo is not None and not pd.isna(lo) else "")
        near = lo is not None and not pd.isna(lo) and hi >= 0
        verdict = (f"P(CRS >= 2) over the step-up {lab.crs_g2_stepup_pct:.1f}% -> {best.crs_g2_stepup_pct:.1f}%"
                   + paired + ("; within parameter uncertainty the label is near-optimal" if near else ""))
    return "\n".join([
        f"**{drug}** (`qsp optimize` {seconds / 60:.1f} min; {verdict})",
        "",
        "| | regimen | days to treatment dose | per-dose P(CRS >= 2) %, step-up phase | P(CRS >= 2) step-up % | "
        "inpatient days | exposure vs label |",
        "|---|---|---|---|---|---|---|",
        line("label", lab, "label_", n_lab),
        line("best", best, "best_", n_best),
        "",
    ])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drugs", default=",".join(DRUGS))
    ap.add_argument("--uncertainty", type=int, default=20)
    ap.add_argument("--max-steps", type=int, default=4)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "docs" / "optimize"))
    ap.add_argument("--table-only", action="store_true", help="rebuild results.md from the folders already there")
    a = ap.parse_args(argv)
    out = Path(a.out)
    parts = []
    for drug in [d.strip() for d in a.drugs.split(",") if d.strip()]:
        folder = out / drug
        timing = folder / "seconds.txt"
        if not a.table_only:
            cmd = [sys.executable, "-m", "qsp", "optimize", "--drug", drug, "--max-steps", str(a.max_steps),
                   "--uncertainty", str(a.uncertainty), "--patients", str(a.patients), "--out", str(folder)]
            print(" ".join(cmd[1:]), flush=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            timing.write_text(f"{time.perf_counter() - t0:.1f}\n")
        parts.append(table_for(drug, folder, float(timing.read_text())))
    (out / "results.md").write_text("\n".join(parts))
    print("\n".join(parts))


if __name__ == "__main__":
    main()
