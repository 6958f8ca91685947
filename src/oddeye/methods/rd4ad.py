"""RD4AD (Deng & Li, CVPR 2022): reverse distillation from a one-class embedding.

The frozen backbone is the teacher. A trainable one-class bottleneck embedding (OCBE) fuses the
teacher's stages (strided 3x3 convs bring the shallower ones down to the deepest, concatenation,
one residual stage that compresses to a compact embedding at half the deepest resolution), and a
student decoder mirrors the teacher in reverse (upsampling residual stages) to rebuild every
tapped stage from that embedding alone. On normal images the student learns to agree with the
teacher; where they disagree (``1 - cos`` per pixel, summed over stages, by default each stage
standardised on the training images first) the image is anomalous.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from oddeye.backbones.fold import fold_batchnorm
from oddeye.data.pseudo import pseudo_batch
from oddeye.errors import DataError
from oddeye.methods import register
from oddeye.methods.base import Method, TrainSet, check_flag, check_layers, check_number

LOSSES = ("pixel", "flat")
#: What the student decodes from (the paper's ablation study, Deng & Li 2022): ``ocbe`` (the
#: method: multi-scale fusion + a trainable one-class embedding stage), ``oce`` (the trainable
#: stage on the deepest tap alone, no fusion), ``teacher`` (the paper's "Pre": the frozen
#: teacher's next stage is the embedding; nothing is trained before the decoder).
EMBEDDINGS = ("ocbe", "oce", "teacher")
KINDS = ("basic", "bottleneck", "light")
BLOCKS = ("auto", *KINDS)
#: How the per-stage maps are combined: ``equal`` sums them as they are (the paper's map);
#: ``spread`` (default since the nineteenth session, chosen on validation data) first
#: standardises each stage by the mean and standard deviation of its map over the training
#: images, so a stage whose ``1 - cos`` is large and noisy on good parts (the finest, on
#: textured surfaces) does not outweigh the others (docs/rd4ad.md "Stage weights").
STAGE_WEIGHTS = ("equal", "spread")
#: Channel count from which ``block="auto"`` switches to bottleneck blocks (WideResNet-sized).
BOTTLENECK_FROM = 512
#: RD++'s projection training, from the authors' released code (Tien et al., CVPR 2023): the
#: projection loss enters the total with weight 0.2; inside it reconstruction weighs 0.01 and
#: contrast 0.1 over the sum of all three weights (1.11, the optimal-transport term's 1 included:
#: see ``projection_loss`` for why that term is left out); the projection layers learn with their
#: own Adam rate 0.001 beside the student's 0.005.
PROJ_WEIGHT = 0.2
PROJ_RECON = 0.01
PROJ_CONTRAST = 0.1
PROJ_NORM = 1.11
PROJ_LR = 0.001


# --------------------------------------------------------------------------------------------
# pure maths
# --------------------------------------------------------------------------------------------


def cosine_distance_map(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` between (N, C, h, w) feature maps along channels, per pixel -> (N, h, w)."""
    return 1.0 - F.cosine_similarity(teacher, student, dim=1, eps=1e-6)


def distillation_loss(teachers: Sequence[torch.Tensor], students: Sequence[torch.Tensor],
                      kind: str = "pixel") -> torch.Tensor:
    """Sum over stages of the mean ``1 - cos``: per pixel (``pixel``) or per flattened map.

    ``flat`` is the authors' released variant (each sample's whole stage as one vector); ``pixel``
    is the per-pixel distance the anomaly map uses, averaged over pixels and samples.
    """
    if kind not in LOSSES:
        raise DataError(f"loss must be one of {LOSSES}, got {kind!r}")
    total = teachers[0].new_zeros(())
    for t, s in zip(teachers, students, strict=True):
        if kind == "pixel":
            total = total + cosine_distance_map(t, s).mean()
        else:
            total = total + (1.0 - F.cosine_similarity(t.flatten(1), s.flatten(1), dim=1,
                                                       eps=1e-6)).mean()
    return total


def projection_loss(noisy: Sequence[torch.Tensor], projected_noisy: Sequence[torch.Tensor],
                    projected: Sequence[torch.Tensor]) -> torch.Tensor:
    """RD++'s loss of the projection layers, summed over stages, without the transport term.

    Reconstruction: mean per-pixel ``1 - cos`` between the projections of the noisy and of the
    clean image (the projection should remove what the noise added). Contrast: ``1 - cos``
    between each sample's flattened *raw* teacher features of the noisy image and the flattened
    projection of the clean one (it anchors the projection to teacher-like features). The
    authors' third term, a debiased Sinkhorn divergence between the batch of projected samples
    and the same batch shuffled, compares a point cloud with a permutation of itself: it is zero
    by construction, so it is left out (its weight stays in ``PROJ_NORM``, as in their total).
    """
    recon = noisy[0].new_zeros(())
    contrast = noisy[0].new_zeros(())
    for n, pn, pc in zip(noisy, projected_noisy, projected, strict=True):
        recon = recon + cosine_distance_map(pn, pc).mean()
        contrast = contrast + (1.0 - F.cosine_similarity(n.flatten(1), pc.flatten(1), dim=1,
                                                         eps=1e-6)).mean()
    return (PROJ_RECON * recon + PROJ_CONTRAST * contrast) / PROJ_NORM


def stage_maps(teachers: Sequence[torch.Tensor], students: Sequence[torch.Tensor]
               ) -> list[torch.Tensor]:
    """Per-stage ``1 - cos`` maps, each upsampled (bilinear) to the finest stage: (N, h, w)."""
    size = max((t.shape[-2:] for t in teachers), key=lambda s: s[0] * s[1])
    out = []
    for t, s in zip(teachers, students, strict=True):
        d = cosine_distance_map(t, s)
        if d.shape[-2:] != size:
            d = F.interpolate(d.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]
        out.append(d)
    return out


