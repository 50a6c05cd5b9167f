"""The detector protocol and the small helpers every detector shares.

A detector scores one series. ``update(t, x)`` scores the reading ``x`` taken at time ``t``
(epoch seconds, UTC, non-decreasing within a series) against the current state and *then* learns
it. This is river's ``score_one`` followed by ``learn_one`` in a single call: a stream always does
both, and several detectors share work between the two halves (the sorted window in
:class:`~twinwatch.detectors.robust_z.RobustZ`, the residual in
:class:`~twinwatch.detectors.cusum.EwmaCusum`, the feature vector in
:class:`~twinwatch.detectors.hst.ScaledHST`).

Conventions shared by every detector in this package:

* Higher scores are more anomalous; ``score >= threshold`` is a hit. Scores are finite floats in
  ``[0, MAX_SCORE]`` whatever the input (constant, huge, tiny).
* ``update`` returns ``0.0`` while the detector is warming up.
* A non-finite reading (NaN, +/-inf) is not scored and not learned: ``update`` returns ``0.0`` and
  leaves the state unchanged. Flagging such readings is the parse step's job. (``Gap`` ignores ``x``
  altogether and ``EventBurst`` counts such an event with weight 0.)
* No I/O and no clock reads: time always comes in as ``t``.
* Constructors only validate and store their settings under their own names; state is built lazily
  on the first ``update``.
* ``to_state()`` returns plain, compact, immutable data (tuples of floats) and
  ``from_state(params, state)`` rebuilds an identical detector: subsequent scores are the same.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = ["MAX_SCORE", "Detector", "clamp_score", "rest", "check_unit_threshold"]

#: Upper bound on every score, so a score is always finite (a jump off a perfectly flat line
#: divided by a tiny scale would otherwise overflow to inf).
MAX_SCORE = 1e9


@runtime_checkable
class Detector(Protocol):
    """What the flow needs from a per-series anomaly detector."""

    name: ClassVar[str]

    @property
    def threshold(self) -> float:
        """A score >= threshold is a hit (an attribute or a read-only property)."""
        ...

    def update(self, t: float, x: float) -> float:
        """Score ``x`` (read at time ``t``) against the current state, then learn it."""
        ...

    def to_state(self) -> tuple | list | dict:
        """Plain, compact snapshot of the learned state (not the parameters)."""
        ...

    @classmethod
    def from_state(cls, params: dict, state: Any) -> Detector:
        """``cls(**params)`` with ``state`` (from :meth:`to_state`) restored."""
        ...

    def params(self) -> dict:
        """The constructor arguments, for rebuilding."""
        ...


def clamp_score(score: float) -> float:
    """Map any computed score to a finite float in ``[0, MAX_SCORE]``.

    The last line of defence: inf (overflow) and NaN (which only arises from overflow, e.g.
    ``inf - inf``) become ``MAX_SCORE``; negatives (rounding) become ``0.0``.
    """
    if score >= 0.0:
        return score if score <= MAX_SCORE else MAX_SCORE
    if score < 0.0:
        return 0.0
    return MAX_SCORE  # NaN


def rest(score: float, threshold: float, resting: int, period: int) -> tuple[float, int]:
    """One alarm per event: after a score >= threshold, report 0.0 for the next ``period``
    readings. Returns (the score to report, readings still to rest)."""
    if resting:
        return 0.0, resting - 1
    return score, (period if score >= threshold else 0)


def check_unit_threshold(threshold: float) -> float:
    """A threshold for scores in [0, 1] (HalfSpaceTrees and other bounded scores)."""
    threshold = check_positive("threshold", threshold)
    if threshold > 1.0:
        raise ValueError(f"threshold must be in (0, 1] (HST scores are), got {threshold!r}")
    return threshold


def check_finite(name: str, value: float) -> float:
    """Validate a finite real setting and return it as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def check_positive(name: str, value: float) -> float:
    """Validate a finite setting > 0 and return it as a float."""
    value = check_finite(name, value)
    if value <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def check_int(name: str, value: int, minimum: int) -> int:
    """Validate an integer setting >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def check_nonnegative(name: str, value: float) -> float:
    """Validate a finite setting >= 0 and return it as a float."""
    value = check_finite(name, value)
    if value < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value
