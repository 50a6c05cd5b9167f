"""The detector protocol: one family per input shape, and what every detector shares.

========  ==============================================  =========================================
family    ``update`` takes                                returns
========  ==============================================  =========================================
scalar    ``(t, x)``: one reading of one series           a score (float, ``>= threshold``: hit)
vector    ``(t, xs)``: an asset's aligned readings        a score
event     ``(t, kind, outcome, user, src_ip, dst_port)``  findings ``[(rule, ip, value, detail)]``
log       ``(t, text)``: one log line                     ``(template id, template, findings)``
========  ==============================================  =========================================

Each registered class says its family in ``family`` and its registry name in ``name``; the
registries are in :mod:`twinwatch.detectors`. Every detector of every family has:

* ``params()``: the constructor arguments, derived once from the constructor's signature
  (:class:`Settings`): a constructor stores each setting under its own name;
* ``to_state()``: plain, compact data (tuples of floats, ints, str; a few detectors hold a pickled
  third-party model as bytes), and ``from_state(params, state)``: ``cls(**params)`` with that state
  restored, so that it continues exactly as the original would.

Scalar and vector detectors split scoring from learning, as river does:

* ``score_one(t, x)`` scores the reading against what has been learned. It may advance the
  running statistics that *are* the score (CUSUM's sums, the previous reading of a difference)
  but never the baseline.
* ``learn_one(t, x)`` folds the same reading into the baseline. It is called right after
  ``score_one`` of the same reading, so it may reuse that work (the sorted window of
  :class:`~twinwatch.detectors.robust_z.RobustZ`, the features of
  :class:`~twinwatch.detectors.hst.ScaledHST`).
* ``update(t, x)`` does both for a stream: a non-finite reading (NaN, +/-inf; any element of a
  vector) is neither scored nor learned and scores 0.0 (flagging bad data is the parse step's
  job); otherwise it returns ``score_one`` and then learns the reading *if the learning policy
  says so* (the ``learn`` setting, :mod:`twinwatch.detectors.policy`: by default a flagged
  reading is not learned, so an incident never becomes the new normal; a change that persists
  for ``drift_s`` is accepted and reported in ``det.drift``).

Rules (:class:`Rule`: limits, stuck, gap, burst) learn no baseline: ``update`` is the whole
detector and ``learn_one`` does nothing.

Conventions shared by scalar and vector detectors:

* Higher scores are more anomalous; ``score >= threshold`` is a hit. Scores are finite floats in
  ``[0, MAX_SCORE]`` whatever the input (constant, huge, tiny).
* A detector scores 0.0 while it is warming up.
* No I/O and no clock reads: time always comes in as ``t`` (epoch seconds, non-decreasing).
* Constructors only validate and store their settings; state is built lazily.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from twinwatch.detectors.policy import Drift, Learning, LearnPolicy

__all__ = [
    "FAMILIES",
    "MAX_SCORE",
    "Detector",
    "EventDetector",
    "LogDetector",
    "Rule",
    "Scalar",
    "Settings",
    "Vector",
    "VectorDetector",
    "check_unit_threshold",
    "clamp_score",
    "rest",
]

#: The input shapes, in the order the docs list them.
FAMILIES = ("scalar", "vector", "event", "log")

#: Upper bound on every score, so a score is always finite (a jump off a perfectly flat line
#: divided by a tiny scale would otherwise overflow to inf).
MAX_SCORE = 1e9


# --------------------------------------------------------------------------- protocols


@runtime_checkable
class Detector(Protocol):
    """A scalar detector: scores the readings of one series."""

    name: ClassVar[str]
    family: ClassVar[str]
    threshold: float

    def update(self, t: float, x: float) -> float:
        """Score ``x`` (read at time ``t``) against the current state, then learn it."""
        ...

    def score_one(self, t: float, x: float) -> float: ...

    def learn_one(self, t: float, x: float) -> None: ...

    def to_state(self) -> Any:
        """Plain, compact snapshot of the learned state (not the parameters)."""
        ...

    @classmethod
    def from_state(cls, params: dict, state: Any) -> Detector:
        """``cls(**params)`` with ``state`` (from :meth:`to_state`) restored."""
        ...

    def params(self) -> dict:
        """The constructor arguments, for rebuilding."""
        ...


@runtime_checkable
class VectorDetector(Protocol):
    """A vector detector: scores the aligned readings of ``n`` sensors of one asset."""

    name: ClassVar[str]
    family: ClassVar[str]
    n: int
    threshold: float

    def update(self, t: float, xs: Sequence[float]) -> float: ...

    def score_one(self, t: float, x: np.ndarray) -> float: ...

    def learn_one(self, t: float, x: np.ndarray) -> None: ...

    def to_state(self) -> Any: ...

    @classmethod
    def from_state(cls, params: dict, state: Any) -> VectorDetector: ...

    def params(self) -> dict: ...


@runtime_checkable
class EventDetector(Protocol):
    """An event detector: rules over the security events of one asset
    (:class:`~twinwatch.detectors.security.SecurityDetector`)."""

    name: ClassVar[str]
    family: ClassVar[str]

    def update(
        self,
        t: float,
        kind: str,
        outcome: str,
        user: str | None,
        src_ip: str | None,
        dst_port: int | None,
    ) -> list[tuple[str, str | None, float, str]]: ...

    def to_state(self) -> Any: ...

    @classmethod
    def from_state(cls, params: dict, state: Any) -> EventDetector: ...

    def params(self) -> dict: ...


@runtime_checkable
class LogDetector(Protocol):
    """A log-line detector (:class:`~twinwatch.detectors.logtemplates.LogTemplates`)."""

    name: ClassVar[str]
    family: ClassVar[str]

    def update(self, t: float, text: str) -> tuple[int, str, list[tuple[str, float, str]]]: ...

    def to_state(self) -> Any: ...

    @classmethod
    def from_state(cls, params: dict, state: Any) -> LogDetector: ...

    def params(self) -> dict: ...


# --------------------------------------------------------------------------- shared bases


_SETTING_NAMES: dict[type, tuple[str, ...]] = {}


def _setting_names(cls: type) -> tuple[str, ...]:
    """The constructor's named parameters (``self``, ``*args`` and ``**kwargs`` excluded)."""
    names = _SETTING_NAMES.get(cls)
    if names is None:
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        sig = inspect.signature(cls.__init__)  # type: ignore[misc]
        params = list(sig.parameters.values())[1:]
        names = _SETTING_NAMES[cls] = tuple(p.name for p in params if p.kind in kinds)
    return names


