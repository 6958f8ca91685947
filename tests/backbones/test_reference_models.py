"""Our backbones against torchvision's and timm's own networks, where those are installed.

Neither is installed on the development machine (these tests skip there); the GPU machine has
both, and benchmarks/device_check.sh runs this file there. Each check builds the reference
network with random weights (no download), writes its state dict to a file the way its library
does (torch.save; safetensors for timm, as its hub files are), loads that file into our backbone
through the public path (``create_backbone(name, weights=path)``) and compares the logits.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from torch import nn

from oddeye.backbones import create_backbone


def reference_library(name: str, why: str):
    """The module ``name``, or a skip: not installed here, or installed but broken (a
    torchvision built for another torch fails at import with a RuntimeError, not ImportError)."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # any import failure means: not usable here
        pytest.skip(f"{why} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so a misplaced BN shows in the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


def assert_same_logits(reference: nn.Module, ours: nn.Module, size: int = 224) -> None:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want, got = reference(x), ours(x)
    assert got.shape == want.shape
    scale = want.abs().max().item()
    err = (got - want).abs().max().item()
    assert err <= 1e-4 * max(scale, 1.0), f"max |diff| {err:.3g} at logit scale {scale:.3g}"


@pytest.mark.parametrize("name", ["resnet18", "wide_resnet50_2", "mobilenet_v2"])
def test_torchvision_state_dicts_load_and_agree(name: str, tmp_path: Path) -> None:
    models = reference_library("torchvision.models",
                               "torchvision is not usable here (the GPU machine has it)")
    torch.manual_seed(0)
    reference = randomise_batchnorm(getattr(models, name)(weights=None))
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    assert_same_logits(reference, create_backbone(name, weights=path))


@pytest.mark.parametrize(("ours", "timm_name", "size"), [
    ("resnet18", "resnet18", 224),
    ("mobilenet_v2", "mobilenetv2_100", 224),
    ("efficientnet_lite0", "tf_efficientnet_lite0", 224),
    ("efficientnet_lite0", "tf_efficientnet_lite0", 255),  # odd size: TF "SAME" pads unevenly
])
def test_timm_files_load_and_agree(ours: str, timm_name: str, size: int, tmp_path: Path) -> None:
    timm = reference_library("timm", "timm is not usable here (the GPU machine has it)")
    torch.manual_seed(0)
    reference = randomise_batchnorm(timm.create_model(timm_name, pretrained=False))
    try:
        from safetensors.torch import save_file
    except ImportError:  # timm without safetensors: its .pth format
        path = tmp_path / f"{timm_name}.pth"
        torch.save(reference.state_dict(), path)
    else:
        path = tmp_path / f"{timm_name}.safetensors"
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    assert_same_logits(reference, create_backbone(ours, weights=path), size)


def test_a_library_that_fails_to_import_is_a_skip_naming_the_error(monkeypatch):
    """A torchvision built for another torch raises RuntimeError on import, not ImportError."""
    def broken(name: str):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(pytest.skip.Exception, match="RuntimeError: operator torchvision::nms"):
        reference_library("torchvision.models", "torchvision is not usable here")
