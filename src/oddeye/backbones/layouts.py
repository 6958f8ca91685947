"""Rename foreign state-dict layouts (timm's, DataParallel's) to our backbones' module names.

Our backbones carry torchvision's names (ResNet, MobileNetV2) or the ``efficientnet-lite0``
package's (lukemelas-style). timm stores the same networks under other names: its ResNets use
torchvision's names already, but its MobileNetV2 (``mobilenetv2_100``) and EfficientNet-Lite
(``tf_efficientnet_lite0``) use ``conv_stem`` / ``blocks.<stage>.<index>`` / ``conv_head``.
Only names change here; a file whose tensors do not fit still fails the strict load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

State = dict[str, torch.Tensor]

_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.+)$")

# timm's per-block module names -> ours, for a block with / without an expansion conv.
# timm's first MobileNetV2 / EfficientNet block is a DepthwiseSeparableConv (conv_dw, bn1,
# conv_pw, bn2); the others are InvertedResidual (conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3).
_TV_SEPARABLE = {"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"}
_TV_INVERTED = {"conv_pw": "conv.0.0", "bn1": "conv.0.1", "conv_dw": "conv.1.0",
                "bn2": "conv.1.1", "conv_pwl": "conv.2", "bn3": "conv.3"}
_LM_SEPARABLE = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv",
                 "bn2": "_bn2"}
_LM_INVERTED = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv",
                "bn2": "_bn1", "conv_pwl": "_project_conv", "bn3": "_bn2"}


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> State:
    """Drop ``prefix`` from every key when all keys have it (DataParallel / DDP checkpoints)."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def is_timm_mobile(state: Mapping[str, torch.Tensor]) -> bool:
    """True for timm's MobileNet / EfficientNet family layout (stem, staged blocks, head)."""
    return "conv_stem.weight" in state and any(_BLOCK.match(k) for k in state)


def _flat_block_index(state: Mapping[str, torch.Tensor]) -> dict[tuple[int, int], int]:
    """(stage, index) of timm's nested blocks -> position in one flat block list, in order."""
    pairs = sorted({(int(m[1]), int(m[2])) for k in state if (m := _BLOCK.match(k))})
    return {pair: i for i, pair in enumerate(pairs)}


def _rename_timm_mobile(state: Mapping[str, torch.Tensor], *, stem: tuple[str, str],
                        head: tuple[str, str], classifier: str,
                        block: Callable[[int, str, bool], str]) -> State:
    """Shared walk over timm's layout; ``block(flat_index, local_name, separable)`` names blocks."""
    flat = _flat_block_index(state)
    separable = {pair for pair in flat
                 if f"blocks.{pair[0]}.{pair[1]}.conv_pwl.weight" not in state}
    top = {"conv_stem": stem[0], "bn1": stem[1], "conv_head": head[0], "bn2": head[1],
           "classifier": classifier}
    out: State = {}
    for key, value in state.items():
        if m := _BLOCK.match(key):
            pair = (int(m[1]), int(m[2]))
            module, _, leaf = m[3].partition(".")
            new = f"{block(flat[pair], module, pair in separable)}.{leaf}"
        else:
            module, _, leaf = key.partition(".")
            new = f"{top.get(module, module)}.{leaf}"
        out[new] = value
    return out


def timm_to_torchvision_mobilenet_v2(state: Mapping[str, torch.Tensor]) -> State:
    """timm ``mobilenetv2_100`` names -> torchvision ``mobilenet_v2`` names."""
    def block(i: int, module: str, separable: bool) -> str:
        table = _TV_SEPARABLE if separable else _TV_INVERTED
        return f"features.{i + 1}.{table.get(module, module)}"
    n_blocks = len(_flat_block_index(state))
    return _rename_timm_mobile(state, stem=("features.0.0", "features.0.1"),
                               head=(f"features.{n_blocks + 1}.0", f"features.{n_blocks + 1}.1"),
                               classifier="classifier.1", block=block)


def timm_to_lukemelas_efficientnet(state: Mapping[str, torch.Tensor]) -> State:
    """timm ``tf_efficientnet_lite0`` names -> the ``efficientnet-lite0`` package's names."""
    def block(i: int, module: str, separable: bool) -> str:
        table = _LM_SEPARABLE if separable else _LM_INVERTED
        return f"_blocks.{i}.{table.get(module, module)}"
    return _rename_timm_mobile(state, stem=("_conv_stem", "_bn0"), head=("_conv_head", "_bn1"),
                               classifier="_fc", block=block)


LAYOUTS: dict[str, Callable[[Mapping[str, torch.Tensor]], State]] = {
    "timm MobileNetV2": timm_to_torchvision_mobilenet_v2,
    "timm EfficientNet": timm_to_lukemelas_efficientnet,
}


def to_native(state: Mapping[str, torch.Tensor], native_keys: set[str]) -> tuple[State, str]:
    """``state`` renamed to ``native_keys`` and the name of the layout it came in.

    Tries the state as it is, without a ``module.`` prefix, then each timm layout; the first
    whose keys equal ``native_keys`` wins. Without a match the (prefix-stripped) state comes
    back unchanged with layout ``"unrecognised"``, so the strict check reports its keys.
    """
    plain = strip_prefix(state)
    if set(plain) == native_keys:
        return plain, "native" if plain.keys() == state.keys() else "DataParallel"
    if is_timm_mobile(plain):
        for name, convert in LAYOUTS.items():
            renamed = convert(plain)
            if set(renamed) == native_keys:
                return renamed, name
    return plain, "unrecognised"
