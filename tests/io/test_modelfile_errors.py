"""Damaged model files and bad save targets: one ``ModelFileError`` line naming the file and the
problem (never a raw KeyError / ValueError / TypeError from ``Detector.load``), saved files with
the permissions ``open()`` would give, and no temporary files left behind."""

from __future__ import annotations

import copy
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import oddeye
from oddeye.errors import ModelFileError
from oddeye.io import modelfile
from oddeye.io.modelfile import load_model, save_model
from tests.modelfiles import older_file


def damaged(src: Path, out: Path, edit_meta: Callable[[dict], Any] | None = None,
            edit_tensors: Callable[[dict], dict] | None = None) -> Path:
    """Copy of the model file ``src`` at ``out`` with its metadata changed in place by
    ``edit_meta`` (a non-None return value replaces the whole document) and its tensor dict
    replaced by ``edit_tensors``'s result."""
    payload = torch.load(src, weights_only=True)
    meta = json.loads(payload["meta_json"])
    if edit_meta is not None:
        replaced = edit_meta(meta)
        meta = meta if replaced is None else replaced
    payload["meta_json"] = json.dumps(meta)
    if edit_tensors is not None:
        payload["tensors"] = edit_tensors(dict(payload["tensors"]))
    torch.save(payload, out)
    return out


def drop(section: str, key: str | None = None) -> Callable[[dict], None]:
    """Metadata edit removing ``section`` (or its entry ``key``)."""
    def edit(meta: dict) -> None:
        if key is None:
            del meta[section]
        else:
            del meta[section][key]
    return edit


def put(section: str, key: str | None, value: Any) -> Callable[[dict], None]:
    """Metadata edit setting ``section`` (or its entry ``key``) to ``value``."""
    def edit(meta: dict) -> None:
        if key is None:
            meta[section] = value
        else:
            meta[section][key] = value
    return edit


def assert_one_line(exc: pytest.ExceptionInfo, path: Path, *fragments: str) -> None:
    """The error is one line that names ``path`` and every fragment."""
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    assert len(msg) < 400, msg


SECTIONS = ["threshold", "train", "preprocess", "postprocess", "backbone", "method",
            "method_params", "detector_params"]


@pytest.mark.parametrize("section", SECTIONS)
def test_missing_section_names_file_and_section(patchcore_file, tmp_path, section):
    bad = damaged(patchcore_file, tmp_path / "bad.oddeye", drop(section))
    with pytest.raises(ModelFileError) as exc:
        oddeye.load(bad, device="cpu")
    assert_one_line(exc, bad, f"'{section}'", "lacks")


@pytest.mark.parametrize(("section", "key"), [("threshold", "value"), ("threshold", "scale"),
                                              ("train", "n_images"), ("preprocess", "size"),
                                              ("postprocess", "sigma"), ("backbone", "layers")])
def test_missing_required_entry(patchcore_file, tmp_path, section, key):
    bad = damaged(patchcore_file, tmp_path / "bad.oddeye", drop(section, key))
    with pytest.raises(ModelFileError) as exc:
        oddeye.load(bad, device="cpu")
    assert_one_line(exc, bad, f"'{section}'", f"'{key}'")


@pytest.mark.parametrize(("section", "key", "value", "named"), [
    ("threshold", "value", "abc", "threshold.value"),
    ("threshold", "value", None, "threshold.value"),
    ("threshold", "scale", [1], "threshold.scale"),
    ("threshold", None, [1, 2], "'threshold'"),
    ("preprocess", "size", "big", "preprocess.size"),
    ("preprocess", "mean", [0.1], "preprocess.mean"),
    ("preprocess", "std", [0.2, 0.0, 0.2], "preprocess.std"),
    ("postprocess", "sigma", "x", "postprocess.sigma"),
    ("postprocess", "sigma", -1, "sigma"),
    ("postprocess", "reduce", "median", "median"),
    ("postprocess", "score_from", "zz", "score_from"),
    ("postprocess", "map_norm_images", "x", "postprocess.map_norm_images"),
    ("train", "n_images", "8", "train.n_images"),
    ("train", "categories", 5, "train.categories"),
    ("detector_params", None, [1], "'detector_params'"),
    ("detector_params", "size", "x", "detector_params.size"),
    ("detector_params", "size", 999, "preprocess.size"),
    ("backbone", "pad", "x", "backbone.pad"),
    ("backbone", "fusion_images", -1, "backbone.fusion_images"),
    ("backbone", "layers", "s8", "backbone.layers"),
    ("method_params", "no_such_parameter", 1, "no_such_parameter"),
])
def test_bad_value_names_file_and_entry(patchcore_file, tmp_path, section, key, value, named):
    bad = damaged(patchcore_file, tmp_path / "bad.oddeye", put(section, key, value))
    with pytest.raises(ModelFileError) as exc:
        oddeye.load(bad, device="cpu")
    assert_one_line(exc, bad, named)


def test_unknown_method_from_a_newer_version_names_the_file(patchcore_file, tmp_path):
    bad = damaged(patchcore_file, tmp_path / "future.oddeye", put("method", None, "supercore"))
    with pytest.raises(ModelFileError) as exc:
        oddeye.load(bad, device="cpu")
    assert_one_line(exc, bad, "'supercore'", "patchcore", "version")


def test_metadata_that_is_not_an_object(patchcore_file, tmp_path):
    bad = damaged(patchcore_file, tmp_path / "bad.oddeye", lambda meta: [1, 2])
    with pytest.raises(ModelFileError) as exc:
        load_model(bad)
    assert_one_line(exc, bad, "metadata")


