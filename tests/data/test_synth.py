"""Tests of oddeye.data.synth: layout, exact masks, determinism, arguments and difficulty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oddeye.data import synth
from oddeye.data.synth import CLASSES, DEFECT_TYPES, generate, render_sample
from oddeye.errors import DataError


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_public_names():
    assert {"noise", "stripes", "grid", "wood", "disc"} <= set(CLASSES)
    assert len(set(CLASSES) - set(synth.TEXTURES)) >= 2  # at least two object classes
    assert DEFECT_TYPES == ("scratch", "spot", "hole", "crack", "stain")


def test_layout_counts_and_file_formats(tmp_path):
    out = generate(
        tmp_path / "ds",
        seed=3,
        classes=["noise", "nut"],
        n_train=3,
        n_test_good=2,
        n_test_defect=2,
        size=48,
    )
    assert out == tmp_path / "ds"
    assert sorted(p.name for p in out.iterdir()) == ["noise", "nut"]
    for cls in ("noise", "nut"):
        root = out / cls
        assert sorted(p.name for p in (root / "train" / "good").iterdir()) == [
            "000.png",
            "001.png",
            "002.png",
        ]
        assert sorted(p.name for p in (root / "test" / "good").iterdir()) == ["000.png", "001.png"]
        assert sorted(p.name for p in (root / "test").iterdir()) == sorted(("good",) + DEFECT_TYPES)
        assert sorted(p.name for p in (root / "ground_truth").iterdir()) == sorted(DEFECT_TYPES)
        source = (root / "SOURCE.txt").read_text()
        assert source.startswith("oddeye synthetic data") and "seed: 3" in source
        for img_path in sorted(root.glob("t*/*/*.png")):
            with Image.open(img_path) as im:
                assert (im.format, im.mode, im.size) == ("PNG", "RGB", (48, 48)), img_path
        for defect in DEFECT_TYPES:
            names = sorted(p.name for p in (root / "test" / defect).iterdir())
            assert names == ["000.png", "001.png"]
            for i in range(2):
                mask_path = root / "ground_truth" / defect / f"{i:03d}_mask.png"
                with Image.open(mask_path) as im:
                    assert (im.mode, im.size) == ("L", (48, 48))
                mask = _load(mask_path)
                assert set(np.unique(mask)) == {0, 255}, mask_path


def test_session_fixture_has_the_documented_shape(synth_root):
    for cls in ("grid", "disc"):
        assert len(list((synth_root / cls / "train" / "good").glob("*.png"))) == 16
        assert len(list((synth_root / cls / "test" / "good").glob("*.png"))) == 6
        for defect in DEFECT_TYPES:
            assert len(list((synth_root / cls / "test" / defect).glob("*.png"))) == 2
            assert _load(synth_root / cls / "ground_truth" / defect / "001_mask.png").shape == (
                128,
                128,
            )


@pytest.mark.parametrize("size", [32, 80])
@pytest.mark.parametrize("cls", CLASSES)
def test_mask_is_exactly_the_changed_pixels(cls, size):
    for defect in DEFECT_TYPES:
        normal, bad, mask = render_sample(cls, defect, 1, seed=5, size=size)
        assert normal.shape == bad.shape == (size, size, 3) and mask.shape == (size, size)
        assert normal.dtype == bad.dtype == mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 1}
        changed = (normal != bad).any(axis=-1)
        np.testing.assert_array_equal(mask.astype(bool), changed, err_msg=f"{cls}/{defect}")
        # visible but not absurd: a handful of pixels up to a few percent of the image
        assert 4 <= mask.sum() <= 0.08 * size * size, (cls, defect, int(mask.sum()))
        # on average the change is clearly visible, not a one-level nudge
        assert np.abs(bad.astype(int) - normal)[mask.astype(bool)].max(-1).mean() > 12, (
            cls,
            defect,
        )


def test_normal_image_of_a_defect_sample_is_the_good_render_path():
    normal, bad, mask = render_sample("wood", "train", 0, size=64)
    assert mask.sum() == 0 and (normal == bad).all()
    again, _, _ = render_sample("wood", "train", 0, size=64)
    np.testing.assert_array_equal(normal, again)


@pytest.mark.parametrize("cls", synth.OBJECTS)
def test_object_defects_sit_on_the_object(cls):
    size = 96
    for defect in DEFECT_TYPES:
        for index in range(3):
            key = synth._name_key(defect)
            scene_rng, _, _ = synth._streams(0, cls, key, index)
            region = synth._SCENES[cls](scene_rng, size).region
            _, _, mask = render_sample(cls, defect, index, seed=0, size=size)
            assert mask.any() and not (mask.astype(bool) & ~region).any(), (cls, defect, index)


@pytest.mark.parametrize("cls", CLASSES)
def test_normal_images_vary(cls):
    a = render_sample(cls, "train", 0, size=64)[0].astype(int)
    b = render_sample(cls, "train", 1, size=64)[0].astype(int)
    c = render_sample(cls, "test", 0, size=64)[0].astype(int)
    # far more than sensor noise (std <= 3 levels): phase, pose or lighting changed
    assert np.abs(a - b).mean() > 4 and np.abs(a - c).mean() > 4


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    kw = dict(classes=["stripes", "disc"], n_train=2, n_test_good=1, n_test_defect=1, size=40)
    one = _files(generate(tmp_path / "a", seed=11, **kw))
    two = _files(generate(tmp_path / "b", seed=11, **kw))
    three = _files(generate(tmp_path / "c", seed=12, **kw))
    assert one == two
    assert one.keys() == three.keys()
    pngs = [k for k in one if k.endswith(".png") and "ground_truth" not in k]
    assert all(one[k] != three[k] for k in pngs)


def test_subset_of_classes_and_defects_matches_the_full_set(tmp_path):
    kw = dict(seed=2, n_train=2, n_test_good=1, n_test_defect=2, size=40)
    full = _files(generate(tmp_path / "full", classes=["noise", "grid", "nut"], **kw))
    part = _files(generate(tmp_path / "part", classes=["nut"], defects=["hole", "crack"], **kw))
    for name, data in part.items():
        if name.endswith(".png"):
            assert full[name] == data, name
    assert {k for k in part if k.endswith(".png")} == {
        k
        for k in full
        if k.startswith("nut/")
        and k.endswith(".png")
        and not any(d in k for d in ("scratch", "spot", "stain"))
    }


def test_classes_and_defects_accept_comma_separated_strings(tmp_path):
    out = generate(
        tmp_path,
        classes="wood, disc",
        defects="spot",
        n_train=1,
        n_test_good=0,
        n_test_defect=1,
        size=32,
    )
    assert sorted(p.name for p in out.iterdir()) == ["disc", "wood"]
    assert sorted(p.name for p in (out / "wood" / "test").iterdir()) == ["good", "spot"]


def test_regenerating_replaces_own_output_and_refuses_foreign_folders(tmp_path):
    generate(tmp_path, classes=["grid"], n_train=5, n_test_good=1, n_test_defect=1, size=32)
    generate(tmp_path, classes=["grid"], n_train=2, n_test_good=1, n_test_defect=1, size=32)
    assert len(list((tmp_path / "grid" / "train" / "good").iterdir())) == 2
    foreign = tmp_path / "disc"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("not synthetic")
    with pytest.raises(DataError, match="not written by oddeye synth"):
        generate(tmp_path, classes=["disc"], n_train=1, size=32)
    assert (foreign / "mine.txt").read_text() == "not synthetic"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"classes": ["noise", "cheese"]}, ["classes", "'cheese'", "noise, stripes"]),
        ({"classes": []}, ["classes", "empty", "disc"]),
        ({"defects": ["dent"]}, ["defects", "'dent'", "scratch, spot, hole, crack, stain"]),
        ({"size": 31}, ["size", "32", "31"]),
        ({"size": 64.0}, ["size", "integer"]),
        ({"n_train": -1}, ["n_train", ">= 0"]),
        ({"n_test_good": -2}, ["n_test_good", ">= 0"]),
        ({"n_test_defect": -1}, ["n_test_defect", ">= 0"]),
        ({"seed": -5}, ["seed", ">= 0"]),
        ({"seed": True}, ["seed", "integer"]),
    ],
)
def test_bad_arguments_raise_data_error_naming_them(tmp_path, kwargs, words):
    with pytest.raises(DataError) as info:
        generate(tmp_path / "x", **kwargs)
    for word in words:
        assert word in str(info.value)
    assert not (tmp_path / "x").exists()


def test_render_sample_rejects_unknown_names():
    with pytest.raises(DataError, match="class_name.*valid names"):
        render_sample("cheese", "train", 0)
    with pytest.raises(DataError, match="split.*train, test, scratch"):
        render_sample("disc", "dent", 0)
    with pytest.raises(DataError, match="index"):
        render_sample("disc", "train", -1)


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic (ties get average ranks)."""
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    pos = labels.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def test_auroc_helper_matches_definition():
    labels = np.array([0, 0, 1, 1, 0, 1], bool)
    assert _auroc(np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9]), labels) == pytest.approx(8 / 9)
    assert _auroc(np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), labels) == 0.5


