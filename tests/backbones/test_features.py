"""FeatureExtractor: tap shapes/strides, truncation, frozen eval mode, exact BatchNorm folding."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from oddeye.backbones import (
    STRIDE_TAPS,
    BackboneError,
    FeatureExtractor,
    count_batchnorm,
    create_backbone,
    fold_batchnorm,
)
from oddeye.backbones.registry import build_backbone

EXPECTED_CHANNELS = {
    "mobilenet_v2": (16, 24, 32, 96, 320),
    "efficientnet_lite0": (16, 24, 40, 112, 320),
    "resnet18": (64, 64, 128, 256, 512),
    "resnet50": (64, 256, 512, 1024, 2048),
    "wide_resnet50_2": (64, 256, 512, 1024, 2048),
}


@pytest.fixture(scope="module")
def image_batch() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(1, 3, 256, 256)


@pytest.fixture(scope="module", params=["mobilenet_v2", "efficientnet_lite0"])
def real_pair(request, image_batch):
    """(name, folded extractor, unfolded extractor, folded features, unfolded features)."""
    folded = FeatureExtractor(request.param, list(STRIDE_TAPS))
    plain = FeatureExtractor(request.param, list(STRIDE_TAPS), fold_bn=False)
    with torch.inference_mode():
        return request.param, folded, plain, folded(image_batch), plain(image_batch)


def test_all_taps_at_256_with_real_weights(real_pair) -> None:
    name, fx, _, feats, _ = real_pair
    assert list(feats) == list(STRIDE_TAPS)
    for tap, channels in zip(STRIDE_TAPS, EXPECTED_CHANNELS[name], strict=True):
        stride = int(tap[1:])
        assert fx.strides[tap] == stride and fx.channels[tap] == channels
        assert feats[tap].shape == (1, channels, 256 // stride, 256 // stride)
        assert torch.isfinite(feats[tap]).all()


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "wide_resnet50_2"])
def test_resnet_taps_and_layer_aliases_shapes(name: str) -> None:
    # built on the meta device: shapes only, no memory or initialisation cost
    with torch.device("meta"):
        fx = FeatureExtractor(name, ["s2", "layer1", "s8", "layer3", "layer4"], weights=None)
        feats = fx(torch.empty(1, 3, 256, 256))
    channels = EXPECTED_CHANNELS[name]
    want = {"s2": (channels[0], 128), "layer1": (channels[1], 64), "s8": (channels[2], 32),
            "layer3": (channels[3], 16), "layer4": (channels[4], 8)}
    for tap, (c, hw) in want.items():
        assert feats[tap].shape == (1, c, hw, hw)
        assert fx.channels[tap] == c and fx.strides[tap] == 256 // hw


def test_resnet18_real_forward_on_random_weights() -> None:
    fx = FeatureExtractor("resnet18", ["layer2", "s16"], weights=None)
    with torch.inference_mode():
        feats = fx(torch.randn(1, 3, 96, 128))
    assert feats["layer2"].shape == (1, 128, 12, 16) and feats["s16"].shape == (1, 256, 6, 8)


def test_truncated_after_deepest_requested_layer() -> None:
    fx = FeatureExtractor("mobilenet_v2", ["s4", "s8"])
    assert len(fx.stages) == 3  # s2, s4, s8 stages only
    n_params = sum(p.numel() for p in fx.parameters())
    assert n_params < 100_000  # the first 7 blocks (54 k); the full network has 3.5 M
    assert not any("classifier" in k for k in fx.state_dict())
    deep = FeatureExtractor("mobilenet_v2", ["s32"])
    assert len(deep.stages) == 5 and list(deep(torch.zeros(1, 3, 64, 64))) == ["s32"]


def test_frozen_and_always_eval() -> None:
    fx = FeatureExtractor("mobilenet_v2", ["s16"], fold_bn=False)
    assert all(not p.requires_grad for p in fx.parameters())
    fx.train()
    assert not fx.training and not any(m.training for m in fx.modules())
    bn = next(m for m in fx.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    fx(torch.randn(2, 3, 64, 64) * 5 + 3)  # training-mode BN would update its statistics
    assert torch.equal(bn.running_mean, before)


def test_folded_equals_unfolded(real_pair) -> None:
    _, folded, plain, a, b = real_pair
    assert count_batchnorm(folded) == 0 and count_batchnorm(plain) > 0
    for tap in a:
        rel = (a[tap] - b[tap]).abs().max() / b[tap].abs().max()
        assert rel < 2e-5, (tap, float(rel))


def test_fold_batchnorm_on_resnet_with_nontrivial_statistics() -> None:
    torch.manual_seed(0)
    net = build_backbone("resnet18").eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    folded = fold_batchnorm(copy.deepcopy(net))
    assert count_batchnorm(folded) == 0
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ref, out = net(x), folded(x)
    assert (out - ref).abs().max() / ref.abs().max() < 1e-5


def test_fold_batchnorm_generic_sequential() -> None:
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=True), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.BatchNorm2d(8))  # second BN follows no conv: left alone
    seq[1].running_mean.normal_()
    seq[1].running_var.uniform_(0.2, 3)
    seq.eval()
    x = torch.randn(1, 3, 8, 8)
    ref = seq(x)
    fold_batchnorm(seq)
    assert isinstance(seq[1], nn.Identity) and isinstance(seq[3], nn.BatchNorm2d)
    assert torch.allclose(seq(x), ref, atol=1e-5)


@pytest.mark.parametrize(("cin", "cout", "groups", "bias"), [
    (6, 4, 1, False), (6, 4, 1, True), (6, 6, 6, False), (6, 4, 2, False)])
def test_fold_batchnorm_into_transposed_conv(cin, cout, groups, bias) -> None:
    """Transposed convs store (in, out/groups, kh, kw): folding must scale the output channels."""
    torch.manual_seed(0)
    seq = nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, stride=2, groups=groups, bias=bias),
                        nn.BatchNorm2d(cout))
    seq[1].running_mean.normal_()
    seq[1].running_var.uniform_(0.2, 3)
    seq[1].weight.data.uniform_(0.5, 2)
    seq[1].bias.data.normal_()
    seq.eval()
    x = torch.randn(2, cin, 5, 5)
    ref = seq(x)
    fold_batchnorm(seq)
    assert isinstance(seq[1], nn.Identity)
    torch.testing.assert_close(seq(x), ref, atol=1e-5, rtol=1e-5)


def test_lite0_input_is_converted_from_imagenet_normalisation() -> None:
    fx = FeatureExtractor("efficientnet_lite0", ["s8"], fold_bn=False)
    net = create_backbone("efficientnet_lite0")
    torch.manual_seed(0)
    pixels = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        got = fx((pixels - mean) / std)["s8"]
        x = (pixels * 255 - 127) / 128  # what the TF-trained lite weights expect
        for stage in net.feature_stages()[:3]:
            x = stage.module(x)
    assert torch.allclose(got, x, atol=1e-4)


def test_bad_layer_names_and_input_are_rejected() -> None:
    with pytest.raises(BackboneError, match="unknown feature layer 'layer2'"):
        FeatureExtractor("mobilenet_v2", ["layer2"], weights=None)
    with pytest.raises(BackboneError, match="non-empty"):
        FeatureExtractor("mobilenet_v2", "s8", weights=None)
    fx = FeatureExtractor("mobilenet_v2", ["s2"], weights=None)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        fx(torch.zeros(1, 1, 32, 32))


def test_channels_last_matches_and_returns_plain_contiguous(real_pair, image_batch) -> None:
    name, _, _, feats, _ = real_pair
    nchw = FeatureExtractor(name, ["s8", "s32"], channels_last=False)
    with torch.inference_mode():
        ref = nchw(image_batch)
    for tap in ref:
        assert feats[tap].is_contiguous()  # callers may .view() them
        rel = (feats[tap] - ref[tap]).abs().max() / ref[tap].abs().max()
        assert rel < 2e-5, (tap, float(rel))


def test_feature_info_without_weights() -> None:
    from oddeye.backbones import feature_info

    info = feature_info("wide_resnet50_2")
    assert info["s2"] == (64, 2) and info["layer2"] == (512, 8) and info["s32"] == (2048, 32)
    assert feature_info("efficientnet_lite0")["s16"] == (112, 16)


def test_pad_frames_the_image_in_the_mean_colour_and_crops_the_taps(image_batch) -> None:
    framed = FeatureExtractor("mobilenet_v2", ["s8", "s16"], pad=16)
    plain = FeatureExtractor("mobilenet_v2", ["s8", "s16"])
    with torch.inference_mode():
        got = framed(image_batch)
        # zero after ImageNet normalisation is the mean colour: frame by hand, crop by hand
        ref = plain(torch.nn.functional.pad(image_batch, (16, 16, 16, 16)))
    for tap, stride in (("s8", 8), ("s16", 16)):
        c = 16 // stride
        assert got[tap].shape == (1, framed.channels[tap], 256 // stride, 256 // stride)
        torch.testing.assert_close(got[tap], ref[tap][..., c:-c, c:-c])
        assert got[tap].is_contiguous()
    with torch.inference_mode():
        unframed = plain(image_batch)
    # pretrained weights: the frame changes what the border cells see, not only the interior's
    assert (got["s8"][..., 0, :] - unframed["s8"][..., 0, :]).abs().max() > 1e-2


def test_uncropped_extractor_hands_on_the_framed_taps(image_batch) -> None:
    """``crop=False`` (a head that cuts the frame itself) returns the framed maps whole; the
    flag changes nothing but the crop."""
    framed = FeatureExtractor("mobilenet_v2", ["s8", "s16"], pad=16, crop=False)
    cropped = FeatureExtractor("mobilenet_v2", ["s8", "s16"], pad=16)
    with torch.inference_mode():
        whole, cut = framed(image_batch), cropped(image_batch)
    for tap, stride in (("s8", 8), ("s16", 16)):
        c = 16 // stride
        assert whole[tap].shape[-2:] == (288 // stride, 288 // stride)
        torch.testing.assert_close(whole[tap][..., c:-c, c:-c], cut[tap])


@pytest.mark.parametrize("pad", [8, -16, 2.0, True])
def test_pad_must_be_whole_pixels_divisible_by_every_stride(pad) -> None:
    with pytest.raises(BackboneError, match="pad must be"):
        FeatureExtractor("mobilenet_v2", ["s8", "s16"], weights=None, pad=pad)


# ------------------------------------------------------------------------- expanded taps
def _inner_expansions(name: str, net) -> dict:
    """Modules of ``net`` whose outputs are the expanded taps, and a post-op to apply."""
    relu6 = torch.nn.functional.relu6
    if name == "mobilenet_v2":
        f = net.features
        return {"s2x": (f[2].conv[0], None), "s4x": (f[4].conv[0], None),
                "s8x": (f[7].conv[0], None), "s16x": (f[14].conv[0], None),
                "s32x": (f[18], None)}
    ends = {f"s{stride}": i for i, _, stride in net._stage_ends}
    out = {f"{t}x": (net._blocks[ends[t] + 1]._bn0, relu6) for t in ("s2", "s4", "s8", "s16")}
    return {**out, "s32x": (net._bn1, relu6)}


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_expanded_taps_are_the_networks_own_activations(name, image_batch) -> None:
    """Each ``<tap>x`` equals the activation the whole network computes after the next block's
    1x1 expansion, folded or not, with the shapes ``feature_info`` reports."""
    from oddeye.backbones import feature_info

    net = create_backbone(name, "auto").eval()
    seen: dict[str, torch.Tensor] = {}
    for tap, (module, post) in _inner_expansions(name, net).items():
        module.register_forward_hook(
            lambda m, i, o, tap=tap, post=post: seen.__setitem__(tap, post(o) if post else o))
    taps = [f"{t}x" for t in STRIDE_TAPS]
    folded = FeatureExtractor(name, taps)
    plain = FeatureExtractor(name, taps, fold_bn=False)
    with torch.inference_mode():
        net(folded.renorm(image_batch))
        a, b = folded(image_batch), plain(image_batch)
    info = feature_info(name)
    for tap in taps:
        channels, stride = info[tap]
        assert folded.channels[tap] == channels and folded.strides[tap] == stride
        assert stride == info[tap[:-1]][1] and channels > info[tap[:-1]][0]
        assert a[tap].shape == (1, channels, 256 // stride, 256 // stride)
        torch.testing.assert_close(b[tap], seen[tap], rtol=1e-4, atol=1e-4)  # NHWC kernels
        torch.testing.assert_close(a[tap], seen[tap], rtol=1e-3, atol=1e-4)
        assert float(a[tap].min()) >= 0  # post-ReLU6, unlike the signed stride taps


def test_expanded_taps_cut_no_deeper_than_their_stride_tap_and_keep_old_state_keys() -> None:
    with torch.device("meta"):
        both = FeatureExtractor("mobilenet_v2", ["s8", "s8x"], weights=None)
        plain = FeatureExtractor("mobilenet_v2", ["s8"], weights=None)
    # s8x's expansion belongs to the first s16 block, which the cut after s8 leaves out: it
    # travels as its own copy; extractors without expanded taps keep their keys (model files)
    assert len(both.stages) == len(plain.stages) == 3
    assert set(both.state_dict()) - set(plain.state_dict()) == {
        k for k in both.state_dict() if k.startswith("expansions.s8x.")}
    assert not any(k.startswith("expansions") for k in plain.state_dict())


def test_expanded_taps_crop_the_frame_like_their_stride_tap(image_batch) -> None:
    framed = FeatureExtractor("mobilenet_v2", ["s8", "s8x"], pad=32)
    with torch.inference_mode():
        feats = framed(image_batch)
    assert feats["s8x"].shape[-2:] == feats["s8"].shape[-2:] == (32, 32)


def test_unknown_tap_names_list_the_expanded_ones_and_resnets_have_none() -> None:
    with pytest.raises(BackboneError, match="s8x"):
        FeatureExtractor("mobilenet_v2", ["s9"], weights=None)
    with pytest.raises(BackboneError, match="unknown feature layer 's8x'"):
        with torch.device("meta"):
            FeatureExtractor("resnet18", ["s8x"], weights=None)
