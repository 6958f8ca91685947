"""oddeye: anomaly detection for visual inspection."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(path):
    """Load a saved detector (``.oddeye`` file) ready to ``predict``."""
    from oddeye.api import Detector

    return Detector.load(path)
