"""Where a detector runs: device choice, errors, model files that load anywhere, and (on a
machine with a CUDA GPU) every method fitted and served on it against the same fit on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import oddeye
from oddeye.api import Detector
from oddeye.cli import main
from oddeye.commands._common import parse_params
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.device import module_device, resolve_device
from oddeye.errors import DataError
from oddeye.io.modelfile import load_model
from oddeye.preprocess import resize_mask

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device here: these run on a GPU "
                                "machine (torch.cuda.is_available() is False)")


@pytest.fixture(scope="module")
def grid(synth_root):
    return load_dataset(synth_root, ["grid"])[0]


# ------------------------------------------------------------------------- on any machine
def test_auto_picks_cuda_only_when_torch_sees_it(monkeypatch):
    monkeypatch.delenv("ODDEYE_DEVICE", raising=False)  # conftest pins the suite to the CPU
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_the_environment_says_what_auto_means(monkeypatch):
    monkeypatch.setenv("ODDEYE_DEVICE", "cpu")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setenv("ODDEYE_DEVICE", "auto")
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    monkeypatch.setenv("ODDEYE_DEVICE", "gpu0")
    with pytest.raises(DataError, match="ODDEYE_DEVICE"):
        resolve_device("auto")
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit device ignores it


@pytest.mark.parametrize("bad", ["gpu0", "", "cuda:x", 3])
def test_unknown_device_names_are_refused(bad):
    with pytest.raises(DataError, match="device"):
        resolve_device(bad)


def test_devices_other_than_cpu_and_cuda_are_refused():
    with pytest.raises(DataError, match="not supported"):
        resolve_device("meta")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_fails_before_any_work(grid):
    with pytest.raises(DataError, match="sees no CUDA device"):
        resolve_device("cuda")
    det = Detector(method="patchcore", size=128, device="cuda")
    with pytest.raises(DataError, match="sees no CUDA device"):
        det.fit([s.path for s in grid.train], progress=False)
    assert not hasattr(det, "model_")


@needs_cuda
def test_a_cuda_index_beyond_the_devices_is_refused():
    with pytest.raises(DataError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_the_device_is_not_saved_and_load_takes_one(grid, tmp_path):
    det = Detector(method="patchcore", size=128, device="cpu").fit(
        [s.path for s in grid.train], progress=False)
    assert det.device_ == torch.device("cpu") and det.get_params()["device"] == "cpu"
    path = det.save(tmp_path / "m.oddeye")
    meta, tensors = load_model(path)
    assert "device" not in meta["detector_params"]
    assert all(t.device.type == "cpu" for t in tensors.values())
    again = oddeye.load(path, device="cpu")
    assert module_device(again.model_) == torch.device("cpu")
    assert again.to("cpu") is again
    paths = [s.path for s in grid.test[:3]]
    np.testing.assert_array_equal(det.predict(paths).scores, again.predict(paths).scores)


def test_cli_reports_a_bad_device(synth_root, tmp_path, capsys):
    rc = main(["train", "--data", str(synth_root), "--category", "grid", "--out",
               str(tmp_path / "m.oddeye"), "--size", "128", "--device", "npu", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "device" in err and "'npu'" in err


# --------------------------------------------------------------------- on a CUDA machine
def _fit_args(method: str, grid) -> tuple[dict, dict]:
    """(constructor parameters, fit keyword arguments) of a small fit of ``method``."""
    paths = [s.path for s in grid.train]
    if method == "rd4ad":
        return {"epochs": 3}, {"images": paths}
    if method == "resad":
        return (dict(epochs=2, warmup_epochs=1, queries_per_class=6, train_shots=(2,),
                     train_batch=4, flow_batch=1024, n_coupling=2, holdout=0.0),
                {"images": paths, "categories": ["grid"] * len(paths)})
    if method == "anoonly-head":
        bad = [s for s in grid.test if s.label == 1][:2]
        masks = ([np.zeros((128, 128), np.uint8)] * len(paths)
                 + [resize_mask(load_sample_mask(s, (128, 128)), 128) for s in bad])
        return {"steps": 30}, {"images": paths + [s.path for s in bad],
                               "labels": [0] * len(paths) + [1] * len(bad), "masks": masks}
    return {}, {"images": paths}


@pytest.fixture
def fp32():
    """Full float32 on the GPU: PyTorch runs CUDA convolutions in TF32 by default (a 10-bit
    mantissa), which moves features by ~1e-3 and nearest-neighbour choices with them; a device
    comparison should measure oddeye's code, not that setting."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


#: every method, PatchCore's s16 patch grid and expanded taps, PaDiM's two shrunk covariances,
#: RD4AD's ablation variant with a frozen teacher embedding, its RD++ projection layers, its
#: expanded targets and its weight averaging ("name:key=value")
METHODS = ["patchcore", "patchcore:grid=last", 'patchcore:layers=["s8x","s16x"]', "padim",
           "padim:covariance=ledoit_wolf", "padim:covariance=diagonal_shrinkage", "rd4ad",
           "rd4ad:embedding=teacher", "rd4ad:projection=true", "rd4ad:expanded_targets=true",
           "rd4ad:average_from=0.5", "resad", "anoonly-head"]