def test_trivial_zscore_detector_finds_defects_but_not_perfectly(tmp_path):
    """Per-pixel mean/std of train/good: clearly better than chance on texture defects, not perfect.

    Scores are pixel z-scores; the band guards both "undetectable" and "trivially separable".
    """
    root = generate(
        tmp_path, seed=0, classes=["noise"], n_train=24, n_test_good=4, n_test_defect=2, size=64
    )
    cls = root / "noise"
    train = np.stack([_load(p) for p in sorted((cls / "train" / "good").glob("*.png"))]).astype(
        float
    )
    mean, std = train.mean(0), train.std(0) + 1.0
    scores, labels = [], []
    for sub in sorted((cls / "test").iterdir()):
        for path in sorted(sub.glob("*.png")):
            z = (np.abs(_load(path) - mean) / std).max(-1)
            if sub.name == "good":
                mask = np.zeros(z.shape, bool)
            else:
                mask = _load(cls / "ground_truth" / sub.name / f"{path.stem}_mask.png") > 0
            scores.append(z.ravel())
            labels.append(mask.ravel())
    auroc = _auroc(np.concatenate(scores), np.concatenate(labels))
    assert 0.65 < auroc < 0.98, auroc


def test_zero_counts_give_empty_good_folders_and_no_defect_folders(tmp_path):
    out = generate(tmp_path, classes=["disc"], n_train=0, n_test_good=0, n_test_defect=0, size=32)
    (cls,) = list(out.iterdir())
    assert list((cls / "train" / "good").iterdir()) == []
    assert sorted(p.name for p in (cls / "test").iterdir()) == ["good"]
    assert not (cls / "ground_truth").exists()


