"""Fixtures: tiny fitted models, shared by the export, serve and report tests (fitted once)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def surface_models(tmp_path_factory) -> Path:
    """Folder for the tiny models of tests/export/models.py."""
    return tmp_path_factory.mktemp("surface_models")


@pytest.fixture(scope="session")
def patchcore_file(synth_root, surface_models) -> Path:
    """A tiny PatchCore model file fitted on the synthetic grid class."""
    from tests.export.models import fitted_model

    return fitted_model("patchcore", synth_root, surface_models)
