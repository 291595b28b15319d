"""`qsp calibrate`: the smoke job end to end (every output, the InferenceData groups, params.toml feeding the
simulator's draws); bad arguments and specs exit 2 with one line before any work; the lock and a resume of
another spec are refused; (slow) a job SIGKILLed mid-run and resumed ends with the same numbers as one that ran
through, and Dask workers give the same draws as the in-process run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "calibration" / "jobs" / "smoke.toml"


def _qsp(*args, timeout=900, **kw):
    return subprocess.run([sys.executable, "-m", "qsp", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, **kw)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("jobs") / "smoke"
    r = _qsp("calibrate", str(SMOKE), "--out", str(out), "--progress")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_smoke_job_writes_every_output_and_marks_itself_finished(smoke):
    import arviz as az

    out, r = smoke
    for f in ("fit.nc", "summary.csv", "targets.csv", "params.toml", "trace.png", "rank.png", "pairs.png",
              "ppc_teclistamab.png", "job.json"):
        assert (out / f).stat().st_size > 0, f
    meta = json.loads((out / "job.json").read_text())
    assert meta["status"] == "finished" and set(meta["phases_s"]) == {"setup", "map", "nuts", "predict", "outputs"}
    assert meta["seeds"] == {"population": 1, "nuts": 0} and len(meta["spec_hash"]) == 64
    for phase in ("[setup]", "[map]", "[nuts]", "[predict]", "[outputs]", "[done]"):
        assert phase in r.stderr
    assert "chain 2/2: 100%" in r.stderr and "MAP start 1" in r.stderr  # the progress bars ran
    idata = az.from_netcdf(out / "fit.nc")
    for g in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data",
              "constant_data"):
        assert g in idata.groups(), g
    assert dict(idata.posterior.sizes) == {"chain": 2, "draw": 30}  # 60 draws, thinned by 2
    assert set(idata.posterior.data_vars) == {"CRS_THETA1", "CRS_BETA"}
    assert np.isfinite(idata.log_likelihood["target"].values).all()
    assert idata.posterior_predictive["target"].shape[-1] == idata.observed_data["target"].size
    assert "study_regimen" in idata.constant_data and "body_weight_kg" in idata.constant_data
    summ = pd.read_csv(out / "summary.csv", index_col=0)
    assert {"mean", "sd", "hdi_5%", "hdi_95%", "r_hat", "ess_bulk"} <= set(summ.columns)
    tab = pd.read_csv(out / "targets.csv")
    assert {"target", "observed", "predicted_median", "predicted_p05", "predicted_p95", "within"} <= set(tab.columns)
    assert (tab.predicted_p05 <= tab.predicted_median + 1e-9).all()


def test_params_toml_is_a_calibrated_file_whose_draws_the_simulator_samples(smoke):
    from qsp.cards import load_card
    from qsp.paramsets import draw_parameter_sets, read_calibrated

    cf = read_calibrated(smoke[0] / "params.toml")
    sec = cf.drug_section("teclistamab")
    assert sec.draws is not None and sec.draws.shape == (60, 2)
    sets = draw_parameter_sets("teclistamab", load_card("teclistamab").model(), 5, 3, file=cf)
    i = list(sec.names).index("CRS_THETA1")
    # each draw is one of the posterior's (CRS_THETA1 is on the identity scale)
    for s in sets:
        assert np.isclose(sec.draws[:, i], s["CRS_THETA1"], rtol=0, atol=1e-12).any()
    assert sets == draw_parameter_sets("teclistamab", load_card("teclistamab").model(), 5, 3, file=cf)


def test_a_resume_with_another_spec_is_refused(smoke, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(smoke[0], out)
    changed = tmp_path / "smoke.toml"
    changed.write_text(SMOKE.read_text().replace("draws = 60", "draws = 61"))
    r = _qsp("calibrate", str(changed), "--out", str(out), "--resume")
    assert r.returncode == 2 and "another spec" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    # nothing in the folder was touched: the finished job is still marked finished
    assert json.loads((out / "job.json").read_text())["status"] == "finished"


def test_a_second_process_on_the_same_out_is_refused(tmp_path):
    from qsp.jobs.store import JobDir

    with JobDir(tmp_path / "busy"):
        r = _qsp("calibrate", str(SMOKE), "--out", str(tmp_path / "busy"))
    assert r.returncode == 2 and "in use by another" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("args, field", [
    (["--workers", "-1"], "--workers"),
    (["--workers", "2", "--scheduler", "tcp://x:1"], "--workers"),
    (["--threads", "0"], "--threads"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, field):
    r = _qsp("calibrate", str(SMOKE), "--out", str(tmp_path / "o"), *args)
    assert r.returncode == 2 and r.stderr.startswith("error:") and field in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_no_job_or_out_and_a_bad_spec_are_refused(tmp_path):
    r = _qsp("calibrate", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "JOB" in r.stderr
    r = _qsp("calibrate", str(SMOKE))
    assert r.returncode == 2 and "--out" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(SMOKE.read_text().replace('method = "map+nuts"', 'method = "advi"'))
    r = _qsp("calibrate", str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and str(bad) in r.stderr and "job.method" in r.stderr and "map+nuts" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_list_and_help():
    r = _qsp("calibrate", "--list")
    assert r.returncode == 0 and "smoke" in r.stdout and "map+nuts" in r.stdout
    r = _qsp("calibrate", "--help")
    assert r.returncode == 0 and "Examples:" in r.stdout and "--resume" in r.stdout


def _posterior(out):
    import arviz as az

    p = az.from_netcdf(out / "fit.nc").posterior
    return {k: p[k].values for k in p.data_vars}


def _checkpoint(out, name):
    from qsp.jobs.store import load_arrays

    try:
        return load_arrays(out / ".checkpoint" / f"{name}.npz")
    except Exception:  # noqa: BLE001 -- a file being replaced: try again
        return None


def _during_map(out):
    c = _checkpoint(out, "map_start_0")
    return c is not None and not bool(c["done"])


def _during_warmup(out):
    c = _checkpoint(out, "nuts_chain_0")
    return c is not None and int(c["iteration"]) < 60


def _during_sampling(out):
    c = _checkpoint(out, "nuts_chain_0")
    return c is not None and 60 < int(c["iteration"]) < 120


@pytest.mark.slow
@pytest.mark.parametrize("moment", [_during_map, _during_warmup, _during_sampling], ids=lambda f: f.__name__[1:])
def test_a_sigkilled_job_resumed_ends_with_the_same_numbers(smoke, tmp_path, moment):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "qsp", "calibrate", str(SMOKE), "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and not moment(out):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert moment(out), "the job was not killed at the intended moment"
    assert not (out / "job.json").exists() or json.loads((out / "job.json").read_text())["status"] != "finished"
    r = _qsp("calibrate", str(SMOKE), "--out", str(out))  # without --resume: refused, nothing wiped
    assert r.returncode == 2 and "--resume" in r.stderr
    r = _qsp("calibrate", str(SMOKE), "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "job.json").read_text())["resumed"] is True
    a, b = _posterior(smoke[0]), _posterior(out)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    for f in ("summary.csv", "targets.csv"):
        assert (smoke[0] / f).read_bytes() == (out / f).read_bytes(), f


@pytest.mark.slow
def test_dask_workers_give_the_same_bytes_and_a_failing_chain_is_reported(smoke, tmp_path):
    out = tmp_path / "dask"
    r = _qsp("calibrate", str(SMOKE), "--out", str(out), "--workers", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[dask] starting a local cluster of 2 worker processes" in r.stderr
    for f in ("summary.csv", "targets.csv"):
        assert (smoke[0] / f).read_bytes() == (out / f).read_bytes(), f
    # chain 2 fails on its worker: reported, chain 1 finishes, the job ends with one chain and says so
    out2 = tmp_path / "dask_fail"
    r = _qsp("calibrate", str(SMOKE), "--out", str(out2), "--workers", "2",
             env={**os.environ, "QSP_JOBS_FAIL_CHAIN": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "chain 2/2 FAILED" in r.stderr and "chain 1/2 (on a Dask worker)" in r.stderr and "warning:" in r.stderr
    meta = json.loads((out2 / "job.json").read_text())
    assert meta["status"] == "finished" and [f["chain"] for f in meta["failed_chains"]] == [1]
    a, b = _posterior(smoke[0]), _posterior(out2)
    for k in a:  # the surviving chain's draws are those of the same chain in the full run
        assert b[k].shape[0] == 1 and np.array_equal(a[k][:1], b[k]), k


@pytest.mark.slow
def test_a_failing_chain_in_process_is_reported_and_the_others_finish(tmp_path):
    out = tmp_path / "fail"
    r = _qsp("calibrate", str(SMOKE), "--out", str(out), env={**os.environ, "QSP_JOBS_FAIL_CHAIN": "0"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "chain 1/2 FAILED" in r.stderr and "chain 2/2:" in r.stderr
    assert [f["chain"] for f in json.loads((out / "job.json").read_text())["failed_chains"]] == [0]
