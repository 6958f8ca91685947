"""The HTTP service's limits, importable without the optional ``serve`` dependencies, so the CLI
can show their defaults (``oddeye serve --help``) and every other command works without FastAPI."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    """Service limits; every one is a command-line option of ``oddeye serve``."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_files: int = 16
    max_pixels: int = 40_000_000
    max_pending: int = 8
    overlay_max_side: int = 1024
    batch_size: int = 4
