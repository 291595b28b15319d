"""The documentation site (``mkdocs.yml``, ``docs/site/``, ``docs/mkdocs_hooks.py``) builds with ``--strict``: any
warning (a broken link, a README section the hooks cannot find, a docstring mkdocstrings cannot render) fails."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_mkdocs_build_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env.pop("QSP_DOCS_EXECUTE", None)
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    site = tmp_path / "site"
    # the generated pages exist and carry what they are generated from
    cards = (site / "cards" / "index.html").read_text()
    assert "teclistamab" in cards and "KD_CD3" in cards and "Miao et al." in cards
    cli = (site / "cli" / "index.html").read_text()
    for cmd in ("simulate", "optimize", "calibrate", "restart", "fih", "drugs"):
        assert f"qsp {cmd}" in cli, cmd
    comps = (site / "components" / "index.html").read_text()
    assert "KEL_IL6" in comps and "Hosseini" in comps  # the cytokine component's docstring, equations and reference
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert (site / "notebooks" / nb.stem / "index.html").is_file(), nb.name
    assert (site / "calibration" / "index.html").read_text().count("<img") >= 8  # one fit figure per drug
