"""Exact and streaming anomaly-detection metrics: image/pixel AUROC, AP, F1-max and pixel AUPRO.

``evaluate`` is the one entry point every command uses; ``MetricAccumulator`` computes the same
dict batch by batch. Pure numpy/scipy maths, no I/O. Protocol and error bounds: docs/metrics.md.
"""

from oddeye.metrics.evaluate import METRIC_KEYS, MetricAccumulator, evaluate
from oddeye.metrics.functional import (
    aupro,
    auroc,
    average_precision,
    f1_max,
    precision_recall_f1,
    pro_curve,
)

__all__ = [
    "METRIC_KEYS",
    "MetricAccumulator",
    "aupro",
    "auroc",
    "average_precision",
    "evaluate",
    "f1_max",
    "precision_recall_f1",
    "pro_curve",
]
