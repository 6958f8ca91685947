"""ResAD: residual matching, the flow's density, reference setting without training, save/load,
and scoring a class the model never trained on."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import oddeye
from oddeye.api import Detector
from oddeye.data.mvtec import load_dataset
from oddeye.errors import DataError
from oddeye.methods import TrainSet, available_methods, create_method
from oddeye.methods.flows import (
    ActNorm,
    ConditionalFlow,
    position_encoding,
    standard_normal_logprob,
)
from oddeye.methods.resad import (
    ResADHead,
    nearest_indices,
    occ_loss,
    position_labels,
    residual_map,
    split_sign,
    synthetic_defect,
)
from tests.modelfiles import older_file


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP hand-offs that dominate on a shared, loaded CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = dict(epochs=2, warmup_epochs=1, queries_per_class=6, train_shots=(2,), train_batch=4,
            flow_batch=1024, n_coupling=2)


# ------------------------------------------------------------------------- residual matching
def test_nearest_indices_match_brute_force_in_every_chunking():
    g = torch.Generator().manual_seed(0)
    q, bank = torch.randn(300, 7, generator=g), torch.randn(450, 7, generator=g)
    brute = torch.cdist(q.double(), bank.double()).argmin(dim=1)
    for q_block, m_block in ((1, 450), (7, 64), (128, 1), (4096, 4096)):  # tiles of all shapes
        assert torch.equal(nearest_indices(q, bank, q_block=q_block, m_block=m_block), brute)


def test_maps_larger_than_max_size_are_average_pooled_before_matching():
    head = ResADHead(["s4", "s8"], {"s4": 3, "s8": 5}, max_size=8)
    f4, f8 = torch.randn(2, 3, 16, 16), torch.randn(2, 5, 8, 8)
    out = head.prepare({"s4": f4, "s8": f8})
    torch.testing.assert_close(out["s4"], torch.nn.functional.avg_pool2d(f4, 2))
    assert out["s8"] is f8
    assert ResADHead(["s4"], {"s4": 3}, max_size=None).prepare({"s4": f4})["s4"] is f4


def test_residual_map_subtracts_nearest_reference_over_all_positions():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 5, 4, 3, generator=g)
    refs = torch.randn(3, 5, 4, 3, generator=g)  # 3 reference images
    bank = refs.permute(0, 2, 3, 1).reshape(-1, 5)
    res = residual_map(feats, bank)
    assert res.shape == feats.shape
    flat = feats.permute(0, 2, 3, 1).reshape(-1, 5)  # every position of both images
    dist = ((flat[:, None, :] - bank[None, :, :]) ** 2).sum(2)  # brute force, all pairs
    expected = (flat - bank[dist.argmin(1)]).view(2, 4, 3, 5).permute(0, 3, 1, 2)
    torch.testing.assert_close(res, expected)
    # a reference image is its own nearest neighbour everywhere: zero residual
    assert residual_map(refs[1:2], bank).abs().max() == 0


def test_matching_without_references_is_a_clear_error():
    with pytest.raises(DataError, match="set_references"):
        nearest_indices(torch.zeros(3, 2), torch.zeros(0, 2))


# ------------------------------------------------------------------------------ the flow
def test_identity_flow_gives_the_standard_normal_log_density():
    flow = ConditionalFlow(dim=6, cond_dim=8, n_coupling=4)  # fresh: zero last layers, ActNorm 0
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(2))
    cond = torch.randn(500, 8)
    analytic = -0.5 * (x**2).sum(1) - 3 * math.log(2 * math.pi)
    torch.testing.assert_close(flow.log_prob(x, cond), analytic)
    ref = torch.distributions.MultivariateNormal(torch.zeros(6), torch.eye(6)).log_prob(x)
    torch.testing.assert_close(standard_normal_logprob(x), ref)


def test_actnorm_initialisation_leaves_a_constant_dimension_at_scale_one():
    """A dimension constant in the initialising data had its scale set to 1 / (0 + 1e-6): every
    later input's value there came out a million times larger (found in a review)."""
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    x[:, 1] = 0.25
    an = ActNorm(3)
    an.init_from(x)
    assert float(an.log_scale[1]) == 0.0
    torch.testing.assert_close(an.log_scale[[0, 2]], -torch.log(x[:, [0, 2]].std(0) + 1e-6))
    z, _ = an(torch.tensor([[0.0, 0.26, 0.0]]))
    assert abs(float(z[0, 1]) - 0.01) < 1e-6


