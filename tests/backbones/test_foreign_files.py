"""Weight files in other layouts and formats: timm's names, DataParallel's prefix, safetensors.

The timm names below are written from timm's published architecture definitions (stage depths
and block types); tests/backbones/test_reference_models.py checks the same against timm itself
where it is installed (the GPU machine).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

import oddeye.backbones.weights as W
from oddeye.backbones import create_backbone
from oddeye.backbones.layouts import to_native
from oddeye.backbones.registry import build_backbone
from oddeye.backbones.tensorfile import read_safetensors
from oddeye.errors import ModelFileError

_CODES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.uint8: "U8"}


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None = None,
                      ) -> None:
    """A minimal safetensors writer, independent of the reader under test."""
    header: dict = {"__metadata__": meta} if meta else {}
    blobs, offset = [], 0
    for name, t in tensors.items():
        raw = t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _CODES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


# (stage depths, first stage separable) of timm's mobilenetv2_100 and tf_efficientnet_lite0.
_TIMM_STAGES = {"mobilenet_v2": (1, 2, 3, 4, 3, 3, 1), "efficientnet_lite0": (1, 2, 2, 3, 3, 4, 1)}
_BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def timm_names(backbone: str) -> list[tuple[str, str]]:
    """(timm key, our key) pairs for every tensor, from timm's stage layout."""
    tv = backbone == "mobilenet_v2"
    pairs: list[tuple[str, str]] = []

    def conv(timm: str, ours: str) -> None:
        pairs.append((f"{timm}.weight", f"{ours}.weight"))

    def bn(timm: str, ours: str) -> None:
        pairs.extend((f"{timm}.{leaf}", f"{ours}.{leaf}") for leaf in _BN_LEAVES)

    conv("conv_stem", "features.0.0" if tv else "_conv_stem")
    bn("bn1", "features.0.1" if tv else "_bn0")
    flat = 0
    for stage, depth in enumerate(_TIMM_STAGES[backbone]):
        for index in range(depth):
            t = f"blocks.{stage}.{index}"
            o = f"features.{flat + 1}" if tv else f"_blocks.{flat}"
            if stage == 0:  # DepthwiseSeparableConv: dw, bn1, pw, bn2
                conv(f"{t}.conv_dw", f"{o}.conv.0.0" if tv else f"{o}._depthwise_conv")
                bn(f"{t}.bn1", f"{o}.conv.0.1" if tv else f"{o}._bn1")
                conv(f"{t}.conv_pw", f"{o}.conv.1" if tv else f"{o}._project_conv")
                bn(f"{t}.bn2", f"{o}.conv.2" if tv else f"{o}._bn2")
            else:  # InvertedResidual: pw, bn1, dw, bn2, pwl, bn3
                conv(f"{t}.conv_pw", f"{o}.conv.0.0" if tv else f"{o}._expand_conv")
                bn(f"{t}.bn1", f"{o}.conv.0.1" if tv else f"{o}._bn0")
                conv(f"{t}.conv_dw", f"{o}.conv.1.0" if tv else f"{o}._depthwise_conv")
                bn(f"{t}.bn2", f"{o}.conv.1.1" if tv else f"{o}._bn1")
                conv(f"{t}.conv_pwl", f"{o}.conv.2" if tv else f"{o}._project_conv")
                bn(f"{t}.bn3", f"{o}.conv.3" if tv else f"{o}._bn2")
            flat += 1
    conv("conv_head", f"features.{flat + 1}.0" if tv else "_conv_head")
    bn("bn2", f"features.{flat + 1}.1" if tv else "_bn1")
    fc = "classifier.1" if tv else "_fc"
    pairs += [("classifier.weight", f"{fc}.weight"), ("classifier.bias", f"{fc}.bias")]
    return pairs


def random_state(backbone: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    state = build_backbone(backbone).state_dict()
    return {k: (torch.randn_like(v) if v.is_floating_point() else v) for k, v in state.items()}


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "efficientnet_lite0"])
def test_timm_layout_loads_strictly_and_bit_identically(isolated_weights: Path, backbone: str,
                                                        ) -> None:
    ours = random_state(backbone)
    pairs = timm_names(backbone)
    assert sorted(o for _, o in pairs) == sorted(ours), "test's timm table misses a tensor"
    timm_state = {t: ours[o] for t, o in pairs}
    path = isolated_weights / "timm.pth"
    torch.save(timm_state, path)
    model = create_backbone(backbone, weights=path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, ours[key]), key


