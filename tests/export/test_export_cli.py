"""Argument checks of ``oddeye export`` (opset range, output path) and ``oddeye serve --port``,
each a one-line error before any model is loaded, and the output shapes an exported graph
declares (``maps [batch, S, S]``, ``scores [batch]``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oddeye.cli import main
from oddeye.export.onnx import DEFAULT_OPSET, MIN_OPSET, ExportError, check_opset, max_opset


def one_error_line(err: str) -> str:
    """The CLI's error output, which must be a single line."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------ opset
def test_opset_range_holds_the_default():
    assert MIN_OPSET <= DEFAULT_OPSET <= max_opset()


@pytest.mark.parametrize("opset", [5, MIN_OPSET - 1, 99, True, "17", None])
def test_opset_outside_the_range_is_refused(opset):
    with pytest.raises(ExportError, match=rf"opset must be an integer from {MIN_OPSET} to"):
        check_opset(opset)


@pytest.mark.parametrize("opset", [5, 99])
def test_export_cli_refuses_a_bad_opset_before_loading(opset, tmp_path, capsys):
    # the model does not exist: the opset must be what fails, before any loading or tracing
    rc = main(["export", "--model", str(tmp_path / "none.oddeye"), "--out",
               str(tmp_path / "m.onnx"), "--opset", str(opset)])
    assert rc == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"got {opset}" in line and f"{MIN_OPSET} to {max_opset()}" in line
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli_refuses_a_folder_as_output(patchcore_file, tmp_path, capsys):
    out = tmp_path / "exports"
    out.mkdir()
    assert main(["export", "--model", str(patchcore_file), "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(out) in line and "folder" in line
    assert list(out.iterdir()) == []


def test_export_api_refuses_a_folder_as_output(patchcore_file, tmp_path):
    import oddeye
    from oddeye.export.onnx import export_onnx

    det = oddeye.load(patchcore_file, device="cpu")
    with pytest.raises(ExportError, match="is a folder"):
        export_onnx(det, tmp_path)


@pytest.mark.parametrize("bound", ["min", "max"])
def test_both_ends_of_the_opset_range_export_with_parity(patchcore_file, tmp_path, bound,
                                                         capsys):
    pytest.importorskip("onnx", reason="the export needs the optional 'export' dependencies")
    pytest.importorskip("onnxruntime", reason="the parity check needs onnxruntime")
    import onnx

    opset = MIN_OPSET if bound == "min" else max_opset()
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", str(patchcore_file), "--out", str(out),
                 "--opset", str(opset)]) == 0
    assert "parity on 2 images" in capsys.readouterr().out
    assert [o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")] \
        == [opset]


# --------------------------------------------------------------------------- output shapes
def declared(path, name: str) -> list:
    """Declared dims of graph output ``name``: ints, or the symbolic names."""
    import onnx

    out = next(o for o in onnx.load(str(path)).graph.output if o.name == name)
    return [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]


@pytest.mark.parametrize("batch", [None, 3])
def test_declared_output_shapes_are_the_real_ones(patchcore_file, tmp_path, batch):
    pytest.importorskip("onnx", reason="reading the graph's declared outputs needs onnx")
    ort = pytest.importorskip("onnxruntime", reason="running the graph needs onnxruntime")
    import oddeye
    from oddeye.export.onnx import export_onnx

    det = oddeye.load(patchcore_file, device="cpu")
    s = det.size
    path = export_onnx(det, tmp_path / "m.onnx", batch=batch)
    b = batch or "batch"
    assert declared(path, "maps") == [b, s, s]
    assert declared(path, "scores") == [b]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    maps, scores = sess.run(None, {"images": np.zeros((3, 3, s, s), np.uint8)})
    assert maps.shape == (3, s, s) and scores.shape == (3,)
    assert [o.shape for o in sess.get_outputs()] == [[b, s, s], [b]]


# ------------------------------------------------------------------------------ serve --port
@pytest.mark.parametrize("port", ["99999", "-1", "0", "65536", "http"])
def test_serve_refuses_a_bad_port_like_argparse(port, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--model", str(tmp_path / "m.oddeye"), "--port", port])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --port" in err and "Traceback" not in err and "Overflow" not in err


@pytest.mark.parametrize("port", ["1", "8000", "65535"])
def test_serve_accepts_every_valid_port(port):
    from oddeye.commands.serve import port_number

    assert port_number(port) == int(port)


def test_padim_sets_the_minimum_opset(synth_root, surface_models, tmp_path):
    """PaDiM's Einsum is what needs opset 12: it exports there with parity, and one below is
    an ``ExportError`` line from ``check_opset``, not the exporter's trace."""
    pytest.importorskip("onnx", reason="the export needs the optional 'export' dependencies")
    pytest.importorskip("onnxruntime", reason="the parity check needs onnxruntime")
    import oddeye
    from oddeye.export.onnx import OnnxDetector, compare, export_onnx
    from tests.export.models import fitted_model, sample_images

    det = oddeye.load(fitted_model("padim", synth_root, surface_models), device="cpu")
    path = export_onnx(det, tmp_path / "padim.onnx", opset=MIN_OPSET)
    diff = compare(det, OnnxDetector(path), sample_images(synth_root))
    assert max(diff["max_map_diff"], diff["max_score_diff"]) < 1e-4
    with pytest.raises(ExportError, match="opset must be"):
        export_onnx(det, tmp_path / "low.onnx", opset=MIN_OPSET - 1)


def test_an_exporter_failure_is_one_export_error_line(patchcore_file, tmp_path, monkeypatch):
    """An operator the chosen opset lacks fails inside torch with a graph dump: it surfaces as an
    ``ExportError`` naming the method and opset, first line of torch's message only."""
    import torch

    import oddeye
    from oddeye.export.onnx import export_onnx

    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::foo' is not supported.\n%1 : graph...")

    det = oddeye.load(patchcore_file, device="cpu")
    monkeypatch.setattr(torch.onnx, "export", unsupported)
    with pytest.raises(ExportError) as exc:
        export_onnx(det, tmp_path / "m.onnx")
    msg = str(exc.value)
    assert "\n" not in msg and "aten::foo" in msg and f"opset {DEFAULT_OPSET}" in msg
    assert not (tmp_path / "m.onnx").exists()


def test_an_export_that_fails_midway_keeps_the_earlier_onnx_file(patchcore_file, tmp_path,
                                                                 monkeypatch):
    onnx = pytest.importorskip("onnx", reason="the export needs the optional 'export' deps")
    import oddeye
    from oddeye.export.onnx import export_onnx

    det = oddeye.load(patchcore_file, device="cpu")
    out = export_onnx(det, tmp_path / "m.onnx")
    before = out.read_bytes()

    def full_disk(model, f):
        Path(f).write_bytes(before[:1000])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save", full_disk)
    with pytest.raises(ExportError, match="No space left on device"):
        export_onnx(det, out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_parity_check_fails_on_a_nan_difference():
    """``max(nan, x) > tol`` is False: a model scoring NaN passed ``export --check``."""
    from oddeye.commands.export import parity_within

    ok = {"max_map_diff": 1e-5, "max_score_diff": 2e-6}
    assert parity_within(ok, 1e-4)
    assert not parity_within({**ok, "max_map_diff": float("nan")}, 1e-4)
    assert not parity_within({**ok, "max_score_diff": float("inf")}, 1e-4)
    assert not parity_within({**ok, "max_score_diff": 2e-4}, 1e-4)