def test_file_without_tensors_is_one_short_line(patchcore_file, tmp_path):
    bad = damaged(patchcore_file, tmp_path / "empty.oddeye", edit_tensors=lambda t: {})
    with pytest.raises(ModelFileError) as exc:
        oddeye.load(bad, device="cpu")
    assert_one_line(exc, bad, "no tensors")
    assert "stages." not in str(exc.value)  # no list of the expected backbone keys


def test_file_without_backbone_weights(patchcore_file, tmp_path):
    bad = damaged(patchcore_file, tmp_path / "nobb.oddeye",
                  edit_tensors=lambda t: {k: v for k, v in t.items()
                                          if not k.startswith("extractor.")})
    with pytest.raises(ModelFileError) as exc:
        oddeye.load(bad, device="cpu")
    assert_one_line(exc, bad, "backbone weights")


def test_tensor_entry_that_is_not_a_tensor(patchcore_file, tmp_path):
    bad = damaged(patchcore_file, tmp_path / "bad.oddeye",
                  edit_tensors=lambda t: {**t, "head.bank": 5})
    with pytest.raises(ModelFileError) as exc:
        oddeye.load(bad, device="cpu")
    assert_one_line(exc, bad, "'head.bank'")


def test_loading_a_folder_says_it_is_a_folder(patchcore_file, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "grid.oddeye").write_bytes(patchcore_file.read_bytes())
    for load in (load_model, lambda p: oddeye.load(p, device="cpu")):
        with pytest.raises(ModelFileError) as exc:
            load(folder)
        assert_one_line(exc, folder, "folder", "grid.oddeye")
        assert "does not exist" not in str(exc.value)


def test_valid_and_older_files_still_load(patchcore_file, tmp_path):
    """The checks leave good files alone, including the entries older versions did not write."""
    det = oddeye.load(patchcore_file, device="cpu")
    old = older_file(patchcore_file, tmp_path / "old.oddeye",
                     drop=["detector_params.map_norm", "postprocess.map_norm_images",
                           "postprocess.score_from", "train.categories"])
    again = oddeye.load(old, device="cpu")
    assert again.threshold_ == det.threshold_ and again.categories_ == []
    meta = json.loads(torch.load(patchcore_file, weights_only=True)["meta_json"])
    plain = copy.deepcopy(meta)
    del plain["oddeye_version"]
    loaded = oddeye.load(damaged(patchcore_file, tmp_path / "nover.oddeye",
                                 lambda m: plain), device="cpu")
    assert loaded.method == det.method


def test_generic_files_are_not_held_to_the_detector_layout(tmp_path):
    """``load_model`` is also the plain container reader: metadata without a detector's
    sections is returned as written."""
    p = save_model(tmp_path / "m.oddeye", {"method": "x", "nested": {"k": [1]}},
                   {"a": torch.zeros(2)})
    meta, tensors = load_model(p)
    assert meta["nested"] == {"k": [1]} and set(tensors) == {"a"}


# ----------------------------------------------------------------------------------- saving
def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_saving_to_a_folder_is_a_clear_error_and_leaves_nothing(patchcore_file, tmp_path):
    det = oddeye.load(patchcore_file, device="cpu")
    folder = tmp_path / "imgs"
    folder.mkdir()
    with pytest.raises(ModelFileError) as exc:
        det.save(folder)
    assert_one_line(exc, folder, "folder")
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert leftovers(tmp_path) == []


def test_saving_below_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    target = blocker / "m.oddeye"
    with pytest.raises(ModelFileError) as exc:
        save_model(target, {"method": "x"}, {"a": torch.zeros(1)})
    assert_one_line(exc, target, "cannot save")
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full_disk(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        Path(f).write_bytes(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(modelfile.torch, "save", full_disk)
    with pytest.raises(ModelFileError, match="No space left"):
        save_model(tmp_path / "m.oddeye", {"method": "x"}, {"a": torch.zeros(1)})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_file_has_the_permissions_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        p = save_model(tmp_path / "m.oddeye", {"method": "x"}, {"a": torch.zeros(1)})
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    assert leftovers(tmp_path) == []


def test_overwriting_keeps_the_files_permissions(tmp_path):
    p = save_model(tmp_path / "m.oddeye", {"method": "x"}, {"a": torch.zeros(1)})
    p.chmod(0o640)
    save_model(p, {"method": "y"}, {"a": torch.ones(1)})
    assert stat.S_IMODE(p.stat().st_mode) == 0o640
    assert load_model(p)[0]["method"] == "y"


def test_a_save_that_fails_midway_keeps_the_earlier_file_and_names_the_path(tmp_path,
                                                                             monkeypatch):
    """A full disk makes torch's zip writer raise RuntimeError, which was a raw traceback after
    the whole fit; now a ModelFileError naming the file, the earlier model whole."""
    import torch

    from oddeye.errors import ModelFileError
    from oddeye.io.modelfile import load_model, save_model

    path = tmp_path / "m.oddeye"
    save_model(path, {"k": 1}, {"t": torch.zeros(3)})
    before = path.read_bytes()

    def full_disk(obj, f):
        Path(f).write_bytes(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(ModelFileError, match=r"cannot save the model to .*m.oddeye: .*"
                                             r"PytorchStreamWriter failed writing file"):
        save_model(path, {"k": 2}, {"t": torch.ones(3)})
    assert path.read_bytes() == before and load_model(path)[0]["k"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.oddeye"]  # no temporary left
