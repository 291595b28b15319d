"""Output folders: checked writable before any work, written atomically, readable like any tool's output.

:func:`prepare_out` runs first (before a dataset is read or a model solved): ``--out`` must be a
directory or not exist yet, and its nearest existing ancestor must accept a new folder (tried for real:
a probe folder is created and removed, which also catches read-only file systems, where permission bits
do not tell). :func:`write_outputs` writes every file into a temporary folder next to ``--out`` and moves
them into place only when all are written; other files already in ``--out`` are kept, except files that an earlier
run of a command wrote there and this run does not: ``write_outputs`` records what it wrote in ``--out`` (the
manifest ``.qsp-outputs-<command>``, one relative path per line), and a rerun of the same command into the same
folder removes the files of its previous manifest that it does not write again, so a rerun never leaves a stale
``regimens/r01_4step.csv`` of a search that found other regimens beside its own outputs. Another command's outputs
and files the user put there are in no manifest of this command and are never touched. Folders and files get the usual permissions (``0777``/``0666`` less the umask), not the private
``0700`` of a temp folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import InputError


MANIFEST = ".qsp-outputs-{owner}"


def _previous_outputs(out: Path, manifest: str) -> set[str]:
    """Relative paths the previous run recorded in ``out``'s manifest (empty when there is none)."""
    try:
        text = (out / manifest).read_text()
    except OSError:
        return set()
    return {line.strip() for line in text.splitlines() if line.strip()}


def _remove(out: Path, names: set[str]) -> None:
    """Remove the previous run's files ``names`` that are plain files inside ``out``, and folders they leave empty."""
    root = out.resolve()
    for name in sorted(names):
        p = (out / name)
        try:
            inside = p.resolve().is_relative_to(root) and p.resolve() != root
        except OSError:
            continue
        if inside and p.is_file() and not p.is_symlink():
            p.unlink()
            parent = p.parent
            while parent.resolve() != root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent


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

    ``owner`` names the command (``simulate``, ``optimize``, ...): its manifest ``.qsp-outputs-<owner>`` lists what
    this run wrote, and the files of its previous run into ``out`` that this run does not write again are removed
    (another command's outputs and the user's own files are kept)."""
    out = Path(out).absolute()
    manifest = MANIFEST.format(owner=owner)
    mode_dir, mode_file = 0o777 & ~_umask(), 0o666 & ~_umask()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise InputError(f"cannot create the output directory {out}: {e.strerror}", field="--out") from None
    written = []
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
        names = sorted(n for n in files if not n.startswith("_"))
        (tmp / manifest).write_text("".join(n + "\n" for n in names))
        os.chmod(tmp / manifest, mode_file)
        os.chmod(tmp, mode_dir)
        if not out.exists():
            os.rename(tmp, out)
            return written
        for name in files:
            if name.startswith("_"):
                continue
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / name, out / name)
        stale = _previous_outputs(out, manifest) - set(names)
        os.replace(tmp / manifest, out / manifest)
        _remove(out, stale)
    except OSError as e:
        raise InputError(f"cannot write into {out}: {e.strerror}", field="--out") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return written
