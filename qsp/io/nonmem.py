"""NONMEM-style datasets in and out.

Reading
-------
:func:`read_nonmem` reads a dataset with the usual NONMEM data items

======  ==========================================================================================
ID      subject identifier (numeric; the rows of one subject must be contiguous)          required
TIME    time, in hours by default (``time_unit="day"`` for days)                           required
AMT     dose amount (the model's amount unit, ``mg`` for the built-in PK models)
EVID    0 observation, 1 dose, 2 other (output only), 3 reset, 4 reset and dose
CMT     compartment number, mapped by the model's ``cmt`` table to (state, route)
RATE    0 bolus; > 0 zero-order infusion of AMT over AMT/RATE; -1 / -2 rate / duration modelled
II      interdose interval of the additional doses
ADDL    number of additional doses (every II after this one)
SS      steady state: 0 no, 1 reset + steady state, 2 steady state added (optional)
MDV     missing dependent variable (1 on dose/other rows)
DV      observed value (``.`` = missing)
======  ==========================================================================================

plus any other columns, kept as covariates (``WT``, ``AGE``, ...; ``R<n>``/``D<n>`` are modelled rates and
durations). The file is comma separated, or
whitespace separated when the header has no comma. ``.`` and empty cells mean "not given": 0 for AMT,
RATE, II, ADDL, a default for EVID/MDV/CMT, missing for DV. Lines starting with ``#`` are comments.

Defaults, as in NONMEM: EVID, when the column is absent or the cell empty, is 1 where AMT > 0, else 2
where MDV = 1, else 0. MDV, when absent, is 0 on observation rows and 1 otherwise (an MDV of 0 on a
non-observation row is set to 1, as NONMEM does). CMT is required on dose rows unless the caller names a
``default_cmt``; on other rows it is not used (outputs come from the model) and any integer is accepted.

Validation happens before anything runs: every malformed record is reported, all at once, as
:class:`~qsp.errors.InputErrors`; each message names the data row (1-based, counting data rows only:
the header and comment lines are not counted; the file line is given too) and the field.

Size limits (:mod:`qsp.limits`) are checked on the counts, before any regimen is built or repeat
expanded, so that a typo such as ``ADDL=10000000`` is refused at once instead of running for hours:

* dose events per ID (``QSP_MAX_EVENTS``, default 5000): each dose row (EVID 1/4) counts ``ADDL + 1``,
  each reset (EVID 3/4) 1 more. The message names the first row that takes the ID over the limit
  (field ADDL when that row has ADDL > 0, else ID);
* IDs per dataset (``QSP_MAX_IDS``, default 100000): the message names the first row of the first ID
  over the limit.

Conversion to regimens (one :class:`~qsp.regimen.Regimen` per ID, in the dataset's time unit)
------------------------------------------------------------------------------------------
* A dose into CMT ``n`` with ``model.cmt[n] = (state, route)`` becomes ``Dose(route=route)``, with
  ``Dose.cmt = state`` only when the state differs from the route's default state. AMT is taken in the
  model's amount unit (``mg`` for the PK models: 1:1).
* ``RATE > 0``: a zero-order input of AMT over AMT/RATE into that compartment (the depot too), rate kept when
  the compartment's F is not 1 (NONMEM: F changes the duration); ``RATE = -1`` with ``R<n>``: rate ``R<n>`` kept;
  ``RATE = -2`` with ``D<n>``: duration ``D<n>`` kept, F scales the rate. ``R<n>``/``D<n>`` come from the caller's
  ``params`` or from a data column of that name (not a covariate).
* ``SS`` (0, 1, 2): a steady-state dose (:mod:`qsp.steady_state`): ``SS=1`` resets and sets the steady state of
  the dose every II (what earlier records still have pending is cancelled), ``SS=2`` adds it to the current state;
  ``SS>0, AMT=0, RATE>0, II=0`` is a constant infusion at steady state. Malformed SS records (no II, ADDL on a
  steady-state infusion, II on a constant infusion, SS on a non-dose row, SS=3) are refused naming row and field.
* II and ADDL are kept on the dose (the engine expands them).
* EVID 3 (reset) becomes ``Dose(amount=0, reset=True)`` on a route without lag. EVID 4 (reset and dose)
  becomes that reset followed by an ordinary dose at the same time: this is NONMEM's meaning (the system
  is reset at TIME, the dose is then absorbed after its lag, and the additional doses of ADDL do not
  reset), which a single ``Dose(reset=True)`` would not give for a lagged route or with ADDL.
* TIME must not decrease within an ID, except on an EVID 3/4 row (NONMEM lets the clock restart after a
  reset). The subject then keeps one continuous internal clock: a reset row whose TIME goes back is
  placed at the previous row's time and every later row of the ID is shifted by the same offset. The
  regimen and the output times use that internal clock (the table keeps the TIME as read).

Output times: every row gets a prediction (:attr:`Subject.times`, one per row). An observation or
other-type row (EVID 0/2) that comes *before* a dose or reset row with the same TIME in the same ID
gets ``left=True`` (the pre-dose value, see ``times_left`` in :func:`qsp.simulate.simulate`); all other
rows are right-continuous (a dose row's own prediction is the value after the dose).

Writing
-------
:func:`to_nonmem` turns regimens (plus optional observation times, DV and covariates) into a dataset
table; :func:`write_nonmem` writes it as CSV with ``.`` for missing values. An EVID 3 reset followed by
a dose at the same time is written as one EVID 4 row; a reset dose with repeats is written out as one
row per repeat (the engine resets at every repeat), refused when that would exceed ``QSP_MAX_EVENTS``
rows for one ID (other repeats stay one row with II/ADDL). Infusion RATEs (and nothing else) are
written with 12 significant digits, so that read -> write -> read gives equal regimens and times.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError, raise_collected
from ..limits import LIMITS, limit
from ..model import Model
from ..regimen import SS_MODES, ZERO_ORDER_ROUTES, Dose, Regimen, check_time_unit, time_factor
from ..units import convert_dose

NONMEM_COLUMNS = ("ID", "TIME", "AMT", "EVID", "CMT", "RATE", "II", "ADDL", "MDV", "DV")
REQUIRED_COLUMNS = ("ID", "TIME")
RESERVED_COLUMNS = NONMEM_COLUMNS + ("SS",)
SS_VALUES = SS_MODES  # 0 not steady state, 1 reset + steady state, 2 steady state added (NONMEM's 3 is not supported)
EVID_MEANING = {0: "observation", 1: "dose", 2: "other (output only)", 3: "reset", 4: "reset and dose"}
DOSE_EVIDS = (1, 4)
EVENT_EVIDS = (1, 3, 4)  # rows that change the state at their time
_DOSE_FIELDS = {"time": "TIME", "amount": "AMT", "duration": "RATE", "ii": "II", "addl": "ADDL", "unit": "AMT",
                "route": "CMT"}


# --------------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------------
@dataclass
class Subject:
    """One ID of a dataset.

    Attributes:
        id: the ID as read (an int when integral).
        regimen: its doses, in the dataset's time unit.
        rows: positions (0-based) of its rows in the dataset table, in file order.
        times: one output time per row (the internal clock, see the module docstring), non-decreasing.
        left: per row, True where the prediction is the pre-dose value (an observation before a dose
            record at the same TIME).
        evid, mdv, dv: per row.
        covariates: covariate values at the subject's first row (``table`` has them per row).
    """

    id: Any
    regimen: Regimen
    rows: np.ndarray
    times: np.ndarray
    left: np.ndarray
    evid: np.ndarray
    mdv: np.ndarray
    dv: np.ndarray
    covariates: dict[str, Any] = field(default_factory=dict)

    @property
    def is_output(self) -> np.ndarray:
        """Rows that are not dose/reset events (EVID 0 and 2)."""
        return np.isin(self.evid, (0, 2))

    @property
    def obs_times(self) -> np.ndarray:
        return self.times[self.is_output]

    @property
    def obs_left(self) -> np.ndarray:
        return self.left[self.is_output]

    @property
    def obs_evid(self) -> np.ndarray:
        return self.evid[self.is_output]

    @property
    def obs_dv(self) -> np.ndarray:
        return self.dv[self.is_output]


@dataclass
class NonmemDataset:
    """A validated dataset: the table as read, the normalized table and one :class:`Subject` per ID.

    ``raw`` holds the cells as text, exactly as in the file (the CLI writes it back with predictions);
    ``table`` the parsed values with NONMEM defaults filled in (DV missing as NaN, CMT missing as NaN,
    covariates numeric where every value is a number). ``data_rows`` and ``lines`` give each row's
    1-based data row number and file line.
    """

    raw: pd.DataFrame
    table: pd.DataFrame
    subjects: list[Subject]
    time_unit: str
    covariate_names: tuple[str, ...]
    lines: np.ndarray
    source: str = ""

    @property
    def ids(self) -> list:
        return [s.id for s in self.subjects]

    @property
    def regimens(self) -> list[Regimen]:
        return [s.regimen for s in self.subjects]

    def __len__(self) -> int:
        return len(self.subjects)


# --------------------------------------------------------------------------------------------------
# reading the text
# --------------------------------------------------------------------------------------------------
def _err(row: int | None, line: int | None, fld: str, msg: str) -> InputError:
    where = []
    if row is not None:
        where.append(f"data row {row}")
    if line is not None:
        where.append(f"(file line {line})")
    prefix = " ".join(where)
    text = f"{prefix}, {fld}: {msg}" if prefix else f"{fld}: {msg}"
    e = InputError(text, field=fld)
    e.row = row
    return e


def _raise_sorted(errors: list[InputError]) -> None:
    """Raise the collected errors in row order (header errors first)."""
    raise_collected(sorted(errors, key=lambda e: -1 if e.row is None else e.row))


def _read_text(source) -> tuple[str, str]:
    """The text of a file path (or file-like object) and a name for messages."""
    if hasattr(source, "read"):
        return source.read(), getattr(source, "name", "<stream>")
    path = Path(source)
    if not path.exists():
        raise InputError(f"file not found: {path}", field="dataset")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a dataset file", field="dataset")
    try:
        return path.read_text(encoding="utf-8-sig"), str(path)
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not a UTF-8 text file ({e.reason})", field="dataset") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}", field="dataset") from None


def _split_table(text: str, sep: str | None) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows of cells and the file line of each row. Comment lines (``#``) and blank lines skipped."""
    lines = text.splitlines()
    header_i = None
    for i, ln in enumerate(lines):
        s = ln.strip()
        if not s:
            continue
        if s.startswith("#"):
            # a header written as a comment (``#ID,TIME,...``) counts as the header if it is the first line
            toks = {t.strip().upper() for t in s.lstrip("#").replace(",", " ").split()}
            if header_i is None and {"ID", "TIME"} <= toks:
                header_i = i
                break
            continue
        header_i = i
        break
    if header_i is None:
        raise InputError("the dataset is empty (no header line)", field="dataset")
    head = lines[header_i].strip().lstrip("#").strip()
    if sep is None:
        sep = "," if "," in head else "whitespace"

    def cells(s: str) -> list[str]:
        if sep == "whitespace":
            return s.split()
        return [c.strip() for c in next(csv.reader([s], delimiter=sep))]

    header = cells(head)
    rows, line_no = [], []
    for i in range(header_i + 1, len(lines)):
        s = lines[i].strip()
        if not s or s.startswith("#"):
            continue
        rows.append(cells(s))
        line_no.append(i + 1)
    return header, rows, line_no


