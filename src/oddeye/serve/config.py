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
    #: all images of one request together: a small PNG can decode to 100 MB, so bytes and
    #: files alone do not bound a request's memory
    max_request_pixels: int = 100_000_000
    max_pending: int = 8
    #: seconds a request body may take to arrive (a trickled upload holds a connection)
    body_timeout_s: int = 60
    overlay_max_side: int = 1024
    batch_size: int = 4

    def __post_init__(self) -> None:
        """Refuse limits below 1 when the config is made (from Python too, not only the CLI):
        0 files, bytes or pending requests would give a server that refuses every request."""
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServeConfig.{name} must be an integer >= 1, got {value!r}")
