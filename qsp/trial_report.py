"""Reports of a virtual trial (``qsp simulate --drug NAME --patients N``): tables, plot, summary.

Every function takes a :class:`qsp.trial.TrialResult` and returns text or bytes, so that the CLI can
write all files at once (or none). Output is reproducible: the same trial gives byte-identical files
(floats written with a fixed format, a PNG without a creation date or software version).

- :func:`crs_table` / ``crs_by_dose.csv``: per-dose CRS incidence by grade (:data:`CRS_COLUMNS` first).
- :func:`bands_csv` / ``population_timecourse.csv``: median and 5-95% band per output and day.
- :func:`patients_csv` / ``patients.csv``: one row per patient and dose, covariates included.
- :func:`plot_population` / ``population.png``: PK and IL-6 bands, CRS incidence per dose and grade,
  with the published per-dose incidence (``data/crs_by_dose.csv``) overlaid where it exists.
- :func:`summary` / ``summary.json``: the run's settings and headline numbers.

With parameter uncertainty (``--uncertainty K``, :mod:`qsp.uncertainty`), the table, the printed table and
the plot carry, next to each percentage, its 5th and 95th percentiles over the K parameter draws
(``crs_any_pct_p05``, ``crs_any_pct_p95``, ...).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

CRS_COLUMNS = ("dose_no", "day", "dose", "crs_any_pct", "crs_g2plus_pct", "crs_g3plus_pct", "median_onset_h")
CRS_EXTRA_COLUMNS = ("unit", "route", "il6_peak_median_pg_per_ml", "n_evaluable")
FLOAT_FORMAT = "%.6g"
GRADES = (("crs_any_pct", "any grade", "C1"), ("crs_g2plus_pct", "grade \u2265 2", "C3"),
          ("crs_g3plus_pct", "grade \u2265 3", "C4"))


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n").encode()


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------
def crs_table(trial, uncertainty=None) -> pd.DataFrame:
    """``trial.crs_by_dose()`` with :data:`CRS_COLUMNS` first, then the others (columns kept when empty).

    With ``uncertainty`` (a :class:`qsp.uncertainty.TrialUncertainty`), each percentage column is followed by
    its ``_p05`` and ``_p95`` columns (5th/95th percentiles over the parameter draws).
    """
    from .uncertainty import with_intervals

    df = trial.crs_by_dose()
    first = list(CRS_COLUMNS)
    rest = [c for c in df.columns if c not in first] or [c for c in CRS_EXTRA_COLUMNS]
    df = df.reindex(columns=first + rest)
    return with_intervals(df, uncertainty.intervals()) if uncertainty is not None else df


def crs_csv(trial, uncertainty=None) -> bytes:
    return _csv(crs_table(trial, uncertainty))


def bands_csv(trial) -> bytes:
    return _csv(trial.bands())


def patients_csv(trial) -> bytes:
    return _csv(trial.patients())


def n_failed(trial) -> int:
    return int(np.count_nonzero(np.asarray(trial.status) != 0))


def failure_counts(trial) -> dict[int, int]:
    """Failed patients per non-zero solver status."""
    st = np.asarray(trial.status)
    codes, counts = np.unique(st[st != 0], return_counts=True)
    return {int(c): int(k) for c, k in zip(codes, counts)}


def _fmt(x: float, spec: str) -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, spec)


def _pct_cell(r, col: str, with_interval: bool) -> str:
    v = _fmt(getattr(r, col), ".1f")
    if not with_interval:
        return v
    return f"{v} ({_fmt(getattr(r, col + '_p05'), '.1f')}-{_fmt(getattr(r, col + '_p95'), '.1f')})"


def format_crs_table(trial, uncertainty=None) -> str:
    """The printed per-dose table plus the overall-incidence and failed-solve lines.

    With ``uncertainty``, every percentage is printed as ``value (p05-p95)``: the 5th-95th percentiles over
    the parameter draws, stated in a line under the table.
    """
    df = crs_table(trial, uncertainty)
    iv = uncertainty is not None
    sfx = " (5-95%)" if iv else ""
    head = ("dose", "day", "dose amount", f"CRS any %{sfx}", f"grade>=2 %{sfx}", f"grade>=3 %{sfx}",
            "median onset h")
    rows = []
    for r in df.itertuples(index=False):
        rows.append((str(int(r.dose_no)), f"{r.day:g}", f"{r.dose:g} {r.unit}", _pct_cell(r, "crs_any_pct", iv),
                     _pct_cell(r, "crs_g2plus_pct", iv), _pct_cell(r, "crs_g3plus_pct", iv),
                     _fmt(r.median_onset_h, ".1f")))
    w = [max(len(x) for x in col) for col in zip(head, *rows)]
    align = ("<", "<", "<", ">", ">", ">", ">")

    def line(cells):
        return "  ".join(f"{c:{a}{n}}" for c, a, n in zip(cells, align, w)).rstrip()

    out = [line(head)] + [line(r) for r in rows]
    if not rows:
        out.append("(no evaluable patient)")
    tot = trial.any_crs_pct()
    n = len(trial.status)
    nf = n_failed(trial)
    days = trial.doses.day.to_numpy(float)
    span = f"dose on day {days[0]:g}" if len(days) == 1 else f"doses on days {days.min():g}-{days.max():g}"
    ov = uncertainty.overall_intervals() if iv else {}

    def tot_cell(key):
        v = _fmt(tot[key], ".1f") + "%"
        return f"{v} ({_fmt(ov[key][0], '.1f')}-{_fmt(ov[key][1], '.1f')})" if iv else v

    out.append(f"overall, at least one CRS event ({span}, follow-up to day {float(trial.times[-1]) + 1:g}): "
               f"any {tot_cell('p_any')}, grade>=2 {tot_cell('p_g2plus')}, "
               f"grade>=3 {tot_cell('p_g3plus')} of {n - nf} evaluable patients")
    if iv:
        out.append(f"intervals: {uncertainty.level[0]:g}th-{uncertainty.level[1]:g}th percentiles over "
                   f"{uncertainty.k} parameter sets drawn from the calibrated fit (same virtual patients)")
    out.append(f"failed solves: {nf} of {n} patients" + (" (excluded from the summaries)" if nf else ""))
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# published per-dose incidence
# --------------------------------------------------------------------------------------------------
def _data_file(name: str):
    """A curated data file from the package data, or None when the installation lacks it."""
    from .io.resources import data_root

    node = data_root().joinpath(name)
    return node if node.is_file() else None


def published_crs(drug: str, regimen: str | None = None) -> pd.DataFrame:
    """Published per-dose CRS incidence rows of ``drug`` (``data/crs_by_dose.csv``).

    With ``regimen`` (a label regimen name), only that regimen's rows; with ``None`` (a custom regimen)
    the rows of the drug's first listed regimen, as a reference. Empty when there are none.
    """
    path = _data_file("crs_by_dose.csv")
    cols = ["drug", "regimen", "dose_no", "crs_any_pct", "source"]
    if path is None:
        return pd.DataFrame(columns=cols)
    with path.open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh, dtype={"dose_no": str})
    df = df[df["drug"].str.strip().str.lower() == str(drug).strip().lower()]
    if regimen is not None:
        df = df[df["regimen"] == regimen]
    elif len(df):
        df = df[df["regimen"] == df["regimen"].iloc[0]]
    return df.reset_index(drop=True)


def _dose_position(dose_no: str) -> int | None:
    s = str(dose_no).strip()
    try:
        return int(s.rstrip("+"))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------------
def plot_population(trial, *, title: str = "", published: pd.DataFrame | None = None,
                    published_note: str = "", uncertainty=None) -> bytes:
    """``population.png``: drug concentration and IL-6 (median, 5-95% band, log y, dose markers) and the
    CRS incidence per dose by grade (grouped bars; with ``uncertainty``, 5-95% error bars over the parameter
    draws) with the published incidence as markers."""
    from matplotlib.figure import Figure

    bands = trial.bands()
    df = crs_table(trial, uncertainty)
    t = bands["time_day"].to_numpy(float)
    dose_days = trial.doses["day"].to_numpy(float) if len(trial.doses) else np.zeros(0)
    n = len(trial.status)
    nf = n_failed(trial)

    fig = Figure(figsize=(15, 4.8), dpi=100, layout="constrained")
    ax_pk, ax_il6, ax_crs = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.1]})
    for ax, name, label, col in ((ax_pk, "conc_ug_per_ml", "drug concentration (ug/mL)", "C0"),
                                 (ax_il6, "il6_pg_per_ml", "serum IL-6 (pg/mL)", "C3")):
        med = bands[f"{name}_median"].to_numpy(float)
        lo = bands[f"{name}_p05"].to_numpy(float)
        hi = bands[f"{name}_p95"].to_numpy(float)
        pos = lambda a: np.where(np.isfinite(a) & (a > 0), a, np.nan)  # noqa: E731 - log axis
        med, lo, hi = pos(med), pos(lo), pos(hi)
        if np.any(np.isfinite(hi)):
            ax.fill_between(t, np.where(np.isfinite(lo), lo, np.nanmin(hi)), hi, color=col, alpha=0.22, lw=0,
                            label="5-95% of patients")
            ax.plot(t, med, color=col, lw=1.8, label="median")
            ax.set_yscale("log")
            _plain_log_labels(ax)
        else:
            ax.text(0.5, 0.5, "no positive values", ha="center", va="center", transform=ax.transAxes)
        for d in dose_days:
            ax.axvline(d, color="0.55", lw=0.8, ls="--", zorder=0)
        if dose_days.size:
            ax.plot(dose_days, np.zeros(dose_days.size), "^", ms=7, color="k", clip_on=False,
                    transform=ax.get_xaxis_transform(), zorder=5, label="doses")
        ax.set_xlabel("day (day 1 = first dose)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="best")
    ax_pk.set_title("PK: median and 5-95% band", fontsize=10)
    ax_il6.set_title("IL-6: median and 5-95% band", fontsize=10)

    x = np.arange(len(df), dtype=float)
    width = 0.26
    for i, (col, lab, color) in enumerate(GRADES):
        vals = df[col].to_numpy(float) if len(df) else np.zeros(0)
        yerr = None
        if uncertainty is not None and len(df):
            lo, hi = df[col + "_p05"].to_numpy(float), df[col + "_p95"].to_numpy(float)
            yerr = np.nan_to_num(np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)]))
        ax_crs.bar(x + (i - 1) * width, vals, width, color=color, label=f"simulated, {lab}", yerr=yerr,
                   capsize=2 if yerr is not None else 0, error_kw={"elinewidth": 0.8})
    if len(df):
        ticks = [f"{int(r.dose_no)}\nday {r.day:g}\n{r.dose:g} {r.unit}" for r in df.itertuples(index=False)]
        ax_crs.set_xticks(x, ticks, fontsize=8)
    else:
        ax_crs.text(0.5, 0.5, "no evaluable patient", ha="center", va="center", transform=ax_crs.transAxes)
    if published is not None and len(published):
        pos_of = {int(d): j for j, d in enumerate(df["dose_no"].to_numpy())} if len(df) else {}
        px, py, plab = [], [], []
        for r in published.itertuples(index=False):
            k = _dose_position(r.dose_no)
            if k in pos_of:
                px.append(pos_of[k] - width)
                py.append(float(r.crs_any_pct))
                plab.append(str(r.dose_no))
        if px:
            sources = "; ".join(dict.fromkeys(str(s) for s in published["source"]))
            lab = f"published, any grade: {sources}" + (f" ({published_note})" if published_note else "")
            ax_crs.plot(px, py, "D", ms=8, mfc="white", mec="k", mew=1.5, ls="none", zorder=6,
                        label="\n".join(_wrap(lab, 60)))
            for xx, yy, dl in zip(px, py, plab):
                if dl.endswith("+"):
                    ax_crs.annotate(f"dose {dl}: first CRS\nat a later dose", (xx, yy), xytext=(0, 12),
                                    textcoords="offset points", fontsize=7, ha="center")
    shown = [c for g, _, _ in GRADES for c in (g, g + "_p95") if c in df.columns]
    top = np.nanmax(np.concatenate([df[c].to_numpy(float) for c in shown] +
                                   ([published["crs_any_pct"].to_numpy(float)] if published is not None and
                                    len(published) else []) + [np.array([1.0])]))
    ax_crs.set_ylim(0, min(100.0, 1.3 * top + 2))
    ax_crs.set_xlabel("dose")
    ax_crs.set_ylabel("patients with CRS after the dose (%)")
    ax_crs.set_title(f"CRS incidence per dose ({n - nf} evaluable patients)" +
                     (f"\nerror bars: 5-95% over {uncertainty.k} parameter draws" if uncertainty is not None else ""),
                     fontsize=10)
    ax_crs.grid(True, axis="y", alpha=0.3)
    ax_crs.legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _plain_log_labels(ax) -> None:
    """Log-axis labels as plain numbers (0.1, 2, 40); minor ticks labelled only on a short range."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.autoscale_view()
    lo, hi = ax.get_ylim()
    decades = np.log10(hi / lo) if lo > 0 and hi > lo else 99.0
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if decades < 1.5:
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if round(v / 10 ** np.floor(np.log10(v) + 1e-9)) in (2, 3, 5) else ""))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [text]


# --------------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------------
def _num(x: float) -> float | None:
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


def summary(trial, *, drug: str, regimen: str, patients: int, seed: int, days: float, premed: str,
            **extra) -> dict:
    """``summary.json`` content: settings and headline numbers (floats to 6 significant digits)."""
    from . import __version__

    tot = trial.any_crs_pct()
    out = {"drug": drug, "regimen": regimen, "patients": int(patients), "seed": int(seed), "days": _num(days),
           "premed": premed,
           "any_crs_pct": {"any": _num(tot["p_any"]), "g2plus": _num(tot["p_g2plus"]),
                           "g3plus": _num(tot["p_g3plus"])},
           "n_failed": n_failed(trial), "failed_by_status": {str(k): v for k, v in failure_counts(trial).items()},
           "failed_patient_ids": [int(i) for i in np.flatnonzero(np.asarray(trial.status) != 0)],
           "horizon_day": _num(float(trial.times[-1]) + 1.0), "n_doses": int(len(trial.doses))}
    out.update(extra)
    out["qsp_version"] = __version__
    return out


def summary_json(trial, **kw) -> bytes:
    return (json.dumps(summary(trial, **kw), indent=2) + "\n").encode()
