"""One method on several backbones, fused at the map level (``backbone="a+b"``).

Each backbone ("member") gets its own extractor and its own head of the same method with the same
hyper-parameters. Each member's raw map is standardised by the mean and standard deviation of
its raw maps of good images the fit did not train on (the images the threshold comes from), and
the standardised maps are summed: members whose distances live on different scales then weigh
the same. Validated for PatchCore on MobileNetV2 + EfficientNet-Lite0 (docs/methods.md, "Two
backbones fused"); the cost is every member's fit and forward pass.

The Detector builds, fits, saves and loads a model through ``build_model``, ``fit_model``,
``fit_stats`` and ``head_from_state``, which take the one-backbone path unchanged when the
backbone names a single network.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oddeye.errors import DataError
from oddeye.methods.base import Method, TrainSet, attach_frame

#: Joins member backbones in a fused backbone's name: ``"mobilenet_v2+efficientnet_lite0"``.
SEPARATOR = "+"


def members(backbone: str) -> list[str]:
    """The member backbones a name stands for: one for a plain name, several for ``a+b``."""
    return backbone.split(SEPARATOR)


def is_fused(backbone: str) -> bool:
    return SEPARATOR in backbone


def check_fusion(method: Method, weights: Any = "auto") -> None:
    """A ``DataError`` unless ``method.backbone`` is a plain name or a fusion this method and
    ``weights`` allow: two or more distinct known backbones, a method that learns from good
    images alone (``fusable``), weights resolved per member."""
    if not is_fused(method.backbone):
        return
    from oddeye.backbones import available_backbones

    names = members(method.backbone)
    known = available_backbones()
    bad = [n for n in names if n not in known]
    if bad or len(set(names)) != len(names) or len(names) < 2:
        why = (f"unknown member {bad[0]!r}" if bad else "a member is repeated")
        raise DataError(f"backbone {method.backbone!r}: {why}; a fused backbone joins two or more "
                        f"distinct backbones with '{SEPARATOR}' (known: {', '.join(known)})")
    if not getattr(method, "fusable", False):
        raise DataError(f"method {method.name!r} cannot fuse backbones ({method.backbone!r}): "
                        f"fusion is for methods that fit on good images alone and score by a "
                        f"distance map (patchcore, padim)")
    if weights not in ("auto", None):
        raise DataError(f"weights={weights!r} names one file, but backbone {method.backbone!r} "
                        f"has {len(names)} members: leave weights='auto' and put each member's "
                        f"standard file where oddeye finds it ($ODDEYE_WEIGHTS)")


class FusedExtractor(nn.Module):
    """Several frozen ``FeatureExtractor``s on the same input; taps keyed ``"<member>/<tap>"``.

    ``channels`` and ``strides`` use the same keys; ``pad`` is every member's frame.
    """

    def __init__(self, backbones: Sequence[str], layers: Sequence[str],
                 weights: Any = "auto", pad: int = 0) -> None:
        super().__init__()
        from oddeye.backbones import FeatureExtractor

        self.members = nn.ModuleList(FeatureExtractor(b, list(layers), weights=weights, pad=pad)
                                     for b in backbones)
        self.backbone_name = SEPARATOR.join(backbones)
        self.layers = self.members[0].layers
        self.pad = pad
        self.channels = {f"{i}/{k}": v for i, m in enumerate(self.members)
                         for k, v in m.channels.items()}
        self.strides = {f"{i}/{k}": v for i, m in enumerate(self.members)
                        for k, v in m.strides.items()}

    def train(self, mode: bool = True) -> FusedExtractor:
        """Ignore ``mode``: the members stay in eval mode (frozen statistics)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"{i}/{k}": v for i, m in enumerate(self.members) for k, v in m(x).items()}