class Settings:
    """``params()`` and ``repr`` derived from the constructor's signature.

    A constructor stores each setting under its own name (``self.window = window``, validated);
    ``params()`` reads them back, copied so that a caller cannot change the detector through them.
    """

    def params(self) -> dict[str, Any]:
        return {k: copy.deepcopy(getattr(self, k)) for k in _setting_names(type(self))}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in _setting_names(type(self)))
        return f"{type(self).__name__}({args})"


class _Learner(Settings):
    """What scalar and vector learners share: the learning policy and the snapshot template.

    Subclasses call ``self._init_learning(learn)`` at the end of their constructor and implement
    ``score_one``, ``learn_one``, ``_dump() -> plain state`` and ``_load(state)`` (restore into a
    freshly constructed instance); ``_rebase(held)`` may be overridden (see
    :mod:`twinwatch.detectors.policy`).
    """

    name: ClassVar[str]
    family: ClassVar[str]
    learn: str | Mapping[str, Any] | None
    #: The change accepted by the last ``update`` (or ``accept``), else None.
    drift: Drift | None

    def _init_learning(self, learn: str | Mapping[str, Any] | None) -> None:
        self.learn = copy.deepcopy(learn)
        self._learning = Learning(LearnPolicy.parse(learn))
        self._gate = self._learning.gate(self.threshold)  # type: ignore[attr-defined]
        self.drift = None

    @property
    def drifts(self) -> int:
        """Changes accepted as the new baseline so far."""
        return self._learning.drifts

    def accept(self, t: float) -> bool:
        """An operator confirms the ongoing change as the new normal: rebuild the baseline from
        the held readings now and report it in ``drift``. False if nothing is going on."""
        self.drift = None
        return self._learning.accept(self, t, "confirmed")

    def _rebase(self, held: tuple[tuple[float, Any], ...]) -> None:
        """Make the held readings the baseline: a fresh detector with the same settings learns
        them (scored and learned in order), then replaces this one's model."""
        fresh: Any = type(self)(**self.params())
        for t, x in held:
            v = x if isinstance(x, float) else np.asarray(x, dtype=float)
            fresh.score_one(t, v)
            fresh.learn_one(t, v)
        learning, drift = self._learning, self.drift
        vars(self).update(vars(fresh))
        self._learning, self.drift = learning, drift

    def _dump(self) -> Any:
        raise NotImplementedError

    def _load(self, state: Any) -> None:
        raise NotImplementedError

    def to_state(self) -> tuple:
        """``(model state, learning-policy state)``."""
        return (self._dump(), self._learning.dump())

    @classmethod
    def from_state(cls, params: dict, state: Any) -> Any:
        det = cls(**params)
        model, learning = state
        det._load(model)
        det._learning.load(learning)
        return det


