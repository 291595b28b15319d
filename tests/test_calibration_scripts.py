"""The calibration folder's scripts on a tiny real fit (conftest ``calibrated_fit``): the profile script
rebuilds the fit's problem from its params.json and profiles a class parameter."""
from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "calibration" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_profile_script_profiles_a_class_parameter_of_a_fit(calibrated_fit, tmp_path, capsys):
    from qsp.calibrate.fit import write_fit

    fit, _ = calibrated_fit
    write_fit(fit, tmp_path / "fit")
    _script("profile_map").main(["--fit", str(tmp_path / "fit"), "--params", "CRS_THETA1", "--offsets=-1,1",
                                 "--max-steps", "4"])
    df = pd.read_csv(tmp_path / "fit" / "profiles.csv")
    assert list(df.offset_prior_sd) == [-1.0, 0.0, 1.0] and set(df.parameter) == {"CRS_THETA1"}
    assert np.isfinite(df.neg_log_post).all()
    at_map = df[df.offset_prior_sd == 0.0].iloc[0]
    assert at_map.neg_log_post == pytest.approx(fit.map.value, rel=1e-6)  # same problem rebuilt from params.json
    # moving the intercept by 2 prior SDs in log-odds costs likelihood on the CRS incidences
    assert (df[df.offset_prior_sd != 0].delta_2x > 0).all()
    assert (tmp_path / "fit" / "profiles.png").stat().st_size > 1000


