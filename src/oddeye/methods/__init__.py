"""Method registry: a name maps to a method class (timm-like); modules here self-register."""

from __future__ import annotations

import importlib
import pkgutil

from oddeye.errors import OddeyeError
from oddeye.methods.base import Method, TrainSet

_REGISTRY: dict[str, type[Method]] = {}
_LOADED = False

__all__ = ["Method", "TrainSet", "available_methods", "create_method", "get_method", "register"]


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _LOADED = True


def available_methods() -> list[str]:
    """Names of all registered methods."""
    _load_all()
    return sorted(_REGISTRY)


def get_method(name: str) -> type[Method]:
    """The method class registered under ``name``."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise OddeyeError(f"unknown method {name!r}; available: {known}") from None


def create_method(name: str, **params) -> Method:
    """Instantiate a registered method with hyper-parameters."""
    cls = get_method(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise OddeyeError(f"bad hyper-parameters for method {name!r}: {exc}") from None
