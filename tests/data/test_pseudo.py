"""Pseudo-anomalies: exact masks, nothing changed outside them, severity scales visibility."""

import numpy as np
import pytest
import torch

from oddeye.bench.selection_suite import validation_split
from oddeye.data.pseudo import KINDS, make_pseudo_anomaly, pseudo_batch

#: one PatchCore candidate that names its patch comparison (no ``-cosine`` in the section)
ONE = {"a": {"cosine": True}}


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    good = np.full((96, 128, 3), 120, np.uint8) + rng.integers(0, 10, (96, 128, 3), dtype=np.uint8)
    donor = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)  # other size: resized inside
    return good, donor


@pytest.mark.parametrize("kind", (*KINDS, "stain"))
def test_changes_only_inside_the_mask(kind):
    good, donor = _pair()
    bad, mask = make_pseudo_anomaly(good, donor, np.random.default_rng(1), kind)
    assert bad.shape == good.shape and bad.dtype == np.uint8
    assert mask.shape == good.shape[:2] and set(np.unique(mask)) <= {0, 1} and mask.any()
    outside = mask == 0
    assert np.array_equal(bad[outside], good[outside])
    assert np.abs(bad[mask == 1].astype(int) - good[mask == 1]).mean() > 5


@pytest.mark.parametrize("kind", (*KINDS, "stain"))
def test_lower_severity_is_less_visible(kind):
    good, donor = _pair()
    diffs = []
    for severity in (1.0, 0.3):
        bad, mask = make_pseudo_anomaly(good, donor, np.random.default_rng(2), kind, severity)
        diffs.append(np.abs(bad.astype(int) - good).sum(axis=2)[mask == 1].mean())
    assert diffs[1] < 0.6 * diffs[0]


@pytest.mark.parametrize("severity", [0, -0.5, 1.5])
def test_severity_out_of_range_is_refused(severity):
    good, donor = _pair()
    with pytest.raises(ValueError, match="severity"):
        make_pseudo_anomaly(good, donor, np.random.default_rng(0), "blob", severity)


def test_unknown_kind_is_refused():
    good, donor = _pair()
    with pytest.raises(ValueError, match="kind"):
        make_pseudo_anomaly(good, donor, np.random.default_rng(0), "smudge")


def test_pseudo_batch_marks_one_defect_per_image_in_channel_first_layout():
    rng = np.random.default_rng(3)
    imgs = torch.from_numpy(rng.integers(90, 110, (5, 3, 48, 64), dtype=np.uint8))
    donors = torch.from_numpy(rng.integers(0, 256, (5, 3, 48, 64), dtype=np.uint8))
    bad, masks = pseudo_batch(imgs, donors, np.random.default_rng(4))
    assert bad.shape == imgs.shape and bad.dtype == torch.uint8
    assert masks.shape == (5, 48, 64)
    for i in range(5):
        inside = masks[i].bool()
        assert inside.any()
        assert torch.equal(bad[i][:, ~inside], imgs[i][:, ~inside])
        assert not torch.equal(bad[i][:, inside], imgs[i][:, inside])
    again, _ = pseudo_batch(imgs, donors, np.random.default_rng(4))
    assert torch.equal(bad, again)  # the generator alone decides


def test_pseudo_batch_refuses_other_layouts():
    imgs = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        pseudo_batch(imgs.float(), imgs, np.random.default_rng(0))
    with pytest.raises(ValueError, match="donors"):
        pseudo_batch(imgs, imgs[:1], np.random.default_rng(0))


