"""The model-file format: round trip, and every kind of bad file fails with a clear message."""

from __future__ import annotations

import pytest
import torch

from oddeye.errors import ModelFileError
from oddeye.io import modelfile
from oddeye.io.modelfile import load_model, save_model


def test_round_trip(tmp_path):
    t = {"a": torch.arange(5.0), "b.c": torch.eye(3)}
    p = save_model(tmp_path / "m.oddeye", {"method": "x", "nested": {"k": [1, 2]}}, t)
    meta, tensors = load_model(p)
    assert meta["method"] == "x" and meta["nested"] == {"k": [1, 2]}
    assert meta["library_version"]
    torch.testing.assert_close(tensors["b.c"], torch.eye(3))


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope.oddeye")


def test_not_a_model_file(tmp_path):
    p = tmp_path / "x.oddeye"
    p.write_text("hello")
    with pytest.raises(ModelFileError, match="not an oddeye model file"):
        load_model(p)


def test_truncated_file(tmp_path):
    p = save_model(tmp_path / "m.oddeye", {"method": "x"}, {"w": torch.randn(1000)})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated") as exc:
        load_model(p)
    assert str(p) in str(exc.value)


def test_other_torch_file_is_refused(tmp_path):
    p = tmp_path / "w.pth"
    torch.save({"weight": torch.zeros(2)}, p)
    with pytest.raises(ModelFileError, match="not an oddeye model file"):
        load_model(p)


def test_pickled_code_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.oddeye"
    torch.save({"magic": modelfile.MAGIC, "format_version": 1, "x": Evil()}, p)
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_model(p)


def test_other_format_version(tmp_path, monkeypatch):
    monkeypatch.setattr(modelfile, "FORMAT_VERSION", 99)
    p = save_model(tmp_path / "future.oddeye", {"method": "x"}, {})
    monkeypatch.setattr(modelfile, "FORMAT_VERSION", 1)
    with pytest.raises(ModelFileError, match="format version 99"):
        load_model(p)


def test_unserialisable_metadata(tmp_path):
    with pytest.raises(ModelFileError, match="JSON"):
        save_model(tmp_path / "m.oddeye", {"bad": object()}, {})
