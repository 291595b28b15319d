"""The README's calibration table from a fit's targets.csv: target, observed, predicted median, 90% interval,
within tolerance (at the MAP), plus a per-kind summary line.

Usage::

    python calibration/targets_table.py calibration/fits/map/targets.csv [--heldout calibration/fits/loo_x/heldout.csv]

Time-course rows are many (hundreds of points); they are summarised per series (fraction of points within
the tolerance) instead of listed one by one, so the table stays readable. Nothing is rounded away that the
``within`` column depends on: it is computed by the fit (``qsp.calibrate.fit._within``), not here.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd


def _fmt(v) -> str:
    if pd.isna(v):
        return ""
    return f"{v:.3g}"


def table(tab: pd.DataFrame, at: str = "median") -> str:
    """``at='map'`` shows the prediction at the MAP (and no interval) instead of the Laplace-draw median."""
    head = "predicted median | 90% interval" if at == "median" else "predicted at the MAP | 90% interval"
    lines = [f"| target | observed | {head} | within |", "|---|---|---|---|---|"]
    point = tab[tab.kind != "timecourse"] if "kind" in tab else tab
    for r in point.itertuples(index=False):
        unit = "%" if r.kind == "crs_incidence" else getattr(r, "unit", "")
        pred = r.predicted_median if at == "median" else r.predicted_map
        band = f"{_fmt(r.predicted_p05)}-{_fmt(r.predicted_p95)}" if at == "median" else "(not shown)"
        name = r.target if getattr(r, "in_fit", True) in (True, "True", 1) else f"{r.target} (not fitted: grading)"
        lines.append(f"| {name} | {_fmt(r.observed)} {unit} | {_fmt(pred)} | {band} | "
                     f"{'yes' if r.within else 'no'} |")
    tc = tab[tab.kind == "timecourse"] if "kind" in tab else tab.iloc[:0]
    for name, g in tc.groupby("target", sort=False):
        lines.append(f"| {name} ({len(g)} points) | time course | | | "
                     f"{100 * g.within.mean():.0f}% of points |")
    return "\n".join(lines)


def il6_peaks(tab: pd.DataFrame, at: str = "median") -> pd.DataFrame:
    """The issue's IL-6 peak check for mean/median IL-6 series: per dose window, the observed peak (largest
    data point) against the predicted median at the data's time points: within 1.5-fold and 1 day."""
    from qsp.calibrate.likelihood import _study_regimen
    from qsp.calibrate.targets import load_targets
    from qsp.cards import load_card
    from qsp.premedication import drug_doses

    studies = load_targets().studies.set_index("study_id")
    rows = []
    col = "predicted_median" if at == "median" else "predicted_map"
    tc = tab[(tab.kind == "timecourse") & (tab.unit == "il6_pg_per_ml")]
    for (sid, name), g in tc.groupby(["study_id", "target"], sort=False):
        if "individual" in name or g.time_day.isna().any():
            continue
        st = studies.loc[sid]
        doses = [d.time for d in drug_doses(_study_regimen(load_card(st.drug), st.regimen, g.time_day.max()))]
        edges = list(doses) + [float("inf")]
        for k in range(len(doses)):
            w = g[(g.time_day >= edges[k]) & (g.time_day < edges[k + 1])]
            if len(w) < 3:
                continue
            io, ip = w.observed.idxmax(), w[col].idxmax()
            fold = max(w[col][ip] / w.observed[io], w.observed[io] / w[col][ip]) if w[col][ip] > 0 else float("inf")
            dt = abs(w.time_day[ip] - w.time_day[io])
            rows.append({"target": f"{name}: peak after dose {k + 1}", "observed": w.observed[io],
                         "observed_day": w.time_day[io], "predicted_median": w[col][ip],
                         "predicted_day": w.time_day[ip], "fold": fold, "within": bool(fold <= 1.5 and dt <= 1.0)})
    return pd.DataFrame(rows)


PK_UNITS = ("conc_ug_per_ml", "tmax_h", "cmax_ug_per_ml", "ctrough_ug_per_ml", "terminal_half_life_day",
            "accumulation_ratio_cmax", "accumulation_ratio_auc_tau", "cv_pct")


def summary(tab: pd.DataFrame) -> str:
    """Targets within tolerance per kind, over the fitted rows; rows predicted but not fitted (a CRS count under
    another grading system) are counted apart."""
    out = []
    fitted = tab["in_fit"].astype(str) == "True" if "in_fit" in tab else pd.Series(True, index=tab.index)
    for kind, g in tab[fitted].groupby("kind", sort=False):
        out.append(f"{kind}: {int(g.within.sum())}/{len(g)} within tolerance")
    if (~fitted).any():
        g = tab[~fitted]
        out.append(f"not fitted (other CRS grading): {int(g.within.sum())}/{len(g)} within")
    pk = tab[fitted & tab.unit.isin(PK_UNITS)]
    if len(pk):
        out.append(f"PK (concentration points and PK summaries): {int(pk.within.sum())}/{len(pk)} within "
                   f"({100 * pk.within.mean():.1f}%)")
    return "; ".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets")
    ap.add_argument("--heldout", default=None)
    ap.add_argument("--at", choices=("median", "map"), default="median",
                    help="predictions shown: median of the Laplace draws (default) or at the MAP")
    a = ap.parse_args(argv)
    try:
        tab = pd.read_csv(a.targets)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        ap.error(f"{a.targets}: cannot read it as a targets.csv ({e})")
    need = {"study_id", "kind", "target", "observed", "predicted_median", "within"}
    need |= {"predicted_map"} if a.at == "map" else {"predicted_p05", "predicted_p95"}
    missing = sorted(need - set(tab.columns))
    if missing:
        hint = (" (a calibration job's targets.csv holds the posterior predictive only: use --at median)"
                if missing == ["predicted_map"] else "")
        ap.error(f"{a.targets}: column(s) {', '.join(missing)} missing for --at {a.at}{hint}")
    print(table(tab, a.at))
    print()
    print(summary(tab))
    pk = il6_peaks(tab, a.at)
    if len(pk):
        print()
        what = "predicted median" if a.at == "median" else "predicted at the MAP"
        print(f"| IL-6 peak | observed (day) | {what} (day) | fold | within 1.5-fold and 1 day |")
        print("|---|---|---|---|---|")
        for r in pk.itertuples(index=False):
            print(f"| {r.target} | {r.observed:.3g} ({r.observed_day:.2f}) | {r.predicted_median:.3g} "
                  f"({r.predicted_day:.2f}) | {r.fold:.2f} | {'yes' if r.within else 'no'} |")
    if a.heldout:
        held = pd.read_csv(a.heldout)
        print()
        print(table(held.rename(columns={"predicted": "predicted_map"}).assign(
            predicted_median=held.get("predicted_median", held.get("predicted")),
            predicted_p05=held.get("predicted_p05"), predicted_p95=held.get("predicted_p95"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
