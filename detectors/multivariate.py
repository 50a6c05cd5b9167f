"""Multivariate detection for multi-sensor assets: PCA Hotelling T² and Q (SPE), an isolation
forest on a sliding window, and Half-Space Trees on the scaled vector."""

from __future__ import annotations

import math
import pickle
from collections import deque
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from river.anomaly import HalfSpaceTrees

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

from twinwatch.detectors.base import (
    Vector,
    check_int,
    check_positive,
    check_unit_threshold,
    clamp_score,
)
from twinwatch.detectors.hst import _unit


def _isolation_forest():
    """scikit-learn's IsolationForest, imported on first use: it costs ~0.5 s at import time and
    only the few assets that run IsolationForestDetector need it."""
    from sklearn.ensemble import IsolationForest

    return IsolationForest


__all__ = ["IsolationForestDetector", "PcaT2Q", "VectorHST", "chi2_quantile"]

_F32_MAX = 1e38  # inside float32's range (scikit-learn casts to float32)
_Z = {0.99: 2.3263, 0.999: 3.0902, 0.9999: 3.7190}  # standard normal quantiles


def chi2_quantile(p: float, dof: float) -> float:
    """Wilson-Hilferty approximation of the chi-squared quantile.

    It errs high (a conservative limit) at the 0.999 level: 3 % at dof 1, 2 % at 3, ~1 % from 5.
    """
    z = _Z[p]
    a = 2.0 / (9.0 * dof)
    return dof * max(1.0 - a + z * math.sqrt(a), 0.0) ** 3


