"""FEAWAD: feature encoding with autoencoders (Zhou et al., TNNLS 2021), with the AnoOnly switch."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from oddeye.semisup.base import (
    BATCH,
    FLAG,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    TorchDetector,
    balanced_batches,
    glorot_init,
    zero_loss,
)


def feawad_loss(scores: torch.Tensor, rec_err: torch.Tensor, y: torch.Tensor,
                margin: float = 5.0, anoonly: bool = False, rec_loss: bool = True) -> torch.Tensor:
    """FEAWAD's loss: unlabelled ``|s| + e``, anomalies ``max(0, a - s) + max(0, a - e)``.

    ``s`` is the deviation score and ``e = ||x - x_hat||`` the reconstruction error (its terms
    dropped when ``rec_loss`` is false). With ``anoonly`` the unlabelled term is removed and the
    mean runs over the labelled anomalies.
    """
    is_anomaly = y > 0.5
    anomaly_term = torch.clamp(margin - scores, min=0.0)
    normal_term = scores.abs()
    if rec_loss:
        anomaly_term = anomaly_term + torch.clamp(margin - rec_err, min=0.0)
        normal_term = normal_term + rec_err
    if anoonly:
        if not bool(is_anomaly.any()):
            return zero_loss(scores) + zero_loss(rec_err)
        return anomaly_term[is_anomaly].mean()
    return torch.where(is_anomaly, anomaly_term, normal_term).mean()


class _AutoEncoder(nn.Module):
    """FEAWAD's autoencoder ``d -> d -> 128 -> 64 -> 128 -> d`` (ReLU, linear reconstruction)."""

    def __init__(self, n_features: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n_features, n_features), nn.ReLU(),
                                     nn.Linear(n_features, 128), nn.ReLU(),
                                     nn.Linear(128, 64), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, n_features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.decoder(h)


class _FEAWADNet(nn.Module):
    """Autoencoder + score generator on ``[residual / ||residual||, hidden, ||residual||]``, the
    reconstruction error fed again into every hidden layer; returns ``(score, error)``."""

    def __init__(self, n_features: int, anoonly: bool):
        super().__init__()
        self.ae = _AutoEncoder(n_features)
        self.h1 = nn.Linear(n_features + 64 + 1, 256)
        self.h2 = nn.Linear(256 + 1, 32)
        self.bn = nn.BatchNorm1d(32 + 1) if anoonly else nn.Identity()
        self.score = nn.Linear(32 + 1, 1)
        self.act = nn.ReLU()
        glorot_init(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, x_hat = self.ae(x)
        res = x - x_hat
        err = res.norm(dim=1, keepdim=True)
        z = torch.cat([res / (err + 1e-12), h, err], dim=1)
        z = torch.cat([self.act(self.h1(z)), err], dim=1)
        z = torch.cat([self.act(self.h2(z)), err], dim=1)
        return self.score(self.bn(z)).squeeze(1), err.squeeze(1)


class FEAWAD(TorchDetector):
    """FEAWAD: an autoencoder pretrained on the unlabelled data encodes each sample as (hidden
    code, normalised residual, reconstruction error); an MLP on that encoding, with the error
    concatenated again at each layer, is trained end to end (autoencoder included) with a
    DevNet-style loss plus a reconstruction-error term.

    Architecture follows the reference implementation (ADBench): autoencoder
    ``d -> d -> 128 -> 64 -> 128 -> d`` (linear output for standardised features), head
    ``-> 256 -> 32 -> 1``, Glorot init, Adam, balanced batches (half unlabelled,
    half labelled anomalies, with replacement), margin 5. The loss follows the paper:
    ``(1-y)(|s| + e) + y(max(0, a - s) + max(0, a - e))`` with ``e = ||x - x_hat||``. Budget:
    ``ae_steps`` pretraining batches (unlabelled samples, MSE) and ``epochs x batches_per_epoch``
    end-to-end batches of 128 (ADBench: 2000 and 600 batches of 512 at lr 1e-4; here 100 and 100
    batches, so both learning rates are raised to Adam's default 1e-3, see docs/semisup.md).
    ``rec_loss=False`` drops the reconstruction-error terms (a diagnostic: ADBench's Keras code
    computes them on the normalised residual, a constant, so they are inert there).

    ``anoonly=True`` (AnoOnly) changes exactly two things (the authors' code keeps the BatchNorm
    of 2. in its base FEAWAD as well; here the base is FEAWAD as its paper defines it, without):
    1. the end-to-end loss keeps only the anomaly term ``max(0, a - s) + max(0, a - e)``, averaged
       over the labelled anomalies; the ``|s| + e`` term on unlabelled samples is gone (the
       autoencoder pretraining on unlabelled data, a separate unsupervised stage, is unchanged);
    2. a ``BatchNorm1d(33)`` sits in front of the score layer, on the last hidden layer and the
       reconstruction error; the balanced batches still carry their unlabelled half through it.
    """

    param_checks = {"anoonly": FLAG, "ae_steps": NON_NEGATIVE_INT, "ae_lr": POSITIVE,
                    "epochs": POSITIVE_INT, "batches_per_epoch": POSITIVE_INT,
                    "batch_size": BATCH, "lr": POSITIVE, "margin": POSITIVE, "rec_loss": FLAG}

    def __init__(self, anoonly: bool = False, ae_steps: int = 100, ae_lr: float = 1e-3,
                 epochs: int = 10, batches_per_epoch: int = 10, batch_size: int = 128,
                 lr: float = 1e-3, margin: float = 5.0, rec_loss: bool = True,
                 contamination: float = 0.1, random_state: int | None = None):
        self.anoonly = anoonly
        self.ae_steps = ae_steps
        self.ae_lr = ae_lr
        self.epochs = epochs
        self.batches_per_epoch = batches_per_epoch
        self.batch_size = batch_size
        self.lr = lr
        self.margin = margin
        self.rec_loss = rec_loss
        self.contamination = contamination
        self.random_state = random_state

    def _batch_loss(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        scores, err = self.net_(xb)
        return feawad_loss(scores, err, yb, self.margin, self.anoonly, self.rec_loss)

    def _forward_scores(self, xb: torch.Tensor) -> torch.Tensor:
        return self.net_(xb)[0]

    def _fit(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
        self.net_ = net = _FEAWADNet(X.shape[1], self.anoonly)
        xt = torch.from_numpy(X)
        idx_a = np.flatnonzero(y == 1)
        idx_u = np.flatnonzero(y == 0)
        ae = net.ae
        opt = torch.optim.Adam(ae.parameters(), lr=self.ae_lr)
        ae.train()
        for _ in range(self.ae_steps):
            xb = xt[rng.choice(idx_u, self.batch_size)]
            loss = ((ae(xb)[1] - xb) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        net.train()
        for idx, yb in balanced_batches(rng, idx_u, idx_a, self.batch_size,
                                        self.epochs * self.batches_per_epoch):
            loss = self._batch_loss(xt[idx], yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
