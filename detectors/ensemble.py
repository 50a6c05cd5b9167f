"""Ensemble and drift handling: detectors composed of other registered detectors."""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from typing import Any, ClassVar

from river.drift import PageHinkley

from twinwatch.detectors.base import Scalar, check_int, check_positive, rest

__all__ = ["DriftReset", "Ensemble"]


def _build(name: str, params: dict):
    from twinwatch.detectors import build  # late: the registry imports this module

    return build(name, **params)


class Ensemble(Scalar):
    """The highest score of several calibrated detectors (all scoring in ``[0, 1]``).

    Use members that speak the same language, e.g. ``likelihood`` wrappers around different
    raw detectors, or the windowed ``gaussian``: then one threshold means the same for all of them
    and the
    ensemble fires when any member finds the reading unusual enough. After a score >=
    ``threshold`` it reports 0.0 for ``rest_period`` readings (one alarm per event; 0 = off).

    >>> det = Ensemble(members=[["gaussian", {"window": 50, "min_periods": 10}],
    ...                         ["likelihood", {"detector": "robust_z"}]])
    >>> scores = [det.update(float(t), float(t % 5)) for t in range(200)]
    >>> det.update(200.0, 50.0) > 0.999
    True
    """

    name: ClassVar[str] = "ensemble"

    def __init__(
        self,
        members: Sequence[Sequence[Any]] = (("gaussian", {}), ("seasonal", {})),
        threshold: float = 0.75,
        rest_period: int = 0,
    ) -> None:
        if not members:
            raise ValueError("members must name at least one detector")
        self.members: list[list[Any]] = [[str(n), dict(p)] for n, p in members]
        self.threshold = check_positive("threshold", threshold)
        self.rest_period = check_int("rest_period", rest_period, 0)
        self._dets = [_build(n, p) for n, p in self.members]
        self._resting = 0

    def score_one(self, t: float, x: float) -> float:
        return max([d.score_one(t, x) for d in self._dets])  # a list: every member advances

    def learn_one(self, t: float, x: float) -> None:
        for d in self._dets:
            d.learn_one(t, x)

    def update(self, t: float, x: float) -> float:
        """Score and learn (:class:`~twinwatch.detectors.base.Scalar`), then rest after a hit."""
        if not math.isfinite(x):
            return 0.0
        score = super().update(t, x)
        score, self._resting = rest(score, self.threshold, self._resting, self.rest_period)
        return score

    def _dump(self) -> tuple:
        return (tuple(d.to_state() for d in self._dets), self._resting)

    def _load(self, state: tuple) -> None:
        members, self._resting = state
        self._dets = [type(d).from_state(d.params(), s) for d, s in zip(self._dets, members)]


class DriftReset(Scalar):
    """Runs a detector and restarts it when river's Page-Hinkley test sees a lasting level shift.

    After a legitimate change of operating point (a pump swapped, a new setpoint) a baseline
    detector would otherwise keep flagging the new normal until its window has forgotten the
    old one. The first readings after a shift are still scored by the old model (the shift is
    news); from the drift onwards the detector re-learns from scratch (and scores 0.0 while it
    warms up again). Page-Hinkley parameters are river's, with ``ph_threshold`` in units of the
    series' own standard deviation (estimated online), so one setting fits every sensor.
    """

    name: ClassVar[str] = "drift_reset"

    def __init__(
        self,
        detector: str = "robust_z",
        detector_params: dict | None = None,
        ph_threshold: float = 50.0,
        ph_delta: float = 0.5,
        min_instances: int = 30,
    ):
        self.detector = detector
        self.detector_params = dict(detector_params or {})
        self.inner = _build(detector, self.detector_params)
        self.threshold = self.inner.threshold
        self.ph_threshold = check_positive("ph_threshold", ph_threshold)
        self.ph_delta = check_positive("ph_delta", ph_delta)
        self.min_instances = int(min_instances)
        self._ph = self._new_ph()
        self._n = 0
        self._mean = self._m2 = 0.0
        self.resets = 0

    def _new_ph(self) -> PageHinkley:
        return PageHinkley(
            min_instances=self.min_instances, delta=self.ph_delta, threshold=self.ph_threshold
        )

    def score_one(self, t: float, x: float) -> float:
        return self.inner.score_one(t, x)

    def learn_one(self, t: float, x: float) -> None:
        self.inner.learn_one(t, x)
        self._n += 1  # Welford: the series' scale, to feed Page-Hinkley standardised values
        d = x - self._mean
        self._mean += d / self._n
        self._m2 += d * (x - self._mean)
        sd = math.sqrt(self._m2 / self._n) if self._n > 1 else 0.0
        self._ph.update((x - self._mean) / sd if sd > 0 and math.isfinite(sd) else 0.0)
        if self._ph.drift_detected:
            self.inner = _build(self.detector, self.detector_params)
            self._ph = self._new_ph()
            self._n, self._mean, self._m2 = 0, 0.0, 0.0
            self.resets += 1

    def _dump(self) -> tuple:
        return (
            self.inner.to_state(),
            pickle.dumps(self._ph),
            self._n,
            self._mean,
            self._m2,
            self.resets,
        )

    def _load(self, state: tuple) -> None:
        inner, ph, self._n, self._mean, self._m2, self.resets = state
        self.inner = type(self.inner).from_state(self.inner.params(), inner)
        self._ph = pickle.loads(ph)
