"""A semi-supervised patch head for images: a few labelled defects, loss on anomalies only.

The AnoOnly idea (Zhou et al., 2023) on image patches. Inputs per patch: the PatchCore-style
aggregated backbone feature plus its (standardised) nearest-neighbour distance to a bank of normal
patches. The scorer is ``1x1 conv -> ReLU -> BatchNorm (no affine) -> 1x1 conv (no bias)``:

- ``anoonly=True``: the loss is only the deviation hinge ``max(0, margin - s)`` on patches of the
  labelled defects (inside their masks; without a mask, the top 10% patches by distance). Normal
  patches get **no loss term**; they enter every batch (about 8 normal patches per anomalous one),
  so BatchNorm's batch statistics are theirs: normal training scores are centred at 0, and
  the only way to raise the anomalies is a direction in which they differ from the normal bulk.
  Without the BN affine shift and the output bias there is no trivial "raise everything" solution.
- ``anoonly=False`` (DevNet-style base): adds the ``|s|`` term on normal patches, the usual
  deviation loss, and keeps the same network.

With ``distance_prior=True`` (default) the patch score is PatchCore's patch score, standardised,
*plus* the learned term: the unsupervised detector is the prior, and the few labels only add to it.
The prior is PatchCore exactly (same embedding with ``equal_layers``, a coreset bank of *all* good
training images, the same ``position`` term, chosen with ``position="auto"`` by PatchCore's rule on
the good images alone, the image score from the raw map), so with the learned term at 0 the head
ranks images and pixels as PatchCore does (unit-length stages, ``cosine``, included: the
head follows PatchCore's default since the twenty-eighth session; ``cosine=False`` is the
raw-feature head files from before load as). The position columns enter both banks' distances, not
the learned term's feature input: a few labelled defects must not teach it where defects lie.
A defect type that is not among the K labelled ones is then still scored by its distance,
instead of by a direction fitted to a handful of examples. BN
centring keeps the learned term at 0 on average over normal *training* patches; on new good
images of six synthetic classes it averaged -0.54 to +0.06 (``benchmarks/anoonly_head_shift.py``).

The learned term's distance input comes from a bank of half of the good images
(``input_bank``); the head trains on patches of the other half, so their distances are realistic
(a bank containing a patch would give it distance 0), and it keeps that input at inference since
distances to the twice denser full bank are smaller (by 0.09 to 0.45 standard deviations on the
good test patches of six synthetic classes, ``benchmarks/anoonly_head_shift.py``). The prior uses
PatchCore's bank of all good images (``bank``). Inference therefore runs two nearest-neighbour
searches.

The gate: with no loss on normal patches nothing bounds the learned term's spread there. On
held-out good images of the three shared sets (``benchmarks/anoonly_head_good_spread.py``; no test
image scored) it had a standard deviation of 1.6-3.8 against the prior's 1.0-1.1, its 99.9%
quantile (4.5-9.4) reached its median on the labelled defects it was trained on (4.1-7.4), and it
lifted a good image's largest patch score from 2.7-3.6 to 6.6-9.3 on average, reordering the good
images (rank correlation with the prior's image scores 0.26-0.86): noise the image score, a
maximum, picks up. So at inference the learned term may count only above a floor,
``max(0, learned - floor)``, the floor being a quantile of it on good images kept out of the
head's training (a quarter of the good images it would train on). ``gate="cv"`` (default)
chooses the quantile among ``GATE_QUANTILES`` (max, 99.9%, 99%, or no gate) on the training
data: each labelled defect is left out in turn, the head is retrained on the others, and the
candidate under which the left-out defect outscores the held-out good images most often wins
(ties to the safer gate;
with one labelled defect, the max). ``gate="max"`` always takes the max, so good patches keep
the prior's score; in a first form (the max over the head's own training patches) it made the
head PatchCore again on tire (K = 5: 0.825 / 0.987 image / pixel AUROC for both): the learned
term cleared it almost nowhere. ``gate="off"`` adds the whole term, as files from before it do.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

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
from oddeye.methods.coreset import coreset_indices
from oddeye.methods.neighbours import nearest_distance
from oddeye.methods.patchcore import (
    FRAME_CROPS,
    PatchCore,
    aggregate,
    bank_size,
    check_odd_kernel,
    check_stage_scaling,
    choose_position,
    cut_frame,
    frame_of,
    grid_tap,
    initial_position,
    position_choice,
    with_position,
)
from oddeye.postprocess import image_score


class AnoOnlyPatchHead(nn.Module):
    """Features -> per-patch score map (normal patches centred near 0, anomalies high)."""

    def __init__(self, layers: Sequence[str], dim: int, kernel: int = 3, hidden: int = 64,
                 distance_prior: bool = True, equal_layers: bool = True,
                 position: float | None = None, grid: str = "first", cosine: bool = False):
        super().__init__()
        self.layers, self.kernel = list(layers), int(kernel)
        grid_tap(self.layers, grid)  # a bad value fails before any feature is computed
        self.grid = grid  # PatchCore's patch grid (``grid_tap``)
        self.distance_prior = bool(distance_prior)
        self.equal_layers = bool(equal_layers)
        self.cosine = bool(cosine)  # PatchCore's unit-length stages (``aggregate``)
        # as PatchCore's: None, no position columns (files from before them); a number, two
        # coordinate columns in both banks' distances (never in the learned term's features)
        self.has_position = position is not None
        bank_dim = dim + 2 if self.has_position else dim
        if self.has_position:
            self.register_buffer("position", torch.tensor(float(position)))
            self.register_buffer("position_table", torch.zeros(0, 3, dtype=torch.float64))
        # PatchCore's bank over all good images (the prior) and the half bank whose distances
        # the learned term was trained on (its input): each sees at inference what it saw in fit
        self.register_buffer("bank", torch.zeros(0, bank_dim))
        self.register_buffer("bank_sq", torch.zeros(0))
        self.register_buffer("input_bank", torch.zeros(0, bank_dim))
        self.register_buffer("input_bank_sq", torch.zeros(0))
        self.frame = 0  # input frame (cells) cut after aggregation, as PatchCore's
        self.register_buffer("dist_stats", torch.tensor([0.0, 1.0]))  # mean, std of normal dists
        # the gate, set by fit: when ``gate_on`` is 1 only the learned term's excess over
        # ``learned_floor`` (its ``gate_quantile`` on held-out good patches) is added
        self.register_buffer("gate_on", torch.tensor(0.0))
        self.register_buffer("learned_floor", torch.tensor(0.0))
        self.register_buffer("gate_quantile", torch.tensor(float("nan")))
        self.hidden = nn.Conv2d(dim + 1, hidden, 1)
        self.bn = nn.BatchNorm2d(hidden, affine=False)
        self.score = nn.Conv2d(hidden, 1, 1, bias=False)

    def embed(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """PatchCore's patch embedding (same aggregation, layer weighting, grid and frame), no
        position."""
        return cut_frame(aggregate(feats, self.layers, self.kernel, self.equal_layers,
                                   grid=self.grid, cosine=self.cosine), self.frame)

    def placed(self, emb: torch.Tensor) -> torch.Tensor:
        """``emb`` as the banks hold it: with the weighted position columns when it has them."""
        return with_position(emb, self.position) if self.has_position else emb

    def set_bank(self, patches: torch.Tensor, n: int, seed: int, which: str = "bank") -> None:
        """A greedy-coreset bank of ``n`` of the ``placed`` ``patches``, as PatchCore selects
        it, stored as ``which`` (``"bank"``: the prior's; ``"input_bank"``: the learned term's
        input)."""
        # zero-weight columns change no distance; selecting without them keeps PatchCore's bank
        zero = self.has_position and float(self.position) == 0
        select = patches[:, :-2] if zero else patches
        bank = patches[coreset_indices(select, n, seed=seed)].contiguous()
        setattr(self, which, bank)
        setattr(self, f"{which}_sq", (bank * bank).sum(1))

    def _distance(self, emb: torch.Tensor, bank: torch.Tensor,
                  bank_sq: torch.Tensor) -> torch.Tensor:
        """(N, 1, h, w) standardised nearest-neighbour distance of every patch of the
        (position-free) ``emb`` to ``bank``."""
        emb = self.placed(emb)
        n, d, h, w = emb.shape
        q = emb.permute(0, 2, 3, 1).reshape(-1, d)
        dist = nearest_distance(q, bank, bank_sq).view(n, 1, h, w)
        return (dist - self.dist_stats[0]) / self.dist_stats[1]

    def inputs(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, D + 1, h, w): aggregated features and the standardised distance to the half bank."""
        return self._inputs_of(self.embed(feats))

    def _inputs_of(self, emb: torch.Tensor) -> torch.Tensor:
        return torch.cat([emb, self._distance(emb, self.input_bank, self.input_bank_sq)], dim=1)

    def learned(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D + 1, h, w) inputs -> (N, h, w) learned term (as trained, ungated)."""
        return self.score(self.bn(F.relu(self.hidden(x))))[:, 0]

    def added(self, x: torch.Tensor) -> torch.Tensor:
        """What the learned term adds at inference: all of it, or with the gate on only its
        excess over ``learned_floor`` (so good patches below it keep the prior's score)."""
        return gated(self.learned(x), self.gate_on, self.learned_floor)

    def scorer(self, x: torch.Tensor) -> torch.Tensor:
        """Training-time score: the input distance stands in for the prior (both banks are built
        the same way; the prior's is twice as dense)."""
        return x[:, -1] + self.learned(x) if self.distance_prior else self.learned(x)

    def terms(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(prior, added), each (N, h, w): PatchCore's standardised distance to the full bank
        (zeros without ``distance_prior``) and what the learned term adds; their sum is the
        score map. Separate so a diagnosis can say what the labels changed."""
        emb = self.embed(feats)
        added = self.added(self._inputs_of(emb))
        if not self.distance_prior:
            return torch.zeros_like(added), added
        return self._distance(emb, self.bank, self.bank_sq)[:, 0], added

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embed(feats)
        x = self._inputs_of(emb)
        if not self.distance_prior:
            return self.added(x)
        return self._distance(emb, self.bank, self.bank_sq)[:, 0] + self.added(x)


def gated(learned: torch.Tensor, on: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """``max(0, learned - floor)`` where ``on``, else ``learned`` (a graph without branches)."""
    return torch.where(on > 0, (learned - floor).clamp_min(0.0), learned)


#: gate candidates tried by ``gate="cv"``, safest first: the quantile of the learned term on
#: held-out good patches above which it counts (``None``: the whole term, no gate)
GATE_QUANTILES: tuple[float | None, ...] = (1.0, 0.999, 0.99, None)
GATES = ("cv", "max", "off")


@register
class AnoOnlyHead(Method):
    """Semi-supervised patch head (``anoonly-head``): needs a few labelled defective images."""

    name = "anoonly-head"
    default_layers = ("s8", "s16")
    needs_labels = True
    score_from = "raw"  # as PatchCore, its prior
    default_pad = PatchCore.default_pad  # its prior is PatchCore, frame included
    # files from before the gate added the whole term; before the position, none had one
    legacy_defaults = {"gate": "off", "position": 0.0, "frame_crop": "taps", "grid": "first",
                       "cosine": False}

    def __init__(self, backbone: str | None = None, layers: Sequence[str] | None = None,
                 anoonly: bool = True, kernel: int = 3, hidden: int = 64,
                 coreset_ratio: float = 0.1, max_bank: int | None = 10_000,
                 margin: float = 5.0, steps: int = 300,
                 normal_per_step: int = 2048, anomalous_per_step: int = 256, lr: float = 1e-3,
                 distance_prior: bool = True, equal_layers: bool = True, gate: str = "cv",
                 position: float | str = "auto", frame_crop: str = "aggregated",
                 grid: str = "first", cosine: bool = True, seed: int = 0):
        super().__init__(backbone, layers)
        self.anoonly = anoonly
        self.cosine = cosine
        self.grid = grid
        self.position = position
        self.frame_crop = frame_crop
        self.gate = gate
        self.distance_prior = distance_prior
        self.equal_layers = equal_layers
        self.kernel = kernel
        self.hidden = hidden
        self.coreset_ratio = coreset_ratio
        self.max_bank = max_bank
        self.margin = margin
        self.steps = steps
        self.normal_per_step = normal_per_step
        self.anomalous_per_step = anomalous_per_step
        self.lr = lr
        self.seed = seed

    def check_params(self) -> None:
        """Types and ranges of the numeric, true/false and choice hyper-parameters (a
        ``DataError`` naming the first bad one), so a fit fails before any image is decoded."""
        check_flag("anoonly", self.anoonly)
        check_number("kernel", self.kernel, low=1, integer=True)
        check_odd_kernel(self.kernel)
        check_number("hidden", self.hidden, low=1, integer=True)
        check_number("coreset_ratio", self.coreset_ratio, low=0, high=1, low_open=True)
        check_number("max_bank", self.max_bank, low=1, integer=True, none_ok=True)
        check_number("margin", self.margin, low=0, low_open=True)
        check_number("steps", self.steps, low=0, integer=True)
        check_number("normal_per_step", self.normal_per_step, low=1, integer=True)
        check_number("anomalous_per_step", self.anomalous_per_step, low=1, integer=True)
        check_number("lr", self.lr, low=0, low_open=True)
        check_flag("distance_prior", self.distance_prior)
        check_stage_scaling(self.cosine, self.equal_layers)
        check_choice("gate", self.gate, GATES)
        grid_tap(self.layers, self.grid)
        initial_position(self.position)
        check_choice("frame_crop", self.frame_crop, FRAME_CROPS)
        check_number("seed", self.seed, low=0, integer=True)

    def build_head(self, channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
        check_layers(self.layers, channels)
        self.check_params()
        with torch.random.fork_rng(devices=[]):  # the initial weights are the seed's too
            torch.manual_seed(self.seed)
            return AnoOnlyPatchHead(self.layers, sum(channels[k] for k in self.layers),
                                    self.kernel, self.hidden, self.distance_prior,
                                    self.equal_layers, initial_position(self.position),
                                    self.grid, bool(self.cosine))

    def frame_head(self, head: nn.Module, strides: dict[str, int], pad: int) -> bool:
        """As PatchCore's (``frame_crop``): the frame is cut after the aggregation."""
        return frame_of(head, self.frame_crop, self.layers, strides, pad)

    def head_from_state(self, channels: dict[str, int], strides: dict[str, int],
                        state: dict[str, torch.Tensor]) -> nn.Module:
        # files from before the gate have none: they add the whole learned term (gate off)
        state = {"gate_on": torch.tensor(0.0), "learned_floor": torch.tensor(0.0),
                 "gate_quantile": torch.tensor(float("nan")), **state}
        return super().head_from_state(channels, strides, state)

    def fit_choices(self, head: nn.Module) -> str:
        """The position weight ``"auto"`` chose for both banks (as PatchCore's) and the gate."""
        quantile = float(head.gate_quantile)
        gate = ("gate off (the whole learned term counts)" if quantile != quantile
                else f"gate at the {quantile:g} quantile of the learned term on held-out good "
                     "patches")
        if self.position == "auto" and getattr(head, "has_position", False):
            return f"{position_choice(head)}; {gate}"
        return gate

    def loss(self, scores: torch.Tensor, is_anomaly: torch.Tensor) -> torch.Tensor:
        """Deviation hinge on anomalies; plus ``|s|`` on normal patches unless ``anoonly``."""
        anomaly = torch.clamp(self.margin - scores[is_anomaly], min=0).mean()
        if self.anoonly:
            return anomaly
        return 0.5 * anomaly + 0.5 * scores[~is_anomaly].abs().mean()

    def fit_head(self, head: nn.Module, data: TrainSet) -> None:
        assert isinstance(head, AnoOnlyPatchHead)
        if self.gate not in GATES:
            raise DataError(f"gate must be one of {GATES}, got {self.gate!r}")
        self.gate_cv_: dict[str, float] = {}  # gate="cv": each candidate's leave-one-out rate
        if data.labels is None or int(data.labels.sum()) == 0:
            raise DataError("anoonly-head needs at least one labelled defective image")
        labels = data.labels.long()
        g = torch.Generator().manual_seed(self.seed)
        normal_idx = torch.nonzero(labels == 0).flatten()
        if normal_idx.numel() < 2:
            raise DataError("anoonly-head needs at least 2 good images")
        perm = normal_idx[torch.randperm(normal_idx.numel(), generator=g)]
        bank_imgs, train_imgs = perm[: perm.numel() // 2], perm[perm.numel() // 2:]
        feats = data.all_features()
        emb = head.embed(feats)  # (N, D, h, w), position-free
        n, d, h, w = emb.shape
        dev = emb.device  # features' device; labels, masks and draws stay on the CPU
        if self.position == "auto":
            # PatchCore's choice on the good images alone: the prior stays PatchCore exactly
            with tqdm(total=1, desc="position: choosing on held-out good images",
                      disable=not data.progress, leave=False) as bar:
                weight, table = choose_position(self, emb[normal_idx.to(dev)], data,
                                                index=normal_idx, frame=head.frame)
                bar.update(1)
            head.position.fill_(weight)
            head.position_table = table.to(dev)

        def patches_of(idx: torch.Tensor) -> torch.Tensor:
            placed = head.placed(emb[idx.to(dev)])
            return placed.permute(0, 2, 3, 1).reshape(-1, placed.shape[1])

        half = patches_of(bank_imgs)
        # the same size rule and latency cap as PatchCore's bank
        head.set_bank(half, bank_size(half.shape[0], self.coreset_ratio, self.max_bank), self.seed,
                      which="input_bank")
        head.dist_stats = torch.tensor([0.0, 1.0], device=dev)
        with torch.no_grad():
            x = torch.cat([head.inputs({k2: v[i:i + 16] for k2, v in feats.items()})
                           for i in range(0, n, 16)])  # (N, D+1, h, w)
            raw = x[:, -1]
            mu, sd = raw[train_imgs].mean(), raw[train_imgs].std().clamp_min(1e-6)
            head.dist_stats = torch.stack([mu, sd])
            x[:, -1] = (raw - mu) / sd
        # patch labels: defect masks pooled to the patch grid, else top-10% distances (MIL)
        anom_imgs = torch.nonzero(labels == 1).flatten().tolist()
        anomalous = []
        for i in anom_imgs:
            dist_i = x[i, -1].flatten()
            if data.masks is not None and data.masks[i].any():
                m = F.adaptive_avg_pool2d(data.masks[i].float()[None, None].to(dev),
                                          (h, w)).flatten()
                sel = m >= 0.3
                if not sel.any():
                    sel = m >= m.max()
            else:
                sel = dist_i >= torch.quantile(dist_i, 0.9)
            anomalous.append(x[i].flatten(1).T[sel])
        # good images kept out of the head's training set the gate (too few: the training ones)
        if self.gate == "off" or train_imgs.numel() < 2:
            cal_imgs, fit_imgs = train_imgs, train_imgs
        else:
            n_cal = max(1, train_imgs.numel() // 4)
            cal_imgs, fit_imgs = train_imgs[:n_cal], train_imgs[n_cal:]
        normal = x[fit_imgs].permute(0, 2, 3, 1).reshape(-1, d + 1)
        cal = x[cal_imgs]
        init = copy.deepcopy(head.state_dict())

        def train(anom: torch.Tensor) -> None:
            head.load_state_dict(init)
            gen = torch.Generator().manual_seed(self.seed)
            opt = torch.optim.Adam([p for p in head.parameters() if p.requires_grad], lr=self.lr)
            head.train()
            bar = tqdm(range(self.steps), desc="anoonly-head", disable=not data.progress,
                       leave=False)
            for _ in bar:
                ni = torch.randint(normal.shape[0], (self.normal_per_step,), generator=gen)
                ai = torch.randint(anom.shape[0], (self.anomalous_per_step,), generator=gen)
                batch = torch.cat([normal[ni], anom[ai]])[:, :, None, None]
                is_anom = torch.cat([torch.zeros(ni.numel(), dtype=torch.bool, device=dev),
                                     torch.ones(ai.numel(), dtype=torch.bool, device=dev)])
                loss = self.loss(head.scorer(batch).flatten(), is_anom)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.set_postfix(loss=f"{loss.item():.3f}")
            head.eval()

        def gate_at(learned_cal: torch.Tensor, q: float | None) -> tuple[torch.Tensor, ...]:
            if q is None:
                return torch.tensor(0.0, device=dev), torch.tensor(0.0, device=dev)
            return torch.tensor(1.0, device=dev), torch.quantile(learned_cal.flatten(), q)

        def image_scores(xs: torch.Tensor, learned: torch.Tensor, on: torch.Tensor,
                         floor: torch.Tensor) -> torch.Tensor:
            prior = xs[:, -1] if head.distance_prior else 0.0
            return image_score(prior + gated(learned, on, floor), "max")

        if self.gate == "off":
            quantile = None
        elif self.gate == "max" or len(anomalous) < 2:
            quantile = 1.0
        else:
            # leave one labelled defect out: how often does it outscore the held-out good images
            # under each gate? Ties go to the safer (higher) gate, listed first.
            wins = torch.zeros(len(GATE_QUANTILES))
            for i in range(len(anomalous)):
                train(torch.cat([a for j, a in enumerate(anomalous) if j != i]))
                with torch.no_grad():
                    left_out = x[anom_imgs[i]][None]
                    learned_cal, learned_out = head.learned(cal), head.learned(left_out)
                    for c, q in enumerate(GATE_QUANTILES):
                        on, floor = gate_at(learned_cal, q)
                        good = image_scores(cal, learned_cal, on, floor)
                        bad = image_scores(left_out, learned_out, on, floor)
                        wins[c] += float((good < bad).float().mean()
                                         + 0.5 * (good == bad).float().mean())
            quantile = GATE_QUANTILES[int(torch.argmax(wins))]  # argmax: first of the best
            self.gate_cv_ = {str(q): float(v) / len(anomalous)
                             for q, v in zip(GATE_QUANTILES, wins, strict=True)}
        train(torch.cat(anomalous))
        with torch.no_grad():
            on, floor = gate_at(head.learned(cal), quantile)
        head.gate_on, head.learned_floor = on, floor
        head.gate_quantile = torch.tensor(float("nan") if quantile is None else quantile,
                                          device=dev)
        # the prior at inference is PatchCore's bank over all good images
        full = patches_of(normal_idx)
        head.set_bank(full, bank_size(full.shape[0], self.coreset_ratio, self.max_bank), self.seed)
