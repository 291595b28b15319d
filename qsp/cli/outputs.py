"""Output folders: checked writable before any work, written atomically, readable like any tool's output.

:func:`prepare_out` runs first (before a dataset is read or a model solved): ``--out`` must be a
directory or not exist yet, and its nearest existing ancestor must accept a new folder (tried for real:
a probe folder is created and removed, which also catches read-only file systems, where permission bits
do not tell). :func:`write_outputs` writes every file into a temporary folder next to ``--out`` and moves
them into place only when all are written; other files already in ``--out`` are kept. Folders and files
get the usual permissions (``0777``/``0666`` less the umask), not the private ``0700`` of a temp folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import InputError


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


def write_outputs(out: Path, files: dict[str, bytes]) -> list[Path]:
    """Write ``files`` (name -> bytes; names starting with ``_`` are skipped) into ``out`` atomically."""
    out = Path(out).absolute()
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
    return written
