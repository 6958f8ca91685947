"""The method contract: every method is a plain torch head plus a small trainer.

A method class (the trainer) holds hyper-parameters only (scikit-learn style). ``build_head`` makes
the ``nn.Module`` that maps backbone features to a raw anomaly map ``(N, h, w)`` (higher = more
anomalous); ``fit_head`` trains or fills it from good images. The head is what is saved, exported
and served; everything around it (decode, resize, normalise, backbone, post-process) is shared.
"""

from __future__ import annotations

import inspect
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from oddeye.device import module_device
from oddeye.errors import DataError


@dataclass
class TrainSet:
    """Training images already resized (uint8 ``(N, 3, S, S)``) and the frozen feature extractor.

    ``labels``/``masks`` are only present for (semi-)supervised heads; ``categories`` names the
    class of every image for methods that use it (unified or class-generalising models). Images,
    labels and masks stay on the CPU; ``inputs`` moves a batch to the extractor's ``device``, so
    features (and whatever a method computes from them) live there.
    """

    images: torch.Tensor
    extractor: nn.Module
    normalize: nn.Module
    batch_size: int = 4
    categories: list[str] | None = None
    labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    progress: bool = True
    _cache: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self) -> torch.device:
        """Where the extractor runs, and so where features and the head's training live."""
        return module_device(self.extractor)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float model input on ``device`` from uint8 ``(n, 3, S, S)`` CPU images."""
        return self.normalize(images.to(self.device))

    def iter_features(self, indices: Sequence[int] | None = None,
                      desc: str = "features") -> Iterator[dict[str, torch.Tensor]]:
        """Backbone features batch by batch (inference mode, no gradients)."""
        idx = list(range(len(self))) if indices is None else list(indices)
        bs = max(1, self.batch_size)
        bar = tqdm(total=len(idx), desc=desc, unit="img", disable=not self.progress, leave=False)
        with torch.inference_mode():
            for start in range(0, len(idx), bs):
                chunk = idx[start:start + bs]
                yield self.extractor(self.inputs(self.images[chunk]))
                bar.update(len(chunk))
        bar.close()

    def all_features(self) -> dict[str, torch.Tensor]:
        """All features concatenated and cached (for methods that make several passes)."""
        if self._cache is None:
            parts: dict[str, list[torch.Tensor]] = {}
            for feats in self.iter_features(desc="features"):
                for k, v in feats.items():
                    parts.setdefault(k, []).append(v.clone())
            self._cache = {k: torch.cat(v) for k, v in parts.items()}
        return self._cache


class Method(ABC):
    """Base class of every method (the trainer); subclasses register with ``@register``."""

    name: ClassVar[str] = ""
    default_backbone: ClassVar[str] = "mobilenet_v2"
    default_layers: ClassVar[tuple[str, ...]] = ("s8", "s16")
    #: Input frame in pixels when the Detector's ``pad`` is None (``FeatureExtractor(pad=...)``;
    #: rounded up to the deepest tap's stride): chosen per method on validation data.
    default_pad: ClassVar[int] = 0
    #: True when the method needs labelled anomalies (``TrainSet.labels``) to fit.
    needs_labels: ClassVar[bool] = False
    #: True when the head scores images against a few normal reference shots given at test time.
    needs_references: ClassVar[bool] = False
    #: Which map the image score reduces, as the method's paper defines it: "smoothed" (the
    #: upsampled, Gaussian-filtered map) or "raw" (the head's map at feature resolution).
    score_from: ClassVar[str] = "smoothed"
    #: False when the head cannot be traced to ONNX (the exporter then refuses with a clear error).
    exportable: ClassVar[bool] = True
    #: True when the method can run on several backbones fused at the map level
    #: (``backbone="a+b"``, ``oddeye.methods.fusion``): it fits on good images alone.
    fusable: ClassVar[bool] = False
    #: Parameters added after model files were already written, with the value that reproduces
    #: what those files computed: a file without them loads with that value (any other missing
    #: parameter is refused).
    legacy_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, backbone: str | None = None, layers: Sequence[str] | None = None):
        self.backbone = backbone or self.default_backbone
        self.layers = tuple(layers) if layers else tuple(self.default_layers)

    def check_params(self) -> None:
        """Check the hyper-parameters' values (a ``DataError`` naming the first bad one) without
        the backbone: ``Detector.fit`` and ``oddeye benchmark`` call it before any image is
        decoded, a model file's loader before it builds anything. Default: nothing to check
        beyond what the constructor did."""
        return None

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as a JSON-able dict (constructor arguments, scikit-learn style)."""
        params = {}
        for cls in type(self).__mro__:
            if cls is object or "__init__" not in cls.__dict__:
                continue
            for pname in inspect.signature(cls.__init__).parameters:
                if pname != "self" and pname not in params and hasattr(self, pname):
                    val = getattr(self, pname)
                    params[pname] = list(val) if isinstance(val, tuple) else val
        return params

    @abstractmethod
    def build_head(self, channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
        """An untrained head for features with these channels/strides."""

    @abstractmethod
    def fit_head(self, head: nn.Module, data: TrainSet) -> None:
        """Train or fill ``head`` from the training set (good images unless labels are given)."""

    def fit_choices(self, head: nn.Module) -> str:
        """One line on what the fit chose from the data itself (printed by ``oddeye train``);
        empty when it chose nothing."""
        return ""

    def set_references(self, head: nn.Module, refs: TrainSet) -> None:
        """Give a fitted head the normal reference images of a (new) class; no gradient step."""
        raise NotImplementedError(f"method {self.name!r} does not take reference images")

    def frame_head(self, head: nn.Module, strides: dict[str, int], pad: int) -> bool:
        """Whether ``head`` cuts a ``pad``-px input frame away itself, after its own
        neighbourhood aggregation (then told here how much, and handed the framed taps).
        Default: no; the extractor crops every tap back to the image's cells."""
        return False

    def head_from_state(self, channels: dict[str, int], strides: dict[str, int],
                        state: dict[str, torch.Tensor]) -> nn.Module:
        """Rebuild a fitted head from saved tensors (buffers are resized to the saved shapes)."""
        head = self.build_head(channels, strides)
        resize_buffers(head, state)
        head.load_state_dict(state, strict=True)
        return head.eval()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def resize_buffers(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give each buffer in ``state`` its saved shape, so variable-size state loads strictly."""
    for key, tensor in state.items():
        owner_name, _, attr = key.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        if attr in owner._buffers and owner._buffers[attr] is not None:
            buf = owner._buffers[attr]
            if buf.shape != tensor.shape or buf.dtype != tensor.dtype:
                owner._buffers[attr] = torch.empty_like(tensor)


def check_layers(layers: Sequence[str], channels: dict[str, int]) -> None:
    """Clear error when a method asks for a layer the backbone does not provide."""
    missing = [lay for lay in layers if lay not in channels]
    if missing:
        raise DataError(f"layers {missing} not provided by the backbone (has {sorted(channels)})")


def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False,
                 none_ok: bool = False) -> None:
    """A ``DataError`` naming ``name``, ``value`` and what is allowed unless ``value`` is a finite
    number (an integer when ``integer``; never a bool) within ``low``/``high`` (closed ends unless
    ``*_open``), or None when ``none_ok``: bad hyper-parameters fail before any image is decoded,
    not deep inside a fit."""
    if value is None and none_ok:
        return
    kind = numbers.Integral if integer else numbers.Real  # numpy scalars too, numpy bools not
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and not integer:
        ok = math.isfinite(float(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    what = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        what += (f" in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}"
                 f"{')' if high_open else ']'}")
    elif low is not None:
        what += f" {'>' if low_open else '>='} {_bound(low)}"
    elif high is not None:
        what += f" {'<' if high_open else '<='} {_bound(high)}"
    raise DataError(f"{name} must be {'None or ' if none_ok else ''}{what}, got {value!r}")


def check_flag(name: str, value: Any) -> None:
    """A ``DataError`` unless ``value`` is a bool: ``"false"`` would silently mean true."""
    if not isinstance(value, bool):
        raise DataError(f"{name} must be true or false, got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """A ``DataError`` naming the allowed values unless ``value`` is one of ``choices``."""
    if isinstance(value, bool) or value not in choices:
        raise DataError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def attach_frame(method: Method, extractor: nn.Module, head: nn.Module) -> None:
    """Decide who cuts the input frame away: the head (``method.frame_head``) or, by default,
    the extractor (each tap). Call after building a head and before running any image."""
    extractor.crop = not method.frame_head(head, extractor.strides, extractor.pad)
