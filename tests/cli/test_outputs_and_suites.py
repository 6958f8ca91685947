"""Output paths checked before any work, unique ``semisup`` data set names, and the
``benchmark`` argument checks (no suite is run: their run functions are replaced by recorders)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from oddeye.cli import main
from oddeye.commands._common import check_output_dir, check_output_file, write_json
from oddeye.errors import DataError, OddeyeError

HAS_PROC = Path("/proc").is_dir() and sys.platform.startswith("linux")
needs_proc = pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc (not writable)")


def _npz(path: Path, seed: int) -> Path:
    """A tiny two-class .npz (60 normal, 10 shifted anomalies, 4 features)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(70, 4)).astype(np.float32)
    X[60:, :2] += 3.0
    y = np.r_[np.zeros(60, int), np.ones(10, int)]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, X=X, y=y)
    return path


@pytest.fixture()
def dup_root(tmp_path: Path) -> Path:
    """``npz/dup/A/d.npz`` and ``npz/dup/B/d.npz``: two data sets with the same file name."""
    root = tmp_path / "npz" / "dup"
    _npz(root / "A" / "d.npz", 0)
    _npz(root / "B" / "d.npz", 1)
    return root


def _one_error_line(err: str, command: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"oddeye {command}: error: ")
    assert "Traceback" not in err
    return lines[0]


# -- 1. semisup: same file name in different folders ----------------------------------------------
def test_semisup_same_stem_in_two_folders_keeps_both(dup_root, tmp_path, capsys):
    out = tmp_path / "res.json"
    code = main(["semisup", "--data", str(dup_root), "--method", "knn", "--seeds", "1",
                 "--json", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    assert set(res["per_dataset"]) == {"A/d", "B/d"}
    assert res["per_dataset"]["A/d"]["name"] == "A/d"
    assert res["mean_auroc"] == pytest.approx(
        np.mean([r["auroc"] for r in res["per_dataset"].values()]))
    text = capsys.readouterr().out
    assert "2 data set(s)" in text and "A/d" in text and "B/d" in text


def test_dataset_names_only_lengthen_clashing_stems(tmp_path):
    from oddeye.semisup.protocol import dataset_names

    files = [tmp_path / "A" / "d.npz", tmp_path / "B" / "d.npz", tmp_path / "B" / "e.npz"]
    assert dataset_names(files, tmp_path) == ["A/d", "B/d", "e"]
    assert dataset_names([tmp_path / "x.npz"], tmp_path / "x.npz") == ["x"]


# -- 5. semisup --threads -------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["-3", "two"])
def test_semisup_threads_refused_at_parse_time(dup_root, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["semisup", "--data", str(dup_root), "--threads", value])
    assert exc.value.code == 2
    assert "--threads" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "1.5"])
