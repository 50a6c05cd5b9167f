"""Minimum night flow (MNF) of a district metered area, against its multi-day baseline.

At night legitimate use is at its lowest and steadiest, so the flow into a DMA is mostly
leakage plus a small, stable night use: a new leak shows up as a rise of the nightly minimum
long before it would stand out in the daytime flow (UK Water Industry Report E, "Managing
Leakage", 1994; Farley & Trow, *Losses in Water Distribution Networks*, IWA 2003, ch. 7;
the IWA Water Loss Task Force's MNF analysis). Practice: take the minimum of the short-interval
(15-minute) mean inflow over the night window, compare it with the same figure of the previous
nights, and act on a sustained rise.

The net inflow is the sum of the DMA's inlets minus its outlets (a DMA may feed another).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from twinwatch.detectors.base import check_finite, check_int, check_positive, clamp_score
from twinwatch.detectors.group import Explanation, Grouped, LocalClock, Role, check_counts

__all__ = ["NightFlow"]


class NightFlow(Grouped):
    """Nightly minimum of the ``block_s`` mean net inflow in [``start_h``, ``end_h``) local time
    (``timezone``), judged when the night window closes against the median of the last
    ``nights`` unflagged nights.

    score = (MNF - median) / max(1.4826 x MAD, ``min_rise`` x median, ``min_abs``): the rise in
    units of the night-to-night scatter, floored at a relative and an absolute resolution (a
    few nights give a noisy MAD). The score is held until the next night's verdict, so an
    alert stays up through the day for as long as the leak lasts; a night scoring half the
    threshold or more is not added to the baseline (gated), so a leak never becomes the new
    normal. 0.0 until ``min_nights``
    nights are in the baseline. A night with less than half its blocks is not judged.

    >>> det = NightFlow({"inflow": 1}, timezone="UTC", min_nights=3)
    >>> def day(d, extra):
    ...     out = []
    ...     for m in range(0, 1440):
    ...         h = m / 60
    ...         flow = 140 + 120 * (6 <= h < 22) + extra + (m % 7) * 0.3
    ...         out.append(det.update(d * 86400.0 + m * 60, [flow]))
    ...     return max(out)
    >>> [day(d, 0.0) for d in range(5)]
    [0.0, 0.0, 0.0, 0.0, 0.0]
    >>> day(5, 15.0) >= det.threshold  # a 15 m3/h leak, ~10 % of the night flow
    True
    >>> round(det.explain().observed - det.explain().expected, 1)
    15.0
    """

    name: ClassVar[str] = "night_flow"
    kind: ClassVar[str] = "leak"  # type: ignore[misc]
    ROLES: ClassVar[tuple[Role, ...]] = (
        Role("inflow", 1, None, "flow meters into the DMA"),
        Role("outflow", 0, None, "flow meters out of the DMA (to a neighbouring DMA)"),
    )

    def __init__(
        self,
        counts: dict,
        timezone: str = "UTC",
        start_h: float = 1.0,
        end_h: float = 5.0,
        block_s: float = 900.0,
        nights: int = 7,
        min_nights: int = 3,
        min_rise: float = 0.03,
        min_abs: float = 0.0,
        threshold: float = 3.0,
        learn: str | Mapping[str, Any] | None = None,
    ) -> None:
        self.counts = check_counts(self.ROLES, counts)
        self.timezone = timezone
        self._clock = LocalClock(timezone)
        self.start_h = check_finite("start_h", start_h)
        self.end_h = check_finite("end_h", end_h)
        if not 0.0 <= self.start_h < self.end_h <= 24.0:
            raise ValueError(f"need 0 <= start_h < end_h <= 24, got {start_h!r}, {end_h!r}")
        self.block_s = check_positive("block_s", block_s)
        self.nights = check_int("nights", nights, 2)
        self.min_nights = check_int("min_nights", min_nights, 1)
        if self.min_nights > self.nights:
            raise ValueError(f"min_nights must be <= nights, got {min_nights!r}")
        self.min_rise = check_positive("min_rise", min_rise)
        self.min_abs = max(check_finite("min_abs", min_abs), 0.0)
        self.threshold = check_positive("threshold", threshold)
        self._n_in = self.counts["inflow"]
        self._night = -1  # local day number of the night being measured
        self._block = -1  # block index within the night
        self._sum = 0.0  # current block's sum and count
        self._cnt = 0
        self._min = math.inf  # the night's lowest block mean so far
        self._blocks = 0  # complete blocks this night
        self._baseline: tuple[float, ...] = ()  # unflagged nights' MNF, oldest first
        self._score = 0.0
        self._last = (0.0, 0.0, 0.0)  # (MNF, median, scale) of the last verdict
        self._closed: float | None = None  # a night just judged, for learn_one
        self._init_learning(learn)

    def score_one(self, t: float, x: np.ndarray) -> float:
        self._closed = None  # a night not learned with its own tick is not learned later
        net = float(x[: self._n_in].sum() - x[self._n_in :].sum())
        day, hour = divmod(self._clock.local(t), 86400.0)
        hour /= 3600.0
        in_window = self.start_h <= hour < self.end_h
        if self._night >= 0 and (not in_window or day != self._night):
            self._close_night()
        if in_window and math.isfinite(net):
            if self._night < 0:
                self._night, self._block = int(day), -1
            block = int((hour - self.start_h) * 3600.0 // self.block_s)
            if block != self._block:
                self._close_block()
                self._block = block
            self._sum += net
            self._cnt += 1
        return self._score

    def _close_block(self) -> None:
        if self._cnt:
            self._min = min(self._min, self._sum / self._cnt)
            self._blocks += 1
        self._sum, self._cnt = 0.0, 0

    def _close_night(self) -> None:
        self._close_block()
        expected_blocks = (self.end_h - self.start_h) * 3600.0 / self.block_s
        mnf, judged = self._min, self._blocks >= expected_blocks / 2
        self._night, self._block, self._min, self._blocks = -1, -1, math.inf, 0
        if not judged or not math.isfinite(mnf):
            return
        base = self._baseline
        if len(base) >= self.min_nights:
            med = _median(base)
            mad = _median([abs(b - med) for b in base])
            scale = max(1.4826 * mad, self.min_rise * abs(med), self.min_abs, 1e-9)
            self._score = clamp_score((mnf - med) / scale)
            self._last = (mnf, med, scale)
        self._closed = mnf

    def learn_one(self, t: float, x: np.ndarray) -> None:
        """A night joins the baseline when the learning policy learns the tick that judged it
        (by default only below half the threshold: a leak night never does, nor a suspicious
        one, so a leak stays flagged for as long as it lasts and a small one does not raise the
        bar for the next night)."""
        if self._closed is not None:
            self._baseline = (*self._baseline, self._closed)[-self.nights :]
        self._closed = None

    def explain(self) -> Explanation:
        mnf, med, scale = self._last
        return Explanation(
            quantity="minimum night flow",
            observed=mnf,
            expected=med,
            low=None,
            high=med + self.threshold * scale,
            contributors=tuple((i, round(1.0 / self._n_in, 4)) for i in range(self._n_in)),
            note=f"night minimum {mnf:.4g} vs {med:.4g} on the previous nights",
            unit_of=0,
        )

    def rebaseline(self, member: int) -> None:
        """A replaced meter: the nightly minimum is re-learned from the next nights."""
        self._baseline, self._score = (), 0.0

    def _dump(self) -> tuple:
        return (
            self._night,
            self._block,
            self._sum,
            self._cnt,
            self._min,
            self._blocks,
            self._baseline,
            self._score,
            self._last,
            self._closed,
        )

    def _load(self, state: tuple) -> None:
        self._night, self._block, self._sum, self._cnt, self._min, self._blocks, *rest = state
        baseline, self._score, last, self._closed = rest
        self._baseline, self._last = tuple(baseline), tuple(last)


def _median(values) -> float:
    s = sorted(values)
    m = len(s) // 2
    return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])
