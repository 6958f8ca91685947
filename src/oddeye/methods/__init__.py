"""Method registry: a name maps to a method class (timm-like); modules here self-register."""

from __future__ import annotations

import importlib
import inspect
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


def method_param_names(cls: type[Method]) -> list[str]:
    """The hyper-parameters a method's constructor takes (its own and its bases')."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" in vars(klass) and klass is not object:
            for pname, par in inspect.signature(klass.__init__).parameters.items():
                if pname != "self" and par.kind not in (par.VAR_KEYWORD, par.VAR_POSITIONAL) \
                        and pname not in names:
                    names.append(pname)
    return names


def create_method(name: str, **params) -> Method:
    """Instantiate a registered method with hyper-parameters; an unknown name is refused
    listing the ones the method takes."""
    cls = get_method(name)
    known = method_param_names(cls)
    unknown = [k for k in params if k not in known]
    if unknown:
        raise OddeyeError(f"bad hyper-parameters for method {name!r}: it has no "
                          f"{', '.join(map(repr, unknown))} (it takes {', '.join(known)})")
    try:
        return cls(**params)
    except TypeError as exc:
        raise OddeyeError(f"bad hyper-parameters for method {name!r}: {exc}") from None
