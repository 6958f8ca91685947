"""The Python API: ``Detector`` fits on good images and predicts scores, maps and labels.

Images are file paths or numpy arrays (H x W or H x W x 3/4; uint8, uint16, bool or float in
[0, 1]). Every surface (CLI, HTTP service, export, evaluation) goes through ``AnomalyModel``, the
single inference path: normalise -> backbone features -> method head -> (per-position
standardisation) -> upsample + blur -> score.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from oddeye import __version__
from oddeye.backbones import DEFAULT_BATCH  # chosen by measurement (docs/backbones.md)
from oddeye.device import resolve_device
from oddeye.errors import DataError, ModelFileError, OddeyeError
from oddeye.io.modelfile import load_model, save_model
from oddeye.methods import Method, TrainSet, create_method, fusion, get_method
from oddeye.methods.base import check_choice, check_number
from oddeye.postprocess import (
    SCORE_REDUCTIONS,
    PostProcess,
    leave_one_out_standardize,
    position_stats,
)
from oddeye.prediction import Prediction, PredictorMixin, check_batch_size, image_list
from oddeye.preprocess import (
    ImageLike,
    Normalize,
    PreprocessConfig,
    load_resized,
    load_resized_with_shapes,
    to_batch,
)

__all__ = ["AnomalyModel", "Detector", "Prediction", "f1_optimal_threshold"]

#: Constructor arguments that say where a detector runs, not what it computes: never saved.
RUNTIME_PARAMS = ("device", "weights")
#: The Detector's own constructor arguments (every other keyword is the method's).
DETECTOR_PARAMS = ("method", "backbone", "size", "sigma", "score", "weights", "batch_size",
                   "holdout", "threshold_sigmas", "map_norm", "pad", "seed", "device")
#: Fewest good images per-position map statistics are estimated from (``map_norm``).
MIN_NORM_IMAGES = 10
#: Fewest good images a fused model's member statistics are estimated from without a warning:
#: from two (10-25 training images) the members' relative weight moved 0.115-0.170 over four
#: draws in a review's run (docs/methods.md, "Two backbones fused").
MIN_FUSION_IMAGES = 8
MAP_NORMS = (None, "position")


class AnomalyModel(nn.Module):
    """The whole inference path: uint8 (N, 3, S, S) -> (maps (N, S, S), image scores (N,))."""

    def __init__(self, normalize: nn.Module, extractor: nn.Module, head: nn.Module,
                 post: PostProcess):
        super().__init__()
        self.normalize, self.extractor, self.head, self.post = normalize, extractor, head, post

    def raw_map(self, x: torch.Tensor) -> torch.Tensor:
        """The method's raw map at feature resolution, before post-processing."""
        return self.head(self.extractor(self.normalize(x)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.post(self.raw_map(x))


def check_labels(n: int, labels: Sequence[int] | None, masks: Sequence | None,
                 method: Method) -> list[int] | None:
    """``labels`` as a list of 0/1 checked against the images and the method, before any
    decoding: a method that learns from good images only refuses them rather than fitting its
    normal model on the defective images too."""
    if labels is None:
        if masks is not None:
            raise DataError("masks were given without labels: a mask marks the defect of an "
                            "image labelled 1")
        return None
    if not method.needs_labels:
        raise DataError(f"method {method.name!r} learns from good images only and takes no labels; "
                        "pass only the good images (labelled defects are for methods such as "
                        "'anoonly-head')")
    out = label_list(labels, n)
    if masks is not None and len(masks) != n:
        raise DataError(f"{len(masks)} masks for {n} images: give one mask (or None) per image")
    return out


def category_list(categories: Any, n: int) -> list[str] | None:
    """``categories`` (one name per image, for unified fits) as a list, checked against the
    images before any decoding: one string would be split into letters, a count that differs
    would fail after decoding or name classes without an image."""
    if categories is None:
        return None
    if isinstance(categories, (str, bytes)):
        raise DataError(f"categories must be one name per image, got the single string "
                        f"{categories!r}")
    return one_per_image(categories, n, "categories", "one name per image",
                         "give one category name per image")


def one_per_image(values: Any, n: int, what: str, must: str, give: str) -> list:
    """``values`` read once as a list of ``n`` entries; a ``DataError`` ("``what`` must be
    ``must``, got <type>" or "<count> ``what`` for ``n`` images: ``give``") otherwise."""
    try:
        out = list(values)
    except TypeError:
        raise DataError(f"{what} must be {must}, got {type(values).__name__}") from None
    if len(out) != n:
        raise DataError(f"{len(out)} {what} for {n} images: {give}")
    return out


def label_list(labels: Any, n: int) -> list[int]:
    """``labels`` as 0/1 ints, one per image (``fit``, ``calibrate``): a count mismatch or a
    value other than 0/1 is a ``DataError`` naming it."""
    out = one_per_image(labels, n, "labels",
                        "a sequence of 0 (good) / 1 (defective), one per image",
                        "give one label (0 good, 1 defective) per image")
    bad = [i for i, v in enumerate(out) if isinstance(v, float) or v not in (0, 1)]
    if bad:
        raise DataError(f"labels must be 0 (good) or 1 (defective); labels[{bad[0]}] is "
                        f"{out[bad[0]]!r}")
    return [int(v) for v in out]


def prepare_masks(images: Sequence[ImageLike], masks: Sequence[Any], shapes: Sequence[tuple],
                  size: int) -> np.ndarray:
    """Masks as uint8 {0,1} (N, size, size): each at its image's own size or already at the
    model's (resized with nearest neighbour); ``None`` = no mask. Any other size is an error
    naming the image: a mask is never stretched onto an image it was not drawn for."""
    from oddeye.io.images import as_mask
    from oddeye.preprocess import resize_mask

    out = np.zeros((len(images), size, size), np.uint8)
    for i, (img, m, hw) in enumerate(zip(images, masks, shapes, strict=True)):
        if m is None:
            continue
        label = f"mask of {img}" if isinstance(img, (str, Path)) else f"masks[{i}]"
        mk = as_mask(m, label)
        if mk.shape != tuple(hw) and mk.shape != (size, size):
            raise DataError(f"{label} is {mk.shape[1]}x{mk.shape[0]} (WxH), but its image is "
                            f"{hw[1]}x{hw[0]} and the model's input {size}x{size}: a mask must "
                            "have one of those sizes")
        out[i] = resize_mask(mk, size)
    return out


def check_masks_of_good_images(images: Sequence[ImageLike], labels: Sequence[int],
                               masks: np.ndarray) -> None:
    """A ``DataError`` naming the first image labelled good (0) whose mask marks defect
    pixels: the labels and the masks contradict each other, and either could be the mistake."""
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        if lab == 0 and masks[i].any():
            name = f"mask of {img}" if isinstance(img, (str, Path)) else f"masks[{i}]"
            raise DataError(f"{name} marks {int(masks[i].sum())} defect pixels, but its image is "
                            f"labelled 0 (good): give it no mask (None) or an empty one, or "
                            f"label it 1")


def check_size_fits_taps(size: int, method: Method) -> None:
    """A ``DataError`` unless ``size`` is a multiple of the stride of the method's deepest tap:
    otherwise that tap's cells cover more (or less) than the image and every map is stretched
    onto it, up to several pixels off at the far edge (250 px at stride 8 covers 256)."""
    stride = deepest_stride(method)
    if size % stride:
        down, up = size - size % stride, size - size % stride + stride
        raise DataError(f"size {size} is not a multiple of {stride}, the stride of the deepest "
                        f"feature tap of {method.backbone} ({', '.join(method.layers)}): its maps "
                        f"would be stretched onto the image; use {down or up} or {up}")


def default_pad(method: Method) -> int:
    """The input frame a method gets when the Detector's ``pad`` is None: its ``default_pad``
    rounded up to a multiple of its deepest tap's stride (so deeper taps still crop exactly)."""
    if not method.default_pad:
        return 0
    stride = deepest_stride(method)
    return -(-method.default_pad // stride) * stride


def holdout_draw(rng: np.random.Generator, n: int, k: int,
                 categories: Sequence[str] | None) -> list[int]:
    """Sorted indices of ``k`` of ``n`` training images held out for the threshold.

    One category (or none named): a plain draw, as every fit before categories were stratified.
    Several: ``k`` is shared out in proportion to each category's images (largest remainders;
    a category with two images or more gets at least one, taken from the largest share while
    that has two, and keeps at least one), so the threshold and any map statistics see good
    images of every category, not by chance only some.
    """
    if not categories or len(set(categories)) < 2:
        return sorted(rng.choice(n, size=k, replace=False).tolist())
    names = sorted(set(categories))
    members = {c: [i for i, x in enumerate(categories) if x == c] for c in names}
    sizes = np.array([len(members[c]) for c in names], dtype=float)
    share = k * sizes / sizes.sum()
    counts = np.floor(share).astype(int)
    for j in np.argsort(-(share - counts), kind="stable")[:k - int(counts.sum())]:
        counts[j] += 1
    caps = np.maximum(sizes.astype(int) - 1, 0)
    for j in np.flatnonzero((caps > 0) & (counts == 0)):  # one each, from the largest share
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[j] = 1
    counts = np.minimum(counts, caps)
    out: list[int] = []
    for c, m in zip(names, counts, strict=True):
        out += [members[c][i] for i in rng.choice(len(members[c]), size=int(m), replace=False)]
    return sorted(out)


def deepest_stride(method: Method) -> int:
    """The largest stride among the method's taps, over every member of a fused backbone."""
    from oddeye.backbones import feature_info

    infos = [feature_info(b) for b in fusion.members(method.backbone)]
    return max((info[lay][1] for info in infos for lay in method.layers if lay in info),
               default=1)


def f1_optimal_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold with maximal F1 (predict defective when score > threshold)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    fp = np.cumsum(1 - y)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    f1 = 2 * tp[last] / (tp[last] + fp[last] + y.sum())
    k = last[int(np.argmax(f1))]
    # midway to the next lower score, so the chosen group is strictly above the threshold; at
    # the lowest score (or where the midpoint rounds onto it) the next float below it: a fixed
    # offset such as 1e-12 vanishes in the rounding of scores above ~1e4
    below = float(np.nextafter(s[k], -np.inf))
    if k + 1 == len(s):
        return below
    mid = float((s[k] + s[k + 1]) / 2)
    return mid if mid < s[k] else below


def _check_both_labels(y: np.ndarray) -> None:
    """A ``DataError`` unless ``y`` holds good (0) and defective (1) labels both."""
    if set(np.unique(y).tolist()) != {0, 1}:
        raise DataError("calibrate needs both good (0) and defective (1) images, got only "
                        f"{'good' if y.size and y[0] == 0 else 'defective'} ones"
                        if y.size else "calibrate got no images")


def _first_keys(keys: list[str], prefix: str, first: int = 3) -> str:
    """``'extractor.a', 'extractor.b' and 5 more``: a key list that stays one short line."""
    shown = ", ".join(repr(prefix + k) for k in keys[:first])
    return shown + (f" and {len(keys) - first} more" if len(keys) > first else "")


def check_state_keys(path: str | Path, part: str, prefix: str, module: nn.Module,
                     state: dict[str, torch.Tensor]) -> None:
    """A one-line ``ModelFileError`` naming ``path`` when the saved tensors of ``part`` lack or
    add keys, with counts and the first names (torch's own message spans many lines)."""
    expected = set(module.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_first_keys(missing, prefix)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_first_keys(unexpected, prefix)})")
    raise ModelFileError(f"{path}: model content does not match its metadata: {part} tensors "
                         f"{', '.join(parts)}; the file is damaged or was edited")


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (torch's load_state_dict errors use newlines and
    tabs), so a CLI error stays a single line."""
    return " ".join(str(exc).split()) or type(exc).__name__


class Detector(PredictorMixin):
    """Fit on good images, predict anomaly scores, maps and labels (scikit-learn style).

    The constructor stores hyper-parameters only; fitted state ends in ``_``. Threshold: by default
    ``mean + threshold_sigmas * std`` of the scores of good images the model did not train on (the
    given validation images, else a held-out ``holdout`` share of the training images);
    ``calibrate`` replaces it with the F1-optimal threshold on a labelled set.

    ``map_norm="position"`` standardises every raw map per position with the mean and spread of
    the same good images' maps (at least ``MIN_NORM_IMAGES``; the held-out share grows to that
    many when the training set has three times as many), so spots that are high on every good
    part stop setting the score; the threshold then comes from leave-one-out z-maps of those
    images. Off by default (docs/methods.md: it helped on validation data and hurt on tire's test
    split); it refuses what it cannot fit: methods scoring against reference shots, labelled
    training data, too few good images. ``map_norm_`` records how many images it was fitted on.

    ``pad`` frames each image by that many pixels of its mean colour before the backbone, whose
    taps are cropped back (``FeatureExtractor``): border cells then see the image's edge against
    a plain surround instead of zero-padded feature maps. ``None`` takes the method's
    ``default_pad``; ``pad_`` is the frame the fitted model uses.

    ``seed`` draws the held-out images and is handed to the method (coreset start, channel draw,
    initial weights, batch order), so one seed is one reproducible fit.

    ``device`` (``auto``: CUDA when torch sees a GPU, else the CPU) is where fitting and inference
    run; it is not saved with the model (``load(path, device=...)``, ``to(device)``). A fit on
    another device gives the same model up to float rounding, which training can amplify.
    """

    def __init__(self, method: str = "patchcore", backbone: str | None = None, size: int = 256,
                 sigma: float = 4.0, score: str = "max", weights: Any = "auto",
                 batch_size: int = DEFAULT_BATCH, holdout: float = 0.1,
                 threshold_sigmas: float = 3.0, map_norm: str | None = None,
                 pad: int | None = None,
                 seed: int = 0, device: str = "auto", **method_params: Any):
        self.method = method
        self.backbone = backbone
        self.size = size
        self.sigma = sigma
        self.score = score
        self.weights = weights
        self.batch_size = batch_size
        self.holdout = holdout
        self.threshold_sigmas = threshold_sigmas
        self.map_norm = map_norm
        self.pad = pad
        self.seed = seed
        self.device = device
        self.method_params = method_params

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        """The Detector's own hyper-parameters, types and ranges: a ``DataError`` naming the
        first bad one before any image is decoded (not a raw error at the end of a fit, nor a
        NaN threshold saved with the model)."""
        check_number("size", self.size, low=32, integer=True)
        check_number("sigma", self.sigma, low=0)
        check_choice("score", self.score, SCORE_REDUCTIONS)
        check_number("batch_size", self.batch_size, low=1, integer=True)
        check_number("holdout", self.holdout, low=0, high=1, high_open=True)
        check_number("threshold_sigmas", self.threshold_sigmas, low=0)
        check_number("pad", self.pad, low=0, integer=True, none_ok=True)
        check_number("seed", self.seed, low=0, integer=True)

    def check_params(self) -> None:
        """Every hyper-parameter check ``fit`` makes before it decodes an image (the
        Detector's own and its method's), without fitting: for callers that refuse a bad
        setting up front (``oddeye benchmark``), a one-line error naming the parameter."""
        self._check_params()
        method = self._method()
        method.check_params()
        fusion.check_fusion(method, self.weights)
        check_size_fits_taps(self.size, method)

    def _method(self) -> Method:
        params = dict(self.method_params)
        if self.backbone:
            params["backbone"] = self.backbone
        if "seed" in inspect.signature(get_method(self.method).__init__).parameters:
            params["seed"] = self.seed  # one seed for the holdout draw and the method
        # numpy scalars (a grid's np.int64) as Python numbers: torch seeds and JSON need them
        return create_method(self.method, **{k: v.item() if isinstance(v, np.generic) else v
                                             for k, v in params.items()})

    def fit(self, images: Iterable[ImageLike], *, validation: Iterable[ImageLike] | None = None,
            categories: Iterable[str] | None = None, labels: Iterable[int] | None = None,
            masks: Iterable[np.ndarray | None] | None = None,
            progress: bool = True) -> Detector:
        """Fit on (good) images (any iterable: a list, a generator); returns self.

        ``labels`` (0 good, 1 defective, one per image) and ``masks`` (one per image: an (H, W)
        array at the image's own or the model's size, non-zero = defect, or ``None``) only for
        methods that learn from labelled defects (``needs_labels``); others refuse them.
        """
        self._check_params()
        images = image_list(images, "images", single_array=False)
        if validation is not None:
            validation = image_list(validation, "validation", single_array=False)
        masks = list(masks) if masks is not None else None
        if len(images) == 0:
            raise DataError("no training images given")
        t0 = time.perf_counter()
        dev = resolve_device(self.device)
        method = self._method()
        method.check_params()  # before the backbone's weights are read
        fusion.check_fusion(method, self.weights)
        check_size_fits_taps(self.size, method)
        n = len(images)
        cats = category_list(categories, n)
        labels = check_labels(n, labels, masks, method)
        rng = np.random.default_rng(self.seed)
        norm = self._map_norm_applies(method, labels, validation, n)
        holdout_idx: list[int] = []
        if validation is None and self.holdout > 0 and n >= 10 and labels is None:
            k = max(2, round(self.holdout * n))
            if norm:
                k = max(k, MIN_NORM_IMAGES)
            holdout_idx = holdout_draw(rng, n, k, cats)
        train_idx = [i for i in range(n) if i not in set(holdout_idx)]

        # the extractor and head first: a bad backbone, layer, pad or head parameter fails
        # before any image is decoded
        self.pad_ = self.pad if self.pad is not None else default_pad(method)
        extractor, head = fusion.build_model(method, self.weights, self.pad_)
        extractor, head = extractor.to(dev), head.to(dev)
        arrays, shapes = load_resized_with_shapes(images, self.size)
        mask_arr = prepare_masks(images, masks, shapes, self.size) if masks is not None else None
        if mask_arr is not None:
            check_masks_of_good_images(images, labels, mask_arr)
        x = to_batch(arrays)
        normalize = Normalize(PreprocessConfig().mean, PreprocessConfig().std).to(dev)
        data = TrainSet(
            images=x[train_idx], extractor=extractor, normalize=normalize,
            batch_size=self.batch_size, progress=progress,
            categories=[cats[i] for i in train_idx] if cats else None,
            labels=torch.as_tensor([labels[i] for i in train_idx]) if labels is not None else None,
            masks=torch.as_tensor(mask_arr[train_idx]) if mask_arr is not None else None,
        )
        fusion.fit_model(method, head, data)
        head.to(dev).eval()  # buffers a fit replaced may have been made on the CPU
        self.method_ = method
        self.device_ = dev
        self.model_ = AnomalyModel(normalize, extractor, head,
                                   PostProcess(self.size, self.sigma, self.score,
                                               score_from=method.score_from)).to(dev).eval()
        self.n_train_ = len(train_idx)
        self.categories_ = sorted(set(cats)) if cats else []

        good_x = None
        if validation is not None and len(validation) > 0:
            good_x = to_batch(load_resized(validation, self.size))
            source = f"{len(validation)} validation images"
        elif holdout_idx:
            good_x = x[holdout_idx]
            source = f"{len(holdout_idx)} held-out training images"
        self.fusion_images_ = 0
        if isinstance(head, fusion.FusedHead):  # members standardised before any score is made
            stats_x = good_x if good_x is not None else x[train_idx]
            fusion.fit_stats(extractor, head, normalize, stats_x, self.batch_size, dev)
            self.fusion_images_ = int(stats_x.shape[0])
            if self.fusion_images_ < MIN_FUSION_IMAGES:
                warnings.warn(f"the fused backbones' maps were standardised on only "
                              f"{self.fusion_images_} good image(s), so their weights depend "
                              f"on which ones; for steadier weights give at least "
                              f"{MIN_FUSION_IMAGES} good validation images (validation= in "
                              f"Python, a validation/good folder for oddeye train) or more "
                              f"training images (a tenth is held out)", UserWarning,
                              stacklevel=2)
        self.map_norm_ = 0
        if norm:
            good_scores = self._fit_map_norm(good_x)
        elif good_x is not None:
            good_scores = self._scores_of_batch(good_x)
        elif labels is not None:  # a labelled fit holds nothing out: its good training images
            good_scores = self._scores_of_batch(x[train_idx][data.labels == 0])
            source = f"{len(good_scores)} good training images (biased low)"
        else:
            good_scores = self._scores_of_batch(x[train_idx])
            source = f"{len(train_idx)} training images (biased low: too few to hold out)"
            warnings.warn("too few good images to hold out; the threshold is estimated "
                          "from training scores and may be too low", UserWarning, stacklevel=2)
        self._set_unsupervised_threshold(good_scores, source)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _map_norm_applies(self, method: Method, labels: Sequence[int] | None,
                          validation: Sequence[ImageLike] | None, n: int) -> bool:
        """Whether this fit standardises maps; raises where it was asked for and cannot be."""
        if self.map_norm not in MAP_NORMS:
            raise DataError(f"map_norm must be one of {MAP_NORMS}, got {self.map_norm!r}")
        if self.map_norm is None:
            return False
        if method.needs_references:
            problem = f"method {method.name!r} scores against reference shots of each class"
        elif labels is not None:
            problem = "training images are labelled (a supervised head)"
        elif validation is not None and len(validation) > 0:
            problem = (None if len(validation) >= MIN_NORM_IMAGES else
                       f"{len(validation)} validation images (needs {MIN_NORM_IMAGES})")
        elif self.holdout <= 0 or n < 3 * MIN_NORM_IMAGES:
            problem = (f"{n} training images with holdout={self.holdout} (needs holdout > 0 and "
                       f"{3 * MIN_NORM_IMAGES} images, or {MIN_NORM_IMAGES} validation images)")
        else:
            problem = None
        if problem:
            raise DataError(f"map_norm='position' cannot be fitted: {problem}")
        return True

    def _fit_map_norm(self, good_x: torch.Tensor) -> np.ndarray:
        """Set the per-position statistics from good images; returns their out-of-sample scores."""
        with torch.inference_mode():
            raw = torch.cat([self.model_.raw_map(good_x[s:s + self.batch_size].to(self.device_))
                             for s in range(0, good_x.shape[0], self.batch_size)])
            self.model_.post.set_position_stats(*position_stats(raw))
            scores = self.model_.post.finish(leave_one_out_standardize(raw))[1]
        self.map_norm_ = int(good_x.shape[0])
        return scores.cpu().numpy().astype(np.float64)

    def _set_unsupervised_threshold(self, good: np.ndarray, source: str) -> None:
        """``mean + threshold_sigmas * std`` of good scores; a threshold that is not finite stops
        the fit (and leaves the detector unfitted) instead of being saved with the model."""
        bad = int((~np.isfinite(good)).sum())
        with np.errstate(all="ignore"):
            mean, std = float(np.mean(good)), float(np.std(good))
        threshold = mean + self.threshold_sigmas * std
        if bad or not math.isfinite(threshold):
            del self.model_  # not a usable fit: predict must not run without a threshold
            why = (f"{bad} of the {len(good)} scores are NaN or infinite (the model's maps are)"
                   if bad else "the scores are too large to average")
            raise DataError(f"the threshold came out {threshold} (mean {mean} + "
                            f"{self.threshold_sigmas} x std {std} of the scores of {source}): "
                            f"{why}; the detector was not fitted")
        self.threshold_ = threshold
        self.score_scale_ = std if std > 0 else max(abs(mean) * 0.05, 1e-6)
        self.threshold_info_ = {"rule": f"mean + {self.threshold_sigmas} std of good scores",
                                "source": source, "good_mean": mean, "good_std": std}

    def calibrate(self, images: Iterable[ImageLike], labels: Iterable[int]) -> Detector:
        """Set the F1-optimal threshold on a labelled set (1 = defective)."""
        self._check_fitted()
        images = image_list(images)
        y = np.asarray(label_list(labels, len(images)), dtype=int)
        _check_both_labels(y)
        return self.calibrate_scores(self.decision_function(images), y)

    def calibrate_scores(self, scores: np.ndarray, labels: np.ndarray) -> Detector:
        """``calibrate`` from this model's raw scores of a labelled set (``oddeye calibrate``
        scores its images in batches itself): the F1-optimal threshold, and the good images'
        score spread as the normalised score's scale."""
        self._check_fitted()
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 1:
            raise DataError(f"calibrate: scores must be one number per image (1-D), got shape "
                            f"{s.shape}")
        y = np.asarray(labels)
        if y.ndim != 1 or y.size != s.size:
            raise DataError(f"calibrate: {y.size} labels of shape {y.shape} for {s.size} scores")
        y = np.asarray(label_list(y.tolist(), s.size), dtype=int)
        _check_both_labels(y)
        if not np.isfinite(s).all():
            raise DataError(f"calibrate: {int((~np.isfinite(s)).sum())} of {len(s)} scores are "
                            "NaN or infinite; the threshold was not changed")
        self.threshold_ = f1_optimal_threshold(s, y)
        good = s[y == 0]
        self.score_scale_ = float(np.std(good)) or self.score_scale_
        n_good = int(good.size)
        self.threshold_info_ = {"rule": "F1-optimal on a labelled set",
                                "source": f"{len(y)} images ({n_good} good, "
                                          f"{len(y) - n_good} defective)"}
        return self

    @property
    def fit_choices_(self) -> str:
        """What the fit chose from the training data itself, in one line ("" if nothing, or not
        fitted): e.g. PatchCore's position weight and the held-out scores behind it."""
        method, model = getattr(self, "method_", None), getattr(self, "model_", None)
        if method is None or model is None:
            return ""
        return fusion.fit_choices(method, model.head)

    # ------------------------------------------------------- few-shot references
    @property
    def needs_references(self) -> bool:
        """True for methods (e.g. ResAD) that score against reference shots of the class."""
        return bool(getattr(self, "method_", None) and self.method_.needs_references)

    def set_references(self, images: Sequence[ImageLike], progress: bool = False) -> Detector:
        """Hand the model k good images of the class to inspect; no optimisation step is taken."""
        self._check_fitted()
        images = image_list(images, "references", single_array=False)
        if len(images) == 0:
            raise DataError("set_references needs at least one reference image")
        x = to_batch(load_resized(list(images), self.size))
        refs = TrainSet(images=x, extractor=self.model_.extractor, normalize=self.model_.normalize,
                        batch_size=self.batch_size, progress=progress)
        self.method_.set_references(self.model_.head, refs)
        self.n_references_ = len(images)
        return self

    # --------------------------------------------------------------- inference
    def to(self, device: str | torch.device) -> Detector:
        """Move the fitted model to ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``); returns
        self. Scores agree with another device's up to float rounding, which PyTorch's default
        TF32 convolutions on recent GPUs raise to about 1e-3 of a feature (docs/devices.md)."""
        self._check_fitted()
        dev = resolve_device(device)
        self.model_.to(dev)
        self.device = str(device)
        self.device_ = dev
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise OddeyeError("this Detector is not fitted yet: call fit() or oddeye.load()")

    def _scores_of_batch(self, x: torch.Tensor) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for s in range(0, x.shape[0], self.batch_size):
                out.append(self.model_(x[s : s + self.batch_size].to(self.device_))[1].cpu())
        return torch.cat(out).numpy().astype(np.float64)

    def iter_predict(self, images: Sequence[ImageLike], batch_size: int | None = None,
                     progress: bool = False) -> Iterator[Prediction]:
        """Predict in batches (bounded memory); yields one ``Prediction`` per batch. ``images``
        as ``predict`` takes them (one array of at most 3 dimensions is one image)."""
        self._check_fitted()
        check_batch_size(batch_size)
        images = image_list(images)
        bs = batch_size or self.batch_size
        bar = tqdm(total=len(images), desc="predict", unit="img", disable=not progress, leave=False)
        for s in range(0, len(images), bs):
            items = images[s : s + bs]
            from oddeye.preprocess import load_rgb, resize_uint8

            raw = [load_rgb(it, name=f"images[{s + i}]") for i, it in enumerate(items)]
            x = to_batch([resize_uint8(r, self.size) for r in raw])
            with torch.inference_mode():
                maps, scores = self.model_(x.to(self.device_))
            yield self._prediction(scores.cpu().numpy(), maps.cpu().numpy(),
                                   [r.shape[:2] for r in raw])
            bar.update(len(items))
        bar.close()

    # ------------------------------------------------------------ persistence
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments, the method's included (scikit-learn's contract, so
        ``sklearn.base.clone`` and grid searches work; ``deep`` changes nothing: no
        sub-estimators)."""
        p = {k: getattr(self, k) for k in DETECTOR_PARAMS}
        p.update(self.method_params)
        return p

    def set_params(self, **params: Any) -> Detector:
        """Set constructor arguments (a method's hyper-parameter by its name, as in the
        constructor); returns self. Takes effect at the next ``fit``; a fitted model is not
        changed. Values are checked by ``fit`` / ``check_params``."""
        for key, value in params.items():
            if key in DETECTOR_PARAMS:
                setattr(self, key, value)
            else:
                self.method_params[key] = value
        return self

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the fitted detector (backbone included) to one ``.oddeye`` file."""
        self._check_fitted()
        ext = self.model_.extractor
        meta = {
            "method": self.method,
            "method_params": self.method_.get_params(),
            "detector_params": {k: v for k, v in self.get_params().items()
                                if k not in self.method_params and k not in RUNTIME_PARAMS},
            "preprocess": PreprocessConfig(size=self.size).to_dict(),
            "postprocess": {"sigma": self.sigma, "reduce": self.score,
                            "score_from": self.model_.post.score_from,
                            "map_norm_images": self.map_norm_},
            "backbone": {"name": self.method_.backbone, "layers": list(self.method_.layers),
                         "channels": dict(ext.channels), "strides": dict(ext.strides),
                         "pad": ext.pad,
                         **({"fusion_images": self.fusion_images_}
                            if isinstance(self.model_.head, fusion.FusedHead) else {})},
            "threshold": {"value": self.threshold_, "scale": self.score_scale_,
                          **self.threshold_info_},
            "train": {"n_images": self.n_train_, "fit_seconds": self.fit_seconds_,
                      "categories": self.categories_, **(extra or {})},
            "oddeye_version": __version__,
        }
        tensors = {f"extractor.{k}": v for k, v in ext.state_dict().items()}
        tensors.update({f"head.{k}": v for k, v in self.model_.head.state_dict().items()})
        if self.model_.post.standardizes:
            tensors.update({f"post.{k}": v for k, v in self.model_.post.state_dict().items()})
        # CPU tensors in the file, whatever the model ran on: it loads on any machine
        return save_model(path, meta, {k: v.detach().cpu() for k, v in tensors.items()})

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Detector:
        """Read a ``.oddeye`` file onto ``device`` (``auto``: CUDA when there is one); backbone
        weights come from the file, not from the network."""
        dev = resolve_device(device)
        meta, tensors = load_model(path)
        try:
            dparams = {k: v for k, v in meta["detector_params"].items() if k != "method"}
            dparams.setdefault("map_norm", None)  # files from before it never standardised
            dparams = {k: v for k, v in dparams.items() if k not in RUNTIME_PARAMS}
            det = cls(method=meta["method"], device=device, **dparams)
            det.method_params = {k: v for k, v in meta["method_params"].items()
                                 if k not in ("backbone",)}
            det.backbone = meta["method_params"].get("backbone")
            method_cls = get_method(meta["method"])
            missing = sorted(set(method_cls().get_params()) - set(meta["method_params"])
                             - set(method_cls.legacy_defaults))
            if missing:
                raise ModelFileError(
                    f"{path}: written by oddeye {meta.get('oddeye_version', '?')}, before method "
                    f"{meta['method']!r} had the parameter(s) {missing} that change what it "
                    f"computes in this oddeye {__version__}: retrain the model")
            method = method_cls(**{**method_cls.legacy_defaults, **meta["method_params"]})
            bb = meta["backbone"]
            det.pad_ = bb.get("pad", 0)  # files from before it never framed the image
            if det.pad is not None and det.pad != det.pad_:
                raise ModelFileError(f"{path}: metadata says pad={det.pad!r} but the backbone "
                                     f"was saved with pad={det.pad_!r}")
            if method.backbone != bb["name"]:
                raise ModelFileError(
                    f"{path}: method_params.backbone is {method.backbone!r} but the backbone "
                    f"record says {bb['name']!r}: the file was edited or damaged")
            problem = fusion.record_problem(bb)
            if problem:
                raise ModelFileError(f"{path}: {problem}")
            try:
                fusion.check_fusion(method, None)
                extractor = fusion.build_extractor(bb["name"], bb["layers"], None, det.pad_)
            except ValueError as exc:  # a backbone, layer or pad this version does not know
                raise ModelFileError(f"{path}: bad backbone record ({exc})") from None
            ext_state = {k[len("extractor."):]: v for k, v in tensors.items()
                         if k.startswith("extractor.")}
            check_state_keys(path, "backbone", "extractor.", extractor, ext_state)
            extractor.load_state_dict(ext_state, strict=True)
            head_state = {k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")}
            head = fusion.head_from_state(method, extractor, head_state)
            problem = fusion.stats_problem(head)
            if problem:
                raise ModelFileError(f"{path}: {problem}")
            fusion.attach_frames(method, extractor, head)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ModelFileError(
                f"{path}: model content does not match its metadata ({one_line(exc)})") from None
        pre = PreprocessConfig.from_dict(meta["preprocess"])
        post = meta["postprocess"]
        det.method_ = method
        postproc = PostProcess(pre.size, post["sigma"], post["reduce"],
                               score_from=post.get("score_from", "smoothed"))
        says_norm = det.map_norm is not None or int(post.get("map_norm_images", 0)) > 0
        if says_norm != ("post.norm_mean" in tensors):
            raise ModelFileError(
                f"{path}: metadata says map_norm={det.map_norm!r} but the file "
                f"{'lacks' if says_norm else 'holds'} the per-position map statistics "
                "(post.norm_mean / post.norm_scale): its scores would not be the fitted model's")
        if says_norm:
            try:
                postproc.set_position_stats(tensors["post.norm_mean"], tensors["post.norm_scale"])
            except (KeyError, ValueError) as exc:
                raise ModelFileError(f"{path}: bad map statistics ({exc})") from None
        det.model_ = AnomalyModel(Normalize(pre.mean, pre.std), extractor.eval(), head.eval(),
                                  postproc).to(dev).eval()
        det.device_ = dev
        det.map_norm_ = int(post.get("map_norm_images", 0))
        det.fusion_images_ = int(bb.get("fusion_images", 0))
        thr = meta["threshold"]
        det.threshold_, det.score_scale_ = float(thr["value"]), float(thr["scale"])
        det.threshold_info_ = {k: v for k, v in thr.items() if k not in ("value", "scale")}
        det.n_train_ = meta["train"]["n_images"]
        det.fit_seconds_ = meta["train"]["fit_seconds"]
        det.categories_ = meta["train"].get("categories", [])
        det.meta_ = meta
        return det
