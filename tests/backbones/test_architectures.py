"""Our backbone definitions have torchvision's (or the lite0 package's) exact parameter names."""

from __future__ import annotations

import pytest
import torch

from oddeye.backbones import available_backbones
from oddeye.backbones.registry import BackboneError, build_backbone, create_backbone
from oddeye.backbones.weights import WEIGHT_FILES, read_state_dict, resolve_weights

# Parameter counts published in torchvision's model documentation.
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "wide_resnet50_2": 68_883_240,
    "mobilenet_v2": 3_504_872,
}


def meta_backbone(name: str) -> torch.nn.Module:
    """Build without allocating or initialising memory (shapes and names only)."""
    with torch.device("meta"):
        return build_backbone(name)


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_registry_lists_all_families() -> None:
    assert available_backbones() == sorted(
        ["efficientnet_lite0", "mobilenet_v2", "resnet18", "resnet50", "wide_resnet50_2"])
    assert set(available_backbones()) == set(WEIGHT_FILES)
    with pytest.raises(BackboneError, match="unknown backbone 'resnet19'.*resnet18"):
        create_backbone("resnet19", weights=None)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_match_torchvision(name: str) -> None:
    model = meta_backbone(name)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[name]


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def torchvision_resnet_keys(bottleneck: bool, depths: tuple[int, ...],
                            width_per_group: int = 64) -> dict[str, tuple[int, ...]]:
    """Expected state-dict of torchvision's ResNet, written out from its documented layout:
    conv1/bn1 stem, layerN.i.{conv,bn}{1,2[,3]}, layerN.0.downsample.{0,1} when the shape
    changes, fc; bottleneck width = planes * width_per_group / 64, expansion 4."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    expansion = 4 if bottleneck else 1
    cin = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), depths, strict=True), start=1):
        cout = planes * expansion
        for i in range(n):
            p = f"layer{li}.{i}"
            block_in = cin if i == 0 else cout
            if bottleneck:
                w = planes * width_per_group // 64
                keys[f"{p}.conv1.weight"] = (w, block_in, 1, 1)
                keys.update(_bn(f"{p}.bn1", w))
                keys[f"{p}.conv2.weight"] = (w, w, 3, 3)
                keys.update(_bn(f"{p}.bn2", w))
                keys[f"{p}.conv3.weight"] = (cout, w, 1, 1)
                keys.update(_bn(f"{p}.bn3", cout))
            else:
                keys[f"{p}.conv1.weight"] = (planes, block_in, 3, 3)
                keys.update(_bn(f"{p}.bn1", planes))
                keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                keys.update(_bn(f"{p}.bn2", planes))
            if i == 0 and (li > 1 or block_in != cout):
                keys[f"{p}.downsample.0.weight"] = (cout, block_in, 1, 1)
                keys.update(_bn(f"{p}.downsample.1", cout))
        cin = cout
    keys["fc.weight"] = (1000, 512 * expansion)
    keys["fc.bias"] = (1000,)
    return keys


@pytest.mark.parametrize("name,bottleneck,depths,width", [
    ("resnet18", False, (2, 2, 2, 2), 64),
    ("resnet50", True, (3, 4, 6, 3), 64),
    ("wide_resnet50_2", True, (3, 4, 6, 3), 128),
])
def test_resnet_keys_and_shapes_match_torchvision(name, bottleneck, depths, width) -> None:
    ours = shapes(meta_backbone(name))
    expected = torchvision_resnet_keys(bottleneck, depths, width)
    assert list(ours) == list(expected)  # same names in the same order
    assert ours == expected


def test_resnet_spot_checks_against_torchvision_names() -> None:
    # A few literal entries as they appear in torchvision's published weight files.
    r18 = shapes(meta_backbone("resnet18"))
    assert "layer1.0.downsample.0.weight" not in r18
    assert r18["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    r50 = shapes(meta_backbone("resnet50"))
    assert r50["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert r50["layer2.0.conv2.weight"] == (128, 128, 3, 3)  # stride sits on the 3x3 (v1.5)
    assert r50["fc.weight"] == (1000, 2048)
    wide = shapes(meta_backbone("wide_resnet50_2"))
    assert wide["layer1.0.conv1.weight"] == (128, 64, 1, 1)
    assert wide["layer4.2.conv2.weight"] == (1024, 1024, 3, 3)
    assert wide["layer4.2.conv3.weight"] == (2048, 1024, 1, 1)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_keys_equal_the_real_weight_file(name: str) -> None:
    state = read_state_dict(resolve_weights(name))
    ours = build_backbone(name).state_dict()
    assert list(ours) == list(state)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in state.items()}
    create_backbone(name)  # and the strict load itself succeeds


def test_mobilenet_v2_real_file_spot_checks() -> None:
    keys = shapes(meta_backbone("mobilenet_v2"))
    assert keys["features.0.0.weight"] == (32, 3, 3, 3)
    assert keys["features.1.conv.0.0.weight"] == (32, 1, 3, 3)  # t=1: no expansion conv
    assert keys["features.2.conv.0.0.weight"] == (96, 16, 1, 1)
    assert keys["features.18.0.weight"] == (1280, 320, 1, 1)
    assert keys["classifier.1.weight"] == (1000, 1280)
