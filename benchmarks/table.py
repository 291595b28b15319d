"""Print the README's benchmark table (Markdown) from the JSON files ``benchmarks/run.py`` wrote.

    python benchmarks/table.py benchmarks/results/n1000.json benchmarks/results/n10000.json \
        benchmarks/results/n100000.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(paths) -> str:
    rows = [json.loads(Path(p).read_text()) for p in paths]
    rows.sort(key=lambda r: r["patients"])
    head = ("| patients | loop | engine ms/patient | compile s | compiled peer ms/patient (patients) | engine vs peer | "
            "SciPy LSODA ms/patient | speed-up vs SciPy | agreement (max rel. diff: daily IL-6 / conc / per-dose IL-6 "
            "peak) | gradient / forward | peak memory MB |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        ag = r.get("agreement")
        agree = "-" if not ag else (f"{ag['il6_daily_max_rel']:.1e} / {ag['conc_daily_max_rel']:.1e} / "
                                    f"{ag['il6_peak_max_rel']:.1e} ({r['scipy_patients']} patients)")
        g = r.get("gradient")
        grad = "-" if not g else f"{g['ratio']:.1f} ({g['patients']} patients)"
        peer = ("-" if r.get("compiled_peer_ms_per_patient") is None else
                f"{r['compiled_peer_ms_per_patient']:.3f} ({r['peer_patients']:,})")
        vs = "-" if r.get("speedup_vs_compiled_peer") is None else f"{r['speedup_vs_compiled_peer']:.2f}x"
        lines.append(f"| {r['patients']:,} | {r.get('loop', 'segments')} | {r['engine_ms_per_patient']:.3f} | "
                     f"{r['compile_s']:.1f} | {peer} | {vs} | "
                     f"{fmt(r.get('scipy_ms_per_patient'), '.1f')} | "
                     f"{fmt(r.get('speedup_vs_scipy'), '.0f')}{'x' if r.get('speedup_vs_scipy') else ''} | {agree} | "
                     f"{grad} | {r['peak_memory_mb']:.0f} |")
    lines.append("")
    lines.append(f"Machine: {rows[0]['machine']}; JAX CPU devices: {rows[0]['jax_devices']}. Scenario: "
                 f"{rows[0]['scenario']}.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1:]))
