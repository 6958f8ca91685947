"""``oddeye info``: model files described from what they record, bad files reported one by one."""

from __future__ import annotations

import json

import pytest

from oddeye.cli import main
from tests.export.models import fitted_model
from tests.modelfiles import older_file


def test_info_reports_training_record_and_changed_params(synth_root, tmp_path, capsys):
    model = tmp_path / "grid.oddeye"
    assert main(["train", "--data", str(synth_root / "grid"), "--method", "patchcore",
                 "--shots", "8", "--seed", "3", "--param", "kernel=5", "--size", "128",
                 "--out", str(model), "--no-progress"]) == 0
    capsys.readouterr()
    out_json = tmp_path / "info" / "info.json"
    assert main(["info", str(model), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    d = json.loads(out_json.read_text())[str(model)]
    assert d["format"] == "oddeye" and d["method"] == "patchcore"
    assert d["layers"] == ["s8", "s16"] and d["input_size"] == 128
    assert d["non_default_params"] == {"kernel": 5, "seed": 3}
    assert d["train"]["shots"] == 8 and d["train"]["seed"] == 3
    assert d["train"]["n_images"] == 8  # the shots (too few to hold any out for the threshold)
    assert d["train"]["data"] == [str(synth_root / "grid")]
    assert d["categories"] == ["grid"] and d["file_bytes"] == model.stat().st_size
    assert d["fit_choices"].startswith("position weight")
    assert "kernel=5, seed=3 (others at today's defaults)" in text
    assert "8 shots drawn with seed 3" in text and str(model) in text


def test_info_names_a_legacy_value_as_a_change(synth_root, tmp_path, capsys):
    """A file from before a parameter existed loads with the value it computed with; info says
    that this differs from a model trained today."""
    new = fitted_model("rd4ad", synth_root, tmp_path)
    old = older_file(new, tmp_path / "old.oddeye", drop=["method_params.stage_weights"],
                     tensors=["head.stage_offset", "head.stage_scale"])
    assert main(["info", str(new), str(old)]) == 0
    blocks = capsys.readouterr().out.split("\n\n")
    assert "stage_weights" not in blocks[0]
    assert 'stage_weights=equal' in blocks[1]
    assert "references" not in blocks[0]


def test_info_says_a_model_needs_references(synth_root, tmp_path, capsys):
    model = fitted_model("resad", synth_root, tmp_path)
    out_json = tmp_path / "info.json"
    assert main(["info", str(model), "--json", str(out_json)]) == 0
    assert "given at test time" in capsys.readouterr().out
    assert json.loads(out_json.read_text())[str(model)]["needs_references"] is True


def test_info_on_an_onnx_export(patchcore_file, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import oddeye
    from oddeye.export.onnx import export_onnx

    onnx_path = export_onnx(oddeye.load(patchcore_file, device="cpu"), tmp_path / "m.onnx")
    out_json = tmp_path / "info.json"
    assert main(["info", str(onnx_path), "--json", str(out_json)]) == 0
    d = json.loads(out_json.read_text())[str(onnx_path)]
    det = oddeye.load(patchcore_file, device="cpu")
    assert d["format"] == "onnx" and d["method"] == "patchcore"
    assert d["layers"] == list(det.method_.layers) and d["input_size"] == det.size
    assert d["threshold"] == pytest.approx(det.threshold_)
    assert d["method_params"] == json.loads(json.dumps(det.method_.get_params()))
    assert "onnx model" in capsys.readouterr().out
    # what the export was made with, and the training record it carries over
    assert d["onnx_input"] == {"dtype": "uint8", "batch": "dynamic"}
    assert d["train"]["n_images"] == det.meta_["train"]["n_images"]
    fixed = export_onnx(det, tmp_path / "f.onnx", input_dtype="float32", batch=3)
    assert main(["info", str(fixed)]) == 0
    assert "ONNX input  float32 (N, 3, 64, 64), batch 3" in capsys.readouterr().out
    # an entry inference never reads, damaged: described without it, not a traceback
    import onnx

    model = onnx.load(str(onnx_path))
    for entry in model.metadata_props:
        if entry.key in ("layers", "method_params"):
            entry.value = "{not json"
    damaged = tmp_path / "damaged.onnx"
    onnx.save(model, str(damaged))
    assert main(["info", str(damaged), "--json", str(out_json)]) == 0
    d = json.loads(out_json.read_text())[str(damaged)]
    assert d["layers"] == [] and d["method_params"] == {} and d["method"] == "patchcore"
    # the suffix in any case is an ONNX export (as every command reads it)
    upper = tmp_path / "M.ONNX"
    upper.write_bytes(onnx_path.read_bytes())
    assert main(["info", str(upper), "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())[str(upper)]["format"] == "onnx"


def test_info_reports_bad_files_and_describes_the_rest(patchcore_file, tmp_path, capsys):
    text_file = tmp_path / "notes.oddeye"
    text_file.write_text("not a model")
    folder = tmp_path / "models"
    folder.mkdir()
    missing = tmp_path / "missing.oddeye"
    out_json = tmp_path / "info.json"
    code = main(["info", str(missing), str(text_file), str(patchcore_file), str(folder),
                 "--json", str(out_json)])
    assert code == 2
    captured = capsys.readouterr()
    assert str(patchcore_file) in captured.out  # the good file is still described
    err = captured.err.splitlines()
    assert len(err) == 3 and "Traceback" not in captured.err
    assert "does not exist" in err[0] and "not an oddeye model file" in err[1]
    assert "is a folder" in err[2]
    res = json.loads(out_json.read_text())
    assert set(res) == {str(missing), str(text_file), str(patchcore_file), str(folder)}
    assert "error" in res[str(text_file)] and res[str(patchcore_file)]["method"] == "patchcore"
