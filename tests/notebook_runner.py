"""Execute one notebook in a fresh kernel and write the executed copy (used by ``tests/test_notebooks.py``, which
runs several of these processes side by side).

    python tests/notebook_runner.py IN.ipynb OUT.ipynb WORKDIR

Exit code 0 when every cell ran; 1 with the error on stderr otherwise (the executed copy, with the error output,
is written either way).

The kernel talks over IPC (Unix sockets in a private temporary folder), not TCP: with TCP each kernel picks free
ports, releases them and binds them again, and a kernel or server started at the same instant by a neighbouring
process can take one in between ("Address already in use", seen once on CI with two notebooks starting together).
"""
from __future__ import annotations

import shutil
import sys
import tempfile

import nbformat
from nbclient import NotebookClient
from traitlets.config import Config


def main(src: str, dst: str, workdir: str) -> int:
    nb = nbformat.read(src, as_version=4)
    sockets = tempfile.mkdtemp(prefix="qsp-kernel-")  # short: a Unix socket path is limited to ~100 characters
    # configured, not passed in: the client then makes its own (asynchronous) kernel manager, so its cell timeout
    # and dead-kernel checks work and it shuts the kernel down when it is done
    cfg = Config({"KernelManager": {"transport": "ipc", "ip": f"{sockets}/k"}})
    client = NotebookClient(nb, timeout=900, kernel_name="python3", config=cfg,
                            resources={"metadata": {"path": workdir}})
    rc = 0
    try:
        client.execute()
    except Exception as e:  # a cell error, a timeout or a dead kernel: reported, and the copy still written
        sys.stderr.write(f"{type(e).__name__}: {str(e)[-4000:]}")
        rc = 1
    finally:
        nbformat.write(nb, dst)
        shutil.rmtree(sockets, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
