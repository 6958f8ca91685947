"""`oddeye train` and `oddeye test` on awkward inputs: path spellings, clashing category names,
bad test files, test-only folders, --out layouts and --param names (small synthetic sets)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oddeye.cli import main

SMALL = {"n_train": 8, "n_test_good": 3, "n_test_defect": 2, "size": 64}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> tuple[Path, Path]:
    """Two data roots that both hold a category named grid (the second also wood)."""
    from oddeye.data.synth import generate

    base = tmp_path_factory.mktemp("roots")
    a = generate(base / "data", seed=0, classes=["grid"], **SMALL)
    b = generate(base / "data2", seed=1, classes=["grid", "wood"], **SMALL)
    return Path(a), Path(b)


@pytest.fixture(scope="module")
def padim(roots, tmp_path_factory) -> Path:
    """A size-64 PaDiM model of the first root's grid."""
    out = tmp_path_factory.mktemp("padim") / "grid.oddeye"
    assert main(["train", "--data", str(roots[0] / "grid"), "--method", "padim", "--size", "64",
                 "--out", str(out), "--no-progress"]) == 0
    return out


def _n_test(cat: Path) -> int:
    return sum(1 for _ in (cat / "test").rglob("*.png"))


def _test_json(model: Path, data: list[str], js: Path, *extra: str) -> tuple[int, dict]:
    rc = main(["test", "--model", str(model), "--data", *data, "--json", str(js),
               "--no-progress", *extra])
    return rc, json.loads(js.read_text()) if js.exists() else {}


# ---------------------------------------------------------------- 1: labelled defects excluded

def test_labelled_defects_are_excluded_whatever_the_path_spelling(roots, tmp_path, monkeypatch,
                                                                  capsys):
    """Trained from a relative --data, tested by absolute path and by a relative path from
    another folder: the same two images are left out each time, and the note counts them."""
    import oddeye

    monkeypatch.chdir(roots[0].parent)
    model = tmp_path / "lab.oddeye"
    assert main(["train", "--data", "data/grid", "--method", "anoonly-head", "--labeled-defects",
                 "2", "--param", "steps=3", "--param", "gate=max", "--size", "64",
                 "--out", str(model), "--no-progress"]) == 0
    recorded = oddeye.load(model).meta_["train"]["labelled_defects"]
    assert len(recorded) == 2 and all(Path(p).is_absolute() for p in recorded)
    n = _n_test(roots[0] / "grid")
    capsys.readouterr()
    for cwd, data in ((tmp_path, str(roots[0] / "grid")), (roots[0], "grid")):
        monkeypatch.chdir(cwd)
        rc, res = _test_json(model, [data], tmp_path / "t.json")
        assert rc == 0 and res["n_images"] == n - 2
        assert sorted(res["excluded_training_defects"]) == sorted(recorded)
        assert "note: 2 labelled defect images used for training were excluded" in \
            capsys.readouterr().out


def test_old_relative_records_match_and_missing_ones_are_reported(roots, monkeypatch):
    """Files from before the paths were stored absolute hold them relative to the training
    folder: matched by their trailing parts; one absent from the data is returned as missing."""
    from oddeye.commands._common import load_categories
    from oddeye.commands.test import match_excluded

    monkeypatch.chdir(roots[0])  # not the folder the relative paths were written in
    cats = load_categories([str(roots[0] / "grid"), str(roots[1] / "grid")], None)
    defect = next(s.path for s in cats[0].test if s.label == 1)
    rel = str(Path("data") / defect.relative_to(roots[0]))
    found, missing, ambiguous = match_excluded([rel, "data/grid/test/none/999.png"], cats)
    assert found[cats[0].name] == {defect} and found[cats[1].name] == set()
    assert missing == ["data/grid/test/none/999.png"] and ambiguous == []


