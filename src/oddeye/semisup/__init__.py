"""Semi-supervised anomaly detection on feature vectors from a few labelled anomalies.

Four deep detectors (DeepSAD, DevNet, PReNet, FEAWAD), each with the AnoOnly switch
(``anoonly=True``: loss on labelled anomalies only, BatchNorm before the scoring layer), and two
unsupervised references (Isolation Forest, kNN distance), all in one scikit-learn style contract:
``fit(X, y)`` with ``y = 1`` for labelled anomalies and ``0`` for unlabelled samples,
``decision_function(X)`` (higher = more anomalous), ``predict(X)`` from ``threshold_``.
"""

from __future__ import annotations

from oddeye.semisup.base import BaseDetector
from oddeye.semisup.deepsad import DeepSAD
from oddeye.semisup.devnet import DevNet
from oddeye.semisup.feawad import FEAWAD
from oddeye.semisup.prenet import PReNet
from oddeye.semisup.unsupervised import IForestDetector, KNNDetector

#: name -> detector class; the deep ones accept ``anoonly``.
SEMISUP_METHODS: dict[str, type[BaseDetector]] = {
    "deepsad": DeepSAD,
    "devnet": DevNet,
    "prenet": PReNet,
    "feawad": FEAWAD,
    "iforest": IForestDetector,
    "knn": KNNDetector,
}


def create_detector(name: str, anoonly: bool = False, **hparams) -> BaseDetector:
    """A detector by registry name; ``anoonly`` is only accepted by the semi-supervised ones."""
    from oddeye.errors import DataError

    key = name.lower()
    if key not in SEMISUP_METHODS:
        raise DataError(f"method: unknown '{name}', choose from {', '.join(SEMISUP_METHODS)}")
    cls = SEMISUP_METHODS[key]
    if cls.uses_labels:
        return cls(anoonly=anoonly, **hparams)
    if anoonly:
        raise DataError(f"method: '{name}' is unsupervised and has no AnoOnly variant")
    return cls(**hparams)


__all__ = ["SEMISUP_METHODS", "BaseDetector", "DeepSAD", "DevNet", "FEAWAD", "PReNet",
           "IForestDetector", "KNNDetector", "create_detector"]
