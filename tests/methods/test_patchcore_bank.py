"""PatchCore's memory-bank size: a share of the patches, capped by default, bad values refused."""

from __future__ import annotations

import pytest
import torch

from oddeye.errors import DataError
from oddeye.methods import create_method
from oddeye.methods.patchcore import bank_size
from tests.methods.fakes import FeatureBatches


def test_bank_size_is_the_ratio_capped_at_max_bank():
    assert bank_size(200_000, 0.1, None) == 20_000
    assert bank_size(200_000, 0.1, 10_000) == 10_000
    assert bank_size(5_000, 0.1, 10_000) == 500
    assert bank_size(3, 0.01, None) == 1
    assert create_method("patchcore").max_bank == 10_000  # the documented default


@pytest.mark.parametrize(("ratio", "cap", "word"), [
    (0.0, None, "coreset_ratio"), (1.5, None, "coreset_ratio"), (0.1, 0, "max_bank"),
    (0.1, -5, "max_bank"), (0.1, 2.5, "max_bank"), (0.1, True, "max_bank")])
def test_bad_bank_parameters_are_clear_errors(ratio, cap, word):
    with pytest.raises(DataError, match=word):
        bank_size(100, ratio, cap)


def test_fitted_bank_respects_the_cap():
    g = torch.Generator().manual_seed(0)
    feats = [{"a": torch.randn(4, 8, 8, 8, generator=g), "b": torch.randn(4, 8, 4, 4, generator=g)}
             for _ in range(2)]  # 8 images x 64 patches = 512 patches
    for cap, want in ((None, 51), (20, 20)):
        m = create_method("patchcore", layers=["a", "b"], max_bank=cap, position=0)
        head = m.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})
        m.fit_head(head, FeatureBatches(feats))
        assert head.bank.shape == (want, 16)


def test_projected_distances_are_a_lower_bound_and_exact_for_the_full_basis():
    from oddeye.methods.patchcore import pca_basis, project_with_residual

    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 12, generator=g) * torch.linspace(3, 0.1, 12)  # decaying variances
    a, b = x[:250], x[250:]
    true = torch.cdist(a, b)
    for k in (2, 6):
        mean, basis = pca_basis(x, k)
        assert basis.shape == (12, k)
        assert torch.allclose(basis.T @ basis, torch.eye(k), atol=1e-5)  # orthonormal
        pa, pb = project_with_residual(a, mean, basis), project_with_residual(b, mean, basis)
        approx = torch.cdist(pa, pb)
        assert torch.all(approx <= true + 1e-4)
        # the residual coordinate keeps energy off the subspace: a point far along the least
        # varying axis stays far from the bulk although the first k coordinates ignore it
        odd = x[:1].clone()
        odd[0, -1] += 50.0
        d_odd = torch.cdist(project_with_residual(odd, mean, basis), pb).min()
        assert d_odd > 10.0
    mean, basis = pca_basis(x, 12)  # the full basis: nothing left out, distances exact
    pa, pb = project_with_residual(a, mean, basis), project_with_residual(b, mean, basis)
    assert torch.allclose(torch.cdist(pa, pb), true, atol=1e-3)


def test_search_dim_bank_lives_in_the_projected_space_and_round_trips():
    from oddeye.methods.base import resize_buffers

    g = torch.Generator().manual_seed(0)
    scale = torch.linspace(3, 0.05, 8)[None, :, None, None]  # most variance in few channels

    def batch(n: int) -> dict[str, torch.Tensor]:
        return {"a": torch.randn(n, 8, 8, 8, generator=g) * scale,
                "b": torch.randn(n, 8, 4, 4, generator=g) * scale}

    feats = [batch(4) for _ in range(2)]
    # the whole training set as bank (ratio 1), so both heads search the same patches
    m = create_method("patchcore", layers=["a", "b"], search_dim=8, coreset_ratio=1.0,
                      position=0)
    head = m.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})
    m.fit_head(head, FeatureBatches(feats))
    assert head.bank.shape == (512, 9) and head.proj_basis.shape == (16, 8)
    exact = create_method("patchcore", layers=["a", "b"], coreset_ratio=1.0, position=0)
    ehead = exact.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})
    exact.fit_head(ehead, FeatureBatches(feats))
    probe = batch(1)
    with torch.inference_mode():
        approx_map, exact_map = head.eval()(probe), ehead.eval()(probe)
    assert approx_map.shape == exact_map.shape == (1, 8, 8)
    assert torch.all(approx_map <= exact_map + 1e-4)  # a lower bound of the exact distance
    corr = torch.corrcoef(torch.stack([approx_map.flatten(), exact_map.flatten()]))[0, 1]
    assert corr > 0.8
    again = m.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})
    resize_buffers(again, head.state_dict())
    again.load_state_dict(head.state_dict(), strict=True)
    with torch.inference_mode():
        assert torch.equal(again.eval()(probe), approx_map)


