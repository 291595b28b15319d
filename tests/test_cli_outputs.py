"""Output folders (qsp/cli/outputs.py): a rerun replaces its own previous outputs and keeps everything else."""

from qsp.cli.outputs import MANIFEST, write_outputs


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_rerun_removes_its_own_stale_outputs_only(tmp_path):
    out = tmp_path / "opt"
    write_outputs(out, {"pareto.csv": b"a", "regimens/r01_4step.csv": b"1", "regimens/r02_3step.csv": b"2"},
                  owner="optimize")
    (out / "notes.txt").write_text("mine")  # the user's own file
    write_outputs(out, {"predictions.csv": b"s"}, owner="simulate")  # another command into the same folder
    write_outputs(out, {"pareto.csv": b"b", "regimens/r01_3step.csv": b"3"}, owner="optimize")
    assert _files(out) == sorted([".qsp-outputs-optimize", ".qsp-outputs-simulate", "notes.txt", "pareto.csv",
                                  "predictions.csv", "regimens/r01_3step.csv"])
    assert (out / "pareto.csv").read_bytes() == b"b"
    assert (out / MANIFEST.format(owner="optimize")).read_text().split() == ["pareto.csv", "regimens/r01_3step.csv"]


def test_empty_folder_of_stale_outputs_goes_and_manifest_cannot_reach_outside(tmp_path):
    out = tmp_path / "run"
    outside = tmp_path / "keep.csv"
    outside.write_text("x")
    write_outputs(out, {"a.csv": b"1", "sub/b.csv": b"2"}, owner="simulate")
    manifest = out / MANIFEST.format(owner="simulate")
    manifest.write_text(manifest.read_text() + "../keep.csv\n")  # a tampered manifest
    write_outputs(out, {"a.csv": b"3"}, owner="simulate")
    assert _files(out) == [".qsp-outputs-simulate", "a.csv"] and not (out / "sub").exists()
    assert outside.read_text() == "x"


def test_first_write_without_manifest_keeps_existing_files(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "r01_4step.csv").write_text("from a version before manifests")
    write_outputs(out, {"pareto.csv": b"p"}, owner="optimize")
    assert _files(out) == [".qsp-outputs-optimize", "pareto.csv", "r01_4step.csv"]


def test_a_file_rewritten_by_another_command_passes_to_it(tmp_path):
    out = tmp_path / "d"
    write_outputs(out, {"pareto.csv": b"p", "restart_rules.csv": b"opt"}, owner="optimize")
    write_outputs(out, {"restart_rules.csv": b"restart"}, owner="restart")
    write_outputs(out, {"pareto.csv": b"q"}, owner="optimize")  # e.g. --no-restart-rules
    assert (out / "restart_rules.csv").read_bytes() == b"restart"
    assert (out / MANIFEST.format(owner="optimize")).read_text().split() == ["pareto.csv"]


def test_manifest_names_are_normalised_and_symlinks_not_followed(tmp_path):
    out = tmp_path / "n"
    write_outputs(out, {"regimens/a.csv": b"1", "b.csv": b"2"}, owner="optimize")
    mine = out / "mine"
    mine.mkdir()
    (mine / "b.csv").write_text("user")
    (out / "link").symlink_to(mine, target_is_directory=True)
    manifest = out / MANIFEST.format(owner="optimize")
    manifest.write_text("regimens//a.csv\n./b.csv\nlink/b.csv\n" + str(mine / "b.csv") + "\n")
    write_outputs(out, {"regimens/a.csv": b"3"}, owner="optimize")
    assert (out / "regimens/a.csv").read_bytes() == b"3"  # the same file spelled differently: kept
    assert not (out / "b.csv").exists()  # ./b.csv is b.csv: a stale output, removed
    assert (mine / "b.csv").read_text() == "user"  # reached only through a symlink or by an absolute path

