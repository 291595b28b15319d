"""A MAP fit exported as calibrated parameters (qsp.calibrate.export): each fitted drug's own parameters
``u_d = A_d x`` with covariance ``A_d Sigma A_d^T``, the class marginal for other drugs, the fit's metadata.

The real (tiny) fit is the session fixture ``calibrated_fit`` (tests/conftest.py); the multi-drug algebra is
checked on a synthetic fit (random optimum and covariance over a real two-drug parameter space).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from qsp.calibrate.export import drug_map, dumps, export_calibrated, write_calibrated
from qsp.calibrate.space import ParameterSpace
from qsp.cards import load_card
from qsp.paramsets import FORMAT, parse_calibrated, read_calibrated


def _idx(names, key):
    return names.index(key)


def test_fitted_drug_section_equals_the_fits_values(calibrated_fit):
    fit, path = calibrated_fit
    cf = read_calibrated(path)
    sec = cf.drug_section("teclistamab")
    assert sec.names == ("CRS_THETA1", "CRS_BETA", "CRS_TOL")
    assert sec.levels == ("class", "class+deviation", "drug")
    assert sec.transforms == ("identity", "log", "identity")
    for k, v in fit.values["teclistamab"].items():
        assert sec.values[k] == pytest.approx(v, rel=1e-12), k


def test_drug_mean_and_covariance_are_the_linear_map_of_the_laplace_approximation(calibrated_fit):
    fit, path = calibrated_fit
    names, x, cov = fit.names, np.asarray(fit.map.x), np.asarray(fit.map.cov)
    sec = read_calibrated(path).drug_section("teclistamab")
    c_b, d_b = _idx(names, "class:CRS_BETA"), _idx(names, "dev:teclistamab:CRS_BETA")
    c_t, q_t = _idx(names, "class:CRS_THETA1"), _idx(names, "drug:teclistamab:CRS_TOL")
    # u = (theta1, beta_class + beta_dev, tol): written out by hand, not through drug_map
    assert np.allclose(sec.mean, [x[c_t], x[c_b] + x[d_b], x[q_t]], rtol=0, atol=1e-12)
    var_beta = cov[c_b, c_b] + cov[d_b, d_b] + 2 * cov[c_b, d_b]
    assert sec.cov[1, 1] == pytest.approx(var_beta, rel=1e-10)
    assert sec.cov[0, 1] == pytest.approx(cov[c_t, c_b] + cov[c_t, d_b], rel=1e-10, abs=1e-14)
    assert sec.cov[2, 2] == pytest.approx(cov[q_t, q_t], rel=1e-12)
    assert sec.cov[0, 2] == pytest.approx(cov[c_t, q_t], rel=1e-10, abs=1e-14)


def test_class_section_is_the_marginal(calibrated_fit):
    fit, path = calibrated_fit
    names, x, cov = fit.names, np.asarray(fit.map.x), np.asarray(fit.map.cov)
    cls = read_calibrated(path).class_section
    assert cls.names == ("CRS_THETA1", "CRS_BETA")
    i = [_idx(names, "class:CRS_THETA1"), _idx(names, "class:CRS_BETA")]
    assert np.allclose(cls.mean, x[i], rtol=0, atol=1e-12)
    assert np.allclose(cls.cov, cov[np.ix_(i, i)], rtol=1e-12, atol=1e-15)
    assert cls.deviation_sd == {"CRS_THETA1": 0.0, "CRS_BETA": 0.5}
    assert cls.values["CRS_BETA"] == pytest.approx(float(np.exp(x[i[1]])), rel=1e-12)


def test_metadata_and_file(calibrated_fit):
    fit, path = calibrated_fit
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT == "qsp-calibrated/1"
    meta = doc["fit"]
    assert meta["command"] == "pytest tests/conftest.py::calibrated_fit"
    assert meta["objective"]["neg_log_posterior"] == pytest.approx(fit.map.value)
    assert meta["settings"]["patients"] == 8 and meta["settings"]["drugs"] == ["teclistamab"]
    assert meta["settings"]["deviations"] == {"CRS_BETA": 0.5}
    assert meta["unconstrained_names"] == fit.names
    assert meta["structure"] == {"secretion_stages": {"teclistamab": 1},  # checked when the file is applied
                                 "dex_holds_secretion": {"teclistamab": False},
                                 "tonic_secretion": {"teclistamab": False},
                                 "monocyte_priming": {"teclistamab": False}}
    assert dt.datetime.fromisoformat(meta["created"]).tzinfo is not None
    assert "qsp_version" in meta
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left
    assert export_calibrated(fit, created=meta["created"], command=meta["command"]) == doc


def test_export_refuses_a_fit_without_covariance(calibrated_fit):
    fit, _ = calibrated_fit
    with pytest.raises(ValueError, match="covariance"):
        export_calibrated(replace(fit, map=replace(fit.map, cov=None)))
    bad = np.array(fit.map.cov, dtype=float)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        export_calibrated(replace(fit, map=replace(fit.map, cov=bad)))


# ------------------------------------------------------------------------------------------------------
# two drugs, synthetic optimum and covariance
# ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_drug_space():
    models = {d: load_card(d).model() for d in ("teclistamab", "elranatamab")}
    return ParameterSpace(models, class_params=("CRS_THETA1", "CRS_BETA", "KIL6"), drug_params=("CRS_TOL",),
                          deviations={"CRS_BETA": 0.5, "KIL6": 0.3})


def _fake_fit(space, seed=0):
    names = space.names()
    rng = np.random.default_rng(seed)
    n = len(names)
    x = np.asarray(space.flatten(space.init())[0]) + 0.1 * rng.standard_normal(n)
    m = rng.standard_normal((n, n))
    cov = 0.05 * (m @ m.T / n + np.eye(n))
    mp = SimpleNamespace(x=x, cov=cov, value=12.5, hessian_min_eig=0.3,
                         starts=[{"value": 12.5, "steps": 10, "ok": True}])
    prob = SimpleNamespace(space=space, patients=16, seed=1, stratified=True, studies=[SimpleNamespace(study_id="S1")],
                           cfg=SimpleNamespace(solver="tsit5", rtol=1e-6, atol=1e-9, max_steps=4096))
    return SimpleNamespace(problem=prob, map=mp, names=names)


def test_drug_map_rows_follow_the_names(two_drug_space):
    names = two_drug_space.names()
    dn, tr, lv, a = drug_map(two_drug_space, "elranatamab")
    assert dn == ["CRS_THETA1", "CRS_BETA", "KIL6", "CRS_TOL"]
    assert lv == ["class", "class+deviation", "class+deviation", "drug"]
    assert tr == ["identity", "log", "log", "identity"]
    expect = {0: {"class:CRS_THETA1"}, 1: {"class:CRS_BETA", "dev:elranatamab:CRS_BETA"},
              2: {"class:KIL6", "dev:elranatamab:KIL6"}, 3: {"drug:elranatamab:CRS_TOL"}}
    for r, keys in expect.items():
        assert {names[j] for j in np.flatnonzero(a[r])} == keys
        assert set(a[r][a[r] != 0]) == {1.0}


def test_two_drug_export_round_trip(two_drug_space, tmp_path):
    space = two_drug_space
    fit = _fake_fit(space)
    path = write_calibrated(fit, tmp_path / "sub" / "two.json", command="qsp-fit --drugs two")
    cf = read_calibrated(path)
    assert set(cf.drugs) == {"teclistamab", "elranatamab"}
    unravel = space.flatten(space.init())[1]
    theta = unravel(fit.map.x)
    for d in space.drugs:
        fitted = {k: float(v) for k, v in space.values(theta, d).items()}
        sec = cf.drug_section(d)
        for k, v in fitted.items():
            assert sec.values[k] == pytest.approx(v, rel=1e-12), (d, k)
        _, _, _, a = drug_map(space, d)
        assert np.allclose(sec.cov, a @ fit.map.cov @ a.T, rtol=1e-12, atol=1e-15)
    # the JSON keeps one matrix row a line, and parses back to the same document
    text = path.read_text()
    assert json.loads(text) == json.loads(dumps(json.loads(text)))
    parse_calibrated(json.loads(text), "again")
    assert json.loads(text)["fit"]["settings"]["stratified"] is True


def test_the_fit_vector_is_recovered_from_its_file(calibrated_fit):
    """x_from_calibrated inverts the export (class entries, drug entries and deviations), so a job can start
    from a shipped fit (``[map] init``); a file of another parameter vector is refused."""
    import numpy as np
    import pytest

    from qsp.calibrate.export import x_from_calibrated
    from qsp.calibrate.space import ParameterSpace
    from qsp.cards import load_card
    from qsp.paramsets import read_calibrated

    fit, path = calibrated_fit
    cf = read_calibrated(path)
    np.testing.assert_allclose(x_from_calibrated(fit.problem.space, cf), fit.map.x, rtol=0, atol=1e-12)
    other = ParameterSpace({"teclistamab": load_card("teclistamab").model()}, class_params=("CRS_THETA1",))
    with pytest.raises(ValueError, match="another parameter vector"):
        x_from_calibrated(other, cf)