def _is_empty(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True  # an empty cell of a DataFrame
    return isinstance(v, str) and v.strip() in ("", ".")


def _num(v) -> float | None:
    """Parse a cell: None when empty or ``.``; a float otherwise (NaN for "nan"); ValueError if not a number."""
    if _is_empty(v):
        return None
    if isinstance(v, (bool, np.bool_)):
        raise ValueError(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return float(str(v).strip())


def _as_id(x: float):
    return int(x) if float(x).is_integer() else x


# --------------------------------------------------------------------------------------------------
# validation and conversion
# --------------------------------------------------------------------------------------------------
def _lag_free_route(model: Model) -> str:
    if "IV_bolus" in model.routes:
        return "IV_bolus"
    for name, r in model.routes.items():
        if r.lag_param is None:
            return name
    return model.route_names[0]


def _route_default_state(model: Model, route: str) -> str | None:
    """The state a route doses into by default (the same fallback as :mod:`qsp.events`)."""
    key = route if route in model.routes else ("IV_bolus" if route in ("IV_infusion", "IV_continuous") else route)
    r = model.routes.get(key)
    return None if r is None else r.state


def _fmt(x) -> str:
    if x is None:
        return "empty"
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return repr(x) if isinstance(x, float) else str(x)


def read_nonmem(source, model: Model, *, time_unit: str = "h", params: Mapping[str, float] | None = None,
                default_cmt: int | None = None, sep: str | None = None) -> NonmemDataset:
    """Read and validate a NONMEM-style dataset; build one regimen and one set of output times per ID.

    Args:
        source: a file path, an open text file, or a pandas DataFrame (rows numbered from 1).
        model: gives the compartment map (``model.cmt``), the routes and the amount unit.
        time_unit: unit of TIME, II and RATE's time: ``"h"`` (default) or ``"day"``.
        params: values for modelled rates/durations: ``R<n>`` for RATE = -1 and ``D<n>`` for RATE = -2
            doses into compartment ``n`` (in the dataset's amount and time units).
        default_cmt: compartment for dose rows that give no CMT (none: CMT is required on dose rows).
        sep: cell separator; default: ``,`` when the header has a comma, else whitespace.

    Raises:
        InputError / InputErrors: every malformed record, each naming its data row and field.
    """
    check_time_unit(time_unit)
    params = dict(params or {})
    for k, v in params.items():
        if not (isinstance(k, str) and len(k) > 1 and k[0] in "RD" and k[1:].isdigit()):
            raise InputError(f"dataset parameters are R<cmt> or D<cmt> (e.g. D2), got {k!r}", field="params")
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise InputError(f"{k} must be a positive number, got {v!r}", field=k)
    if default_cmt is not None and default_cmt not in model.cmt:
        raise InputError(f"default compartment {default_cmt} is not one of the model's CMT numbers "
                         f"{sorted(model.cmt)}", field="default_cmt")

    # --- the cells ------------------------------------------------------------------------------
    if isinstance(source, pd.DataFrame):
        header = [str(c) for c in source.columns]
        rows = [list(r) for r in source.itertuples(index=False, name=None)]
        line_no: list[int | None] = [None] * len(rows)
        src_name = "<DataFrame>"
    else:
        text, src_name = _read_text(source)
        header, rows, line_no = _split_table(text, sep)

    errors: list[InputError] = []
    names = [h.strip() for h in header]
    canon = [n.upper() if n.upper() in RESERVED_COLUMNS else n for n in names]
    seen = set()
    for n in canon:
        if n in seen:
            errors.append(_err(None, None, n, f"column {n} appears more than once in the header"))
        seen.add(n)
    for n in REQUIRED_COLUMNS:
        if n not in canon:
            errors.append(_err(None, None, n, f"required column {n} is missing (header: {', '.join(names)})"))
    if any(not n for n in canon):
        errors.append(_err(None, None, "header", "the header has an empty column name"))
    _raise_sorted(errors)
    if not rows:
        raise InputError("the dataset has a header but no data rows", field="dataset")

    ncol = len(canon)
    col = {n: i for i, n in enumerate(canon)}
    # R<n>/D<n> data items are modelled rates/durations of RATE -1/-2 doses, not covariates
    covariate_names = tuple(n for n in canon if n not in RESERVED_COLUMNS and not _is_modelled_name(n))

    # --- per-row fields -------------------------------------------------------------------------
    recs = []
    for k, cells_ in enumerate(rows):
        r, ln = k + 1, line_no[k]
        if len(cells_) != ncol:
            errors.append(_err(r, ln, "row", f"has {len(cells_)} fields but the header has {ncol}"))
            recs.append(None)
            continue
        n_err = len(errors)

        def get(name):
            return cells_[col[name]] if name in col else None

        def number(name, *, required=False):
            v = get(name)
            try:
                x = _num(v)
            except (TypeError, ValueError):
                errors.append(_err(r, ln, name, f"not a number: {v!r}"))
                return None
            if x is None:
                if required:
                    errors.append(_err(r, ln, name, f"{name} is required and is empty"))
                return None
            if not math.isfinite(x):
                errors.append(_err(r, ln, name, f"must be a finite number, got {v!r}"))
                return None
            return x

        def integer(name, allowed=None, *, nonneg=False):
            x = number(name)
            if x is None:
                return None
            if not x.is_integer():
                errors.append(_err(r, ln, name, f"must be an integer, got {_fmt(x)}"))
                return None
            x = int(x)
            if nonneg and x < 0:
                errors.append(_err(r, ln, name, f"must be a non-negative integer, got {x}"))
                return None
            if allowed is not None and x not in allowed:
                errors.append(_err(r, ln, name, f"{name}={x} is not allowed; allowed: "
                                   + ", ".join(f"{a}" for a in allowed)
                                   + (" (" + ", ".join(f"{a} {EVID_MEANING[a]}" for a in allowed) + ")"
                                      if name == "EVID" else "")))
                return None
            return x

        rid = number("ID", required=True)
        t = number("TIME", required=True)
        amt = number("AMT")
        evid = integer("EVID", allowed=tuple(EVID_MEANING))
        cmt = integer("CMT")
        rate = number("RATE")
        ii = number("II")
        addl = integer("ADDL")
        mdv = integer("MDV", allowed=(0, 1))
        dv = None
        try:
            dv = _num(get("DV"))
        except (TypeError, ValueError):
            errors.append(_err(r, ln, "DV", f"not a number: {get('DV')!r} (use . for a missing value)"))
        ss = integer("SS", allowed=SS_VALUES)
        if len(errors) > n_err:
            recs.append(_partial(rid, t, evid, r, ln, k))
            continue
        amt = 0.0 if amt is None else amt
        if evid is None:
            evid = 1 if amt > 0 else (2 if mdv == 1 else 0)
        mdv = (0 if evid == 0 else 1) if mdv is None or evid != 0 else mdv
        rate = 0.0 if rate is None else rate
        ii = 0.0 if ii is None else ii
        addl = 0 if addl is None else addl
        ss = 0 if ss is None else ss
        is_dose = evid in DOSE_EVIDS
        constant_ss = is_dose and ss > 0 and amt == 0 and rate > 0
        if is_dose:
            if ss > 0:
                errors.extend(_ss_errors(r, ln, amt, rate, ii, addl, ss))
            if not amt > 0 and not constant_ss:
                errors.append(_err(r, ln, "AMT", f"a dose record (EVID {evid}) needs a positive AMT, got "
                                   f"{_fmt(amt) if get('AMT') is not None else 'no AMT column'}"))
            if cmt is None and default_cmt is None:
                errors.append(_err(r, ln, "CMT", f"a dose record (EVID {evid}) needs a CMT; allowed: "
                                   + ", ".join(f"{c} ({s})" for c, (s, _) in sorted(model.cmt.items()))))
            elif (cmt if cmt is not None else default_cmt) not in model.cmt:
                errors.append(_err(r, ln, "CMT", f"unknown compartment CMT={cmt} for model {model.name}; "
                                   "allowed: " + ", ".join(f"{c} ({s})" for c, (s, _) in sorted(model.cmt.items()))))
            if rate < 0 and rate not in (-1.0, -2.0):
                errors.append(_err(r, ln, "RATE", f"negative RATE={_fmt(rate)} is not allowed; RATE is 0 (bolus), "
                                   "> 0 (infusion), -1 (modelled rate R<cmt>) or -2 (modelled duration D<cmt>)"))
            if ii < 0:
                errors.append(_err(r, ln, "II", f"must be non-negative, got {_fmt(ii)}"))
            if addl < 0:
                errors.append(_err(r, ln, "ADDL", f"must be a non-negative integer, got {addl}"))
            if addl > 0 and not ii > 0:
                errors.append(_err(r, ln, "ADDL", f"ADDL={addl} needs a positive II (interdose interval), "
                                   f"got II={_fmt(ii)}"))
        else:
            if amt != 0:
                errors.append(_err(r, ln, "AMT", f"an EVID {evid} ({EVID_MEANING[evid]}) record takes no dose, got "
                                   f"AMT={_fmt(amt)}; use EVID 1 (dose) or 4 (reset and dose)"))
            for name, v in (("RATE", rate), ("II", ii), ("ADDL", addl), ("SS", ss)):
                if v != 0:
                    errors.append(_err(r, ln, name, f"only dose records (EVID 1/4) take {name}; got {name}="
                                       f"{_fmt(float(v))} on an EVID {evid} ({EVID_MEANING[evid]}) record"))
        if len(errors) > n_err:
            recs.append(_partial(rid, t, evid, r, ln, k))
            continue
        recs.append(dict(ID=rid, TIME=t, AMT=amt, EVID=evid, CMT=cmt, RATE=rate, II=ii, ADDL=addl, MDV=mdv,
                         DV=np.nan if dv is None else dv, SS=ss, row=r, line=ln, k=k, valid=True,
                         modelled={n: number(n) for n in canon if _is_modelled_name(n)}))

    # --- IDs contiguous, time order -------------------------------------------------------------
    groups: dict[float, list[dict]] = {}
    order: list[float] = []
    last_id = None
    for rec in recs:
        if rec is None:  # an invalid row (already reported) does not break its ID's block
            continue
        i = rec["ID"]
        if i != last_id and i in groups:
            first = groups[i][0]["row"]
            errors.append(_err(rec["row"], rec["line"], "ID",
                               f"ID {_fmt(i)} appears again after other IDs (its rows start at data row {first}); "
                               "the rows of one ID must be contiguous"))
            continue
        if i not in groups:
            groups[i] = []
            order.append(i)
        groups[i].append(rec)
        last_id = i
    for i in order:
        prev = None
        offset = 0.0
        for rec in groups[i]:
            t = rec["TIME"]
            if prev is not None and t + offset < prev["t_int"]:
                if rec["EVID"] in (3, 4):
                    offset = prev["t_int"] - t
                else:
                    errors.append(_err(rec["row"], rec["line"], "TIME",
                                       f"TIME={_fmt(t)} is before the previous row's TIME={_fmt(prev['TIME'])} "
                                       f"(data row {prev['row']}) within ID {_fmt(i)}; TIME must not decrease "
                                       "within an ID except on a reset record (EVID 3/4)"))
            rec["t_int"] = t + offset
            prev = rec

    # --- size limits: counted, before any regimen is built or repeat expanded --------------------
    limit_errors = _size_limit_errors(groups, order)
    if limit_errors:
        _raise_sorted(errors + limit_errors)

    # --- doses ----------------------------------------------------------------------------------
    lag_free = _lag_free_route(model)
    unit = model.amount_unit
    subj_doses: dict[float, list[Dose]] = {i: [] for i in order}
    for i in order:
        for rec in groups[i]:
            if not rec["valid"] or rec["EVID"] not in EVENT_EVIDS:
                continue
            r, ln = rec["row"], rec["line"]
            try:
                if rec["EVID"] in (3, 4):
                    subj_doses[i].append(Dose(rec["t_int"], 0.0, unit, lag_free, reset=True))
                if rec["EVID"] in DOSE_EVIDS:
                    subj_doses[i].append(_dose_from_record(rec, model, params, default_cmt, unit))
            except InputError as e:
                fld = _DOSE_FIELDS.get(e.field, e.field or "row")
                msg = str(e)
                errors.append(e if getattr(e, "row", None) == r else _err(r, ln, fld, msg))
    _raise_sorted(errors)

    # --- subjects -------------------------------------------------------------------------------
    subjects = []
    for i in order:
        g = groups[i]
        times = np.array([rec["t_int"] for rec in g], dtype=float)
        evid = np.array([rec["EVID"] for rec in g], dtype=int)
        # left: an output row followed, at the same time, by a dose/reset row (one backward pass: linear
        # in the rows, also when many rows share one TIME)
        left = np.zeros(len(g), bool)
        event_after = False
        for a in range(len(g) - 1, -1, -1):
            if a + 1 < len(g) and times[a + 1] != times[a]:
                event_after = False
            if evid[a] in EVENT_EVIDS:
                event_after = True
            else:
                left[a] = event_after
        rows_idx = np.array([rec["k"] for rec in g], dtype=int)
        subjects.append(Subject(id=_as_id(i), regimen=Regimen(tuple(subj_doses[i]), time_unit=time_unit),
                                rows=rows_idx, times=times, left=left, evid=evid,
                                mdv=np.array([rec["MDV"] for rec in g], dtype=int),
                                dv=np.array([rec["DV"] for rec in g], dtype=float)))

    raw = pd.DataFrame([[("" if _is_empty(v) and not isinstance(v, str) else str(v)) for v in cells_]
                        for cells_ in rows], columns=names, dtype=object)
    table = pd.DataFrame({n: [rec[n] for rec in recs] for n in NONMEM_COLUMNS})
    if "SS" in col:
        table["SS"] = [rec["SS"] if rec.get("valid") else np.nan for rec in recs]
    table["ID"] = [_as_id(x) for x in table["ID"]]
    table["CMT"] = pd.array([np.nan if c is None else c for c in table["CMT"]], dtype="float")
    for c in covariate_names:
        vals = [rows[k][col[c]] for k in range(len(rows))]
        try:
            table[c] = [np.nan if _is_empty(v) else float(v) for v in vals]
        except (TypeError, ValueError):
            table[c] = vals
    for s in subjects:
        s.covariates = {c: table[c].iloc[s.rows[0]] for c in covariate_names}
    return NonmemDataset(raw=raw, table=table, subjects=subjects, time_unit=time_unit,
                         covariate_names=covariate_names,
                         lines=np.array([np.nan if x is None else x for x in line_no], dtype=float),
                         source=src_name)


def _partial(rid, t, evid, r, ln, k) -> dict | None:
    """An invalid row (already reported) that still takes part in the ID-block and TIME-order checks."""
    if rid is None or t is None:
        return None
    return dict(ID=rid, TIME=t, EVID=evid, row=r, line=ln, k=k, valid=False)


def _count(x: float) -> str:
    """A limit for a message: ``5,000`` (or ``2.5`` for a fractional one)."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.3g}"


def _limit_text(name: str, hint: str) -> str:
    lim = LIMITS[name]
    return f"above the limit of {_count(limit(name))} {lim.what} (raise it with the environment variable {lim.env}" \
           f"{'; ' + hint if hint else ''})"


def _size_limit_errors(groups: dict[float, list[dict]], order: list[float]) -> list[InputError]:
    """The dataset's size against the ``ids`` and ``events`` limits, from counts only (nothing expanded).

    Dose events of an ID: ``ADDL + 1`` per dose row (EVID 1/4) plus 1 per reset (EVID 3/4), i.e. the
    number of single doses and resets its regimen has once the repeats are written out. Rows that are
    already invalid are not counted (they are reported on their own).
    """
    errors: list[InputError] = []
    id_cap = limit("ids")
    if len(order) > id_cap:
        first = groups[order[int(id_cap)]][0]
        errors.append(_err(first["row"], first["line"], "ID",
                           f"the dataset has {len(order):,} IDs (ID {_fmt(first['ID'])}, starting here, is number "
                           f"{int(id_cap) + 1:,}), {_limit_text('ids', 'or split the dataset into several files')}"))
    ev_cap = limit("events")
    for i in order:
        total, over = 0, None
        for rec in groups[i]:
            if not rec["valid"] or rec["EVID"] not in EVENT_EVIDS:
                continue
            n = (rec["ADDL"] + 1 if rec["EVID"] in DOSE_EVIDS else 0) + (1 if rec["EVID"] in (3, 4) else 0)
            total += n
            if over is None and total > ev_cap:
                over = (rec, total)
        if over is None:
            continue
        rec, upto = over
        addl = rec["ADDL"] if rec["EVID"] in DOSE_EVIDS else 0
        fld = "ADDL" if addl > 0 else "ID"
        what = f"ADDL={addl} ({addl + 1:,} doses) brings" if addl > 0 else "this record brings"
        in_all = f", {total:,} in all" if total != upto else ""
        errors.append(_err(rec["row"], rec["line"], fld,
                           f"{what} ID {_fmt(i)} to {upto:,} dose events{in_all} (each dose row counts ADDL+1, "
                           f"each reset 1), {_limit_text('events', 'or check ADDL and II')}"))
    return errors


def _is_modelled_name(name: str) -> bool:
    """``R<n>`` or ``D<n>``: a modelled rate or duration (a parameter, or a data item of that name)."""
    return len(name) > 1 and name[0] in "RD" and name[1:].isdigit()


def _ss_errors(r, ln, amt, rate, ii, addl, ss) -> list[InputError]:
    """NONMEM's rules for a steady-state dose record (SS = 1 or 2)."""
    out = []
    constant = amt == 0 and rate > 0
    if constant:
        if ii != 0:
            out.append(_err(r, ln, "II", f"a steady-state constant infusion (SS={ss}, AMT=0, RATE>0) takes II=0, got "
                            f"II={_fmt(ii)}; for a periodic infusion give AMT > 0"))
    elif ii == 0:  # (a negative II is reported once, as negative)
        out.append(_err(r, ln, "II", f"a steady-state dose (SS={ss}) needs a positive II (interdose interval), got "
                        f"II={_fmt(ii)}; for a constant infusion at steady state give AMT=0 and RATE>0"))
    if rate != 0 and addl != 0:
        out.append(_err(r, ln, "ADDL", f"a steady-state infusion (SS={ss}, RATE={_fmt(rate)}) takes ADDL=0 "
                        f"(NONMEM), got ADDL={addl}; give the following doses as their own records"))
    return out


def _dose_from_record(rec: dict, model: Model, params: Mapping[str, float], default_cmt, unit: str) -> Dose:
    r, ln = rec["row"], rec["line"]
    n = rec["CMT"] if rec["CMT"] is not None else default_cmt
    state, route = model.cmt[n]
    amt, rate, ss = rec["AMT"], rec["RATE"], rec.get("SS", 0)
    duration, keep, const_rate = None, "rate", None
    if rate != 0:
        if ss and amt == 0 and rate > 0:  # constant infusion at steady state
            const_rate = rate
        elif rate > 0:
            duration = amt / rate  # NONMEM: F changes the duration, the rate is kept
        else:
            name = ("R" if rate == -1 else "D") + str(n)
            what = "a modelled rate" if rate == -1 else "a modelled duration"
            value = params.get(name, rec.get("modelled", {}).get(name))
            if value is None:
                raise _err(r, ln, "RATE", f"RATE={int(rate)} asks for {what} into CMT {n}: pass the parameter "
                           f"{name} (e.g. --param {name}=...) or give a data column {name}")
            if not (math.isfinite(value) and value > 0):
                raise _err(r, ln, name, f"{name} must be a positive number, got {_fmt(value)}")
            if rate == -1:
                duration = amt / value  # the rate R is kept; F changes the duration
            else:
                duration, keep = float(value), "duration"  # the duration D is kept; F changes the rate
        if route not in ZERO_ORDER_ROUTES:
            route = "IV_infusion"
    cmt_state = None if _route_default_state(model, route) == state else state
    return Dose(rec["t_int"], amt, unit, route, duration, ii=rec["II"], addl=rec["ADDL"], cmt=cmt_state, ss=ss,
                keep=keep, rate=const_rate)


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------
def _sig12(x: float) -> float:
    return float(f"{x:.12g}")


def _cmt_number(model: Model, dose: Dose) -> int:
    state = dose.cmt or _route_default_state(model, dose.route)
    cands = [n for n, (s, _) in sorted(model.cmt.items()) if s == state]
    if not cands:
        raise InputError(f"dose at {dose.time:g} ({dose.route}) goes to state {state!r}, which has no NONMEM "
                         f"compartment number in model {model.name}", field="cmt")
    same_route = [n for n in cands if model.cmt[n][1] == dose.route]
    return (same_route or cands)[0]


def _dose_rows(model: Model, reg: Regimen, tu: str, cov) -> list[dict]:
    """NONMEM rows of one regimen (in time unit ``tu``; amounts in the model's amount unit)."""
    reg = reg.in_unit(tu)
    out: list[dict] = []
    doses = list(reg.doses)
    # a dose with reset and repeats resets at every repeat in the engine: write the repeats out (counted
    # first, so that a huge ADDL is refused before the loop that writes them)
    n_rows = sum(d.addl + 1 if d.reset and d.addl > 0 else 1 for d in doses)
    if n_rows > len(doses) and n_rows > limit("events"):
        raise InputError(f"writing the repeats of its reset doses (EVID 4, ADDL) out as single rows would give "
                         f"{n_rows:,} rows, {_limit_text('events', '')}", field="ADDL")
    flat = []
    for d in doses:
        flat.extend(d.repeats() if d.reset and d.addl > 0 else [d])
    i = 0
    while i < len(flat):
        d = flat[i]
        if d.reset and d.amount == 0 and not d.is_infusion:
            nxt = flat[i + 1] if i + 1 < len(flat) else None
            if nxt is not None and nxt.time == d.time and not nxt.reset:
                out.append(_one_dose_row(model, nxt, tu, cov, evid=4))
                i += 2
                continue
            out.append(dict(TIME=d.time, AMT=np.nan, EVID=3, CMT=np.nan, RATE=np.nan, II=np.nan, ADDL=np.nan,
                            MDV=1, DV=np.nan))
            i += 1
            continue
        out.append(_one_dose_row(model, d, tu, cov, evid=4 if d.reset else 1))
        i += 1
    return out


def _one_dose_row(model: Model, d: Dose, tu: str, cov, evid: int) -> dict:
    """One dose row. An infusion that keeps its rate under F is written with RATE = AMT / duration; one that
    keeps its duration (NONMEM RATE = -2) with RATE = -2 and the duration in a data column ``D<cmt>``; a
    constant infusion at steady state with AMT = 0 and its RATE."""
    dur_day = None if d.duration is None else d.duration * time_factor(tu, "day")
    cmt = _cmt_number(model, d)
    if d.rate is not None:
        r = d.rate if d.unit == model.amount_unit else convert_dose(
            d.rate, d.unit, model.amount_unit, cov, mw_g_per_mol=model.mw_g_per_mol)
        return dict(TIME=d.time, AMT=0.0, EVID=evid, CMT=cmt, RATE=_sig12(r), II=0.0, ADDL=0, MDV=1, DV=np.nan,
                    SS=d.ss)
    amt = d.amount
    if d.unit != model.amount_unit:
        amt = convert_dose(d.amount, d.unit, model.amount_unit, cov, duration_day=dur_day,
                           mw_g_per_mol=model.mw_g_per_mol)
    row = dict(TIME=d.time, AMT=amt, EVID=evid, CMT=cmt, RATE=0.0, II=d.ii, ADDL=d.addl, MDV=1, DV=np.nan, SS=d.ss)
    if d.is_infusion and d.keep == "duration":
        row.update(RATE=-2.0, **{f"D{cmt}": d.duration})
    elif d.is_infusion:
        row["RATE"] = _sig12(amt / d.duration)
    return row


def to_nonmem(regimens, model: Model, *, ids: Sequence | None = None, obs_times: Sequence | None = None,
              obs_evid: Sequence | None = None, obs_left: Sequence | None = None, dv: Sequence | None = None,
              covariates: Sequence[Mapping] | Mapping | None = None, time_unit: str | None = None,
              body=None) -> pd.DataFrame:
    """A NONMEM dataset table from regimens (one per ID), observation times, DV and covariates.

    Args:
        regimens: a :class:`NonmemDataset` (everything else is taken from it), one Regimen, or a list.
        model: for the compartment numbers and the amount unit (AMT is written in ``model.amount_unit``;
            doses in other units are converted, with ``body`` (a :class:`~qsp.units.Covariates` or a list
            of them) for per-kg and per-m2 doses).
        ids: the IDs (default 1, 2, ...).
        obs_times: per ID, the times of observation rows (in ``time_unit``).
        obs_evid: per ID, 0 (observation, default) or 2 (other) for each observation time.
        obs_left: per ID, True where an observation at a dose time is the pre-dose value: it is written
            before the dose row (default: after it).
        dv: per ID, observed values (NaN: missing, MDV=1).
        covariates: per ID (or one for all), a mapping name -> value written on every row of the ID.
        time_unit: of TIME/II/RATE; default: the first regimen's.

    Returns:
        A DataFrame with columns ID, TIME, AMT, EVID, CMT, RATE, II, ADDL, MDV, DV and the covariates,
        rows sorted by ID and time; missing cells are NaN (written as ``.`` by :func:`write_nonmem`).
    """
    if isinstance(regimens, NonmemDataset):
        ds = regimens
        subs = ds.subjects
        return to_nonmem([s.regimen for s in subs], model, ids=[s.id for s in subs],
                         obs_times=[s.obs_times for s in subs], obs_evid=[s.obs_evid for s in subs],
                         obs_left=[s.obs_left for s in subs], dv=[s.obs_dv for s in subs],
                         covariates=[s.covariates for s in subs], time_unit=time_unit or ds.time_unit, body=body)
    if isinstance(regimens, Regimen):
        regimens = [regimens]
        wrap = lambda x: None if x is None else [x]  # noqa: E731
        obs_times, obs_evid, obs_left, dv = wrap(obs_times), wrap(obs_evid), wrap(obs_left), wrap(dv)
        if isinstance(body, (list, tuple)):
            pass
        elif body is not None:
            body = [body]
    regimens = list(regimens)
    n = len(regimens)
    if n == 0:
        raise InputError("no regimens to write", field="regimens")
    tu = check_time_unit(time_unit or regimens[0].time_unit)
    ids = list(range(1, n + 1)) if ids is None else list(ids)
    if isinstance(covariates, Mapping):
        covariates = [covariates] * n
    bodies = body if isinstance(body, (list, tuple)) else [body] * n
    for name, v in (("ids", ids), ("obs_times", obs_times), ("obs_evid", obs_evid), ("obs_left", obs_left),
                    ("dv", dv), ("covariates", covariates), ("body", bodies)):
        if v is not None and len(v) != n:
            raise InputError(f"{name} has {len(v)} entries for {n} regimens", field=name)
    if len(set(ids)) != n:
        raise InputError("IDs must be unique", field="ids")
    cov_names: list[str] = []
    for c in covariates or []:
        for k in c:
            if k.upper() in RESERVED_COLUMNS:
                raise InputError(f"covariate name {k!r} clashes with a NONMEM data item", field="covariates")
            if k not in cov_names:
                cov_names.append(k)

    rows: list[dict] = []
    for j, reg in enumerate(regimens):
        if not isinstance(reg, Regimen):
            raise InputError(f"entry {j} is not a Regimen", field="regimens")
        try:
            drows = _dose_rows(model, reg, tu, bodies[j])
        except InputError as e:
            if e.field != "ADDL":
                raise
            raise InputError(f"ID {ids[j]}: {e}", field="ADDL") from None
        dose_rows = [(r["TIME"], 1, r) for r in drows]
        obs = []
        if obs_times is not None and obs_times[j] is not None:
            ts = np.atleast_1d(np.asarray(obs_times[j], dtype=float))
            ev = np.zeros(ts.shape, int) if obs_evid is None or obs_evid[j] is None else \
                np.asarray(obs_evid[j], dtype=int)
            lf = np.zeros(ts.shape, bool) if obs_left is None or obs_left[j] is None else \
                np.asarray(obs_left[j], dtype=bool)
            y = np.full(ts.shape, np.nan) if dv is None or dv[j] is None else np.asarray(dv[j], dtype=float)
            if not (ev.shape == lf.shape == y.shape == ts.shape):
                raise InputError(f"ID {ids[j]}: obs_times, obs_evid, obs_left and dv differ in length", field="dv")
            if not np.all(np.isfinite(ts)):
                raise InputError(f"ID {ids[j]}: observation times must be finite", field="obs_times")
            bad = set(np.unique(ev)) - {0, 2}
            if bad:
                raise InputError(f"ID {ids[j]}: observation EVID must be 0 or 2, got {sorted(bad)}", field="obs_evid")
            for t, e, lft, v in zip(ts, ev, lf, y):
                mdv = 0 if (e == 0 and np.isfinite(v)) else 1
                obs.append((float(t), 0 if lft else 2,
                            dict(TIME=float(t), AMT=np.nan, EVID=int(e), CMT=np.nan, RATE=np.nan, II=np.nan,
                                 ADDL=np.nan, MDV=mdv, DV=float(v) if np.isfinite(v) else np.nan)))
        merged = sorted(dose_rows + obs, key=lambda x: (x[0], x[1]))
        cov = covariates[j] if covariates is not None else {}
        for _, _, r in merged:
            rows.append(dict(ID=ids[j], **r, **{c: cov.get(c, np.nan) for c in cov_names}))
    extra = []
    if any(r.get("SS", 0) not in (0, None) and not (isinstance(r.get("SS"), float) and np.isnan(r["SS"]))
           for r in rows):
        extra.append("SS")
    extra += sorted({k for r in rows for k in r if _is_modelled_name(k)})
    cols = list(NONMEM_COLUMNS) + extra + cov_names
    df = pd.DataFrame(rows).reindex(columns=cols) if rows else pd.DataFrame(columns=cols)
    if "SS" in extra:
        df["SS"] = df["SS"].fillna(0)
        df.loc[~df["EVID"].isin(DOSE_EVIDS), "SS"] = np.nan
    return df


def format_cell(v) -> str:
    """NONMEM text of a value: ``.`` for missing, integers without a decimal point, floats exactly."""
    if v is None:
        return "."
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "."
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return repr(v)
    s = str(v)
    return "." if s == "" else s


def write_nonmem(df_or_regimens, path=None, model: Model | None = None, **kw) -> str:
    """Write a dataset as CSV (``.`` for missing values). Returns the text; writes it to ``path`` if given.

    ``df_or_regimens`` is a table from :func:`to_nonmem`, or anything :func:`to_nonmem` takes (then
    ``model`` and the keyword arguments are passed to it).
    """
    if isinstance(df_or_regimens, pd.DataFrame):
        df = df_or_regimens
    else:
        if model is None:
            raise InputError("writing regimens needs the model (for CMT numbers and amount unit)", field="model")
        df = to_nonmem(df_or_regimens, model, **kw)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(df.columns))
    for row in df.itertuples(index=False, name=None):
        w.writerow([format_cell(v) for v in row])
    text = buf.getvalue()
    if path is not None:
        p = Path(path)
        tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
    return text


__all__ = ["NONMEM_COLUMNS", "Subject", "NonmemDataset", "read_nonmem", "to_nonmem", "write_nonmem", "format_cell"]
