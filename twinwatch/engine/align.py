"""Time alignment of an asset group: readings at their own rates in, one vector per tick out.

    aligner = Aligner(tick_s=60, tolerances=(150, 150, 75), lateness_s=30)
    ticks = aligner.push(t, member, value)    # [(tick time, (v0, v1, v2)), ...] now complete

Sensors of one asset report at different rates (a flow meter every 30 s, a chlorine analyser
every minute), with clock jitter and the odd missing sample. A group detector needs them side by
side. The aligner keeps each member's latest reading and emits a tick every ``tick_s`` (on the
epoch grid, so every process agrees) holding, per member, its latest value read within
``tolerances[member]`` before the tick or up to ``lateness_s`` after it; a member with nothing
that recent is ``nan`` (missing). A tick is emitted once a reading later than ``tick +
lateness_s`` arrives, so readings up to ``lateness_s`` late still count: event time, the same on
live streams and replays. Ticks at which no member has a value (a silent asset) are skipped.

Readings older than a member's latest are ignored (the latest wins), as are readings older than
a tick already emitted: nothing is re-emitted. Pure Python, no clock; state is
``(next tick, ((t, value) per member))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Aligner"]

_NAN = math.nan


class Aligner:
    __slots__ = ("tick_s", "tolerances", "lateness_s", "_next", "_t", "_x")

    def __init__(
        self,
        tick_s: float,
        tolerances: Sequence[float],
        lateness_s: float = 0.0,
        state: tuple | None = None,
    ):
        if not tick_s > 0:
            raise ValueError(f"tick_s must be > 0, got {tick_s!r}")
        self.tick_s = float(tick_s)
        self.tolerances = tuple(float(x) for x in tolerances)
        self.lateness_s = float(lateness_s)
        n = len(self.tolerances)
        self._next = _NAN  # the next tick to emit
        self._t = [-math.inf] * n
        self._x = [_NAN] * n
        if state is not None:
            nxt, latest = state
            self._next = float(nxt)
            if len(latest) == n:  # a group whose members changed starts afresh
                for i, (t, x) in enumerate(latest):
                    self._t[i], self._x[i] = float(t), float(x)

    def push(self, t: float, member: int, value: float) -> list[tuple[float, tuple[float, ...]]]:
        """Add one reading; return the ticks it completes, oldest first."""
        out: list[tuple[float, tuple[float, ...]]] = []
        tick, late = self.tick_s, self.lateness_s
        nxt = self._next
        if nxt != nxt:  # nan: the first reading
            nxt = math.ceil(t / tick) * tick
        while nxt + late < t:
            vec = self._vector(nxt)
            if vec is None:  # nothing recent enough: jump to the first tick not yet due
                nxt = max(nxt + tick, math.ceil((t - late) / tick) * tick)
                continue
            out.append((nxt, vec))
            nxt += tick
        self._next = nxt
        if t >= self._t[member]:
            self._t[member], self._x[member] = t, value
        return out

    def _vector(self, tick: float) -> tuple[float, ...] | None:
        vec = tuple(
            x if t > tick - tol else _NAN for t, x, tol in zip(self._t, self._x, self.tolerances)
        )
        return vec if any(v == v for v in vec) else None

    def to_state(self) -> tuple:
        return (self._next, tuple(zip(self._t, self._x)))