def anomaly_map(teachers: Sequence[torch.Tensor], students: Sequence[torch.Tensor],
                offset: torch.Tensor | None = None, scale: torch.Tensor | None = None
                ) -> torch.Tensor:
    """Sum of the per-stage maps (``stage_maps``), each as ``(d - offset[i]) * scale[i]`` when
    ``offset`` / ``scale`` (one value per stage) are given: the paper's map without them."""
    out = None
    for i, d in enumerate(stage_maps(teachers, students)):
        if offset is not None and scale is not None:
            d = (d - offset[i]) * scale[i]
        out = d if out is None else out + d
    assert out is not None
    return out


def stage_statistics(maps: Iterator[list[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of each stage's map over every pixel of every batch of
    ``maps`` (lists of (N, h, w) per-stage maps), accumulated in float64."""
    total = sq = None
    count = 0
    for batch in maps:
        flat = torch.stack([m.double().flatten() for m in batch])  # (stages, pixels)
        total = flat.sum(1) if total is None else total + flat.sum(1)
        sq = (flat * flat).sum(1) if sq is None else sq + (flat * flat).sum(1)
        count += flat.shape[1]
    if total is None or sq is None or count < 2:
        raise DataError("stage statistics need at least one image")
    mean = total / count
    var = (sq / count - mean * mean).clamp_min(0) * count / (count - 1)
    return mean.float(), var.sqrt().float()


def steps_between(fine: int, coarse: int) -> int:
    """Number of factor-2 resolution steps from stride ``fine`` to stride ``coarse``."""
    ratio = coarse / fine
    steps = round(math.log2(ratio)) if ratio > 0 else -1
    if steps < 1 or 2 ** steps != ratio:
        raise DataError(f"RD4AD needs layer strides that grow by powers of two, got {fine} -> "
                        f"{coarse}")
    return steps


def averaging_start(total_steps: int, average_from: float) -> int:
    """The first optimiser step (1-based) whose weights enter the tail average: every step
    after the first ``average_from`` share of ``total_steps`` (at least the last one)."""
    return min(int(total_steps), int(math.floor(float(average_from) * int(total_steps))) + 1)


class TailAverage:
    """Uniform running mean of a list of tensors (stochastic weight averaging, Izmailov et al.
    2018): ``update`` after each step that counts, ``apply`` copies the mean into the tensors."""

    def __init__(self, params: Sequence[torch.Tensor]):
        self.params = list(params)
        self.mean = [p.detach().clone() for p in self.params]
        self.count = 0

    def update(self) -> None:
        self.count += 1
        with torch.no_grad():
            for m, p in zip(self.mean, self.params, strict=True):
                if self.count == 1:
                    m.copy_(p)
                else:
                    m.add_(p.detach() - m, alpha=1.0 / self.count)

    def apply(self) -> None:
        if not self.count:
            raise RuntimeError("TailAverage.apply before any update")
        with torch.no_grad():
            for m, p in zip(self.mean, self.params, strict=True):
                p.copy_(m)


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)


class Block(nn.Module):
    """Residual block that may down- or up-sample; returns the sum *before* the final ReLU.

    Kinds: ``basic`` (two 3x3 convs, ResNet18/34), ``bottleneck`` (1x1-3x3-1x1 at half the output
    width, WideResNet50), ``light`` (MobileNetV2's inverted residual: 1x1 expand, depthwise 3x3,
    1x1 project). ``down`` halves the resolution with a stride-2 conv; ``up`` > 1 multiplies it
    with a transposed conv (kernel = stride = up) as the authors' decoder does (``light`` uses a
    depthwise one). The linear output lets a stage match teachers with signed features.
    """

    def __init__(self, cin: int, cout: int, kind: str = "basic", down: bool = False, up: int = 1,
                 expand: int = 2):
        super().__init__()
        if kind not in KINDS:
            raise DataError(f"block kind must be one of {KINDS}, got {kind!r}")
        stride = 2 if down else 1
        if kind == "basic":
            first: nn.Module = (nn.ConvTranspose2d(cin, cout, up, stride=up, bias=False) if up > 1
                                else nn.Conv2d(cin, cout, 3, stride, 1, bias=False))
            self.body = nn.Sequential(first, _bn(cout), nn.ReLU(inplace=True),
                                      nn.Conv2d(cout, cout, 3, padding=1, bias=False), _bn(cout))
        elif kind == "bottleneck":
            mid = max(1, cout // 2)
            middle: nn.Module = (nn.ConvTranspose2d(mid, mid, up, stride=up, bias=False) if up > 1
                                 else nn.Conv2d(mid, mid, 3, stride, 1, bias=False))
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), _bn(mid), nn.ReLU(inplace=True),
                middle, _bn(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, cout, 1, bias=False), _bn(cout))
        else:
            mid = max(1, expand * cout)
            spatial: list[nn.Module] = [nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)]
            if up > 1:
                spatial.insert(0, nn.ConvTranspose2d(mid, mid, up, stride=up, groups=mid,
                                                     bias=False))
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), _bn(mid), nn.ReLU6(inplace=True),
                *spatial, _bn(mid), nn.ReLU6(inplace=True),
                nn.Conv2d(mid, cout, 1, bias=False), _bn(cout))
        if up > 1 and kind == "light":  # 1x1 at the low resolution, then nearest (4x cheaper)
            self.short: nn.Module = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _bn(cout),
                                                  nn.Upsample(scale_factor=up, mode="nearest"))
        elif up > 1:
            self.short = nn.Sequential(
                nn.ConvTranspose2d(cin, cout, up, stride=up, bias=False), _bn(cout))
        elif cin != cout or down:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))
        else:
            self.short = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.short(x)


class Stage(nn.Module):
    """Residual blocks in a row; the first one resamples. Returns the last block's linear output."""

    def __init__(self, cin: int, cout: int, n_blocks: int, kind: str, down: bool = False,
                 up: int = 1, expand: int = 2):
        super().__init__()
        blocks = [Block(cin, cout, kind, down=down, up=up, expand=expand)]
        blocks += [Block(cout, cout, kind, expand=expand) for _ in range(max(1, n_blocks) - 1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, blk in enumerate(self.blocks):
            x = blk(F.relu(x) if i else x)
        return x


def _down_conv(cin: int, cout: int, kind: str) -> nn.Sequential:
    """Stride-2 3x3 conv + BN + ReLU (``light``: depthwise 3x3 then pointwise)."""
    if kind == "light":
        return nn.Sequential(nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False), _bn(cin),
                             nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False), _bn(cout),
                             nn.ReLU(inplace=True))
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), _bn(cout),
                         nn.ReLU(inplace=True))


