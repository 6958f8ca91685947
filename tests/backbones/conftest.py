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


def installed_weights(name: str) -> Path:
    """The weight file that backbone ``name``'s pip package ships; skips the test (with the
    package named) on a machine without it, e.g. the GPU machine, which gets files carried."""
    entry = W.weight_file(name)
    found = W.package_file(entry.module, entry.relpath) if entry.module and entry.relpath else None
    if found is None:
        pytest.skip(f"pip package {entry.package} is not installed here (`make install` "
                    f"installs it)")
    return found
