"""Anomaly likelihood: any detector's raw score -> calibrated score in [0, 1]."""

from __future__ import annotations

import math
from collections import deque
from typing import ClassVar

from twinwatch.detectors.base import Scalar, check_int, check_positive, rest
from twinwatch.detectors.ensemble import member

__all__ = ["Likelihood", "log_tail_score"]

_LOG_FLOOR = math.log(1e-10)


def log_tail_score(tail: float) -> float:
    """Map a tail probability to ``[0, 1]`` on a log scale: 1e-10 -> 1.0, 1 -> 0.0.

    Numenta's ``computeLogLikelihood``: thresholds on it read as "one in 10**(10 * score)".
    """
    if tail <= 1e-10:
        return 1.0
    return max(0.0, math.log(tail) / _LOG_FLOOR)


class Likelihood(Scalar):
    """Wraps a detector and reports how unusual its recent scores are, as Numenta's anomaly
    likelihood does.

    The inner detector's raw score is averaged over the last ``short`` readings; a normal
    distribution is fitted to those averages over the last ``window`` readings, and the score is
    the upper tail probability of the current average under it, on the log scale of
    :func:`log_tail_score`. So whatever the inner detector's units, a threshold of 0.5 means
    "a run of scores this high happens about once in 10**5 readings here", for every detector and
    every sensor. Returns 0.0 for the first ``min_periods`` readings (besides the inner warm-up).

    Parameters
    ----------
    detector, detector_params
        Registry name and constructor arguments of the inner detector.
    window
        How many recent averages the distribution is fitted to.
    short
        Averaging window of the raw score (a lone spike still moves it).
    min_var
        Floor on the fitted variance relative to ``1 + mean**2`` (a detector that always says 0
        would otherwise make its first non-zero score infinitely unlikely).
    rest_period
        After a score >= ``threshold``, report 0.0 for this many readings: one alarm per event
        (as CAD-OSE does); 0 turns it off. The model keeps learning meanwhile.
    """

    name: ClassVar[str] = "likelihood"

    def __init__(
        self,
        detector: str = "robust_z",
        detector_params: dict | None = None,
        threshold: float = 0.5,
        window: int = 2000,
        short: int = 10,
        min_periods: int = 300,
        min_var: float = 1e-6,
        rest_period: int = 0,
        learn: str | dict | None = "gated",
    ) -> None:
        self.detector = detector
        self.detector_params = dict(detector_params or {})
        self.inner = member(detector, self.detector_params, "likelihood.detector_params")
        self.threshold = check_positive("threshold", threshold)
        self.window = check_int("window", window, 2)
        self.short = check_int("short", short, 1)
        self.min_periods = check_int("min_periods", min_periods, 2)
        self.min_var = check_positive("min_var", min_var)
        self.rest_period = check_int("rest_period", rest_period, 0)
        self._resting = 0
        self._raw: deque[float] = deque()
        self._avgs: deque[float] = deque()
        self._raw_sum = self._sum = self._sumsq = 0.0
        self._since_resum = 0
        self._avg = 0.0  # score_one's average raw score, for learn_one
        self._init_learning(learn)

    def score_one(self, t: float, x: float) -> float:
        """The tail probability of the recent raw scores' average (the short average of the
        inner detector's scores advances with every reading)."""
        raw = min(self.inner.score_one(t, x), 1e6)  # the cap keeps sums of squares finite
        self._raw.append(raw)
        self._raw_sum += raw
        if len(self._raw) > self.short:
            self._raw_sum -= self._raw.popleft()
        avg = self._avg = self._raw_sum / len(self._raw)
        n = len(self._avgs)
        if n < self.min_periods:
            return 0.0
        mean = self._sum / n
        var = max(self._sumsq / n - mean * mean, self.min_var * (1.0 + mean * mean))
        z = (avg - mean) / math.sqrt(var)
        return log_tail_score(0.5 * math.erfc(z / math.sqrt(2.0)))

    def learn_one(self, t: float, x: float) -> None:
        """Learn the reading into the inner detector and its average into the distribution."""
        self.inner.learn_one(t, x)
        avg = self._avg
        self._avgs.append(avg)
        self._sum += avg
        self._sumsq += avg * avg
        if len(self._avgs) > self.window:
            old = self._avgs.popleft()
            self._sum -= old
            self._sumsq -= old * old
        self._since_resum += 1
        if self._since_resum >= self.window:  # running sums drift: re-add them now and then
            self._since_resum = 0
            self._raw_sum = sum(self._raw)
            self._sum, self._sumsq = sum(self._avgs), sum(a * a for a in self._avgs)

    def update(self, t: float, x: float) -> float:
        """Score and learn (:class:`~twinwatch.detectors.base.Scalar`), then rest after a hit."""
        if not math.isfinite(x):
            return 0.0
        score = super().update(t, x)
        score, self._resting = rest(score, self.threshold, self._resting, self.rest_period)
        return score

    def _dump(self) -> tuple:
        """Inner state, recent raw scores and averages, and their running sums."""
        return (
            self.inner.to_state(),
            tuple(self._raw),
            tuple(self._avgs),
            self._raw_sum,
            self._sum,
            self._sumsq,
            self._since_resum,
            self._resting,
        )

    def _load(self, state: tuple) -> None:
        inner, raw, avgs, self._raw_sum, self._sum, self._sumsq, self._since_resum = state[:7]
        self._resting = state[7]
        self.inner = type(self.inner).from_state(self.inner.params(), inner)
        self._raw, self._avgs = deque(raw), deque(avgs)
