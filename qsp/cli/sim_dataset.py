"""Dataset mode: ``qsp simulate --model pk-1cmt|pk-2cmt --dataset FILE --param ... --out DIR``.

Reads a NONMEM-style dataset (:mod:`qsp.io.nonmem`), simulates every ID in one batched call of
:func:`qsp.simulate.simulate` and returns ``predictions.csv`` (every input row, in input order, with
``CP``) and ``cp.png``; when the solver fails for some IDs, also ``failed.csv`` (ID, status, reason) and
the ``_failed`` line that makes the command exit with code 3.

The model's structural parameters must be given (CL and V, or CL, V1, Q, V2; KA when a dose goes into the
depot, CMT 1): a hidden default would make every prediction wrong without a word. F and ALAG default to
1 and 0, as in NONMEM.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..limits import check_limit, check_memory
from .simulate import SolveOptions

REQUIRED = {"pk-1cmt": ("CL", "V"), "pk-2cmt": ("CL", "V1", "Q", "V2")}

_N_GRID = 200
_MODELS: dict = {}


def _pk_model(name: str, time_unit: str):
    """One model object per (name, time unit), so that repeated calls in a process reuse the compiled solver."""
    from ..pkmodels import pk_model

    key = (name, time_unit)
    if key not in _MODELS:
        _MODELS[key] = pk_model(name, time_unit=time_unit)
    return _MODELS[key]


def simulate_dataset(model_name: str | None, dataset: Path | None, time_unit: str, params: dict[str, float],
                     opts: SolveOptions) -> dict[str, bytes]:
    """Validate everything, simulate all IDs in one batched call; return the output files' bytes."""
    from ..io.nonmem import read_nonmem
    from ..regimen import check_time_unit
    from ..simulate import STATUS_TEXT, simulate

    check_time_unit(time_unit)
    if dataset is None:
        raise InputError("--model needs --dataset FILE", field="--dataset")
    model = _pk_model(model_name, time_unit)
    ds_params = {k: v for k, v in params.items() if re.fullmatch(r"[RD]\d+", k)}
    mp = {k: v for k, v in params.items() if k not in ds_params}
    for k in ds_params:
        if int(k[1:]) not in model.cmt:
            raise InputError(f"{k}: compartment {k[1:]} is not one of the model's CMT numbers {sorted(model.cmt)}",
                             field="--param")
        if not ds_params[k] > 0:
            raise InputError(f"{k} must be positive, got {ds_params[k]}", field="--param")
    try:
        model_params = model.params(mp)  # names and domains checked before the dataset is read
    except InputError as e:
        raise InputError(str(e), field="--param") from None
    missing = [k for k in REQUIRED[model_name] if k not in mp]
    if missing:
        raise InputError(f"{model_name} needs {', '.join(missing)} (no hidden defaults): give --param "
                         + " ".join(f"{k}=VALUE" for k in missing), field="--param")
    if not dataset.exists():
        raise InputError(f"file not found: {dataset}", field="--dataset")
    ds = read_nonmem(dataset, model, time_unit=time_unit, params=ds_params)
    if "CP" in ds.raw.columns:
        raise InputError("the dataset already has a column named CP (the prediction column); rename it",
                         field="--dataset")
    if "KA" not in mp and any(d.route == "SC" for s in ds.subjects for d in s.regimen.doses):
        raise InputError(f"the dataset doses into CMT 1 (the depot): {model_name} needs --param KA=VALUE",
                         field="--param")

    # One batched call: per ID, the row times plus a plotting grid and both sides of every dose time.
    regs, tss, lefts, row_pos, grid_pos, dose_ts = [], [], [], [], [], []
    for s in ds.subjects:
        t_row = s.times
        t_lo = min(t_row.min(), min((d.time for d in s.regimen.doses), default=t_row.min()))
        t_hi = t_row.max()
        dts = np.array(sorted({d.time for d in s.regimen.expanded().doses if t_lo <= d.time <= t_hi and
                               not (d.reset and d.amount == 0)}), dtype=float)
        grid = np.linspace(t_lo, t_hi, _N_GRID) if t_hi > t_lo else np.array([t_lo])
        # both sides of each dose time draw the jumps; with many doses the grid alone is drawn (each output
        # time costs every integration segment a save: segments x outputs is the solve's work)
        jumps = dts if dts.size <= _N_GRID else dts[:0]
        t_all = np.concatenate([t_row, grid, jumps, jumps])
        l_all = np.concatenate([s.left, np.zeros(grid.size, bool), np.ones(jumps.size, bool),
                                np.zeros(jumps.size, bool)])
        # at equal times: left-limit points first, so the plotted curve jumps vertically at a bolus
        order = np.lexsort((~l_all, t_all))
        regs.append(s.regimen)
        tss.append(t_all[order])
        lefts.append(l_all[order])
        inv = np.empty(order.size, int)
        inv[order] = np.arange(order.size)
        row_pos.append(inv[: t_row.size])
        grid_pos.append(np.sort(inv[t_row.size:]))
        dose_ts.append(dts)
    n_max = max(t.size for t in tss)
    n_events = max(_events(r) for r in regs)
    check_limit("output_points", n_max, field="--dataset", hint="split the dataset")
    check_limit("segment_outputs", (2 * n_events + 1) * n_max, field="--dataset",
                hint="fewer observation rows or dose events per ID")
    check_memory(len(tss) * (n_max * 8.0 * (4 * len(model.state_names) + 8) + n_events * 400.0), field="--dataset",
                 hint="split the dataset into several files")
    ts = np.stack([np.concatenate([t, np.full(n_max - t.size, t[-1])]) for t in tss])
    left = np.stack([np.concatenate([lf, np.zeros(n_max - lf.size, bool)]) for lf in lefts])
    res = simulate(model, regs, ts, model_params, times_left=left, solver=opts.solver, rtol=opts.rtol,
                   atol=opts.atol, max_steps=opts.max_steps)
    cp = np.asarray(res.outputs["CP"], dtype=float)

    warnings, failed = [], []
    pred = np.full(len(ds.raw), np.nan)
    curves = []
    for j, s in enumerate(ds.subjects):
        st = int(res.status[j])
        c = cp[j].copy()
        if st != 0:
            failed.append((s.id, st, STATUS_TEXT.get(st, f"solver status {st}")))
            c[:] = np.nan
        pred[s.rows] = c[row_pos[j]]
        curves.append((s, ts[j][grid_pos[j]], c[grid_pos[j]], dose_ts[j]))

    table = ds.raw.copy()
    table["CP"] = ["." if not np.isfinite(v) else f"{v:.12g}" for v in pred]
    csv_bytes = table.to_csv(index=False, lineterminator="\n").encode()
    png = _plot_cp(curves, model, time_unit)
    files = {"predictions.csv": csv_bytes, "cp.png": png, "_warnings": warnings}
    if failed:
        lines = ["ID,status,reason"] + [f"{i},{st},{why}" for i, st, why in failed]
        files["failed.csv"] = ("\n".join(lines) + "\n").encode()
        ids = ", ".join(str(i) for i, _, _ in failed[:20]) + (" ..." if len(failed) > 20 else "")
        files["_failed"] = (f"the solver failed for {len(failed)} of {len(ds.subjects)} IDs ({ids}; see failed.csv); "
                            "their CP is written as '.'")
    return files


