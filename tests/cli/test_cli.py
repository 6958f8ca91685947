"""The command line end to end on synthetic data: train, test --json, predict with bad files."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from oddeye.cli import build_parser, main

METRIC_KEYS = {"image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max",
               "pixel_aupro", "n_images", "seconds", "per_category"}


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train", "test", "predict", "synth", "demo", "benchmark"):
        assert cmd in out
    sub = build_parser()._subparsers._group_actions[0].choices
    for name, parser in sub.items():
        assert parser.format_help(), name


def test_cli_works_without_the_optional_serve_dependencies(monkeypatch, capsys, tmp_path):
    # an install without the 'serve' extra: FastAPI and uvicorn cannot be imported
    for name in ("fastapi", "uvicorn"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "oddeye.serve.app", raising=False)
    sub = build_parser()._subparsers._group_actions[0].choices
    assert "--max-pending" in sub["serve"].format_help()
    assert main(["serve", "--model", str(tmp_path / "m.oddeye")]) == 2
    assert "pip install 'oddeye[serve]'" in capsys.readouterr().err


def test_serve_does_not_blame_the_extra_for_a_broken_oddeye_module(monkeypatch, tmp_path):
    for extra in ("fastapi", "uvicorn"):  # without them the extra is rightly blamed first
        pytest.importorskip(extra, reason=f"the 'serve' extra ({extra}) is not installed here")
    monkeypatch.setitem(sys.modules, "oddeye.serve.app", None)  # our own module fails to import
    with pytest.raises(ModuleNotFoundError, match="oddeye.serve.app"):
        main(["serve", "--model", str(tmp_path / "m.oddeye")])


@pytest.fixture(scope="module")
def model(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "disc.oddeye"
    rc = main(["train", "--data", str(synth_root), "--category", "disc", "--method", "padim",
               "--size", "128", "--out", str(out), "--no-progress"])
    assert rc == 0 and out.exists()
    return out


def test_test_writes_all_metric_keys(model, synth_root, tmp_path, capsys):
    js = tmp_path / "m.json"
    assert main(["test", "--model", str(model), "--data", str(synth_root / "disc"), "--json",
                 str(js), "--no-progress"]) == 0
    res = json.loads(js.read_text())
    assert METRIC_KEYS <= set(res)
    assert set(res["per_category"]) == {"disc"}
    assert METRIC_KEYS - {"per_category"} <= set(res["per_category"]["disc"]) | {"per_category"}
    assert res["image_auroc"] > 0.5
    by_type = res["per_category"]["disc"]["image_auroc_by_type"]
    assert by_type and all(0 <= v <= 1 for v in by_type.values())
    out = capsys.readouterr().out
    assert "img_auroc" in out  # the readable table
    assert "disc: image AUROC by defect type: " + next(iter(by_type)) in out


def test_predict_skips_bad_files_and_scores_the_rest(model, synth_root, tmp_path):
    imgs = tmp_path / "in"
    imgs.mkdir()
    good = sorted((synth_root / "disc" / "test").rglob("*.png"))[:3]
    for i, p in enumerate(good):
        (imgs / f"ok{i}.png").write_bytes(p.read_bytes())
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (imgs / "cut.png").write_bytes(good[0].read_bytes()[:200])
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model), str(imgs), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 3
    assert {"path", "score", "normalized_score", "label"} <= set(rows[0])
    lines = [json.loads(x) for x in open(out / "results.jsonl")]
    errors = [x for x in lines if "error" in x]
    assert {e["path"].split("/")[-1] for e in errors} == {"broken.png", "cut.png"}
    assert all(e["path"] in e["error"] for e in errors)  # the message names the file
    for r in rows:
        assert (out / r["overlay"]).exists() and (out / r["mask"]).exists()


def test_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    bad = tmp_path / "m.oddeye"
    bad.write_bytes(b"PK\x03\x04 not really")
    assert main(["test", "--model", str(bad), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "x.oddeye")]) == 2
    assert "train" in capsys.readouterr().err


def test_param_values_parse_json_and_python_constants():
    from oddeye.commands._common import parse_params
    from oddeye.errors import DataError

    got = parse_params(["max_bank=None", "equal_layers=False", "a=true", "k=3", "x=0.5",
                        "layers=[\"s8\", \"s16\"]", "name=mobilenet_v2"])
    assert got == {"max_bank": None, "equal_layers": False, "a": True, "k": 3, "x": 0.5,
                   "layers": ["s8", "s16"], "name": "mobilenet_v2"}
    with pytest.raises(DataError, match="key=value"):
        parse_params(["oops"])


def test_train_map_norm_flag(synth_root, tmp_path, capsys):
    """--map-norm reaches the Detector: 'position' with 16 images fails with the reason,
    'none' trains a model that records it."""
    import oddeye

    args = ["train", "--data", str(synth_root), "--category", "disc", "--size", "64",
            "--no-progress"]
    assert main([*args, "--map-norm", "position", "--out", str(tmp_path / "p.oddeye")]) == 2
    assert "map_norm='position' cannot be fitted" in capsys.readouterr().err
    assert main([*args, "--map-norm", "none", "--out", str(tmp_path / "n.oddeye")]) == 0
    det = oddeye.load(tmp_path / "n.oddeye")
    assert det.map_norm is None and det.map_norm_ == 0
    # what the fit chose from the data is printed under the summary (PatchCore's position)
    assert "position weight 0 (fewer than 40 images" in capsys.readouterr().out


def test_train_pad_flag(synth_root, tmp_path, capsys):
    """--pad reaches the Detector and the file; a pad the taps' strides do not divide is a
    one-line error naming it."""
    import oddeye

    args = ["train", "--data", str(synth_root), "--category", "disc", "--size", "64",
            "--no-progress"]
    assert main([*args, "--pad", "12", "--out", str(tmp_path / "bad.oddeye")]) == 2
    assert "pad must be" in capsys.readouterr().err
    assert main([*args, "--pad", "32", "--out", str(tmp_path / "p.oddeye")]) == 0
    assert oddeye.load(tmp_path / "p.oddeye").model_.extractor.pad == 32


def test_demo_runs_end_to_end(tmp_path, capsys):
    # the README's first command, on one class: data, fit, test, predictions, report
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--classes", "grid", "--no-progress"]) == 0
    assert (out / "report" / "index.html").exists()
    assert (out / "predictions" / "results.csv").exists()
    assert json.loads((out / "metrics.json").read_text())["image_auroc"] > 0.5
    assert "done in" in capsys.readouterr().out


def test_train_with_labelled_defects_and_test_without_them(synth_root, tmp_path, capsys):
    """--labeled-defects K: K defective test images (with masks) train the head, are recorded
    in the file and left out by `oddeye test`; a method that learns from good images only
    refuses the flag instead of taking them as good, and the head refuses to go without it."""
    import oddeye

    args = ["train", "--data", str(synth_root), "--category", "disc", "--size", "64",
            "--no-progress"]
    head = tmp_path / "head.oddeye"
    assert main([*args, "--method", "patchcore", "--labeled-defects", "2", "--out",
                 str(tmp_path / "pc.oddeye")]) == 2
    assert "'patchcore' learns from good images only" in capsys.readouterr().err
    assert not (tmp_path / "pc.oddeye").exists()
    assert main([*args, "--method", "anoonly-head", "--out", str(head)]) == 2
    assert "needs --labeled-defects K" in capsys.readouterr().err
    assert main([*args, "--method", "anoonly-head", "--labeled-defects", "2", "--param",
                 "steps=3", "--param", "gate=max", "--out", str(head)]) == 0
    labelled = oddeye.load(head).meta_["train"]["labelled_defects"]
    assert len(labelled) == 2 and all("/test/" in p for p in labelled)
    js = tmp_path / "t.json"
    assert main(["test", "--model", str(head), "--data", str(synth_root / "disc"), "--json",
                 str(js), "--no-progress"]) == 0
    res = json.loads(js.read_text())
    assert sorted(res["excluded_training_defects"]) == sorted(labelled)
    n_test = sum(1 for p in (synth_root / "disc" / "test").rglob("*.png"))
    assert res["n_images"] == n_test - 2