def test_smaller_counts_are_a_prefix_of_larger_ones(tmp_path):
    kw = dict(seed=4, classes=["stripes"], defects=["spot"], size=32)
    big = _files(generate(tmp_path / "big", n_train=4, n_test_good=3, n_test_defect=3, **kw))
    small = _files(generate(tmp_path / "small", n_train=2, n_test_good=1, n_test_defect=2, **kw))
    pngs = [k for k in small if k.endswith(".png")]
    assert len(pngs) == 2 + 1 + 2 + 2
    assert all(small[k] == big[k] for k in pngs)


def test_same_arguments_keep_a_complete_copy_and_redo_an_incomplete_one(tmp_path):
    args = dict(classes=["grid"], n_train=3, n_test_good=1, n_test_defect=1, size=32)
    generate(tmp_path, **args)
    first = tmp_path / "grid" / "train" / "good" / "000.png"
    stamp = first.stat().st_mtime_ns
    generate(tmp_path, **args)  # complete and identical: kept, not rewritten
    assert first.stat().st_mtime_ns == stamp
    first.unlink()  # an interrupted or damaged copy is rendered again
    generate(tmp_path, **args)
    assert first.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folders


def test_concurrent_runs_into_one_folder_both_succeed(tmp_path):
    import threading

    args = dict(classes=["grid", "disc"], n_train=6, n_test_good=2, n_test_defect=1, size=32)
    errors = []

    def run():
        try:
            generate(tmp_path, **args)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ref = generate(tmp_path / "ref", **args)
    for name in ("grid", "disc"):
        got = sorted(p.relative_to(tmp_path / name) for p in (tmp_path / name).rglob("*"))
        want = sorted(p.relative_to(ref / name) for p in (ref / name).rglob("*"))
        assert got == want
        for rel in want:
            if (ref / name / rel).is_file():
                assert (tmp_path / name / rel).read_bytes() == (ref / name / rel).read_bytes()
