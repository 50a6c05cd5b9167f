"""Windowed Gaussian baseline (NAB's ``windowedGaussian`` reference detector, 39.6 on NAB)."""

from __future__ import annotations

import math
from collections import deque
from typing import ClassVar

from twinwatch.detectors.base import Scalar, check_int, check_positive

__all__ = ["WindowedGaussian"]


class WindowedGaussian(Scalar):
    """``1 - tail probability`` of ``x`` under a normal fitted to the previous ``window`` readings.

    The tail is one-sided on the side ``x`` lies (``0.5 * erfc(|z| / sqrt 2)``), so the score is
    in ``[0.5, 1)``; 0.0 until ``min_periods`` readings. Like NAB's reference: no seasonality, no
    robustness, a baseline to beat. Mean and variance come from running sums over the window,
    re-summed every ``window`` readings so float error cannot accumulate.

    Examples
    --------
    >>> det = WindowedGaussian(window=4, min_periods=4)
    >>> [det.update(float(t), x) for t, x in enumerate([1.0, 2.0, 3.0, 4.0])]
    [0.0, 0.0, 0.0, 0.0]
    >>> round(det.update(4.0, 2.5), 3), det.update(5.0, 100.0) > 0.999
    (0.5, True)
    """

    name: ClassVar[str] = "gaussian"

    def __init__(
        self,
        window: int = 6400,
        threshold: float = 0.9999,
        min_periods: int = 30,
        learn: str | dict | None = "gated",
    ) -> None:
        self.window = check_int("window", window, 2)
        self.threshold = check_positive("threshold", threshold)
        self.min_periods = check_int("min_periods", min_periods, 2)
        self._values: deque[float] = deque()
        self._sum = self._sumsq = 0.0
        self._since_resum = 0
        self._init_learning(learn)

    def score_one(self, t: float, x: float) -> float:
        n = len(self._values)
        if n < self.min_periods:
            return 0.0
        mean = self._sum / n
        var = max(self._sumsq / n - mean * mean, 0.0)
        sd = math.sqrt(var)
        if sd > 1e-12 * max(1.0, abs(mean)):
            return 1.0 - 0.5 * math.erfc(abs(x - mean) / sd / math.sqrt(2.0))
        return 0.5 if x == mean else 1.0

    def learn_one(self, t: float, x: float) -> None:
        v = self._values
        v.append(x)
        self._sum += x
        self._sumsq += x * x
        if len(v) > self.window:
            old = v.popleft()
            self._sum -= old
            self._sumsq -= old * old
        self._since_resum += 1
        if self._since_resum >= self.window:
            self._sum, self._sumsq = sum(v), sum(y * y for y in v)
            self._since_resum = 0

    def _dump(self) -> tuple:
        """The window (arrival order) and its running sums, so a restore scores identically."""
        if not self._values and not self._since_resum:
            return ()
        return (tuple(self._values), self._sum, self._sumsq, self._since_resum)

    def _load(self, state: tuple) -> None:
        if state:
            values, self._sum, self._sumsq, self._since_resum = state
            self._values = deque(float(y) for y in values)
