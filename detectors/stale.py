"""Stale data: stuck values, late readings, and series that stop reporting."""

from __future__ import annotations

import heapq
import math
from typing import ClassVar

from twinwatch.detectors.base import (
    Rule,
    Settings,
    check_int,
    check_nonnegative,
    check_positive,
    clamp_score,
)

__all__ = ["Gap", "StaleTracker", "Stuck"]


class Stuck(Rule):
    """A sensor that keeps reporting the same value: a frozen PLC register, a data logger
    repeating its last reading, a chlorine analyser with a blocked cell.

    A reading continues the run when ``|x - prev| <= tolerance`` (``prev`` is the previous
    reading, so with ``tolerance > 0`` a very slow ramp also counts as a run), otherwise a new run
    of length 1 starts. ``score = run_length / n`` and ``threshold = 1.0``, so the n-th identical
    reading in a row is the first hit, and the score keeps growing while the sensor stays stuck.
    No warm-up. State: ``(prev, run_length)``.

    Parameters
    ----------
    n
        Run length (number of identical readings, >= 2) that makes a hit.
    tolerance
        Largest change still counted as "the same value" (>= 0), in the series' units.

    Examples
    --------
    >>> det = Stuck(n=3)
    >>> [round(det.update(float(t), x), 2) for t, x in enumerate([1.0, 2.0, 2.0, 2.0, 2.0, 3.0])]
    [0.33, 0.33, 0.67, 1.0, 1.33, 0.33]
    """

    name: ClassVar[str] = "stuck"
    threshold: float = 1.0

    def __init__(self, n: int = 30, tolerance: float = 0.0) -> None:
        self.n = check_int("n", n, 2)
        self.tolerance = check_nonnegative("tolerance", tolerance)
        self._prev = 0.0
        self._run = 0

    def update(self, t: float, x: float) -> float:
        """Extend or restart the run with ``x`` and score its length (score and learn are one)."""
        if not math.isfinite(x):
            return 0.0
        x = float(x)
        if self._run and abs(x - self._prev) <= self.tolerance:
            self._run += 1
        else:
            self._run = 1
        self._prev = x
        return clamp_score(self._run / self.n)

    def to_state(self) -> tuple:
        """``(prev, run_length)``."""
        return (self._prev, self._run)

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> Stuck:
        det = cls(**params)
        prev, run = state
        det._prev, det._run = float(prev), int(run)
        return det


class Gap(Rule):
    """Late or missing data, detected when the series resumes: a flaky LoRaWAN node, a
    gateway that buffered readings during an outage.

    ``score = (t - t_prev) / interval_s`` (the gap in units of the expected reporting interval) and
    ``threshold = factor``. ``x`` is ignored (any value, even NaN, counts as a reading). The first
    reading scores 0.0 (warm-up); a timestamp that goes backwards scores 0.0 and does not move
    ``t_prev`` back. Series that stop reporting entirely never call ``update``: see
    :class:`StaleTracker`. State: ``(t_prev,)`` or ``()`` before the first reading.

    Parameters
    ----------
    interval_s
        Expected reporting interval in seconds (> 0).
    factor
        A gap of ``factor`` intervals or more is a hit (> 0).

    Examples
    --------
    >>> det = Gap(interval_s=10.0)
    >>> [det.update(t, 1.0) for t in (0.0, 10.0, 20.0, 55.0)]
    [0.0, 1.0, 1.0, 3.5]
    """

    name: ClassVar[str] = "gap"

    def __init__(self, interval_s: float, factor: float = 3.0) -> None:
        self.interval_s = check_positive("interval_s", interval_s)
        self.factor = check_positive("factor", factor)
        self._t_prev: float | None = None

    @property
    def threshold(self) -> float:
        """A gap of ``factor`` intervals or more is a hit."""
        return self.factor

    def update(self, t: float, x: float) -> float:
        """Score the gap since the previous reading, then remember ``t``."""
        if not math.isfinite(t):
            return 0.0
        t = float(t)
        prev = self._t_prev
        if prev is None or t <= prev:
            if prev is None:
                self._t_prev = t
            return 0.0
        self._t_prev = t
        return clamp_score((t - prev) / self.interval_s)

    def to_state(self) -> tuple:
        """``(t_prev,)``, or ``()`` before the first reading."""
        return () if self._t_prev is None else (self._t_prev,)

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> Gap:
        det = cls(**params)
        if state:
            det._t_prev = float(state[0])
        return det


