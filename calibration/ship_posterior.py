"""Ship a NUTS calibration job's posterior as the repository's default calibrated parameter set.

    python calibration/ship_posterior.py calibration/results/joint_crs_nuts/params.toml \
        --out data/calibrated/tce_posterior.json

Reads the job's ``params.toml`` (format ``qsp-calibrated/1``, written by :mod:`qsp.jobs`), checks it with the
loader that ``qsp simulate`` uses (:func:`qsp.paramsets.parse_calibrated`: lengths, covariance, ``values`` =
``T^-1(mean)``, draws), and writes the same document as JSON (parsing a 1.4 MB TOML file at every start of the
CLI cost ~0.33 s; JSON ~0.05 s), atomically (temp file + rename). Nothing is changed in the numbers: the MAP of the
mechanism, the posterior means and draws of the sampled parameters, as the job wrote them.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

from qsp.jobs.store import atomic_write_bytes
from qsp.paramsets import parse_calibrated


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params", type=Path, help="a NUTS job's params.toml")
    ap.add_argument("--out", type=Path, default=Path("data/calibrated/tce_posterior.json"))
    a = ap.parse_args(argv)
    obj = tomllib.loads(a.params.read_text())
    cf = parse_calibrated(obj, str(a.params))
    if cf.class_section.draws is None:
        raise SystemExit(f"error: {a.params}: no posterior draws (a MAP job's file; ship data/calibrated/tce_map.json "
                         "for a MAP fit)")
    obj["fit"]["shipped_from"] = str(a.params)
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n"
    atomic_write_bytes(a.out, text.encode("utf-8"))  # temp file + fsync + rename, mode 0644
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.1f} MB): {len(cf.class_section.draws)} posterior draws")
    return a.out


if __name__ == "__main__":
    main()