def _random_pngs(folder, n: int, seed: int) -> list[str]:
    """``n`` random 40 x 40 RGB images written to ``folder``; their paths."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_validation_split_keeps_fit_and_validation_apart(tmp_path):
    paths = _random_pngs(tmp_path, 20, seed=0)
    fit, images, labels, masks = validation_split(paths, 32, copies=2)
    assert len(fit) == 16  # 20 % held out, at least 4
    n_val = 4
    assert len(images) == n_val * 3 and labels.tolist().count(1) == n_val * 2
    assert masks.shape == (n_val * 3, 32, 32)
    assert all(masks[i].any() for i in np.flatnonzero(labels == 1))
    assert not masks[labels == 0].any()


def test_validation_split_without_a_cap_fits_on_every_image_not_validated_on(tmp_path):
    paths = _random_pngs(tmp_path, 30, seed=2)
    fit, images, labels, _ = validation_split(paths, 32, max_fit=None, copies=1)
    capped, *_ = validation_split(paths, 32, max_fit=10, copies=1)
    n_val = int((labels == 0).sum())
    assert len(fit) == 30 - n_val and len(capped) == 10 and set(capped) <= set(fit)
    later_fit, *_ = validation_split(paths[:20], 32, later=paths[20:], max_fit=None)
    assert later_fit and sorted(later_fit) == sorted(paths[:20])


def test_validation_split_from_a_later_acquisition(tmp_path):
    paths = _random_pngs(tmp_path, 40, seed=1)
    train, later = paths[:30], paths[30:]
    fit, images, labels, masks = validation_split(train, 32, later=later, max_fit=25)
    assert len(fit) == 25 and set(fit) <= set(train)  # fitting only on the first acquisition
    assert len(images) == 10 * 3 and labels.tolist().count(0) == 10  # every later image, good
    from oddeye.preprocess import load_resized

    goods = {im.tobytes() for im in load_resized(later, 32)}
    assert all(images[i].tobytes() in goods for i in np.flatnonzero(labels == 0))


def test_candidate_holdout_reaches_the_detector(tmp_path):
    """A candidate that needs held-out images (map_norm) says how many; without it the suite
    fits with no hold-out and map_norm refuses."""
    from oddeye.bench.selection_suite import score_candidate
    from oddeye.errors import DataError

    paths = _random_pngs(tmp_path, 34, seed=2)
    fit, images, labels, masks = validation_split(paths, 64, max_val=4)
    res = score_candidate("patchcore", {"map_norm": "position", "holdout": 0.4, "size": 64},
                          fit, images, labels, masks)
    assert 0 <= res["image_auroc"] <= 1
    with pytest.raises(DataError, match="holdout"):
        score_candidate("patchcore", {"map_norm": "position", "size": 64}, fit, images, labels,
                        masks)


def test_native_validation_keeps_each_image_size_and_candidates_resize(tmp_path):
    from PIL import Image

    from oddeye.bench.selection_suite import score_candidate

    paths = _random_pngs(tmp_path, 20, seed=3)
    rng = np.random.default_rng(3)
    for p in paths:  # non-square parts: the split must not resize them
        Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(p)
    fit, images, labels, masks = validation_split(paths, None, copies=1)
    assert isinstance(masks, list) and len(masks) == len(images) == 8
    assert {im.shape for im in images} == {(30, 50, 3)}
    assert all(m.shape == (30, 50) for m in masks)
    assert all(masks[i].any() for i in np.flatnonzero(labels == 1))
    for size in (32, 64):  # candidates of two input sizes score the same validation images
        res = score_candidate("patchcore", {"size": size}, fit, images, labels, masks)
        assert 0 <= res["pixel_auroc"] <= 1


def test_swap_copies_the_same_place_of_the_donor():
    good, donor = _pair()
    bad, mask = make_pseudo_anomaly(good, donor, np.random.default_rng(5), "swap")
    from PIL import Image

    aligned = np.asarray(Image.fromarray(donor).resize((128, 96), Image.BILINEAR))
    inside = mask == 1
    assert inside.mean() > 0.05  # a large region, not a spot
    assert np.array_equal(bad[inside], aligned[inside])  # replaced, not blended, not moved
    assert np.array_equal(bad[~inside], good[~inside])


def test_swap_severity_scales_only_the_region():
    good, donor = _pair()
    areas = []
    for severity in (1.0, 0.3):
        bad, mask = make_pseudo_anomaly(good, donor, np.random.default_rng(6), "swap", severity)
        areas.append(mask.sum())
    assert areas[1] < 0.6 * areas[0]


def test_farthest_donor_picks_the_other_finish():
    flat = [np.full((32, 32, 3), v, np.uint8) for v in (100, 104, 108)]
    streaks = np.full((32, 32, 3), 100, np.uint8)
    streaks[:, ::2] = 160  # vertical streaks: same kind of grey, another finish
    from oddeye.data.pseudo import farthest_donor

    far = farthest_donor([*flat, streaks])
    assert far[:3].tolist() == [3, 3, 3]
    assert far[3] != 3
    same = farthest_donor([flat[0]] * 3)
    assert all(same[i] != i for i in range(3))  # identical images: still another one
    with pytest.raises(ValueError, match="two"):
        farthest_donor(flat[:1])


def test_pseudo_validation_takes_kinds_in_turn_and_refuses_unknown_ones():
    from oddeye.data.pseudo import pseudo_validation

    rng = np.random.default_rng(7)
    goods = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(4)]
    images, labels, masks = pseudo_validation(goods, rng, copies=2, kinds=("blob", "swap"))
    assert len(images) == 12 and labels.tolist() == [0, 1, 1] * 4
    assert all(masks[i].any() for i in np.flatnonzero(labels == 1))
    for bad_kinds in ((), ("smudge",)):
        with pytest.raises(ValueError, match="kinds"):
            pseudo_validation(goods, rng, kinds=bad_kinds)


def test_validation_split_passes_the_kinds_on(tmp_path):
    paths = _random_pngs(tmp_path, 20, seed=4)
    _, _, labels, spots = validation_split(paths, 32, copies=1)
    _, _, _, swaps = validation_split(paths, 32, copies=1, kinds=("swap",))
    assert swaps[labels == 1].mean() > 2 * spots[labels == 1].mean()  # large regions


@pytest.mark.parametrize("kind", ("cutpaste", "blob"))
def test_inner_placement_keeps_off_the_border_and_anywhere_reaches_it(kind):
    """``inner`` (every selection run before the twelfth session) never puts a region in the
    outer tenth of the image, so it cannot show what a setting costs defects on the border;
    ``anywhere`` does, and with the same draws its defects are as large."""
    good, donor = _pair()
    band = np.ones(good.shape[:2], bool)
    band[10:-10, 13:-13] = False  # the outer ~10% of each side
    hits, sizes = {}, {}
    for placement in ("inner", "anywhere"):
        rng = np.random.default_rng(0)
        masks = [make_pseudo_anomaly(good, donor, rng, kind, placement=placement)[1]
                 for _ in range(60)]
        hits[placement] = np.mean([m[band].any() for m in masks])
        sizes[placement] = [int(m.sum()) for m in masks]
        assert all(s > 0 for s in sizes[placement])
    assert hits["inner"] == 0 and hits["anywhere"] > 0.3
    # the same radii, drawn elsewhere: clipped by the border, never larger (up to rasterisation)
    assert all(a <= 1.05 * i + 2 for a, i in zip(sizes["anywhere"], sizes["inner"], strict=True))
    assert np.mean(sizes["anywhere"]) < np.mean(sizes["inner"])
    with pytest.raises(ValueError, match="placement"):
        make_pseudo_anomaly(good, donor, np.random.default_rng(0), kind, placement="edge")


def test_placement_reaches_the_validation_split_and_names_the_section(tmp_path, monkeypatch):
    from oddeye.bench import selection_suite

    paths = []
    for i in range(12):
        p = tmp_path / f"{i}.png"
        from PIL import Image

        Image.fromarray(_pair(i)[0]).save(p)
        paths.append(p)
    _, _, labels, masks = validation_split(paths, 64, max_val=4, placement="anywhere")
    assert labels.sum() == 8 and all(m.any() for m, y in zip(masks, labels, strict=True) if y)
    seen = {}
    monkeypatch.setattr(selection_suite, "run", lambda **kw: seen.update(kw) or "")
    selection_suite.run_seeded("patchcore", "selection-x", ONE, 1, "anywhere")
    assert seen["section"] == "selection-x-anywhere-seed1" and seen["placement"] == "anywhere"
    selection_suite.run_seeded("patchcore", "selection-x", ONE, 0, "anywhere")
    assert seen["section"] == "selection-x-anywhere"
    assert seen["kinds"] is None  # the default kinds, named by no suffix


def test_other_kinds_reach_the_run_and_name_the_section(monkeypatch):
    """``--kinds``: the defaults plus ``stain`` append ``-stain``; any other list spells itself
    out; the seed's suffix stays last."""
    from oddeye.bench import selection_suite

    seen = {}
    monkeypatch.setattr(selection_suite, "run", lambda **kw: seen.update(kw) or "")
    args = selection_suite.seed_parser("x").parse_args(
        ["--seed", "1", "--kinds", "cutpaste", "blob", "scratch", "stain"])
    selection_suite.run_seeded("patchcore", "selection-x", ONE, args.seed, args.placement,
                               kinds=args.kinds)
    assert seen["section"] == "selection-x-stain-seed1"
    assert seen["kinds"] == ("cutpaste", "blob", "scratch", "stain")
    selection_suite.run_seeded("patchcore", "selection-x", ONE, 0, "anywhere",
                               kinds=["blob", "stain"])
    assert seen["section"] == "selection-x-anywhere-kinds-blob-stain"
    selection_suite.run_seeded("patchcore", "selection-x", ONE, 0, kinds=list(KINDS))
    assert seen["section"] == "selection-x"


