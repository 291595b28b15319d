"""The bad-input corpus (``tests/bad_inputs/cases.toml``): every malformed file or argument set is refused
up front — the expected exit code, one ``error:`` line naming the field with the expected words, no
traceback, nothing written — within its time bound and 1 GB of memory.

The time bound (``max_seconds``, 10 s by default) is on the smaller of the process's CPU time and its wall time.
CPU time (user + system of the process, its threads and the children it waited for) is the work done before
refusing, which another process on the same cores does not inflate (the suite runs two test workers side by
side, and the corpus two cases at a time); wall time is the smaller one where several threads work at once. A
process that waits instead of working would pass the first, so its wall time is bounded too, at three times
``max_seconds``.

Each case runs as its own ``python -m qsp`` process (so time, memory, exit code and streams are the real
ones a user sees); the cases run two at a time in a module fixture and each is then checked by one
parametrized test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import patch_card_text

HERE = Path(__file__).resolve().parent / "bad_inputs"
ROOT = HERE.parent.parent
CASES = tomllib.loads((HERE / "cases.toml").read_text())["case"]
MAX_RSS_BYTES = 1 << 30


def _fill(s: str, ctx: dict) -> str:
    return re.sub(r"\{(files|out|tmp)\}", lambda m: ctx[m.group(1)], s)


def _make_card(spec: dict, folder: Path) -> None:
    text = patch_card_text((ROOT / "models" / f"{spec['base']}.toml").read_text(), values=spec.get("values"),
                           units=spec.get("units"), omegas=spec.get("omegas"))
    if not spec.get("keep_name"):
        text = text.replace(f'name = "{spec["base"]}"', f'name = "{spec["name"]}"', 1)
    for old, new in spec.get("replace", []):
        assert old in text, (spec["name"], old)
        text = text.replace(old, new, 1)
    drop = tuple(spec.get("drop", []))
    if drop:
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith(drop)) + "\n"
    text += spec.get("append", "")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{spec['name']}.toml").write_text(text)


def _run_case(case: dict, base: Path) -> dict:
    tmp = base / case["name"]
    tmp.mkdir(parents=True)
    ctx = {"files": str(HERE / "files"), "out": str(tmp / "out"), "tmp": str(tmp)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("QSP_")}
    if "card" in case:
        _make_card(case["card"], tmp / "cards")
        env["QSP_MODELS_DIR"] = str(tmp / "cards")
    env.update({k: _fill(v, ctx) for k, v in case.get("env", {}).items()})
    args = [_fill(a, ctx) for a in case["args"]]
    before = {p.name for p in (HERE / "files").iterdir()}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "qsp", *args], cwd=tmp, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    streams = {}
    readers = [threading.Thread(target=lambda k=k, f=f: streams.__setitem__(k, f.read()))
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    _, status, rusage = os.wait4(proc.pid, 0)  # reaps the child: its peak memory and CPU time (with its reaped children's)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    for t in readers:
        t.join()
    out, err = streams["out"], streams["err"]
    entries = sorted(p.name for p in tmp.iterdir() if p.name != "cards")
    after = {p.name for p in (HERE / "files").iterdir()}
    return dict(code=proc.returncode, out=out, err=err, wall=wall, cpu=rusage.ru_utime + rusage.ru_stime,
                entries=entries, files_changed=before != after, rss=rusage.ru_maxrss * 1024)


def _run_all(base: Path) -> dict:
    results = {}

    def one(case):
        results[case["name"]] = _run_case(case, base)

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, CASES))
    return results


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return _run_all(tmp_path_factory.mktemp("bad_inputs"))


def test_corpus_names_are_unique():
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 60


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input_is_refused(case, results):
    r = results[case["name"]]
    expect = case.get("exit", 2)
    assert r["code"] == expect, (r["code"], r["err"], r["out"][-500:])
    assert "Traceback" not in r["err"] and "Traceback" not in r["out"], r["err"]
    prefix = "error:" if expect == 2 else "failed:"
    lines = [ln for ln in r["err"].splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, r["err"]
    if expect == 2:
        assert r["err"].strip() == lines[0], r["err"]  # one line, nothing else
        assert r["out"].strip() == "", r["out"]
    for w in case["words"]:
        assert w in lines[0] or w in r["err"], (w, lines[0])
    if not case.get("writes", False):
        assert r["entries"] == [], r["entries"]  # no output folder, no temp folder
    assert not r["files_changed"]
    bound = case.get("max_seconds", 10.0)
    assert min(r["cpu"], r["wall"]) < bound, (r["cpu"], r["wall"])
    assert r["wall"] < 3 * bound, (r["cpu"], r["wall"])
    assert r["rss"] < MAX_RSS_BYTES, r["rss"]
