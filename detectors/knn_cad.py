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

    1. the *context* is the vector of the last ``dim`` readings, ``x`` included;
    2. its *references* are the last ``window`` contexts of consecutive *learned* readings that
       share no reading with it (they end ``dim`` or more readings earlier: a context overlapping
       the current one is a shifted copy of it and would always be its nearest neighbour);
    3. nonconformity ``alpha`` = mean Euclidean distance to the ``k`` nearest references;
    4. score = fraction of the last ``calibration`` nonconformities strictly smaller than
       ``alpha`` (the complement of a conformal p-value).

    So the score is in [0, 1] and unit-free; ``1.0`` means "stranger than every context in the
    calibration window". Under exchangeability that happens for about ``1 / (calibration + 1)``
    of ordinary readings: that is the floor of the false-alarm rate at the default threshold
    1.0 (0.2 % at 500; at a 30 s cadence about one a day), so pair it with ``likelihood`` or an
    alert rule needing several hits. A flat series scores 0 (every alpha is 0, none smaller).

    Learning (see :mod:`twinwatch.detectors.policy`): a learned reading joins the reference
    stream, so references survive an anomaly of any length. Its ``alpha`` joins the calibration
    ``span`` readings later unless an episode began meanwhile. The calibration must not depend
    on the reading's own score (a conformal calibration that kept only what it did not flag
    would lose its top values one by one and ratchet down until everything is flagged; measured:
    4,375 hits in 5,000 stationary readings), and must not take in the first readings of a
    collective anomaly either (else they make the rest of it look ordinary; measured: 13 % of a
    4 sd shift flagged). With ``learn: always`` every reading is learned at once.

    ``update`` returns 0.0 until ``k`` references and ``min_periods`` calibration values exist
    (about ``2 * dim + k + min_periods`` readings).

    State: ``(count, recent, references, runs, alphas, pending)``: the last ``dim - 1``
    readings, the last ``window + 2 * dim - 2`` learned readings (``runs``: where they are
    consecutive, as ``(first reading number, length)`` pairs), and the calibration (plus the
    ``alpha``-s waiting to join it). Cost per update is ``O(window * dim)`` (vectorised) plus
    ``O(calibration)`` for the sorted calibration list.

    >>> import numpy as np
    >>> t = np.arange(1200)
    >>> xs = np.sin(2 * np.pi * t / 50) + 0.05 * np.random.default_rng(0).normal(size=t.size)
    >>> xs[1112] = 0.0  # at the crest (~1.0) of the sine: a normal value in the wrong place
    >>> det = KnnCad(dim=10, k=5, window=300, calibration=300)
    >>> scores = [det.update(float(i), v) for i, v in enumerate(xs)]
    >>> scores.index(next(s for s in scores if s > 0.0))  # warm-up
    82
    >>> scores[1112]
    1.0
    >>> hits = [i for i, s in enumerate(scores) if s >= det.threshold]
    >>> hits[:3], hits[-1]  # the 1/(calibration+1) floor, then 1112 and the contexts holding it
    ([1059, 1060, 1112], 1121)
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
        learn: str | dict | None = "gated",
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
        self._count = 0  # readings seen: the number of the next one
        self._recent: deque[float] = deque(maxlen=self.dim - 1)  # the context before x
        span = self.window + 2 * self.dim - 2
        self._refs: deque[float] = deque(maxlen=span)  # learned readings
        self._ids: deque[int] = deque(maxlen=span)  # their reading numbers
        self._alphas: deque[float] = deque(maxlen=self.calibration)
        self._sorted: list[float] = []
        self._pending: deque[tuple[int, float]] = deque()  # (reading number, alpha) to calibrate
        self._x = 0.0  # score_one's reading, for learn_one
        self._init_learning(learn)
        self._delay = 0 if self._learning.policy.mode == "always" else self._learning.policy.span

    def _nonconformity(self, x: float) -> float | None:
        dim, cur = self.dim, self._count
        if len(self._recent) < dim - 1 or len(self._refs) < dim:
            return None
        ids = np.fromiter(self._ids, dtype=np.int64, count=len(self._ids))
        # reference contexts: dim consecutive learned readings ending dim or more readings ago
        first, last = ids[: len(ids) - dim + 1], ids[dim - 1 :]
        ok = (last - first == dim - 1) & (last <= cur - dim)
        n_ok = int(ok.sum())
        if n_ok < self.k:
            return None
        vals = np.fromiter(self._refs, dtype=float, count=len(self._refs))
        refs = np.lib.stride_tricks.sliding_window_view(vals, dim)[ok]
        if n_ok > self.window:
            refs = refs[-self.window :]
        ctx = np.fromiter(self._recent, dtype=float, count=dim - 1)
        ctx = np.append(ctx, x)
        diff = np.minimum(np.abs(refs - ctx), _DIFF_CAP)
        scale = float(diff.max())
        if scale == 0.0:
            return 0.0
        dist = np.sqrt(((diff / scale) ** 2).sum(axis=1))
        nearest = np.partition(dist, self.k - 1)[: self.k] if self.k < dist.size else dist
        alpha = float(nearest.mean()) * scale
        return alpha if math.isfinite(alpha) else _DIFF_CAP

    def _calibrate(self, alpha: float) -> None:
        if len(self._alphas) == self.calibration:
            del self._sorted[bisect_left(self._sorted, self._alphas[0])]
        self._alphas.append(alpha)
        insort(self._sorted, alpha)

    def score_one(self, t: float, x: float) -> float:
        """Score the context ending at ``x`` against the calibration; calibrate the alphas that
        waited ``span`` readings without an episode beginning."""
        x = self._x = float(x)
        cur = self._count
        pending = self._pending
        if pending:
            if self._learning.episode is not None:
                pending.clear()  # the start of a collective anomaly: not for the calibration
            while pending and pending[0][0] <= cur - self._delay:
                self._calibrate(pending.popleft()[1])
        alpha = self._nonconformity(x)
        score = 0.0
        if alpha is not None:
            n = len(self._alphas)
            if n >= self.min_periods:
                score = bisect_left(self._sorted, alpha) / n
            if self._learning.episode is None:
                if self._delay:
                    pending.append((cur, alpha))
                else:
                    self._calibrate(alpha)
        self._recent.append(x)
        self._count = cur + 1
        return score

    def learn_one(self, t: float, x: float) -> None:
        """Add the reading to the reference stream."""
        self._refs.append(self._x)
        self._ids.append(self._count - 1)

    def _dump(self) -> tuple:
        """``(count, recent, references, runs, alphas, pending)``, see the class docstring."""
        runs: list[list[int]] = []
        for i in self._ids:
            if runs and runs[-1][0] + runs[-1][1] == i:
                runs[-1][1] += 1
            else:
                runs.append([i, 1])
        return (
            self._count,
            tuple(self._recent),
            tuple(self._refs),
            tuple((a, b) for a, b in runs),
            tuple(self._alphas),
            tuple(self._pending),
        )

    def _load(self, state: tuple) -> None:
        count, recent, refs, runs, alphas, pending = state
        self._count = int(count)
        self._recent.extend(float(v) for v in recent)
        self._refs.extend(float(v) for v in refs)
        self._ids.extend(i for a, n in runs for i in range(int(a), int(a) + int(n)))
        self._alphas.extend(float(a) for a in alphas)
        self._sorted = sorted(self._alphas)
        self._pending.extend((int(i), float(a)) for i, a in pending)