def test_actnorm_gives_the_exact_gaussian_density_of_its_data():
    mu, sigma = torch.tensor([1.5, -2.0, 0.0]), torch.tensor([0.5, 3.0, 1.0])
    an = ActNorm(3)
    with torch.no_grad():
        an.bias.copy_(-mu)
        an.log_scale.copy_(-torch.log(sigma))
    x = mu + sigma * torch.randn(200, 3, generator=torch.Generator().manual_seed(3))
    z, log_det = an(x)
    logp = standard_normal_logprob(z) + log_det
    ref = torch.distributions.Normal(mu, sigma).log_prob(x).sum(1)
    torch.testing.assert_close(logp.detach(), ref)


def test_flow_log_det_matches_the_jacobian_and_inverse_is_exact():
    torch.manual_seed(4)
    flow = ConditionalFlow(dim=5, cond_dim=4, n_coupling=3, hidden=16)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))  # a non-trivial flow
    x, c = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
    flow = flow.double()
    z, log_det = flow(x, c)
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda v, i=i: flow(v[None], c[i:i + 1])[0][0],
                                                 x[i])
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac)[1])
    torch.testing.assert_close(flow.inverse(z, c), x)


def test_fitted_flow_approaches_the_true_gaussian_log_likelihood():
    """Max likelihood on a correlated 2-D Gaussian: the mean log-likelihood nears the truth,
    which needs the couplings (a per-dimension Gaussian fit stays ~0.5 nats below)."""
    g = torch.Generator().manual_seed(5)
    mean, cov = torch.tensor([2.0, -1.0]), torch.tensor([[1.0, 0.8], [0.8, 1.0]]) * 0.25
    x = torch.randn(4000, 2, generator=g) @ torch.linalg.cholesky(cov).T + mean
    truth = float(torch.distributions.MultivariateNormal(mean, cov).log_prob(x).mean())
    torch.manual_seed(5)
    flow = ConditionalFlow(dim=2, cond_dim=0, n_coupling=2, hidden=32)
    with torch.no_grad():
        untrained = float(flow.log_prob(x).mean())
        flow.actnorm.init_from(x)
        diagonal = float(flow.log_prob(x).mean())  # ActNorm alone: independent Gaussians
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    for _ in range(150):
        loss = -flow.log_prob(x[torch.randint(0, 4000, (256,), generator=g)]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        fitted = float(flow.log_prob(x).mean())
    assert untrained < truth - 1.0 and diagonal < truth - 0.4
    assert abs(fitted - truth) < 0.05, (fitted, truth)


def test_flow_broadcasts_one_condition_row_per_position_over_images():
    torch.manual_seed(6)
    flow = ConditionalFlow(dim=4, cond_dim=8, n_coupling=2, hidden=16)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, cond = torch.randn(3, 10, 4), torch.randn(10, 8)  # 3 images x 10 positions
    rows = flow.log_prob(x.reshape(30, 4), cond.repeat(3, 1)).reshape(3, 10)
    torch.testing.assert_close(flow.log_prob(x, cond), rows)


def test_position_encoding_is_distinct_per_position():
    pe = position_encoding(16, 5, 7)
    assert pe.shape == (16, 5, 7)
    flat = pe.reshape(16, -1).T
    assert torch.cdist(flat, flat).add(torch.eye(35) * 10).min() > 1e-3
    with pytest.raises(ValueError, match="multiple of 4"):
        position_encoding(6, 2, 2)


# ------------------------------------------------------------------ losses and defects
def test_occ_loss_hypersphere_and_abnormal_invariance():
    inside = torch.full((4, 3), 0.1)  # soft norm < 0.4
    assert occ_loss(inside, torch.zeros(4, dtype=torch.long), inside) == 0
    outside = torch.full((4, 3), 5.0)
    assert occ_loss(outside, torch.zeros(4, dtype=torch.long), outside) > 0
    # anomalies kept equal to their residual cost nothing; moving them inside costs
    labels = torch.ones(4, dtype=torch.long)
    assert occ_loss(outside, labels, outside) == pytest.approx(0, abs=1e-6)
    assert occ_loss(inside, labels, outside) > 1
    assert occ_loss(outside, torch.full((4,), -1), inside) == 0  # ignored rows


def test_sign_split_target_is_reachable_by_a_relu_constraintor_and_lossless():
    r = torch.randn(2, 3, 4, 4)
    t = split_sign(r)
    assert t.shape == (2, 6, 4, 4) and bool((t >= 0).all())  # a ReLU output can equal it
    torch.testing.assert_close(t[:, :3] - t[:, 3:], r)  # and the sign is kept
    head = ResADHead(["s8"], {"s8": 3}, sign_split=True)
    assert head.constraintors["s8"].conv.out_channels == 6
    torch.testing.assert_close(head.invariance_target(r), t)
    plain = ResADHead(["s8"], {"s8": 3}, sign_split=False)
    assert plain.constraintors["s8"].conv.out_channels == 3
    assert plain.invariance_target(r) is r


def test_synthetic_defect_mask_is_exactly_the_changed_pixels():
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64, 3)) * 60 + 100).astype(np.uint8)
    src = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    for _ in range(10):
        bad, mask = synthetic_defect(img, src, rng)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1} and mask.sum() >= 12
        diff = np.abs(bad.astype(int) - img.astype(int)).mean(2)
        assert np.array_equal(diff >= 10, mask == 1)  # the mask is what visibly changed


