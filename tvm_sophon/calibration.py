"""Calibration: activation ranges observed on sample data, and the threshold
(the |x| mapped to int8's 127) picked from them.

Methods (TPU-MLIR and TensorRT offer the same three):
  max         the largest |x| seen;
  percentile  the 99.99th percentile of |x| (outliers clipped);
  kl          the threshold whose clipped, 128-level quantized histogram is
              closest (Kullback-Leibler divergence) to the observed one,
              among those that clip at most 1% of the values (outliers).

Without that bound KL can pick a threshold below nearly every value: a candidate
whose range holds a single occupied bin, the one the clipped values pile into,
compares a point mass with a point mass (divergence 0). MobileNetV3's
squeeze-excite gate (relu6(x + 3) / 6: 55% of the values exactly 1.0, none below
0.078) got 0.078 so, and its int8 output cosine 0.94 to FP32.
"""
from __future__ import annotations

import numpy as np

BINS = 2048
METHODS = ("kl", "max", "percentile")
CLIPPED = 0.01   # the largest share of the (non-zero) values a kl threshold may clip


class Histogram:
    """A running histogram of |x| over [0, max seen], re-binned as the range grows."""

    def __init__(self):
        self.counts = np.zeros(BINS, dtype=np.float64)
        self.edge = 0.0          # upper edge of the last bin
        self.samples: list[np.ndarray] = []  # a bounded sample, for percentiles

    def add(self, x: np.ndarray) -> None:
        a = np.abs(np.asarray(x, dtype=np.float32)).ravel()
        if a.size == 0:
            return
        top = float(a.max())
        if top > self.edge:
            if self.edge > 0 and self.counts.any():
                # move old counts into the wider bins
                old_centres = (np.arange(BINS) + 0.5) * (self.edge / BINS)
                self.counts = np.histogram(old_centres, bins=BINS, range=(0, top), weights=self.counts)[0]
            self.edge = top
        if self.edge > 0:
            self.counts += np.histogram(a, bins=BINS, range=(0, self.edge))[0]
        if sum(s.size for s in self.samples) < 1_000_000:
            self.samples.append(a[:: max(1, a.size // 20000)])

    @property
    def max(self) -> float:
        return self.edge

    def threshold(self, method: str) -> float:
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
        if self.edge == 0:
            return 1e-8  # an all-zero tensor: any positive scale represents it
        if method == "max":
            return self.edge
        if method == "percentile":
            return float(np.percentile(np.concatenate(self.samples), 99.99)) or self.edge
        return self._kl_threshold()

    def _kl_threshold(self, levels: int = 128) -> float:
        """TensorRT's entropy calibration over the histogram. The bin holding zero is
        left out: zeros (every ReLU's negative half) are exact in int8 whatever the
        threshold, and counting them pulls the threshold down."""
        hist = self.counts.copy()
        hist[0] = 0
        clipped = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])   # clipped[i] = hist[i:].sum()
        best_i, best_kl = BINS, np.inf
        for i in range(levels, BINS + 1, 16):
            if clipped[i] > CLIPPED * clipped[0]:
                continue
            reference = hist[:i].copy()
            reference[i - 1] += hist[i:].sum()      # outliers clip into the last bin
            if reference.sum() == 0:
                continue
            # quantize the first i bins into `levels` levels, spread back over non-empty bins
            chunks = np.array_split(hist[:i], levels)
            expanded = []
            for chunk in chunks:
                nonzero = chunk != 0
                value = chunk.sum() / max(nonzero.sum(), 1)
                expanded.append(np.where(nonzero, value, 0.0))
            candidate = np.concatenate(expanded)
            p = reference / reference.sum()
            q = candidate / max(candidate.sum(), 1e-12)
            mask = p > 0
            q = np.where(q > 0, q, 1e-12)
            kl = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
            if kl < best_kl:
                best_kl, best_i = kl, i
        return (best_i + 0.5) * (self.edge / BINS)
