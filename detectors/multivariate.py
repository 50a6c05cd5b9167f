"""Multivariate detection for multi-sensor assets: PCA Hotelling T² and Q (SPE)."""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

import numpy as np

from detectors.base import check_int, check_positive, clamp_score

__all__ = ["PcaT2Q", "chi2_quantile"]

_Z = {0.99: 2.3263, 0.999: 3.0902, 0.9999: 3.7190}  # standard normal quantiles


def chi2_quantile(p: float, dof: float) -> float:
    """Wilson-Hilferty approximation of the chi-squared quantile.

    It errs high (a conservative limit) at the 0.999 level: 3 % at dof 1, 2 % at 3, ~1 % from 5.
    """
    z = _Z[p]
    a = 2.0 / (9.0 * dof)
    return dof * max(1.0 - a + z * math.sqrt(a), 0.0) ** 3


class PcaT2Q:
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

    Not in ``REGISTRY`` (its input is a vector, not one reading); state is a few small arrays.

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

    def __init__(self, n: int, alpha: float = 0.002, explained: float = 0.9, refit: int = 50,
                 warmup: int = 300, confidence: float = 0.999, threshold: float = 1.0) -> None:
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

    def _fit(self) -> None:
        lam, vec = np.linalg.eigh(self._cov)
        lam, vec = np.maximum(lam[::-1], 1e-9), vec[:, ::-1]
        share = np.cumsum(lam) / lam.sum()
        k = int(min(np.searchsorted(share, self.explained) + 1, self.n - 1))
        rest = lam[k:]
        th1, th2 = rest.sum(), (rest**2).sum()
        q_limit = (th2 / th1) * chi2_quantile(self.confidence, th1 * th1 / th2)
        self._model = (np.ascontiguousarray(vec[:, :k]), lam[:k].copy(),
                       chi2_quantile(self.confidence, k), max(q_limit, 1e-9))

    def update(self, t: float, xs: Sequence[float]) -> float:
        x = np.asarray(xs, dtype=float)
        if x.shape != (self.n,):
            raise ValueError(f"expected {self.n} readings, got shape {x.shape}")
        if not np.isfinite(x).all():
            return 0.0
        self._count += 1
        w = max(self.alpha, 1.0 / self._count)
        z = (x - self._mean) / np.sqrt(np.maximum(self._var, 1e-12))
        score = 0.0
        if self._count > self.warmup and self._model is not None:
            p, lam, t2_limit, q_limit = self._model
            s = p.T @ z
            t2 = float((s * s / lam).sum())
            r = z - p @ s
            score = clamp_score(float(max(t2 / t2_limit, float(r @ r) / q_limit)))
        # learn: mean/variance first, then the correlation of the re-standardised reading
        d = x - self._mean
        self._mean += w * d
        self._var = (1.0 - w) * (self._var + w * d * d)
        zs = (x - self._mean) / np.sqrt(np.maximum(self._var, 1e-12))
        if self._count > 1:
            self._cov = (1.0 - w) * self._cov + w * np.outer(zs, zs)
        if self._count % self.refit == 0 or (self._model is None and self._count >= self.warmup):
            self._fit()
        return score

    def to_state(self) -> tuple:
        """``(count, mean, var, covariance, model)`` as tuples of floats (model may be None)."""
        model = None
        if self._model is not None:
            p, lam, t2_limit, q_limit = self._model
            model = (tuple(map(tuple, p)), tuple(lam), float(t2_limit), float(q_limit))
        return (self._count, tuple(self._mean), tuple(self._var),
                tuple(map(tuple, self._cov)), model)

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> PcaT2Q:
        det = cls(**params)
        det._count, mean, var, cov, model = state
        det._mean, det._var, det._cov = (np.array(s, dtype=float) for s in (mean, var, cov))
        if model is not None:
            p, lam, t2_limit, q_limit = model
            det._model = (np.array(p, dtype=float), np.array(lam, dtype=float), t2_limit,
                          q_limit)
        return det

    def params(self) -> dict:
        return {"n": self.n, "alpha": self.alpha, "explained": self.explained,
                "refit": self.refit, "warmup": self.warmup, "confidence": self.confidence,
                "threshold": self.threshold}