def test_position_labels_normal_defect_and_ignored_cells():
    m = torch.zeros(1, 16, 16, dtype=torch.uint8)
    m[0, 0:4, 0:4] = 1  # fills cell (0, 0) of a 4x4 grid
    m[0, 12, 12] = 1  # 1/16 of cell (3, 3): too small to count as defect
    lab = position_labels(m, (4, 4))[0]
    assert lab[0, 0] == 1 and lab[3, 3] == -1
    assert lab[0, 1] == -1 and lab[1, 1] == -1  # neighbours of a defect are ignored
    assert lab[0, 3] == 0 and lab[3, 0] == 0


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_export_head_matches_and_keeps_every_query_when_traced_at_batch_one():
    """The traced graph must not freeze the query tiling of the example batch."""
    torch.manual_seed(7)
    ch = {"s4": 6, "s8": 8}
    head = ResADHead(["s4", "s8"], ch, n_coupling=2, hidden=16, max_size=16).eval()
    with torch.no_grad():
        for p in head.flows.parameters():
            p.add_(0.1 * torch.randn_like(p))

    def feats(n):
        return {"s4": torch.randn(n, 6, 32, 32), "s8": torch.randn(n, 8, 16, 16)}

    refs = head.prepare(feats(3))
    head.set_reference_features({k: v.permute(0, 2, 3, 1).reshape(-1, v.shape[1])
                                 for k, v in refs.items()})
    exp = head.for_export()

    class Wrap(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, a, b):
            return self.inner({"s4": a, "s8": b})

    with torch.no_grad():
        f1, f5 = feats(1), feats(5)  # 5 x 16 x 16 = 1280 queries > one tile of 1024
        torch.testing.assert_close(exp(f5), head(f5))
        traced = torch.jit.trace(Wrap(exp), (f1["s4"], f1["s8"]), check_trace=False)
        torch.testing.assert_close(traced(f5["s4"], f5["s8"]), head(f5))
    head.set_reference_features({k: torch.zeros(0, c) for k, c in ch.items()})
    with pytest.raises(DataError, match="set_references before exporting"):
        head.for_export()


# --------------------------------------------------------------------- the method end to end
@pytest.fixture(scope="module")
def data(synth_root):
    return {c.name: c for c in load_dataset(synth_root)}


@pytest.fixture(scope="module")
def trained(data):
    """ResAD trained on 'grid' only; 'disc' is the unseen class."""
    grid = data["grid"]
    det = Detector(method="resad", size=128, batch_size=8, holdout=0.0, **TINY)
    det.fit([s.path for s in grid.train], validation=[s.path for s in grid.test[:3]],
            categories=["grid"] * len(grid.train), progress=False)
    return det


def test_registered_with_references_and_three_stages():
    assert "resad" in available_methods()
    m = create_method("resad")
    assert m.needs_references and m.layers == ("s4", "s8", "s16")
    with pytest.raises(DataError, match="anomalies"):
        create_method("resad", anomalies="real")


def test_set_references_takes_no_optimisation_step(trained, data):
    det = trained
    head = det.model_.head
    before = {k: v.clone() for k, v in head.state_dict().items() if not k.startswith("ref")}
    refs = [s.path for s in data["disc"].train[:3]]
    det.set_references(refs)
    after = head.state_dict()
    for k, v in before.items():  # parameters and BatchNorm statistics untouched
        assert torch.equal(v, after[k]), k
    assert all(p.grad is None for p in head.parameters())
    assert not head.training
    n = head.n_references()
    assert n["s4"] == 3 * 32 * 32 and n["s8"] == 3 * 16 * 16 and n["s16"] == 3 * 8 * 8
    assert not any(t.requires_grad for k, t in after.items() if k.startswith("ref"))


