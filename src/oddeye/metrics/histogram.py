"""One-pass score histogram with power-of-two bin widths that widens itself exactly.

Bins are ``[i * 2**k, (i + 1) * 2**k)`` for integer ``i``, anchored at zero. Scaling a float by a
power of two is exact, so a score's bin index ``floor(x * 2**-k)`` is exact, and doubling the width
merges bins pairwise without moving any score into a wrong bin. The histogram therefore needs no
score range in advance: when a batch falls outside the ``num_bins`` window, ``k`` grows just enough
and the counts are re-binned exactly. The final width is the smallest power of two for which all
scores seen fit in ``num_bins`` bins, i.e. below ``2 * (max - min) / (num_bins - 2)``.
"""

from __future__ import annotations

import math

import numpy as np

from oddeye.errors import DataError
from oddeye.metrics.curves import TieTable


class PowerOfTwoHistogram:
    """Counts of negatives and positives and summed positive weights over adaptive bins."""

    def __init__(self, num_bins: int = 65536) -> None:
        if int(num_bins) < 4:
            raise DataError(f"num_bins must be at least 4, got {num_bins}")
        self.num_bins = int(num_bins)
        self.k: int | None = None  # bin width is 2**k
        self.i0 = 0.0  # bin index (float integer) of slot 0
        self.neg = np.zeros(self.num_bins, dtype=np.int64)
        self.pos = np.zeros(self.num_bins, dtype=np.int64)
        self.weight = np.zeros(self.num_bins, dtype=np.float64)
        # +inf and -inf scores are their own tie groups: [neg, pos, weight]
        self.top = [0, 0, 0.0]
        self.bottom = [0, 0, 0.0]

    @property
    def bin_width(self) -> float:
        """Current bin width (NaN before any finite score arrived)."""
        return math.ldexp(1.0, self.k) if self.k is not None else math.nan

    def update(self, neg: np.ndarray, pos: np.ndarray,
               pos_weight: np.ndarray | None = None) -> None:
        """Add negative scores, positive scores and optional per-positive weights."""
        neg = np.asarray(neg, dtype=np.float64).ravel()
        pos = np.asarray(pos, dtype=np.float64).ravel()
        w = (np.zeros(pos.size) if pos_weight is None
             else np.asarray(pos_weight, dtype=np.float64).ravel())
        neg, pos, w = self._take_infinite(neg, pos, w)
        if neg.size == 0 and pos.size == 0:
            return
        lo = min(neg.min(initial=np.inf), pos.min(initial=np.inf))
        hi = max(neg.max(initial=-np.inf), pos.max(initial=-np.inf))
        self._fit_window(lo, hi)
        for values, counts, weights in ((neg, self.neg, None), (pos, self.pos, w)):
            if values.size == 0:
                continue
            slots = (np.floor(np.ldexp(values, -self.k)) - self.i0).astype(np.int64)
            counts += np.bincount(slots, minlength=self.num_bins)
            if weights is not None:
                self.weight += np.bincount(slots, weights=weights, minlength=self.num_bins)

    def _take_infinite(self, neg, pos, w):
        """Count +-inf scores in their own groups and return the finite remainder."""
        if np.isfinite(neg).all() and np.isfinite(pos).all():
            return neg, pos, w
        for group, sign in ((self.top, np.inf), (self.bottom, -np.inf)):
            group[0] += int(np.count_nonzero(neg == sign))
            hit = pos == sign
            group[1] += int(np.count_nonzero(hit))
            group[2] += float(w[hit].sum())
        fin_p = np.isfinite(pos)
        return neg[np.isfinite(neg)], pos[fin_p], w[fin_p]

    def _fit_window(self, lo: float, hi: float) -> None:
        """Grow ``k`` and move the window so the occupied bins and [lo, hi] fit in num_bins."""
        if self.k is None:
            span = hi - lo
            if span > 0:
                self.k = math.frexp(span / self.num_bins)[1] - 1
            else:  # a single value so far: fine bins relative to its magnitude
                self.k = math.frexp(abs(lo))[1] - 40 if lo != 0 else -1000
            self.i0 = _floor_scaled(lo, self.k)
        occupied = np.flatnonzero(self.neg | self.pos)
        k = self.k
        if occupied.size:
            lo_i, hi_i = self.i0 + occupied[0], self.i0 + occupied[-1]
            # start from the coarsest width the value span already rules out, then step up
            vlo = min(lo, math.ldexp(lo_i, self.k))
            vhi = max(hi, math.ldexp(hi_i + 1, self.k))
            k = max(k, math.frexp((vhi - vlo) / self.num_bins)[1] - 1)
        while True:
            a, b = _floor_scaled(lo, k), _floor_scaled(hi, k)
            if occupied.size:
                a = min(a, _floor_scaled(lo_i, k - self.k))
                b = max(b, _floor_scaled(hi_i, k - self.k))
            if not (math.isfinite(a) and math.isfinite(b)):
                raise DataError(f"anomaly_maps: scores {lo!r}..{hi!r} are too extreme to bin")
            if b - a + 1 <= self.num_bins:
                break
            k += 1
        if k == self.k and a >= self.i0 and b < self.i0 + self.num_bins:
            return
        self._rebin(k, a)

    def _rebin(self, k: int, i0: float) -> None:
        """Move the counts to width 2**k with slot 0 at bin index ``i0`` (exact pairwise merge)."""
        shift = k - self.k
        src = np.flatnonzero(self.neg | self.pos)
        old_index = self.i0 + src.astype(np.float64)
        slots = (np.floor(np.ldexp(old_index, -shift)) - i0).astype(np.int64)
        neg = np.zeros(self.num_bins, dtype=np.int64)
        pos = np.zeros(self.num_bins, dtype=np.int64)
        weight = np.zeros(self.num_bins, dtype=np.float64)
        np.add.at(neg, slots, self.neg[src])
        np.add.at(pos, slots, self.pos[src])
        np.add.at(weight, slots, self.weight[src])
        self.neg, self.pos, self.weight, self.k, self.i0 = neg, pos, weight, k, i0

    def table(self, n_regions: int = 0) -> TieTable:
        """The histogram as a tie table (descending bins, each with its lower edge as threshold)."""
        slots = np.flatnonzero(self.neg | self.pos)[::-1]
        edges = (np.ldexp(self.i0 + slots.astype(np.float64), self.k) if self.k is not None
                 else np.zeros(0))
        thr = [np.array([np.inf])] if (self.top[0] or self.top[1]) else []
        parts_neg = [np.array([self.top[0]])] if thr else []
        parts_pos = [np.array([self.top[1]])] if thr else []
        parts_w = [np.array([self.top[2]])] if thr else []
        thr.append(edges)
        parts_neg.append(self.neg[slots])
        parts_pos.append(self.pos[slots])
        parts_w.append(self.weight[slots])
        if self.bottom[0] or self.bottom[1]:
            thr.append(np.array([-np.inf]))
            parts_neg.append(np.array([self.bottom[0]]))
            parts_pos.append(np.array([self.bottom[1]]))
            parts_w.append(np.array([self.bottom[2]]))
        return TieTable(
            thresholds=np.concatenate(thr).astype(np.float64),
            neg=np.concatenate(parts_neg).astype(np.int64),
            pos=np.concatenate(parts_pos).astype(np.int64),
            weight=np.concatenate(parts_w).astype(np.float64),
            n_regions=n_regions,
        )


def _floor_scaled(x: float, k: int) -> float:
    """floor(x / 2**k) as an exact float (inf when it overflows)."""
    with np.errstate(over="ignore"):
        return float(np.floor(np.ldexp(np.float64(x), -k)))
