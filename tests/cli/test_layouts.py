"""Data layouts that used to lose images or categories without a word (training audit,
twenty-fifth session): linked category folders, lossy label masks, test-only categories for a
reference-shot model, folders one level too deep; and what the report says it left out."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oddeye.cli import main
from oddeye.data.mvtec import load_dataset, load_sample_mask
from tests.export.models import fitted_model


def _copy_class(synth_root: Path, dest: Path) -> Path:
    return Path(shutil.copytree(synth_root / "grid", dest))


def test_linked_category_folders_keep_their_own_names(synth_root, tmp_path):
    """Two links to folders that share a name were one category (the target's name)."""
    a, b = _copy_class(synth_root, tmp_path / "lineA" / "grid"), \
        _copy_class(synth_root, tmp_path / "lineB" / "grid")
    root = tmp_path / "links"
    root.mkdir()
    (root / "widget").symlink_to(a, target_is_directory=True)
    (root / "gadget").symlink_to(b, target_is_directory=True)
    cats = load_dataset(root)
    assert [c.name for c in cats] == ["gadget", "widget"]
    assert [c.name for c in load_dataset(root, ["widget"])] == ["widget"]
    assert load_dataset(a)[0].name == "grid"


def test_a_defect_mask_that_reads_empty_is_warned_about_with_the_jpeg_hint(synth_root,
                                                                           tmp_path):
    """A 0/1 label mask saved as JPEG comes back with values 0..2: no longer "only 0 and 1",
    thresholded at 127 it reads empty and its defect counts as good pixels."""
    cat = load_dataset(_copy_class(synth_root, tmp_path / "grid"))[0]
    sample = next(s for s in cat.test if s.label == 1)
    with Image.open(sample.mask_path) as im:
        labels = (np.asarray(im.convert("L")) > 127).astype(np.uint8)
    noisy = labels + (np.random.default_rng(0).random(labels.shape) < 0.05) * labels  # 0, 1, 2
    Image.fromarray(noisy.astype(np.uint8)).save(sample.mask_path)
    with pytest.warns(UserWarning, match=r"marks no defect pixel; its values only reach 2: a "
                                         r"0/1 label mask saved lossily \(JPEG\)"):
        mask = load_sample_mask(sample, labels.shape)
    assert not mask.any()
    Image.fromarray(labels).save(sample.mask_path)  # the 0/1 label image itself reads as labels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_sample_mask(sample, labels.shape).sum() == labels.sum() > 0


def test_category_folders_one_level_too_deep_are_named_in_a_warning(synth_root, tmp_path):
    _copy_class(synth_root, tmp_path / "data" / "grid")
    _copy_class(synth_root, tmp_path / "data" / "group" / "stripes")
    with pytest.warns(UserWarning, match=r"group holds category folders \(stripes\) one level "
                                         r"too deep; they are skipped"):
        cats = load_dataset(tmp_path / "data")
    assert [c.name for c in cats] == ["grid"]


def test_reference_shot_model_reports_a_test_only_category_instead_of_dropping_it(
        synth_root, surface_models, tmp_path, capsys):
    model = fitted_model("resad", synth_root, surface_models)
    root = tmp_path / "k"
    _copy_class(synth_root, root / "grid")
    only = root / "testonly"
    only.mkdir()
    for part in ("test", "ground_truth"):
        shutil.copytree(synth_root / "grid" / part, only / part)
    out = tmp_path / "r.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["test", "--model", str(model), "--data", str(root), "--shots", "2",
                     "--json", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert set(result["per_category"]) == {"grid"}
    assert "no train/good images" in result["failed_categories"]["testonly"]
    assert "category testonly not scored" in capsys.readouterr().err


@pytest.mark.parametrize("extra, words", [
    (["--shots", "4"], ["--shots", "does not use reference shots"]),
    (["--shots", "0"], ["--shots", "must be at least 1"]),
])
def test_shots_are_refused_where_they_would_be_ignored(patchcore_file, synth_root, capsys, extra,
                                                       words):
    with pytest.raises(SystemExit) if extra[1] == "0" else warnings.catch_warnings():
        rc = main(["test", "--model", str(patchcore_file), "--data", str(synth_root / "grid"),
                   "--no-progress", *extra])
        assert rc == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, (w, err)


def test_report_says_what_the_figures_leave_out(tmp_path):
    from argparse import Namespace

    from oddeye.commands.test import report_notes

    notes = report_notes(["/d/grid/test/crack/003.png"], [{"path": "/d/grid/test/good/x.png"}],
                         {"other": "no train/good images to draw the 4 reference shots from"},
                         {"grid": ["a.png"]}, Namespace(shots=None, seed=3))
    assert notes[0].startswith("1 labelled defect images the model was trained on were removed")
    assert "003.png" in notes[0] and "x.png" in notes[1]
    assert notes[2] == "category other not scored: no train/good images to draw the 4 " \
                       "reference shots from"
    assert notes[3] == "reference shots: 4 good training images per category, drawn with seed 3"


def test_synth_cli_takes_comma_separated_names_and_names_a_file_in_the_way(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    small = ["--size", "32", "--n-train", "1", "--n-test-good", "1", "--n-test-defect", "1"]
    assert main(["synth", "--out", str(tmp_path / "afile" / "sub"), *small]) == 2
    assert "afile is a file" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "s"), "--classes", "grid,disc", "grid",
                 *small]) == 0
    assert "wrote synthetic classes grid, disc to" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["disc", "grid"]