class OCBE(nn.Module):
    """One-class bottleneck embedding: multi-scale fusion then one residual stage (stride 2).

    Stage ``i`` reaches the deepest resolution through strided 3x3 convs whose widths follow the
    teacher's (e.g. 64 -> 128 -> 256 for ResNet18); the concatenation is compressed by one
    residual stage to ``embed_dim`` channels at half the deepest resolution.
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int], embed_dim: int,
                 n_blocks: int, kind: str, expand: int = 2, fuse: bool = True):
        super().__init__()
        deep_c, deep_s = channels[-1], strides[-1]
        paths = []
        if not fuse:  # the ablation's "OCE" alone: the stage sees the deepest tap only
            channels, strides = channels[-1:], strides[-1:]
        for c, s in zip(channels[:-1], strides[:-1], strict=True):
            convs, cin = [], c
            for k in range(steps_between(s, deep_s)):
                at = s * 2 ** (k + 1)
                cout = channels[list(strides).index(at)] if at in strides else deep_c
                convs.append(_down_conv(cin, cout, kind))
                cin = cout
            paths.append(nn.Sequential(*convs))
        self.paths = nn.ModuleList(paths)
        self.stage = Stage(deep_c * len(channels), embed_dim, n_blocks, kind, down=True,
                           expand=expand)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        shallow = feats[:-1] if len(self.paths) else []
        parts = [p(f) for p, f in zip(self.paths, shallow, strict=True)] + [feats[-1]]
        return F.relu(self.stage(torch.cat(parts, dim=1)))


class Projection(nn.Module):
    """RD++'s projection of one teacher stage onto a same-shaped feature map: four 3x3 convs
    (``c -> c/2 -> c/4 -> c/2 -> c``), each followed by instance norm and leaky ReLU. (No conv
    bias: the instance norm right after it removes any constant.)"""

    def __init__(self, c: int):
        super().__init__()
        widths = [c, max(1, c // 2), max(1, c // 4), max(1, c // 2), c]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout),
                       nn.LeakyReLU(0.01)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def check_projection_taps(layers: Sequence[str], teachers: Sequence[torch.Tensor]) -> None:
    """A ``DataError`` when a tap has a single cell: the projection's instance norm has no
    spread to normalise over one cell (torch would fail later, naming no tap)."""
    for name, t in zip(layers, teachers, strict=True):
        if t.shape[-2] * t.shape[-1] < 2:
            raise DataError(f"projection=True needs taps of at least two cells, but tap {name!r} "
                            f"is {t.shape[-2]} x {t.shape[-1]} at this input size: use a larger "
                            f"size or a shallower last tap")


class TeacherEmbedding(nn.Module):
    """The ablation's "Pre": the embedding is the last teacher tap itself (the frozen teacher's
    next stage after the distilled ones), so nothing between teacher and decoder is trained."""

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return feats[-1]


class Decoder(nn.Module):
    """Student: upsampling residual stages from the embedding back to every tapped stage."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int], embed_dim: int,
                 n_blocks: Sequence[int], kinds: Sequence[str], expand: int = 2,
                 out_channels: Sequence[int] | None = None):
        super().__init__()
        stages, cin, s_in = [], embed_dim, strides[-1] * 2
        # deep -> shallow
        for j, (c, s) in enumerate(zip(reversed(channels), reversed(strides), strict=True)):
            up = 2 ** steps_between(s, s_in)
            stages.append(Stage(cin, c, n_blocks[j], kinds[j], up=up, expand=expand))
            cin, s_in = c, s
        self.stages = nn.ModuleList(stages)
        #: per stage (deep -> shallow) a 1x1 conv to ``out_channels`` when the student rebuilds
        #: wider targets than the stage's own width (``expanded_targets``); ``None``: the
        #: stages' outputs are the rebuilds (the paper's decoder, every older file)
        self.outputs = (nn.ModuleList(nn.Conv2d(c, t, 1) for c, t in
                                      zip(reversed(channels), reversed(out_channels), strict=True))
                        if out_channels is not None else None)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Student features, shallow -> deep (the teacher's order)."""
        outs = []
        x = z
        for i, st in enumerate(self.stages):
            x = st(F.relu(x) if i else x)
            outs.append(x if self.outputs is None else self.outputs[i](x))
        return outs[::-1]


class RD4ADHead(nn.Module):
    """Teacher features -> ``sum_stage (1 - cos(teacher, student) - offset) * scale`` map at
    the finest stage (offset 0 and scale 1: the paper's sum)."""

    def __init__(self, layers: Sequence[str], channels: Sequence[int], strides: Sequence[int],
                 embed_dim: int, ocbe_blocks: int, decoder_blocks: Sequence[int],
                 kinds: Sequence[str], expand: int = 2, embedding: str = "ocbe",
                 embed_layer: str | None = None, projection: bool = False,
                 target_layers: Sequence[str] | None = None,
                 target_channels: Sequence[int] | None = None):
        super().__init__()
        #: every teacher tap the head reads: the distilled stages, then (``embedding="teacher"``)
        #: the tap that is the embedding, then (``expanded_targets``) the taps the student
        #: rebuilds instead of the distilled stages themselves, one per stage
        self.layers = (list(layers) + ([embed_layer] if embed_layer else [])
                       + list(target_layers or []))
        #: how many of ``layers`` the bottleneck reads
        self.n_inputs = len(layers) + bool(embed_layer)
        #: how many stages the student rebuilds (the distilled stages)
        self.n_targets = len(layers)
        #: whether the rebuilt taps are separate from the bottleneck's (``expanded_targets``)
        self.separate_targets = bool(target_layers)
        if embedding == "teacher":
            self.ocbe: nn.Module = TeacherEmbedding()
        else:
            self.ocbe = OCBE(channels, strides, embed_dim, ocbe_blocks, kinds[0], expand,
                             fuse=embedding == "ocbe")
        self.decoder = Decoder(channels, strides, embed_dim, decoder_blocks, kinds, expand,
                               target_channels if target_layers else None)
        #: RD++'s multi-scale projection between teacher and bottleneck (``None``: the plain
        #: method); the student rebuilds the raw teacher stages from the projected ones
        self.projection = (nn.ModuleList(Projection(c) for c in channels) if projection
                           else None)
        #: per-epoch (mean loss, seconds) of the last fit, kept in the model file for the record
        self.register_buffer("history", torch.zeros(0, 2))
        #: each distilled stage's map enters the sum as ``(d - stage_offset) * stage_scale``:
        #: 0 and 1 (``stage_weights="equal"``, the paper's sum, and every older file) or the
        #: stage's mean and 1 / standard deviation over the training images (``"spread"``)
        self.register_buffer("stage_offset", torch.zeros(self.n_targets))
        self.register_buffer("stage_scale", torch.ones(self.n_targets))

    def student(self, teachers: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The student's rebuild of every teacher stage (shallow -> deep) from the embedding.

        In eval mode without gradients this runs a copy of the OCBE and decoder with every
        BatchNorm folded into its (transposed) conv: the same function with one memory pass
        fewer per conv (student alone at batch 1, 2 threads, median of 5 paired runs: 1.04x
        with ResNet18 basic blocks, 1.14x light; MobileNetV2 1.17x basic, 1.16x light). The
        copy is rebuilt when any parameter or buffer is replaced, re-pointed (``p.data = ...``)
        or changed in place (its version counter), so training, precise-BN and loading a state
        dict never leave it stale. A tracer (ONNX export) gets the module as defined: its
        parameters are graph values there, and ONNX Runtime fuses BatchNorm itself.
        """
        projected = self.project(self.inputs(teachers))
        if self.training or torch.is_grad_enabled() or torch.jit.is_tracing():
            return self.decode(projected)
        ocbe, decoder = self._folded_student()
        return decoder(ocbe(projected))

    def project(self, teachers: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The bottleneck's input: the teacher stages, through the projection when there is one."""
        if self.projection is None:
            return list(teachers)
        return [p(t) for p, t in zip(self.projection, teachers, strict=True)]

    def decode(self, projected: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Bottleneck then decoder on (projected) teacher stages, unfolded (for training)."""
        return self.decoder(self.ocbe(projected))

    def _folded_student(self) -> tuple[nn.Module, nn.Module]:
        tensors = [*self.ocbe.parameters(), *self.ocbe.buffers(), *self.decoder.parameters(),
                   *self.decoder.buffers()]
        # the tensors themselves (identity), their storage (``p.data = ...`` swaps it) and their
        # in-place version counter; inference tensors keep none (they change only in that mode)
        state = [(t.data_ptr(), -1 if t.is_inference() else t._version, t.dtype, t.device)
                 for t in tensors]
        cached = self.__dict__.get("_folded")  # a plain attribute: not a submodule, not saved
        if (cached is None or len(cached[0]) != len(tensors)
                or any(a is not b for a, b in zip(cached[0], tensors, strict=True))
                or cached[1] != state):
            with torch.no_grad():
                ocbe = fold_batchnorm(copy.deepcopy(self.ocbe).eval())
                decoder = fold_batchnorm(copy.deepcopy(self.decoder).eval())
            for p in [*ocbe.parameters(), *decoder.parameters()]:
                p.requires_grad_(False)
            cached = (tensors, state, ocbe, decoder)
            self.__dict__["_folded"] = cached
        return cached[2], cached[3]

    def inputs(self, teachers: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The taps the bottleneck reads (all but separate targets)."""
        return list(teachers[:self.n_inputs])

    def targets(self, teachers: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """What the student rebuilds, shallow -> deep: the distilled stages (all taps but an
        embedding tap), or their separate targets (``expanded_targets``)."""
        if self.separate_targets:
            return list(teachers[self.n_inputs:])
        return list(teachers[:self.n_targets])

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        teachers = [feats[k] for k in self.layers]
        return anomaly_map(self.targets(teachers), self.student(teachers), self.stage_offset,
                           self.stage_scale)


# --------------------------------------------------------------------------------------------
# the method (trainer)
# --------------------------------------------------------------------------------------------


#: Default training length in optimiser steps per category (batches of 16): the paper trains 200
#: epochs, about 2,800 steps for a 210-image category; 2,500 is what the former default of 60
#: epochs gave the largest shared set (magnetic_tile, 42 batches an epoch). Measured fits: 4.4-4.7
#: minutes per shared set on 2 CPU cores (section rd4ad). Chosen over 60 epochs on validation
#: data (sections selection-rd4ad-steps, -seed1), docs/rd4ad.md.
STEPS = 2500

#: With ``embedding="teacher"`` and no ``layers``: the default taps, then the next stage (the
#: frozen teacher's own compression of the deepest distilled tap, as the paper's "Pre").
TEACHER_EMBEDDING_TAP = "s32"


def expanded_name(tap: str) -> str:
    """The expanded tap of stride tap ``tap`` (``oddeye.backbones.Expansion``: s8 -> s8x)."""
    return f"{tap}x"


@register
class RD4AD(Method):
    """Reverse distillation: OCBE + student decoder trained with Adam on ``1 - cos``.

    ``loss``: ``pixel`` (mean per-pixel ``1 - cos``) or ``flat`` (authors' flattened map per
    sample). ``block``: ``auto`` uses basic blocks for a teacher whose deepest distilled tap has
    fewer than 512 channels and bottleneck blocks in every stage from there (WideResNet-sized,
    the authors' ``de_wide_resnet50_2``); ``uniform_blocks=False`` (files from before it) chose
    per stage, so a WideResNet50-2 student's 256-channel stage had basic blocks.
    ``cache_features``: ``auto`` computes the frozen teacher's
    features once when they fit in ``cache_mb``, else per batch every epoch. ``pseudo``: share of
    each batch whose *student input* comes from a pseudo-defective copy of the image while the
    target stays the clean teacher features (RD++'s idea of teaching the student not to rebuild
    anomalies; 0 = the plain method, the default). Training length: ``epochs`` when given, else
    ``steps`` optimiser steps per category rounded up to whole epochs (default 2500: about the
    paper's 200 epochs of a ~200-image category), so a small set trains as long as a large one
    and each category of a unified fit as long as it would alone: ``balance`` (default since the
    thirteenth session; it only acts on unified fits) draws each epoch's images with equal
    weight per category, with replacement, so every category does get about the same number of
    steps whatever its size (and precise BN averages the same mix); chosen on validation data,
    docs/rd4ad.md "Modes". Files from before it trained plain epochs. ``embedding``: what the
    student decodes from, for the paper's ablation (``EMBEDDINGS``; default ``ocbe``, the
    method; ``teacher`` taps the next stage too, ``s32`` after the default taps).
    ``projection``: RD++'s multi-scale projection layers between teacher and bottleneck, trained
    beside the student on a pseudo-defective copy of every image (default off: the plain
    method; docs/rd4ad.md "Projection layers"). ``stage_weights``: how the per-stage maps are
    summed (``STAGE_WEIGHTS``; ``equal`` is the paper's map, ``spread`` the default: each
    stage standardised on the training images first; files from before it sum plainly).
    ``average_from``: a share in [0, 1) of the fit's optimiser steps after which the trained
    weights are averaged, step by step, and the average is what the fit keeps (stochastic
    weight averaging; its BatchNorm statistics are recomputed by the precise-BN pass, which it
    therefore needs); None (default) keeps the last step's weights, as the paper does.
    ``expanded_targets``: the bottleneck reads the distilled taps as always, but the student
    rebuilds each tap's expansion (``s8`` -> ``s8x``: the next block's 1x1 expansion + ReLU6 of
    an inverted-residual teacher, 6x wider, non-negative like the paper's ResNet features)
    through one 1x1 conv after each decoder stage; ``layers`` then name both (the default
    ``s4 s8 s16 s4x s8x s16x``). Off by default (docs/rd4ad.md "Expanded targets").
    """

    name = "rd4ad"
    default_backbone = "mobilenet_v2"
    default_layers = ("s4", "s8", "s16")
    # files from before these existed trained on clean inputs only, for their `epochs` epochs
    # (and all of them decoded from the full OCBE, without a projection)
    legacy_defaults = {"pseudo": 0.0, "steps": None, "balance": False, "embedding": "ocbe",
                       "projection": False, "stage_weights": "equal", "average_from": None,
                       "expanded_targets": False, "uniform_blocks": False}

    def __init__(self, backbone: str | None = None, layers: Sequence[str] | None = None,
                 epochs: int | None = None, lr: float = 0.005,
                 betas: Sequence[float] = (0.5, 0.999),
                 train_batch: int = 16, loss: str = "pixel", embed_dim: int | None = None,
                 block: str = "auto", expand: int = 2, ocbe_blocks: int | None = None,
                 decoder_blocks: Sequence[int] | None = None,
                 cache_features: str | bool = "auto", cache_mb: int = 2048,
                 channels_last: bool = True, precise_bn: bool = True, pseudo: float = 0.0,
                 steps: int | None = STEPS, balance: bool = True, embedding: str = "ocbe",
                 projection: bool = False, stage_weights: str = "spread",
                 average_from: float | None = None, expanded_targets: bool = False,
                 uniform_blocks: bool = True, seed: int = 0):
        if embedding not in EMBEDDINGS:
            raise DataError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
        if isinstance(betas, str) or not isinstance(betas, Sequence) or len(betas) != 2:
            raise DataError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if decoder_blocks is not None and (isinstance(decoder_blocks, str)
                                           or not isinstance(decoder_blocks, Sequence)):
            raise DataError(f"decoder_blocks must be None or one block count per layer, got "
                            f"{decoder_blocks!r}")
        if embedding == "teacher" and not layers:  # the distilled taps, then the next stage
            layers = (*self.default_layers, TEACHER_EMBEDDING_TAP)
        if expanded_targets is True and not layers:  # the distilled taps, then their expansions
            layers = (*self.default_layers, *(expanded_name(t) for t in self.default_layers))
        super().__init__(backbone, layers)
        self.expanded_targets = expanded_targets
        self.embedding = embedding
        self.projection = projection
        self.stage_weights = stage_weights
        self.average_from = average_from
        self.epochs = epochs
        self.balance = balance
        self.steps = steps
        self.lr = lr
        self.betas = tuple(betas)
        self.train_batch = train_batch
        self.loss = loss
        self.embed_dim = embed_dim
        self.block = block
        self.uniform_blocks = uniform_blocks
        self.expand = expand
        self.ocbe_blocks = ocbe_blocks
        self.decoder_blocks = tuple(decoder_blocks) if decoder_blocks else None
        self.cache_features = cache_features
        self.cache_mb = cache_mb
        self.channels_last = channels_last
        self.precise_bn = precise_bn
        self.pseudo = pseudo
        self.seed = seed
        if loss not in LOSSES:
            raise DataError(f"loss must be one of {LOSSES}, got {loss!r}")
        if block not in BLOCKS:
            raise DataError(f"block must be one of {BLOCKS}, got {block!r}")
        check_number("epochs", epochs, low=1, integer=True, none_ok=True)
        check_number("train_batch", train_batch, low=1, integer=True)
        check_number("steps", steps, low=1, integer=True, none_ok=True)
        check_number("lr", lr, low=0, low_open=True)
        for i, beta in enumerate(self.betas):
            check_number(f"betas[{i}]", beta, low=0, high=1, high_open=True)
        check_number("embed_dim", embed_dim, low=0, integer=True, none_ok=True)  # 0: default
        check_number("expand", expand, low=1, integer=True)
        check_number("ocbe_blocks", ocbe_blocks, low=0, integer=True, none_ok=True)  # 0: default
        for i, n in enumerate(self.decoder_blocks or ()):
            check_number(f"decoder_blocks[{i}]", n, low=1, integer=True)
        if not (isinstance(cache_features, bool) or cache_features == "auto"):
            raise DataError(f"cache_features must be true, false or 'auto', got "
                            f"{cache_features!r}")
        check_number("cache_mb", cache_mb, low=0)
        check_flag("channels_last", channels_last)
        check_flag("precise_bn", precise_bn)
        check_number("seed", seed, low=0, integer=True)
        if epochs is None and steps is None:
            raise DataError("RD4AD needs a training length: set epochs or steps")
        if isinstance(pseudo, bool) or not isinstance(pseudo, int | float) or not 0 <= pseudo <= 1:
            raise DataError(f"pseudo must be a share in [0, 1], got {pseudo!r}")
        if not isinstance(balance, bool):
            raise DataError(f"balance must be true or false, got {balance!r}")
        if not isinstance(projection, bool):
            raise DataError(f"projection must be true or false, got {projection!r}")
        if stage_weights not in STAGE_WEIGHTS:
            raise DataError(f"stage_weights must be one of {STAGE_WEIGHTS}, got "
                            f"{stage_weights!r}")
        check_number("average_from", average_from, low=0, high=1, high_open=True,
                     none_ok=True)
        if average_from is not None and not precise_bn:
            raise DataError("average_from needs precise_bn=True: averaged weights need their "
                            "BatchNorm statistics recomputed")
        check_flag("expanded_targets", expanded_targets)
        check_flag("uniform_blocks", uniform_blocks)
        if expanded_targets and (projection or embedding == "teacher"):
            raise DataError("expanded_targets works with embedding='ocbe' or 'oce' and without "
                            "projection (their paths assume the rebuilt taps are the "
                            "bottleneck's)")
        if projection and embedding == "teacher":
            raise DataError("projection feeds a trained bottleneck; embedding='teacher' has "
                            "none (use embedding='ocbe' or 'oce')")

    # ---------------------------------------------------------------- architecture
    def _ordered(self, strides: dict[str, int]) -> list[str]:
        """Tapped layers from fine to coarse; duplicates or equal strides are an error."""
        layers = sorted(dict.fromkeys(self.layers), key=lambda k: strides[k])
        if self.expanded_targets:
            layers = [k for k in layers if k not in self._expanded_of(layers)]
        need = 3 if self.embedding == "teacher" else 2
        if len(layers) < need or len({strides[k] for k in layers}) != len(layers):
            raise DataError(f"RD4AD needs >= {need} layers of distinct strides"
                            + (" (embedding='teacher': the distilled ones and the embedding's)"
                               if need == 3 else "") + f", got {list(self.layers)}")
        if self.embedding == "teacher" and strides[layers[-1]] != 2 * strides[layers[-2]]:
            raise DataError(f"embedding='teacher' decodes from the deepest tap, which must have "
                            f"twice the stride of the deepest distilled one, got "
                            f"{ {k: strides[k] for k in layers} }")
        return layers

    def _expanded_of(self, layers: Sequence[str]) -> dict[str, str]:
        """{expanded tap: its stride tap} among ``layers`` (``expanded_name``)."""
        return {expanded_name(k): k for k in layers if expanded_name(k) in layers}

    def _targets(self, layers: Sequence[str]) -> list[str] | None:
        """With ``expanded_targets``: the expansion of every distilled tap (``layers``, ordered),
        which must be among the method's layers; else None."""
        if not self.expanded_targets:
            return None
        targets = [expanded_name(k) for k in layers]
        missing = [t for t in targets if t not in self.layers]
        if missing:
            raise DataError(f"expanded_targets needs every distilled tap's expansion among the "
                            f"layers: add {missing} (got {list(self.layers)})")
        return targets

    def build_head(self, channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
        check_layers(self.layers, channels)
        layers = self._ordered(strides)
        embed_layer = layers.pop() if self.embedding == "teacher" else None
        chans = [channels[k] for k in layers]
        strd = [strides[k] for k in layers]
        if self.block == "auto" and self.uniform_blocks:  # the teacher's kind, every stage
            kind = "bottleneck" if chans[-1] >= BOTTLENECK_FROM else "basic"
            kinds = [kind] * len(chans)
        elif self.block == "auto":  # files from before ``uniform_blocks``: per stage
            kinds = ["bottleneck" if c >= BOTTLENECK_FROM else "basic" for c in reversed(chans)]
        else:
            kinds = [self.block] * len(chans)
        deep_kind = kinds[0]
        defaults = (3, 4, 6, 3, 3) if deep_kind == "bottleneck" else (2,) * 5
        n_dec = list(self.decoder_blocks or defaults[:len(chans)])
        if len(n_dec) != len(chans):
            raise DataError(f"decoder_blocks needs one count per layer ({len(chans)}), got {n_dec}")
        n_ocbe = self.ocbe_blocks or (3 if deep_kind == "bottleneck" else 2)
        if embed_layer is not None:
            if self.embed_dim is not None and int(self.embed_dim) != channels[embed_layer]:
                raise DataError(f"embedding='teacher' takes its width from tap {embed_layer!r} "
                                f"({channels[embed_layer]} channels), got embed_dim="
                                f"{self.embed_dim}")
            embed = channels[embed_layer]
        else:
            embed = int(self.embed_dim or 2 * chans[-1])
        targets = self._targets(layers)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            head = RD4ADHead(layers, chans, strd, embed, n_ocbe, n_dec, kinds, int(self.expand),
                             self.embedding, embed_layer, self.projection, targets,
                             [channels[k] for k in targets] if targets else None)
        return head

    # ---------------------------------------------------------------- training
    @property
    def _memory_format(self) -> torch.memory_format:
        """NHWC while training when ``channels_last`` (faster on CPU), else plain NCHW."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def _use_cache(self, data: TrainSet) -> bool:
        if isinstance(self.cache_features, bool):
            return self.cache_features
        if self.cache_features != "auto":
            raise DataError(f"cache_features must be true, false or 'auto', got "
                            f"{self.cache_features!r}")
        with torch.inference_mode():
            probe = data.extractor(data.inputs(data.images[:1]))
        per_image = sum(v.numel() * v.element_size() for v in probe.values())
        return per_image * len(data) <= self.cache_mb * 2 ** 20

    def epochs_for(self, n_images: int, n_categories: int = 1) -> int:
        """Epochs a fit on ``n_images`` runs: ``epochs`` when set, else ``steps`` per category
        (a unified fit over K categories trains K x ``steps``, so each category gets the
        training it would get alone) rounded up to whole epochs."""
        if self.epochs is not None:
            return int(self.epochs)
        per_epoch = -(-int(n_images) // max(1, int(self.train_batch)))
        total = int(self.steps) * max(1, int(n_categories))
        return max(1, -(-total // max(1, per_epoch)))

    def _epochs(self, data: TrainSet) -> int:
        """``epochs_for`` of a training set: its images and its distinct categories."""
        return self.epochs_for(len(data), len(set(data.categories)) if data.categories else 1)

    def fit_head(self, head: nn.Module, data: TrainSet) -> None:
        assert isinstance(head, RD4ADHead)
        bar = tqdm(total=self._epochs(data), desc="rd4ad", unit="epoch",
                   disable=not data.progress, leave=False)
        history = []
        for loss, seconds in self.train_epochs(head, data):
            history.append([loss, seconds])
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update(1)
        bar.close()
        if self.precise_bn:
            t0 = time.perf_counter()
            self.recalibrate_bn(head, data)
            history[-1][1] += time.perf_counter() - t0
        head.history = torch.tensor(history, dtype=torch.float32, device=head.history.device)
        if self.stage_weights == "spread":
            self.fit_stage_weights(head, data)

    def fit_stage_weights(self, head: RD4ADHead, data: TrainSet) -> None:
        """Set each stage's offset and scale to its map's mean and 1 / standard deviation over
        the training images, under the final weights (one no-gradient pass; in-sample maps sit
        lower than those of unseen good images, but by a similar factor at every stage, which
        is what the weighting uses: docs/rd4ad.md "Stage weights")."""
        head.eval()
        order = torch.arange(len(data))
        with torch.inference_mode():
            batches = (stage_maps(head.targets(t), head.student(t))
                       for _, t in self._teacher_batches(head, data, order, self._use_cache(data)))
            mean, sd = stage_statistics(batches)
        floor = 1e-6 + 1e-3 * float(sd.max())  # a stage that never varies cannot blow up
        head.stage_offset = mean.to(head.stage_offset.device)
        head.stage_scale = (1.0 / sd.clamp_min(floor)).to(head.stage_scale.device)

    def head_from_state(self, channels: dict[str, int], strides: dict[str, int],
                        state: dict[str, torch.Tensor]) -> nn.Module:
        """As the base, plus: a file from before ``stage_weights`` sums the stages as they are."""
        if "stage_offset" not in state:
            n = len(self._ordered(strides)) - (self.embedding == "teacher")
            state = {**state, "stage_offset": torch.zeros(n), "stage_scale": torch.ones(n)}
        return super().head_from_state(channels, strides, state)

    def _teacher_batches(self, head: RD4ADHead, data: TrainSet, order: torch.Tensor,
                         cached: bool) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
        """(indices, teacher features) of ``order``, ``train_batch`` images at a time."""
        mem = self._memory_format
        bs = max(1, int(self.train_batch))
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            if cached:
                feats = data.all_features()  # computed once, then the same dict every call
                teachers = [feats[k][idx] for k in head.layers]
            else:
                with torch.no_grad():
                    feats = data.extractor(data.inputs(data.images[idx]))
                teachers = [feats[k] for k in head.layers]
            yield idx, [t.contiguous(memory_format=mem) for t in teachers]

    def student_inputs(self, head: RD4ADHead, data: TrainSet, idx: torch.Tensor,
                       teachers: list[torch.Tensor], rng: np.random.Generator | None,
                       ) -> list[torch.Tensor]:
        """What the student sees for a batch: ``teachers`` itself, or with ``pseudo > 0`` a copy
        whose rows of a random ``pseudo`` share are the teacher features of pseudo-defective
        versions of those images (new tensors; ``teachers``, the target, is left clean)."""
        if rng is None or not self.pseudo:
            return teachers
        pick = np.flatnonzero(rng.random(len(idx)) < float(self.pseudo))
        if not len(pick):
            return teachers
        rows = torch.as_tensor(pick, dtype=torch.long)
        bad = self.noisy_teachers(head, data, idx[rows], rng)
        rows = rows.to(data.device)
        return [t.index_copy(0, rows, b.to(t.dtype)).contiguous(memory_format=self._memory_format)
                for t, b in zip(teachers, bad, strict=True)]

    def noisy_teachers(self, head: RD4ADHead, data: TrainSet, idx: torch.Tensor,
                       rng: np.random.Generator) -> list[torch.Tensor]:
        """Teacher features of a pseudo-defective copy of every image in ``idx`` (one defect of a
        random kind each, ``oddeye.data.pseudo``): the noisy images of RD++'s projection loss,
        where the authors add simplex noise, and the defective rows of ``pseudo``."""
        donors = torch.as_tensor(rng.integers(len(data), size=len(idx)), dtype=torch.long)
        bad, _ = pseudo_batch(data.images[idx], data.images[donors], rng)  # on the CPU
        with torch.no_grad():
            feats = data.extractor(data.inputs(bad))
        return [feats[k].contiguous(memory_format=self._memory_format) for k in head.layers]

    def batch_loss(self, head: RD4ADHead, data: TrainSet, idx: torch.Tensor,
                   teachers: list[torch.Tensor], rng: np.random.Generator | None) -> torch.Tensor:
        """One batch's training loss: distillation, plus RD++'s projection loss (weight
        ``PROJ_WEIGHT``) when the head has projection layers; the student always rebuilds the
        clean image's raw teacher features."""
        inputs = self.student_inputs(head, data, idx, teachers, rng)
        if head.projection is None:
            return distillation_loss(head.targets(teachers), head.student(inputs), self.loss)
        assert rng is not None
        noisy = self.noisy_teachers(head, data, idx, rng)
        projected = head.project(inputs)
        clean = projected if inputs is teachers else head.project(teachers)
        distill = distillation_loss(head.targets(teachers), head.decode(projected), self.loss)
        return distill + PROJ_WEIGHT * projection_loss(noisy, head.project(noisy), clean)

    def train_epochs(self, head: RD4ADHead, data: TrainSet,
                     epochs: int | None = None) -> Iterator[tuple[float, float]]:
        """Train bottleneck + decoder (and projection); yields (mean loss, seconds) per epoch.

        The first epoch's seconds include computing the cached teacher features (once per fit).
        The head is in train mode while the generator runs and back in eval mode (contiguous
        memory) whenever it yields, so a caller may evaluate it between epochs. With
        ``average_from`` the last yield comes with the averaged weights (BatchNorm statistics
        still those of training: ``recalibrate_bn`` replaces them).
        """
        if len(data) == 0:
            raise DataError("RD4AD got no training images")
        mem = self._memory_format
        t_cache = time.perf_counter()
        cached = self._use_cache(data)
        if cached:
            data.all_features()
        t_cache = time.perf_counter() - t_cache  # one-time teacher cost, booked on epoch 1
        data.extractor.eval()
        proj = list(head.projection.parameters()) if head.projection is not None else []
        in_proj = {id(q) for q in proj}
        rest = [p for p in head.parameters() if id(p) not in in_proj]
        groups = [{"params": rest}] + ([{"params": proj, "lr": PROJ_LR}] if proj else [])
        opt = torch.optim.Adam(groups, lr=self.lr, betas=tuple(self.betas))
        gen = torch.Generator().manual_seed(self.seed)
        rng = (np.random.default_rng(self.seed) if self.pseudo or head.projection is not None
               else None)
        taps_checked = not proj
        n_epochs = int(epochs or self._epochs(data))
        per_epoch = -(-len(data) // max(1, int(self.train_batch)))
        average = TailAverage(head.parameters()) if self.average_from is not None else None
        first = (averaging_start(n_epochs * per_epoch, self.average_from)
                 if average is not None else 0)
        step = 0
        for epoch in range(n_epochs):
            head.to(memory_format=mem).train()
            t0 = time.perf_counter()
            total = 0.0
            order = self.epoch_order(data, gen)
            for idx, teachers in self._teacher_batches(head, data, order, cached):
                if not taps_checked:  # every batch of a fit has the same tap shapes
                    check_projection_taps(head.layers, teachers)
                    taps_checked = True
                loss = self.batch_loss(head, data, idx, teachers, rng)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if average is not None and step >= first:
                    average.update()
                total += float(loss.detach()) * teachers[0].shape[0]
            if average is not None and epoch == n_epochs - 1:
                average.apply()  # BatchNorm statistics: recalibrate_bn, after the last epoch
            seconds = time.perf_counter() - t0 + (t_cache if epoch == 0 else 0.0)
            head.to(memory_format=torch.contiguous_format).eval()
            yield total / len(data), seconds

    def epoch_order(self, data: TrainSet, gen: torch.Generator) -> torch.Tensor:
        """One epoch's image indices: a permutation, or with ``balance`` and several
        categories as many draws with replacement, each image weighted 1 / its category's size."""
        cats = list(data.categories or [])
        if not self.balance or len(set(cats)) < 2:
            return torch.randperm(len(data), generator=gen)
        counts = Counter(cats)
        weights = torch.tensor([1.0 / counts[c] for c in cats], dtype=torch.float64)
        return torch.multinomial(weights, len(data), replacement=True, generator=gen)

    def recalibrate_bn(self, head: RD4ADHead, data: TrainSet) -> None:
        """Replace BatchNorm running statistics by exact averages under the final weights.

        During training the running statistics are an exponential average over the last ~10
        steps, taken while Adam still moves the weights; one no-gradient pass over the training
        set with a cumulative average ("precise BN") makes eval mode match the final weights.
        """
        bns = [m for m in head.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        balanced = self.balance and len(set(data.categories or [])) > 1
        order = (self.epoch_order(data, torch.Generator().manual_seed(self.seed)) if balanced
                 else torch.arange(len(data)))
        mem = self._memory_format
        head.to(memory_format=mem).train()
        with torch.no_grad():
            for _, teachers in self._teacher_batches(head, data, order, self._use_cache(data)):
                head.student(teachers)
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        head.to(memory_format=torch.contiguous_format).eval()
