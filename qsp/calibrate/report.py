"""Fit figures: observed vs predicted (median and 90% interval) for every target of one drug, one PNG.

Panels: the CRS incidences (observed as points with their binomial 90% interval, predicted median and 90%
interval as bars), then one panel per time-course series (observed points, predicted median line and 90%
band; log scale), sized to be read on a slide.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd


def plot_fit(targets: pd.DataFrame, drug: str) -> bytes:
    """PNG bytes of the fit figure for ``drug`` (rows of :func:`qsp.calibrate.fit.run_map`'s target table)."""
    from matplotlib.figure import Figure

    crs = targets[targets.kind == "crs_incidence"]
    series = [(k, g.sort_values("time_day")) for k, g in targets[targets.kind == "timecourse"].groupby("target",
                                                                                                       sort=False)]
    n_panels = (1 if len(crs) else 0) + len(series)
    cols = min(3, max(n_panels, 1))
    rows = math.ceil(max(n_panels, 1) / cols)
    fig = Figure(figsize=(5.2 * cols, 4.0 * rows), dpi=100, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    i = 0
    if len(crs):
        ax = axes[i]
        i += 1
        x = np.arange(len(crs))
        ax.errorbar(x + 0.12, crs.predicted_median, yerr=[crs.predicted_median - crs.predicted_p05,
                                                          crs.predicted_p95 - crs.predicted_median],
                    fmt="s", color="C0", label="model median, 90% interval")
        ax.plot(x - 0.12, crs.observed, "o", color="k", label="observed")
        ax.set_xticks(x)
        ax.set_xticklabels([t.split(" ", 1)[1].replace(" CRS", "\nCRS") for t in crs.target], fontsize=7,
                           rotation=30, ha="right")
        ax.set_ylabel("CRS incidence (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{drug}: CRS", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for name, g in series:
        ax = axes[i]
        i += 1
        t = g.time_day.to_numpy()
        if g.target.iloc[0].find("individual_peak") >= 0:
            q = (np.arange(len(g)) + 0.5) / len(g)
            ax.plot(np.sort(g.observed), q, "o", color="k", ms=3, label="observed peaks")
            ax.plot(np.sort(g.predicted_median), q, "-", color="C0", label="model (median)")
            ax.fill_betweenx(q, np.sort(g.predicted_p05), np.sort(g.predicted_p95), color="C0", alpha=0.25)
            ax.set_xscale("log")
            ax.set_xlabel(g.unit.iloc[0])
            ax.set_ylabel("cumulative fraction")
        else:
            ax.fill_between(t, g.predicted_p05, g.predicted_p95, color="C0", alpha=0.25, label="model 90% interval")
            ax.plot(t, g.predicted_median, "-", color="C0", label="model median")
            ax.plot(t, g.observed, "o", color="k", ms=3, label="observed")
            pos = np.concatenate([g.observed.to_numpy(), g.predicted_p05.to_numpy()])
            if np.all(pos > 0):
                ax.set_yscale("log")
            ax.set_xlabel("day (0 = first dose)")
            ax.set_ylabel(g.unit.iloc[0])
        ax.set_title(name, fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[i:]:
        ax.set_visible(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


__all__ = ["plot_fit"]
