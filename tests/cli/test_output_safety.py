"""Outputs never destroy inputs and are checked before any work; a reader that goes away or a
busy port ends a command in one line (found by a CLI audit, twenty-fifth session)."""

from __future__ import annotations

import json
import shutil
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from oddeye.cli import main
from oddeye.errors import OddeyeError


@pytest.fixture(scope="module")
def model(synth_root, tmp_path_factory) -> Path:
    """A small PatchCore model of the synthetic grid class (64 px)."""
    out = tmp_path_factory.mktemp("outputs") / "grid.oddeye"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["train", "--data", str(synth_root), "--category", "grid", "--size", "64",
                     "--out", str(out), "--no-progress"]) == 0
    return out


def _copy(model: Path, tmp_path: Path, name: str = "m.oddeye") -> Path:
    return Path(shutil.copy(model, tmp_path / name))


def _one_error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def _intact(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before, f"{path} was overwritten"


# ----------------------------------------------------------------- outputs naming inputs
def test_json_naming_the_model_is_refused_and_the_model_kept(model, synth_root, tmp_path,
                                                             capsys):
    m = _copy(model, tmp_path)
    before = m.read_bytes()
    for argv in (["info", str(m), "--json", str(m)],
                 ["test", "--model", str(m), "--data", str(synth_root / "grid"), "--json",
                  str(m), "--no-progress"]):
        assert main(argv) == 2
        line = _one_error(capsys)
        assert "--json" in line and "same file as" in line and "destroy" in line
        _intact(m, before)


def test_calibrate_json_may_name_neither_the_model_nor_its_output(model, synth_root, tmp_path,
                                                                  capsys):
    m = _copy(model, tmp_path)
    before = m.read_bytes()
    test = synth_root / "grid" / "test"
    bad = next(d for d in test.iterdir() if d.name != "good")
    base = ["calibrate", "--model", str(m), "--good", str(test / "good"), "--defective",
            str(bad)]
    assert main([*base, "--out", str(m), "--json", str(m)]) == 2
    assert "same file as" in _one_error(capsys)
    _intact(m, before)
    out = tmp_path / "cal.oddeye"
    assert main([*base, "--out", str(out), "--json", str(out)]) == 2
    assert "same file as --out" in _one_error(capsys)
    assert not out.exists()


def test_semisup_json_naming_the_data_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 4)), (np.arange(120) < 12).astype(int)
    data = tmp_path / "d.npz"
    np.savez(data, X=x, y=y)
    before = data.read_bytes()
    assert main(["semisup", "--data", str(data), "--method", "iforest", "--seeds", "1",
                 "--json", str(data)]) == 2
    assert "same file as --data" in _one_error(capsys)
    _intact(data, before)


# ------------------------------------------------------------------------------- export
@pytest.mark.parametrize("extra, words", [
    (["--out", "{tmp}/model.bin"], ["give a .onnx file name"]),
    (["--out", "{tmp}/x.onnx", "--tolerance", "-1"], ["--tolerance", "-1"]),
    (["--out", "{tmp}/x.onnx", "--check", "{tmp}/empty.png"], ["empty.png", "empty"]),
    (["--out", "{tmp}/afile/x.onnx"], ["afile", "is a file"]),
])
def test_export_refuses_bad_outputs_and_checks_before_writing_anything(model, tmp_path, capsys,
                                                                       extra, words):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "afile").write_text("x")
    argv = ["export", "--model", str(model), *[a.format(tmp=tmp_path) for a in extra]]
    assert main(argv) == 2
    line = _one_error(capsys)
    for w in words:
        assert w in line, (w, line)
    assert not list(tmp_path.glob("*.onnx")) and not (tmp_path / "model.bin").exists()


# -------------------------------------------------------------------------------- train
@pytest.mark.parametrize("out, words", [
    ("{tmp}/afile/m.oddeye", ["afile", "is a file"]),
    ("{tmp}/afile/folder", ["afile", "is a file"]),
    ("/proc/oddeye-test.oddeye", ["cannot write in /proc"]),
    ("", ["--out: empty name"]),
])
def test_train_checks_its_output_before_fitting(synth_root, tmp_path, capsys, monkeypatch, out,
                                                words):
    (tmp_path / "afile").write_text("x")
    fitted = []
    monkeypatch.setattr("oddeye.commands.train.fit_one", lambda *a: fitted.append(a))
    assert main(["train", "--data", str(synth_root / "grid"), "--method", "padim", "--size",
                 "64", "--out", out.format(tmp=tmp_path), "--no-progress"]) == 2
    line = _one_error(capsys)
    for w in words:
        assert w in line, (w, line)
    assert fitted == []


