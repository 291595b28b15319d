"""The installed package is self-contained: a wheel ships the cards and data and runs outside the repository.

The wheel test builds the wheel, installs it (without dependencies) into a fresh virtual environment in a
temporary folder, makes the already-installed dependencies visible to it through a ``.pth`` file that
*appends* their folders (so the repository and any editable install of qsp stay invisible), and runs
``qsp --version``, ``qsp drugs`` and one drug simulation from a folder outside the repository.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

import qsp
from conftest import patch_card_text

ROOT = Path(__file__).resolve().parent.parent
DRUGS = ["blinatumomab", "catumaxomab", "elranatamab", "epcoritamab", "glofitamab", "linvoseltamab",
         "mosunetuzumab", "odronextamab", "talquetamab", "tarlatamab", "tebentafusp", "teclistamab"]


def test_pyproject_lists_every_subpackage():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "qsp").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
    assert cfg["package-dir"] == {"qsp._models": "models", "qsp._data": "data"}


def test_package_data_found_through_importlib_resources():
    from qsp.io.resources import builtin_models, data_file

    names = sorted(n.name[:-5] for n in builtin_models().iterdir() if n.name.endswith(".toml"))
    assert names == DRUGS
    assert data_file("regimens.csv").read_text().startswith("drug,regimen,dose_no")
    assert data_file("digitized", "teclistamab_sc_pk_mean.csv").is_file()


def test_user_cards_folder_adds_and_overrides(tmp_path, monkeypatch):
    from qsp.cards import card_library, load_card

    text = (ROOT / "models" / "teclistamab.toml").read_text()
    (tmp_path / "mytce.toml").write_text(text.replace('name = "teclistamab"', 'name = "mytce"'))
    (tmp_path / "teclistamab.toml").write_text(patch_card_text(text, values={"KD_CD3": "5.0"}))
    monkeypatch.setenv("QSP_MODELS_DIR", str(tmp_path))
    lib = {s.name: s for s in card_library()}
    assert "mytce" in lib and lib["mytce"].card is not None and lib["mytce"].location == str(tmp_path)
    assert lib["teclistamab"].location == str(tmp_path)
    assert load_card("teclistamab").values()["KD_CD3"] == 5.0
    monkeypatch.setenv("QSP_MODELS_DIR", str(tmp_path / "nope"))
    with pytest.raises(qsp.InputError, match="QSP_MODELS_DIR"):
        load_card("teclistamab")


def _source_copy(dest: Path) -> Path:
    """The repository's files without build leftovers (setuptools builds in the source tree: a stale
    ``build/lib`` could carry deleted modules into the wheel)."""
    skip = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "out",
                                  "*.pyc")
    shutil.copytree(ROOT, dest, ignore=skip)
    return dest


def _build_wheel(dest: Path) -> Path:
    src = _source_copy(dest.parent / "src")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), str(src)]
    try:
        import setuptools  # noqa: F401
        import wheel  # noqa: F401

        cmd.insert(4, "--no-build-isolation")  # no download needed when the build tools are here
    except ImportError:
        pass
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    (whl,) = dest.glob("qsp_tce-*.whl")
    return whl


def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    whl = _build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(whl).namelist()
    for d in DRUGS:
        assert f"qsp/_models/{d}.toml" in names
    assert "qsp/_data/regimens.csv" in names and "qsp/_data/crs_by_dose.csv" in names
    assert "qsp/_data/digitized/teclistamab_il6_mean_majestec1.csv" in names
    assert "qsp/_data/calibrated/README.md" in names  # the folder the calibrated parameters ship in

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(whl)], check=True,
                   capture_output=True, text=True, timeout=300)
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = [p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)]
    Path(purelib, "zz_outer_dependencies.pth").write_text("\n".join(deps) + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QSP_MODELS_DIR")}
    qsp_exe = str(env_dir / "bin" / "qsp")

    def run(*args):
        return subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True, timeout=600)

    r = run(str(py), "-c", "import qsp; print(qsp.__file__)")
    assert r.returncode == 0 and r.stdout.strip().startswith(str(env_dir)), (r.stdout, r.stderr)
    r = run(qsp_exe, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"qsp {qsp.__version__}"
    r = run(qsp_exe, "drugs")
    assert r.returncode == 0, r.stderr
    listed = [ln.split()[0] for ln in r.stdout.splitlines()[1:]]
    assert listed == DRUGS and "INVALID" not in r.stdout
    r = run(qsp_exe, "simulate", "--drug", "teclistamab", "--days", "7", "--out", "out")
    assert r.returncode == 0, r.stderr
    for f in ("timecourse.csv", "doses.csv", "timecourse.png"):
        assert (work / "out" / f).stat().st_size > 0