def test_profile_script_refuses_a_parameter_the_fit_did_not_fit(calibrated_fit, tmp_path):
    from qsp.calibrate.fit import write_fit

    fit, _ = calibrated_fit
    write_fit(fit, tmp_path / "fit")
    with pytest.raises(SystemExit, match="KIL6 not class parameters of this fit; allowed: CRS_THETA1, CRS_BETA"):
        _script("profile_map").main(["--fit", str(tmp_path / "fit"), "--params", "KIL6"])


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "calibration").glob("*.py")))
def test_every_calibration_script_prints_its_help(name):
    """``--help`` lists the options (fit_map's crashed on a bare '%' in a help text)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "calibration" / f"{name}.py"), "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout and "--" in out.stdout


def test_targets_table_refuses_a_table_without_the_asked_column(tmp_path, capsys):
    """A calibration job's targets.csv has no MAP column: ``--at map`` names the file and the column (it was an
    AttributeError traceback); the shipped fit's table has it and prints both tables."""
    job = pd.read_csv(ROOT / "calibration" / "results" / "joint_crs_nuts" / "targets.csv")
    assert "predicted_map" not in job.columns
    path = tmp_path / "targets.csv"
    job.to_csv(path, index=False)
    mod = _script("targets_table")
    with pytest.raises(SystemExit) as e:
        mod.main([str(path), "--at", "map"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert str(path) in err and "predicted_map" in err and "--at median" in err
    assert mod.main([str(ROOT / "calibration" / "fits" / "map" / "targets.csv"), "--at", "map"]) == 0
    out = capsys.readouterr().out
    assert "predicted at the MAP (day)" in out and "crs_incidence:" in out


def test_card_pk_fit_takes_the_drugs_pk_only_studies_and_refuses_bad_names(capsys):
    """``fit_card_pk.py`` fits a card's PK to the studies that hold PK targets only (talquetamab: the EU SmPC
    summaries and Gong et al.'s half-lives, not MonumenTAL-1's CRS rows); an unknown card, a parameter the card
    lacks or an IIV SD that cannot be fitted stops it before any work, naming the option."""
    from qsp.calibrate import load_targets

    mod = _script("fit_card_pk")
    targets = load_targets()
    assert mod.pk_studies(targets, "talquetamab") == ["MonumenTAL-1-QW-PK", "talquetamab-popPK-Gong2025"]
    assert "epcoritamab-SmPC-ADA" not in mod.pk_studies(targets, "epcoritamab")  # ADA incidence is not PK
    assert mod.pk_studies(targets, "teclistamab") == []  # MajesTEC-1's PK shares its study with CRS and IL-6
    for argv, words in ((["--drug", "nodrug"], ["--drug", "nodrug"]),
                        (["--drug", "talquetamab", "--params", "CL,FOO"], ["--params", "FOO"]),
                        (["--drug", "talquetamab", "--iiv", "OMEGA_FOO"], ["--iiv", "OMEGA_FOO"])):
        with pytest.raises(SystemExit) as e:
            mod.main(argv + ["--out", "unused"])
        msg = str(e.value.code)
        assert all(w in msg for w in words), msg


def test_il6_sampling_trial_means_average_only_the_patients_with_crs():
    mod = _script("il6_mean_sampling")
    il6 = np.array([[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]])
    # only patient 2 ever has CRS: every trial's mean is patient 2's values
    means = mod.trial_means(il6, np.array([0.0, 0.0, 1.0]), n=50, trials=200, rng=np.random.default_rng(0))
    assert np.allclose(means[np.isfinite(means[:, 0])], [100.0, 200.0])
    assert np.isfinite(means[:, 0]).mean() > 0.99  # 50 draws of 3 patients: a trial without patient 2 is rare
    # half of the patients with CRS: the trial means spread around the CRS-weighted mean
    means = mod.trial_means(il6, np.array([0.5, 0.5, 0.5]), n=165, trials=2000, rng=np.random.default_rng(1))
    assert np.nanmean(means[:, 0]) == pytest.approx(37.0, rel=0.05)
    assert np.nanpercentile(means[:, 0], 95) > np.nanpercentile(means[:, 0], 5) + 5.0


def test_il6_sampling_peak_rule_is_per_dose_interval_within_1_5_fold_and_1_day():
    mod = _script("il6_mean_sampling")
    times = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    windows = mod.peak_windows(times, np.array([0.0, 3.0, 7.0]))
    assert [list(np.flatnonzero(m)) for m in windows] == [[0, 1, 2], [3, 4, 5, 6]]  # [7, inf) has 1 point
    obs = np.array([1.0, 4.0, 2.0, 1.0, 1.0, 9.0, 2.0, 1.0])
    hit = np.array([1.0, 3.0, 2.0, 1.0, 8.0, 2.0, 2.0, 1.0])  # window 1: 1.33-fold same day; 2: 1.1-fold 1 day early
    miss = np.array([1.0, 2.0, 1.0, 1.0, 1.0, 5.0, 2.0, 1.0])  # window 1: 2-fold; window 2: 1.8-fold
    assert mod.peaks_within(obs, hit, times, windows) == [True, True]
    assert mod.peaks_within(obs, miss, times, windows) == [False, False]
    late = np.array([1.0, 4.0, 2.0, 1.0, 1.0, 1.0, 2.0, 9.0])  # the burst after the next dose: this interval's max is 2
    assert mod.peaks_within(obs, late, times, windows)[1] is False


def test_il6_sampling_per_dose_selection_starts_the_next_interval_with_the_lower_of_a_pair():
    mod = _script("il6_mean_sampling")
    dose_t = np.array([0.0, 3.0, 6.0, 13.0])
    # pairs just before day 3 and just after day 6 (as in the targets), an equal pair, a pair far from a dose
    times = np.array([2.0, 2.99, 2.99, 3.1, 6.02, 6.02, 13.0, 13.0, 9.0, 9.0])
    obs = np.array([4.7, 5.01, 3.81, 2.8, 8.5, 3.7, 4.2, 4.2, 5.0, 6.0])
    dose_no = np.array([1, 1, 1, 2, 3, 3, 4, 4, 3, 3])
    assert list(mod.interval_of_points(times, obs, dose_no, dose_t)) == [1, 1, 2, 2, 2, 3, 4, 4, 3, 3]


def test_per_dose_targets_copy_switches_only_the_majestec_il6_mean(tmp_path, capsys):
    """The copy differs from the shipped tables only in the MajesTEC-1 IL-6 mean rows: their selection, and the
    dose interval of the two same-time pairs (the higher value of each ends the interval before the dose)."""
    from qsp.calibrate import load_targets
    from qsp.calibrate.likelihood import PER_DOSE

    out = tmp_path / "targets"
    assert _script("per_dose_il6_targets").main([str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dose_no changed at day 2.99 (3.81 pg/mL -> dose 2), day 6.02 (8.50 pg/mL -> dose 2)" in printed
    ship, copy = load_targets(), load_targets(out)
    for name in ("studies", "crs_incidence", "summaries"):
        pd.testing.assert_frame_equal(getattr(ship, name), getattr(copy, name))
    a, b = ship.timecourses, copy.timecourses
    m = ((a.study_id == "MajesTEC-1") & (a.quantity == "il6_pg_per_ml")).to_numpy()
    assert m.sum() == 24 and set(b.selection[m]) == {PER_DOSE} and set(a.selection[m]) != {PER_DOSE}
    pd.testing.assert_frame_equal(a[~m], b[~m])
    moved = (a.dose_no.astype(int) != b.dose_no.astype(int)).to_numpy()
    assert sorted(zip(a.value[moved], a.dose_no[moved].astype(int), b.dose_no[moved].astype(int))) == [
        (3.81, 1, 2), (8.5, 3, 2)]
    with pytest.raises(SystemExit):  # never over an existing set of tables
        _script("per_dose_il6_targets").main([str(out)])


def test_signal_chain_rise_per_dose_window():
    mod = _script("signal_chain")
    t = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    s = np.array([0.0, 0.2, 0.3, 0.25, 0.6, 0.5])
    assert mod.per_dose_rise(t, s, [0.0, 1.5]) == [(0.0, 0.3, 0.3), (0.25, 0.6, pytest.approx(0.35))]


def test_signal_chain_prints_the_typical_patient_of_a_fit(calibrated_fit, tmp_path, capsys):
    import re

    from qsp.calibrate.fit import write_fit

    fit, _ = calibrated_fit
    write_fit(fit, tmp_path / "fit")
    mod = _script("signal_chain")
    assert mod.main(["--fit", str(tmp_path / "fit"), "--days", "0,3,6.5", "--horizon", "8"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"dose (\d) \(day ([\d.]+)\): S ([\d.]+) -> ([\d.]+) \(\+([\d.]+)\)", out)
    assert [int(r[0]) for r in rows] == [1, 2, 3]  # teclistamab: two step-up doses and the first treatment dose
    for _, _, s0, s1, ds in rows:
        assert float(ds) == pytest.approx(float(s1) - float(s0), abs=2e-3) and float(ds) >= 0
    assert float(rows[0][2]) == 0.0 and float(rows[0][4]) > 0  # no signal before the first dose
    with pytest.raises(SystemExit):
        mod.main(["--fit", str(tmp_path / "fit"), "--drug", "blinatumomab"])  # not a drug of this fit


def test_fit_map_on_other_targets_needs_its_own_folder_and_refuses_bad_tables(tmp_path, capsys):
    """``--targets`` without ``--out`` would overwrite the shipped fit's folder; a malformed folder is refused
    (argparse error naming the problem) before anything is compiled."""
    fit_map = _script("fit_map")
    with pytest.raises(SystemExit):
        fit_map.main(["--targets", str(tmp_path)])
    assert "--targets needs --out" in capsys.readouterr().err
    (tmp_path / "studies.csv").write_text("study_id,drug\nS1,nodrug\n")
    with pytest.raises(SystemExit):
        fit_map.main(["--targets", str(tmp_path), "--out", str(tmp_path / "fit")])
    err = capsys.readouterr().err
    assert "--targets:" in err and "studies.csv" in err and not (tmp_path / "fit").exists()


def test_fit_map_warm_start_is_refused_before_any_work_when_it_is_not_a_fit(tmp_path, capsys):
    """``--init`` names a fit folder: a missing params.json, names and values of different lengths, or a folder
    that shares no parameter with the fit is refused (argparse error naming the folder) before compiling."""
    import json

    fit_map = _script("fit_map")
    out = tmp_path / "fit"
    with pytest.raises(SystemExit):
        fit_map.main(["--drugs", "teclistamab", "--init", str(tmp_path / "nofit"), "--out", str(out)])
    assert f"--init {tmp_path / 'nofit'}: not a fit folder" in capsys.readouterr().err and not out.exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "params.json").write_text(json.dumps({"names": ["class:KIL6", "class:HILL"], "x": [0.1]}))
    with pytest.raises(SystemExit):
        fit_map.main(["--drugs", "teclistamab", "--init", str(bad), "--out", str(out)])
    assert "2 names but 1 values" in capsys.readouterr().err
    (bad / "params.json").write_text(json.dumps({"names": ["class:NOT_A_PARAMETER"], "x": [0.1]}))
    with pytest.raises(SystemExit):
        fit_map.main(["--drugs", "teclistamab", "--init", str(bad), "--out", str(out)])
    assert "shares no parameter" in capsys.readouterr().err and not out.exists()


def test_fit_map_refuses_a_parameter_the_cards_do_not_declare(tmp_path, capsys):
    """F_TONIC exists only with [structure] tonic_secretion: asking to fit it on the shipped cards is a clear
    argparse error naming the parameter, not a traceback."""
    fit_map = _script("fit_map")
    with pytest.raises(SystemExit):
        fit_map.main(["--drugs", "teclistamab", "--class-params", "KIL6,F_TONIC", "--out", str(tmp_path / "fit")])
    err = capsys.readouterr().err
    assert "F_TONIC" in err and "Traceback" not in err and not (tmp_path / "fit").exists()


def test_study_pull_splits_the_objective_by_study_with_each_studys_gradient(calibrated_fit, tmp_path):
    import json

    from qsp.calibrate.fit import write_fit

    fit, _ = calibrated_fit
    write_fit(fit, tmp_path / "fit")
    meta = json.loads((tmp_path / "fit" / "params.json").read_text())
    i = meta["names"].index("class:CRS_THETA1")
    step = 1e-4
    # a warm-start folder (names and x only) is a point too
    moved = {"names": meta["names"], "x": [v + (step if k == i else 0.0) for k, v in enumerate(meta["x"])]}
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "params.json").write_text(json.dumps(moved))
    _script("study_pull").main(["--fit", str(tmp_path / "fit"), "--at", str(tmp_path / "moved"),
                                "--params", "CRS_THETA1,CRS_BETA", "--out", str(tmp_path / "moved")])
    df = pd.read_csv(tmp_path / "moved" / "study_pull.csv")  # --out a folder: the table goes in it
    at_map = df[df.point == "map"].set_index("study")
    assert {"prior", "MajesTEC-1"} <= set(at_map.index)
    assert at_map.neg_log_term.sum() == pytest.approx(fit.map.value, rel=1e-6)  # the terms add up to the objective
    # each study's gradient predicts its own term's change along the coordinate (first order)
    moved_terms = df[df.point == str(tmp_path / "moved")].set_index("study").neg_log_term
    change = (moved_terms - at_map.neg_log_term).loc[at_map.index]
    assert change["MajesTEC-1"] != 0.0
    assert change.to_numpy() == pytest.approx(step * at_map["d_class:CRS_THETA1"].to_numpy(), rel=1e-2, abs=1e-9)
    assert at_map.loc["MajesTEC-1", "d_class:CRS_BETA"] != 0.0  # every asked column is the study's own gradient
    assert at_map.loc["prior", "d_class:CRS_BETA"] != at_map.loc["MajesTEC-1", "d_class:CRS_BETA"]


def test_study_pull_refuses_a_parameter_the_fit_does_not_have(calibrated_fit, tmp_path, capsys):
    from qsp.calibrate.fit import write_fit

    fit, _ = calibrated_fit
    write_fit(fit, tmp_path / "fit")
    with pytest.raises(SystemExit):
        _script("study_pull").main(["--fit", str(tmp_path / "fit"), "--params", "KDEACT"])
    assert "--params: KDEACT not in the fit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _script("study_pull").main(["--fit", str(tmp_path / "nothing")])
    assert "not a fit folder" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "params.json").write_text('{"names": ["class:CRS_THETA1"], "x": [NaN]}')
    with pytest.raises(SystemExit):
        _script("study_pull").main(["--fit", str(tmp_path / "fit"), "--at", str(bad)])
    err = capsys.readouterr().err
    assert "'x' must hold finite numbers; not for class:CRS_THETA1" in err and "Traceback" not in err
    (bad / "params.json").write_text('{"names": ["class:NOT_A_PARAMETER"], "x": [0.5]}')
    with pytest.raises(SystemExit):
        _script("study_pull").main(["--fit", str(tmp_path / "fit"), "--at", str(bad)])
    assert "shares no parameter with the fit" in capsys.readouterr().err


def test_study_pull_overlay_gives_a_covered_drug_the_other_fits_values():
    """A drug the other fit covers gets that fit's class + deviation (its missing deviations are 0); another drug
    keeps the first fit's deviation; names the first fit lacks are reported."""
    overlay = _script("study_pull").overlay
    names = ["class:HILL", "dev:teclistamab:HILL", "dev:elranatamab:HILL", "drug:teclistamab:CHI"]
    other = {"names": ["class:HILL", "drug:teclistamab:CHI", "class:F_TONIC"], "x": [1.0, 2.0, -3.0],
             "drugs": ["teclistamab"]}
    x, used, ignored = overlay(names, [0.1, 0.2, 0.3, 0.4], other)
    assert x == [1.0, 0.0, 0.3, 2.0]
    assert used == ["class:HILL", "dev:teclistamab:HILL", "drug:teclistamab:CHI"] and ignored == ["class:F_TONIC"]


def test_fit_map_warm_start_note_names_another_structure_or_a_hand_made_start():
    """A warm start from a fit of another structure, or from a hand-made folder (names and x only), is allowed
    with a note saying so; a fit of the same structure gets none."""
    from qsp.calibrate.space import ParameterSpace
    from qsp.cards import load_card

    note = _script("fit_map")._init_structure_note
    space = ParameterSpace({"teclistamab": load_card("teclistamab").model()}, class_params=("KIL6",))
    assert note(space, {"names": ["class:KIL6"], "x": [2.0]}).startswith("note: the warm start names no drugs")
    same = {"drugs": ["teclistamab"], "structure": {"secretion_stages": {"teclistamab": 1}}}
    assert note(space, same) is None
    other = {"drugs": ["teclistamab"], "structure": {"secretion_stages": {"teclistamab": 6}}}
    assert "another structure" in note(space, other) and "teclistamab = 6" in note(space, other)


def test_variant_cards_switch_on_the_named_structure_options(tmp_path, capsys):
    """variant_cards.py writes every card with the asked options (stages in the SC cards only, the published sBCMA
    IIV in the BCMA cards, replacing teclistamab's assumed one); the cards validate; a non-empty folder is refused."""
    from qsp.cards import load_card_file
    from qsp.population import population_spec
    from qsp.tce import structure_options_of

    vc = _script("variant_cards")
    out = tmp_path / "cards"
    assert vc.main([str(out), "--stages-sc", "6", "--tonic", "--priming", "--sbcma-iiv"]) == 0
    assert sorted(p.stem for p in out.glob("*.toml")) == sorted(p.stem for p in (ROOT / "models").glob("*.toml"))
    for drug, stages in (("teclistamab", 6), ("glofitamab", 1)):
        card = load_card_file(out / f"{drug}.toml")
        assert structure_options_of(card.model()) == {"secretion_stages": stages, "dex_holds_secretion": False,
                                                      "tonic_secretion": True, "monocyte_priming": True}
    for drug in ("teclistamab", "elranatamab"):
        text = (out / f"{drug}.toml").read_text()
        assert text.count("STAA0 = { value = 1.346") == 1 and "STAA0 = { value = 0.6" not in text
        assert population_spec(load_card_file(out / f"{drug}.toml")).omega["STAA0"] == 1.346
    with pytest.raises(SystemExit):
        vc.main([str(out), "--tonic"])
    assert "not an empty folder" in capsys.readouterr().err


def test_variant_cards_correlate_sbcma_with_tumour_burden(tmp_path):
    """``--sbcma-tumour-corr`` adds the TUMOR0-STAA0 correlation to the BCMA cards only, next to the card's own
    correlations (teclistamab: none) or the population defaults (elranatamab sets none: CL-V1 0.4 kept); the
    virtual patients drawn from the card then carry it (log-scale correlation near 0.73 over 2,000 patients)."""
    from qsp.cards import load_card_file
    from qsp.population import population_spec, sample_population

    vc = _script("variant_cards")
    assert vc.SBCMA_TUMOUR_CORR == 0.73  # 2 sin(pi 0.710 / 6)
    out = tmp_path / "cards"
    assert vc.main([str(out), "--sbcma-iiv", "--sbcma-tumour-corr"]) == 0
    tec = population_spec(load_card_file(out / "teclistamab.toml"))
    elr = population_spec(load_card_file(out / "elranatamab.toml"))
    assert tec.correlations == {("TUMOR0", "STAA0"): 0.73}
    assert elr.correlations == {("CL", "V1"): 0.4, ("TUMOR0", "STAA0"): 0.73}
    assert "Ghermezi" in (out / "teclistamab.toml").read_text().split("correlations = [[")[0].rsplit("\n", 2)[-2]
    epc = population_spec(load_card_file(out / "epcoritamab.toml"))
    assert not any("STAA0" in pair for pair in epc.correlations)
    card = load_card_file(out / "teclistamab.toml")
    pop = sample_population(card.model(), 2000, seed=3, spec=tec)
    r = np.corrcoef(np.log(pop.params["TUMOR0"]), np.log(pop.params["STAA0"]))[0, 1]
    assert r == pytest.approx(0.73, abs=0.04)
    with pytest.raises(SystemExit, match="already correlates TUMOR0 and STAA0"):
        vc.with_sbcma_tumour_corr("teclistamab", (out / "teclistamab.toml").read_text())


def test_il6_tail_peaks_per_dose_window_and_the_share_of_the_top_patients():
    mod = _script("il6_tail")
    ts = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    x = np.array([[1.0, 5.0, 2.0, 1.0, 9.0, 3.0], [2.0, 2.0, 2.0, 7.0, 1.0, 1.0]])
    assert mod.window_peaks(ts, x, np.array([0.0, 3.0])).tolist() == [[5.0, 9.0], [2.0, 7.0]]
    assert np.isnan(mod.window_peaks(ts, x, np.array([0.0, 5.5]))[:, 1]).all()  # no output time in [5.5, inf)
    v, w = np.array([100.0, 1.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0, 0.0])
    assert mod.carried_share(v, w, 1) == pytest.approx(100.0 / 102.0)  # weight 0 carries nothing
    assert mod.carried_share(v, w, 4) == pytest.approx(1.0)


def test_il6_tail_prints_a_fits_patients_and_refuses_a_study_of_another_drug(calibrated_fit, tmp_path, capsys):
    import re

    from qsp.calibrate.fit import write_fit

    fit, _ = calibrated_fit
    write_fit(fit, tmp_path / "fit")
    mod = _script("il6_tail")
    from qsp.calibrate import load_targets

    # only studies whose IL-6 mean is over patients with CRS: not blinatumomab's individual peaks, not CRS-only
    assert mod.eligible_studies(load_targets(), ["teclistamab", "elranatamab", "blinatumomab"]) == ["MajesTEC-1"]
    with pytest.raises(SystemExit):
        mod.main(["--fit", str(tmp_path / "fit"), "--study", "MagnetisMM-pooled"])
    err = capsys.readouterr().err
    assert "--study" in err and "allowed: MajesTEC-1" in err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "params.json").write_text("{not json")
    with pytest.raises(SystemExit):
        mod.main(["--fit", str(tmp_path / "broken")])
    assert "is not a fit's params.json" in capsys.readouterr().err
    assert mod.main(["--fit", str(tmp_path / "fit"), "--top", "2", "--doses", "3"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\s+(\d)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    for _, _, mean, median, share in rows:
        assert float(mean) > 0 and float(median) > 0 and 0 < float(share) <= 1
    assert "STAA0" in out and "TUMOR0" in out and "crs_eta" in out  # the drawn IIV and the CRS effect are listed


def test_priming_probe_refuses_bad_grids_and_cards_without_the_option(calibrated_fit, tmp_path, capsys):
    """priming_probe.py checks its grid and the fit folder before any work, and needs cards with the option."""
    from qsp.calibrate.fit import write_fit

    probe = _script("priming_probe")
    with pytest.raises(SystemExit):
        probe.main(["--fit", str(tmp_path), "--gain", "0,3"])
    assert "--gain" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        probe.main(["--fit", str(tmp_path)])
    assert "params.json not found" in capsys.readouterr().err
    fit, _ = calibrated_fit
    write_fit(fit, tmp_path / "fit")
    with pytest.raises(SystemExit, match="no \\[structure\\] monocyte_priming"):
        probe.main(["--fit", str(tmp_path / "fit")])
    assert probe.unconstrained("logit", 0.5) == 0.0 and probe.unconstrained("log", 1.0) == 0.0