def test_a_killed_runs_half_written_class_is_removed_by_the_next_run(tmp_path):
    import subprocess
    import sys

    from oddeye.data.synth import generate

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".grid.partial-{dead}-1"
    (stale / "train").mkdir(parents=True)
    generate(tmp_path, seed=0, classes=["grid"], n_train=1, n_test_good=1, n_test_defect=1,
             size=32)
    assert not stale.exists() and (tmp_path / "grid" / "SOURCE.txt").exists()


def test_report_cards_of_a_reference_shot_model_use_each_categorys_own_shots(
        synth_root, surface_models, tmp_path):
    """The cards re-score their images after the evaluation loop, which leaves the last
    category's references loaded: every category but the last was shown scored against the
    wrong shots (found by a report audit)."""
    import re

    import oddeye

    model = fitted_model("resad", synth_root, surface_models)
    out, rep = tmp_path / "r.json", tmp_path / "rep"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["test", "--model", str(model), "--data", str(synth_root), "--shots", "2",
                     "--json", str(out), "--report", str(rep), "--no-progress"]) == 0
    refs = json.loads(out.read_text())["references"]["files"]
    assert len(refs) == 2
    det = oddeye.load(model)
    right = set()
    for cat in load_dataset(synth_root):
        det.set_references(refs[cat.name])
        right |= {f"{s:.4g}" for s in det.predict([s.path for s in cat.test]).scores}
    shown = re.findall(r"score <b>([^<]+)</b>", (rep / "index.html").read_text())
    assert shown and set(shown) <= right, set(shown) - right


def test_an_image_past_pillows_size_limit_is_named_and_a_broken_link_given_directly_too(
        tmp_path, monkeypatch):
    from oddeye.commands.predict import gather
    from oddeye.errors import DataError
    from oddeye.io.images import read_image

    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(path)  # 300 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # past it, under Pillow's 2x error
    with pytest.warns(Image.DecompressionBombWarning, match=rf"{path}: 30x10 = 0 million"):
        read_image(path)
    (tmp_path / "gone.png").symlink_to(tmp_path / "nothing.png")
    with pytest.raises(DataError, match=r"gone.png is a broken link \(to .*nothing.png"):
        gather([str(tmp_path / "gone.png")])
