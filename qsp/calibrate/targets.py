"""Calibration targets as data: tidy tables in ``data/targets/``, their schema and their validation.

Every published number the model is calibrated against (``data/crs_by_dose.csv``, ``data/crs_overall.csv``,
``data/pk_summary.csv``, ``data/ada.csv``, ``data/digitized/*.csv`` and the epcoritamab blood T-cell medians
of SCIENCE.md 2.3) is one row of four tables, each row naming its study and its source.
:func:`load_targets` reads and validates them (every bad row of every table reported at once, before
anything else) and returns a :class:`TargetSet` of pandas DataFrames. ``data/targets/README.md`` holds the
same schema, the clock conversion of each digitized file and the assumptions (sigmas, added N).

Clock: ``time_day`` is the **model clock**, days since the first dose of the study's regimen (first dose at
0; a label table's day 1 is time 0, as in :mod:`qsp.io.regimen_csv`). ``dose_no`` counts the drug's doses
as the regimen does (1 = first dose; glofitamab's obinutuzumab pretreatment is not a dose of the drug).

Tables and columns (``*`` = required in every row; empty cells are allowed elsewhere)
-----------------------------------------------------------------------------------

``studies.csv`` -- one row per clinical study or analysis a target comes from:

- ``study_id``\\* unique, letters/digits/``._-``; ``drug``\\* a model card (:func:`qsp.cards.list_cards`);
- ``regimen``\\* a label regimen of that drug in ``data/regimens.csv`` (several joined by ``|`` for a
  population pooled over label schedules);
- ``regimen_match``\\* how well that label regimen reproduces the study's dosing (:data:`REGIMEN_MATCH`):
  ``exact``; ``aligned`` (same doses, but the study's dose days differ slightly: digitized times were moved
  dose by dose onto the label regimen, see :func:`align_to_regimen`); ``partial`` (the label regimen is the
  study's dosing up to ``regimen_match_until_day`` only); ``nearest`` (the study dosed otherwise: these
  rows need the study's own schedule, written in ``regimen_note``);
- ``regimen_match_until_day`` model day (> 0), required for ``partial`` only;
  ``regimen_note`` text, required unless ``exact``;
- ``route``\\* :data:`ROUTES`, equal to the regimen's route; ``population``\\* text; ``n`` patients
  (integer > 0); ``premedication``\\* :data:`PREMEDICATION` (``label`` = the model's label policy,
  :mod:`qsp.premedication`); ``prior_tcr_fraction`` fraction with prior T-cell-redirecting therapy (0-1);
- ``crs_grading`` the CRS grading system of the study's CRS counts (:data:`CRS_GRADINGS`), required for a
  study with CRS incidence rows: ``ASTCT`` (consensus grading, Lee et al. 2019), ``Lee2014``, ``CTCAE_v4``,
  ``CTCAE_v5``. The CRS layer predicts consensus-graded CRS; rows of a study graded otherwise
  (:data:`FIT_GRADINGS` lists the ones fitted) are predicted and reported but left out of the likelihood;
- ``kind``\\* :data:`STUDY_KINDS`: ``observed`` (measured in patients) or ``model_derived`` (produced by a
  published model: popPK simulations, popPK-derived half-lives); ``note``; ``source``\\*.

``crs_incidence.csv`` -- CRS incidence, binomial with its N:

- ``study_id``\\*; ``scope``\\* ``dose`` (with ``dose_no``, an integer or ``k+`` for dose k and later) or
  ``overall`` (``dose_no`` empty); ``grade``\\* :data:`GRADES` (ASTCT grade >= 1, >= 2, >= 3);
- ``n``\\* patients at risk (integer > 0); ``pct``\\* 0-100; ``events`` patients with the event, where the
  source gives the count (0..n, and 100*events/n within 0.5 of ``pct``); the loader fills the empty ones
  with round(pct * n / 100);
- ``at_risk``\\* :data:`AT_RISK`: ``crs_after_dose`` (patients with CRS after this dose among the n who
  received it, whether or not they had CRS before), ``first_crs_after_dose`` (first CRS event at this dose
  or dose range), ``crs_over_treatment`` (at least one CRS event over the treatment; scope ``overall``);
- ``n_origin``\\* ``source`` (N stated in the source), ``added`` (N not in ``data/``, added here from a checked
  trial report: ``note`` says from where) or ``recalled`` (N recalled from a publication, not verified in the
  project's sources: ``note`` says so); ``note``; ``source``\\*.

``timecourses.csv`` -- points of mean, median or individual time courses:

- ``study_id``\\*; ``quantity``\\* with its ``unit``\\* (:data:`TIMECOURSE_QUANTITIES`); ``statistic``\\*
  :data:`TIMECOURSE_STATISTICS`; ``time_day``\\* >= 0 (model clock; for ``individual_peak`` the observed day
  of the peak); ``dose_no`` the dose of the study's schedule the point follows; ``value``\\* > 0;
- ``error_model``\\* ``lognormal`` with ``sigma``\\* > 0 (SD of the log; stated assumptions, see the README);
- ``selection``\\* :data:`SELECTIONS`; ``source_file``, ``source_row`` (1-based data row of that file),
  ``source_time``, ``source_time_unit`` (the reading before the clock conversion); ``note``; ``source``\\*.

``summaries.csv`` -- scalar summaries (PK, CRS onset, ADA):

- ``study_id``\\*; ``quantity``\\* with its ``unit``\\* (:data:`SUMMARY_QUANTITIES`; ``%`` for the statistic
  ``cv_pct``); ``statistic``\\* :data:`SUMMARY_STATISTICS`; ``dose_no`` (required for ``tmax_h``,
  ``cmax_ug_per_ml``, ``ctrough_ug_per_ml``: the dose whose window, to the next dose, is meant; Ctrough is
  the concentration just before the next dose); ``reference_dose_no`` (accumulation ratios: dose_no over
  reference_dose_no);
- ``value``\\*; ``error_model``\\* :data:`SUMMARY_ERROR_MODELS`: ``lognormal`` / ``normal`` need ``sigma``
  > 0 (log scale / the value's unit); ``binomial`` needs ``n`` (patients; value in %); ``interval`` needs
  ``lower`` < ``upper`` (a published range; value inside); ``upper_bound`` needs ``upper`` (a published
  "< x"); ``selection``\\*; ``source_value`` (as published); ``note``; ``source``\\*.

Allowed values (closed vocabularies; the constants of this module):

- ``route``: ``SC``, ``IV``, ``IV_continuous``, ``IP``; ``premedication``: ``label``, ``none``;
  ``kind``: ``observed``, ``model_derived``; ``regimen_match``: ``exact``, ``aligned``, ``partial``,
  ``nearest``;
- ``scope``: ``dose``, ``overall``; ``grade``: ``any``, ``g2plus``, ``g3plus``; ``at_risk``:
  ``crs_after_dose``, ``first_crs_after_dose``, ``crs_over_treatment``; ``n_origin``: ``source``, ``added``,
  ``recalled``;
- time-course ``quantity`` (``unit``): ``conc_ug_per_ml`` (``ug/mL``), ``il6_pg_per_ml`` (``pg/mL``),
  ``blood_t_cells_per_ul`` (``cells/uL``); ``statistic``: ``mean``, ``median``, ``band_lower``,
  ``band_upper``, ``individual_peak``; ``error_model``: ``lognormal``;
- summary ``quantity`` (``unit``): ``tmax_h`` (``h``), ``cmax_ug_per_ml`` (``ug/mL``),
  ``ctrough_ug_per_ml`` (``ug/mL``), ``accumulation_ratio_cmax`` (``fold``), ``accumulation_ratio_auc_tau``
  (``fold``), ``terminal_half_life_day`` (``day``), ``half_life_initial_day`` (``day``), ``crs_onset_h``
  (``h``, from the most recent dose), ``ada_incidence_pct`` (``%``); ``statistic``: ``mean``, ``sd``,
  ``cv_pct``, ``median``, ``geometric_mean``, ``typical`` (statistic not stated), ``incidence`` (ADA only);
  ``error_model``: ``lognormal``, ``normal``, ``binomial``, ``interval``, ``upper_bound``;
- ``selection``: ``all``, ``crs_patients``, ``crs_patients_before_tocilizumab``,
  ``crs_after_dose_before_tocilizumab``, ``individual``.

Selection rules (:data:`SELECTIONS`; a prediction must apply the same selection to virtual patients):
``all`` all treated (or sampled) patients; ``crs_patients`` over patients/events with CRS (median onset);
``crs_patients_before_tocilizumab`` the MajesTEC-1 IL-6 mean: over patients who had CRS, values after
tocilizumab excluded -- compare with the mean over virtual patients weighted by their probability of CRS,
not the population mean; ``crs_after_dose_before_tocilizumab`` the same per dose interval: a point with
``dose_no`` k is a mean over the patients who had CRS after dose k (the virtual patients weighted by their
probability of CRS after dose k; a mean only, ``dose_no`` required); ``individual`` individual patients' values
(blinatumomab IL-6 peaks): compare the distribution, not a mean.

Every row of every table is checked; each error names the file, the data row (1-based, header not
counted; the file line too), the field and the allowed values. Duplicate rows (same key) and unknown
columns or table files are errors too.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError, raise_collected

# --------------------------------------------------------------------------------------------------
# vocabularies
# --------------------------------------------------------------------------------------------------
TABLE_FILES = ("studies.csv", "crs_incidence.csv", "timecourses.csv", "summaries.csv")
ROUTES = ("SC", "IV", "IV_continuous", "IP")
PREMEDICATION = ("label", "none")
STUDY_KINDS = ("observed", "model_derived")
REGIMEN_MATCH = ("exact", "aligned", "partial", "nearest")
SCOPES = ("dose", "overall")
GRADES = ("any", "g2plus", "g3plus")
AT_RISK = ("crs_after_dose", "first_crs_after_dose", "crs_over_treatment")
N_ORIGIN = ("source", "added", "recalled")
CRS_GRADINGS = ("ASTCT", "Lee2014", "CTCAE_v4", "CTCAE_v5")
# Gradings whose CRS counts the CRS layer (consensus-graded CRS) predicts. Lee 2014 and the ASTCT consensus
# define CRS alike (fever >= 38 C and up; grade 1 = fever alone), so their any-grade counts compare. CTCAE
# v4.0 had no fever-only CRS grade and trials coded many such events as pyrexia or infusion-related reaction
# (TOWER: CRS 14% under CTCAE v4.0 while fever was the commonest adverse event), so those counts are a
# narrower event than the model's: their rows are reported, not fitted.
FIT_GRADINGS = ("ASTCT", "Lee2014")
SELECTIONS = {
    "all": "all treated (or sampled) patients",
    "crs_patients": "patients (or events) with CRS",
    "crs_patients_before_tocilizumab": "patients who had CRS, values after tocilizumab excluded: compare with the "
                                       "CRS-probability-weighted mean over virtual patients",
    "crs_after_dose_before_tocilizumab": "patients who had CRS after the row's dose (dose_no: one set of patients "
                                         "per dose interval), values after tocilizumab excluded: compare with the "
                                         "mean weighted by each virtual patient's probability of CRS after that dose",
    "individual": "individual patients' values: compare the distribution",
}
TIMECOURSE_QUANTITIES = {"conc_ug_per_ml": "ug/mL", "il6_pg_per_ml": "pg/mL", "blood_t_cells_per_ul": "cells/uL"}
TIMECOURSE_STATISTICS = ("mean", "median", "band_lower", "band_upper", "individual_peak")
TIMECOURSE_ERROR_MODELS = ("lognormal",)
# quantity -> (unit, which dose columns it needs: "dose", "ratio" or "none")
SUMMARY_QUANTITIES = {
    "tmax_h": ("h", "dose"),
    "cmax_ug_per_ml": ("ug/mL", "dose"),
    "ctrough_ug_per_ml": ("ug/mL", "dose"),
    "accumulation_ratio_cmax": ("fold", "ratio"),
    "accumulation_ratio_auc_tau": ("fold", "ratio"),
    "terminal_half_life_day": ("day", "none"),
    "half_life_initial_day": ("day", "none"),
    "crs_onset_h": ("h", "none"),
    "ada_incidence_pct": ("%", "none"),
}
SUMMARY_STATISTICS = ("mean", "sd", "cv_pct", "median", "geometric_mean", "typical", "incidence")
SUMMARY_ERROR_MODELS = ("lognormal", "normal", "binomial", "interval", "upper_bound")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DOSE_RANGE = re.compile(r"^([1-9][0-9]*)(\+?)$")

COLUMNS = {
    "studies.csv": ("study_id", "drug", "regimen", "regimen_match", "regimen_match_until_day", "regimen_note",
                    "route", "population", "n", "premedication", "prior_tcr_fraction", "crs_grading", "kind", "note",
                    "source"),
    "crs_incidence.csv": ("study_id", "scope", "dose_no", "grade", "n", "pct", "events", "at_risk", "n_origin",
                          "note", "source"),
    "timecourses.csv": ("study_id", "quantity", "statistic", "time_day", "dose_no", "value", "unit",
                        "error_model", "sigma", "selection", "source_file", "source_row", "source_time",
                        "source_time_unit", "note", "source"),
    "summaries.csv": ("study_id", "quantity", "statistic", "dose_no", "reference_dose_no", "value", "unit",
                      "error_model", "sigma", "n", "lower", "upper", "selection", "source_value", "note", "source"),
}
_KEYS = {
    "studies.csv": ("study_id",),
    "crs_incidence.csv": ("study_id", "scope", "dose_no", "grade"),
    "timecourses.csv": ("study_id", "quantity", "statistic", "time_day", "value"),
    "summaries.csv": ("study_id", "quantity", "statistic", "dose_no", "reference_dose_no"),
}


# --------------------------------------------------------------------------------------------------
# clock conversion
# --------------------------------------------------------------------------------------------------
def align_to_regimen(times_day, source_dose_days: Sequence[float], model_dose_days: Sequence[float]):
    """Move time points from a study's own clock onto a regimen's clock, dose by dose.

    Each point keeps its time since the most recent dose (the last source dose at or before it) and that
    dose is placed at its model time: ``time_day = model_dose_days[k] + (t - source_dose_days[k])``.
    Returns ``(time_day, dose_no)`` arrays (``dose_no`` 1-based). A point before the first dose, or one
    that would land at or after the next model dose (the study's interval is longer than the regimen's),
    is an error: it cannot be placed without changing what it measures.
    """
    src = np.asarray(source_dose_days, float)
    mod = np.asarray(model_dose_days, float)
    if src.ndim != 1 or src.shape != mod.shape or src.size == 0:
        raise ValueError("source_dose_days and model_dose_days must be 1-D and of the same, non-zero length")
    if np.any(np.diff(src) <= 0) or np.any(np.diff(mod) <= 0):
        raise ValueError("dose days must increase strictly")
    t = np.atleast_1d(np.asarray(times_day, float))
    k = np.searchsorted(src, t, side="right") - 1
    if np.any(k < 0):
        raise ValueError(f"time(s) {t[k < 0].tolist()} precede the first dose at {src[0]}")
    out = mod[k] + (t - src[k])
    nxt = np.append(mod[1:], np.inf)[k]
    bad = out >= nxt
    if np.any(bad):
        raise ValueError(f"time(s) {t[bad].tolist()} fall after the next model dose once aligned "
                         "(the study's dose interval is longer than the regimen's)")
    return out, k + 1


# --------------------------------------------------------------------------------------------------
# reading and cell checks
# --------------------------------------------------------------------------------------------------
class _Errors(list):
    def add(self, file: str, rec: dict | None, fld: str, msg: str, allowed: Sequence[str] | None = None) -> None:
        if rec is None:
            where = file
        else:
            where = f"{file} data row {rec['_row']} (file line {rec['_line']})"
        text = f"{where}, {fld}: {msg}"
        if allowed is not None:
            text += f"; allowed: {', '.join(str(a) for a in allowed)}"
        e = InputError(text, field=fld)
        e.row = None if rec is None else rec["_row"]
        e.file = file
        self.append(e)


def _read_table(text: str, name: str, file: str, errors: _Errors) -> list[dict] | None:
    reader = csv.reader(io.StringIO(text))
    header = None
    recs: list[dict] = []
    n = 0
    for cells in reader:
        if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            continue
        n += 1
        rec = {"_row": n, "_line": reader.line_num}
        if len(cells) != len(header):
            errors.add(file, rec, "row", f"has {len(cells)} fields but the header has {len(header)}")
            continue
        rec.update({h: c.strip() for h, c in zip(header, cells)})
        recs.append(rec)
    want = COLUMNS[name]
    if header is None:
        errors.add(file, None, "header", "the table is empty (no header)", want)
        return None
    bad = False
    for c in want:
        if c not in header:
            errors.add(file, None, c, f"required column {c!r} is missing", want)
            bad = True
    for c in header:
        if c not in want:
            errors.add(file, None, c, f"unknown column {c!r}", want)
            bad = True
    for c in sorted({h for h in header if header.count(h) > 1}):
        errors.add(file, None, c, f"column {c!r} appears more than once")
        bad = True
    return None if bad else recs


class _Row:
    """Cell accessors that record errors against one data row."""

    def __init__(self, file: str, rec: dict, errors: _Errors):
        self.file, self.rec, self.errors = file, rec, errors
        self.ok = True

    def err(self, fld: str, msg: str, allowed: Sequence[str] | None = None) -> None:
        self.errors.add(self.file, self.rec, fld, msg, allowed)
        self.ok = False

    def raw(self, fld: str) -> str:
        return self.rec.get(fld, "")

    def text(self, fld: str, *, required: bool = False) -> str:
        v = self.raw(fld)
        if required and not v:
            self.err(fld, f"{fld} is required and is empty")
        return v

    def choice(self, fld: str, allowed: Sequence[str], *, required: bool = True) -> str | None:
        v = self.raw(fld)
        if not v:
            if required:
                self.err(fld, f"{fld} is required and is empty", allowed)
            return None
        if v not in allowed:
            self.err(fld, f"unknown {fld} {v!r}", allowed)
            return None
        return v

    def number(self, fld: str, *, required: bool = False, gt: float | None = None, ge: float | None = None,
               le: float | None = None, rule: str = "") -> float | None:
        v = self.raw(fld)
        if not v:
            if required:
                self.err(fld, f"{fld} is required and is empty" + (f" ({rule})" if rule else ""))
            return None
        try:
            x = float(v)
        except ValueError:
            self.err(fld, f"{v!r} is not a number")
            return None
        if not math.isfinite(x):
            self.err(fld, f"{v!r} is not a finite number")
            return None
        lo = f"> {gt:g}" if gt is not None else (f">= {ge:g}" if ge is not None else None)
        rng = " and ".join(s for s in (lo, f"<= {le:g}" if le is not None else None) if s)
        if (gt is not None and not x > gt) or (ge is not None and not x >= ge) or (le is not None and not x <= le):
            self.err(fld, f"{v} is out of range: must be {rng}" + (f" ({rule})" if rule else ""))
            return None
        return x

    def integer(self, fld: str, *, required: bool = False, ge: int = 1, rule: str = "") -> int | None:
        x = self.number(fld, required=required, ge=ge, rule=rule)
        if x is None:
            return None
        if not float(x).is_integer():
            self.err(fld, f"{self.raw(fld)} is not an integer")
            return None
        return int(x)

    def empty(self, fld: str, why: str) -> None:
        if self.raw(fld):
            self.err(fld, f"must be empty {why}, got {self.raw(fld)!r}")

    def ident(self, fld: str) -> str | None:
        v = self.text(fld, required=True)
        if v and not _ID.match(v):
            self.err(fld, f"{v!r} is not a valid id (letters, digits, '.', '_', '-'; starting with a letter or "
                          "digit)")
            return None
        return v or None


# --------------------------------------------------------------------------------------------------
# table checks
# --------------------------------------------------------------------------------------------------
def _regimen_routes() -> tuple[dict[str, list[str]], dict[tuple[str, str], str | None]]:
    """Label regimens by drug, and the route of each (``None`` if it mixes routes)."""
    from ..io.regimen_csv import label_regimens, load_label_regimen

    table = label_regimens()
    by_drug: dict[str, list[str]] = {}
    routes: dict[tuple[str, str], str | None] = {}
    names = {"IV_infusion": "IV", "IV_bolus": "IV"}
    for drug, reg in zip(table["drug"], table["regimen"]):
        by_drug.setdefault(drug, []).append(reg)
        try:
            lr = load_label_regimen(drug, reg, until_day=60)
            rs = {names.get(d.route, d.route) for d in lr.regimen.doses}
            routes[(drug, reg)] = rs.pop() if len(rs) == 1 else None
        except InputError:
            routes[(drug, reg)] = None
    return by_drug, routes


def _check_studies(file: str, recs: list[dict], errors: _Errors) -> dict[str, dict]:
    from ..cards import list_cards

    cards = list_cards()
    by_drug, routes = _regimen_routes()
    out: dict[str, dict] = {}
    for rec in recs:
        r = _Row(file, rec, errors)
        sid = r.ident("study_id")
        drug = r.choice("drug", cards)
        regs = r.text("regimen", required=True)
        if drug and regs:
            allowed = by_drug.get(drug, [])
            parts = [p.strip() for p in regs.split("|")]
            for p in parts:
                if p not in allowed:
                    r.err("regimen", f"unknown regimen {p!r} for {drug} (not in data/regimens.csv)",
                          allowed or ["(none: the drug has no label regimen)"])
            route = r.choice("route", ROUTES)
            if route and all(p in allowed for p in parts):
                for p in parts:
                    rr = routes.get((drug, p))
                    if rr is not None and rr != route:
                        r.err("route", f"{route!r} differs from the route of {drug}/{p} in data/regimens.csv",
                              [rr])
        else:
            r.choice("route", ROUTES)
        match = r.choice("regimen_match", REGIMEN_MATCH)
        if match == "partial":
            r.number("regimen_match_until_day", required=True, gt=0, rule="required when regimen_match is partial")
        elif match is not None:
            r.empty("regimen_match_until_day", "unless regimen_match is partial")
        if match in ("aligned", "partial", "nearest"):
            r.text("regimen_note", required=True)
        r.text("population", required=True)
        r.integer("n", ge=1)
        r.choice("premedication", PREMEDICATION)
        r.number("prior_tcr_fraction", ge=0, le=1)
        grading = r.choice("crs_grading", CRS_GRADINGS, required=False)
        r.choice("kind", STUDY_KINDS)
        r.text("source", required=True)
        if sid:
            out.setdefault(sid, {"drug": drug, "row": rec["_row"], "rec": rec, "crs_grading": grading,
                                 "file": file})
    return out


def _study(r: _Row, studies: dict[str, dict]) -> str | None:
    sid = r.text("study_id", required=True)
    if sid and sid not in studies:
        r.err("study_id", f"unknown study_id {sid!r} (not in studies.csv)", sorted(studies))
        return None
    return sid or None


def _check_crs(file: str, recs: list[dict], studies: dict, errors: _Errors) -> None:
    ungraded = set()
    for rec in recs:
        r = _Row(file, rec, errors)
        sid = _study(r, studies)
        st = studies.get(sid) if sid else None
        if st is not None and st["crs_grading"] is None and not st["rec"].get("crs_grading") and sid not in ungraded:
            ungraded.add(sid)
            errors.add(st["file"], st["rec"], "crs_grading", f"study {sid!r} has CRS incidence rows in {file} "
                       f"(first: data row {rec['_row']}); its CRS grading system is required", CRS_GRADINGS)
        scope = r.choice("scope", SCOPES)
        if scope == "dose":
            d = r.text("dose_no", required=True)
            if d and not _DOSE_RANGE.match(d):
                r.err("dose_no", f"{d!r} is not a dose number", ["an integer >= 1", "k+ (dose k and later)"])
        elif scope == "overall":
            r.empty("dose_no", "when scope is overall")
        r.choice("grade", GRADES)
        n = r.integer("n", required=True, ge=1, rule="the number at risk is required for every incidence")
        pct = r.number("pct", required=True, ge=0, le=100)
        ev = r.integer("events", ge=0)
        if ev is not None and n is not None:
            if ev > n:
                r.err("events", f"{ev} events exceed n = {n}")
            elif pct is not None and abs(100.0 * ev / n - pct) > 0.5 + 1e-9:
                r.err("events", f"{ev}/{n} = {100.0 * ev / n:.2f}% does not round to pct {pct:g}")
        risk = r.choice("at_risk", AT_RISK)
        if scope == "overall" and risk and risk != "crs_over_treatment":
            r.err("at_risk", f"{risk!r} does not fit scope overall", ["crs_over_treatment"])
        if scope == "dose" and risk == "crs_over_treatment":
            r.err("at_risk", "crs_over_treatment does not fit scope dose", ["crs_after_dose", "first_crs_after_dose"])
        r.choice("n_origin", N_ORIGIN)
        if r.raw("n_origin") in ("added", "recalled") and not r.raw("note"):
            r.err("note", f"n_origin {r.raw('n_origin')} needs a note saying where N comes from")
        r.text("source", required=True)


def _check_timecourses(file: str, recs: list[dict], studies: dict, errors: _Errors) -> None:
    for rec in recs:
        r = _Row(file, rec, errors)
        _study(r, studies)
        q = r.choice("quantity", list(TIMECOURSE_QUANTITIES))
        stat = r.choice("statistic", TIMECOURSE_STATISTICS)
        r.number("time_day", required=True, ge=0, rule="model clock: days since the first dose")
        per_dose = r.raw("selection") == "crs_after_dose_before_tocilizumab"
        r.integer("dose_no", ge=1, required=per_dose,
                  rule="the dose whose CRS patients the mean is over" if per_dose else "")
        r.number("value", required=True, gt=0, rule="lognormal data")
        unit = r.text("unit", required=True)
        if q and unit and unit != TIMECOURSE_QUANTITIES[q]:
            r.err("unit", f"unknown unit {unit!r} for {q}", [TIMECOURSE_QUANTITIES[q]])
        r.choice("error_model", TIMECOURSE_ERROR_MODELS)
        r.number("sigma", required=True, gt=0, rule="SD of the log")
        sel = r.choice("selection", list(SELECTIONS))
        if stat and sel and (stat == "individual_peak") != (sel == "individual"):
            r.err("selection", f"statistic {stat!r} and selection {sel!r} do not fit together "
                               "(individual_peak goes with individual)")
        if per_dose and stat and stat != "mean":
            r.err("selection", f"selection {sel!r} is a per-dose mean; statistic {stat!r} does not fit it", ["mean"])
        r.integer("source_row", ge=1)
        r.text("source", required=True)


def _check_summaries(file: str, recs: list[dict], studies: dict, errors: _Errors) -> None:
    for rec in recs:
        r = _Row(file, rec, errors)
        _study(r, studies)
        q = r.choice("quantity", list(SUMMARY_QUANTITIES))
        stat = r.choice("statistic", SUMMARY_STATISTICS)
        if q is not None:
            need = SUMMARY_QUANTITIES[q][1]
            if need in ("dose", "ratio"):
                d = r.integer("dose_no", required=True, rule=f"{q} refers to a dose")
            else:
                r.empty("dose_no", f"for {q}")
            if need == "ratio":
                ref = r.integer("reference_dose_no", required=True, rule=f"{q} is dose_no over reference_dose_no")
                if d is not None and ref is not None and ref >= d:
                    r.err("reference_dose_no", f"{ref} must be an earlier dose than dose_no {d}")
            else:
                r.empty("reference_dose_no", f"for {q}")
        else:
            r.integer("dose_no")
            r.integer("reference_dose_no")
        pct = q == "ada_incidence_pct"
        if q and stat and (stat == "incidence") != pct:
            r.err("statistic", f"{stat!r} does not fit {q}", ["incidence"] if pct else
                  [s for s in SUMMARY_STATISTICS if s != "incidence"])
        unit = r.text("unit", required=True)
        if q and unit:
            want = "%" if stat == "cv_pct" else SUMMARY_QUANTITIES[q][0]
            if unit != want:
                r.err("unit", f"unknown unit {unit!r} for {q} ({stat})", [want])
        em = r.choice("error_model", SUMMARY_ERROR_MODELS)
        hi = 100.0 if pct else None
        value = r.number("value", required=True, ge=0, le=hi)
        sig = "sigma"
        if em in ("lognormal", "normal"):
            r.number(sig, required=True, gt=0, rule=f"{em} needs sigma")
            if em == "lognormal" and value is not None and value <= 0:
                r.err("value", f"{value:g} must be > 0 for a lognormal error model")
        elif em is not None:
            r.empty(sig, f"for error_model {em}")
        if em == "binomial":
            r.integer("n", required=True, ge=1, rule="binomial needs the number of patients")
            if not pct and q:
                r.err("error_model", f"binomial does not fit {q}", ["lognormal", "normal", "interval", "upper_bound"])
        else:
            r.integer("n", ge=1)
        if em == "interval":
            lo = r.number("lower", required=True, ge=0, le=hi, rule="interval needs lower and upper")
            up = r.number("upper", required=True, ge=0, le=hi, rule="interval needs lower and upper")
            if lo is not None and up is not None:
                if not lo < up:
                    r.err("upper", f"upper {up:g} must exceed lower {lo:g}")
                elif value is not None and not lo <= value <= up:
                    r.err("value", f"{value:g} is outside [lower, upper] = [{lo:g}, {up:g}]")
        elif em == "upper_bound":
            r.empty("lower", "for error_model upper_bound")
            r.number("upper", required=True, ge=0, le=hi, rule="upper_bound needs upper")
        elif em is not None:
            r.empty("lower", f"for error_model {em}")
            r.empty("upper", f"for error_model {em}")
        r.choice("selection", list(SELECTIONS))
        r.text("source", required=True)


def _check_duplicates(name: str, file: str, recs: list[dict], errors: _Errors) -> None:
    keys = _KEYS[name]
    seen: dict[tuple, int] = {}
    for rec in recs:
        key = tuple(_norm(rec.get(k, "")) for k in keys)
        if key in seen:
            errors.add(file, rec, keys[0], f"duplicate row: same {', '.join(keys)} as data row {seen[key]}")
        else:
            seen[key] = rec["_row"]


def _norm(v: str):
    try:
        return float(v)
    except ValueError:
        return v


_CHECKS: dict[str, Callable] = {"crs_incidence.csv": _check_crs, "timecourses.csv": _check_timecourses,
                                "summaries.csv": _check_summaries}


# --------------------------------------------------------------------------------------------------
# typed frames
# --------------------------------------------------------------------------------------------------
_INT_COLS = {"n", "events", "source_row", "reference_dose_no"}
_FLOAT_COLS = {"regimen_match_until_day", "prior_tcr_fraction", "pct", "time_day", "value", "sigma", "lower",
               "upper"}


def _frame(file: str, recs: list[dict]) -> pd.DataFrame:
    cols = COLUMNS[file]
    data: dict[str, Any] = {}
    for c in cols:
        vals = [rec.get(c, "") for rec in recs]
        int_col = c in _INT_COLS or (c == "dose_no" and file != "crs_incidence.csv")
        if int_col:
            data[c] = pd.array([int(float(v)) if v else pd.NA for v in vals], dtype="Int64")
        elif c in _FLOAT_COLS:
            data[c] = np.array([float(v) if v else np.nan for v in vals], dtype=float)
        else:
            data[c] = pd.Series(vals, dtype=object)
    return pd.DataFrame(data, columns=list(cols))


# --------------------------------------------------------------------------------------------------
# the target set
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TargetSet:
    """Validated calibration targets. The three target tables carry a ``drug`` column (from the study),
    added on load; ``crs_incidence.events`` is filled where the file leaves it empty."""

    studies: pd.DataFrame
    crs_incidence: pd.DataFrame
    timecourses: pd.DataFrame
    summaries: pd.DataFrame
    folder: str = ""

    def __len__(self) -> int:
        return len(self.crs_incidence) + len(self.timecourses) + len(self.summaries)

    def drugs(self) -> list[str]:
        """Drugs with at least one target row."""
        d = set(self.crs_incidence["drug"]) | set(self.timecourses["drug"]) | set(self.summaries["drug"])
        return sorted(d)

    def for_drug(self, drug: str) -> "TargetSet":
        """The targets of one drug (a model card; a card without targets gives an empty set)."""
        from ..cards import list_cards

        key = str(drug).strip().lower()
        if key not in list_cards():
            raise InputError(f"unknown drug {drug!r}; allowed: {', '.join(list_cards())}", field="drug")
        keep = set(self.studies.loc[self.studies["drug"] == key, "study_id"])
        return self._subset(keep)

    def _subset(self, study_ids: set[str], time_ok=None) -> "TargetSet":
        def sel(df):
            return df[df["study_id"].isin(study_ids)].reset_index(drop=True)

        tc = sel(self.timecourses)
        if time_ok is not None:
            tc = tc[time_ok(tc)].reset_index(drop=True)
        return replace(self, studies=sel(self.studies), crs_incidence=sel(self.crs_incidence), timecourses=tc,
                       summaries=sel(self.summaries))

    def study(self, study_id: str) -> dict:
        """One study's row as a dict."""
        rows = self.studies[self.studies["study_id"] == study_id]
        if rows.empty:
            raise InputError(f"unknown study_id {study_id!r}; allowed: {', '.join(self.studies['study_id'])}",
                             field="study_id")
        return rows.iloc[0].to_dict()

    def on_label_regimen(self) -> "TargetSet":
        """The targets a simulation of the studies' label regimens can reproduce: drops ``nearest`` studies
        and the time points of ``partial`` studies from ``regimen_match_until_day`` on."""
        st = self.studies
        keep = set(st.loc[st["regimen_match"] != "nearest", "study_id"])
        until = dict(zip(st["study_id"], st["regimen_match_until_day"]))

        def ok(tc):
            lim = tc["study_id"].map(until).astype(float)
            return ~(lim.notna() & (tc["time_day"] >= lim))

        return self._subset(keep, ok)

    def describe(self) -> list[str]:
        """One line per target: each CRS incidence, each time-course series, each summary."""
        reg = dict(zip(self.studies["study_id"], self.studies["regimen"]))
        lines = []
        for row in self.crs_incidence.itertuples(index=False):
            where = f"after dose {row.dose_no}" if row.scope == "dose" else "over treatment"
            lines.append(f"crs_incidence {row.study_id} ({row.drug}, {reg[row.study_id]}): {row.grade} CRS "
                         f"{where}, {row.pct:g}% of {row.n} ({row.at_risk}; binomial)")
        tc = self.timecourses
        for (sid, q, stat), g in tc.groupby(["study_id", "quantity", "statistic"], sort=False):
            lines.append(f"timecourse {sid} ({g['drug'].iloc[0]}, {reg[sid]}): {stat} {q}, {len(g)} points, "
                         f"day {g['time_day'].min():g}-{g['time_day'].max():g} (lognormal sigma "
                         f"{'/'.join(f'{s:g}' for s in sorted(set(g['sigma'])))}; {g['selection'].iloc[0]})")
        for row in self.summaries.itertuples(index=False):
            dose = "" if pd.isna(row.dose_no) else f" dose {row.dose_no}"
            if not pd.isna(row.reference_dose_no):
                dose += f" vs dose {row.reference_dose_no}"
            if row.error_model == "interval":
                val, how = f"{row.lower:g}-{row.upper:g} {row.unit}", "interval"
            elif row.error_model == "upper_bound":
                val, how = f"< {row.upper:g} {row.unit}", "upper bound"
            elif row.error_model == "binomial":
                val, how = f"{row.value:g}{row.unit} of {row.n}", "binomial"
            else:
                val, how = f"{row.value:g} {row.unit}", f"{row.error_model} sigma {row.sigma:g}"
            lines.append(f"summary {row.study_id} ({row.drug}): {row.statistic} {row.quantity}{dose} = {val} "
                         f"({how}; {row.selection})")
        return lines

    def __str__(self) -> str:
        return (f"TargetSet({self.folder}: {len(self.studies)} studies, {len(self.crs_incidence)} CRS incidences, "
                f"{len(self.timecourses)} time-course points, {len(self.summaries)} summaries; "
                f"drugs: {', '.join(self.drugs())})")


