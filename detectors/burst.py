"""Sliding-window event counter for event streams."""

from __future__ import annotations

import math
from collections import deque
from typing import ClassVar

from twinwatch.detectors.base import Rule, check_positive, clamp_score

__all__ = ["EventBurst"]


class EventBurst(Rule):
    """Bursts in an event stream, e.g. sshd authentication failures per host, 4xx responses per
    client, door-forced alarms per building.

    ``update(t, x)`` adds an event of weight ``x`` at time ``t`` (1.0 per failed login, 0.0 for
    other events; a negative or non-finite weight counts as 0) and returns the total weight of
    the events in the last ``window_s`` seconds, this one included: events with
    ``t_i > t - window_s`` count. No warm-up. Zero-weight events are not stored.

    The total is recomputed with ``math.fsum`` over the weights in the window, so it is exact,
    never drifts, and does not depend on history (a restored detector scores identically). Cost
    and state grow with the number of weighted events in the window (a few dozen normally; under a
    brute-force attack of 10 failures/s, 600 at the default window).

    Parameters
    ----------
    window_s
        Window length in seconds (> 0).
    threshold
        A total weight >= threshold in the window is a hit (> 0).

    Examples
    --------
    >>> det = EventBurst(window_s=60.0, threshold=3.0)
    >>> [det.update(t, 1.0) for t in (0.0, 10.0, 20.0, 65.0, 200.0)]
    [1.0, 2.0, 3.0, 3.0, 1.0]
    """

    name: ClassVar[str] = "burst"

    def __init__(self, window_s: float = 60.0, threshold: float = 10.0) -> None:
        self.window_s = check_positive("window_s", window_s)
        self.threshold = check_positive("threshold", threshold)
        self._times: deque[float] = deque()
        self._weights: deque[float] = deque()
        self._t_last = -math.inf

    def update(self, t: float, x: float) -> float:
        """Add the event, drop those older than the window, and return the window total."""
        if not math.isfinite(t):
            return clamp_score(math.fsum(self._weights))
        t = float(t)
        if t < self._t_last:  # out of order: count it at the latest time seen
            t = self._t_last
        self._t_last = t
        if math.isfinite(x) and x > 0.0:
            self._times.append(t)
            self._weights.append(float(x))
        cutoff = t - self.window_s
        times = self._times
        while times and times[0] <= cutoff:
            times.popleft()
            self._weights.popleft()
        return clamp_score(math.fsum(self._weights))

    def to_state(self) -> tuple:
        """A tuple of ``(t, weight)`` pairs, oldest first. When the newest event carried no
        weight, a trailing ``(t_last, 0.0)`` pair records its time (needed to place a later
        out-of-order event exactly as the original would)."""
        state = tuple(zip(self._times, self._weights))
        if self._t_last != -math.inf and (not self._times or self._times[-1] != self._t_last):
            state += ((self._t_last, 0.0),)
        return state

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> EventBurst:
        det = cls(**params)
        for t, w in state:
            t, w = float(t), float(w)
            if w > 0.0:
                det._times.append(t)
                det._weights.append(w)
            det._t_last = t
        return det
