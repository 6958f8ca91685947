"""Fixtures for backbone tests: an isolated weight search path (no user caches, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

import oddeye.backbones.weights as W


@pytest.fixture
def isolated_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every weight location at empty temp folders and make downloads fail loudly."""
    monkeypatch.delenv("ODDEYE_WEIGHTS", raising=False)
    monkeypatch.delenv("ODDEYE_OFFLINE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url: str, dest: Path) -> None:
        raise OSError(f"network unreachable (test) for {url}")

    monkeypatch.setattr(W, "DOWNLOADER", no_network)
    return tmp_path