class PcaT2Q(Vector):
    """Joint reading of ``n`` sensors of one asset against their learned correlation.

    A pump whose vibration rises *without* the current rising, or one strain gauge of a bridge
    span disagreeing with its neighbours, can be normal sensor by sensor and still wrong
    together. ``update(t, xs)`` takes the vector of the asset's readings (same order every time)
    and scores it before learning it:

    * readings are standardised with an exponentially weighted mean and variance
      (``alpha``), whose covariance (the correlation matrix) is also exponentially weighted;
    * every ``refit`` readings, its eigen-decomposition is refreshed; the first ``k``
      components (enough to explain ``explained`` of the variance) are the model;
    * Hotelling ``T² = sum (score_i² / lambda_i)`` over the model components (unusual
      *within* the usual pattern), ``Q = |residual|²`` outside them (the pattern itself broken);
    * score = ``max(T² / T²_limit, Q / Q_limit)`` with the limits at ``confidence``
      (chi-squared with ``k`` dof for T²; Box's ``g * chi2(h)`` for Q), so ``score >= 1`` is a
      hit. 0.0 for the first ``warmup`` readings.

    A ``vector`` family detector (registry ``VECTORS``); state is a few small arrays.

    >>> rng = np.random.default_rng(0)
    >>> det = PcaT2Q(n=3, warmup=200)
    >>> for t in range(1000):
    ...     base = rng.normal()
    ...     _ = det.update(float(t), [base, 2 * base + 0.1 * rng.normal(), rng.normal()])
    >>> det.update(1000.0, [1.0, 2.0, 0.0]) < 1.0  # consistent with the learned correlation
    True
    >>> det.update(1001.0, [1.0, -2.0, 0.0]) > 1.0  # each value ordinary, together impossible
    True
    """

    name: ClassVar[str] = "pca_t2q"

    def __init__(
        self,
        n: int,
        alpha: float = 0.002,
        explained: float = 0.9,
        refit: int = 50,
        warmup: int = 300,
        confidence: float = 0.999,
        threshold: float = 1.0,
        learn: str | dict | None = "gated",
    ) -> None:
        self.n = check_int("n", n, 2)
        self.alpha = check_positive("alpha", alpha)
        self.explained = check_positive("explained", explained)
        if self.explained > 1.0:
            raise ValueError(f"explained must be <= 1, got {explained!r}")
        self.refit = check_int("refit", refit, 1)
        self.warmup = check_int("warmup", warmup, 2)
        if confidence not in _Z:
            raise ValueError(f"confidence must be one of {sorted(_Z)}, got {confidence!r}")
        self.confidence = confidence
        self.threshold = check_positive("threshold", threshold)
        self._count = 0
        self._mean = np.zeros(self.n)
        self._var = np.ones(self.n)
        self._cov = np.eye(self.n)
        self._model: tuple | None = None  # (components, eigenvalues, t2_limit, q_limit)
        self._init_learning(learn)

    def _fit(self) -> None:
        lam, vec = np.linalg.eigh(self._cov)
        lam, vec = np.maximum(lam[::-1], 1e-9), vec[:, ::-1]
        share = np.cumsum(lam) / lam.sum()
        k = min(int(np.searchsorted(share, self.explained)) + 1, self.n - 1)
        rest = lam[k:]
        th1, th2 = rest.sum(), (rest**2).sum()
        q_limit = (th2 / th1) * chi2_quantile(self.confidence, th1 * th1 / th2)
        self._model = (
            np.ascontiguousarray(vec[:, :k]),
            lam[:k].copy(),
            chi2_quantile(self.confidence, k),
            max(q_limit, 1e-9),
        )

    def score_one(self, t: float, x: np.ndarray) -> float:
        if self._count < self.warmup or self._model is None:
            return 0.0
        z = (x - self._mean) / np.sqrt(np.maximum(self._var, 1e-12))
        p, lam, t2_limit, q_limit = self._model
        s = p.T @ z
        t2 = float((s * s / lam).sum())
        r = z - p @ s
        return clamp_score(float(max(t2 / t2_limit, float(r @ r) / q_limit)))

    def learn_one(self, t: float, x: np.ndarray) -> None:
        """Mean/variance first, then the correlation of the re-standardised reading; refit the
        components every ``refit`` readings learned."""
        self._count += 1
        w = max(self.alpha, 1.0 / self._count)
        d = x - self._mean
        self._mean += w * d
        with np.errstate(over="ignore", invalid="ignore"):  # readings near the float limit
            var = (1.0 - w) * (self._var + w * d * d)
        self._var = np.nan_to_num(var, nan=1e300, posinf=1e300)
        zs = (x - self._mean) / np.sqrt(np.maximum(self._var, 1e-12))
        if self._count > 1:
            self._cov = np.nan_to_num((1.0 - w) * self._cov + w * np.outer(zs, zs))
        if self._count % self.refit == 0 or (self._model is None and self._count >= self.warmup):
            self._fit()

    def _dump(self) -> tuple:
        """``(count, mean, var, covariance, model)`` as tuples of floats (model may be None)."""
        model = None
        if self._model is not None:
            p, lam, t2_limit, q_limit = self._model
            model = (tuple(map(tuple, p)), tuple(lam), float(t2_limit), float(q_limit))
        return (
            self._count,
            tuple(self._mean),
            tuple(self._var),
            tuple(map(tuple, self._cov)),
            model,
        )

    def _load(self, state: tuple) -> None:
        self._count, mean, var, cov, model = state
        self._mean, self._var, self._cov = (np.array(s, dtype=float) for s in (mean, var, cov))
        if model is not None:
            p, lam, t2_limit, q_limit = model
            self._model = (np.array(p, dtype=float), np.array(lam, dtype=float), t2_limit, q_limit)


