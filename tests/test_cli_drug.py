"""`qsp drugs` and `qsp simulate --drug` end to end (small settings)."""
import pandas as pd
from typer.testing import CliRunner

from qsp.cli import app

runner = CliRunner()


def test_drugs_lists_the_library():
    r = runner.invoke(app, ["drugs"])
    assert r.exit_code == 0
    for d in ("teclistamab", "epcoritamab", "blinatumomab", "catumaxomab"):
        assert d in r.output
    assert "label_weekly" in r.output and "BCMA" in r.output


def test_simulate_drug_writes_timecourse_doses_and_plot(tmp_path):
    out = tmp_path / "tec"
    r = runner.invoke(app, ["simulate", "--drug", "teclistamab", "--days", "14", "--out", str(out)])
    assert r.exit_code == 0, r.output
    tc = pd.read_csv(out / "timecourse.csv")
    for col in ("time_day", "conc_ug_per_ml", "il6_pg_per_ml", "blood_t_cells_per_ul", "trimers_per_target_cell",
                "activated_t_fraction", "tumour_cells_per_ul", "ada_titre"):
        assert col in tc.columns
    assert tc.time_day.iloc[0] == 1.0 and tc.time_day.iloc[-1] == 15.0
    doses = pd.read_csv(out / "doses.csv")
    assert list(doses.day) == [1.0, 4.0, 7.0, 14.0]
    assert {"cmax_ug_per_ml", "il6_peak_pg_per_ml", "il6_peak_h_after_dose", "route"} <= set(doses.columns)
    assert (out / "timecourse.png").stat().st_size > 10_000


def test_regimen_file_switches_route(tmp_path):
    f = tmp_path / "flat_iv.csv"
    f.write_text("day,dose,unit,route\n1,1.5,mg/kg,IV_bolus\n")
    r = runner.invoke(app, ["simulate", "--drug", "teclistamab", "--regimen", str(f), "--days", "7",
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    d = pd.read_csv(tmp_path / "o" / "doses.csv")
    assert list(d.route) == ["IV_bolus"]


def test_bad_inputs_exit_2_with_one_line_and_no_output(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("day,dose,unit,route\n1,-3,mg,SC\n")
    for args in (["--drug", "nodrugmab"], ["--drug", "teclistamab", "--regimen", "nope"],
                 ["--drug", "teclistamab", "--premed", "maybe"], ["--drug", "teclistamab", "--regimen", str(bad)],
                 ["--drug", "teclistamab", "--model", "pk-1cmt"]):
        out = tmp_path / "never"
        r = runner.invoke(app, ["simulate", *args, "--out", str(out)])
        assert r.exit_code == 2
        assert r.output.strip().startswith("error:") and len(r.output.strip().splitlines()) == 1, r.output
        assert not out.exists()


def test_param_sets_a_card_parameter_in_drug_mode(tmp_path):
    """--param CL=100 is honoured (it was silently ignored): a far higher clearance lowers every Cmax (at the
    low step-up doses less, where drug bound to soluble BCMA dominates the total)."""
    base, fast = tmp_path / "base", tmp_path / "fast"
    for out, extra in ((base, []), (fast, ["--param", "CL=100", "--param", "CLSS=100"])):
        r = runner.invoke(app, ["simulate", "--drug", "teclistamab", "--days", "7", *extra, "--out", str(out)])
        assert r.exit_code == 0, r.output
    a, b = pd.read_csv(base / "doses.csv"), pd.read_csv(fast / "doses.csv")
    assert (b.cmax_ug_per_ml < a.cmax_ug_per_ml).all()
    assert b.cmax_ug_per_ml.iloc[-1] < 0.5 * a.cmax_ug_per_ml.iloc[-1]


def test_one_compartment_card_takes_v1_as_its_volume(tmp_path):
    r = runner.invoke(app, ["simulate", "--drug", "blinatumomab", "--days", "3", "--param", "V1=50",
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output


def test_broken_user_card_leaves_qsp_drugs_working(tmp_path, monkeypatch):
    monkeypatch.setenv("QSP_MODELS_DIR", str(tmp_path))
    (tmp_path / "junk.toml").write_text("this is [not toml")
    r = runner.invoke(app, ["drugs"])
    assert r.exit_code == 0
    assert "junk" in r.stdout and "INVALID" in r.stdout and "teclistamab" in r.stdout


def test_version():
    import qsp

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"qsp {qsp.__version__}"


def test_steady_state_regimen_file_reports_the_intervals_iterated(tmp_path):
    # maintenance at steady state (NONMEM SS=1) on the TCE model: iterated, and the count is printed
    f = tmp_path / "ss.csv"
    f.write_text("day,dose,unit,route,repeat_every_days,repeat_until_day,steady_state\n1,1.5,mg/kg,SC,7,8,1\n")
    out = tmp_path / "o"
    r = runner.invoke(app, ["simulate", "--drug", "teclistamab", "--regimen", str(f), "--days", "10", "--param",
                            "CL=0.449", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "steady state:" in r.output and "dosing intervals iterated" in r.output
    doses = pd.read_csv(out / "doses.csv")
    # at steady state (time-independent clearance) the second dose's exposure repeats the first's
    assert abs(doses["cmax_ug_per_ml"][1] / doses["cmax_ug_per_ml"][0] - 1) < 1e-3
