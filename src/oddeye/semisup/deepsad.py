"""Deep SAD: deep semi-supervised anomaly detection (Ruff et al., ICLR 2020), with AnoOnly."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from oddeye.errors import DataError
from oddeye.semisup.base import (
    BATCH,
    FLAG,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    TorchDetector,
    zero_loss,
)

_EPS = 1e-6


def sad_loss(dist: torch.Tensor, y: torch.Tensor, eta: float = 1.0,
             anoonly: bool = False) -> torch.Tensor:
    """Deep SAD loss on squared distances to the centre: ``dist`` for unlabelled samples,
    ``eta / (dist + eps)`` for labelled anomalies (pushed away from the centre).

    With ``anoonly`` only the anomaly term remains, averaged over the labelled anomalies.
    """
    is_anomaly = y > 0.5
    anomaly_term = eta / (dist + _EPS)
    if anoonly:
        if not bool(is_anomaly.any()):
            return zero_loss(dist)
        return anomaly_term[is_anomaly].mean()
    return torch.where(is_anomaly, anomaly_term, dist).mean()


def _block(n_in: int, n_out: int) -> nn.Sequential:
    """Bias-free Linear, BatchNorm without affine parameters, leaky ReLU (Deep SAD's MLP block)."""
    return nn.Sequential(nn.Linear(n_in, n_out, bias=False),
                         nn.BatchNorm1d(n_out, eps=1e-4, affine=False), nn.LeakyReLU())


class _Encoder(nn.Module):
    """``d -> 100 -> 20 -> rep`` bias-free MLP; with ``anoonly`` a BatchNorm closes it."""

    def __init__(self, n_features: int, hidden: Sequence[int], rep_dim: int, anoonly: bool):
        super().__init__()
        dims = [n_features, *hidden]
        self.hidden = nn.Sequential(*[_block(dims[i], dims[i + 1]) for i in range(len(dims) - 1)])
        self.code = nn.Linear(dims[-1], rep_dim, bias=False)
        self.bn = nn.BatchNorm1d(rep_dim, eps=1e-4, affine=False) if anoonly else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.code(self.hidden(x)))


class _Decoder(nn.Module):
    """Mirror of the encoder; linear output because features are standardised, not in [0, 1]."""

    def __init__(self, n_features: int, hidden: Sequence[int], rep_dim: int):
        super().__init__()
        dims = [rep_dim, *reversed(list(hidden))]
        self.hidden = nn.Sequential(*[_block(dims[i], dims[i + 1]) for i in range(len(dims) - 1)])
        self.out = nn.Linear(dims[-1], n_features, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(z))


class _DeepSADNet(nn.Module):
    """Encoder plus the fixed centre ``c``: ``forward`` returns ``||phi(x) - c||^2``."""

    def __init__(self, encoder: _Encoder, rep_dim: int):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("c", torch.zeros(rep_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.encoder(x) - self.c) ** 2).sum(dim=1)


