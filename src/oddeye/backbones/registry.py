"""Backbone registry: names -> constructors, and creation with pretrained weights."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from oddeye.errors import OddeyeError

from .base import Backbone

_BACKBONES: dict[str, Callable[[], Backbone]] = {}


class BackboneError(OddeyeError, ValueError):
    """An unknown backbone name or feature-tap name was asked for."""


def register_backbone(name: str) -> Callable[[Callable[[], Backbone]], Callable[[], Backbone]]:
    """Decorator registering a zero-argument constructor under ``name``."""

    def deco(factory: Callable[[], Backbone]) -> Callable[[], Backbone]:
        if name in _BACKBONES:
            raise BackboneError(f"backbone {name!r} is registered twice")
        _BACKBONES[name] = factory
        return factory

    return deco


def available_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`, sorted."""
    return sorted(_BACKBONES)


def build_backbone(name: str) -> Backbone:
    """A randomly initialised backbone called ``name`` (BackboneError listing the known ones)."""
    try:
        factory = _BACKBONES[name]
    except KeyError:
        raise BackboneError(f"unknown backbone {name!r}; available: "
                            f"{', '.join(available_backbones())}") from None
    return factory()


def create_backbone(name: str, weights: str | os.PathLike | None = "auto") -> Backbone:
    """Build backbone ``name`` in eval mode with its ImageNet weights loaded strictly.

    ``weights``: ``"auto"`` resolves the standard file (see ``resolve_weights``); a path or an
    http(s) URL loads that file; ``None`` keeps random initialisation, for timing or shape-only
    uses, and is never a silent fallback (missing weights raise WeightsNotFoundError).
    """
    from .weights import download_weights, load_weights, resolve_weights

    model = build_backbone(name)
    if weights is not None:
        if isinstance(weights, str) and weights == "auto":
            path = resolve_weights(name)
        elif isinstance(weights, str) and weights.startswith(("http://", "https://")):
            path = download_weights(weights)
        else:
            path = resolve_weights(name, Path(weights))
        load_weights(model, path)
    return model.eval()
