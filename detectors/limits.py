"""Physical / regulatory limit rule."""

from __future__ import annotations

import math
from typing import ClassVar

from twinwatch.detectors.base import Rule, check_finite, clamp_score

__all__ = ["PhysicalLimits"]


class PhysicalLimits(Rule):
    """Fixed physical or regulatory limits, e.g. drinking-water turbidity <= 0.5 NTU or free
    chlorine in 0.1..4.0 mg/L.

    The score is ``0.0`` inside ``[low, high]``. Outside it is ``1.0 + excess / scale``, where
    ``excess`` is the distance to the breached limit and ``scale`` is ``high - low`` when both
    limits are set, else ``|limit|`` (or 1.0, in the series' units, for a limit of 0 such as
    "PV output >= 0", where a relative excess means nothing). So any breach scores
    >= ``threshold = 1.0`` and the score grows with the relative size of the breach (2.0 = one
    full band width / one limit magnitude beyond it). Stateless: ``to_state()`` returns ``()``.

    Parameters
    ----------
    low
        Lowest allowed value (inclusive), or None for no lower limit.
    high
        Highest allowed value (inclusive), or None for no upper limit. At least one must be set.

    Examples
    --------
    >>> chlorine = PhysicalLimits(low=0.1, high=4.0)
    >>> [round(chlorine.update(0.0, x), 4) for x in (0.5, 4.0, 4.39, 0.05)]
    [0.0, 0.0, 1.1, 1.0128]
    """

    name: ClassVar[str] = "limits"
    threshold: float = 1.0

    def __init__(self, low: float | None = None, high: float | None = None) -> None:
        if low is None and high is None:
            raise ValueError("PhysicalLimits needs at least one of low or high")
        self.low = None if low is None else check_finite("low", low)
        self.high = None if high is None else check_finite("high", high)
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"low must be < high, got low={low!r} high={high!r}")
        if self.low is not None and self.high is not None:
            self._scale = self.high - self.low
        else:
            limit = self.low if self.low is not None else self.high
            self._scale = abs(limit) if limit else 1.0

    def update(self, t: float, x: float) -> float:
        """Score ``x`` against the limits (``t`` is unused; there is nothing to learn)."""
        if not math.isfinite(x):
            return 0.0
        if self.high is not None and x > self.high:
            return clamp_score(1.0 + (x - self.high) / self._scale)
        if self.low is not None and x < self.low:
            return clamp_score(1.0 + (self.low - x) / self._scale)
        return 0.0

    def to_state(self) -> tuple:
        return ()

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> PhysicalLimits:
        if state != ():
            raise ValueError(f"PhysicalLimits state must be (), got {state!r}")
        return cls(**params)