class DeepSAD(TorchDetector):
    """Deep SAD: a bias-free MLP ``phi`` maps unlabelled data close to a centre ``c`` and labelled
    anomalies far from it; the score is ``||phi(x) - c||^2``.

    As in ADBench's tabular setting: ``phi`` is ``d -> 100 -> 20 -> 10`` (Linear without bias,
    BatchNorm without affine, leaky ReLU); ``eta = 1``; Adam (lr 1e-3, weight decay 1e-6); shuffled
    mini-batches of 128 over the whole training set. Before training, ``phi`` is pretrained as the
    encoder of a mirrored autoencoder (mean squared error, all training samples, same optimiser);
    ``c`` is then the mean of ``phi`` over the training data, entries closer than 0.1 to zero
    pushed out to +-0.1. Budget: ``ae_epochs`` + ``epochs`` epochs of at most
    ``max_batches_per_epoch`` batches (ADBench: 100 + 50 full passes; smaller here to bound CPU
    time, see docs/semisup.md); a capped epoch keeps every labelled anomaly and samples the
    unlabelled data, so anomalies are seen once per epoch as in a full pass.

    ``anoonly=True`` (AnoOnly) changes exactly two things:
    1. the loss is ``eta / (||phi(x) - c||^2 + eps)`` averaged over the labelled anomalies of the
       batch; the ``||phi(x) - c||^2`` term on unlabelled samples is gone. Batches are still drawn
       from the whole training set (mostly unlabelled samples); a batch without a labelled anomaly
       has no loss and makes no optimiser step (it still updates the BatchNorm running statistics);
    2. a ``BatchNorm1d(10)`` without affine parameters is appended to ``phi``, in front of the
       distance (scoring) layer. Its batch statistics are dominated by unlabelled, mostly normal,
       samples: pushing the few anomalies out of a unit-variance code packs the normal data
       together. Because that code has zero batch mean and cannot collapse to a constant, the
       centre is the origin (no mean pass and no 0.1 adjustment are needed).
    The autoencoder pretraining has no anomaly term in either mode; with ``anoonly`` it trains
    through the appended BatchNorm too (the encoder it initialises ends in it), so the pretrained
    bottleneck is normalised and that layer's running statistics start from pretraining.
    """

    def __init__(self, anoonly: bool = False, hidden: Sequence[int] = (100, 20), rep_dim: int = 10,
                 eta: float = 1.0, pretrain: bool = True, ae_epochs: int = 10, epochs: int = 20,
                 batch_size: int = 128, max_batches_per_epoch: int = 10, lr: float = 1e-3,
                 weight_decay: float = 1e-6, contamination: float = 0.1,
                 random_state: int | None = None):
        self.anoonly = anoonly
        self.hidden = hidden
        self.rep_dim = rep_dim
        self.eta = eta
        self.pretrain = pretrain
        self.ae_epochs = ae_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_batches_per_epoch = max_batches_per_epoch
        self.lr = lr
        self.weight_decay = weight_decay
        self.contamination = contamination
        self.random_state = random_state

    param_checks = {"anoonly": FLAG, "rep_dim": POSITIVE_INT, "eta": POSITIVE,
                    "pretrain": FLAG, "ae_epochs": NON_NEGATIVE_INT, "epochs": POSITIVE_INT,
                    "batch_size": BATCH,
                    "max_batches_per_epoch": POSITIVE_INT, "lr": POSITIVE,
                    "weight_decay": NON_NEGATIVE}

    def _check_params(self) -> None:
        super()._check_params()
        hidden = self.hidden
        if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__") or any(
                isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1
                for h in hidden):
            raise DataError(f"hidden must be a sequence of layer widths >= 1, got {hidden!r}")

    def _batches(self, rng: np.random.Generator, y: np.ndarray):
        """Shuffled mini-batches of one epoch.

        A full epoch when the training set fits in ``max_batches_per_epoch`` batches; otherwise
        the epoch is every labelled anomaly plus a random sample of unlabelled data filling that
        many batches, so each labelled anomaly is still seen once per epoch, as in a full pass.
        """
        n = len(y)
        bs = min(self.batch_size, n)
        cap = self.max_batches_per_epoch * bs if self.max_batches_per_epoch else n
        if n <= cap:
            order = rng.permutation(n)
        else:
            idx_a = np.flatnonzero(y == 1)
            idx_u = np.flatnonzero(y == 0)
            # at least a batch of unlabelled samples, and never more than there are
            n_u = min(max(cap - len(idx_a), bs), len(idx_u))
            order = rng.permutation(np.concatenate([idx_a, rng.choice(idx_u, n_u, replace=False)]))
        for start in range(0, len(order) - bs + 1, bs):
            yield order[start:start + bs]

    def _pretrain(self, encoder: _Encoder, xt: torch.Tensor, y: np.ndarray,
                  rng: np.random.Generator) -> None:
        decoder = _Decoder(xt.shape[1], self.hidden, self.rep_dim)
        params = list(encoder.parameters()) + list(decoder.parameters())
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        encoder.train()
        decoder.train()
        for _ in range(self.ae_epochs):
            for idx in self._batches(rng, y):
                xb = xt[idx]
                loss = ((decoder(encoder(xb)) - xb) ** 2).sum(dim=1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

    def _batch_loss(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return sad_loss(self.net_(xb), yb, self.eta, self.anoonly)

    def _fit(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
        xt = torch.from_numpy(X)
        yt = torch.from_numpy(y).float()
        encoder = _Encoder(X.shape[1], self.hidden, self.rep_dim, self.anoonly)
        if self.pretrain:
            self._pretrain(encoder, xt, y, rng)
        self.net_ = net = _DeepSADNet(encoder, self.rep_dim)
        if not self.anoonly:
            net.eval()
            with torch.no_grad():
                c = torch.cat([encoder(xt[i:i + 4096]) for i in range(0, len(xt), 4096)]).mean(0)
            c[(c.abs() < 0.1) & (c < 0)] = -0.1
            c[(c.abs() < 0.1) & (c >= 0)] = 0.1
            net.c.copy_(c)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        net.train()
        for _ in range(self.epochs):
            for idx in self._batches(rng, y):
                yb = yt[idx]
                if self.anoonly and not bool((yb > 0.5).any()):
                    with torch.no_grad():
                        net(xt[idx])  # BatchNorm running statistics still see the batch
                    continue
                loss = self._batch_loss(xt[idx], yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
