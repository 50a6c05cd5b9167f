"""The alert lifecycle: inactive -> pending -> firing -> resolved, in event time.

One ``AlertState`` per (series, rule). ``step(state, t, hit, for_s, clear_s)`` advances it with one
detector decision at time ``t`` and returns the new status when it changes:

    hit, inactive              -> "pending"  (or straight to "firing" when for_s == 0)
    hit, pending, t-since >= for_s -> "firing"
    no hit, pending            -> back to inactive, silently (as Prometheus' ``for``: a condition
                                  that did not last is not an alert)
    no hit, firing, t-last_hit >= clear_s -> "resolved"  (``clear_s`` keeps one quiet sample from
                                  resolving an alert that is still going on: Prometheus'
                                  ``keep_firing_for``)

Time is always passed in; nothing here reads the clock, so tests are table-driven.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AlertState", "step", "INACTIVE", "PENDING", "FIRING"]

INACTIVE, PENDING, FIRING = 0, 1, 2


@dataclass(slots=True)
class AlertState:
    status: int = INACTIVE
    since: float = 0.0  # first hit of the current episode (the alert's startsAt)
    last_hit: float = 0.0

    def to_state(self) -> tuple[int, float, float]:
        return (self.status, self.since, self.last_hit)

    @classmethod
    def from_state(cls, state: tuple[int, float, float]) -> "AlertState":
        return cls(*state)


def step(state: AlertState, t: float, hit: bool, for_s: float, clear_s: float) -> str | None:
    """Advance ``state`` by one decision; return "pending", "firing" or "resolved" on a change."""
    if hit:
        state.last_hit = t
        if state.status == INACTIVE:
            state.since = t
            if for_s <= 0:
                state.status = FIRING
                return "firing"
            state.status = PENDING
            return "pending"
        if state.status == PENDING and t - state.since >= for_s:
            state.status = FIRING
            return "firing"
        return None
    if state.status == PENDING:
        state.status = INACTIVE
    elif state.status == FIRING and t - state.last_hit >= clear_s:
        state.status = INACTIVE
        return "resolved"
    return None
