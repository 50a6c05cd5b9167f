"""Half-Space Trees (river) on online-scaled value and first difference."""

from __future__ import annotations

import math
import pickle
from typing import ClassVar

from river.anomaly import HalfSpaceTrees

from twinwatch.detectors.base import Scalar, check_int, check_unit_threshold

__all__ = ["ScaledHST"]


# The range seen so far maps onto the middle third [1/3, 2/3] of the unit interval, leaving
# headroom on both sides: a reading beyond that range lands in cells the normal data never
# reached, which is what lets HST tell a new extreme from the edge of the normal data. Measured
# on Gaussian, PV-like and random-walk series (10-sigma spike, 4000 readings, 6 seeds): at
# height 6 no normal reading scored >= 0.9 and every spike did (>= 0.93). Scaling onto the full
# [0, 1] put 7-60 % of normal readings at >= 0.9 (height 6-8); height 8 with this headroom, 0.5-2 %.
_HEADROOM = 1.0 / 3.0


def _unit(v: float, lo: float, hi: float) -> float:
    """Scale ``v`` so that ``[lo, hi]`` maps onto ``[1/3, 2/3]`` (0.5 while the range is empty),
    clipped to [0, 1].

    Clipping loses nothing: every HST split threshold lies strictly inside (0, 1) (river pads the
    split range by 15 %), so 1.0 and any value above it take the same path.
    """
    if not hi > lo:
        return 0.5
    u = _HEADROOM + (1.0 - 2.0 * _HEADROOM) * ((v - lo) / (hi - lo))
    return 0.0 if u < 0.0 else (1.0 if u > 1.0 else u)


class ScaledHST(Scalar):
    """river's :class:`~river.anomaly.HalfSpaceTrees` on ``{value, diff}`` scaled into [0, 1].

    For multi-modal or shape anomalies that a z-score handles badly: PV output (day/night
    modes), pump current, traffic counts. Features are the reading and its difference from the
    previous reading, each scaled with the running min/max of the readings seen *before* this one
    (no look-ahead) so that the range seen so far maps onto [1/3, 2/3]: a new extreme lands in
    the empty outer cells of the trees (see ``_HEADROOM``).
    ``update`` builds the features once, scores them, then learns them and updates the scaler.

    The score is the HST score in [0, 1]; ``update`` returns 0.0 until ``window_size`` readings
    have been seen (HST's first reference window). The trees are built on the first ``update``.

    Caveats: the running min/max never forgets, so one huge outlier compresses all later readings
    into a narrow band and blunts the detector until the model is rebuilt. HST also adapts to
    whatever filled its last window, including a long anomaly.

    State: not cheap. ``to_state()`` holds ``pickle.dumps`` of the river model (tens of kB, about a
    millisecond at the defaults; see docs/detectors.md), so enable HST on selected sensors only.

    Parameters
    ----------
    n_trees, height, window_size, seed
        Passed to ``HalfSpaceTrees``. Cost per update grows with ``n_trees * height``; the pickled
        state with ``n_trees * 2**height``. ``height`` defaults to 6, not river's 8: at 8 river's
        score normalisation pushes normal readings towards 1 and a 0.9 threshold fires on
        0.5-2 % of normal readings.
    threshold
        A score >= threshold is a hit, in (0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> det = ScaledHST(seed=1)
    >>> readings = np.random.default_rng(3).normal(20.0, 0.5, 600)
    >>> scores = [det.update(float(t), x) for t, x in enumerate(readings)]
    >>> set(scores[:250]), round(float(np.median(scores[250:])), 2), round(max(scores), 2)
    ({0.0}, 0.45, 0.8)
    >>> round(det.update(600.0, 30.0), 2)  # +20 sd
    0.97
    """

    name: ClassVar[str] = "hst"

    def __init__(
        self,
        n_trees: int = 10,
        height: int = 6,
        window_size: int = 250,
        seed: int = 42,
        threshold: float = 0.9,
        learn: str | dict | None = "gated",
    ) -> None:
        self.n_trees = check_int("n_trees", n_trees, 1)
        self.height = check_int("height", height, 1)
        self.window_size = check_int("window_size", window_size, 1)
        self.seed = check_int("seed", seed, 0)
        self.threshold = check_unit_threshold(threshold)
        self._model: HalfSpaceTrees | None = None
        self._n = 0  # readings learned
        self._prev: float | None = None  # previous reading (for the difference)
        # running min/max of the learned values and differences (empty: lo > hi)
        self._lo_v = self._lo_d = math.inf
        self._hi_v = self._hi_d = -math.inf
        self._features: dict[str, float] = {}  # score_one's, for learn_one
        self._d: float | None = None
        self._init_learning(learn)

    def score_one(self, t: float, x: float) -> float:
        """Score ``{value, diff}`` of ``x`` with the trees (0.0 until the first window is full)."""
        x = float(x)
        if self._model is None:
            self._model = HalfSpaceTrees(
                n_trees=self.n_trees,
                height=self.height,
                window_size=self.window_size,
                seed=self.seed,
            )
        prev, self._prev = self._prev, x
        d = None
        if prev is not None:
            d = x - prev
            if not math.isfinite(d):  # overflow between two huge readings of opposite sign
                d = math.copysign(1e308, d)
        self._d = d
        self._features = features = {
            "value": _unit(x, self._lo_v, self._hi_v),
            "diff": _unit(0.0 if d is None else d, self._lo_d, self._hi_d),
        }
        score = float(self._model.score_one(features))
        return score if 0.0 <= score <= 1.0 else (0.0 if not score > 0.0 else 1.0)

    def learn_one(self, t: float, x: float) -> None:
        """Learn the features just scored, then widen the scaler (after scoring: no look-ahead)."""
        assert self._model is not None
        self._model.learn_one(self._features)
        x = float(x)
        if x < self._lo_v:
            self._lo_v = x
        if x > self._hi_v:
            self._hi_v = x
        d = self._d
        if d is not None:
            if d < self._lo_d:
                self._lo_d = d
            if d > self._hi_d:
                self._hi_d = d
        self._n += 1

    def _dump(self) -> tuple:
        """``(n, prev, lo_v, hi_v, lo_d, hi_d, pickle.dumps(model) or None)``."""
        model = None if self._model is None else pickle.dumps(self._model, pickle.HIGHEST_PROTOCOL)
        return (self._n, self._prev, self._lo_v, self._hi_v, self._lo_d, self._hi_d, model)

    def _load(self, state: tuple) -> None:
        n, prev, lo_v, hi_v, lo_d, hi_d, model = state
        self._n = int(n)
        self._prev = None if prev is None else float(prev)
        self._lo_v, self._hi_v = float(lo_v), float(hi_v)
        self._lo_d, self._hi_d = float(lo_d), float(hi_d)
        self._model = None if model is None else pickle.loads(model)