def test_train_suffix_is_case_blind_and_an_existing_model_is_announced(synth_root, tmp_path,
                                                                        capsys, monkeypatch):
    jobs = []
    monkeypatch.setattr("oddeye.commands.train.fit_one", lambda a, g, path, p: jobs.append(path))
    out = tmp_path / "M.ODDEYE"
    out.write_bytes(b"old")
    assert main(["train", "--data", str(synth_root / "grid"), "--method", "padim", "--out",
                 str(out), "--no-progress"]) == 0
    assert jobs == [out]  # one model file, not a folder of them
    assert f"{out} exists and will be replaced" in capsys.readouterr().err


# ------------------------------------------------------------------------------ predict
def test_predict_into_its_own_input_folder_and_again_scores_the_same_images(model, synth_root,
                                                                            tmp_path, capsys):
    inp = tmp_path / "inp"
    shutil.copytree(synth_root / "grid" / "test" / "good", inp)
    n = len(list(inp.glob("*.png")))
    for run in range(2):
        assert main(["predict", "--model", str(model), str(inp), "--out", str(inp / "pred")]) == 0
        rows = (inp / "pred" / "results.csv").read_text().splitlines()[1:]
        assert len(rows) == n, run
    assert f"left out {2 * n} file(s) under --out" in capsys.readouterr().err


def test_predict_replaces_an_earlier_runs_files_in_its_output_folder(model, synth_root,
                                                                     tmp_path, capsys):
    test = synth_root / "grid" / "test"
    bad = next(d for d in test.iterdir() if d.name != "good")
    out = tmp_path / "po"
    assert main(["predict", "--model", str(model), str(test / "good"), "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    assert main(["predict", "--model", str(model), str(bad), "--out", str(out)]) == 0
    rows = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(
        Path(r["overlay"]).name for r in rows)
    assert len(list((out / "masks").iterdir())) == len(rows)
    assert (out / "notes.txt").read_text() == "mine"  # only the earlier run's own files went
    assert "replaced an earlier run's results" in capsys.readouterr().err


def test_a_broken_link_in_a_walked_folder_is_reported_not_dropped(model, synth_root, tmp_path):
    w = tmp_path / "w"
    w.mkdir()
    shutil.copy(next((synth_root / "grid" / "test" / "good").glob("*.png")), w / "a.png")
    (w / "b.png").symlink_to(tmp_path / "nothing.png")
    assert main(["predict", "--model", str(model), str(w), "--out", str(tmp_path / "p")]) == 0
    rows = [json.loads(ln) for ln in (tmp_path / "p" / "results.jsonl").read_text().splitlines()]
    errors = [r for r in rows if "error" in r]
    assert len(rows) == 2 and len(errors) == 1 and "broken link" in errors[0]["error"]


# ------------------------------------------------------------------- stdout, serve, names
class _GonePipe:
    """A stdout whose reader has gone."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_still_lets_the_command_write_its_files(model, tmp_path, monkeypatch):
    out = tmp_path / "info.json"
    monkeypatch.setattr("sys.stdout", _GonePipe())
    assert main(["info", str(model), "--json", str(out)]) == 0
    assert json.loads(out.read_text())


def test_serve_names_a_busy_port_and_an_unknown_host_before_loading():
    from oddeye.commands.serve import check_address

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OddeyeError, match=rf"cannot listen on 127.0.0.1 port {port}: "
                                              r"already in use"):
            check_address("127.0.0.1", port)
    with pytest.raises(OddeyeError, match=r"--host nosuchhost.invalid: cannot resolve"):
        check_address("nosuchhost.invalid", 8000)


def test_unknown_hyper_parameter_lists_the_known_ones(synth_root, tmp_path, capsys):
    assert main(["train", "--data", str(synth_root / "grid"), "--method", "padim", "--param",
                 "foo=1", "--out", str(tmp_path / "m.oddeye"), "--no-progress"]) == 2
    line = _one_error(capsys)
    assert "it has no 'foo'" in line and "n_features" in line and "__init__" not in line


def test_a_model_from_a_newer_version_with_an_unknown_parameter_says_so(model, tmp_path,
                                                                        capsys):
    payload = torch.load(model, weights_only=True)
    meta = json.loads(payload["meta_json"])
    meta["method_params"]["from_the_future"] = 1
    meta["oddeye_version"] = "9.0.0"
    payload["meta_json"] = json.dumps(meta)
    torch.save(payload, tmp_path / "future.oddeye")
    assert main(["info", str(tmp_path / "future.oddeye")]) == 2
    line = _one_error(capsys)
    assert "'from_the_future'" in line and "written by oddeye 9.0.0" in line