def test_a_short_relative_record_matching_two_categories_excludes_both_and_says_so(
        roots, monkeypatch):
    """A model trained with ``--data .`` inside a category records ``test/<type>/<file>``:
    that tail names the same file in every same-shaped category. Both are left out (no
    training image is ever scored) and the record is returned as ambiguous."""
    from oddeye.commands._common import load_categories
    from oddeye.commands.test import match_excluded

    monkeypatch.chdir(roots[0].parent)  # a folder where the relative record does not resolve
    cats = load_categories([str(roots[0] / "grid"), str(roots[1] / "grid")], None)
    defect = next(s.path for s in cats[0].test if s.label == 1)
    rel = str(defect.relative_to(roots[0] / "grid"))  # test/<type>/<file>
    twin = roots[1] / "grid" / rel
    assert twin.is_file()  # the two roots hold the same layout
    found, missing, ambiguous = match_excluded([rel], cats)
    assert found[cats[0].name] == {defect} and found[cats[1].name] == {twin}
    assert missing == [] and ambiguous == [rel]


@pytest.mark.filterwarnings("ignore:too few good images")
def test_unmatched_labelled_defects_are_warned_about(roots, tmp_path, capsys):
    from oddeye.api import Detector

    goods = sorted((roots[0] / "grid" / "train" / "good").glob("*.png"))
    det = Detector(method="padim", size=64).fit(goods, progress=False)
    model = det.save(tmp_path / "m.oddeye", extra={"labelled_defects": ["/nowhere/x.png"]})
    rc, res = _test_json(model, [str(roots[0] / "grid")], tmp_path / "t.json")
    assert rc == 0 and res["n_images"] == _n_test(roots[0] / "grid")
    assert res["excluded_training_defects_not_found"] == ["/nowhere/x.png"]
    cap = capsys.readouterr()
    assert "note: 0 labelled defect images" in cap.out
    assert "1 of the 1 labelled defect images" in cap.err and "/nowhere/x.png" in cap.err



@pytest.mark.filterwarnings("ignore:too few good images")
def test_an_ambiguous_relative_record_is_warned_about_and_listed(roots, tmp_path, monkeypatch,
                                                                capsys):
    """``oddeye test`` says when an old relative record matched several test images, and the
    JSON lists it; both matches are left out of the scores."""
    from oddeye.api import Detector

    monkeypatch.chdir(roots[0].parent)
    grid = roots[0] / "grid"
    defect = next(p for p in sorted((grid / "test").rglob("*.png")) if p.parent.name != "good"
                  and (roots[1] / "grid" / p.relative_to(grid)).is_file())
    rel = str(defect.relative_to(grid))
    det = Detector(method="padim", size=64).fit(sorted((grid / "train" / "good").glob("*.png")),
                                                progress=False)
    model = det.save(tmp_path / "m.oddeye", extra={"labelled_defects": [rel]})
    both = [str(grid), str(roots[1] / "grid")]
    rc, res = _test_json(model, both, tmp_path / "t.json")
    assert rc == 0 and res["excluded_training_defects_ambiguous"] == [rel]
    assert len(res["excluded_training_defects"]) == 2
    assert "match several test images; all of them were excluded" in capsys.readouterr().err


# ----------------------------------------------------------------- 2: same category name twice

def test_test_keeps_both_categories_of_the_same_name(roots, padim, tmp_path, capsys):
    rc, res = _test_json(padim, [str(roots[0] / "grid"), str(roots[1] / "grid")],
                         tmp_path / "t.json")
    assert rc == 0
    assert set(res["per_category"]) == {"data/grid", "data2/grid"}
    assert res["n_images"] == _n_test(roots[0] / "grid") + _n_test(roots[1] / "grid")
    out = capsys.readouterr().out
    assert "data/grid " in out and "data2/grid " in out


