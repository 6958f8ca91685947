"""PReNet: pairwise relation networks (Pang et al., "Deep weakly-supervised anomaly detection")."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from oddeye.semisup.base import (
    FINITE,
    FLAG,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    TorchDetector,
    sample_indices,
    zero_loss,
)


def pair_targets(kind: torch.Tensor, s_aa: float, s_au: float, s_uu: float) -> torch.Tensor:
    """Regression targets of pair kinds (0 = anomaly-anomaly, 1 = anomaly-unlabelled, 2 = u-u)."""
    table = torch.tensor([s_aa, s_au, s_uu], dtype=torch.float32)
    return table[kind]


def relation_loss(scores: torch.Tensor, kind: torch.Tensor, s_aa: float = 8.0, s_au: float = 4.0,
                  s_uu: float = 0.0, anoonly: bool = False) -> torch.Tensor:
    """Mean absolute error between pair scores and their relation targets.

    With ``anoonly`` the unlabelled-unlabelled pairs are dropped from the loss (the mean runs over
    the pairs that contain a labelled anomaly).
    """
    target = pair_targets(kind, s_aa, s_au, s_uu)
    err = (target - scores).abs()
    if anoonly:
        keep = kind != 2
        if not bool(keep.any()):
            return zero_loss(scores)
        return err[keep].mean()
    return err.mean()


class _PReNetNet(nn.Module):
    """Shared feature layer ``d -> 20 (ReLU) [-> BatchNorm]`` and a linear relation head on the
    concatenated pair ``(40 -> 1)``."""

    def __init__(self, n_features: int, hidden: int, anoonly: bool):
        super().__init__()
        self.feature = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(),
                                     nn.BatchNorm1d(hidden) if anoonly else nn.Identity())
        self.reg = nn.Linear(2 * hidden, 1)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.reg(torch.cat([self.feature(left), self.feature(right)], dim=1)).squeeze(1)


class PReNet(TorchDetector):
    """Pairwise relation network: learns to regress a score for pairs of samples, 8 for
    (anomaly, anomaly), 4 for (anomaly, unlabelled) and 0 for (unlabelled, unlabelled).

    Each batch of ``batch_size`` pairs holds a quarter (a, a), a quarter (a, u) and half (u, u)
    pairs (stratified sampling as in the paper); L1 loss; RMSprop (lr 1e-3, weight decay 1e-2);
    ``epochs x batches_per_epoch`` batches of 512 pairs (ADBench: 50 x 20; 20 x 10 here). A
    sample ``x`` is scored as the mean of ``phi(a_i, x) + phi(x, u_i)`` over ``n_refs`` labelled
    anomalies ``a_i`` and unlabelled ``u_i`` drawn once at fit time (the head is linear, so this
    equals the paper's average over random pairs without its sampling noise).

    ``anoonly=True`` (AnoOnly) changes exactly two things, as in the authors' code:
    1. the (u, u) pairs (target 0) contribute no loss; the L1 loss runs over the (a, a) and (a, u)
       pairs only. The batch composition is unchanged, so (u, u) pairs still pass through the
       network and shape the batch statistics;
    2. a ``BatchNorm1d(20)`` follows the ReLU of the shared feature layer, i.e. right before the
       relation (scoring) layer; left and right members of the pairs are normalised separately.
    """

    param_checks = {"anoonly": FLAG, "hidden": POSITIVE_INT, "epochs": POSITIVE_INT,
                    "batches_per_epoch": POSITIVE_INT,
                    "batch_size": {"low": 4, "integer": True},  # a quarter of each pair kind
                    "lr": POSITIVE, "weight_decay": NON_NEGATIVE, "s_aa": FINITE,
                    "s_au": FINITE, "s_uu": FINITE, "n_refs": POSITIVE_INT}

    def __init__(self, anoonly: bool = False, hidden: int = 20, epochs: int = 20,
                 batches_per_epoch: int = 10, batch_size: int = 512, lr: float = 1e-3,
                 weight_decay: float = 1e-2, s_aa: float = 8.0, s_au: float = 4.0,
                 s_uu: float = 0.0, n_refs: int = 30, contamination: float = 0.1,
                 random_state: int | None = None):
        self.anoonly = anoonly
        self.hidden = hidden
        self.epochs = epochs
        self.batches_per_epoch = batches_per_epoch
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.s_aa = s_aa
        self.s_au = s_au
        self.s_uu = s_uu
        self.n_refs = n_refs
        self.contamination = contamination
        self.random_state = random_state

    @staticmethod
    def make_pairs(rng: np.random.Generator, idx_a: np.ndarray, idx_u: np.ndarray,
                   batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Left and right indices and pair kinds of one stratified batch: B/4 (a,a), B/4 (a,u),
        the rest (u,u); anomalies with replacement, unlabelled without when there are enough."""
        q = batch_size // 4
        n_uu = batch_size - 2 * q
        left = np.concatenate([rng.choice(idx_a, q), rng.choice(idx_a, q),
                               sample_indices(rng, idx_u, n_uu)])
        right = np.concatenate([rng.choice(idx_a, q), sample_indices(rng, idx_u, q),
                                sample_indices(rng, idx_u, n_uu)])
        kind = np.repeat(np.array([0, 1, 2]), [q, q, n_uu])
        order = rng.permutation(batch_size)
        return left[order], right[order], kind[order]

    def _batch_loss(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Loss of the pairs formed from a batch of samples (every available pair kind)."""
        a = torch.nonzero(yb > 0.5).flatten()
        u = torch.nonzero(yb <= 0.5).flatten()
        lefts, rights, kinds = [], [], []
        for kind, (pl, pr) in enumerate([(a, a), (a, u), (u, u)]):
            if len(pl) and len(pr):
                li, ri = torch.meshgrid(pl, pr, indexing="ij")
                lefts.append(li.flatten())
                rights.append(ri.flatten())
                kinds.append(torch.full((li.numel(),), kind))
        left, right, kind = torch.cat(lefts), torch.cat(rights), torch.cat(kinds)
        scores = self.net_(xb[left], xb[right])
        return relation_loss(scores, kind, self.s_aa, self.s_au, self.s_uu, self.anoonly)

    def _fit(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
        self.net_ = net = _PReNetNet(X.shape[1], self.hidden, self.anoonly)
        opt = torch.optim.RMSprop(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        xt = torch.from_numpy(X)
        idx_a = np.flatnonzero(y == 1)
        idx_u = np.flatnonzero(y == 0)
        net.train()
        for _ in range(self.epochs * self.batches_per_epoch):
            left, right, kind = self.make_pairs(rng, idx_a, idx_u, self.batch_size)
            scores = net(xt[left], xt[right])
            loss = relation_loss(scores, torch.from_numpy(kind), self.s_aa, self.s_au, self.s_uu,
                                 self.anoonly)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self.ref_anomalies_ = X[rng.choice(idx_a, self.n_refs)]
        self.ref_unlabelled_ = X[sample_indices(rng, idx_u, self.n_refs)]

    def _forward_scores(self, xb: torch.Tensor) -> torch.Tensor:
        net: _PReNetNet = self.net_
        fa = net.feature(torch.from_numpy(self.ref_anomalies_)).mean(0, keepdim=True)
        fu = net.feature(torch.from_numpy(self.ref_unlabelled_)).mean(0, keepdim=True)
        fx = net.feature(xb)
        # the relation head is linear: the mean over reference pairs is the head of mean features
        s_ax = net.reg(torch.cat([fa.expand_as(fx), fx], dim=1))
        s_xu = net.reg(torch.cat([fx, fu.expand_as(fx)], dim=1))
        return (s_ax + s_xu).squeeze(1)
