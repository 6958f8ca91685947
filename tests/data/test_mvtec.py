"""oddeye.data.mvtec: layout discovery, labels, mask matching and the errors for broken folders."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oddeye.data.mvtec import (
    CategoryData,
    Sample,
    find_categories,
    load_category,
    load_dataset,
    load_sample_mask,
)
from oddeye.errors import DataError
from oddeye.io.images import IMAGE_EXTENSIONS, read_image
from tests.conftest import shared_path

W, H = 12, 8


def _img(path: Path, size=(W, H), value=100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def _mask(path: Path, size=(W, H)) -> Path:
    m = np.zeros((size[1], size[0]), np.uint8)
    m[1:3, 2:5] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(m).save(path)
    return path


def make_category(root: Path, n_train=3, n_val=0, n_good=2, defects=None, masks=True) -> Path:
    """A tiny MVTec-layout category; ``defects`` maps a defect name to its number of images."""
    defects = {"crack": 2, "scratch": 1} if defects is None else defects
    for i in range(n_train):
        _img(root / "train" / "good" / f"{i:03d}.png")
    for i in range(n_val):
        _img(root / "validation" / "good" / f"{i:03d}.png")
    for i in range(n_good):
        _img(root / "test" / "good" / f"{i:03d}.png")
    for name, n in defects.items():
        for i in range(n):
            _img(root / "test" / name / f"{i:03d}.png", value=200)
            if masks:
                _mask(root / "ground_truth" / name / f"{i:03d}_mask.png")
    return root


def _load_quiet(root: Path, **kw) -> CategoryData:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning here would be a bug
        return load_category(root, **kw)


# ---------------------------------------------------------------- layout and labels


def test_single_category(tmp_path):
    root = make_category(tmp_path / "bottle", n_val=2)
    cat = _load_quiet(root)
    assert cat.name == "bottle" and cat.root == root
    assert len(cat.train) == 3 and len(cat.validation) == 2 and len(cat.test) == 5
    assert all(s.label == 0 and s.defect_type == "good" and s.mask_path is None
               for s in cat.train + cat.validation)
    good = [s for s in cat.test if s.label == 0]
    bad = [s for s in cat.test if s.label == 1]
    assert len(good) == 2 and len(bad) == 3
    assert {s.defect_type for s in bad} == {"crack", "scratch"}
    assert cat.defect_types == ["crack", "scratch"]
    assert all(s.mask_path is not None and s.mask_path.name == s.path.stem + "_mask.png"
               for s in bad)
    assert all(s.category == "bottle" for s in cat.train + cat.test)
    assert all(s.mask_path.parent.name == s.defect_type for s in bad)


def test_samples_are_frozen_and_sorted(tmp_path):
    cat = _load_quiet(make_category(tmp_path / "c", n_train=12))
    names = [s.path.name for s in cat.train]
    assert names == sorted(names)
    with pytest.raises(AttributeError):
        cat.train[0].label = 1  # type: ignore[misc]
    assert isinstance(cat.train[0], Sample)


def test_no_validation_and_no_test(tmp_path):
    root = make_category(tmp_path / "c", n_good=0, defects={})
    cat = _load_quiet(root)
    assert cat.validation == [] and cat.test == [] and cat.defect_types == []
    assert not (root / "test").exists()


def test_find_categories_root_is_category(tmp_path):
    root = make_category(tmp_path / "only")
    assert find_categories(root) == [root]
    cats = load_dataset(root)
    assert [c.name for c in cats] == ["only"]


def test_find_categories_several(tmp_path):
    for name in ["zip", "alpha", "mid"]:
        make_category(tmp_path / name)
    (tmp_path / "notes").mkdir()  # no train/: not a category
    (tmp_path / ".hidden").mkdir()
    make_category(tmp_path / ".hidden" / "x")
    assert [p.name for p in find_categories(tmp_path)] == ["alpha", "mid", "zip"]
    assert [c.name for c in load_dataset(tmp_path)] == ["alpha", "mid", "zip"]
    assert [c.name for c in load_dataset(tmp_path, ["zip", "alpha"])] == ["zip", "alpha"]
    assert [c.name for c in load_dataset(tmp_path, "mid")] == ["mid"]


def test_unknown_category_lists_available(tmp_path):
    for name in ["alpha", "beta"]:
        make_category(tmp_path / name)
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path, ["alpha", "gamma"])
    msg = str(err.value)
    assert "'gamma'" in msg and "alpha, beta" in msg


def test_no_category_explains_layout(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DataError, match="train/good"):
        find_categories(tmp_path)
    with pytest.raises(DataError, match="not found"):
        find_categories(tmp_path / "missing")


def test_empty_train_good_names_folder(tmp_path):
    root = make_category(tmp_path / "c", n_train=0)
    (root / "train" / "good").mkdir(parents=True)
    (root / "train" / "good" / "readme.txt").write_text("no images")
    with pytest.raises(DataError) as err:
        load_category(root)
    assert str(root / "train" / "good") in str(err.value)


def test_missing_train_good_names_folder(tmp_path):
    root = make_category(tmp_path / "c", n_train=0)
    (root / "train" / "bad").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        load_category(root)
    assert str(root / "train" / "good") in str(err.value)


def test_non_images_and_hidden_files_ignored(tmp_path):
    root = make_category(tmp_path / "c")
    (root / "train" / "good" / "Thumbs.db").write_bytes(b"x")
    (root / "train" / "good" / ".DS_Store").write_bytes(b"x")
    _img(root / "train" / "good" / "._000.png")
    assert len(_load_quiet(root).train) == 3


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("mask_name", ["{s}_mask.png", "{s}.png", "{s}_mask.bmp", "{s}.tif",
                                       "{s}_MASK.PNG", "{s}.JPG"])
def test_mask_name_alternatives(tmp_path, mask_name):
    root = make_category(tmp_path / "c", defects={"hole": 1}, masks=False)
    mask = _mask(root / "ground_truth" / "hole" / mask_name.format(s="000"))
    cat = _load_quiet(root)
    (bad,) = [s for s in cat.test if s.label == 1]
    assert bad.mask_path == mask
    assert load_sample_mask(bad, (H, W)).sum() == 6


def test_mask_preference_order(tmp_path):
    root = make_category(tmp_path / "c", defects={"hole": 1}, masks=False)
    gt = root / "ground_truth" / "hole"
    _mask(gt / "000.png")
    _mask(gt / "000_mask.jpg")
    preferred = _mask(gt / "000_mask.png")
    (bad,) = [s for s in _load_quiet(root).test if s.label == 1]
    assert bad.mask_path == preferred


def test_missing_masks_warn_once_per_category(tmp_path):
    root = make_category(tmp_path / "c", defects={"crack": 3, "dent": 2})
    (root / "ground_truth" / "crack" / "001_mask.png").unlink()
    (root / "ground_truth" / "crack" / "002_mask.png").unlink()
    (root / "ground_truth" / "dent" / "000_mask.png").unlink()
    with pytest.warns(UserWarning) as record:
        cat = load_category(root)
    assert len(record) == 1
    msg = str(record[0].message)
    assert "3 of 5" in msg and "'c'" in msg and "empty" in msg
    missing = [s for s in cat.test if s.label == 1 and s.mask_path is None]
    assert len(missing) == 3
    assert load_sample_mask(missing[0], (H, W)).tolist() == np.zeros((H, W), int).tolist()


def test_no_ground_truth_folder_warns(tmp_path):
    root = make_category(tmp_path / "c", masks=False)
    with pytest.warns(UserWarning, match="3 of 3"):
        load_category(root)


def test_load_sample_mask_values_and_shapes(tmp_path):
    cat = _load_quiet(make_category(tmp_path / "c"))
    good = next(s for s in cat.test if s.label == 0)
    bad = next(s for s in cat.test if s.label == 1)
    z = load_sample_mask(good, (H, W, 3))
    assert z.shape == (H, W) and z.dtype == np.uint8 and not z.any()
    m = load_sample_mask(bad, read_image(bad.path).shape)
    assert m.dtype == np.uint8 and set(np.unique(m).tolist()) == {0, 1} and m.sum() == 6


def test_mask_size_mismatch_names_both_files(tmp_path):
    root = make_category(tmp_path / "c", defects={"crack": 1}, masks=False)
    _mask(root / "ground_truth" / "crack" / "000_mask.png", size=(W + 1, H))
    bad = next(s for s in _load_quiet(root).test if s.label == 1)
    with pytest.raises(DataError) as err:
        load_sample_mask(bad, (H, W))
    msg = str(err.value)
    assert str(bad.path) in msg and str(bad.mask_path) in msg
    assert f"{W + 1}x{H}" in msg and f"{W}x{H}" in msg


# ---------------------------------------------------------------- the shared sets

SHARED = {  # counts measured on the shared copies (see docs/data.md)
    "mvtec3d_tire": {"train": 210, "validation": 29, "good": 25, "defect": 87},
    "magnetic_tile": {"train": 732, "validation": 0, "good": 220, "defect": 392},
    "deeppcb": {"train": 407, "validation": 0, "good": 79, "defect": 122},
}


def _count_images(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir()
               if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_set_loads(name):
    root = shared_path(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every defect image of the shared sets has its mask
        (cat,) = load_dataset(root)
    assert cat.name == name
    # counts agree with the folders on disk, and with the numbers documented in docs/data.md
    assert len(cat.train) == _count_images(root / "train" / "good") == SHARED[name]["train"]
    assert len(cat.validation) == _count_images(root / "validation" / "good")
    assert len(cat.validation) == SHARED[name]["validation"]
    on_disk = {p.name: _count_images(p) for p in (root / "test").iterdir() if p.is_dir()}
    in_data = {t: sum(s.defect_type == t for s in cat.test) for t in on_disk}
    assert in_data == on_disk
    assert on_disk.pop("good") == SHARED[name]["good"]
    assert sum(on_disk.values()) == SHARED[name]["defect"]
    assert cat.defect_types == sorted(on_disk)
    # every defect image has a mask of its own size (header only: no full decode)
    for s in cat.test:
        if s.label == 1:
            assert s.mask_path is not None
            with Image.open(s.path) as img, Image.open(s.mask_path) as mask:
                assert img.size == mask.size, (s.path, s.mask_path)
    # a few images and masks decode by the library's rules
    bad = [s for s in cat.test if s.label == 1]
    for s in (cat.train[0], cat.train[-1], cat.test[0], bad[0], bad[-1]):
        img = read_image(s.path)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        mask = load_sample_mask(s, img.shape)
        assert mask.shape == img.shape[:2]
        if s.label == 0:
            assert not mask.any()
    assert load_sample_mask(bad[0], read_image(bad[0].path).shape).any()
