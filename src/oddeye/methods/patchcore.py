"""PatchCore (Roth et al., CVPR 2022): a memory bank of locally aggregated patch features.

Mid-level features of two stages, 3x3 neighbourhood averaging, the coarser stage upsampled to the
finer one, concatenated; a greedy-coreset subset of all training patches forms the bank; a test
patch's score is its Euclidean distance to the nearest bank entry. By default each stage's vector
is first scaled to unit length (``cosine``, chosen on validation data; the paper compares the
features' values, ``cosine=False``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from oddeye.errors import DataError
from oddeye.methods import register
from oddeye.methods.base import (
    Method,
    TrainSet,
    check_choice,
    check_flag,
    check_layers,
    check_number,
)
from oddeye.methods.coreset import CHUNK_SIZE, PROJ_DIM, coreset_indices
from oddeye.methods.neighbours import nearest_distance


def check_odd_kernel(kernel: int) -> None:
    """A ``DataError`` for an even neighbourhood: it has no centre cell, so its average map is
    one cell larger than the tap and comes out shifted by half a cell once resized."""
    if kernel % 2 == 0:
        raise DataError(f"kernel must be an odd number of cells (1, 3, 5, ...), got {kernel}: an "
                        f"even neighbourhood has no centre and shifts the map")


def grid_tap(layers: Sequence[str], grid: str) -> str:
    """The tap whose cells are the patches (``grid``: "first", "last" or one of ``layers``)."""
    if grid == "first":
        return layers[0]
    if grid == "last":
        return layers[-1]
    if grid not in layers:
        raise DataError(f"grid must be 'first', 'last' or one of the layers {list(layers)}, "
                        f"got {grid!r}")
    return grid


#: lengths below this count as this in ``aggregate``'s ``magnitude`` column (a zero vector would
#: give -inf): far below any aggregated stage of the shipped backbones' features
MIN_NORM = 1e-6


def aggregate(feats: dict[str, torch.Tensor], layers: Sequence[str], kernel: int,
              equal_layers: bool = False, pool_zeros: bool = False,
              grid: str = "first", cosine: bool = False,
              magnitude: float = 0.0) -> torch.Tensor:
    """Average each stage over a kernel x kernel neighbourhood, bring it to the grid tap's
    cells, concat.

    ``equal_layers`` scales every stage by ``1/sqrt(channels)`` so each stage weighs the same in a
    squared distance, whatever its width: what PatchCore's per-layer adaptive pooling to one common
    dimension amounts to for nearest-neighbour search. ``pool_zeros`` counts the map's zero
    padding as cells of a border cell's average (``count_include_pad``), so border embeddings
    shrink towards zero; without it they average only their in-map neighbours. ``grid``
    (``grid_tap``): coarser stages are upsampled (bilinear) to its cells, finer ones averaged
    over the block of cells each grid cell covers; "first" is the paper's. ``cosine`` scales
    each stage's vector to length ``1/sqrt(stages)`` instead (``equal_layers`` then changes
    nothing): the squared distance of two patches is the mean over stages of ``2 - 2 cos``, so a
    patch is compared by the direction of its features, not their magnitude. ``magnitude`` b > 0
    (with ``cosine``) appends per stage the column ``b * log|v| / sqrt(stages)``, which adds the
    mean over stages of ``b^2 * log(|q| / |p|)^2`` to that distance: the length comes back as a
    ratio, so no stage's scale matters.
    """
    out = []
    size = feats[grid_tap(layers, grid)].shape[-2:]
    for name in layers:
        f = feats[name]
        if kernel > 1:
            f = F.avg_pool2d(f, kernel, stride=1, padding=kernel // 2,
                             count_include_pad=pool_zeros)
        if f.shape[-2] > size[0]:  # finer than the grid: the mean over each grid cell's block
            n, m = int(f.shape[-2]), int(size[0])
            r = (n + m // 2) // m  # the stride ratio (2 for s8 under s16), odd sizes included
            f = F.avg_pool2d(f, r, stride=r, ceil_mode=True)
        if f.shape[-2:] != size:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        if cosine:
            scale = 1.0 / math.sqrt(len(layers))
            if magnitude:
                norm = f.norm(dim=1, keepdim=True).clamp_min(MIN_NORM)
                out += [f / norm * scale, norm.log() * (magnitude * scale)]
                continue
            f = F.normalize(f, dim=1) * scale
        elif equal_layers:
            f = f * (1.0 / math.sqrt(f.shape[1]))
        out.append(f)
    return torch.cat(out, dim=1)


#: Who cuts the input frame away (``FeatureExtractor(pad)``): "aggregated" (default) lets the
#: 3 x 3 aggregation of border cells run over frame cells too, then cuts the embedding map;
#: "taps" cuts every tap first (the twelfth session's order; border cells then average fewer
#: cells than the rest). Chosen on validation data (docs/backbones.md, "Input border").
FRAME_CROPS = ("aggregated", "taps")


def check_stage_scaling(cosine: Any, equal_layers: Any, magnitude: Any = 0.0) -> None:
    """``cosine`` and ``equal_layers`` are flags, and not the pair where one cancels the other:
    under ``cosine`` every stage is at unit length, so ``equal_layers=False`` would do nothing;
    ``magnitude`` (a number >= 0) is a term of the cosine comparison only."""
    check_flag("cosine", cosine)
    check_flag("equal_layers", equal_layers)
    check_number("magnitude", magnitude, low=0)
    if cosine and not equal_layers:
        raise DataError("equal_layers=False changes nothing with cosine=True (every stage is "
                        "scaled to unit length); set cosine=False for raw, unweighted stages")
    if magnitude and not cosine:
        raise DataError("magnitude adds the length of each stage's vector back to the cosine "
                        "comparison; with cosine=False the lengths are compared already: set "
                        "magnitude=0 or cosine=True")


def cut_frame(emb: torch.Tensor, cells: int) -> torch.Tensor:
    """(N, D, h, w) -> the inner (N, D, h - 2 cells, w - 2 cells): the image's own cells of a
    map computed on the framed image."""
    return emb[..., cells:emb.shape[-2] - cells, cells:emb.shape[-1] - cells] if cells else emb


def frame_of(head: nn.Module, frame_crop: str, layers: Sequence[str], strides: dict[str, int],
             pad: int) -> bool:
    """``Method.frame_head`` of PatchCore-style heads: with ``frame_crop="aggregated"`` and a
    frame, ``head.frame`` becomes the frame in cells of the grid tap (``grid_tap``)."""
    if frame_crop not in FRAME_CROPS:
        raise DataError(f"frame_crop must be one of {', '.join(FRAME_CROPS)}, got {frame_crop!r}")
    tap = grid_tap(layers, getattr(head, "grid", "first"))
    head.frame = pad // strides[tap] if frame_crop == "aggregated" else 0
    return bool(head.frame)


def with_position(emb: torch.Tensor, weight: float | torch.Tensor) -> torch.Tensor:
    """(N, D, h, w) -> (N, D + 2, h, w): append each cell's centre (row, column) as fractions of
    the map, times ``weight``, so a nearest neighbour far away on the part costs distance.

    Crossing the whole image costs ``weight`` in the Euclidean distance, whatever the input size.
    """
    n, _, h, w = emb.shape
    rows = (torch.arange(h, device=emb.device, dtype=emb.dtype) + 0.5) * (weight / h)
    cols = (torch.arange(w, device=emb.device, dtype=emb.dtype) + 0.5) * (weight / w)
    grid = torch.stack([rows[:, None].expand(h, w), cols[None, :].expand(h, w)])
    return torch.cat([emb, grid.unsqueeze(0).expand(n, 2, h, w)], dim=1)


def flat_patches(emb: torch.Tensor) -> torch.Tensor:
    """(N, D, h, w) embedding maps -> (N * h * w, D) rows, image by image, row-major."""
    return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])


def training_patches(head: PatchCoreHead, data: TrainSet) -> torch.Tensor:
    """(N * h * w, D) embeddings of every patch of every training image (the bank's candidates)."""
    return torch.cat([flat_patches(head.embed(f))
                      for f in data.iter_features(desc="patchcore features")])


#: Position weights ``position="auto"`` chooses from (a log grid; 10 lost on every real set of
#: the selection suite, section ``selection-patchcore-position``).
AUTO_POSITIONS = (0.0, 1.0, 3.0)
#: ``position="auto"`` keeps 0 unless another weight beats it by this much in image + pixel
#: AUROC: on pseudo-defects of a few held-out images these move by a few hundredths by chance.
AUTO_MARGIN = 0.03
#: Fewest training images ``position="auto"`` needs (8 held out); below it the weight is 0.
AUTO_MIN_IMAGES = 40
#: Most held-out good images (each with two pseudo-defective copies) and most images the
#: candidate banks come from: the choice is coarse (aligned parts or not), and its cost is
#: capped so the fit stays fast (docs/methods.md has the measured cost).
AUTO_VAL_IMAGES, AUTO_FIT_IMAGES = 16, 50


def validation_scores(maps: torch.Tensor, labels: np.ndarray, masks: np.ndarray) -> tuple[float,
                                                                                          float]:
    """(image AUROC, pixel AUROC) of raw (M, h, w) maps: image score = max, maps upsampled
    (bilinear) to the (M, S, S) masks."""
    from oddeye.metrics.functional import auroc

    up = F.interpolate(maps[:, None].float().cpu(), size=masks.shape[-2:], mode="bilinear",
                       align_corners=False)[:, 0].numpy()
    return auroc(maps.flatten(1).amax(1).cpu().numpy(), labels), auroc(up.ravel(), masks.ravel())


def choose_position(method: Method, plain: torch.Tensor, data: TrainSet,
                    index: torch.Tensor | None = None, proj_dim: int = PROJ_DIM,
                    chunk_size: int | None = CHUNK_SIZE, frame: int = 0,
                    ) -> tuple[float, torch.Tensor]:
    """(weight, table) for ``position="auto"`` from good training images alone.

    A seeded fifth of the images (8 to ``AUTO_VAL_IMAGES``) is held out and gets two
    pseudo-defective copies each (``oddeye.data.pseudo``); for each weight of
    ``AUTO_POSITIONS`` a bank is built as the fit builds it (the method's ``coreset_ratio``,
    ``max_bank``, ``seed``; ``proj_dim``, ``chunk_size``) from at most ``AUTO_FIT_IMAGES`` other
    images (``plain``: their (N, D, h, w) embeddings without position, by the method's
    ``layers``, ``kernel``, ``equal_layers``, ``cosine``, ``magnitude``) and scores the
    held-out set; ``pick_position`` decides. ``index``: which of ``data``'s images ``plain``
    holds (default all of them, in order). ``frame``: cells ``cut_frame`` takes from the
    held-out images' embeddings (the head's ``frame``). ``table`` rows: (weight, image AUROC,
    pixel AUROC); empty when there are fewer than ``AUTO_MIN_IMAGES`` images, and the weight
    is then 0.
    """
    from oddeye.data.pseudo import pseudo_validation

    n = plain.shape[0]
    if n < AUTO_MIN_IMAGES:
        return 0.0, torch.zeros(0, 3)
    rng = np.random.default_rng(method.seed)
    order = rng.permutation(n)
    n_val = min(AUTO_VAL_IMAGES, n // 5)
    val, fit = order[:n_val], order[n_val:n_val + AUTO_FIT_IMAGES]
    images = data.images if index is None else data.images[index.cpu()]
    goods = [np.ascontiguousarray(img.permute(1, 2, 0).numpy()) for img in images[val]]
    images, labels, mask_list = pseudo_validation(goods, rng)
    masks = np.stack(mask_list)
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    bs = max(1, data.batch_size)
    with torch.inference_mode():
        val_emb = torch.cat([cut_frame(aggregate(data.extractor(data.inputs(batch[i:i + bs])),
                                                 method.layers, method.kernel,
                                                 method.equal_layers,
                                                 bool(getattr(method, "pool_zeros", False)),
                                                 getattr(method, "grid", "first"),
                                                 bool(getattr(method, "cosine", False)),
                                                 float(getattr(method, "magnitude", 0.0))),
                                       frame)
                             for i in range(0, len(batch), bs)])
    fit_emb = plain[torch.as_tensor(fit)]
    rows = []
    for weight in AUTO_POSITIONS:
        # weight 0 is plain PatchCore: no (zero) columns, as the fit then selects its bank
        patches = flat_patches(with_position(fit_emb, weight) if weight else fit_emb)
        size = bank_size(patches.shape[0], method.coreset_ratio, method.max_bank)
        bank = patches[coreset_indices(patches, size, proj_dim, chunk_size,
                                       method.seed)].contiguous()
        queries = with_position(val_emb, weight) if weight else val_emb
        maps = nearest_distance(flat_patches(queries), bank, (bank * bank).sum(1))
        rows.append((weight, *validation_scores(maps.view(len(batch), *queries.shape[-2:]),
                                                labels, masks)))
    table = torch.tensor(rows, dtype=torch.float64)
    return pick_position(table), table


def pick_position(table: torch.Tensor, margin: float = AUTO_MARGIN) -> float:
    """The weight of the row with the largest image + pixel AUROC if it beats the first row
    (weight 0) by more than ``margin``, else 0; the first of equal rows wins."""
    total = table[:, 1] + table[:, 2]
    best = int(torch.argmax(total))
    return float(table[best, 0]) if total[best] > total[0] + margin else 0.0


def initial_position(position: float | str) -> float | None:
    """A head's starting position weight for the ``position`` parameter (None: no columns;
    ``"auto"`` starts at 0 and ``fit`` sets the choice); a bad value is a ``DataError``."""
    if position != "auto" and (isinstance(position, bool)
                               or not isinstance(position, (int, float))
                               or not 0 <= position < math.inf):
        raise DataError(f"position must be 'auto' or a finite number >= 0 (0 = off), "
                        f"got {position!r}")
    return 0.0 if position == "auto" else (float(position) or None)


def position_choice(head: nn.Module) -> str:
    """The line ``fit_choices`` gives for a head whose weight ``position="auto"`` chose."""
    table = head.position_table
    if table.numel() == 0:
        return (f"position weight 0 (fewer than {AUTO_MIN_IMAGES} images to fit after the "
                "threshold's hold-out: too few to hold some out and choose)")
    rows = ", ".join(f"{w:g}: {i:.3f} / {p:.3f}" for w, i, p in table.tolist())
    return (f"position weight {float(head.position):g}, chosen on pseudo-defects of "
            f"held-out training images (weight: image / pixel AUROC; {rows})")


def bank_size(n_patches: int, ratio: float, max_bank: int | None) -> int:
    """Memory-bank size: ``ratio`` of the patches (at least 1), capped at ``max_bank`` if given."""
    if not 0 < ratio <= 1:
        raise DataError(f"coreset_ratio must be in (0, 1], got {ratio!r}")
    check_number("max_bank", max_bank, low=1, integer=True, none_ok=True)
    n = max(1, round(ratio * n_patches))
    return min(n, max_bank) if max_bank is not None else n


def pca_basis(x: torch.Tensor, dim: int, max_rows: int = 50_000,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), basis (D, dim)) of the top ``dim`` principal directions of (N, D) rows.

    Fitted on at most ``max_rows`` seeded rows, in float64 for a stable eigen-decomposition.
    """
    if x.shape[0] > max_rows:
        g = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.shape[0], generator=g)[:max_rows]]
    x64 = x.double()
    mean = x64.mean(0)
    c = x64 - mean
    _, vecs = torch.linalg.eigh(c.T @ c / max(1, c.shape[0] - 1))
    return mean.to(x.dtype), vecs[:, -dim:].flip(1).contiguous().to(x.dtype)


def project_with_residual(x: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, k + 1): coordinates in the PCA basis plus the norm of what it leaves out.

    Euclidean distances in this space are a lower bound of the true ones that keeps the energy
    off the subspace: a patch unusual in a low-variance direction still gets a large last
    coordinate, where a plain PCA truncation would drop it.
    """
    c = x - mean
    p = c @ basis
    # the norm of the rejection itself: |c|^2 - |p|^2 cancels badly when the two are close
    resid = torch.linalg.vector_norm(c - p @ basis.T, dim=1)
    return torch.cat([p, resid[:, None]], dim=1)


class PatchCoreHead(nn.Module):
    """Features -> nearest-neighbour distance map at the first layer's resolution."""

    def __init__(self, layers: Sequence[str], dim: int, kernel: int = 3,
                 equal_layers: bool = True, position: float | None = None,
                 image_neighbours: int = 0, pool_zeros: bool = False, grid: str = "first",
                 cosine: bool = False, magnitude: float = 0.0):
        super().__init__()
        self.layers, self.kernel, self.equal_layers = list(layers), int(kernel), equal_layers
        self.pool_zeros = bool(pool_zeros)
        self.cosine = bool(cosine)
        self.magnitude = float(magnitude)
        if self.magnitude:
            dim += len(self.layers)  # one length column per stage (``aggregate``)
        grid_tap(self.layers, grid)  # a bad value fails here, before any feature is computed
        self.grid = grid
        #: 0: one pooled bank (the paper's); K: each image is searched against every patch of
        #: the K training images nearest to it as a whole (``image_patches``, ``image_desc``)
        self.image_neighbours = int(image_neighbours)
        # ``position`` None: no position columns (plain PatchCore, and every file from before
        # them); a number: two coordinate columns, weighted by the ``position`` buffer
        self.has_position = position is not None
        if self.has_position:
            dim += 2
            self.register_buffer("position", torch.tensor(float(position)))
            # what ``position="auto"`` measured: rows (weight, image AUROC, pixel AUROC)
            self.register_buffer("position_table", torch.zeros(0, 3, dtype=torch.float64))
        self.register_buffer("bank", torch.zeros(0, dim))
        self.register_buffer("bank_sq", torch.zeros(0))
        #: input frame (cells) cut from the embedding after aggregation (``frame_of``)
        self.frame = 0
        # optional search-space projection (empty = exact search in the embedding)
        self.register_buffer("proj_mean", torch.zeros(0))
        self.register_buffer("proj_basis", torch.zeros(dim, 0))
        if self.image_neighbours:
            # every training image's patches (N, P, D), their squared norms, and each image's
            # descriptor (its mean patch embedding), which picks the neighbours
            self.register_buffer("image_patches", torch.zeros(0, 0, dim))
            self.register_buffer("image_patches_sq", torch.zeros(0, 0))
            self.register_buffer("image_desc", torch.zeros(0, dim))

    def plain_embed(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Aggregated patch embeddings of the image's own cells, without position columns."""
        return cut_frame(aggregate(feats, self.layers, self.kernel, self.equal_layers,
                                   self.pool_zeros, self.grid, self.cosine, self.magnitude),
                         self.frame)

    def embed(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.plain_embed(feats)
        return with_position(emb, self.position) if self.has_position else emb

    def set_projection(self, mean: torch.Tensor, basis: torch.Tensor) -> None:
        self.proj_mean, self.proj_basis = mean.contiguous(), basis.contiguous()

    def to_search_space(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, D) patch embeddings -> the space the bank lives in (identity without projection)."""
        if self.proj_basis.shape[1] == 0:
            return patches
        return project_with_residual(patches, self.proj_mean, self.proj_basis)

    def set_bank(self, bank: torch.Tensor) -> None:
        self.bank = bank.contiguous()
        self.bank_sq = (bank * bank).sum(1)

    def set_images(self, patches: torch.Tensor) -> None:
        """Keep (N, P, D) per-image patches for ``image_neighbours`` search."""
        self.image_patches = patches.contiguous()
        self.image_patches_sq = (patches * patches).sum(2)
        self.image_desc = patches.mean(1)

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embed(feats)
        n, d, h, w = emb.shape
        if self.image_neighbours:
            return neighbour_image_distance(emb.flatten(2).transpose(1, 2), self.image_patches,
                                            self.image_patches_sq, self.image_desc,
                                            self.image_neighbours).view(n, h, w)
        q = self.to_search_space(emb.permute(0, 2, 3, 1).reshape(-1, d))
        return nearest_distance(q, self.bank, self.bank_sq).view(n, h, w)


def neighbour_image_distance(queries: torch.Tensor, patches: torch.Tensor,
                             patches_sq: torch.Tensor, desc: torch.Tensor, k: int) -> torch.Tensor:
    """(B, Q) distance of each of an image's (B, Q, D) patch embeddings to its nearest patch
    among the ``k`` training images whose descriptor (mean patch, ``desc`` (N, D)) is nearest
    to the image's own mean patch: SPADE's two-step search (Cohen & Hoshen, 2020). ``patches``
    (N, P, D) and ``patches_sq`` (N, P) hold every training image's patches."""
    k = min(int(k), patches.shape[0])
    nearest = torch.cdist(queries.mean(1), desc).topk(k, dim=1, largest=False).indices  # (B, k)
    q_sq = (queries * queries).sum(2)
    best = torch.full(q_sq.shape, float("inf"), dtype=queries.dtype, device=queries.device)
    for j in range(k):  # one neighbour image per step: a (B, Q, P) block at a time
        idx = nearest[:, j]
        d = torch.baddbmm(patches_sq[idx].unsqueeze(1), queries, patches[idx].transpose(1, 2),
                          alpha=-2.0)
        best = torch.minimum(best, d.amin(2))
    return (best + q_sq).clamp_min(0).sqrt()


@register
class PatchCore(Method):
    """PatchCore with a projected, chunked greedy coreset (see ``oddeye.methods.coreset``).

    ``search_dim`` (None = exact search) stores the bank and searches it in the top
    ``search_dim`` principal directions of the training patches plus the norm of the rest
    (``project_with_residual``): the distance is a lower bound of the exact one and the search
    costs ``(search_dim + 1) / D`` of it. ``sequential_chunks``: coreset chunks account for the
    centres earlier chunks chose (closer to the exact greedy coverage; better localisation,
    lower image AUROC on the shared sets, docs/methods.md). ``position``: weight of each patch's
    place on the image in the distance (``with_position``; 0 = position-free, the paper's);
    ``"auto"`` chooses it per training set on pseudo-defects of held-out training images
    (``choose_position``): aligned parts gain, unaligned ones keep 0. ``image_neighbours``: K > 0
    keeps every training patch and searches each image against the K training images nearest
    to it as a whole (``neighbour_image_distance``) instead of the pooled coreset bank; for
    regions that are normal only on other parts (docs/methods.md, "Image neighbours").
    ``frame_crop``: where the input frame (the Detector's ``pad``) is cut away, ``FRAME_CROPS``.
    ``grid``: which tap's cells are the patches (``grid_tap``; "first", the finest, is the
    paper's; "last" averages the finer stages over each coarser cell, docs/methods.md "Patch
    grid"). ``cosine`` (default since the twenty-seventh session, chosen on validation data):
    each stage's patch vector at unit length, so patches are compared by the direction of their
    features (``aggregate``; docs/methods.md "Cosine patches"); False compares them as the
    backbone gives them (width-scaled by ``equal_layers``), as files from before do.
    ``magnitude`` b > 0 adds each stage's length back to the cosine comparison as a log ratio
    (an option: validation saw no gain; on the test splits it localised better and ranked
    images worse, docs/methods.md "Lengths back in the comparison"). ``backbone="a+b"`` fits
    one bank per backbone and sums their standardised maps (``oddeye.methods.fusion``).
    """

    name = "patchcore"
    default_layers = ("s8", "s16")
    score_from = "raw"  # the paper's image score: the largest patch distance, before smoothing
    fusable = True  # backbone="a+b": one head per backbone, maps fused (oddeye.methods.fusion)
    # the input frame, chosen on validation data (docs/backbones.md, "Input border")
    default_pad = 16
    # files from before these searched the exact space and chose chunk centres independently
    legacy_defaults = {"search_dim": None, "sequential_chunks": False, "position": 0.0,
                       "image_neighbours": 0, "frame_crop": "taps", "pool_zeros": False,
                       "grid": "first", "cosine": False, "magnitude": 0.0}

    def __init__(self, backbone: str | None = None, layers: Sequence[str] | None = None,
                 kernel: int = 3, equal_layers: bool = True, coreset_ratio: float = 0.1,
                 max_bank: int | None = 10_000, proj_dim: int = PROJ_DIM,
                 chunk_size: int | None = CHUNK_SIZE, search_dim: int | None = None,
                 sequential_chunks: bool = False, position: float | str = "auto",
                 image_neighbours: int = 0, frame_crop: str = "aggregated",
                 pool_zeros: bool = False, grid: str = "first", cosine: bool = True,
                 magnitude: float = 0.0, seed: int = 0):
        super().__init__(backbone, layers)
        self.kernel = kernel
        self.cosine = cosine
        self.magnitude = magnitude
        self.grid = grid
        self.image_neighbours = image_neighbours
        self.frame_crop = frame_crop
        self.pool_zeros = pool_zeros
        self.position = position
        self.equal_layers = equal_layers
        self.coreset_ratio = coreset_ratio
        self.max_bank = max_bank
        self.proj_dim = proj_dim
        self.chunk_size = chunk_size
        self.search_dim = search_dim
        self.sequential_chunks = sequential_chunks
        self.seed = seed

    def check_params(self) -> None:
        """Types, ranges and choices of the hyper-parameters (a ``DataError`` naming the first
        bad one), so a fit fails before any image is decoded. ``search_dim`` needs the
        embedding width, ``layers`` the backbone: ``fit_head`` and ``build_head`` check them."""
        check_number("kernel", self.kernel, low=1, integer=True)
        check_odd_kernel(self.kernel)
        grid_tap(self.layers, self.grid)
        check_choice("frame_crop", self.frame_crop, FRAME_CROPS)
        initial_position(self.position)
        k = self.image_neighbours
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise DataError(f"image_neighbours must be an integer >= 0 (0 = one pooled bank), "
                            f"got {k!r}")
        check_flag("pool_zeros", self.pool_zeros)
        check_stage_scaling(self.cosine, self.equal_layers, self.magnitude)
        if k and self.search_dim is not None:
            raise DataError("image_neighbours searches every patch of the neighbour images "
                            "exactly; it cannot be combined with search_dim")
        check_number("coreset_ratio", self.coreset_ratio, low=0, high=1, low_open=True)
        check_number("max_bank", self.max_bank, low=1, integer=True, none_ok=True)
        check_number("proj_dim", self.proj_dim, low=0, integer=True)
        check_number("chunk_size", self.chunk_size, low=1, integer=True, none_ok=True)
        check_flag("sequential_chunks", self.sequential_chunks)
        check_number("seed", self.seed, low=0, integer=True)

    def build_head(self, channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
        check_layers(self.layers, channels)
        self.check_params()
        return PatchCoreHead(self.layers, sum(channels[c] for c in self.layers), self.kernel,
                             self.equal_layers, initial_position(self.position),
                             self.image_neighbours, self.pool_zeros, self.grid,
                             bool(self.cosine), float(self.magnitude))

    def frame_head(self, head: nn.Module, strides: dict[str, int], pad: int) -> bool:
        """The frame is cut after the aggregation unless ``frame_crop="taps"``."""
        return frame_of(head, self.frame_crop, self.layers, strides, pad)

    def head_from_state(self, channels: dict[str, int], strides: dict[str, int],
                        state: dict[str, torch.Tensor]) -> nn.Module:
        """As the base, plus: a file from before ``search_dim`` has no projection buffers."""
        if "proj_mean" not in state and "bank" in state:
            state = {**state, "proj_mean": torch.zeros(0),
                     "proj_basis": torch.zeros(state["bank"].shape[1], 0)}
        return super().head_from_state(channels, strides, state)

    def fit_choices(self, head: nn.Module) -> str:
        """The position weight ``"auto"`` chose, and the held-out scores it chose from."""
        if self.position != "auto" or not getattr(head, "has_position", False):
            return ""
        return position_choice(head)

    def fit_head(self, head: nn.Module, data: TrainSet) -> None:
        assert isinstance(head, PatchCoreHead)
        dim = head.proj_basis.shape[0]  # the embedding width
        k = self.search_dim
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < dim):
            raise DataError(f"search_dim must be None or an integer in [1, {dim}) for {dim}-d "
                            f"patches, got {k!r}")
        if self.position == "auto":
            plain = torch.cat([head.plain_embed(f)
                               for f in data.iter_features(desc="patchcore features")])
            with tqdm(total=1, desc="position: choosing on held-out images",
                      disable=not data.progress, leave=False) as bar:
                weight, table = choose_position(self, plain, data, proj_dim=self.proj_dim,
                                                chunk_size=self.chunk_size, frame=head.frame)
                bar.update(1)
            head.position.fill_(weight)
            head.position_table = table.to(head.position.device)
            # flattened a slice at a time: one full copy of the patches besides ``plain``
            patches = torch.cat([flat_patches(with_position(plain[i:i + 64], weight))
                                 for i in range(0, plain.shape[0], 64)])
            del plain
        else:
            patches = training_patches(head, data)
        if head.image_neighbours:  # every patch of every image, no pooled bank to select
            head.set_images(patches.view(len(data), -1, patches.shape[1]))
            return
        n = bank_size(patches.shape[0], self.coreset_ratio, self.max_bank)
        if k is not None:
            head.set_projection(*pca_basis(patches, k, seed=self.seed))
            patches = head.to_search_space(patches)
        select = patches
        if head.has_position and float(head.position) == 0 and k is None:
            # zero-weight position columns change no distance; without them the coreset's
            # random projection is the plain model's (identity at 128 dims): the same bank
            select = patches[:, :-2]
        with tqdm(total=1, desc=f"coreset {n}/{patches.shape[0]}", disable=not data.progress,
                  leave=False) as bar:
            idx = coreset_indices(select, n, self.proj_dim, self.chunk_size, self.seed,
                                  sequential=bool(self.sequential_chunks))
            bar.update(1)
        head.set_bank(patches[idx].clone())
