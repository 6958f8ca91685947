"""``oddeye calibrate``: the F1-optimal threshold from labelled images, written to a model file
that scores exactly as before and keeps its training record; bad inputs refused up front."""

from __future__ import annotations

import json

import numpy as np
import pytest

import oddeye
from oddeye.api import f1_optimal_threshold
from oddeye.cli import main
from oddeye.data.mvtec import load_dataset
from oddeye.metrics import precision_recall_f1


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    """A PatchCore file trained by the CLI with shots and a seed (a training record to keep)."""
    out = tmp_path_factory.mktemp("calib") / "grid.oddeye"
    assert main(["train", "--data", str(synth_root / "grid"), "--method", "patchcore",
                 "--shots", "12", "--seed", "2", "--size", "64", "--out", str(out),
                 "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def labelled(synth_root):
    cat = load_dataset(synth_root, ["grid"])[0]
    return ([s.path for s in cat.test if s.label == 0], [s.path for s in cat.test if s.label == 1])


def _error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_calibrate_writes_the_f1_optimal_threshold_and_keeps_everything_else(
        trained, labelled, tmp_path, capsys):
    good, bad = labelled
    out, report = tmp_path / "cal.oddeye", tmp_path / "cal.json"
    assert main(["calibrate", "--model", str(trained), "--good", *map(str, good),
                 "--defective", *map(str, bad), "--out", str(out), "--json", str(report),
                 "--batch-size", "3"]) == 0
    text = capsys.readouterr().out
    before, after = oddeye.load(trained), oddeye.load(out)
    s_good, s_bad = before.decision_function(good), before.decision_function(bad)
    scores = np.r_[s_good, s_bad]
    y = np.r_[np.zeros(len(good), int), np.ones(len(bad), int)]
    assert after.threshold_ == pytest.approx(f1_optimal_threshold(scores, y))
    assert after.score_scale_ == pytest.approx(np.std(s_good))
    assert after.threshold_info_ == {
        "rule": "F1-optimal on a labelled set",
        "source": f"{len(y)} images ({len(good)} good, {len(bad)} defective)"}
    # the model is the same: identical scores; and the training record travels on
    np.testing.assert_array_equal(after.decision_function(good + bad), scores)
    assert after.meta_["train"] == before.meta_["train"]
    assert after.meta_["train"]["shots"] == 12 and after.meta_["train"]["seed"] == 2
    d = json.loads(report.read_text())
    assert d["after"]["threshold"] == pytest.approx(after.threshold_)
    assert d["before"]["threshold"] == pytest.approx(before.threshold_)
    assert d["after"]["f1"] == pytest.approx(
        precision_recall_f1(scores, y, after.threshold_)["f1"])
    assert d["after"]["f1"] >= d["before"]["f1"]  # F1-optimal on these very images
    assert d["n_good"] == len(good) and d["n_defective"] == len(bad) and d["skipped"] == []
    assert f"{after.threshold_:.6g}" in text and str(out) in text
    # the labels of a prediction follow the new threshold
    pred = after.predict(good + bad)
    np.testing.assert_array_equal(pred.labels, (scores > after.threshold_).astype(int))
    assert main(["info", str(out)]) == 0
    assert "F1-optimal on a labelled set" in capsys.readouterr().out


def test_folders_are_walked_and_unreadable_images_skipped(trained, labelled, tmp_path, capsys):
    import shutil

    good, bad = labelled
    gdir, bdir = tmp_path / "good", tmp_path / "bad"
    gdir.mkdir()
    bdir.mkdir()
    for p in good:
        shutil.copy(p, gdir / f"{p.parent.name}_{p.name}")
    for p in bad:
        shutil.copy(p, bdir / f"{p.parent.name}_{p.name}")
    (bdir / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "cal.oddeye"
    assert main(["calibrate", "--model", str(trained), "--good", str(gdir), "--defective",
                 str(bdir), "--out", str(out), "--json", str(tmp_path / "r.json")]) == 0
    cap = capsys.readouterr()
    assert "skipped:" in cap.err and "broken.png" in cap.err
    assert "1 skipped" in cap.out
    d = json.loads((tmp_path / "r.json").read_text())
    assert [e["path"] for e in d["skipped"]] == [str(bdir / "broken.png")]
    assert d["n_defective"] == len(bad)


def test_calibrating_in_place_replaces_the_file(trained, labelled, tmp_path, capsys):
    import shutil

    good, bad = labelled
    copy = tmp_path / "m.oddeye"
    shutil.copy(trained, copy)
    assert main(["calibrate", "--model", str(copy), "--good", *map(str, good), "--defective",
                 *map(str, bad), "--out", str(copy)]) == 0
    assert oddeye.load(copy).threshold_info_["rule"] == "F1-optimal on a labelled set"
    assert [p.name for p in tmp_path.iterdir()] == ["m.oddeye"]  # no temporary left behind


@pytest.mark.parametrize("case,words", [
    ("onnx model", ["model.onnx", "calibrate the .oddeye file"]),
    ("onnx out", ["--out", "give a .oddeye file name"]),
    ("out folder", ["--out", "give a .oddeye file name"]),
    ("missing good", ["does not exist"]),
    ("empty defective", ["--defective: no images found"]),
    ("both labels", ["is given as good and as defective"]),
    ("only broken defective", ["none of the defective images could be read",
                               "threshold was not changed"]),
    ("foreign model", ["model.oddeye"]),
])
def test_bad_inputs_are_one_line_errors_and_write_nothing(case, words, trained, labelled,
                                                          tmp_path, capsys):
    good, bad = labelled
    model, out = str(trained), str(tmp_path / "cal.oddeye")
    g, d = [str(good[0]), str(good[1])], [str(bad[0])]
    if case == "onnx model":
        model = str(tmp_path / "model.onnx")
    elif case == "onnx out":
        out = str(tmp_path / "cal.onnx")
    elif case == "out folder":
        out = str(tmp_path)
    elif case == "missing good":
        g = [str(tmp_path / "nope.png")]
    elif case == "empty defective":
        (tmp_path / "empty").mkdir()
        d = [str(tmp_path / "empty")]
    elif case == "both labels":
        d = [g[0]]
    elif case == "only broken defective":
        (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
        d = [str(tmp_path / "b.png")]
    elif case == "foreign model":
        model = str(tmp_path / "model.oddeye")
        (tmp_path / "model.oddeye").write_bytes(b"not a model")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["calibrate", "--model", model, "--good", *g, "--defective", *d,
                 "--out", out]) == 2
    err = _error(capsys) if case != "only broken defective" else (
        [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln][0])
    for w in words:
        assert w in err, (w, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_api_calibrate_scores_checks_its_inputs(trained):
    from oddeye.errors import DataError

    det = oddeye.load(trained)
    thr = det.threshold_
    with pytest.raises(DataError, match=r"2 labels of shape \(2,\) for 3 scores"):
        det.calibrate_scores(np.array([1.0, 2.0, 3.0]), np.array([0, 1]))
    with pytest.raises(DataError, match="only good"):
        det.calibrate_scores(np.array([1.0, 2.0]), np.array([0, 0]))
    with pytest.raises(DataError, match="NaN or infinite"):
        det.calibrate_scores(np.array([1.0, np.nan]), np.array([0, 1]))
    assert det.threshold_ == thr
    det.calibrate_scores(np.array([1.0, 2.0, 5.0, 6.0]), np.array([0, 0, 1, 1]))
    assert det.threshold_ == pytest.approx(3.5)


def test_a_reference_shot_model_is_calibrated_for_its_refs_and_keeps_them(
        synth_root, surface_models, labelled, tmp_path, capsys):
    """ResAD scores against reference shots: ``--refs`` sets them before scoring, and the
    written file holds them (a reload without new references scores as calibrated)."""
    from tests.export.models import fitted_model

    good, bad = labelled
    model = fitted_model("resad", synth_root, surface_models)
    refs = sorted((synth_root / "grid" / "train" / "good").iterdir())[4:6]
    out = tmp_path / "resad-cal.oddeye"
    assert main(["calibrate", "--model", str(model), "--good", *map(str, good[:3]),
                 "--defective", *map(str, bad[:3]), "--refs", *map(str, refs),
                 "--out", str(out)]) == 0
    det = oddeye.load(model)
    det.set_references(refs)
    again = oddeye.load(out)
    np.testing.assert_allclose(again.decision_function(good[:3] + bad[:3]),
                               det.decision_function(good[:3] + bad[:3]), rtol=1e-5, atol=1e-6)
    assert main(["calibrate", "--model", str(model), "--good", str(good[0]), "--defective",
                 str(bad[0]), "--out", str(tmp_path / "x.oddeye")]) == 2
    assert "needs --refs" in _error(capsys)