class StaleTracker(Settings):
    """Series that stop reporting entirely (not a :class:`~twinwatch.detectors.base.Detector`).

    The flow calls :meth:`seen` for every reading and :meth:`check` periodically with the current
    time. A series is stale when it has been silent for longer than ``factor * interval_s``; it is
    reported once, and can be reported again only after it has been seen again. Keys are kept
    until :meth:`forget` is called (e.g. for a decommissioned sensor).

    ``check`` costs what falls due, not the number of series: a heap holds each series' deadline
    as it was when pushed, and ``seen`` moves nothing (the flow checks once per batch, and a scan
    of every series per batch cost 2 ms a batch at 10,000 series). A deadline taken from the heap
    whose series has been seen since goes back with its new deadline.

    Parameters
    ----------
    factor
        Silence of more than ``factor`` expected intervals makes a series stale (> 0).

    Examples
    --------
    >>> tracker = StaleTracker(factor=3.0)
    >>> tracker.seen("pump-1/current", t=0.0, interval_s=10.0)
    >>> tracker.seen("pump-2/current", t=25.0, interval_s=10.0)
    >>> tracker.check(now=31.0)
    [('pump-1/current', 31.0)]
    >>> tracker.check(now=40.0)  # already reported
    []
    """

    def __init__(self, factor: float = 3.0) -> None:
        self.factor = check_positive("factor", factor)
        # key -> [t_last, interval_s, reported, deadline of its entry in the heap]
        self._series: dict[str, list] = {}
        self._due: list[tuple[float, str]] = []  # (deadline, key), the earliest first

    def _arm(self, key: str, entry: list) -> None:
        """Push the deadline of ``entry`` (``t_last + factor x interval``, a little early so
        that the exact test in ``check`` decides, whatever the rounding)."""
        due = entry[0] + self.factor * entry[1]
        due -= 1e-9 * max(1.0, abs(due))
        entry[3] = due
        heapq.heappush(self._due, (due, key))

    def seen(self, key: str, t: float, interval_s: float) -> None:
        """Record a reading of series ``key`` at time ``t``, expected every ``interval_s``."""
        if not (math.isfinite(interval_s) and interval_s > 0.0):
            raise ValueError(f"interval_s must be finite and > 0, got {interval_s!r}")
        if not math.isfinite(t):
            return
        entry = self._series.get(key)
        if entry is None:
            entry = self._series[key] = [float(t), float(interval_s), False, 0.0]
            self._arm(key, entry)
            return
        if t > entry[0]:
            entry[0] = float(t)
        if entry[1] != interval_s:
            entry[1] = float(interval_s)
            if entry[0] + self.factor * entry[1] < entry[3]:  # due earlier than its heap entry
                self._arm(key, entry)
        if entry[2]:  # reported: its heap entry is gone, watch it again
            entry[2] = False
            self._arm(key, entry)

    def check(self, now: float) -> list[tuple[str, float]]:
        """``(key, seconds since last seen)`` for each newly stale series, sorted by key."""
        factor = self.factor
        due, series = self._due, self._series
        stale = []
        later: dict[str, list] = {}  # seen since pushed (or not quite due): back, new deadline
        while due and due[0][0] <= now:
            at, key = heapq.heappop(due)
            entry = series.get(key)
            if entry is None or entry[2] or entry[3] != at:
                continue  # forgotten, reported, or superseded by an earlier deadline
            if now - entry[0] > factor * entry[1]:
                entry[2] = True
                stale.append((key, now - entry[0]))
            else:
                later[key] = entry
        for key, entry in later.items():
            self._arm(key, entry)
        stale.sort()
        return stale

    def forget(self, key: str) -> None:
        """Stop tracking ``key`` (no error if unknown)."""
        self._series.pop(key, None)

    def __len__(self) -> int:
        return len(self._series)

    def to_state(self) -> tuple:
        """A tuple of ``(key, t_last, interval_s, reported)`` tuples."""
        return tuple((k, e[0], e[1], e[2]) for k, e in self._series.items())

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> StaleTracker:
        tracker = cls(**params)
        tracker._series = {k: [float(t), float(i), bool(r), 0.0] for k, t, i, r in state}
        for key, entry in tracker._series.items():
            if not entry[2]:
                tracker._arm(key, entry)
        return tracker
