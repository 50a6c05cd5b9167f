"""Contextual k-NN anomaly detection with conformal calibration (in the spirit of KNN-CAD).

After the idea of Burnaev & Ishimtsev, "Conformalized density- and distance-based anomaly
detection in time-series data" (2016): embed the recent values as a vector, measure how far it
is from its nearest neighbours among recent embeddings (the *nonconformity*), and calibrate that
distance against the recent nonconformities, so the score reads like a conformal p-value and is
free of the series' units. Written from the published description, not from any implementation.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from typing import ClassVar

import numpy as np

from twinwatch.detectors.base import Scalar, check_int, check_positive

__all__ = ["KnnCad"]

#: Absolute differences are clipped here before squaring so that readings near the float limit
#: cannot overflow the distance (1e300 - (-1e300) is still finite; 1.7e308 - (-1.7e308) is not).
_DIFF_CAP = 1e300


class KnnCad(Scalar):
    """Contextual k-NN anomaly score, conformally calibrated.

    For each reading ``x``:

    1. the *context* is the vector of the last ``dim`` values, ``x`` included;
    2. its *references* are the last ``window`` learned contexts that share no value with it
       (they end ``dim`` or more readings earlier: a context overlapping the current one is a
       shifted copy of it and would always be its nearest neighbour); a context holding a reading
       that was not learned (see the learning policy) is no reference;
    3. nonconformity ``alpha`` = mean Euclidean distance to the ``k`` nearest references;
    4. score = fraction of the last ``calibration`` nonconformities strictly smaller than
       ``alpha`` (the complement of a conformal p-value), then ``alpha`` joins them.

    So the score is in [0, 1] and unit-free; ``1.0`` means "stranger than every context in the
    calibration window". Under exchangeability that happens for about ``1 / (calibration + 1)``
    of ordinary readings: that is the floor of the false-alarm rate at the default threshold
    1.0 (0.2 % at 500; at a 30 s cadence about one a day), so pair it with ``likelihood`` or an
    alert rule needing several hits. A flat series scores 0 (every alpha is 0, none smaller).

    ``update`` returns 0.0 until ``k`` references and ``min_periods`` calibration values exist
    (about ``2 * dim + k + min_periods`` readings).

    State: ``(values, alphas, skipped)``: the last ``window + 2 * dim - 2`` readings and the last
    ``calibration`` nonconformities, as tuples of floats, and the positions among ``values`` of
    readings that were not learned (usually none). Cost per update is
    ``O(window * dim)`` (vectorised) plus ``O(calibration)`` for the sorted calibration list.

    >>> import numpy as np
    >>> t = np.arange(1200)
    >>> xs = np.sin(2 * np.pi * t / 50) + 0.05 * np.random.default_rng(0).normal(size=t.size)
    >>> xs[1112] = 0.0  # at the crest (~1.0) of the sine: a normal value in the wrong place
    >>> det = KnnCad(dim=10, k=5, window=300, calibration=300)
    >>> scores = [det.update(float(i), v) for i, v in enumerate(xs)]
    >>> scores.index(next(s for s in scores if s > 0.0))  # warm-up
    73
    >>> scores[1112]
    1.0
    >>> [i for i, s in enumerate(scores) if s >= det.threshold]  # + the 1/(calibration+1) floor
    [1059, 1060, 1112]
    """

    name: ClassVar[str] = "knn_cad"

    def __init__(
        self,
        dim: int = 8,
        k: int = 5,
        window: int = 500,
        calibration: int = 500,
        min_periods: int = 50,
        threshold: float = 1.0,
    ) -> None:
        self.dim = check_int("dim", dim, 1)
        self.k = check_int("k", k, 1)
        self.window = check_int("window", window, 1)
        if self.k > self.window:
            raise ValueError(f"k must be <= window, got k={k!r}, window={window!r}")
        self.calibration = check_int("calibration", calibration, 1)
        self.min_periods = check_int("min_periods", min_periods, 1)
        if self.min_periods > self.calibration:
            raise ValueError(f"min_periods must be <= calibration, got {min_periods!r}")
        self.threshold = check_positive("threshold", threshold)
        self._values: deque = deque(maxlen=self.window + 2 * self.dim - 2)
        self._learned: deque = deque(maxlen=self.window + 2 * self.dim - 2)  # per value
        self._alphas: deque = deque(maxlen=self.calibration)
        self._sorted: list[float] = []
        self._alpha: float | None = None  # score_one's nonconformity, for learn_one

    def _nonconformity(self, x: float) -> float | None:
        n_refs = len(self._values) + 1 - 2 * self.dim + 1
        if n_refs < self.k:
            return None
        buf = np.fromiter(self._values, dtype=float, count=len(self._values))
        buf = np.append(buf, x)
        ctx = np.lib.stride_tricks.sliding_window_view(buf, self.dim)
        refs = ctx[:n_refs]
        if not all(self._learned):
            learned = np.fromiter(self._learned, dtype=bool, count=len(self._learned))
            ok = np.asarray(np.lib.stride_tricks.sliding_window_view(learned, self.dim).all(1))
            refs = refs[ok[:n_refs]]
            if len(refs) < self.k:
                return None
        refs = refs[-self.window :]
        diff = np.minimum(np.abs(refs - ctx[-1]), _DIFF_CAP)
        scale = float(diff.max())
        if scale == 0.0:
            return 0.0
        dist = np.sqrt(((diff / scale) ** 2).sum(axis=1))
        nearest = np.partition(dist, self.k - 1)[: self.k] if self.k < dist.size else dist
        alpha = float(nearest.mean()) * scale
        return alpha if math.isfinite(alpha) else _DIFF_CAP

    def score_one(self, t: float, x: float) -> float:
        """Score the context ending at ``x`` against the calibration window; ``x`` joins the
        recent readings (the context of the next ones) whether or not it is learned."""
        x = float(x)
        alpha = self._alpha = self._nonconformity(x)
        self._values.append(x)
        self._learned.append(False)
        if alpha is None or len(self._alphas) < self.min_periods:
            return 0.0
        return bisect_left(self._sorted, alpha) / len(self._alphas)

    def learn_one(self, t: float, x: float) -> None:
        """Make the reading a reference and its nonconformity part of the calibration."""
        self._learned[-1] = True
        alpha = self._alpha
        if alpha is None:
            return
        if len(self._alphas) == self.calibration:
            del self._sorted[bisect_left(self._sorted, self._alphas[0])]
        self._alphas.append(alpha)
        insort(self._sorted, alpha)

    def _dump(self) -> tuple:
        """``(values, alphas, skipped)``: recent readings, recent nonconformities (oldest
        first), and the positions of the readings that were not learned."""
        skipped = tuple(i for i, ok in enumerate(self._learned) if not ok)
        return (tuple(self._values), tuple(self._alphas), skipped)

    def _load(self, state: tuple) -> None:
        values, alphas, skipped = state
        self._values.extend(float(v) for v in values)
        self._learned.extend([True] * len(self._values))
        for i in skipped:
            self._learned[i] = False
        self._alphas.extend(float(a) for a in alphas)
        self._sorted = sorted(self._alphas)
