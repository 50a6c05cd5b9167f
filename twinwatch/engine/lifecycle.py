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

``evaluate(state, t, score, threshold, policy)`` wraps ``step`` with what on-call needs on top
(issue #4), each off by default:

* hysteresis: an active (pending/firing) alert stays hit while ``score >= policy.reset``, a level
  below the detector's threshold, so a score hovering at the threshold does not resolve and
  re-fire on every sample (Kapacitor's reset expressions);
* flapping: an alert that fired ``flap_max`` times within ``flap_window_s`` is held firing until
  it has been quiet for the whole window, instead of notifying each change (Kapacitor's
  ``.flapping()``, Nagios' flap detection);
* escalation: a firing alert whose score reaches a higher severity's level returns "firing"
  again with ``state.level`` raised (same fingerprint; it never de-escalates until resolved).

``adopt(state, status, since, at, level)`` makes a state restored from an older snapshot agree
with what on-call was last told (the delivery store's newest state of that alert): after a
crash, an alert that fired after the snapshot is owned again (firing, its real start) instead of
re-fired with a later start or left firing for ever; one that resolved after it is inactive.

Time is always passed in; nothing here reads the clock, so tests are table-driven.
"""

from __future__ import annotations

from dataclasses import dataclass

from twinwatch.schema import AlertStatus

__all__ = [
    "AlertState",
    "Policy",
    "step",
    "evaluate",
    "adopt",
    "INACTIVE",
    "PENDING",
    "FIRING",
]

INACTIVE, PENDING, FIRING = 0, 1, 2


@dataclass(slots=True)
class AlertState:
    status: int = INACTIVE
    since: float = 0.0  # first hit of the current episode (the alert's startsAt)
    last_hit: float = 0.0
    level: int = 0  # escalation step reached (index into Policy.levels + 1); 0 = base severity
    fired: tuple[float, ...] = ()  # recent firing times, for flapping (at most flap_max)

    def to_state(self) -> tuple:
        # Most states never escalate or flap: keep their snapshot at three floats.
        if self.level == 0 and not self.fired:
            return (self.status, self.since, self.last_hit)
        return (self.status, self.since, self.last_hit, self.level, self.fired)

    @classmethod
    def from_state(cls, state: tuple) -> AlertState:
        return cls(*state)


@dataclass(frozen=True, slots=True)
class Policy:
    """One rule's timing: for_s/clear_s (see ``step``), reset score, flapping, escalation levels
    (ascending scores; level i+1 applies from ``levels[i]``)."""

    for_s: float = 0.0
    clear_s: float = 300.0
    reset: float | None = None
    flap_window_s: float = 0.0
    flap_max: int = 3
    levels: tuple[float, ...] = ()

    def level_of(self, score: float) -> int:
        return sum(1 for s in self.levels if score >= s)


def step(
    state: AlertState, t: float, hit: bool, for_s: float, clear_s: float
) -> AlertStatus | None:
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


def _flapping(state: AlertState, p: Policy) -> bool:
    """Was it flapping as of its last hit? (Then it resolves only after a whole quiet window.)"""
    if p.flap_window_s <= 0:
        return False
    recent = [f for f in state.fired if state.last_hit - f <= p.flap_window_s]
    return p.flap_window_s > 0 and len(recent) >= p.flap_max


def evaluate(
    state: AlertState, t: float, score: float, threshold: float, p: Policy
) -> AlertStatus | None:
    """Advance ``state`` by one detector score; return "pending", "firing" (also on escalation)
    or "resolved" on a change, None otherwise."""
    if state.status == INACTIVE and score < threshold:  # nearly every reading: nothing changes
        return None
    active = state.status != INACTIVE
    hit = score >= threshold or (active and p.reset is not None and score >= p.reset)
    # A flapping alert needs the whole window quiet before it resolves.
    clear_s = max(p.clear_s, p.flap_window_s) if _flapping(state, p) else p.clear_s
    quiet_s = t - state.last_hit
    change = step(state, t, hit, p.for_s, clear_s)
    # A firing, or a hit after a gap that would have resolved and re-fired it had it not been
    # held, counts towards flapping: a held alert stays held while it keeps flapping.
    if p.flap_window_s > 0 and (
        change == "firing"
        or (change is None and hit and state.status == FIRING and quiet_s >= p.clear_s)
    ):
        state.fired = tuple(f for f in state.fired if t - f <= p.flap_window_s)[
            -(p.flap_max - 1) :
        ] + (t,)
    if change == "firing":
        state.level = p.level_of(score) if hit else 0
        return change
    if change == "resolved":  # keeps its level: the resolve names the severity that fired
        return change
    if state.status == FIRING and hit and p.levels:
        level = p.level_of(score)
        if level > state.level:
            state.level = level
            return "firing"
    return change


def adopt(state: AlertState, status: str, since: float, at: float, level: int = 0) -> bool:
    """Bring ``state`` in line with the newest delivered ``status`` of its alert ("firing" or
    "resolved", the episode that started at ``since``, the change at ``at``). A state that
    already knows a later episode is left alone. Returns True if it changed."""
    if status == "firing":
        if state.status == FIRING and state.since >= since:
            return False
        if state.status == PENDING and state.since > since:
            return False
        state.status, state.since, state.level = FIRING, since, level
        state.last_hit = max(state.last_hit, at)  # clear_s counts from here without new hits
        return True
    if status == "resolved" and state.status != INACTIVE and state.since <= since:
        state.status = INACTIVE
        return True
    return False