@pytest.mark.parametrize("bad", [0, 16, 2.5, True])
def test_bad_search_dim_is_a_clear_error(bad):
    feats = [{"a": torch.randn(2, 8, 4, 4), "b": torch.randn(2, 8, 2, 2)}]
    m = create_method("patchcore", layers=["a", "b"], search_dim=bad, position=0)
    head = m.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})
    with pytest.raises(DataError, match="search_dim"):
        m.fit_head(head, FeatureBatches(feats))


def test_position_term_appends_the_scaled_cell_centres():
    from oddeye.methods.patchcore import with_position

    emb = torch.randn(2, 3, 4, 8)
    out = with_position(emb, 2.0)
    assert out.shape == (2, 5, 4, 8) and torch.equal(out[:, :3], emb)
    # rows then columns, cell centres as fractions of the map, times the weight
    assert torch.allclose(out[0, 3, :, 0], 2.0 * (torch.arange(4) + 0.5) / 4)
    assert torch.allclose(out[1, 4, 0, :], 2.0 * (torch.arange(8) + 0.5) / 8)
    # the same place on a finer map gets (nearly) the same coordinate: size-independent
    fine = with_position(torch.zeros(1, 1, 8, 16), 2.0)
    assert abs(float(fine[0, 1, 7, 0]) - float(out[0, 3, 3, 0])) < 2.0 / 8


def _square_at(corner: str, n: int = 1) -> dict[str, torch.Tensor]:
    """Features of a bright 2x2 block on a dark 8x8 map, in the given corner."""
    f = torch.zeros(n, 4, 8, 8)
    rows, cols = (slice(0, 2), slice(0, 2)) if corner == "top-left" else (slice(6, 8),
                                                                            slice(6, 8))
    f[:, :, rows, cols] = 1.0
    return {"a": f, "b": torch.nn.functional.avg_pool2d(f, 2)}


@pytest.mark.parametrize("position", [0.0, 1.0])
def test_position_term_scores_a_part_in_the_wrong_place(position):
    """Trained on a block always at the top left, the same block at the bottom right is normal
    for position-free PatchCore (every patch has a twin in the bank) and anomalous with the
    position term."""
    m = create_method("patchcore", layers=["a", "b"], kernel=1, coreset_ratio=1.0,
                      position=position)
    head = m.build_head({"a": 4, "b": 4}, {"a": 8, "b": 16})
    m.fit_head(head, FeatureBatches([_square_at("top-left", 2)]))
    assert head.bank.shape[1] == (10 if position else 8)
    with torch.inference_mode():
        good = head.eval()(_square_at("top-left")).max()
        moved = head(_square_at("bottom-right")).max()
    if position:
        assert good < 1e-3 and moved > 0.3
    else:
        assert good < 1e-3 and moved < 0.3


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "2", "Auto"])
def test_bad_position_is_a_clear_error(bad):
    m = create_method("patchcore", layers=["a", "b"], position=bad)
    with pytest.raises(DataError, match="position must be 'auto' or a finite number"):
        m.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})


def test_pick_position_needs_a_clear_win_over_no_position():
    from oddeye.methods.patchcore import pick_position

    table = torch.tensor([[0.0, 0.80, 0.90], [1.0, 0.82, 0.90], [3.0, 0.90, 0.85]])
    assert pick_position(table, margin=0.03) == 3.0  # 1.75 vs 1.70
    assert pick_position(table, margin=0.06) == 0.0  # not by more than the margin
    tie = torch.tensor([[0.0, 0.8, 0.9], [1.0, 0.8, 0.9]])
    assert pick_position(tie, margin=0.0) == 0.0


