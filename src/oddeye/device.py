"""Which torch device a detector computes on: ``auto`` (CUDA when torch sees one), ``cpu``,
``cuda`` or ``cuda:N``.

Images are decoded, resized and kept as uint8 on the CPU; only batches travel to the device (as
uint8, a quarter of the float bytes), and results come back as CPU arrays. Model files always hold
CPU tensors, so a model trained on a GPU loads on a machine without one.
"""

from __future__ import annotations

import itertools
import os

import torch
from torch import nn

from oddeye.errors import DataError

DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"
#: Environment variable that says what ``auto`` means on this machine (e.g. ``cpu`` on a box
#: whose GPU is busy with other work); unset: CUDA when torch sees it.
AUTO_ENV = "ODDEYE_DEVICE"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device ``spec`` names; ``auto``/None picks ``$ODDEYE_DEVICE`` when set, else
    CUDA when available, else the CPU.

    Asking for CUDA where torch sees none is an error naming what this torch build can do, never
    a silent fallback to the CPU (an RD4AD epoch took 32x longer on 2 CPU threads than on an
    H100: that should not come as a surprise).
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        chosen = os.environ.get(AUTO_ENV, "").strip()
        if chosen and chosen.lower() != "auto":
            try:
                return resolve_device(chosen)
            except DataError as exc:
                raise DataError(f"${AUTO_ENV}={chosen!r}: {exc}") from None
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec.strip().lower() if isinstance(spec, str) else spec)
    except (RuntimeError, TypeError, ValueError):
        raise DataError(f"device must be {DEVICE_CHOICES}, got {spec!r}") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise DataError(f"device {spec!r} is not supported: use {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise DataError(f"device {spec!r} asked for, but this torch ({torch.__version__}) sees no "
                        "CUDA device: use device='cpu' (or 'auto' to take a GPU only when present)")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DataError(f"device {spec!r} asked for, but torch sees {torch.cuda.device_count()} "
                        "CUDA device(s)")
    return dev


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for a module without any)."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        return t.device
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (timing GPU work needs it; a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