def test_stain_is_a_large_irregular_region_inside_its_box():
    """``stain``: 6-20% of the image at full severity (a region, not a spot), kept inside the
    inner box widened by a tenth of each side unless placed anywhere, and irregular: more
    than one region or a ragged outline at least sometimes, never a filled box."""
    good, donor = _pair()
    h, w = good.shape[:2]
    outer = np.ones((h, w), bool)
    outer[int(0.1 * h):int(np.ceil(0.9 * h)), int(0.1 * w):int(np.ceil(0.9 * w))] = False
    rng = np.random.default_rng(0)
    masks = [make_pseudo_anomaly(good, donor, rng, "stain")[1] for _ in range(40)]
    areas = np.array([m.mean() for m in masks])
    assert areas.min() > 0.05 and areas.max() < 0.21
    assert not any(m[outer].any() for m in masks)
    from scipy.ndimage import label

    assert any(label(m)[1] > 1 for m in masks)
    # a filled axis-aligned rectangle would fill its bounding box
    def fill(m: np.ndarray) -> float:
        rows, cols = np.nonzero(m)
        return m.sum() / ((np.ptp(rows) + 1) * (np.ptp(cols) + 1))

    assert max(fill(m) for m in masks) < 0.95
    rng = np.random.default_rng(0)
    anywhere = [make_pseudo_anomaly(good, donor, rng, "stain", placement="anywhere")[1]
                for _ in range(40)]
    assert np.mean([m[outer].any() for m in anywhere]) > 0.3