def _squares(n: int, seed: int = 0) -> list:
    """Grey images with a bright square always in the same place (an aligned part)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.normal(60, 10, (64, 64))
        img[4:28, 4:28] = rng.normal(200, 10, (24, 24))
        out.append(np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, 2))
    return out


def test_auto_position_chooses_on_held_out_images_and_travels_in_the_file(tmp_path):
    """``position="auto"`` (the default) scores each weight on pseudo-defects of held-out
    training images, keeps what ``pick_position`` says, and the file reloads it exactly."""
    import numpy as np

    import oddeye
    from oddeye.api import Detector
    from oddeye.methods.patchcore import AUTO_POSITIONS, pick_position

    images = _squares(44)
    det = Detector(method="patchcore", size=64).fit(images, progress=False)
    head = det.model_.head
    table = head.position_table
    assert table.shape == (len(AUTO_POSITIONS), 3)
    assert table[:, 0].tolist() == list(AUTO_POSITIONS)
    assert ((table[:, 1:] > 0.3) & (table[:, 1:] <= 1)).all()  # AUROCs, not placeholders
    assert float(head.position) == pick_position(table)
    assert head.bank.shape[1] == 130  # 128 features + the two position columns
    note = det.method_.fit_choices(head)  # what `oddeye train` prints
    assert note.startswith(f"position weight {float(head.position):g}, chosen on pseudo-defects")
    assert f"3: {float(table[2, 1]):.3f} / {float(table[2, 2]):.3f}" in note
    again = oddeye.load(det.save(tmp_path / "auto.oddeye"))
    assert float(again.model_.head.position) == float(head.position)
    assert torch.equal(again.model_.head.position_table, table)
    assert again.fit_choices_ == det.fit_choices_ == note  # the reloaded file says the same
    np.testing.assert_array_equal(again.predict(images[:4]).scores,
                                  det.predict(images[:4]).scores)


def test_auto_position_with_few_images_is_plain_patchcore():
    """Below ``AUTO_MIN_IMAGES`` nothing is held out: weight 0, and the bank is then the
    plain model's, row for row (the zero columns change no distance and no selection)."""
    from oddeye.api import Detector
    from oddeye.methods.patchcore import AUTO_MIN_IMAGES

    images = _squares(AUTO_MIN_IMAGES - 1)
    auto = Detector(method="patchcore", size=64).fit(images, progress=False)
    plain = Detector(method="patchcore", size=64, position=0.0).fit(images, progress=False)
    head = auto.model_.head
    assert float(head.position) == 0.0 and head.position_table.numel() == 0
    assert torch.equal(head.bank[:, :-2], plain.model_.head.bank)
    assert torch.equal(head.bank[:, -2:], torch.zeros_like(head.bank[:, -2:]))
    assert "fewer than" in auto.method_.fit_choices(head)
    assert plain.method_.fit_choices(plain.model_.head) == ""


def test_neighbour_image_distance_is_the_brute_force_two_step_search():
    """Each image's patches against every patch of its k nearest training images (by mean
    patch), exactly: the same as choosing the images and taking the minimum by brute force."""
    from oddeye.methods.patchcore import neighbour_image_distance

    g = torch.Generator().manual_seed(0)
    train = torch.randn(7, 12, 5, generator=g) + torch.arange(7.0)[:, None, None]
    queries = torch.randn(3, 9, 5, generator=g) + torch.tensor([0.0, 3.0, 6.0])[:, None, None]
    out = neighbour_image_distance(queries, train, (train * train).sum(2), train.mean(1), 2)
    for b in range(3):
        near = torch.cdist(queries[b].mean(0, keepdim=True), train.mean(1))[0].argsort()[:2]
        brute = torch.cdist(queries[b], train[near].reshape(-1, 5)).amin(1)
        torch.testing.assert_close(out[b], brute, atol=1e-4, rtol=1e-4)
    # more neighbours than images: every image is searched
    all_ = neighbour_image_distance(queries, train, (train * train).sum(2), train.mean(1), 50)
    torch.testing.assert_close(all_, torch.cdist(queries, train.reshape(1, -1, 5).expand(3, -1, -1)
                                                 ).amin(2), atol=1e-4, rtol=1e-4)


def _finish(kind: str, n: int = 1, patch: bool = False) -> dict[str, torch.Tensor]:
    """Features of a surface of one finish (``"u"`` or ``"v"``); ``patch``: a 2x2 region of the
    other finish, normal on other parts, in the middle."""
    u, v = torch.tensor([1.0, 0, 0, 0]), torch.tensor([0, 1.0, 0, 0])
    own, other = (u, v) if kind == "u" else (v, u)
    f = own[None, :, None, None].repeat(n, 1, 8, 8)
    if patch:
        f[:, :, 3:5, 3:5] = other[:, None, None]
    return {"a": f}