def _source(folder) -> tuple[Any, str]:
    if folder is None:
        from ..io.resources import data_root

        return data_root().joinpath("targets"), "data/targets"
    p = Path(folder)
    if not p.is_dir():
        raise InputError(f"{p} is not a folder of target tables", field="folder")
    return p, str(p)


def load_targets(folder=None) -> TargetSet:
    """Read and validate the target tables of ``folder`` (default: the installed ``data/targets/``).

    ``studies.csv`` is required; a missing target table means no targets of that kind; any other ``.csv``
    in the folder is an error (a misspelt table would otherwise be skipped). Every bad row of every table
    is reported in one :class:`~qsp.errors.InputErrors` (or an :class:`~qsp.errors.InputError` if only one).
    """
    root, label = _source(folder)
    if not root.is_dir():
        raise InputError(f"{label} is missing from this installation (reinstall the package)", field="folder")
    errors = _Errors()
    present = {node.name for node in root.iterdir() if node.is_file()}
    for name in sorted(present):
        if name.endswith(".csv") and name not in TABLE_FILES:
            errors.add(f"{label}/{name}", None, "file", f"unknown table file {name!r}", TABLE_FILES)
    if "studies.csv" not in present:
        errors.add(f"{label}/studies.csv", None, "file", "studies.csv is required", TABLE_FILES)
        raise_collected(errors)
    recs: dict[str, list[dict] | None] = {}
    for name in TABLE_FILES:
        if name in present:
            try:
                text = root.joinpath(name).read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as e:
                errors.add(f"{label}/{name}", None, "file", f"cannot read: {e}")
                recs[name] = None
                continue
            recs[name] = _read_table(text, name, f"{label}/{name}", errors)
        else:
            recs[name] = []
    studies = _check_studies(f"{label}/studies.csv", recs["studies.csv"] or [], errors)
    for name, rows in recs.items():
        if rows:
            if name in _CHECKS:
                _CHECKS[name](f"{label}/{name}", rows, studies, errors)
            _check_duplicates(name, f"{label}/{name}", rows, errors)
    raise_collected(errors)

    frames = {name: _frame(name, recs[name] or []) for name in TABLE_FILES}
    st = frames["studies.csv"]
    drug_of = dict(zip(st["study_id"], st["drug"]))
    for name in TABLE_FILES[1:]:
        df = frames[name]
        df.insert(1, "drug", df["study_id"].map(drug_of).astype(object))
    crs = frames["crs_incidence.csv"]
    if len(crs):
        fill = np.round(crs["pct"].to_numpy() * crs["n"].to_numpy(dtype=float) / 100.0)
        crs["events"] = crs["events"].fillna(pd.Series(fill, index=crs.index).astype("Int64"))
    return TargetSet(studies=st, crs_incidence=crs, timecourses=frames["timecourses.csv"],
                     summaries=frames["summaries.csv"], folder=label)


__all__ = ["TargetSet", "load_targets", "align_to_regimen", "TABLE_FILES", "COLUMNS", "ROUTES", "PREMEDICATION",
           "CRS_GRADINGS", "FIT_GRADINGS",
           "STUDY_KINDS", "REGIMEN_MATCH", "SCOPES", "GRADES", "AT_RISK", "N_ORIGIN", "SELECTIONS",
           "TIMECOURSE_QUANTITIES", "TIMECOURSE_STATISTICS", "TIMECOURSE_ERROR_MODELS", "SUMMARY_QUANTITIES",
           "SUMMARY_STATISTICS", "SUMMARY_ERROR_MODELS"]