@pytest.mark.parametrize(("backbone", "timm_key", "shape", "ours"), [
    ("mobilenet_v2", "blocks.1.0.conv_pw.weight", (96, 16, 1, 1), "features.2.conv.0.0.weight"),
    ("mobilenet_v2", "blocks.6.0.conv_pwl.weight", (320, 960, 1, 1), "features.17.conv.2.weight"),
    ("mobilenet_v2", "bn2.running_var", (1280,), "features.18.1.running_var"),
    ("efficientnet_lite0", "blocks.5.3.conv_pwl.weight", (192, 1152, 1, 1),
     "_blocks.14._project_conv.weight"),
    ("efficientnet_lite0", "blocks.0.0.conv_dw.weight", (32, 1, 3, 3),
     "_blocks.0._depthwise_conv.weight"),
    ("efficientnet_lite0", "bn2.weight", (1280,), "_bn1.weight"),
])
def test_timm_spot_checks(backbone: str, timm_key: str, shape: tuple, ours: str) -> None:
    native = build_backbone(backbone).state_dict()
    timm_state = {t: native[o] for t, o in timm_names(backbone)}
    assert tuple(timm_state[timm_key].shape) == shape
    renamed, layout = to_native(timm_state, set(native))
    assert layout.startswith("timm") and renamed[ours] is timm_state[timm_key]


def test_data_parallel_prefix_is_removed(isolated_weights: Path) -> None:
    ours = random_state("mobilenet_v2")
    path = isolated_weights / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in ours.items()}, path)
    model = create_backbone("mobilenet_v2", weights=path)
    assert torch.equal(model.state_dict()["features.5.conv.1.0.weight"],
                       ours["features.5.conv.1.0.weight"])


def test_timm_file_for_another_network_names_the_layout(isolated_weights: Path) -> None:
    """A timm-layout file with a wrong tensor: renamed, then refused naming the layout and key."""
    lite = build_backbone("efficientnet_lite0").state_dict()
    pairs = timm_names("efficientnet_lite0")
    state = {t: lite[o] for t, o in pairs}
    state["blocks.2.0.conv_dw.weight"] = torch.zeros(144, 1, 3, 3)  # 5x5 in Lite0's stage 3
    path = isolated_weights / "odd.pth"
    torch.save(state, path)
    with pytest.raises(W.WeightsFileError) as info:
        create_backbone("efficientnet_lite0", weights=path)
    msg = str(info.value)
    assert "odd.pth (timm EfficientNet layout)" in msg and "_blocks.3._depthwise_conv" in msg


def test_safetensors_file_loads(isolated_weights: Path) -> None:
    ours = random_state("efficientnet_lite0")
    timm_state = {t: ours[o] for t, o in timm_names("efficientnet_lite0")}
    path = isolated_weights / "model.safetensors"
    write_safetensors(path, timm_state, meta={"format": "pt"})
    model = create_backbone("efficientnet_lite0", weights=path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, ours[key]), key


def test_safetensors_is_recognised_by_content_and_keeps_dtypes(tmp_path: Path) -> None:
    tensors = {"a": torch.arange(6, dtype=torch.float16).reshape(2, 3),
               "b": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
               "c": torch.tensor(7, dtype=torch.int64), "empty": torch.zeros(0, 4)}
    path = tmp_path / "weights.bin"
    write_safetensors(path, tensors)
    out = W.read_state_dict(path)
    assert set(out) == set(tensors)
    for name, t in tensors.items():
        assert out[name].dtype == t.dtype and torch.equal(out[name], t), name
    out["a"] += 1  # the tensors own writable memory
    assert W.read_state_dict(path)["a"][0, 0] == 0


@pytest.mark.parametrize(("damage", "problem"), [
    ("truncated", "byte range"),
    ("header", "not JSON"),
    ("dtype", "known dtype"),
    ("short", "shorter than the 8-byte"),
    ("length", "exceeds the file"),
])
def test_broken_safetensors_name_the_file_and_the_problem(tmp_path: Path, damage: str,
                                                          problem: str) -> None:
    path = tmp_path / "broken.safetensors"
    write_safetensors(path, {"w": torch.ones(4, 4)})
    data = path.read_bytes()
    if damage == "truncated":
        data = data[:-10]
    elif damage == "header":
        data = data[:8] + b"[" + data[9:]
    elif damage == "dtype":
        data = data.replace(b'"F32"', b'"F99"')
    elif damage == "short":
        data = data[:5]
    else:
        data = struct.pack("<Q", 10**6) + data[8:]
    path.write_bytes(data)
    with pytest.raises(W.WeightsFileError, match=rf"broken\.safetensors.*{problem}"):
        W.read_state_dict(path)
    with pytest.raises(ModelFileError, match=problem):
        read_safetensors(path)