class Scalar(_Learner):
    """Base of the scalar detectors that learn a baseline (see the module docstring)."""

    family: ClassVar[str] = "scalar"

    def score_one(self, t: float, x: float) -> float:
        raise NotImplementedError

    def learn_one(self, t: float, x: float) -> None:
        raise NotImplementedError

    def update(self, t: float, x: float) -> float:
        """Score ``x``, then learn it as the learning policy says; a non-finite ``x`` scores 0.0
        and is not learned."""
        if not math.isfinite(x):
            return 0.0
        if self.drift is not None:
            self.drift = None
        score = self.score_one(t, x)
        learning = self._learning
        if score < self._gate and learning.rate == 0.0:
            self.learn_one(t, x)
        else:
            learning.step(self, t, x, score)
        return score


class Rule(Settings):
    """Base of the scalar rules, which learn no baseline: ``update`` is the detector.

    ``score_one`` is ``update`` (the rule's own bookkeeping, such as a run length or the time of
    the previous reading, advances with every reading) and ``learn_one`` does nothing, so a rule
    can sit wherever a scalar detector can.
    """

    name: ClassVar[str]
    family: ClassVar[str] = "scalar"

    def update(self, t: float, x: float) -> float:
        raise NotImplementedError

    def score_one(self, t: float, x: float) -> float:
        return self.update(t, x)

    def learn_one(self, t: float, x: float) -> None:
        return None


def as_vector(xs: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """``xs`` as a float array of shape ``(n,)``; a wrong length is a ValueError (a wiring bug,
    not bad data)."""
    x = np.asarray(xs, dtype=float)
    if x.shape != (n,):
        raise ValueError(f"expected {n} readings, got shape {x.shape}")
    return x


class Vector(_Learner):
    """Base of the vector detectors: ``update(t, xs)`` over the ``n`` readings of one asset.

    ``score_one`` and ``learn_one`` receive the validated float array.
    """

    family: ClassVar[str] = "vector"
    n: int

    def score_one(self, t: float, x: np.ndarray) -> float:
        raise NotImplementedError

    def learn_one(self, t: float, x: np.ndarray) -> None:
        raise NotImplementedError

    def update(self, t: float, xs: Sequence[float] | np.ndarray) -> float:
        """Score the vector, then learn it as the learning policy says; any non-finite element:
        0.0, not learned."""
        x = as_vector(xs, self.n)
        if not np.isfinite(x).all():
            return 0.0
        if self.drift is not None:
            self.drift = None
        score = self.score_one(t, x)
        learning = self._learning
        if score < self._gate and learning.rate == 0.0:
            self.learn_one(t, x)
        else:
            learning.step(self, t, x, score)
        return score


# --------------------------------------------------------------------------- helpers


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
