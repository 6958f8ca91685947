"""ResAD (Yao et al., NeurIPS 2024): one model for classes it never saw, from a few normal shots.

Residual features: every feature of a test image minus its nearest neighbour among the features of
k normal reference images of the same class at the same stage (all positions of all references).
Normal residuals are small whatever the class, so their distribution transfers to new classes.
A light feature constraintor per stage (3x3 conv + BN + ReLU) maps residuals into a hypersphere
(abnormal-invariant one-class loss: normal inside, anomalous kept as they were, i.e. far out); a
normalising flow per stage, conditioned on a positional encoding, estimates their density. The map
is the negative log-likelihood per dimension, standardised per stage with statistics of normal
training residuals, averaged over stages at the finest stage's resolution.

Training (``fit_head``) uses the seen classes only (``TrainSet.categories``): per class, k
reference images are drawn from its own training images, the others are queries; training
anomalies are synthetic defects made on the fly from the query images (cut-paste from another
image of the class, noise blobs, scratches; exact masks). ``set_references`` only stores the
reference features of a new class (no gradient step).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from oddeye.errors import DataError
from oddeye.methods import register
from oddeye.methods.base import Method, TrainSet, check_flag, check_layers, check_number
from oddeye.methods.flows import ConditionalFlow, position_encoding

# --------------------------------------------------------------------------------------------
# residual features
# --------------------------------------------------------------------------------------------


def nearest_indices(queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor | None = None,
                    q_block: int = 1024, m_block: int = 2048) -> torch.Tensor:
    """Index of the nearest (Euclidean) row of the (M, D) bank for each (Q, D) query row.

    Exact brute force in (q_block x m_block) tiles of the distance matrix, small enough to stay
    in cache; a running minimum over bank tiles keeps the first of equal distances.
    """
    if bank.shape[0] == 0:
        raise DataError("no reference features: call set_references with good images of the class")
    if bank_sq is None:
        bank_sq = (bank * bank).sum(1)
    bank_t = bank.T
    parts = []
    for s in range(0, queries.shape[0], q_block):
        q = queries[s:s + q_block]
        best, arg = None, None
        for m in range(0, bank.shape[0], m_block):
            # |q|^2 is constant per row, so the smallest |b|^2 - 2 q.b is the nearest neighbour
            d = torch.addmm(bank_sq[m:m + m_block].unsqueeze(0), q, bank_t[:, m:m + m_block],
                            alpha=-2.0)
            val, idx = d.min(dim=1)
            if best is None:
                best, arg = val, idx
            else:
                better = val < best
                best = torch.where(better, val, best)
                arg = torch.where(better, idx + m, arg)
        parts.append(arg)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def residual_map(feat: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """(N, C, h, w) features minus their nearest reference feature (bank rows (M, C))."""
    n, c, h, w = feat.shape
    q = feat.permute(0, 2, 3, 1).reshape(-1, c)
    idx = nearest_indices(q, bank, bank_sq)
    return (q - bank[idx]).view(n, h, w, c).permute(0, 3, 1, 2)


def flatten_positions(feat: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N*h*w, C), rows in (image, y, x) order."""
    return feat.permute(0, 2, 3, 1).reshape(-1, feat.shape[1])


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------


def soft_norm(z: torch.Tensor) -> torch.Tensor:
    """sqrt(|z| + 1) - 1: a norm that grows slower for far points (keeps the loss bounded)."""
    return torch.sqrt(z.norm(dim=1) + 1.0) - 1.0


def occ_loss(z: torch.Tensor, labels: torch.Tensor, target: torch.Tensor,
             radius: float = 0.4) -> torch.Tensor:
    """Abnormal-invariant one-class loss on constrained features ``z`` (P, C).

    Normal rows (label 0) are pulled inside the hypersphere of (soft) radius ``radius``;
    anomalous rows (label 1) are kept equal to their unconstrained residual ``target`` (MSE and
    cosine), so the constraintor cannot pull them in; rows labelled -1 are ignored.
    """
    loss = z.new_zeros(())
    normal = labels == 0
    if normal.any():
        loss = loss + F.relu(soft_norm(z[normal]) - radius).mean()
    bad = labels == 1
    if bad.any():
        za, ta = z[bad], target[bad]
        loss = loss + F.mse_loss(za, ta) + (1.0 - F.cosine_similarity(za, ta, dim=1)).mean()
    return loss