def member_features(feats: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    """One member's taps (by their own names) out of a ``FusedExtractor``'s output."""
    prefix = f"{index}/"
    return {k[len(prefix):]: v for k, v in feats.items() if k.startswith(prefix)}


def to_cells(m: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """An (N, h, w) map resized (bilinear) to ``size`` cells; unchanged when it has them."""
    if m.shape[-2:] == size:
        return m
    return F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def standardised_sum(maps: Sequence[torch.Tensor], mean: torch.Tensor,
                     scale: torch.Tensor) -> torch.Tensor:
    """``sum_i (maps[i] - mean[i]) / scale[i]``, each (N, h, w) map first resized (bilinear) to
    the first one's cells when they differ."""
    size = maps[0].shape[-2:]
    out = torch.zeros_like(maps[0])
    for i, m in enumerate(maps):
        out = out + (to_cells(m, size) - mean[i]) / scale[i]
    return out


def map_stats(maps: torch.Tensor) -> tuple[float, float]:
    """(mean, standard deviation) of every cell of (N, h, w) raw maps of good images. A spread
    of exactly zero (a member constant on every good image) becomes 1: that member then adds
    its raw deviation from the good images' value, not a division by zero."""
    m = maps.double()
    mean, std = float(m.mean()), float(m.std(unbiased=False))
    return mean, (std if std > 0 and math.isfinite(std) else 1.0)


class FusedHead(nn.Module):
    """Member heads -> the sum of their standardised raw maps (``standardised_sum``).

    ``mean`` / ``scale`` (one entry per member) start at 0 / 1, a plain sum, until ``set_stats``.
    """

    def __init__(self, heads: Sequence[nn.Module]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.register_buffer("mean", torch.zeros(len(heads)))
        self.register_buffer("scale", torch.ones(len(heads)))

    def member_maps(self, feats: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each member's raw map on the first member's cells (so the statistics ``fit_stats``
        takes are those of the maps that are summed)."""
        maps = [h(member_features(feats, i)) for i, h in enumerate(self.heads)]
        return [to_cells(m, maps[0].shape[-2:]) for m in maps]

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return standardised_sum(self.member_maps(feats), self.mean, self.scale)

    def for_export(self) -> FusedHead:
        """The head to trace to ONNX: each member as the exporter traces it alone
        (``oddeye.export.onnx.export_head``: PatchCore's search in bank blocks fixed by the
        bank, not in query chunks a tracer would freeze at the tracing batch), same
        statistics."""
        from oddeye.export.onnx import export_head

        out = FusedHead([export_head(h) for h in self.heads])
        out.mean.copy_(self.mean)
        out.scale.copy_(self.scale)
        return out

    def set_stats(self, stats: Sequence[tuple[float, float]]) -> None:
        self.mean.copy_(torch.tensor([s[0] for s in stats]))
        self.scale.copy_(torch.tensor([s[1] for s in stats]))


def build_model(method: Method, weights: Any, pad: int) -> tuple[nn.Module, nn.Module]:
    """(extractor, untrained head) for ``method``, framed as the method decides
    (``attach_frame``): one ``FeatureExtractor`` and head, or a ``FusedExtractor`` and
    ``FusedHead`` with one head per member."""
    check_fusion(method, weights)
    extractor = build_extractor(method.backbone, method.layers, weights, pad)
    if isinstance(extractor, FusedExtractor):
        head = FusedHead([method.build_head(m.channels, m.strides) for m in extractor.members])
    else:
        head = method.build_head(extractor.channels, extractor.strides)
    attach_frames(method, extractor, head)
    return extractor, head


def build_extractor(backbone: str, layers: Sequence[str], weights: Any, pad: int = 0
                    ) -> nn.Module:
    """A ``FeatureExtractor`` for one backbone, a ``FusedExtractor`` for ``a+b``."""
    from oddeye.backbones import FeatureExtractor

    if is_fused(backbone):
        return FusedExtractor(members(backbone), layers, weights, pad)
    return FeatureExtractor(backbone, list(layers), weights=weights, pad=pad)


def attach_frames(method: Method, extractor: nn.Module, head: nn.Module) -> None:
    """``attach_frame`` for each member (or the one extractor and head)."""
    if isinstance(head, FusedHead):
        for m, h in zip(extractor.members, head.heads, strict=True):
            attach_frame(method, m, h)
    else:
        attach_frame(method, extractor, head)


def fit_model(method: Method, head: nn.Module, data: TrainSet) -> None:
    """``method.fit_head`` on the training set, member by member for a fused model (each sees
    its own backbone's features; the standardisation comes later, ``fit_stats``)."""
    if not isinstance(head, FusedHead):
        method.fit_head(head, data)
        return
    for m, h in zip(data.extractor.members, head.heads, strict=True):
        method.fit_head(h, dataclasses.replace(data, extractor=m, _cache=None))


def fit_stats(extractor: nn.Module, head: FusedHead, normalize: nn.Module, images: torch.Tensor,
              batch_size: int, device: torch.device) -> None:
    """Set a fused head's per-member mean and spread from the raw maps of good uint8
    (N, 3, S, S) ``images`` (on the CPU), computed batch by batch."""
    parts: list[list[torch.Tensor]] = [[] for _ in head.heads]
    with torch.inference_mode():
        for s in range(0, images.shape[0], max(1, batch_size)):
            feats = extractor(normalize(images[s:s + batch_size].to(device)))
            for i, m in enumerate(head.member_maps(feats)):
                parts[i].append(m.float().cpu())
    head.set_stats([map_stats(torch.cat(p)) for p in parts])


def fit_choices(method: Method, head: nn.Module) -> str:
    """``method.fit_choices``, member by member for a fused head ("member: choice; ...")."""
    if not isinstance(head, FusedHead):
        return method.fit_choices(head)
    names = members(method.backbone)
    said = [(n, method.fit_choices(h)) for n, h in zip(names, head.heads, strict=True)]
    return "; ".join(f"{n}: {c}" for n, c in said if c)


def record_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with a model file's backbone record as to fusion, or None: a fused
    backbone must say on how many good images its maps were standardised (``fusion_images``,
    at least 1), a single one must not."""
    fused, count = is_fused(record["name"]), record.get("fusion_images")
    if fused and count is None:
        return (f"backbone {record['name']!r} is fused but its record lacks fusion_images (the "
                f"good images its maps were standardised on): the file was edited or damaged")
    if fused and count < 1:
        return f"backbone.fusion_images is {count} for the fused backbone {record['name']!r}"
    if not fused and count is not None:
        return (f"backbone.fusion_images is given for the single backbone {record['name']!r}: "
                f"the file was edited or damaged")
    return None


def stats_problem(head: nn.Module) -> str | None:
    """What is wrong with a loaded fused head's standardisation, or None: every mean finite,
    every scale finite and positive (a fit makes nothing else; a NaN would score every image
    NaN, a negative scale turn a member's map upside down)."""
    if not isinstance(head, FusedHead):
        return None
    mean, scale = head.mean.double(), head.scale.double()
    if not bool(torch.isfinite(mean).all()) or not bool(
            (torch.isfinite(scale) & (scale > 0)).all()):
        return (f"the fused maps' statistics are not usable (head.mean {mean.tolist()}, "
                f"head.scale {scale.tolist()}; means must be finite, scales finite and "
                f"positive): the file was edited or damaged")
    return None


def head_from_state(method: Method, extractor: nn.Module,
                    state: dict[str, torch.Tensor]) -> nn.Module:
    """A fitted head rebuilt from a model file's head tensors (``Method.head_from_state`` per
    member for a fused model). Raises ``KeyError`` / ``RuntimeError`` on tensors that do not fit
    (the loader turns them into a ``ModelFileError``)."""
    if not isinstance(extractor, FusedExtractor):
        return method.head_from_state(extractor.channels, extractor.strides, state)
    heads = []
    for i, m in enumerate(extractor.members):
        prefix = f"heads.{i}."
        heads.append(method.head_from_state(
            m.channels, m.strides, {k[len(prefix):]: v for k, v in state.items()
                                    if k.startswith(prefix)}))
    head = FusedHead(heads)
    head.load_state_dict(state, strict=True)
    return head.eval()
