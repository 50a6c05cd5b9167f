"""Ensemble: the highest score of several registered detectors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from twinwatch.detectors.base import Scalar, check_int, check_positive, rest

__all__ = ["Ensemble"]


def member(name: str, params: dict, where: str):
    """Build the scalar detector a composite drives through ``score_one`` / ``learn_one``.

    The composite's ``learn`` policy decides what its members learn, so a member's own ``learn``
    setting would be silently ignored: it is an error instead.
    """
    from twinwatch.detectors import build  # late: the registry imports this module

    if "learn" in params:
        raise ValueError(
            f"{where}: a member follows the composite's learning policy; set `learn` on the "
            f"composite, not on {name!r}"
        )
    return build(name, **params)


class Ensemble(Scalar):
    """The highest score of several calibrated detectors (all scoring in ``[0, 1]``).

    Use members that speak the same language, e.g. ``likelihood`` wrappers around different
    raw detectors (the default: the seasonal baseline's and the windowed Gaussian's, the pair
    that scored best held out on NAB): then one threshold means the same for all of them and the
    ensemble fires when any member finds the reading unusual enough. After a score >=
    ``threshold`` it reports 0.0 for ``rest_period`` readings (one alarm per event; 0 = off).
    The members are driven by the ensemble's learning policy (``learn``).

    >>> det = Ensemble(members=[["gaussian", {"window": 50, "min_periods": 10}],
    ...                         ["likelihood", {"detector": "robust_z"}]])
    >>> scores = [det.update(float(t), float(t % 5)) for t in range(200)]
    >>> det.update(200.0, 50.0) > 0.999
    True
    """

    name: ClassVar[str] = "ensemble"

    def __init__(
        self,
        members: Sequence[Sequence[Any]] = (
            ("likelihood", {"detector": "seasonal", "detector_params": {"alpha": 0.02}}),
            ("likelihood", {"detector": "gaussian", "detector_params": {"window": 2000}}),
        ),
        threshold: float = 0.5,
        rest_period: int = 0,
        learn: str | dict | None = "gated",
    ) -> None:
        if not members:
            raise ValueError("members must name at least one detector")
        self.members: list[list[Any]] = [[str(n), dict(p)] for n, p in members]
        self.threshold = check_positive("threshold", threshold)
        self.rest_period = check_int("rest_period", rest_period, 0)
        self._dets = [member(n, p, "ensemble.members") for n, p in self.members]
        self._resting = 0
        self._init_learning(learn)

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
