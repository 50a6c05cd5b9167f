"""Seasonal / contextual baseline: a separate normal level per hour of day (or hour of week)."""

from __future__ import annotations

import math
import statistics
from typing import Any, ClassVar

from twinwatch.detectors.base import Scalar, check_int, check_positive, clamp_score

__all__ = ["Seasonal"]


class Seasonal(Scalar):
    """``|x - mean_b| / sd_b`` where ``b`` is the reading's slot in the season.

    For signals with a daily or weekly rhythm (traffic, water demand, PV, building load): 3 a.m.
    is compared with earlier 3 a.m.s, not with the busy afternoon. The season of length
    ``period_s`` (86,400 = a day; 604,800 = a week, for weekday/weekend patterns) is cut into
    ``bins`` slots by UTC time ``t``; each slot keeps an exponentially weighted mean and
    variance (weight ``max(alpha, 1/n)``: a plain mean for its first ``1/alpha`` readings), so
    the profile follows slow change. A slot scores 0.0 until it has ``min_count`` readings.
    ``sd`` is floored at ``max(min_scale, 1e-9 * |mean|)``.

    Examples
    --------
    >>> det = Seasonal(period_s=4.0, bins=2, min_count=3)
    >>> scores = [det.update(float(t), [10.0, 10.0, 0.0, 0.0][t % 4] + 0.1 * (t % 3))
    ...           for t in range(24)]
    >>> max(scores) < 3.0
    True
    >>> det.update(24.0, 0.0) > 10.0  # 0 belongs to the second half of the period, not the first
    True
    """

    name: ClassVar[str] = "seasonal"

    def __init__(
        self,
        period_s: float = 86400.0,
        bins: int = 24,
        alpha: float = 0.05,
        threshold: float = 6.0,
        min_count: int = 5,
        min_scale: float = 1e-9,
        learn: str | dict | None = "gated",
    ) -> None:
        self.period_s = check_positive("period_s", period_s)
        self.bins = check_int("bins", bins, 1)
        self.alpha = check_positive("alpha", alpha)
        if self.alpha > 1.0:
            raise ValueError(f"alpha must be <= 1, got {alpha!r}")
        self.threshold = check_positive("threshold", threshold)
        self.min_count = check_int("min_count", min_count, 1)
        self.min_scale = check_positive("min_scale", min_scale)
        self._n: list[int] | None = None
        self._mean: list[float] = []
        self._var: list[float] = []
        self._init_learning(learn)

    def _slot(self, t: float) -> int:
        return int((t % self.period_s) / self.period_s * self.bins) % self.bins

    def score_one(self, t: float, x: float) -> float:
        if self._n is None:
            return 0.0
        b = self._slot(t)
        if self._n[b] < self.min_count:
            return 0.0
        mean = self._mean[b]
        sd = math.sqrt(self._var[b])
        floor = max(self.min_scale, 1e-9 * abs(mean))
        return clamp_score(abs(x - mean) / (sd if sd > floor else floor))

    def learn_one(self, t: float, x: float) -> None:
        if self._n is None:
            self._n, self._mean, self._var = [0] * self.bins, [0.0] * self.bins, [0.0] * self.bins
        b = self._slot(t)
        n, mean, var = self._n[b] + 1, self._mean[b], self._var[b]
        w = max(self.alpha, 1.0 / n)
        d = x - mean
        if math.isfinite(d):
            mean += w * d
            var = (1.0 - w) * (var + w * d * d)
        self._n[b] = n
        self._mean[b] = mean
        self._var[b] = var if math.isfinite(var) else 0.0

    def _rebase(self, held: tuple[tuple[float, Any], ...]) -> None:
        """Accept a change of level and keep the profile: every slot's mean moves by the median
        offset of the held readings from their slots' means (slots that could score them)."""
        counts, means = self._n, self._mean
        offsets = []
        if counts is not None:
            for t, x in held:
                b = self._slot(t)
                if counts[b] >= self.min_count:
                    offsets.append(x - means[b])
        if not offsets:  # nothing to compare with: learn the held readings from scratch
            super()._rebase(held)
            return
        shift = statistics.median(offsets)
        self._mean = [m + shift for m in means]

    def _dump(self) -> tuple:
        """``(counts, means, variances)`` per slot."""
        if self._n is None:
            return ()
        return (tuple(self._n), tuple(self._mean), tuple(self._var))

    def _load(self, state: tuple) -> None:
        if state:
            self._n, self._mean, self._var = (list(s) for s in state)