def test_unseen_class_is_scored_from_references_alone(trained, data):
    det = trained
    disc = data["disc"]
    det.set_references([s.path for s in disc.train[:4]])
    pred = det.predict([s.path for s in disc.test])
    assert pred.maps.shape == (len(disc.test), 128, 128)
    assert np.all(np.isfinite(pred.scores))
    # a large painted defect on a good image of the new class raises its score and its map there
    from oddeye.io.images import read_image

    good = read_image(disc.test[0].path) if disc.test[0].label == 0 else read_image(
        [s for s in disc.test if s.label == 0][0].path)
    bad = good.copy()
    h, w = good.shape[:2]
    bad[h // 3: h // 2, w // 3: w // 2] = [255, 0, 255]
    p = det.predict([good, bad])
    assert p.scores[1] > p.scores[0]
    sl = (slice(128 // 3, 128 // 2), slice(128 // 3, 128 // 2))
    assert p.maps[1][sl].mean() > p.maps[1].mean()


def test_save_load_round_trip_after_set_references(trained, data, tmp_path):
    det = trained
    disc = data["disc"]
    path = det.save(tmp_path / "resad.oddeye")
    again = oddeye.load(path)
    assert again.needs_references and again.method == "resad"
    refs = [s.path for s in disc.train[:2]]
    det.set_references(refs)
    again.set_references(refs)
    paths = [s.path for s in disc.test[:4]]
    a, b = det.predict(paths), again.predict(paths)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.maps, b.maps)
    assert again.threshold_ == det.threshold_


def test_saved_model_with_empty_reference_buffers_loads(trained, data, tmp_path):
    det = trained
    head: ResADHead = det.model_.head
    kept = {k: getattr(head, f"ref_{k}") for k in head.layers}
    try:
        head.set_reference_features({k: v[:0] for k, v in kept.items()})
        path = det.save(tmp_path / "empty.oddeye")
    finally:
        head.set_reference_features(kept)
    again = oddeye.load(path)
    assert all(v == 0 for v in again.model_.head.n_references().values())
    with pytest.raises(DataError, match="set_references"):
        again.predict([s.path for s in data["disc"].test[:1]])
    refs = [s.path for s in data["disc"].train[:2]]
    again.set_references(refs)
    det.set_references(refs)
    p = [s.path for s in data["disc"].test[:2]]
    np.testing.assert_array_equal(again.predict(p).maps, det.predict(p).maps)


def test_cli_test_draws_and_records_reference_shots(trained, synth_root, tmp_path):
    from oddeye.cli import main

    model = trained.save(tmp_path / "m.oddeye")
    out = tmp_path / "r.json"
    assert main(["test", "--model", str(model), "--data", str(synth_root), "--category", "disc",
                 "--shots", "2", "--seed", "1", "--json", str(out), "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert res["references"]["shots"] == 2 and len(res["references"]["files"]["disc"]) == 2
    assert 0.0 <= res["image_auroc"] <= 1.0


def test_training_needs_two_images_per_class():
    m = create_method("resad", **TINY)
    from oddeye.backbones import FeatureExtractor
    from oddeye.preprocess import Normalize, PreprocessConfig

    fx = FeatureExtractor("mobilenet_v2", ["s4", "s8", "s16"])
    head = m.build_head(fx.channels, fx.strides)
    cfg = PreprocessConfig()
    data = TrainSet(images=torch.zeros(3, 3, 64, 64, dtype=torch.uint8), extractor=fx,
                    normalize=Normalize(cfg.mean, cfg.std), categories=["a", "a", "b"],
                    progress=False)
    with pytest.raises(DataError, match="'b' has 1 training image"):
        m.fit_head(head, data)


def test_model_file_from_before_sign_split_loads_as_plain_residuals(data, tmp_path):
    """Older files have no ``sign_split`` and computed plain residuals (``sign_split=False``)."""

    grid, disc = data["grid"], data["disc"]
    det = Detector(method="resad", size=128, batch_size=8, holdout=0.0, sign_split=False, **TINY)
    det.fit([s.path for s in grid.train], categories=["grid"] * len(grid.train), progress=False)
    old = oddeye.load(older_file(det.save(tmp_path / "new.oddeye"), tmp_path / "old.oddeye",
                                 drop=["method_params.sign_split"]))
    assert old.method_.sign_split is False
    refs, paths = [s.path for s in disc.train[:2]], [s.path for s in disc.test[:3]]
    det.set_references(refs)
    old.set_references(refs)
    np.testing.assert_array_equal(old.predict(paths).scores, det.predict(paths).scores)


def test_fit_leaves_the_callers_random_state_alone(data):
    """The fit seeds its own draws (``fork_rng``): a caller's torch RNG stream is not reset."""
    import torch

    grid = data["grid"]
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    Detector(method="resad", size=128, batch_size=8, holdout=0.0, **TINY).fit(
        [s.path for s in grid.train], categories=["grid"] * len(grid.train), progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_initial_weights_come_from_the_seed():
    """Two heads built with one seed are equal whatever the caller's RNG did in between."""
    import torch

    from oddeye.methods import create_method

    channels, strides = {"s4": 24, "s8": 32, "s16": 96}, {"s4": 4, "s8": 8, "s16": 16}
    method = create_method("resad", seed=5)
    a = method.build_head(channels, strides).state_dict()
    torch.rand(10)
    b = method.build_head(channels, strides).state_dict()
    c = create_method("resad", seed=6).build_head(channels, strides).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