class IsolationForestDetector(Vector):
    """scikit-learn's :class:`~sklearn.ensemble.IsolationForest` on the asset's reading vector,
    refit on a sliding reference window.

    ``update(t, xs)`` (same vector API as :class:`PcaT2Q`) scores ``xs`` with the current forest,
    then appends it to the window (the last ``window`` vectors). Every ``refit`` readings (at
    counts that are multiples of ``refit``, from ``min_periods`` on) the forest is refit on the
    window with the fixed ``seed``, so the same window always gives the same forest.
    ``min_periods`` defaults to ``window``: the score's ceiling depends on the number of samples
    per tree, so a forest fit on a half-empty window scores ordinary points as high as a full
    one scores outliers (measured: 0.75 on normal readings after a 64-vector fit).

    The score is ``-score_samples(x)``, i.e. the anomaly score ``s(x, n) = 2 ** (-E[h(x)] / c(n))``
    of Liu, Ting & Zhou (2008): in (0, 1], about 0.5 or less for ordinary points and close to 1
    for points isolated in a few splits. ``update`` returns 0.0 until the first fit. The default
    ``threshold`` 0.7 is a compromise measured on two cases: on the simulated DMA inlet
    (pressure, flow) normal readings stay <= 0.65 and a pipe burst scores 0.735; on correlated
    Gaussian pairs (3 seeds x 3,000 vectors) ~1 % of normal vectors reach 0.7 (99.9th percentile
    0.77), i.e. Gaussian tails are as "isolated" as true outliers. The trees split one axis at a
    time, so a
    broken correlation with both values in range ([2, -2] on the diagonal x = y) scores only
    ~0.65: use :class:`PcaT2Q` for that. The score also saturates: a point 6 sd out scores
    0.73-0.80, no more than the most extreme 0.1 % of normal points, because the cloud's own
    edge is isolated about as fast. The forest earns its keep on non-Gaussian, multi-modal
    clouds (pump on/off states), not as a sharper Gaussian tail test.

    A ``vector`` family detector. State: ``(count, buffer)`` where the buffer holds the last
    ``window + refit - 1`` vectors as tuples of floats; the forest is *not* stored:
    ``from_state`` refits it on the same window as the original's last fit (the buffer minus the
    readings learned since), and because the fit is deterministic the restored detector scores
    exactly like the original. Restoring therefore costs one fit (tens of milliseconds at the
    defaults), snapshotting only a copy of the buffer.

    Cost: scikit-learn scores one sample through Python-level loops over the trees, so an update
    costs hundreds of microseconds (see docs/detectors.md): for assets, not for every series.

    >>> rng = np.random.default_rng(0)
    >>> det = IsolationForestDetector(n=2, window=256, refit=64, min_periods=64)
    >>> for t in range(512):
    ...     base = rng.normal()
    ...     _ = det.update(float(t), [base, base + 0.1 * rng.normal()])
    >>> det.update(512.0, [0.5, 0.5]) < 0.5  # inside the learned cloud
    True
    >>> 0.7 < det.update(513.0, [6.0, 6.0]) < 0.8  # 6 sd out: the score saturates (see above)
    True
    """

    name: ClassVar[str] = "isolation_forest"

    def __init__(
        self,
        n: int,
        window: int = 512,
        refit: int = 64,
        min_periods: int | None = None,
        n_estimators: int = 50,
        max_samples: int = 256,
        seed: int = 0,
        threshold: float = 0.7,
        learn: str | dict | None = "gated",
    ) -> None:
        self.n = check_int("n", n, 1)
        self.window = check_int("window", window, 2)
        self.refit = check_int("refit", refit, 1)
        self.min_periods = check_int(
            "min_periods", window if min_periods is None else min_periods, 2
        )
        if self.min_periods > self.window:
            raise ValueError(f"min_periods must be <= window, got {min_periods!r}")
        self.n_estimators = check_int("n_estimators", n_estimators, 1)
        self.max_samples = check_int("max_samples", max_samples, 2)
        self.seed = check_int("seed", seed, 0)
        self.threshold = check_positive("threshold", threshold)
        self._count = 0
        self._buf: deque = deque(maxlen=self.window + self.refit - 1)
        self._model: IsolationForest | None = None
        self._init_learning(learn)

    def _last_fit(self) -> int:
        """Count at which the current forest was fit (0 if none yet)."""
        last = self._count - self._count % self.refit
        return last if last >= self.min_periods else 0

    def _fit(self) -> None:
        pending = self._count - self._last_fit()
        rows = list(self._buf)[: len(self._buf) - pending][-self.window :]
        data = np.array(rows, dtype=float)
        self._model = _isolation_forest()(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(rows)),
            random_state=self.seed,
            n_jobs=1,
        ).fit(data)

    def score_one(self, t: float, x: np.ndarray) -> float:
        if self._model is None:
            return 0.0
        x = np.clip(x, -_F32_MAX, _F32_MAX)  # scikit-learn's trees work in float32
        return clamp_score(float(-self._model.score_samples(x.reshape(1, -1))[0]))

    def learn_one(self, t: float, x: np.ndarray) -> None:
        self._buf.append(tuple(np.clip(x, -_F32_MAX, _F32_MAX).tolist()))
        self._count += 1
        if self._count % self.refit == 0 and self._count >= self.min_periods:
            self._fit()

    def _dump(self) -> tuple:
        """``(count, buffer)``: the recent vectors as tuples of floats, oldest first."""
        return (self._count, tuple(self._buf))

    def _load(self, state: tuple) -> None:
        count, buf = state
        self._count = int(count)
        self._buf.extend(tuple(float(v) for v in row) for row in buf)
        if self._last_fit():
            self._fit()