def test_train_writes_one_file_per_clashing_category(roots, tmp_path, capsys):
    out = tmp_path / "models"
    assert main(["train", "--data", str(roots[0] / "grid"), str(roots[1]), "--method", "padim",
                 "--size", "64", "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["data-grid.oddeye", "data2-grid.oddeye",
                                                     "wood.oddeye"]


def test_the_same_folder_twice_is_refused(roots, tmp_path, capsys):
    grid = roots[0] / "grid"
    assert main(["train", "--data", str(grid), str(roots[0]), "--out", str(tmp_path / "m"),
                 "--size", "64", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "given twice" in err and str(roots[0]) in err
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------- 3: unreadable test files

def test_bad_test_files_are_skipped_and_the_rest_scored(roots, padim, tmp_path, capsys):
    """A truncated image and a wrong-size mask: one stderr line each, left out of the metrics,
    listed in the JSON; the other category (of the same name) is scored as usual."""
    data = tmp_path / "bad" / "grid"
    shutil.copytree(roots[0] / "grid", data)
    good = sorted((data / "test" / "good").glob("*.png"))[0]
    good.write_bytes(good.read_bytes()[:200])  # a truncated PNG
    bad_mask = sorted((data / "ground_truth").rglob("*.png"))[0]
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(bad_mask)  # wrong size
    rc, res = _test_json(padim, [str(data), str(roots[1] / "grid")], tmp_path / "t.json")
    assert rc == 0
    bad = res["per_category"]["bad/grid"]
    assert bad["n_images"] == _n_test(data) - 2 and bad["n_skipped"] == 2
    assert 0 <= bad["image_auroc"] <= 1  # metrics of the rest, not NaN
    assert res["per_category"]["data2/grid"]["n_images"] == _n_test(roots[1] / "grid")
    assert {s["path"] for s in res["skipped"]} == {str(good), str(bad_mask)}
    assert all(s["category"] == "bad/grid" for s in res["skipped"])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("skipped: ")]
    assert len(lines) == 2
    assert any(str(good) in x for x in lines) and any(str(bad_mask) in x for x in lines)


def test_nothing_scorable_exits_2_but_writes_the_json(roots, padim, tmp_path, capsys):
    data = tmp_path / "grid"
    shutil.copytree(roots[0] / "grid", data)
    for p in (data / "test").rglob("*.png"):
        p.write_bytes(b"not an image")
    rc, res = _test_json(padim, [str(data)], tmp_path / "t.json")
    assert rc == 2
    assert len(res["skipped"]) == _n_test(data) and "grid" in res["failed_categories"]
    assert "no test image could be scored" in capsys.readouterr().err


# ----------------------------------------------------------- 4: testing needs no train/good

@pytest.mark.parametrize("train", ["missing", "empty"])
def test_test_needs_no_training_images(roots, padim, tmp_path, train):
    data = tmp_path / "grid"
    shutil.copytree(roots[0] / "grid", data)
    shutil.rmtree(data / "train")
    if train == "empty":
        (data / "train" / "good").mkdir(parents=True)
    rc, res = _test_json(padim, [str(data)], tmp_path / "t.json")
    assert rc == 0 and res["n_images"] == _n_test(data)


def test_training_still_needs_training_images(roots, tmp_path, capsys):
    from oddeye.data.mvtec import load_dataset
    from oddeye.errors import DataError

    data = tmp_path / "grid"
    shutil.copytree(roots[0] / "grid", data)
    shutil.rmtree(data / "train" / "good")
    (data / "train" / "good").mkdir()
    with pytest.raises(DataError, match="no training images"):
        load_dataset(data)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m.oddeye")]) == 2
    assert "no training images" in capsys.readouterr().err


# ------------------------------------------------------- 5, 6, 7, 8: flags checked up front

def test_too_many_labelled_defects_names_the_flag(roots, tmp_path, capsys):
    assert main(["train", "--data", str(roots[0] / "grid"), "--method", "anoonly-head",
                 "--labeled-defects", "50", "--size", "64", "--out", str(tmp_path / "m.oddeye"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--labeled-defects 50" in err and "defective test images" in err
    assert "--shots" not in err


def test_out_without_suffix_is_a_folder_even_for_one_category(roots, tmp_path, capsys):
    args = ["train", "--data", str(roots[0] / "grid"), "--method", "padim", "--size", "64",
            "--no-progress", "--out"]
    out = tmp_path / "models_dir"
    out.mkdir()  # an existing folder is fine
    assert main([*args, str(out)]) == 0
    assert (out / "grid.oddeye").is_file()
    assert f"saved {out / 'grid.oddeye'}" in capsys.readouterr().out
    # refused before any fit: an existing file as folder, an existing folder as .oddeye file
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main([*args, str(afile)]) == 2
    err = capsys.readouterr().err
    assert "is an existing file" in err and "trained" not in err
    (tmp_path / "dir.oddeye").mkdir()
    assert main([*args, str(tmp_path / "dir.oddeye")]) == 2
    cap = capsys.readouterr()
    assert "is an existing folder" in cap.err and "trained" not in cap.out


def test_shots_help_and_summary_tell_of_the_hold_out(synth_root, tmp_path, capsys):
    from oddeye.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    assert "held out" in " ".join(sub["train"].format_help().split())
    assert main(["train", "--data", str(synth_root / "grid"), "--method", "padim", "--size",
                 "64", "--shots", "12", "--out", str(tmp_path / "m.oddeye"),
                 "--no-progress"]) == 0
    assert "on 10 images (+2 held out for the threshold)" in capsys.readouterr().out


@pytest.mark.parametrize(("param", "flag"), [("size=64", "--size"), ("seed=1", "--seed"),
                                             ("device=cpu", "--device"),
                                             ("method=padim", "--method"),
                                             ("batch-size=2", "--batch-size"),
                                             ("map_norm=position", "--map-norm")])
def test_params_that_have_a_flag_are_refused(roots, tmp_path, capsys, param, flag):
    assert main(["train", "--data", str(roots[0] / "grid"), "--size", "64", "--param", param,
                 "--out", str(tmp_path / "m.oddeye"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"with the option {flag}" in err and "Traceback" not in err


def test_bare_strings_of_list_parameters_become_lists(roots, tmp_path):
    import oddeye
    from oddeye.commands._common import coerce_list_params, parse_params

    got = coerce_list_params("patchcore", parse_params(
        ["layers=s8", "kernel=3", "grid=first", "position=auto"]))
    assert got == {"layers": ["s8"], "kernel": 3, "grid": "first", "position": "auto"}
    assert coerce_list_params("rd4ad", parse_params(["layers=s8,s16", "decoder_blocks=2",
                                                     "betas=[0.5, 0.9]"])) == {
        "layers": ["s8", "s16"], "decoder_blocks": [2], "betas": [0.5, 0.9]}
    out = tmp_path / "m.oddeye"
    assert main(["train", "--data", str(roots[0] / "grid"), "--method", "padim", "--size", "64",
                 "--param", "layers=s8", "--out", str(out), "--no-progress"]) == 0
    assert oddeye.load(out).meta_["backbone"]["layers"] == ["s8"]


def test_unified_training_ignores_validation_of_only_some_categories(synth_root, tmp_path,
                                                                     capsys):
    """A threshold of several categories from the validation images of one set the others'
    threshold by that one's scale alone; a share of each category is held out instead."""
    import shutil

    from oddeye.commands.train import unified_validation
    from oddeye.data.mvtec import load_dataset

    root = tmp_path / "data"
    for name in ("grid", "disc"):
        shutil.copytree(synth_root / name, root / name)
    (root / "grid" / "validation" / "good").mkdir(parents=True)
    for p in sorted((root / "grid" / "train" / "good").iterdir())[:3]:
        shutil.copy(p, root / "grid" / "validation" / "good" / p.name)
    both = load_dataset(root)
    val = [s.path for d in both for s in d.validation]
    assert len(val) == 3
    assert unified_validation(both, val) == []
    assert "validation/good exists for grid only of 2 categories" in capsys.readouterr().err
    grid_only = [d for d in both if d.name == "grid"]
    assert unified_validation(grid_only, val) == val  # one category: its own validation
    assert capsys.readouterr().err == ""
