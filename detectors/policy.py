"""The learning policy: what a detector learns, so that an incident never becomes the new normal.

Every scalar and vector learner takes a ``learn`` setting (a mode name or a dict) and keeps one
:class:`Learning` that decides, after ``score_one``, whether the reading goes to ``learn_one``:

``always``
    learn every reading (the classic online detector: a long incident is absorbed within about
    one window or ``1/alpha`` readings, and then no longer flagged).
``gated`` (the default)
    a reading that scored ``>= threshold`` is not learned, and nothing is learned during an
    *episode*: while more than half of the recent readings were flagged (the flag rate is an
    exponentially weighted mean over about ``span`` readings). So a collective anomaly (a level
    shift, a stuck-open valve) stays flagged for as long as it lasts, and the readings of it that
    happen to score low are not learned either; an isolated flag only skips its own reading.
``reference``
    the first ``fit`` readings are learned unconditionally (the *reference*: the fault-free start
    of an asset), after that like ``gated`` but only one in ``every`` eligible readings is
    learned, so the reference is refit slowly and only from unflagged data.

Three more settings apply to ``gated`` and ``reference``:

``gate``
    learn only readings scoring below ``gate`` x threshold (1.0, the default: below the
    threshold). A slow incident (a drifting gauge, a chlorine decline, a growing leak) scores
    below the threshold on its way there; learning those readings drags the baseline along, so
    the incident is never flagged. The asset-group detectors (:mod:`twinwatch.detectors.group`)
    default to 0.5: only a reading that is clearly normal is learned. A reading between the
    gate and the threshold is not flagged (it neither starts an episode nor is held).

``weight``
    a flagged reading outside an episode is learned with this weight (0, the default: never), so
    that an oddity that keeps recurring on its own (a quantised sensor's flicker) can slowly
    become normal; nothing in an episode is (that is the drift rule's job). A detector has no
    per-reading weights, so weight ``w`` learns one in ``1/w`` of those readings,
    deterministically (an accumulator, no random draw).
``drift_s``
    the drift rule: an episode that lasts ``drift_s`` seconds is a change of normal. The detector
    accepts it: it is rebuilt from the last ``hold`` readings of the episode (the new level) and
    reports it once, in ``det.drift`` (a :class:`Drift`, set by the ``update`` that accepted it and
    cleared by the next one; ``det.drifts`` counts them). ``None``: never by itself. An operator
    confirms a change with ``det.accept(t)``, which does the same at once (reason
    ``"confirmed"``).

Examples, as they appear in a config's ``detectors:`` section::

    learn: gated                                    # the default
    learn: {mode: gated, drift_s: 21600}            # accept a change after 6 h
    learn: {mode: reference, fit: 400, every: 20}   # an asset's fault-free start is the reference
    learn: always                                   # the pre-policy behaviour
    learn: {mode: gated, gate: 0.5}                 # learn only what scores < half the threshold

The cost on the common path (an unflagged reading, no flag in the last few ``span``) is one
comparison; the snapshot adds ``(flag rate, learned, acc, skip, drifts, episode)``, where the
episode (usually ``None``) holds at most ``hold`` readings.

Why an episode and not just "skip flagged readings": a 4 sd level shift flagged at a 2.5 sd
threshold still has 7 % of its readings below the threshold; learning those drags a window or an
EWMA towards the new level until the shift is no longer flagged (measured, robust_z window 120:
98 % of 600 shifted readings flagged with episodes, 53 % without, 5 % with ``always``).
Why the flag *rate* and not "until ``n`` calm readings in a row": a detector whose scale estimate
is briefly too small flags a few ordinary readings; if each of them blocked learning for the next
readings, the estimate could not recover (measured: seasonal at threshold 2.5 stayed at 11 %
false hits instead of 2 %).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["MODES", "Drift", "LearnPolicy", "Learning"]

MODES = ("always", "gated", "reference")
_DEFAULTS: dict[str, Any] = {
    "mode": "gated",
    "weight": 0.0,
    "span": 10,
    "guard": 3,
    "drift_s": 86400.0,
    "hold": 120,
    "fit": 500,
    "every": 10,
    "gate": 1.0,
}


class Drift(NamedTuple):
    """A change accepted as the new baseline: the episode began at ``since`` (epoch seconds) and
    was accepted at ``at``, because it ``"persisted"`` for ``drift_s`` or was ``"confirmed"``."""

    since: float
    at: float
    reason: str


class LearnPolicy(NamedTuple):
    """The validated ``learn`` setting (see the module docstring)."""

    mode: str = "gated"
    weight: float = 0.0
    span: int = 10
    guard: int = 3
    drift_s: float | None = 86400.0
    hold: int = 120
    fit: int = 500
    every: int = 10
    gate: float = 1.0

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any] | None) -> LearnPolicy:
        """``"gated"``, ``{"mode": "reference", "fit": 400}``, ... -> a policy; ValueError with
        the valid choices for anything else."""
        if spec is None:
            return cls()
        if isinstance(spec, str):
            spec = {"mode": spec}
        if not isinstance(spec, Mapping):
            raise ValueError(f"learn must be a mode name or a mapping, got {spec!r}")
        unknown = set(spec) - set(_DEFAULTS)
        if unknown:
            raise ValueError(
                f"learn: unknown setting(s) {', '.join(sorted(map(str, unknown)))}; "
                f"valid: {', '.join(_DEFAULTS)}"
            )
        s = {**_DEFAULTS, **spec}
        if s["mode"] not in MODES:
            raise ValueError(f"learn.mode must be one of {', '.join(MODES)}, got {s['mode']!r}")
        weight = _real("weight", s["weight"])
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"learn.weight must be in [0, 1], got {weight!r}")
        gate = _real("gate", s["gate"])
        if not 0.0 < gate <= 1.0:
            raise ValueError(f"learn.gate must be in (0, 1], got {gate!r}")
        drift_s = None if s["drift_s"] is None else _real("drift_s", s["drift_s"])
        if drift_s is not None and not drift_s > 0.0:
            raise ValueError(f"learn.drift_s must be > 0 (or null: never), got {drift_s!r}")
        return cls(
            mode=s["mode"],
            weight=weight,
            span=_int("span", s["span"], 1),
            guard=_int("guard", s["guard"], 0),
            drift_s=drift_s,
            hold=_int("hold", s["hold"], 1),
            fit=_int("fit", s["fit"], 0),
            every=_int("every", s["every"], 1),
            gate=gate,
        )


def _real(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"learn.{name} must be a finite number, got {v!r}")
    return float(v)


def _int(name: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"learn.{name} must be an int >= {minimum}, got {v!r}")
    return v


class _Episode:
    """More than half of the recent readings flagged: nothing is learned, the readings are held."""

    __slots__ = ("since", "held")

    def __init__(self, since: float, hold: int):
        self.since = since
        self.held: deque[tuple[float, Any]] = deque(maxlen=hold)  # the newest (t, x) readings


_EPISODE = 0.5  # flag rate at and above which the series is in an episode
_RATE_FLOOR = 1e-3  # a flag rate below this is 0: the detector is back on its fast path


class Learning:
    """One detector's learning policy and its state (see the module docstring).

    The detector's ``update`` learns an unflagged reading itself while no flag is recent (the
    common, cheap path: ``score < det._gate and learning.rate == 0.0``) and calls :meth:`step`
    for everything else.
    """

    __slots__ = ("policy", "rate", "guard", "episode", "learned", "acc", "skip", "drifts")

    def __init__(self, policy: LearnPolicy):
        self.policy = policy
        self.rate = 0.0  # exponentially weighted share of flagged readings
        self.guard = 0  # readings still too close to the last flag to be learned
        self.episode: _Episode | None = None
        self.learned = 0  # readings learned (counted in reference mode: the fit)
        self.acc = 0.0  # weight accumulated by readings not learned
        self.skip = 0  # reference mode: eligible readings since the last one learned
        self.drifts = 0  # changes accepted so far

    def gate(self, threshold: float) -> float:
        """Scores below this are learned on the detector's fast path."""
        mode = self.policy.mode
        if mode == "always":
            return math.inf
        return threshold * self.policy.gate if mode == "gated" else -math.inf

    def step(self, det: Any, t: float, x: Any, score: float) -> None:
        """Decide about a reading the fast path did not learn (``score_one`` has just run)."""
        p = self.policy
        if p.mode == "always" or (p.mode == "reference" and self.learned < p.fit):
            self.learned += 1
            det.learn_one(t, x)
            return
        flagged = score >= det.threshold
        rate = self.rate + ((1.0 if flagged else 0.0) - self.rate) / p.span
        self.rate = rate if rate >= _RATE_FLOOR else 0.0
        guarded = False  # too close to a flag to be learned
        if flagged:
            self.guard = p.guard
        elif self.guard:
            self.guard -= 1
            guarded = True
        ep = self.episode
        if rate >= _EPISODE:
            if ep is None:
                ep = self.episode = _Episode(t, p.hold)
            ep.held.append((t, float(x) if isinstance(x, (int, float)) else tuple(x.tolist())))
            if p.drift_s is not None and t - ep.since >= p.drift_s:
                self.accept(det, t, "persisted")
                return
        elif ep is not None:
            ep = self.episode = None  # the change is over; none of it was learned
        if ep is not None or guarded:
            return
        if not flagged and score >= p.gate * det.threshold:
            return  # between the gate and the threshold: not clearly normal, not learned
        if flagged:
            if p.weight:
                self.acc += p.weight
                if self.acc >= 1.0:
                    self.acc -= 1.0
                    det.learn_one(t, x)
            return
        if p.mode == "reference":
            self.skip += 1
            if self.skip < p.every:
                return
            self.skip = 0
        self.learned += 1
        det.learn_one(t, x)

    def accept(self, det: Any, t: float, reason: str) -> bool:
        """Accept the current episode as the new normal: rebuild the detector's baseline from
        the held readings and report a :class:`Drift`. False if there is no episode."""
        ep = self.episode
        if ep is None:
            return False
        det._rebase(tuple(ep.held))
        self.episode = None
        self.rate = 0.0
        self.guard = 0
        self.learned = len(ep.held)  # reference mode: the new reference is fit from here on
        self.skip = 0
        self.drifts += 1
        det.drift = Drift(ep.since, t, reason)
        return True

    def dump(self) -> tuple:
        ep = self.episode
        episode = None if ep is None else (ep.since, tuple(ep.held))
        return (self.rate, self.guard, self.learned, self.acc, self.skip, self.drifts, episode)

    def load(self, state: tuple) -> None:
        self.rate, self.guard, self.learned, self.acc, self.skip, self.drifts, episode = state
        if episode is not None:
            since, held = episode
            ep = self.episode = _Episode(float(since), self.policy.hold)
            ep.held.extend((float(t), x if isinstance(x, float) else tuple(x)) for t, x in held)
