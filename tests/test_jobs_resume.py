"""Checkpoint/resume (qsp/jobs/map_phase.py, nuts_phase.py, store.py): a phase interrupted after a checkpoint and
resumed ends on the same numbers, bit for bit, as an uninterrupted run; the lock and the checkpoint key refuse
a second process and a changed spec or data."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from qsp.errors import InputError
from qsp.jobs.map_phase import laplace_hessian, minimise_start
from qsp.jobs.nuts_phase import run_chain
from qsp.jobs.store import JobDir

W = jnp.array([1.0, 10.0, 100.0])


def f(x):  # a curved objective with a known minimum near (1, 2, 3)
    return jnp.sum(W * (x - jnp.array([1.0, 2.0, 3.0])) ** 2) + 0.1 * jnp.sum(x**4)


class Stop(Exception):
    pass


def _stop_at(k):
    def cb(n, *_):
        if n == k:
            raise Stop
    return cb


def _store(tmp_path, name):
    s = JobDir(tmp_path / name)
    s.prepare("spec", "data", resume=False)
    return s


def test_a_map_start_killed_after_a_checkpoint_resumes_to_the_same_optimum(tmp_path):
    kw = dict(max_steps=60, every=3, name="map_start_0")
    ref = minimise_start(f, np.zeros(3), np.ones(3), store=_store(tmp_path, "a"), **kw)
    assert ref["ok"] and ref["steps"] > 6
    s = _store(tmp_path, "b")
    with pytest.raises(Stop):
        minimise_start(f, np.zeros(3), np.ones(3), store=s, on_step=_stop_at(7), **kw)
    assert int(s.load("map_start_0")["steps"]) == 6  # the last checkpoint before the kill
    again = minimise_start(f, np.zeros(3), np.ones(3), store=s, **kw)
    assert np.array_equal(again["x"], ref["x"]) and again["value"] == ref["value"] and again["steps"] == ref["steps"]
    # a finished start is not run again
    assert minimise_start(f, np.zeros(3), np.ones(3), store=s, on_step=_stop_at(1), **kw)["steps"] == ref["steps"]


def test_the_laplace_hessian_resumes_column_by_column(tmp_path):
    import jax

    grad = jax.grad(f)
    x = np.array([0.9, 1.9, 2.5])
    ref = laplace_hessian(grad, x, store=None)
    s = _store(tmp_path, "h")

    def stop(j, n):
        if j == 2:
            raise Stop
    with pytest.raises(Stop):
        laplace_hessian(grad, x, store=s, on_column=stop)
    assert np.isfinite(s.load("laplace")["h"][:, :2]).all() and np.isnan(s.load("laplace")["h"][:, 2]).all()
    assert np.array_equal(laplace_hessian(grad, x, store=s), ref)
    np.testing.assert_allclose(ref, jax.hessian(f)(jnp.asarray(x)), rtol=1e-3)


@pytest.mark.parametrize("kill_at", [13, 37])  # during warm-up and while drawing
def test_a_nuts_chain_killed_after_a_checkpoint_resumes_to_the_same_draws(tmp_path, kill_at):
    x_fixed = np.array([1.0, 2.0, 3.0])
    free = np.array([0, 2])
    kw = dict(chain=1, seed=5, warmup=25, draws=30, target_accept=0.8, max_tree_depth=4, every=10)
    ref = run_chain(f, x_fixed, free, x_fixed[free], store=_store(tmp_path, "a"), **kw)
    assert ref["z"].shape == (30, 2) and np.isfinite(ref["z"]).all()
    s = _store(tmp_path, "b")
    with pytest.raises(Stop):
        run_chain(f, x_fixed, free, x_fixed[free], store=s, on_iter=_stop_at(kill_at), **kw)
    assert int(s.load("nuts_chain_1")["iteration"]) == kill_at // 10 * 10
    again = run_chain(f, x_fixed, free, x_fixed[free], store=s, **kw)
    for k in ("z", "potential_energy", "diverging", "accept_prob", "num_steps", "step_size"):
        assert np.array_equal(again[k], ref[k]), k
    # the draws follow the target: the free coordinates' means near the minimum of f along them
    assert abs(ref["z"][:, 1].mean() - 2.9) < 0.3


def test_a_second_process_on_the_same_folder_is_refused(tmp_path):
    a, b = JobDir(tmp_path / "out"), JobDir(tmp_path / "out")
    with a:
        with pytest.raises(InputError, match="in use by another"):
            b.lock()
    b.lock()  # free again once the first let go
    b.unlock()


def test_resume_with_another_spec_or_data_is_refused_and_a_fresh_start_clears(tmp_path):
    s = JobDir(tmp_path / "out")
    assert s.prepare("spec1", "data1", resume=False) is False
    s.save("map_start_0", {"x": np.ones(2)})
    assert s.prepare("spec1", "data1", resume=True) is True and s.load("map_start_0") is not None
    with pytest.raises(InputError, match="another spec"):
        s.prepare("spec2", "data1", resume=True)
    with pytest.raises(InputError, match="another data"):
        s.prepare("spec1", "data2", resume=True)
    s.write("heldout.csv", "old")
    (s.out / "notes.csv").write_text("a user's file")
    assert s.prepare("spec2", "data1", resume=False) is False and s.load("map_start_0") is None
    # a fresh start removes the results of an earlier run (by name), and nothing else
    assert not (s.out / "heldout.csv").exists() and (s.out / "notes.csv").read_text() == "a user's file"
    (s.out / "notes.csv").unlink()
    # atomic writes leave no temporary files behind
    s.write("a.txt", "x")
    assert sorted(p.name for p in s.out.iterdir() if not p.name.startswith(".")) == ["a.txt"]
    assert not [p for p in s.out.iterdir() if p.name.endswith(".tmp")]
