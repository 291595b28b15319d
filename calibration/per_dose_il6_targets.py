"""Write a copy of the target tables with the MajesTEC-1 IL-6 mean taken per dose interval.

The shipped tables (``data/targets/``) compare the MajesTEC-1 IL-6 mean (Willemin et al. CPT:PSP 2024, Fig. 1)
with the mean over virtual patients weighted by their probability of any CRS (selection
``crs_patients_before_tocilizumab``). The figure has two different means at one time at two doses (5.01 and
3.81 pg/mL at 71.75 h, 8.5 and 3.71 at 168.58 h): one set of patients cannot give that, one set per dose interval
can. This script writes the four tables to ``OUT`` with those rows switched to the selection
``crs_after_dose_before_tocilizumab`` and each point's ``dose_no`` set to its dose interval: the targets'
``dose_no``, except that of two different values at one time at a dose the higher one ends the interval before
the dose and the lower one starts the dose's own (``il6_mean_sampling.interval_of_points``). Every other row is
copied as it is, and the copy is validated (``qsp.calibrate.load_targets``) before the script reports success.

    python calibration/per_dose_il6_targets.py /tmp/targets_per_dose
    python calibration/fit_map.py --targets /tmp/targets_per_dose --calibrated <DIR>/tce_map.json --out <DIR>/fit
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from il6_mean_sampling import STUDY, interval_of_points  # noqa: E402

from qsp.calibrate.likelihood import PER_DOSE, _study_regimen  # noqa: E402
from qsp.calibrate.targets import TABLE_FILES, load_targets  # noqa: E402
from qsp.cards import load_card  # noqa: E402
from qsp.io.resources import data_root  # noqa: E402
from qsp.premedication import drug_doses  # noqa: E402


def per_dose_rows(tc: pd.DataFrame, dose_t: np.ndarray) -> pd.DataFrame:
    """``tc`` (the time-course table, as text) with the study's IL-6 mean rows switched to the per-dose
    selection and their ``dose_no`` set to each point's dose interval."""
    out = tc.copy()
    m = (out.study_id == STUDY) & (out.quantity == "il6_pg_per_ml") & (out.statistic == "mean")
    if not m.any():
        raise SystemExit(f"error: no {STUDY} IL-6 mean rows in the time-course table")
    rows = out[m]
    interval = interval_of_points(rows.time_day.astype(float).to_numpy(), rows.value.astype(float).to_numpy(),
                                  rows.dose_no.astype(int).to_numpy(), dose_t)
    out.loc[m, "dose_no"] = [str(k) for k in interval]
    out.loc[m, "selection"] = PER_DOSE
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder to write the four tables into (created; must not hold target tables)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if out.exists() and any((out / f).exists() for f in TABLE_FILES):
        ap.error(f"{out} already holds target tables; give a new folder")
    src = data_root().joinpath("targets")
    tables = {f: pd.read_csv(src.joinpath(f).open(), dtype=str, keep_default_na=False) for f in TABLE_FILES}
    st = tables["studies.csv"].set_index("study_id").loc[STUDY]
    tmax = tables["timecourses.csv"].time_day.astype(float).max()
    dose_t = np.array([d.time for d in drug_doses(_study_regimen(load_card(st.drug), st.regimen, tmax))])
    before = tables["timecourses.csv"]
    tables["timecourses.csv"] = per_dose_rows(before, dose_t)
    out.mkdir(parents=True, exist_ok=True)
    for f, df in tables.items():
        df.to_csv(out / f, index=False)
    load_targets(out)  # refuses the copy if anything in it is malformed
    changed = tables["timecourses.csv"][(before.dose_no != tables["timecourses.csv"].dose_no)]
    print(f"wrote {out}: {STUDY} IL-6 mean rows now selection {PER_DOSE}; dose_no changed at "
          + ", ".join(f"day {float(r.time_day):.2f} ({r.value} pg/mL -> dose {r.dose_no})"
                      for r in changed.itertuples()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