def flow_loss(logp: torch.Tensor, labels: torch.Tensor, boundary: float | None,
              margin: float, push_weight: float) -> torch.Tensor:
    """Maximum likelihood on normal rows (logp per dimension), plus a boundary push-pull.

    With a boundary ``b`` (a low quantile of normal log-likelihoods) and anomalous rows present:
    normal rows below ``b`` are pulled up, anomalous rows above ``b - margin`` pushed down.
    """
    normal, bad = labels == 0, labels == 1
    loss = -logp[normal].mean() if normal.any() else logp.new_zeros(())
    if boundary is not None and bad.any() and push_weight > 0:
        pull = F.relu(boundary - logp[normal]).mean() if normal.any() else 0.0
        push = F.relu(logp[bad] - (boundary - margin)).mean()
        loss = loss + push_weight * (pull + push)
    return loss


# --------------------------------------------------------------------------------------------
# synthetic training defects
# --------------------------------------------------------------------------------------------


def _blob_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """An irregular blob (bool (S, S)) inside a random box of 4-25 % of the image side."""
    bh, bw = (rng.uniform(0.04, 0.25, 2) * size).astype(int) + 3
    y0, x0 = rng.integers(0, size - bh), rng.integers(0, size - bw)
    coarse = torch.from_numpy(rng.random((1, 1, 5, 5)).astype(np.float32))
    field = F.interpolate(coarse, size=(int(bh), int(bw)), mode="bicubic", align_corners=True)[0, 0]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, int(bh)), torch.linspace(-1, 1, int(bw)),
                            indexing="ij")
    inside = (field.numpy() * (1.0 - (yy**2 + xx**2).numpy() * 0.6)) > 0.35
    mask = np.zeros((size, size), bool)
    mask[y0:y0 + bh, x0:x0 + bw] = inside
    return mask


def _line_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A thin random polyline (scratch-like), bool (S, S)."""
    n = int(rng.integers(2, 5))
    pts = rng.uniform(0.1, 0.9, (1, 2)) * size + np.cumsum(rng.normal(0, size * 0.08, (n, 2)), 0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    width = rng.uniform(1.0, 2.5) * size / 256
    mask = np.zeros((size, size), bool)
    for (ya, xa), (yb, xb) in zip(pts[:-1], pts[1:], strict=True):
        dy, dx = yb - ya, xb - xa
        t = np.clip(((yy - ya) * dy + (xx - xa) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
        mask |= (yy - ya - t * dy) ** 2 + (xx - xa - t * dx) ** 2 <= width**2
    return mask


def synthetic_defect(image: np.ndarray, source: np.ndarray, rng: np.random.Generator,
                     min_pixels: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A defective copy of uint8 (S, S, 3) ``image`` and its exact {0,1} mask.

    Kinds (uniform): cut-paste of a shifted, flipped, brightness-changed region of ``source``
    (another good image of the class); a noise blob of random colour; a scratch line. The mask
    keeps only pixels the defect visibly changed (mean absolute change >= 10 grey levels).
    """
    size = image.shape[0]
    for _ in range(20):
        kind = int(rng.integers(3))
        mask = _line_mask(rng, size) if kind == 2 else _blob_mask(rng, size)
        if kind == 0:
            src = source[::-1] if rng.random() < 0.5 else source
            src = src[:, ::-1] if rng.random() < 0.5 else src
            src = np.roll(src, tuple(rng.integers(0, size, 2)), axis=(0, 1))
            content = np.clip(src.astype(np.float32) * rng.uniform(0.6, 1.4), 0, 255)
        else:
            colour = rng.uniform(0, 255, 3).astype(np.float32)
            content = colour + rng.normal(0, rng.uniform(0, 40), (size, size, 1)).astype(np.float32)
        out = image.astype(np.float32)
        out[mask] = np.clip(content[mask], 0, 255)
        out = out.round().astype(np.uint8)
        changed = np.abs(out.astype(np.int16) - image.astype(np.int16)).mean(axis=2) >= 10
        final = mask & changed
        if final.sum() >= min_pixels:
            return out, final.astype(np.uint8)
    return image.copy(), np.zeros((size, size), np.uint8)