def _events(reg) -> int:
    return int(sum(d.addl + 1 for d in reg.doses))


def _plot_cp(curves, model, time_unit: str) -> bytes:
    import io

    from matplotlib.figure import Figure

    vname = "V" if model.name == "pk-1cmt" else "V1"
    fig = Figure(figsize=(11, 4.5), dpi=110, layout="constrained")
    ax_lin, ax_log = fig.subplots(1, 2)
    colors = [f"C{i % 10}" for i in range(len(curves))]
    any_pos = False
    for (s, t, c, dts), col in zip(curves, colors):
        lab = f"ID {s.id}"
        ax_lin.plot(t, c, color=col, lw=1.4, label=lab)
        pos = np.where(c > 0, c, np.nan)
        if np.any(np.isfinite(pos)):
            any_pos = True
            ax_log.plot(t, pos, color=col, lw=1.4, label=lab)
        obs = (s.evid == 0) & (s.mdv == 0) & np.isfinite(s.dv)
        if obs.any():
            ax_lin.plot(s.times[obs], s.dv[obs], "o", ms=4, mfc="none", color=col)
            dvp = s.dv[obs]
            ax_log.plot(s.times[obs][dvp > 0], dvp[dvp > 0], "o", ms=4, mfc="none", color=col)
        for ax in (ax_lin, ax_log):
            if dts.size:
                ax.plot(dts, np.full(dts.size, 0.0), "^", ms=7, color=col, clip_on=False,
                        transform=ax.get_xaxis_transform(), zorder=5)
    ax_lin.set_ylim(bottom=0)
    if any_pos:
        ax_log.set_yscale("log")
    else:
        ax_log.text(0.5, 0.5, "no positive CP", ha="center", va="center", transform=ax_log.transAxes)
    for ax, title in ((ax_lin, "linear scale"), (ax_log, "log scale")):
        ax.set_xlabel(f"time ({time_unit})")
        ax.set_ylabel(f"CP = central amount / {vname}\n(AMT units per volume unit)")
        ax.set_title(f"{model.name}: {title}  (\u25b2 doses, \u25cb DV)", fontsize=10)
        ax.grid(True, alpha=0.3)
    if len(curves) <= 12:
        ax_lin.legend(fontsize=8, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


