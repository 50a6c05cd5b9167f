"""Robust z-score (median / MAD) over a sliding window."""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from typing import ClassVar

from twinwatch.detectors.base import Scalar, check_int, check_positive, clamp_score

__all__ = ["RobustZ"]

_MAD_TO_SIGMA = 1.4826  # 1 / Phi^-1(3/4): MAD -> sigma for normal data
_MEANAD_TO_SIGMA = 1.2533  # sqrt(pi / 2): mean absolute deviation -> sigma for normal data
_REL_FLOOR = 1e-6  # scale >= 1e-6 * |median|: float noise on large values never scores


class RobustZ(Scalar):
    """Robust z-score ``|x - median| / scale`` against the previous ``window`` readings.

    For spikes and steps on noisy signals (bridge strain, PV output, water pressure). ``x`` is
    scored against the window *before* it is added. The window is kept twice: a deque in arrival
    order (to know which value leaves) and a sorted list maintained with ``bisect`` (median in O(1),
    MAD by an O(log n) selection over the two sorted halves of deviations, see :meth:`_mad`), so
    one update costs a few microseconds at ``window=120``; score and learn share the sorted list.

    The scale is ``1.4826 * MAD``. On flat stretches the MAD is 0, so it falls back to
    ``1.2533 * mean absolute deviation`` (only then: the mean deviation is itself not robust to
    the outliers we are looking for), and is floored at ``max(min_scale, 1e-6 * |median|)``:

    * a flat line with a few wiggles in the window scores a new wiggle against the size of those
      wiggles (finite, moderate);
    * float noise on large values (1e12) never scores, thanks to the relative floor;
    * a real jump off a perfectly flat line still scores ``jump / floor`` (high; capped at
      ``MAX_SCORE``). For series that sit at exactly 0 for long (PV output at night, a closed
      valve), set ``min_scale`` to the sensor's resolution so the first reading after the flat
      stretch scores in resolution units rather than in units of 1e-9. A stuck sensor is
      :class:`~twinwatch.detectors.stale.Stuck`'s job.

    Parameters
    ----------
    window
        Number of previous readings the median and MAD are computed over.
    threshold
        A score >= threshold is a hit.
    min_periods
        ``update`` returns 0.0 until the window holds this many readings (<= window).
    min_scale
        Absolute floor on the scale, in the series' units (> 0).
    diff
        Score the change from the previous reading instead of the reading itself. For signals
        with a strong legitimate trend (PV output through the day), where a sudden step (an
        inverter trip) is the anomaly but the level is not.

    Examples
    --------
    >>> det = RobustZ(window=5, min_periods=5)
    >>> [det.update(float(t), x) for t, x in enumerate([1.0, 2.0, 3.0, 4.0, 100.0])]
    [0.0, 0.0, 0.0, 0.0, 0.0]
    >>> round(det.update(5.0, 10.0), 4)  # median 3, MAD 1 -> (10 - 3) / 1.4826
    4.7214
    """

    name: ClassVar[str] = "robust_z"

    def __init__(
        self,
        window: int = 120,
        threshold: float = 6.0,
        min_periods: int = 30,
        min_scale: float = 1e-9,
        diff: bool = False,
        learn: str | dict | None = "gated",
    ) -> None:
        self.window = check_int("window", window, 1)
        self.threshold = check_positive("threshold", threshold)
        self.min_periods = check_int("min_periods", min_periods, 1)
        if self.min_periods > self.window:
            raise ValueError(f"min_periods ({min_periods!r}) must be <= window ({window!r})")
        self.min_scale = check_positive("min_scale", min_scale)
        if not isinstance(diff, bool):
            raise ValueError(f"diff must be true or false, got {diff!r}")
        self.diff = diff
        self._prev: float | None = None  # previous reading (diff mode)
        self._values: deque[float] = deque()  # arrival order
        self._sorted: list[float] = []
        self._x: float | None = None  # the value score_one scored, for learn_one
        self._init_learning(learn)

    def score_one(self, t: float, x: float) -> float:
        """Score ``x`` (or its change, in diff mode) against the previous ``window`` readings."""
        x = float(x)
        if self.diff:
            prev, self._prev = self._prev, x
            if prev is None:
                self._x = None
                return 0.0
            x -= prev
        self._x = x
        s = self._sorted
        n = len(s)
        if n < self.min_periods:
            return 0.0
        h = n >> 1
        med = s[h] if n & 1 else 0.5 * s[h - 1] + 0.5 * s[h]
        scale = _MAD_TO_SIGMA * self._mad(s, n, med)
        if scale == 0.0:  # flat stretch: fall back on the mean absolute deviation
            scale = _MEANAD_TO_SIGMA * (sum(s[h:]) - sum(s[:h]) - (n - 2 * h) * med) / n
        floor = _REL_FLOOR * abs(med)
        if floor < self.min_scale:
            floor = self.min_scale
        if not scale >= floor:  # also catches NaN from overflow
            scale = floor
        return clamp_score(abs(x - med) / scale)

    def learn_one(self, t: float, x: float) -> None:
        """Add the reading just scored (its change, in diff mode) to the window."""
        v = self._x
        if v is None:
            return
        values = self._values
        s = self._sorted
        values.append(v)
        insort(s, v)
        if len(values) > self.window:
            del s[bisect_left(s, values.popleft())]

    @staticmethod
    def _mad(s: list[float], n: int, med: float) -> float:
        """Median of ``|s[i] - med|`` for the sorted list ``s``, without building it.

        The deviations are two sorted sequences: left ``A[i] = med - s[h-1-i]`` (``i < h``) and
        right ``B[j] = s[h+j] - med`` (``j < n-h``), with ``h = n // 2``. The k-th smallest of their
        union is found by binary search on how many come from ``A``.
        """
        h = n >> 1
        p = h  # len(A)
        q = n - h  # len(B)
        k1 = h + 1 if n & 1 else h  # 1-based rank of the (lower) median deviation
        lo = k1 - q if k1 > q else 0
        hi = k1 if k1 < p else p
        while lo < hi:  # smallest i with B[j-1] <= A[i], j = k1 - i
            i = (lo + hi) >> 1
            if s[h + k1 - i - 1] - med > med - s[h - 1 - i]:
                lo = i + 1
            else:
                hi = i
        i = lo
        j = k1 - i
        a = med - s[h - i] if i > 0 else -1.0  # A[i-1]
        b = s[h + j - 1] - med if j > 0 else -1.0  # B[j-1]
        kth = a if a > b else b
        if n & 1:
            return kth
        # even n: average with the next deviation, min(A[i], B[j])
        a = med - s[h - 1 - i] if i < p else math.inf
        b = s[h + j] - med if j < q else math.inf
        return 0.5 * kth + 0.5 * (a if a < b else b)

    def _dump(self) -> tuple:
        """The window as a tuple of floats in arrival order, and the previous reading."""
        return (tuple(self._values), self._prev)

    def _load(self, state: tuple) -> None:
        window, self._prev = state
        values = [float(v) for v in window][-self.window :]
        self._values = deque(values)
        self._sorted = sorted(values)
