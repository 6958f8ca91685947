"""Shared fixtures: the project's own synthetic data, and ../shared/data when it is present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The suite's figures and parity checks are CPU ones; on a machine with a GPU, "auto" would move
# every fit there (TF32 convolutions, other sums). tests/test_device.py names its devices.
os.environ["ODDEYE_DEVICE"] = "cpu"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data set not present at {path} (only in the project's shared/ folder)")
    return path


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic MVTec-layout data set (two classes), generated once per session."""
    from oddeye.data.synth import generate

    out = tmp_path_factory.mktemp("synth")
    return generate(out, seed=0, classes=["grid", "disc"], n_train=16, n_test_good=6,
                    n_test_defect=2, size=128)


@pytest.fixture(scope="session")
def surface_models(tmp_path_factory) -> Path:
    """Folder for the tiny models of tests/export/models.py (export, serve and report tests)."""
    return tmp_path_factory.mktemp("surface_models")


@pytest.fixture(scope="session")
def patchcore_file(synth_root, surface_models) -> Path:
    """A tiny PatchCore model file fitted on the synthetic grid class, once per session."""
    from tests.export.models import fitted_model

    return fitted_model("patchcore", synth_root, surface_models)