def test_contrast_scales_the_texture_around_its_local_mean_inside_the_mask():
    """``contrast``: inside its mask the texture's amplitude changes (flattened or amplified)
    while its local mean and pattern stay; nothing outside the mask changes."""
    from scipy.ndimage import gaussian_filter

    yy, xx = np.mgrid[0:128, 0:128]
    texture = 128 + 40 * np.sin(xx / 2.0) * np.cos(yy / 3.0)
    good = np.repeat(texture[..., None], 3, axis=2).astype(np.uint8)
    _, donor = _pair()
    gains = []
    for seed in range(12):
        bad, mask = make_pseudo_anomaly(good, donor, np.random.default_rng(seed), "contrast")
        inside, outside = mask == 1, mask == 0
        assert 0.05 < inside.mean() < 0.21
        assert np.array_equal(bad[outside], good[outside])
        g, b = good[..., 0].astype(float), bad[..., 0].astype(float)
        core = inside & (gaussian_filter(inside.astype(float), 3) > 0.95)  # off the feathering
        if core.sum() < 100:
            continue
        local = gaussian_filter(g, 128 / 40)
        # the pattern stays (correlated), the local mean stays, the amplitude moves
        assert np.corrcoef(g[core] - local[core], b[core] - local[core])[0, 1] > 0.95
        assert abs(b[core].mean() - g[core].mean()) < 6
        gains.append(np.std(b[core] - local[core]) / np.std(g[core] - local[core]))
    assert len(gains) >= 6 and min(gains) < 0.7 and max(gains) > 1.4  # both directions occur
    assert not any(0.7 <= x <= 1.4 for x in gains)
