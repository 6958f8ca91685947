"""Exceptions raised by oddeye: each names the file or argument and what is wrong with it."""

from __future__ import annotations


class OddeyeError(Exception):
    """Base class of every error oddeye raises on purpose."""


class ImageReadError(OddeyeError, ValueError):
    """An image or mask file could not be decoded or has an unusable mode/shape."""


class DataError(OddeyeError, ValueError):
    """A dataset folder or array does not have the expected layout or content."""


class ModelFileError(OddeyeError, ValueError):
    """A model file is corrupt, truncated, from another format version, or not an oddeye file."""


class WeightsNotFoundError(OddeyeError, FileNotFoundError):
    """No pretrained weights could be found for a backbone; never replaced by random weights."""