class VectorHST(Vector):
    """river's :class:`~river.anomaly.HalfSpaceTrees` on the asset's reading vector.

    ``update(t, xs)`` (same vector API as :class:`PcaT2Q`) scales each reading with the running
    min/max of that sensor's readings seen *before* this one (no look-ahead) so that the range
    seen so far maps onto [1/3, 2/3] of [0, 1] (the headroom of
    :class:`~twinwatch.detectors.hst.ScaledHST`:
    a new extreme lands in cells the normal data never reached), scores the vector, then learns
    it. Score in [0, 1]; 0.0 until ``window_size`` vectors have been seen. Defaults measured on
    two Gaussian sensors (3 seeds x 3,000 vectors): normal max 0.84-0.87, 99.9th percentile
    0.79; one sensor 8 sd out 0.885-0.91, both 12 sd out ~0.98. The margin is thin: the
    default threshold fires on up to ~0.1 % of normal vectors. More trees than ScaledHST's 10
    (25) because with
    several features each tree splits each one less often (10 trees: normal max up to 0.92).

    HST splits one random feature at a time, so it catches a sensor leaving its range, and a
    combination of values never seen together only as far as the trees' cells are fine enough
    (``height``) to separate it; for correlations, :class:`PcaT2Q` is the sharper tool. The
    running min/max never forgets (one huge outlier compresses later readings).

    A ``vector`` family detector. State: ``(count, lows, highs, pickle.dumps(model))``, like
    ScaledHST tens of kB.

    >>> rng = np.random.default_rng(1)
    >>> det = VectorHST(n=2, seed=3)
    >>> scores = [det.update(float(t), rng.normal([20.0, 5.0], 0.5)) for t in range(600)]
    >>> round(float(np.median(scores[250:])), 2)
    0.48
    >>> det.update(600.0, [20.0, 9.0]) >= det.threshold  # second sensor 8 sd out of its range
    True
    """

    name: ClassVar[str] = "vector_hst"

    def __init__(
        self,
        n: int,
        n_trees: int = 25,
        height: int = 6,
        window_size: int = 250,
        seed: int = 42,
        threshold: float = 0.85,
        learn: str | dict | None = "gated",
    ) -> None:
        self.n = check_int("n", n, 1)
        self.n_trees = check_int("n_trees", n_trees, 1)
        self.height = check_int("height", height, 1)
        self.window_size = check_int("window_size", window_size, 1)
        self.seed = check_int("seed", seed, 0)
        self.threshold = check_unit_threshold(threshold)
        self._count = 0
        self._lo = [0.0] * self.n
        self._hi = [0.0] * self.n
        self._model: HalfSpaceTrees | None = None
        self._features: dict[str, float] = {}  # score_one's, for learn_one
        self._init_learning(learn)

    def score_one(self, t: float, x: np.ndarray) -> float:
        if self._model is None:
            self._model = HalfSpaceTrees(
                n_trees=self.n_trees,
                height=self.height,
                window_size=self.window_size,
                seed=self.seed,
            )
        vals = x.tolist()
        if self._count == 0:
            self._lo, self._hi = list(vals), list(vals)
        self._features = {f"x{i}": _unit(v, self._lo[i], self._hi[i]) for i, v in enumerate(vals)}
        score = float(self._model.score_one(self._features))
        return score if 0.0 <= score <= 1.0 else (0.0 if not score > 0.0 else 1.0)

    def learn_one(self, t: float, x: np.ndarray) -> None:
        """Learn the features just scored, then widen the scaler (no look-ahead)."""
        assert self._model is not None
        self._model.learn_one(self._features)
        for i, v in enumerate(x.tolist()):
            if v < self._lo[i]:
                self._lo[i] = v
            elif v > self._hi[i]:
                self._hi[i] = v
        self._count += 1

    def _dump(self) -> tuple:
        """``(count, lows, highs, pickle.dumps(model) or None)``."""
        model = None if self._model is None else pickle.dumps(self._model, pickle.HIGHEST_PROTOCOL)
        return (self._count, tuple(self._lo), tuple(self._hi), model)

    def _load(self, state: tuple) -> None:
        count, lo, hi, model = state
        self._count = int(count)
        self._lo, self._hi = [float(v) for v in lo], [float(v) for v in hi]
        self._model = None if model is None else pickle.loads(model)
