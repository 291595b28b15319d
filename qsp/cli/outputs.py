"""Output folders: checked writable before any work, written atomically, readable like any tool's output.

:func:`prepare_out` runs first (before a dataset is read or a model solved): ``--out`` must be a
directory or not exist yet, and its nearest existing ancestor must accept a new folder (tried for real:
a probe folder is created and removed, which also catches read-only file systems, where permission bits
do not tell). :func:`write_outputs` writes every file into a temporary folder next to ``--out`` and moves
them into place only when all are written. It records what it wrote in ``--out`` (the manifest
``.qsp-outputs-<command>``, one relative path per line); a rerun of the same command into the same folder then
removes the files of its previous manifest that it does not write again, so a rerun never leaves a stale
``regimens/r01_4step.csv`` of a search that found other regimens beside its own outputs. Files the user put
there are in no manifest and are kept; a file another command wrote and this one writes again passes to this
one's manifest. Folders written before manifests existed are not cleaned. The cleanup is best effort, after
every output is in place: a file it cannot remove gives a warning and stays in the manifest. Folders and files
get the usual permissions (``0777``/``0666`` less the umask), not the private ``0700`` of a temp folder.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import InputError

MANIFEST = ".qsp-outputs-{owner}"


def _clean(name: str) -> str | None:
    """``name`` as a normalised relative path inside the folder, or None (absolute, ``..``, empty)."""
    n = posixpath.normpath(name.strip().replace("\\", "/"))
    if not n or n == "." or n.startswith("/") or n == ".." or n.startswith("../"):
        return None
    return n


def _read_manifest(path: Path) -> set[str]:
    """Normalised relative paths recorded in a manifest (empty when there is none or it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return set()
    return {n for n in map(_clean, text.splitlines()) if n}


def _write_manifest(path: Path, names: set[str], mode: int) -> None:
    path.write_text("".join(n + "\n" for n in sorted(names)), encoding="utf-8")
    os.chmod(path, mode)


def _remove(out: Path, names: set[str]) -> set[str]:
    """Remove the previous run's files ``names`` (plain files reached inside ``out`` with no symlink on the way)
    and the folders they leave empty; best effort: returns the names it could not remove, with a warning."""
    try:
        root = out.resolve()
    except (OSError, RuntimeError):
        return set(names)
    failed = set()
    for name in sorted(names):
        p = out / name
        try:
            if p.is_symlink() or not p.is_file() or p.resolve() != root / name:  # a symlink somewhere on the path
                continue
            p.unlink()
            parent = p.parent
            while parent != out and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        except (OSError, RuntimeError) as e:
            failed.add(name)
            sys.stderr.write(f"warning: could not remove {p}, an output of an earlier run: {e}\n")
    return failed


def _take_over(out: Path, names: set[str], manifest: str, mode: int) -> None:
    """The names this run wrote are its outputs now: drop them from other commands' manifests in ``out``."""
    for other in out.glob(MANIFEST.format(owner="*")):
        if other.name == manifest or not other.is_file():
            continue
        listed = _read_manifest(other)
        if listed & names:
            _write_manifest(other, listed - names, mode)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def prepare_out(out: Path | None) -> Path:
    """Validate ``--out`` before any work; returns it resolved. Nothing is left behind."""
    if out is None:
        raise InputError("--out DIR is required", field="--out")
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory", field="--out")
    anc = out if out.exists() else out.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(f"{anc} is not a directory, so {out} cannot be created", field="--out")
    try:
        probe = tempfile.mkdtemp(prefix=".qsp-write-check-", dir=anc)
        os.rmdir(probe)
    except OSError as e:
        raise InputError(f"cannot write into {anc} ({e.strerror}); choose another output folder", field="--out") \
            from None
    return out


def write_outputs(out: Path, files: dict[str, bytes], *, owner: str) -> list[Path]:
    """Write ``files`` (name -> bytes; names starting with ``_`` are skipped) into ``out`` atomically.

    ``owner`` names the command (``simulate``, ``optimize``, ``restart``): its manifest ``.qsp-outputs-<owner>``
    lists what this run wrote, and the files of its previous run into ``out`` that this run does not write again are
    removed (the user's files are kept)."""
    out = Path(out).absolute()
    manifest = MANIFEST.format(owner=owner)
    mode_dir, mode_file = 0o777 & ~_umask(), 0o666 & ~_umask()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise InputError(f"cannot create the output directory {out}: {e.strerror}", field="--out") from None
    written = []
    names = {_clean(n) or n for n in files if not n.startswith("_")}
    try:
        for name, data in files.items():
            if name.startswith("_"):
                continue
            if (tmp / name).parent != tmp:  # a subfolder (e.g. regimens/a.csv)
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                os.chmod((tmp / name).parent, mode_dir)
            (tmp / name).write_bytes(data)
            os.chmod(tmp / name, mode_file)
            written.append(out / name)
        _write_manifest(tmp / manifest, names, mode_file)
        os.chmod(tmp, mode_dir)
        if not out.exists():
            os.rename(tmp, out)
            return written
        for name in files:
            if name.startswith("_"):
                continue
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / name, out / name)
    except OSError as e:
        raise InputError(f"cannot write into {out}: {e.strerror}", field="--out") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    # every output is in place: what follows is best effort and never fails the command
    failed = _remove(out, _read_manifest(out / manifest) - names)
    try:
        _write_manifest(out / manifest, names | failed, mode_file)
        _take_over(out, names, manifest, mode_file)
    except OSError as e:
        sys.stderr.write(f"warning: could not record the outputs in {out / manifest}: {e}\n")
    return written
