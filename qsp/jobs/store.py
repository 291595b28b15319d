"""A job's output folder: atomic files, a lock, checkpoints keyed by spec and data, the finished marker.

Layout of ``DIR``::

    DIR/.lock                      held (``fcntl.flock``) by the one process working on DIR
    DIR/.checkpoint/key.json       {"spec_hash", "data_hash", "key"}: what the checkpoints belong to
    DIR/.checkpoint/<name>.npz     phase states (MAP start i, NUTS chain c), written atomically
    DIR/fit.nc, summary.csv, ...   results, each written atomically (temporary file + ``os.replace``)
    DIR/job.json                   written last; ``"status": "finished"`` marks a complete job

Every file appears whole or not at all: it is written to a temporary name in the same folder, flushed and
fsynced, then renamed over its final name. ``job.json`` is removed when a job (re)starts, so a folder without
it, or with ``"status": "running"``, never looks finished. A checkpoint is only reused when ``key.json`` matches
the spec and data of the run (:func:`data_hash`: the target tables and the drugs' cards, byte for byte).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError

CHECKPOINT_DIR = ".checkpoint"
LOCK_FILE = ".lock"
JOB_FILE = "job.json"
# what a job writes into its folder (names, and ppc_<drug>.png): only these are removed on a fresh start
RESULT_FILES = ("fit.nc", "summary.csv", "targets.csv", "heldout.csv", "params.toml", "trace.png", "rank.png",
                "pairs.png")


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_arrays(path: Path, arrays: dict) -> Path:
    """``np.savez`` of ``arrays`` written atomically (float64 and integer arrays round-trip exactly)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: Path) -> dict | None:
    """The arrays of a checkpoint written by :func:`save_arrays`, or None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def data_hash(drugs, extra_files=()) -> str:
    """SHA-256 over the target tables, the cards of ``drugs`` and ``extra_files`` (e.g. a MAP start's calibrated
    file): file names and bytes, in a fixed order."""
    from ..cards import load_card
    from ..io.resources import data_root

    h = hashlib.sha256()
    node = data_root().joinpath("targets")
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name.endswith(".csv"):
            h.update(child.name.encode())
            h.update(child.read_bytes())
    for d in sorted(drugs):
        card = load_card(d)
        h.update(d.encode())
        h.update(card.text.encode())
    for f in extra_files:
        h.update(Path(f).name.encode())
        h.update(Path(f).read_bytes())
    return h.hexdigest()


class JobDir:
    """The output folder of one job run: lock, checkpoint key, atomic files (see the module docstring)."""

    def __init__(self, out: str | Path):
        self.out = Path(out).expanduser().absolute()
        self.ckpt = self.out / CHECKPOINT_DIR
        self._lock_fd = None

    # --- lock -----------------------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the folder's lock, or refuse (InputError) when another process holds it."""
        self.out.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(f"{self.out} is in use by another qsp calibrate process (lock {LOCK_FILE}); wait for "
                             "it to end or use another --out", field="--out") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        self.lock()
        return self

    def __exit__(self, *exc):
        self.unlock()

    # --- checkpoints ----------------------------------------------------------------------------------------
    def prepare(self, spec_hash: str, data_hash_: str, resume: bool) -> bool:
        """Check or start the checkpoint key; returns whether checkpoints may be reused.

        Without ``resume`` any earlier checkpoints and results are cleared (a fresh start). With ``resume``,
        checkpoints of another spec or other data are refused with an InputError naming which changed."""
        key_path = self.ckpt / "key.json"
        key = {"spec_hash": spec_hash, "data_hash": data_hash_}
        if resume and key_path.is_file():
            old = json.loads(key_path.read_text())
            changed = [k.split("_")[0] for k in ("spec_hash", "data_hash") if old.get(k) != key[k]]
            if changed:  # refused before anything in the folder is touched
                raise InputError(f"--resume: the checkpoints in {self.ckpt} belong to another "
                                 f"{' and '.join(changed)} (the job spec or the target tables/cards changed since); "
                                 "run without --resume to start again", field="--resume")
            (self.out / JOB_FILE).unlink(missing_ok=True)  # never leave a finished marker on a running job
            return True
        (self.out / JOB_FILE).unlink(missing_ok=True)
        for f in (self.out.iterdir() if self.out.is_dir() else ()):  # a fresh start: no result of an earlier run stays beside the new ones
            if f.is_file() and (f.name in RESULT_FILES or (f.name.startswith("ppc_") and f.suffix == ".png")):
                f.unlink()
        if self.ckpt.exists():
            for f in self.ckpt.iterdir():
                f.unlink()
        self.ckpt.mkdir(parents=True, exist_ok=True)
        atomic_write_text(key_path, json.dumps(key, indent=1) + "\n")
        return False

    def checkpoint_path(self, name: str) -> Path:
        return self.ckpt / f"{name}.npz"

    def save(self, name: str, arrays: dict) -> None:
        save_arrays(self.checkpoint_path(name), arrays)

    def load(self, name: str) -> dict | None:
        return load_arrays(self.checkpoint_path(name))

    # --- results --------------------------------------------------------------------------------------------
    def write(self, name: str, data: bytes | str) -> Path:
        return atomic_write_bytes(self.out / name, data.encode() if isinstance(data, str) else data)

    def finished(self) -> dict | None:
        """The ``job.json`` of a finished job in this folder, else None."""
        p = self.out / JOB_FILE
        if not p.is_file():
            return None
        meta = json.loads(p.read_text())
        return meta if meta.get("status") == "finished" else None


__all__ = ["JobDir", "atomic_write_bytes", "atomic_write_text", "save_arrays", "load_arrays", "data_hash",
           "CHECKPOINT_DIR", "JOB_FILE"]