def test_semisup_seeds_refused_at_parse_time(dup_root, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["semisup", "--data", str(dup_root), "--seeds", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seeds" in err and "Traceback" not in err


# -- 2. output paths, checked before any work -----------------------------------------------------
def test_check_output_file_and_dir(tmp_path):
    new = tmp_path / "a" / "b" / "out.json"
    assert check_output_file(new, "--json") == new
    assert not (tmp_path / "a").exists()  # nothing created
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    assert check_output_file(existing, "--json") == existing
    assert check_output_dir(tmp_path / "rep" / "x", "--report") == tmp_path / "rep" / "x"
    assert check_output_dir(tmp_path, "--report") == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
    with pytest.raises(DataError, match="--json .*is a folder"):
        check_output_file(tmp_path, "--json")
    with pytest.raises(DataError, match="--report .*is a file, not a folder"):
        check_output_dir(existing, "--report")
    with pytest.raises(DataError, match="--json .*old.json is a file"):
        check_output_file(existing / "x.json", "--json")
    with pytest.raises(DataError, match="--report .*old.json is a file"):
        check_output_dir(existing / "sub", "--report")


@needs_proc
def test_check_output_refuses_proc():
    with pytest.raises(DataError, match="--out /proc/nope/R.md: cannot write in /proc"):
        check_output_file("/proc/nope/R.md", "--out")
    with pytest.raises(DataError, match="--report /proc/x: cannot write in /proc"):
        check_output_dir("/proc/x", "--report")


def test_write_json_turns_oserror_into_data_error(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(DataError, match="cannot write"):
        write_json(blocker / "x.json", {"a": 1})
    with pytest.raises(DataError, match="cannot write"):
        write_json(tmp_path, {"a": 1})


def _semisup_must_not_run(monkeypatch) -> None:
    import oddeye.semisup.protocol as protocol

    def boom(*a, **k):
        raise AssertionError("the evaluation ran before the output path was checked")

    monkeypatch.setattr(protocol, "run_dataset", boom)


@pytest.mark.parametrize("kind", ["folder", "under_file", pytest.param("proc", marks=needs_proc)])
def test_semisup_json_checked_before_work(kind, dup_root, tmp_path, monkeypatch, capsys):
    _semisup_must_not_run(monkeypatch)
    blocker = tmp_path / "plain"
    blocker.write_text("")
    target = {"folder": str(tmp_path), "under_file": str(blocker / "r.json"),
              "proc": "/proc/nope.json"}[kind]
    assert main(["semisup", "--data", str(dup_root), "--method", "knn", "--seeds", "1",
                 "--json", target]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no table: nothing was computed
    assert "--json" in _one_error_line(captured.err, "semisup")


@pytest.mark.parametrize("flag,kind", [("--report", "file"), ("--json", "folder"),
                                       ("--json", "under_file"),
                                       pytest.param("--report", "proc", marks=needs_proc),
                                       pytest.param("--json", "proc", marks=needs_proc)])
def test_test_outputs_checked_before_loading_the_model(flag, kind, tmp_path, capsys):
    existing = tmp_path / "exists.html"
    existing.write_text("")
    target = {"file": str(existing), "folder": str(tmp_path),
              "under_file": str(existing / "m.json"),
              "proc": "/proc/x" if flag == "--report" else "/proc/x.json"}[kind]
    # the model file does not exist: the output check must come first and be what fails
    assert main(["test", "--model", str(tmp_path / "missing.oddeye"), "--data", str(tmp_path),
                 flag, target]) == 2
    line = _one_error_line(capsys.readouterr().err, "test")
    assert flag in line and "missing.oddeye" not in line


def _record_suite(monkeypatch, module: str) -> list[dict]:
    """Replace a suite's ``run`` by a recorder; returns the list of keyword arguments seen."""
    import importlib

    calls: list[dict] = []
    mod = importlib.import_module(module)

    def fake(**kwargs):
        calls.append(kwargs)
        return "(recorded)"

    monkeypatch.setattr(mod, "run", fake)
    return calls


@pytest.mark.parametrize("kind", ["folder", "under_file", pytest.param("proc", marks=needs_proc)])
def test_benchmark_out_checked_before_the_suite(kind, tmp_path, monkeypatch, capsys):
    calls = _record_suite(monkeypatch, "oddeye.bench.metrics_suite")
    blocker = tmp_path / "plain"
    blocker.write_text("")
    target = {"folder": str(tmp_path), "under_file": str(blocker / "R.md"),
              "proc": "/proc/nope/R.md"}[kind]
    assert main(["benchmark", "--suite", "metrics", "--out", target]) == 2
    assert "--out" in _one_error_line(capsys.readouterr().err, "benchmark")
    assert calls == []


def test_benchmark_good_out_runs_the_suite(tmp_path, monkeypatch):
    calls = _record_suite(monkeypatch, "oddeye.bench.metrics_suite")
    out = tmp_path / "new" / "R.md"
    assert main(["benchmark", "--suite", "metrics", "--out", str(out)]) == 0
    assert calls == [{"out_path": str(out)}]


# -- 3. benchmark: flags a suite does not use -----------------------------------------------------
@pytest.mark.parametrize("extra", [["--methods", "nosuch"], ["--datasets", "nothere"],
                                   ["--section", "zz"], ["--backbone", "resnet18"],
                                   ["--param", "k=1"]])
def test_benchmark_refuses_flags_the_suite_ignores(extra, tmp_path, monkeypatch, capsys):
    calls = _record_suite(monkeypatch, "oddeye.bench.metrics_suite")
    assert main(["benchmark", "--suite", "metrics", *extra, "--out",
                 str(tmp_path / "R.md")]) == 2
    line = _one_error_line(capsys.readouterr().err, "benchmark")
    assert extra[0] in line and "metrics" in line
    assert calls == []


def test_benchmark_adbench_refuses_detection_only_flags(tmp_path, monkeypatch, capsys):
    calls = _record_suite(monkeypatch, "oddeye.bench.adbench_suite")
    assert main(["benchmark", "--suite", "adbench", "--methods", "devnet", "--out",
                 str(tmp_path / "R.md")]) == 2
    line = _one_error_line(capsys.readouterr().err, "benchmark")
    assert "--methods" in line and "adbench" in line
    assert calls == []


def test_benchmark_datasets_for_detection_and_adbench_together_refused(tmp_path, capsys):
    assert main(["benchmark", "--suite", "detection", "adbench", "--datasets", str(tmp_path),
                 "--out", str(tmp_path / "R.md")]) == 2
    assert "separately" in _one_error_line(capsys.readouterr().err, "benchmark")


def test_adbench_root_follows_oddeye_shared_data(tmp_path, monkeypatch, capsys):
    from oddeye.bench import adbench_suite

    calls = _record_suite(monkeypatch, "oddeye.bench.adbench_suite")
    monkeypatch.setenv("ODDEYE_SHARED_DATA", str(tmp_path / "shared"))
    assert adbench_suite.default_root() == tmp_path / "shared" / "adbench"
    assert main(["benchmark", "--suite", "adbench", "--out", str(tmp_path / "R.md")]) == 2
    line = _one_error_line(capsys.readouterr().err, "benchmark")
    assert str(tmp_path / "shared" / "adbench") in line and "ODDEYE_SHARED_DATA" in line
    assert "--datasets" in line
    assert calls == []
    _npz(tmp_path / "shared" / "adbench" / "Classical" / "one.npz", 0)
    assert adbench_suite.data_files(None) == [tmp_path / "shared" / "adbench" / "Classical"
                                              / "one.npz"]
    assert main(["benchmark", "--suite", "adbench", "--out", str(tmp_path / "R.md")]) == 0
    assert calls == [{"out_path": str(tmp_path / "R.md")}]


def test_adbench_unset_env_message_names_the_relative_default(tmp_path, monkeypatch):
    from oddeye.bench import adbench_suite

    monkeypatch.delenv("ODDEYE_SHARED_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"\.\./shared/data/adbench not found .*unset"):
        adbench_suite.data_files(None)


def test_benchmark_adbench_datasets_point_at_files_and_folders(dup_root, tmp_path, monkeypatch):
    calls = _record_suite(monkeypatch, "oddeye.bench.adbench_suite")
    one = _npz(tmp_path / "solo" / "e.npz", 2)
    folder = dup_root / "A"
    assert main(["benchmark", "--suite", "adbench", "--datasets", str(folder), str(one),
                 "--out", str(tmp_path / "R.md")]) == 0
    assert calls == [{"out_path": str(tmp_path / "R.md"), "data_root": [str(folder), str(one)]}]


def test_adbench_data_files_refuses_missing_and_clashing_names(dup_root, tmp_path):
    from oddeye.bench.adbench_suite import data_files

    with pytest.raises(DataError, match="both named 'd'"):
        data_files(dup_root)
    with pytest.raises(DataError, match="not found"):
        data_files([tmp_path / "nothere"])
    assert data_files([dup_root / "A", dup_root / "A" / "d.npz"]) == [dup_root / "A" / "d.npz"]


# -- 4. detection suite: methods and folders checked up front -------------------------------------
@pytest.mark.parametrize("extra,needle", [
    (["--methods", "patchcore", "nosuch"], "'nosuch'"),
    (["--datasets", "/nonexistent/oddeye-x"], "/nonexistent/oddeye-x"),
])
def test_benchmark_detection_checks_up_front(extra, needle, tmp_path, monkeypatch, capsys):
    calls = _record_suite(monkeypatch, "oddeye.bench.detection_suite")
    assert main(["benchmark", "--suite", "detection", *extra, "--out",
                 str(tmp_path / "R.md")]) == 2
    assert needle in _one_error_line(capsys.readouterr().err, "benchmark")
    assert calls == []


def test_detection_check_args(tmp_path):
    from oddeye.bench.detection_suite import check_args

    check_args(["patchcore", "padim"], ["synthetic", "tire", "deeppcb"])
    check_args(None, None)
    with pytest.raises(DataError, match="not a data set folder"):
        check_args(["patchcore"], [str(tmp_path)])  # a folder, but no category in it


def test_detection_child_failure_is_one_line():
    from oddeye.bench.detection_suite import _run_child

    cmd = [sys.executable, "-c",
           "import sys; print('Traceback ...', file=sys.stderr); "
           "print('error: no such thing', file=sys.stderr); sys.exit(2)"]
    with pytest.raises(OddeyeError, match="padim on mydata failed: no such thing") as exc:
        _run_child(cmd, "padim", "mydata")
    assert "\n" not in str(exc.value)