@pytest.mark.parametrize("neighbours", [0, 2])
def test_image_neighbours_see_a_region_that_is_normal_only_on_other_parts(neighbours):
    """Parts come in two finishes; a part of one finish with a region of the other has a twin
    for every patch in a pooled bank (plain PatchCore: normal) but not among the patches of the
    parts that look like it as a whole (``image_neighbours``: anomalous)."""
    m = create_method("patchcore", layers=["a"], kernel=1, coreset_ratio=1.0,
                      position=0.0, image_neighbours=neighbours)
    head = m.build_head({"a": 4}, {"a": 8})
    m.fit_head(head, FeatureBatches([_finish("u", 3), _finish("v", 3)]))
    if neighbours:
        assert head.image_patches.shape == (6, 64, 4) and head.bank.shape[0] == 0
    with torch.inference_mode():
        good = head.eval()(_finish("u")).max()
        mixed = head(_finish("u", patch=True))
    assert good < 1e-3
    if neighbours:
        assert mixed[0, 3:5, 3:5].min() > 0.3 and mixed[0, 0, 0] < 1e-3  # only the region
    else:
        assert mixed.max() < 1e-3


@pytest.mark.parametrize("bad", [-1, 1.5, True, "20"])
def test_bad_image_neighbours_is_a_clear_error(bad):
    m = create_method("patchcore", layers=["a", "b"], image_neighbours=bad)
    with pytest.raises(DataError, match="image_neighbours must be an integer"):
        m.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})
    both = create_method("patchcore", layers=["a", "b"], image_neighbours=3, search_dim=4)
    with pytest.raises(DataError, match="cannot be combined with search_dim"):
        both.build_head({"a": 8, "b": 8}, {"a": 8, "b": 16})


def test_image_neighbours_model_round_trips(tmp_path):
    import numpy as np

    import oddeye
    from oddeye.api import Detector

    images = _squares(12)
    det = Detector(method="patchcore", size=64, image_neighbours=4).fit(images, progress=False)
    again = oddeye.load(det.save(tmp_path / "nb.oddeye"))
    assert again.model_.head.image_neighbours == 4
    assert torch.equal(again.model_.head.image_patches, det.model_.head.image_patches)
    np.testing.assert_array_equal(again.predict(images[:3]).scores,
                                  det.predict(images[:3]).scores)


def test_auto_position_scores_its_held_out_images_on_the_models_grid(monkeypatch):
    """With ``grid="last"`` the held-out pseudo-defects of ``position="auto"`` are embedded on
    the s16 grid, as the bank they are searched against (another grid would still run, and
    choose the weight from mismatched patches)."""
    import inspect

    from oddeye.api import Detector
    from oddeye.methods import patchcore

    grids = []
    real = patchcore.aggregate

    def spy(*args, **kwargs):
        grids.append(inspect.signature(real).bind(*args, **kwargs).arguments.get("grid", "first"))
        return real(*args, **kwargs)

    monkeypatch.setattr(patchcore, "aggregate", spy)
    det = Detector(method="patchcore", size=64, grid="last").fit(_squares(44), progress=False)
    assert det.model_.head.position_table.numel() > 0  # the choice ran
    assert grids and set(grids) == {"last"}


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the loop over bank blocks
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")  # as ONNX export uses it
def test_nearest_distance_traced_at_one_batch_is_right_at_others():
    """Traced (as an ONNX export traces), the query-sized chunks froze at the tracing batch and
    a graph run on 13 queries after tracing on 10 was off by 0.6."""
    from oddeye.methods.neighbours import blockwise_distance, nearest_distance

    class Search(torch.nn.Module):
        def __init__(self, bank: torch.Tensor):
            super().__init__()
            self.register_buffer("bank", bank)
            self.register_buffer("bank_sq", (bank * bank).sum(1))

        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return nearest_distance(q, self.bank, self.bank_sq, max_elems=40)

    g = torch.Generator().manual_seed(0)
    search = Search(torch.randn(50, 4, generator=g))
    traced = torch.jit.trace(search, torch.randn(10, 4, generator=g), check_trace=False)
    for n in (1, 7, 13, 40):
        q = torch.randn(n, 4, generator=g)
        torch.testing.assert_close(traced(q), search(q), rtol=1e-5, atol=1e-5)
        brute = torch.cdist(q, search.bank).amin(1)
        torch.testing.assert_close(blockwise_distance(q, search.bank, search.bank_sq, 8), brute,
                                   rtol=1e-4, atol=1e-4)
