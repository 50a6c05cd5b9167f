"""Two-sided CUSUM on residuals from an EWMA baseline."""

from __future__ import annotations

import math
from typing import ClassVar

from twinwatch.detectors.base import (
    Scalar,
    check_int,
    check_nonnegative,
    check_positive,
    clamp_score,
)

__all__ = ["EwmaCusum"]

_Z_MAX = 1e6  # clip standardised residuals so the sums stay finite after overflow-sized jumps


class EwmaCusum(Scalar):
    """Two-sided CUSUM of standardised residuals from an EWMA baseline.

    For slow drifts a z-score misses: crack growth on a bridge strain gauge, a chlorine analyser
    drifting out of calibration. Each reading is standardised against the baseline *before* it is
    learned, ``z = (x - mean) / sd``, and accumulated with allowance ``k``::

        S+ = max(0, S+ + z - k)        S- = max(0, S- - z - k)        score = max(S+, S-)

    ``threshold = h``. After a hit the sums are held at ``h`` instead of restarting from 0, so the
    next reading hits again iff its residual is still beyond the allowance (``z >= k``): a step or
    a drift stays flagged for as long as it lasts, and the hits stop with the first reading back
    at the baseline. With the default learning policy (``learn: gated``) flagged readings are not
    learned, so the baseline does not chase the change; a change that persists for the policy's
    ``drift_s`` is accepted as the new baseline (see :mod:`twinwatch.detectors.policy`). With
    ``learn: always`` the baseline learns every reading and adapts to a new level within about
    ``1/alpha`` readings.

    The baseline is an exponentially weighted mean and variance with weight
    ``max(alpha, 1/n)`` for the n-th reading, i.e. the plain running mean/variance for the first
    ``1/alpha`` readings and an EWMA afterwards. ``update`` returns 0.0 for the first ``warmup``
    readings (baseline only). Zero variance guard: ``sd >= max(1e-12, 1e-9 * |mean|)``, and ``z`` is
    clipped to +/-1e6, so constant input scores 0 and a jump off a constant line scores high but
    finite.

    Parameters
    ----------
    alpha
        EWMA weight of a new reading in the baseline, in (0, 1]; ~1/alpha readings of memory.
    k
        Allowance (slack) in standard deviations, >= 0: shifts smaller than about ``2k`` sigma are
        not accumulated.
    h
        Decision threshold on the CUSUM (this is ``threshold``).
    warmup
        Readings used only to learn the baseline (>= 2).

    Examples
    --------
    >>> det = EwmaCusum(warmup=5)
    >>> scores = [det.update(float(t), x) for t, x in enumerate([1.0, 2.0] * 10 + [4.0] * 5)]
    >>> [round(s, 2) for s in scores[-5:]]  # a +5 sd step: hits from the 3rd reading on
    [5.05, 7.85, 9.99, 10.14, 10.14]
    """

    name: ClassVar[str] = "cusum"

    def __init__(
        self,
        alpha: float = 0.02,
        k: float = 0.5,
        h: float = 8.0,
        warmup: int = 30,
        learn: str | dict | None = "gated",
    ) -> None:
        self.alpha = check_positive("alpha", alpha)
        if self.alpha > 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self.k = check_nonnegative("k", k)
        self.h = check_positive("h", h)
        self.warmup = check_int("warmup", warmup, 2)
        # state: readings seen, baseline mean, baseline variance, S+, S-
        self._n = 0
        self._mean = 0.0
        self._var = 0.0
        self._pos = 0.0
        self._neg = 0.0
        self._init_learning(learn)

    @property
    def threshold(self) -> float:
        """A score >= h is a hit."""
        return self.h

    def score_one(self, t: float, x: float) -> float:
        """Standardise ``x`` against the baseline and advance the CUSUM sums (the score)."""
        if self._n < self.warmup:
            return 0.0
        x = float(x)
        mean = self._mean
        sd = math.sqrt(self._var)
        floor = 1e-9 * abs(mean)
        if floor < 1e-12:
            floor = 1e-12
        if not sd >= floor:
            sd = floor
        z = (x - mean) / sd
        if not -_Z_MAX <= z <= _Z_MAX:
            z = _Z_MAX if z > 0 else (-_Z_MAX if z < 0 else 0.0)
        pos = self._pos + z - self.k
        neg = self._neg - z - self.k
        pos = pos if pos > 0.0 else 0.0
        neg = neg if neg > 0.0 else 0.0
        score = clamp_score(pos if pos > neg else neg)
        h = self.h  # after a hit the sums are held at h: hits go on while z stays beyond k
        self._pos = pos if pos < h else h
        self._neg = neg if neg < h else h
        return score

    def learn_one(self, t: float, x: float) -> None:
        """Learn ``x`` into the baseline (West's exponentially weighted mean and variance)."""
        n = self._n + 1
        mean = self._mean
        a = 1.0 / n if n * self.alpha < 1.0 else self.alpha
        diff = float(x) - mean
        incr = a * diff
        var = (1.0 - a) * (self._var + diff * incr)
        self._mean = mean + incr
        self._var = var if var < 1e300 else 1e300
        self._n = n

    def _dump(self) -> tuple:
        """``(n, mean, var, S+, S-)``."""
        return (self._n, self._mean, self._var, self._pos, self._neg)

    def _load(self, state: tuple) -> None:
        n, mean, var, pos, neg = state
        self._n = int(n)
        self._mean, self._var, self._pos, self._neg = (
            float(mean),
            float(var),
            float(pos),
            float(neg),
        )
