"""The CLI's user-facing edges: predict's output names and refusals, demo's method check,
`oddeye methods`, help texts and the one-line warning format."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import pytest

from oddeye.cli import build_parser, main


@pytest.fixture(scope="module")
def model(synth_root, tmp_path_factory) -> Path:
    """A small PatchCore model of the synthetic grid class (64 px: fast on the CPU)."""
    out = tmp_path_factory.mktemp("predict_cli") / "grid.oddeye"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["train", "--data", str(synth_root), "--category", "grid", "--size", "64",
                   "--out", str(out), "--no-progress"])
    assert rc == 0 and out.exists()
    return out


def _sub(name: str):
    return build_parser()._subparsers._group_actions[0].choices[name]


def _one_line_error(err: str, *needles: str) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("oddeye predict: error: ") or lines[0].startswith("oddeye demo:")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


# ------------------------------------------------------------------------- predict outputs
def test_out_names_are_unique_and_deterministic(tmp_path):
    from oddeye.commands.predict import out_names

    paths = [tmp_path / "a" / "grid" / "good" / "000.png",
             tmp_path / "b" / "grid" / "good" / "000.png",
             tmp_path / "a" / "grid" / "good" / "000.jpg",
             tmp_path / "a" / "grid" / "good" / "000.png",  # the same file twice
             tmp_path / "a" / "grid" / "good" / "My File.PNG",
             tmp_path / "a" / "grid" / "good" / "my file.png"]  # differs only in case
    names = out_names(paths)
    assert names == out_names(paths)  # same inputs, same names
    assert len({n.lower() for n in names}) == len(paths)
    assert names[0] == "grid__good__000_png"
    assert names[1] == "grid__good__000_png-2"  # later duplicates get a numeric suffix
    assert names[2] == "grid__good__000_jpg"  # the extension is part of the name
    assert names[3] == "grid__good__000_png-3"
    assert " " not in names[4] and names[5].lower() != names[4].lower()


def test_predict_writes_one_overlay_and_mask_per_input(model, synth_root, tmp_path, capsys):
    """Two folders ending alike and a.png/a.jpg side by side: every row gets its own files."""
    from PIL import Image

    good = synth_root / "grid" / "test" / "good"
    for root in ("data", "data2"):
        shutil.copytree(good, tmp_path / root / "grid" / "test" / "good")
    mix = tmp_path / "mix"
    mix.mkdir()
    first = sorted(good.glob("*.png"))[0]
    shutil.copy(first, mix / "a.png")
    with Image.open(first) as im:
        im.convert("RGB").save(mix / "a.jpg")
    inputs = [str(tmp_path / "data" / "grid" / "test" / "good"),
              str(tmp_path / "data2" / "grid" / "test" / "good"), str(mix)]
    n = 2 * len(list(good.glob("*.png"))) + 2
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model), *inputs, "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == n
    assert len({r["path"] for r in rows}) == n
    assert len({r["overlay"] for r in rows}) == n and len({r["mask"] for r in rows}) == n
    assert len(list((out / "overlays").iterdir())) == n
    assert len(list((out / "masks").iterdir())) == n
    for r in rows:
        assert (out / r["overlay"]).is_file() and (out / r["mask"]).is_file()
    lines = [json.loads(x) for x in open(out / "results.jsonl")]
    assert [(x["path"], x["overlay"]) for x in lines] == [(r["path"], r["overlay"]) for r in rows]
    assert f"scored {n} images" in capsys.readouterr().out
    # the same call again names every file the same way
    again = tmp_path / "again"
    assert main(["predict", "--model", str(model), *inputs, "--out", str(again)]) == 0
    rows2 = list(csv.DictReader(open(again / "results.csv")))
    assert [r["overlay"] for r in rows2] == [r["overlay"] for r in rows]


# ------------------------------------------------------------------------ predict refusals
def test_predict_without_images_is_an_error(model, tmp_path, capsys):
    empty, others = tmp_path / "empty", tmp_path / "others"
    empty.mkdir()
    others.mkdir()
    (others / "x.svg").write_text("<svg/>")  # not a supported extension (.gif is one)
    for folder in (empty, others):
        out = tmp_path / f"out_{folder.name}"
        assert main(["predict", "--model", str(model), str(folder), "--out", str(out)]) == 2
        _one_line_error(capsys.readouterr().err, "no images found under", str(folder))
        assert not out.exists()  # nothing written for a run that scores nothing


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_predict_batch_size_is_checked_while_parsing(model, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--model", str(model), str(tmp_path), "--out", str(tmp_path / "o"),
              "--batch-size", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --batch-size" in err and "scored" not in err


def test_predict_out_that_is_a_file_is_one_line(model, synth_root, tmp_path, capsys):
    target = tmp_path / "results"
    target.write_text("not a folder")
    img = sorted((synth_root / "grid" / "test" / "good").glob("*.png"))[0]
    assert main(["predict", "--model", str(model), str(img), "--out", str(target)]) == 2
    _one_line_error(capsys.readouterr().err, "is a file, not a folder")
    assert target.read_text() == "not a folder"


def test_predict_refuses_refs_for_a_model_without_references(model, synth_root, tmp_path,
                                                             capsys):
    imgs = sorted((synth_root / "grid" / "test" / "good").glob("*.png"))
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model), str(imgs[0]), "--out", str(out),
                 "--refs", str(imgs[1])]) == 2
    _one_line_error(capsys.readouterr().err, "does not use reference images", "--refs")
    assert not (out / "results.csv").exists()


# ------------------------------------------------------------------------------------ demo
@pytest.mark.parametrize(("method", "needs"), [("resad", "reference shots"),
                                               ("anoonly-head", "labelled defects")])
def test_demo_refuses_methods_it_cannot_run_before_any_work(tmp_path, capsys, method, needs):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--method", method, "--classes", "grid",
                 "--no-progress"]) == 2
    captured = capsys.readouterr()
    _one_line_error(captured.err, f"'{method}' needs {needs}", "patchcore")
    assert not out.exists() and "[1/4]" not in captured.out  # no data, no training


# --------------------------------------------------------------------- methods, help texts
def test_methods_lists_the_registry(tmp_path, capsys):
    from oddeye.methods import available_methods, get_method

    js = tmp_path / "methods.json"
    assert main(["methods", "--json", str(js)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["method", "labels", "refs", "fuse"]
    rows = {ln.split()[0]: ln.split()[1:4] for ln in lines[1:]}
    assert set(rows) == set(available_methods())
    for name, (labels, refs, fuse) in rows.items():
        cls = get_method(name)
        assert labels == ("yes" if cls.needs_labels else "no")
        assert refs == ("yes" if cls.needs_references else "no")
        assert fuse == ("yes" if cls.fusable else "no")
    assert rows["anoonly-head"][0] == "yes" and rows["resad"][1] == "yes"
    assert rows["patchcore"] == ["no", "no", "yes"] and rows["rd4ad"][2] == "no"
    listed = json.loads(js.read_text())["methods"]
    assert [m["name"] for m in listed] == available_methods()
    assert all(m["description"] for m in listed)


def test_train_help_names_a_command_that_exists():
    assert "oddeye methods" in " ".join(_sub("train").format_help().split())
    assert "methods" in build_parser()._subparsers._group_actions[0].choices


def test_synth_help_shows_defaults():
    text = " ".join(_sub("synth").format_help().split())
    for default in ("(default: 0)", "(default: 256)", "(default: 40)", "(default: 10)",
                    "(default: 4)", "(default: all)"):
        assert default in text, default
    assert "(default: 4)" in " ".join(_sub("predict").format_help().split())


# -------------------------------------------------------------------------------- warnings
def test_warnings_print_as_one_line_during_a_command(synth_root, tmp_path, capsys):
    """Fewer than 10 images: the threshold warning reads `oddeye train: warning: ...`, without
    Python's file, line number and source line, and the format ends with the command."""
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["train", "--data", str(synth_root), "--category", "grid", "--shots", "8",
                     "--size", "64", "--out", str(tmp_path / "m.oddeye"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "warning" in x.lower()]
    assert lines == ["oddeye train: warning: too few good images to hold out; the threshold is "
                     "estimated from training scores and may be too low"]
    assert "UserWarning" not in err and ".py:" not in err and "det.fit(" not in err
    assert warnings.showwarning is before


def test_warning_printer_collapses_lines_and_names_other_categories(capsys):
    from oddeye.cli import warning_printer

    show = warning_printer("test")
    show(UserWarning("two\n  lines"), UserWarning, "x.py", 3)
    show(FutureWarning("soon"), FutureWarning, "x.py", 4)
    assert capsys.readouterr().err.splitlines() == ["oddeye test: warning: two lines",
                                                    "oddeye test: warning: soon (FutureWarning)"]
