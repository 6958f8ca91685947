"""oddeye: anomaly detection for visual inspection."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(path, device="auto"):
    """Load a saved detector (``.oddeye`` file) onto ``device`` (``auto``: a GPU when there is
    one), ready to ``predict``."""
    from oddeye.api import Detector

    return Detector.load(path, device=device)