def position_labels(masks: torch.Tensor, size: tuple[int, int], min_frac: float = 0.3
                    ) -> torch.Tensor:
    """Per-position labels at feature resolution from (N, S, S) {0,1} masks.

    1 where at least ``min_frac`` of the cell is defective, 0 where neither the cell nor its 8
    neighbours touch a defect (receptive fields overlap), -1 (ignored) in between.
    """
    m = masks.float().unsqueeze(1)
    frac = F.adaptive_avg_pool2d(m, size)
    near = F.max_pool2d((frac > 0).float(), 3, stride=1, padding=1)
    labels = torch.full_like(frac, -1.0)
    labels[near == 0] = 0.0
    labels[frac >= min_frac] = 1.0
    return labels[:, 0].long()


# --------------------------------------------------------------------------------------------
# the head
# --------------------------------------------------------------------------------------------


def split_sign(r: torch.Tensor) -> torch.Tensor:
    """[relu(r), relu(-r)] along channels: a non-negative code of a signed residual, lossless."""
    return torch.cat([F.relu(r), F.relu(-r)], dim=1)


class ConvBnRelu(nn.Module):
    """The feature constraintor of one stage: 3x3 conv, BatchNorm, ReLU.

    With ``out_channels = 2 * channels`` the ReLU need not lose the sign of a residual (the conv
    can learn ``[r, -r]``); the abnormal-invariance target is then ``split_sign(r)``.
    """

    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.conv = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class ResADHead(nn.Module):
    """Features -> standardised negative log-likelihood map at the first layer's resolution.

    Buffers ``ref_<layer>`` / ``refsq_<layer>`` hold the reference features of the class being
    inspected (set by ``set_reference_features``); ``nll_mean`` / ``nll_std`` standardise each
    stage's score with statistics of normal training residuals, so stages weigh equally.
    """

    def __init__(self, layers: Sequence[str], channels: dict[str, int], pos_dim: int = 32,
                 n_coupling: int = 4, hidden: int = 64, clamp: float = 2.0,
                 max_size: int | None = 32, sign_split: bool = True):
        super().__init__()
        self.layers = list(layers)
        self.pos_dim = int(pos_dim)
        self.max_size = int(max_size) if max_size else None
        self.sign_split = bool(sign_split)
        out = {k: (2 if sign_split else 1) * channels[k] for k in self.layers}
        self.constraintors = nn.ModuleDict({k: ConvBnRelu(channels[k], out[k])
                                            for k in self.layers})
        self.flows = nn.ModuleDict({
            k: ConditionalFlow(out[k], pos_dim, n_coupling, hidden, clamp, seed=i)
            for i, k in enumerate(self.layers)})
        for k in self.layers:
            self.register_buffer(f"ref_{k}", torch.zeros(0, channels[k]))
            self.register_buffer(f"refsq_{k}", torch.zeros(0))
        self.register_buffer("nll_mean", torch.zeros(len(self.layers)))
        self.register_buffer("nll_std", torch.ones(len(self.layers)))
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}

    # ---- references
    def set_reference_features(self, banks: dict[str, torch.Tensor]) -> None:
        """Store (M, C) reference features per layer (copied, detached, contiguous)."""
        for k in self.layers:
            bank = banks[k].detach().float().clone().contiguous()
            setattr(self, f"ref_{k}", bank)
            setattr(self, f"refsq_{k}", (bank * bank).sum(1))

    def n_references(self) -> dict[str, int]:
        """Number of reference feature vectors per layer (0 before ``set_references``)."""
        return {k: int(getattr(self, f"ref_{k}").shape[0]) for k in self.layers}

    # ---- pieces of the forward pass
    def invariance_target(self, res: torch.Tensor) -> torch.Tensor:
        """What the constraintor should keep anomalous residuals as (its output channels)."""
        return split_sign(res) if self.sign_split else res

    def positions(self, h: int, w: int) -> torch.Tensor:
        """(h*w, pos_dim) positional encoding rows in (y, x) order (cached per size)."""
        device = self.nll_mean.device
        key = (h, w, str(device))
        if key not in self._pos_cache:
            enc = position_encoding(self.pos_dim, h, w)[None].to(device)
            self._pos_cache[key] = flatten_positions(enc)
        return self._pos_cache[key]

    def prepare(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The maps that are matched: layers larger than ``max_size`` average-pooled down to it."""
        out = {}
        for k in self.layers:
            f = feats[k]
            h, w = f.shape[-2:]
            if self.max_size and max(h, w) > self.max_size:
                f = F.adaptive_avg_pool2d(f, (min(h, self.max_size), min(w, self.max_size)))
            out[k] = f
        return out

    def residuals(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Residual feature maps against the stored references, per layer."""
        feats = self.prepare(feats)
        return {k: residual_map(feats[k], getattr(self, f"ref_{k}"), getattr(self, f"refsq_{k}"))
                for k in self.layers}

    def stage_nll(self, layer: str, constrained: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per dimension of constrained (N, C, h, w) maps -> (N, h, w)."""
        _, c, h, w = constrained.shape
        x = constrained.flatten(2).transpose(1, 2)  # (N, h*w, C); positions broadcast over N
        logp = self.flows[layer].log_prob(x, self.positions(h, w))
        return (-logp / c).reshape(-1, h, w)

    def score_residuals(self, res: dict[str, torch.Tensor]) -> torch.Tensor:
        """Residual maps -> combined standardised NLL map at the first layer's resolution."""
        size = res[self.layers[0]].shape[-2:]
        total = None
        for i, k in enumerate(self.layers):
            nll = self.stage_nll(k, self.constraintors[k](res[k]))
            s = (nll - self.nll_mean[i]) / self.nll_std[i]
            if s.shape[-2:] != size:
                s = F.interpolate(s.unsqueeze(1), size=size, mode="bilinear",
                                  align_corners=False)[:, 0]
            total = s if total is None else total + s
        return total / len(self.layers)

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.score_residuals(self.residuals(feats))

    def for_export(self) -> nn.Module:
        """This head with batch-independent matching tiles, for a traced (ONNX) graph."""
        if min(self.n_references().values()) == 0:
            raise DataError("resad head has no reference features: call set_references before "
                            "exporting (the references are part of the exported graph)")
        return ExportableResADHead(self)


class ExportableResADHead(nn.Module):
    """The same maps as ``ResADHead``, with the distance matrix tiled over the bank only.

    The number of tiles then depends on the stored references alone, not on the batch, so a
    traced graph with a free batch axis computes every query (``ResADHead`` also tiles queries,
    which a tracer would freeze at the example batch).
    """

    def __init__(self, head: ResADHead, m_block: int = 2048):
        super().__init__()
        self.head = head
        self.m_block = int(m_block)

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        head = self.head
        feats = head.prepare(feats)
        res = {}
        for k in head.layers:
            f = feats[k]
            _, c, h, w = f.shape
            q = flatten_positions(f)
            bank, bank_sq = getattr(head, f"ref_{k}"), getattr(head, f"refsq_{k}")
            idx = nearest_indices(q, bank, bank_sq, q_block=2**62, m_block=self.m_block)
            res[k] = (q - bank[idx]).reshape(-1, h, w, c).permute(0, 3, 1, 2)
        return head.score_residuals(res)


# --------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------


@register
class ResAD(Method):
    """ResAD: residual features vs k reference shots, constraintor + per-stage conditional flow.

    Hyper-parameters: ``train_shots`` (reference counts drawn per query while training, so the
    model sees the residual statistics of several k), ``queries_per_class`` (cap on query images
    per seen class, which keeps classes balanced and training time bounded), ``epochs`` (the first
    ``warmup_epochs`` use normal residuals only), ``anomalies`` ("synthetic" or "none"),
    ``max_size`` (feature maps larger than this are average-pooled down to it before matching:
    MobileNetV2's s4 at 256 px goes 64x64 -> 32x32, which makes the exact all-positions matching
    ~16x cheaper and keeps test time within budget on two CPU cores; None = native resolution),
    ``sign_split`` (constraintors with 2C channels whose invariance target is ``[relu(r),
    relu(-r)]``, so a residual's sign survives the ReLU; checked on synthetic classes, see
    docs/resad.md).
    """

    name = "resad"
    default_layers = ("s4", "s8", "s16")
    needs_references = True
    # files from before the sign split matched and scored plain residuals
    legacy_defaults = {"sign_split": False}

    def __init__(self, backbone: str | None = None, layers: Sequence[str] | None = None,
                 train_shots: Sequence[int] = (2, 4, 8), queries_per_class: int = 16,
                 epochs: int = 10, warmup_epochs: int = 2, train_batch: int = 8,
                 flow_batch: int = 2048, lr: float = 2e-4, weight_decay: float = 5e-4,
                 radius: float = 0.4, n_coupling: int = 4, hidden: int = 64, pos_dim: int = 32,
                 clamp: float = 2.0, max_size: int | None = 32, sign_split: bool = True,
                 anomalies: str = "synthetic", push_weight: float = 1.0, margin: float = 0.1,
                 boundary_quantile: float = 0.05, default_shots: int = 2, seed: int = 0):
        super().__init__(backbone, layers)
        if isinstance(train_shots, str) or not isinstance(train_shots, Sequence) or any(
                isinstance(k, bool) or not isinstance(k, numbers.Integral) for k in train_shots):
            raise DataError(f"train_shots must be positive integers, got {train_shots!r}")
        self.train_shots = tuple(int(k) for k in train_shots)
        self.queries_per_class = queries_per_class
        self.epochs = epochs
        self.warmup_epochs = warmup_epochs
        self.train_batch = train_batch
        self.flow_batch = flow_batch
        self.lr = lr
        self.weight_decay = weight_decay
        self.radius = radius
        self.n_coupling = n_coupling
        self.hidden = hidden
        self.pos_dim = pos_dim
        self.clamp = clamp
        self.max_size = max_size
        self.sign_split = sign_split
        self.anomalies = anomalies
        self.push_weight = push_weight
        self.margin = margin
        self.boundary_quantile = boundary_quantile
        self.default_shots = default_shots
        self.seed = seed
        if anomalies not in ("synthetic", "none"):
            raise DataError(f"anomalies must be 'synthetic' or 'none', got {anomalies!r}")
        if not self.train_shots or min(self.train_shots) < 1:
            raise DataError(f"train_shots must be positive integers, got {train_shots!r}")
        check_number("queries_per_class", queries_per_class, low=1, integer=True)
        check_number("epochs", epochs, low=1, integer=True)
        check_number("warmup_epochs", warmup_epochs, low=0, integer=True)
        check_number("train_batch", train_batch, low=1, integer=True)
        check_number("flow_batch", flow_batch, low=1, integer=True)
        check_number("lr", lr, low=0, low_open=True)
        check_number("weight_decay", weight_decay, low=0)
        check_number("radius", radius, low=0)
        check_number("n_coupling", n_coupling, low=1, integer=True)
        check_number("hidden", hidden, low=1, integer=True)
        check_number("pos_dim", pos_dim, low=4, integer=True)
        if pos_dim % 4:
            raise DataError(f"pos_dim must be a positive multiple of 4, got {pos_dim!r}")
        check_number("clamp", clamp, low=0, low_open=True)
        check_number("max_size", max_size, low=0, integer=True, none_ok=True)  # None/0: native
        check_flag("sign_split", sign_split)
        check_number("push_weight", push_weight, low=0)
        check_number("margin", margin, low=0)
        check_number("boundary_quantile", boundary_quantile, low=0, high=1)
        check_number("default_shots", default_shots, low=1, integer=True)
        check_number("seed", seed, low=0, integer=True)

    def build_head(self, channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
        check_layers(self.layers, channels)
        with torch.random.fork_rng(devices=[]):  # the initial weights are the seed's too
            torch.manual_seed(self.seed)
            return ResADHead(self.layers, channels, self.pos_dim, self.n_coupling, self.hidden,
                             self.clamp, self.max_size, self.sign_split)

    # ---- references (test time: no gradient step)
    def reference_banks(self, head: ResADHead, refs: TrainSet) -> dict[str, torch.Tensor]:
        """(M, C) reference features per layer: every position of every reference image."""
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in head.layers}
        with torch.inference_mode():
            for feats in refs.iter_features(desc="reference features"):
                feats = head.prepare(feats)
                for k in head.layers:
                    parts[k].append(flatten_positions(feats[k]).clone())
        return {k: torch.cat(v) for k, v in parts.items()}

    def set_references(self, head: nn.Module, refs: TrainSet) -> None:
        """Store the reference features of the class to inspect; parameters are not touched."""
        assert isinstance(head, ResADHead)
        if len(refs) == 0:
            raise DataError("set_references needs at least one good reference image")
        with torch.inference_mode():
            banks = self.reference_banks(head, refs)
        with torch.no_grad():
            head.set_reference_features({k: v.clone() for k, v in banks.items()})
        head.eval()

    # ---- training on the seen classes
    def _split(self, data: TrainSet, rng: np.random.Generator
               ) -> dict[str, tuple[list[int], list[int]]]:
        """Per class: (reference indices, query indices), drawn from its own training images."""
        cats = list(data.categories) if data.categories else ["all"] * len(data)
        if not data.categories:
            warnings.warn("resad: no categories given, training as one class; ResAD generalises "
                          "better when trained on several classes", UserWarning, stacklevel=3)
        n_refs = max(self.train_shots)
        out = {}
        for cat in sorted(set(cats)):
            idx = [i for i, c in enumerate(cats) if c == cat]
            if len(idx) < 2:
                raise DataError(f"resad: class {cat!r} has {len(idx)} training image(s); each "
                                "class needs at least 2 (references + queries)")
            perm = [idx[j] for j in rng.permutation(len(idx))]
            k = min(n_refs, len(idx) - 1)
            out[cat] = (perm[:k], perm[k:k + self.queries_per_class])
        return out

    def _features(self, data: TrainSet, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone features of uint8 (N, 3, S, S) images, batch by batch, without gradients."""
        parts: dict[str, list[torch.Tensor]] = {}
        bs = max(1, data.batch_size)
        with torch.no_grad():
            for s in range(0, images.shape[0], bs):
                for k, v in data.extractor(data.inputs(images[s:s + bs])).items():
                    parts.setdefault(k, []).append(v.float())
        return {k: torch.cat(v) for k, v in parts.items()}

    def _training_residuals(self, head: ResADHead, data: TrainSet, rng: np.random.Generator
                            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor],
                                       torch.Tensor, dict[str, list[int]]]:
        """Residual maps and position labels of every (clean or defective) query image.

        Returns (residuals per layer, labels per layer, is_defective flags, refs per class).
        """
        split = self._split(data, rng)
        res: dict[str, list[torch.Tensor]] = {k: [] for k in head.layers}
        lab: dict[str, list[torch.Tensor]] = {k: [] for k in head.layers}
        flags: list[torch.Tensor] = []
        bar = tqdm(total=sum(len(q) for _, q in split.values()), desc="resad residuals",
                   unit="img", disable=not data.progress, leave=False)
        for ref_idx, query_idx in split.values():
            if not query_idx:
                continue
            ref_feats = head.prepare(self._features(data, data.images[ref_idx]))
            queries = data.images[query_idx]
            size = int(queries.shape[-1])
            shots = rng.choice([k for k in self.train_shots if k <= len(ref_idx)]
                               or [len(ref_idx)], size=len(query_idx))
            banks = {k: [flatten_positions(ref_feats[k][: int(n)]) for n in shots]
                     for k in head.layers}
            clean = head.prepare(self._features(data, queries))
            clean_res = {k: torch.cat([residual_map(clean[k][i:i + 1], banks[k][i])
                                       for i in range(len(query_idx))]) for k in head.layers}
            no_defect = torch.zeros(len(query_idx), size, size, dtype=torch.uint8)
            versions = [(clean_res, no_defect)]
            if self.anomalies == "synthetic":
                imgs, masks = self._defective(data.images, query_idx, rng)
                feats = head.prepare(self._features(data, imgs))
                # a defect only changes features whose receptive field it touches: the clean
                # residual is reused everywhere else (same references), only changed ones matched
                bad_res = {}
                for k in head.layers:
                    r = clean_res[k].clone()
                    for i in range(len(query_idx)):
                        changed = (feats[k][i] != clean[k][i]).any(dim=0)
                        if changed.any():
                            q = feats[k][i][:, changed].T
                            idx = nearest_indices(q, banks[k][i])
                            r[i][:, changed] = (q - banks[k][i][idx]).T
                    bad_res[k] = r
                versions.append((bad_res, masks))
            for r, masks in versions:
                for k in head.layers:
                    lab[k].append(position_labels(masks, tuple(r[k].shape[-2:])).to(r[k].device))
                    res[k].append(r[k])
                flags.append(masks.flatten(1).amax(1) > 0)
            bar.update(len(query_idx))
        bar.close()
        if not flags:
            raise DataError("resad: no query images left after drawing references")
        refs = {cat: r for cat, (r, _) in split.items()}
        return ({k: torch.cat(v) for k, v in res.items()},
                {k: torch.cat(v) for k, v in lab.items()}, torch.cat(flags), refs)

    @staticmethod
    def _defective(images: torch.Tensor, query_idx: list[int], rng: np.random.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthetic defective copies of the queries; cut-paste sources are other class images."""
        outs, masks = [], []
        for j, i in enumerate(query_idx):
            n = len(query_idx)
            src = query_idx[(j + 1 + int(rng.integers(max(1, n - 1)))) % n]
            img = images[i].permute(1, 2, 0).numpy()
            bad, m = synthetic_defect(img, images[src].permute(1, 2, 0).numpy(), rng)
            outs.append(torch.from_numpy(bad).permute(2, 0, 1))
            masks.append(torch.from_numpy(m))
        return torch.stack(outs), torch.stack(masks)

    def fit_head(self, head: nn.Module, data: TrainSet) -> None:
        """Train constraintors and flows on residuals of the seen classes; then set default refs."""
        assert isinstance(head, ResADHead)
        rng = np.random.default_rng(self.seed)
        with torch.random.fork_rng(devices=[]):  # seeded draws without moving the caller's RNG
            torch.manual_seed(self.seed)
            res, lab, defective, refs = self._training_residuals(head, data, rng)
            self._train(head, res, lab, defective, rng, data.progress)
        self._fit_score_stats(head, res, lab, defective)
        # default references: a few shots of every seen class pooled, so the fitted model can
        # score seen-class images (threshold estimation) before a new class's refs are given
        pooled = [i for r in refs.values() for i in r[: self.default_shots]]
        sub = TrainSet(images=data.images[pooled], extractor=data.extractor,
                       normalize=data.normalize, batch_size=data.batch_size, progress=False)
        self.set_references(head, sub)

    def _train(self, head: ResADHead, res: dict[str, torch.Tensor], lab: dict[str, torch.Tensor],
               defective: torch.Tensor, rng: np.random.Generator, progress: bool) -> None:
        opt_c = torch.optim.Adam(head.constraintors.parameters(), lr=self.lr,
                                 weight_decay=self.weight_decay)
        opt_f = torch.optim.Adam(head.flows.parameters(), lr=self.lr)
        boundary: dict[str, float | None] = {k: None for k in head.layers}
        clean = torch.nonzero(~defective)[:, 0].cpu().numpy()
        device = res[head.layers[0]].device  # where the residuals (and head) live
        everything = np.arange(len(defective))
        gen = torch.Generator().manual_seed(self.seed)
        head.train()
        self._init_actnorm(head, res, lab, clean[: 4 * self.train_batch])
        bar = tqdm(range(self.epochs), desc="resad epochs", disable=not progress, leave=False)
        for epoch in bar:
            with_anomalies = epoch >= self.warmup_epochs and self.anomalies != "none"
            order = rng.permutation(everything if with_anomalies else clean)
            total, steps = 0.0, 0
            for s in range(0, len(order), self.train_batch):
                b = torch.from_numpy(np.sort(order[s:s + self.train_batch]))
                if len(b) < 2:  # BatchNorm needs more than one sample
                    continue
                loss_c = torch.zeros((), device=device)
                constrained = {}
                for k in head.layers:
                    z = head.constraintors[k](res[k][b])
                    constrained[k] = z
                    target = head.invariance_target(res[k][b])
                    loss_c = loss_c + occ_loss(flatten_positions(z), lab[k][b].reshape(-1),
                                               flatten_positions(target), self.radius)
                opt_c.zero_grad()
                loss_c.backward()
                opt_c.step()
                loss_f = torch.zeros((), device=device)
                for k in head.layers:
                    z = constrained[k].detach()
                    n, c, h, w = z.shape
                    x, y = flatten_positions(z), lab[k][b].reshape(-1)
                    cond = head.positions(h, w).repeat(n, 1)
                    keep = _sample_rows(y, self.flow_batch, gen)
                    logp = head.flows[k].log_prob(x[keep], cond[keep]) / c
                    loss_f = loss_f + flow_loss(logp, y[keep], boundary[k], self.margin,
                                                self.push_weight if with_anomalies else 0.0)
                    normal = logp.detach()[y[keep] == 0]
                    if normal.numel():
                        q = float(torch.quantile(normal, self.boundary_quantile))
                        boundary[k] = q if boundary[k] is None else 0.9 * boundary[k] + 0.1 * q
                opt_f.zero_grad()
                loss_f.backward()
                nn.utils.clip_grad_norm_(head.flows.parameters(), 10.0)
                opt_f.step()
                total += float(loss_c.detach()) + float(loss_f.detach())
                steps += 1
            bar.set_postfix(loss=f"{total / max(1, steps):.3f}")
        bar.close()
        head.zero_grad(set_to_none=True)
        head.eval()

    @staticmethod
    def _init_actnorm(head: ResADHead, res: dict[str, torch.Tensor], lab: dict[str, torch.Tensor],
                      idx: np.ndarray) -> None:
        """Fit each flow's ActNorm to the constrained normal residuals of a few clean queries."""
        b = torch.from_numpy(np.sort(idx))
        with torch.no_grad():
            for k in head.layers:
                z = flatten_positions(head.constraintors[k](res[k][b]))
                y = lab[k][b].reshape(-1)
                head.flows[k].actnorm.init_from(z[y == 0] if (y == 0).sum() > 1 else z)

    @staticmethod
    def _fit_score_stats(head: ResADHead, res: dict[str, torch.Tensor],
                         lab: dict[str, torch.Tensor], defective: torch.Tensor) -> None:
        """Mean and std of each stage's NLL over normal positions of the clean queries."""
        clean = torch.nonzero(~defective)[:, 0]
        head.eval()
        with torch.no_grad():
            for i, k in enumerate(head.layers):
                vals = []
                for s in range(0, len(clean), 16):
                    b = clean[s:s + 16]
                    nll = head.stage_nll(k, head.constraintors[k](res[k][b]))
                    vals.append(nll.reshape(-1)[lab[k][b].reshape(-1) == 0])
                v = torch.cat(vals)
                head.nll_mean[i] = v.mean()
                head.nll_std[i] = v.std().clamp_min(1e-6) if v.numel() > 1 else 1.0


def _sample_rows(labels: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """Up to ``n`` row indices with label >= 0: all anomalous rows up to half, normal ones after."""
    bad = torch.nonzero(labels == 1)[:, 0]
    good = torch.nonzero(labels == 0)[:, 0]
    if bad.numel() > n // 2:
        bad = bad[torch.randperm(bad.numel(), generator=gen)[: n // 2]]
    room = n - bad.numel()
    if good.numel() > room:
        good = good[torch.randperm(good.numel(), generator=gen)[:room]]
    return torch.cat([good, bad])