@needs_cuda
@pytest.mark.parametrize("case", METHODS)
def test_fit_and_predict_on_cuda_match_the_cpu(grid, tmp_path, fp32, case):
    method, _, variant = case.partition(":")
    params, fit = _fit_args(method, grid)
    if variant:
        params.update(parse_params([variant]))
    test = [s.path for s in grid.test]
    y = np.array([s.label for s in grid.test])
    cpu = Detector(method=method, size=128, device="cpu", **params)
    gpu = Detector(method=method, size=128, device="cuda", **params)
    cpu.fit(progress=False, **fit)
    gpu.fit(progress=False, **fit)
    assert module_device(gpu.model_).type == "cuda"
    assert all(t.device.type == "cuda" for t in gpu.model_.state_dict().values())
    s_cpu, s_gpu = cpu.predict(test).scores, gpu.predict(test).scores
    assert np.all(np.isfinite(s_gpu))
    if method != "rd4ad":  # three RD4AD steps teach nothing yet; the CPU tests train it longer
        assert s_gpu[y == 1].mean() > s_gpu[y == 0].mean()
    # the same fit on another device: equal up to float rounding (other summation orders),
    # which training and greedy choices may amplify; the ranking of images must survive
    assert _spearman(s_cpu, s_gpu) > 0.9, (s_cpu, s_gpu)
    if method in ("patchcore", "padim"):  # no training: the scores themselves agree
        assert _spearman(s_cpu, s_gpu) > 0.95, (s_cpu, s_gpu)
        np.testing.assert_allclose(s_gpu, s_cpu, rtol=0.05, atol=1e-3)
    # a GPU-fitted file holds CPU tensors and scores the same on the CPU
    path = gpu.save(tmp_path / f"{method}.oddeye")
    on_cpu = oddeye.load(path, device="cpu")
    if method == "resad":
        refs = [s.path for s in grid.train[:2]]
        gpu.set_references(refs)
        on_cpu.set_references(refs)
        s_gpu = gpu.predict(test).scores
    np.testing.assert_allclose(on_cpu.predict(test).scores, s_gpu, rtol=0.02, atol=1e-3)
    assert on_cpu.to("cuda") is on_cpu and module_device(on_cpu.model_).type == "cuda"
    if method != "resad":  # its references were matched on each device: nearest-reference
        # choices between near-equal candidates can differ, and a residual jumps with them
        np.testing.assert_allclose(on_cpu.predict(test).scores, s_gpu, rtol=1e-4, atol=1e-5)


@needs_cuda
def test_map_norm_and_thresholds_fit_on_cuda(grid, fp32):
    paths = [s.path for s in grid.train]
    fits = {}
    for dev in ("cuda", "cpu"):
        fits[dev] = Detector(method="patchcore", size=128, device=dev, map_norm="position").fit(
            paths[10:], validation=paths[:10], progress=False)
    assert fits["cuda"].map_norm_ == 10
    assert fits["cuda"].model_.post.norm_mean.device.type == "cuda"
    assert fits["cuda"].threshold_ == pytest.approx(fits["cpu"].threshold_, rel=0.05)
    test = [s.path for s in grid.test]
    np.testing.assert_allclose(fits["cuda"].predict(test).scores, fits["cpu"].predict(test).scores,
                               rtol=0.05, atol=1e-3)


@needs_cuda
def test_onnx_export_of_a_cuda_model_traces_on_the_cpu(grid, tmp_path, fp32):
    pytest.importorskip("onnxruntime")
    from oddeye.export.onnx import OnnxDetector, export_onnx

    det = Detector(method="patchcore", size=128, device="cuda").fit(
        [s.path for s in grid.train], progress=False)
    out = export_onnx(det, tmp_path / "m.onnx")
    assert module_device(det.model_).type == "cuda"  # the detector stayed where it was
    test = [s.path for s in grid.test[:4]]
    np.testing.assert_allclose(OnnxDetector(out).predict(test).scores,
                               det.predict(test).scores, rtol=0.02, atol=1e-3)


@needs_cuda
def test_cli_trains_tests_and_predicts_on_cuda(synth_root, tmp_path):
    model = tmp_path / "m.oddeye"
    assert main(["train", "--data", str(synth_root), "--category", "grid", "--size", "128",
                 "--out", str(model), "--device", "cuda", "--no-progress"]) == 0
    assert main(["test", "--model", str(model), "--data", str(synth_root / "grid"),
                 "--device", "cuda", "--json", str(tmp_path / "m.json"), "--no-progress"]) == 0
    assert main(["predict", "--model", str(model), str(synth_root / "grid" / "test"),
                 "--out", str(tmp_path / "pred"), "--device", "cuda"]) == 0
    assert (tmp_path / "pred" / "results.csv").exists()
