"""Plain regimen tables (``day,dose,unit,route[,infusion_h,...]``) and the label regimen library.

A regimen table has one row per dose (or per repeated dose):

=====================  ==================================================================================
column                 meaning
=====================  ==================================================================================
``day``                treatment day of the dose; day 1 is model time 0 (``time_day = day - 1``). A table
                       that numbers from day 0 (catumaxomab's label) has day 0 as time 0. Fractional days
                       are allowed (1.5 = 12 h into day 1).
``dose``               amount (positive), or the rate for ``IV_continuous``
``unit``               mg, ug, ng, nmol, mg/kg, ug/kg, mg/m2, ug/m2, ug/day, mg/day, ug/m2/day
``route``              ``SC``; ``IV`` (an IV infusion over ``infusion_h`` hours, which it needs: an ``IV`` row
                       without ``infusion_h`` is an error, not a bolus); ``IV_bolus`` (an instantaneous IV
                       injection, written explicitly; ``bolus`` is accepted too); ``IV_continuous`` (needs
                       ``infusion_h``); ``IP``; ``IV_infusion`` is accepted as a synonym of ``IV``
``infusion_h``         infusion duration in hours (``IV``/``IV_infusion`` and ``IV_continuous``; on ``SC``/``IP``
                       a zero-order input into the depot over that time)
``repeat_every_days``  repeat the dose every N days ...
``repeat_until_day``   ... up to and including this day (NONMEM II/ADDL). Without it, the caller's horizon
                       ``until_day`` applies (label maintenance doses "until progression").
``steady_state``       optional: 1 = the patient is at steady state of this dose given every
                       ``repeat_every_days`` (reset first; NONMEM SS=1), 2 = that steady state added to the
                       current state (SS=2); blank or 0 = an ordinary dose. The repeats up to
                       ``repeat_until_day`` continue the pattern (NONMEM ADDL); a steady-state infusion takes none
``label`` / ``note``   free text, kept as the dose label
=====================  ==================================================================================

The label library (``data/regimens.csv``) has the same columns plus ``drug``, ``regimen``, ``dose_no``
and ``source``. Rows with ``dose_no`` 0 are pretreatment with another drug (glofitamab's label starts
with obinutuzumab on day 1); :func:`load_label_regimen` keeps them out of the drug's regimen and returns
them apart, as :attr:`LabelRegimen.pretreatment`, on the same clock.

Every malformed row is reported (all rows at once, :class:`~qsp.errors.InputErrors`), naming the data row
(1-based, the header not counted; the file line is given too) and the field.

One dose a day: two doses of the drug on the same ``day`` (after repeats are expanded, e.g. a row on day 8
and a weekly repeat that lands on day 8) are an error naming both rows (field ``day``). A split dose goes on
consecutive days, or at a fractional day (8.5). In the label library the ``dose_no`` 0 pretreatment rows
are checked apart from the drug's own doses.

:func:`write_regimen_csv` writes ``IV_bolus`` doses as route ``IV_bolus`` and IV infusions as ``IV`` with
``infusion_h``, so a table read, written and read again gives the same regimen.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..errors import InputError, raise_collected
from ..regimen import Dose, Regimen
from ..units import normalize_unit

REGIMEN_COLUMNS = ("day", "dose", "unit", "route", "infusion_h", "repeat_every_days", "repeat_until_day", "label")
LABEL_COLUMNS = ("drug", "regimen", "dose_no", "day", "dose", "unit", "route", "infusion_h", "repeat_every_days",
                 "repeat_until_day", "note", "source")
TABLE_ROUTES = ("SC", "IV", "IV_bolus", "IV_continuous", "IP", "IV_infusion")
_ROUTES_ALLOWED = f"{', '.join(TABLE_ROUTES)} (bolus = IV_bolus)"
_REQUIRED = ("day", "dose", "unit", "route")
_DOSE_FIELDS = {"time": "day", "amount": "dose", "unit": "unit", "route": "route", "duration": "infusion_h",
                "ii": "repeat_every_days", "addl": "repeat_until_day", "ss": "steady_state"}


def default_label_table():
    """The label regimen table ``data/regimens.csv``, read from the installed package data (``qsp._data``)."""
    from .resources import data_file

    return data_file("regimens.csv")


# --------------------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------------------
def _err(row: int | None, line: int | None, fld: str, msg: str) -> InputError:
    where = []
    if row is not None:
        where.append(f"data row {row}")
    if line is not None:
        where.append(f"(file line {line})")
    prefix = " ".join(where)
    e = InputError(f"{prefix}, {fld}: {msg}" if prefix else f"{fld}: {msg}", field=fld)
    e.row = row
    return e


def _blank(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and v.strip() == ""


def _read_rows(source) -> tuple[list[str], list[dict], str]:
    """Header (lower case) and rows as dicts with ``_row`` (1-based data row) and ``_line`` (file line)."""
    if isinstance(source, pd.DataFrame):
        header = [str(c).strip().lower() for c in source.columns]
        recs = []
        for k, vals in enumerate(source.itertuples(index=False, name=None)):
            d = {h: ("" if _blank(v) else str(v).strip()) for h, v in zip(header, vals)}
            d.update(_row=k + 1, _line=None)
            recs.append(d)
        return header, recs, "<DataFrame>"
    if hasattr(source, "read"):
        text, name = source.read(), getattr(source, "name", "<stream>")
    else:
        p = Path(source)
        if not p.exists():
            raise InputError(f"file not found: {p}", field="regimen")
        if p.is_dir():
            raise InputError(f"{p} is a directory, not a regimen table", field="regimen")
        try:
            text, name = p.read_text(encoding="utf-8-sig"), str(p)
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read {p}: {e}", field="regimen") from None
    reader = csv.reader(io.StringIO(text))
    header = None
    recs = []
    n = 0
    errors = []
    for cells in reader:
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip().lower() for c in cells]
            continue
        n += 1
        if len(cells) != len(header):
            errors.append(_err(n, line, "row", f"has {len(cells)} fields but the header has {len(header)}"))
            continue
        d = {h: c.strip() for h, c in zip(header, cells)}
        d.update(_row=n, _line=line)
        recs.append(d)
    if header is None:
        raise InputError(f"{name}: the regimen table is empty (no header)", field="regimen")
    raise_collected(errors)
    return header, recs, name


def _check_header(header: Sequence[str], required: Sequence[str]) -> None:
    errors = []
    for c in required:
        if c not in header:
            errors.append(_err(None, None, c, f"required column {c!r} is missing (header: {', '.join(header)})"))
    dup = sorted({h for h in header if header.count(h) > 1})
    for h in dup:
        errors.append(_err(None, None, h, f"column {h!r} appears more than once"))
    raise_collected(errors)


def _number(rec: dict, name: str, errors: list, *, required=False, positive=False, nonneg=False):
    v = rec.get(name, "")
    r, ln = rec["_row"], rec["_line"]
    if _blank(v):
        if required:
            errors.append(_err(r, ln, name, f"{name} is required and is empty"))
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        errors.append(_err(r, ln, name, f"not a number: {v!r}"))
        return None
    if not math.isfinite(x):
        errors.append(_err(r, ln, name, f"must be a finite number, got {v!r}"))
        return None
    if positive and not x > 0:
        errors.append(_err(r, ln, name, f"must be positive, got {v}"))
        return None
    if nonneg and x < 0:
        errors.append(_err(r, ln, name, f"must be non-negative, got {v}"))
        return None
    return x


def _table_route(route: str) -> str | None:
    """The :class:`~qsp.regimen.Dose` route of a table route (``IV`` is an infusion), or None if unknown."""
    return {"sc": "SC", "ip": "IP", "iv": "IV_infusion", "iv_infusion": "IV_infusion", "iv_continuous": "IV_continuous",
            "iv_bolus": "IV_bolus", "bolus": "IV_bolus"}.get(route.strip().lower())


def _parse_dose_rows(recs: list[dict], *, until_day: float | None, day_origin: float | None,
                     errors: list) -> tuple[list[tuple[dict, Dose]], float]:
    """Doses (in days, ``time = day - origin``) from table rows; errors collected."""
    days = []
    for rec in recs:
        try:
            days.append(float(rec.get("day", "")))
        except (TypeError, ValueError):
            pass
    origin = day_origin if day_origin is not None else (0.0 if days and min(days) < 1 else 1.0)
    out = []
    for rec in recs:
        r, ln = rec["_row"], rec["_line"]
        n0 = len(errors)
        day = _number(rec, "day", errors, required=True, nonneg=True)
        dose = _number(rec, "dose", errors, required=True)
        if dose is not None and not dose > 0:
            errors.append(_err(r, ln, "dose", f"must be a positive amount, got {rec.get('dose')}"))
        unit = None
        if _blank(rec.get("unit")):
            errors.append(_err(r, ln, "unit", "unit is required and is empty"))
        else:
            try:
                unit = normalize_unit(rec["unit"])
            except InputError as e:
                errors.append(_err(r, ln, "unit", str(e).removeprefix("unit: ")))
        inf_h = _number(rec, "infusion_h", errors, positive=True)
        every = _number(rec, "repeat_every_days", errors, positive=True)
        until = _number(rec, "repeat_until_day", errors, nonneg=True)
        route = None
        if _blank(rec.get("route")):
            errors.append(_err(r, ln, "route", f"route is required and is empty; allowed: {_ROUTES_ALLOWED}"))
        else:
            route = _table_route(rec["route"])
            if route is None:
                errors.append(_err(r, ln, "route", f"unknown route {rec['route']!r}; allowed: {_ROUTES_ALLOWED}"))
        if route is not None:
            no_duration = inf_h is None and _blank(rec.get("infusion_h"))
            if route == "IV_infusion" and no_duration and rec["route"].strip().lower() == "iv":
                errors.append(_err(r, ln, "infusion_h", "route IV needs infusion_h (hours); write IV_bolus for a "
                                   "bolus"))
            elif route in ("IV_infusion", "IV_continuous") and no_duration:
                errors.append(_err(r, ln, "infusion_h", f"route {rec['route']} is an infusion and needs infusion_h "
                                   "(hours)"))
            if route == "IV_bolus" and inf_h is not None:
                errors.append(_err(r, ln, "infusion_h", f"route {rec['route']} takes no infusion_h (use IV for an "
                                   "IV infusion)"))
        if until is not None and every is None and _blank(rec.get("repeat_every_days")):
            errors.append(_err(r, ln, "repeat_until_day", "repeat_until_day needs repeat_every_days"))
        ss = _number(rec, "steady_state", errors, nonneg=True)
        if ss is not None and ss not in (0.0, 1.0, 2.0):
            errors.append(_err(r, ln, "steady_state", f"must be 0, 1 or 2 (NONMEM SS), got {rec.get('steady_state')}"))
        elif ss and every is None and _blank(rec.get("repeat_every_days")):
            errors.append(_err(r, ln, "steady_state", "a steady-state dose needs repeat_every_days (its interval)"))
        if until is not None and day is not None and until < day:
            errors.append(_err(r, ln, "repeat_until_day", f"repeat_until_day={_g(until)} is before the dose's "
                               f"day={_g(day)}"))
        if every is not None and until is None and _blank(rec.get("repeat_until_day")) and until_day is None:
            errors.append(_err(r, ln, "repeat_until_day", f"the dose repeats every {_g(every)} days with no "
                               "repeat_until_day: give one, or pass a horizon (until_day / --days)"))
        if len(errors) > n0:
            continue
        addl, ii = 0, 0.0
        ss_infusion = bool(ss) and inf_h is not None
        if ss_infusion and until is not None and until > day:
            errors.append(_err(r, ln, "repeat_until_day", "a steady-state infusion does not repeat (NONMEM: no ADDL "
                               "on a steady-state infusion); leave repeat_until_day blank or equal to day and give "
                               "later infusions their own rows"))
            continue
        if every is not None:
            end = until if until is not None else until_day
            ii = every
            # a steady-state infusion is the pattern up to its day only: the horizon does not repeat it
            addl = 0 if ss_infusion else max(0, int(math.floor((end - day) / every + 1e-9)))
        label = rec.get("label", "") or rec.get("note", "") or ""
        try:
            d = Dose(day - origin, dose, unit, route, None if inf_h is None else inf_h / 24.0, ii=ii, addl=addl,
                     label=label, ss=int(ss or 0))
        except InputError as e:
            fld = _DOSE_FIELDS.get(e.field, e.field or "row")
            errors.append(_err(r, ln, fld, str(e).removeprefix(f"{e.field}: ")))
            continue
        out.append((rec, d))
    return out, origin


def _g(x: float) -> str:
    return f"{x:g}"


def _check_one_dose_a_day(doses: Sequence[tuple[dict, Dose]], origin: float, errors: list) -> None:
    """An error (field ``day``) for each pair of rows that give a dose on the same day, repeats expanded."""
    first: dict[float, dict] = {}  # day (rounded) -> the row that first doses on it
    seen_pairs: set[tuple[int, int]] = set()
    for rec, d in doses:
        for k in range(d.addl + 1):
            day = d.time + k * d.ii + origin
            key = round(day, 9)
            other = first.setdefault(key, rec)
            if other is rec:
                continue
            pair = (other["_row"], rec["_row"])
            if pair in seen_pairs:
                continue
            seen_pairs.add(pair)
            where = f"data rows {pair[0]} and {pair[1]}"
            if other["_line"] is not None and rec["_line"] is not None:
                where += f" (file lines {other['_line']} and {rec['_line']})"
            e = InputError(f"{where}, day: both give a dose on day {_g(day)}; a split dose goes on consecutive days "
                           f"(or at a fractional day such as {_g(day + 0.5)})", field="day")
            e.row, e.rows = rec["_row"], pair
            errors.append(e)


# --------------------------------------------------------------------------------------------------
# plain regimen tables
# --------------------------------------------------------------------------------------------------
def read_regimen_csv(source, *, until_day: float | None = None, day_origin: float | None = None,
                     name: str = "") -> Regimen:
    """Read a regimen table (a path, open file or DataFrame) into a :class:`~qsp.regimen.Regimen` in days.

    Args:
        until_day: horizon (inclusive, in the table's day numbering) for doses that repeat without a
            ``repeat_until_day``.
        day_origin: the day that is model time 0 (default: 1, or 0 when the table has a day 0).
    """
    header, recs, src = _read_rows(source)
    _check_header(header, _REQUIRED)
    if not recs:
        raise InputError(f"{src}: the regimen table has no rows", field="regimen")
    errors: list[InputError] = []
    doses, origin = _parse_dose_rows(recs, until_day=until_day, day_origin=day_origin, errors=errors)
    _check_one_dose_a_day(doses, origin, errors)
    raise_collected(errors)
    return Regimen(tuple(d for _, d in doses), time_unit="day", name=name, source=src)


def _sig12(x: float) -> float:
    return float(f"{x:.12g}")


def _cell(x) -> str:
    if _blank(x):
        return ""
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)
    return str(x)


def regimen_to_table(regimen: Regimen, *, day_origin: float = 1) -> pd.DataFrame:
    """The regimen as a table with columns :data:`REGIMEN_COLUMNS` (days numbered from ``day_origin``)."""
    reg = regimen.in_unit("day")
    rows = []
    for d in reg.doses:
        if d.reset or d.cmt is not None or d.rate is not None or (d.is_infusion and d.keep != "rate"):
            raise InputError(f"dose at day {d.time + day_origin:g}: resets, explicit compartments, constant "
                             "infusions at steady state and infusions that keep their duration under F cannot be "
                             "written to a plain regimen table (use the NONMEM writer)", field="regimen")
        day = _sig12(d.time + day_origin)
        route = "IV" if d.route == "IV_infusion" else d.route  # IV_bolus stays IV_bolus: a bare IV needs infusion_h
        rows.append(dict(day=day, dose=d.amount, unit=d.unit, route=route,
                         infusion_h=None if d.duration is None else _sig12(d.duration * 24.0),
                         repeat_every_days=d.ii if d.ii > 0 else None,
                         repeat_until_day=_sig12(day + d.addl * d.ii) if d.ii > 0 else None,
                         label=d.label, steady_state=d.ss))
    cols = list(REGIMEN_COLUMNS) + (["steady_state"] if any(r["steady_state"] for r in rows) else [])
    return pd.DataFrame(rows, columns=cols)


def write_regimen_csv(regimen: Regimen, path=None, *, day_origin: float = 1) -> str:
    """Write a regimen table (CSV); returns the text and writes it to ``path`` if given."""
    df = regimen_to_table(regimen, day_origin=day_origin)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(df.columns)
    for row in df.itertuples(index=False, name=None):
        w.writerow([_cell(v) for v in row])
    text = buf.getvalue()
    if path is not None:
        p = Path(path)
        tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
    return text


# --------------------------------------------------------------------------------------------------
# the label library
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelRegimen:
    """A label regimen of one drug.

    Attributes:
        drug, name: as in the table (``regimen`` column).
        regimen: the drug's doses (days; time 0 = day ``day_origin``).
        pretreatment: doses of another drug given before it (``dose_no`` 0 rows), on the same clock.
        pretreatment_notes: their notes (what the drug is).
        sources: the distinct sources cited by the rows.
    """

    drug: str
    name: str
    regimen: Regimen
    pretreatment: Regimen = field(default_factory=lambda: Regimen((), time_unit="day"))
    pretreatment_notes: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    day_origin: float = 1.0


def _load_table(table) -> tuple[list[str], list[dict], str]:
    header, recs, src = _read_rows(default_label_table() if table is None else table)
    _check_header(header, ("drug", "regimen", "dose_no") + _REQUIRED)
    return header, recs, src


def label_regimens(table=None) -> pd.DataFrame:
    """The drugs and regimens in the label table: columns ``drug``, ``regimen``, ``n_rows``, ``source``."""
    _, recs, _ = _load_table(table)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in recs:
        key = (rec["drug"], rec["regimen"])
        e = out.setdefault(key, dict(drug=key[0], regimen=key[1], n_rows=0, source=rec.get("source", "")))
        e["n_rows"] += 1
    return pd.DataFrame(list(out.values()), columns=["drug", "regimen", "n_rows", "source"])


def load_label_regimen(drug: str, regimen: str | None = None, *, table=None, until_day: float | None = None,
                       day_origin: float | None = None) -> LabelRegimen:
    """The label regimen of ``drug`` from the label table (default ``data/regimens.csv``).

    Args:
        drug: drug name (case-insensitive).
        regimen: regimen name (``label``, ``label_weekly``, ...); default: the drug's first listed one.
        until_day: horizon (inclusive day) for maintenance doses without ``repeat_until_day``.
        day_origin: the day that is time 0 (default 1, or 0 when the regimen numbers from day 0).
    """
    _, recs, src = _load_table(table)
    key = str(drug).strip().lower()
    mine = [r for r in recs if r["drug"].strip().lower() == key]
    if not mine:
        drugs = sorted({r["drug"] for r in recs})
        raise InputError(f"unknown drug {drug!r}; the label table has: {', '.join(drugs)}", field="drug")
    names = list(dict.fromkeys(r["regimen"] for r in mine))
    if regimen is None:
        regimen = names[0]
    if regimen not in names:
        raise InputError(f"unknown regimen {regimen!r} for {mine[0]['drug']}; allowed: {', '.join(names)}",
                         field="regimen")
    rows = [r for r in mine if r["regimen"] == regimen]
    errors: list[InputError] = []
    seen: dict[int, int] = {}
    for rec in rows:
        n = _number(rec, "dose_no", errors, required=True, nonneg=True)
        if n is None:
            continue
        if not n.is_integer():
            errors.append(_err(rec["_row"], rec["_line"], "dose_no", f"must be an integer, got {rec['dose_no']}"))
            continue
        if int(n) in seen:
            errors.append(_err(rec["_row"], rec["_line"], "dose_no",
                               f"dose_no {int(n)} repeats data row {seen[int(n)]} of {drug}/{regimen}"))
        seen[int(n)] = rec["_row"]
        rec["_dose_no"] = int(n)
    raise_collected(errors)
    doses, origin = _parse_dose_rows(rows, until_day=until_day, day_origin=day_origin, errors=errors)
    # the pretreatment (dose_no 0) is another drug: it may share a day with the drug's own doses
    _check_one_dose_a_day([(rec, d) for rec, d in doses if rec["_dose_no"] > 0], origin, errors)
    _check_one_dose_a_day([(rec, d) for rec, d in doses if rec["_dose_no"] == 0], origin, errors)
    raise_collected(errors)
    main = tuple(d for rec, d in doses if rec["_dose_no"] > 0)
    pre = tuple(d for rec, d in doses if rec["_dose_no"] == 0)
    if not main:
        raise InputError(f"{drug}/{regimen} has no doses of the drug itself (only dose_no 0 rows)", field="dose_no")
    sources = tuple(dict.fromkeys(r.get("source", "") for r in rows if r.get("source")))
    return LabelRegimen(drug=mine[0]["drug"], name=regimen,
                        regimen=Regimen(main, time_unit="day", name=f"{mine[0]['drug']} {regimen}", source=src),
                        pretreatment=Regimen(pre, time_unit="day", name="pretreatment", source=src),
                        pretreatment_notes=tuple(d.label for d in pre), sources=sources, day_origin=origin)


__all__ = ["REGIMEN_COLUMNS", "LABEL_COLUMNS", "LabelRegimen", "default_label_table", "label_regimens",
           "load_label_regimen", "read_regimen_csv", "regimen_to_table", "write_regimen_csv"]
