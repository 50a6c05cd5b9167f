"""Cross-sensor consistency: one sensor departing from its siblings (a sensor fault, a debonded
strain gauge, drift after a recalibration) against all of them departing together (structural).

The idea is analytical redundancy (Isermann, *Fault-Diagnosis Systems*, 2006, ch. 10; for
structural monitoring, sensor validation by regression on the sensor's neighbours and drivers,
e.g. Kullaa 2013, "Detection, identification, and quantification of sensor fault in a sensor
network", MSSP 40): each sensor is predicted from what drives it (temperature, a load proxy)
or, without drivers, from the mean of its siblings; the standardised residuals then say *who*
departed. One residual departing while the others stay in control isolates a faulty sensor; all
residuals departing in the same direction is a change of the structure (or of its loading) that
no single sensor explains. The residuals are smoothed with an EWMA (Roberts 1959) so that
moderate, persistent offsets stand out of the traffic-driven scatter, and each smoothed residual
is standardised by its own spread measured on the reference (autocorrelated residuals make the
textbook EWMA variance too small).

Two modes, two alerts: ``mode="single"`` (kind ``sensor_fault``) scores the largest standardised
departure minus the second largest; ``mode="common"`` (kind ``structural``) scores the smallest
departure when all share a sign. Run both on one group as two named detectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from twinwatch.detectors.base import check_finite, check_int, check_positive, clamp_score
from twinwatch.detectors.group import Explanation, Role, check_counts, ew_weight

__all__ = ["Consistency"]

_MODES = {"single": "sensor_fault", "common": "structural"}
_RELEARN = 30.0  # ticks over which a re-zeroed sensor's offset is re-learned (not judged)


class Consistency:
    """Sensors of one quantity judged against their drivers or their siblings.

    ``counts``: {"sensors": n >= 2, "drivers": k >= 0}. Features of sensor i: an intercept, the
    drivers and, when ``siblings`` (default: when there are no drivers), the mean of the other
    sensors. Per sensor, an exponentially weighted least-squares fit (time constant
    ``memory_s``) learned only on ticks neither mode flags (gated learning) predicts it; the
    residual over its EW spread is smoothed by an EWMA (``smooth`` = lambda) and divided by the
    EWMA's own spread on the reference (floored at the white-noise value
    ``sqrt(lambda / (2 - lambda))``). 0.0 until ``warmup_s`` of ticks have been seen (the
    reference needs a full daily cycle of temperature and traffic). A tick with a missing member
    is skipped (score 0.0, nothing learned).

    With two sensors and siblings as the only reference the two residuals mirror each other, so
    ``single`` cannot say which one departed: give drivers, or three or more sensors.

    >>> rng = np.random.default_rng(0)
    >>> det = Consistency({"sensors": 3, "drivers": 1}, warmup_s=3600)
    >>> for t in range(0, 20_000, 10):
    ...     temp = 15 + 5 * math.sin(t / 3000)
    ...     xs = [100 + 11 * temp, 80 + 10 * temp, 60 + 9 * temp] + rng.normal(0, 2, 3)
    ...     score = det.update(float(t), [*xs, temp])
    >>> score < det.threshold
    True
    >>> for t in range(20_000, 20_300, 10):  # gauge 2 (index 1) reads 30 units high
    ...     temp = 15 + 5 * math.sin(t / 3000)
    ...     xs = [100 + 11 * temp, 110 + 10 * temp, 60 + 9 * temp] + rng.normal(0, 2, 3)
    ...     score = det.update(float(t), [*xs, temp])
    >>> score >= det.threshold, det.explain().member
    (True, 1)
    """

    name: ClassVar[str] = "consistency"
    ROLES: ClassVar[tuple[Role, ...]] = (
        Role("sensors", 2, None, "sensors of one quantity on one asset (the gauges of a span)"),
        Role("drivers", 0, None, "what drives them: temperature, a load or traffic proxy"),
    )

    def __init__(
        self,
        counts: dict,
        mode: str = "single",
        siblings: bool | None = None,
        memory_s: float = 7 * 86400.0,
        warmup_s: float = 86400.0,
        smooth: float = 0.1,
        threshold: float = 6.0,
        min_scale: float = 0.0,
        refit: int = 10,
    ) -> None:
        self.counts = check_counts(self.ROLES, counts)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        self.mode = mode
        self.kind = _MODES[mode]
        n, k = self.counts["sensors"], self.counts["drivers"]
        self.siblings = (k == 0) if siblings is None else bool(siblings)
        if not self.siblings and k == 0:
            raise ValueError("with no drivers the siblings must be the reference (siblings: true)")
        self.memory_s = check_positive("memory_s", memory_s)
        self.warmup_s = check_finite("warmup_s", warmup_s)
        self.smooth = check_positive("smooth", smooth)
        if self.smooth > 1.0:
            raise ValueError(f"smooth must be in (0, 1], got {smooth!r}")
        self.threshold = check_positive("threshold", threshold)
        self.min_scale = max(check_finite("min_scale", min_scale), 0.0)
        self.refit = check_int("refit", refit, 1)
        self._n, self._k = n, k
        self._p = 1 + k + (1 if self.siblings else 0)
        self._floor_u = math.sqrt(self.smooth / (2.0 - self.smooth))
        self._count = 0
        self._t0 = math.nan
        self._t = math.nan
        self._a = np.zeros((n, self._p, self._p))  # EW feature moments, per sensor
        self._b = np.zeros((n, self._p))  # EW feature x reading moments
        self._yy = np.zeros(n)  # EW reading moments: the fit's residual variance comes from them
        self._u = np.zeros(n)  # EWMA of standardised residuals (the test statistic)
        self._v = np.zeros(n)  # EW mean of u**2 on the reference (from warmup_s / 2 on)
        self._nv = 0
        self._offset = np.zeros(n)  # re-zero corrections (rebaseline)
        self._relearn = np.zeros(n)  # readings of offset re-learning left, per sensor
        self._beta = np.zeros((n, self._p))
        self._var = np.zeros(n)  # residual variance of the current fit
        self._last: tuple = ()  # (x, predicted, z, sd) of the last scored tick

    # -- the model --
    def _features(self, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        phi = np.empty((self._n, self._p))
        phi[:, 0] = 1.0
        phi[:, 1 : 1 + self._k] = d
        if self.siblings:
            phi[:, -1] = (x.sum() - x) / (self._n - 1)
        return phi

    def _fit(self) -> None:
        """Refresh the regression and its residual variance from the EW moments."""
        ridge = 1e-9 * np.trace(self._a, axis1=1, axis2=2)[:, None, None] + 1e-12
        beta = np.linalg.solve(self._a + ridge * np.eye(self._p), self._b[..., None])[..., 0]
        self._beta = beta
        self._var = np.maximum(self._yy - (beta * self._b).sum(axis=1), 0.0)

    def update(self, t: float, xs: Sequence[float]) -> float:
        v = np.asarray(xs, dtype=float)
        if v.shape != (self._n + self._k,):
            raise ValueError(f"expected {self._n + self._k} values, got shape {v.shape}")
        if not np.isfinite(v).all():
            return 0.0
        x, d = v[: self._n] - self._offset, v[self._n :]
        phi = self._features(x, d)
        if self._count == 0:
            self._t0 = t
        dt = t - self._t if self._count else 0.0
        self._count += 1
        self._t = t
        w = ew_weight(dt, self.memory_s, self._count)
        if self._count % self.refit == 0 and self._count > self._p:
            self._fit()
        pred = (phi * self._beta).sum(axis=1)
        e = x - pred
        sd = np.sqrt(np.maximum(self._var, self.min_scale**2 + 1e-18 * (1.0 + x * x)))
        r = np.where(self._var > 0, e / sd, 0.0)
        relearning = self._relearn > 0
        if relearning.any():  # a re-zeroed sensor: learn its new offset, judge it later
            done = _RELEARN - self._relearn[relearning]
            self._offset[relearning] += e[relearning] / (done + 1.0)
            self._relearn[relearning] -= 1
            r = np.where(relearning, 0.0, r)
        lam = self.smooth
        self._u = (1.0 - lam) * self._u + lam * r
        age = t - self._t0
        warm = age >= self.warmup_s
        z = self._u / np.maximum(np.sqrt(self._v), self._floor_u)
        single, common = self._scores(z)
        score = (single if self.mode == "single" else common) if warm else 0.0
        self._last = (v[: self._n], pred + self._offset, z, sd)
        flagged = warm and max(single, common) >= self.threshold
        if not flagged and float(np.abs(r).max()) < 8.0:  # gated: incidents are not learned
            self._a += w * (np.einsum("ip,iq->ipq", phi, phi) - self._a)
            self._b += w * (phi * x[:, None] - self._b)
            self._yy += w * (x * x - self._yy)
            if age >= self.warmup_s / 2:  # the EWMA's spread, once the fit has settled
                self._nv += 1
                self._v += ew_weight(dt, self.memory_s, self._nv) * (self._u**2 - self._v)
        return clamp_score(score)

    def _scores(self, z: np.ndarray) -> tuple[float, float]:
        a = np.abs(z)
        top2 = np.partition(a, self._n - 2)[-2:]
        single = float(top2[1] - top2[0])
        same = (z > 0).all() or (z < 0).all()
        common = float(a.min()) if same else 0.0
        return single, common

    def explain(self) -> Explanation:
        if not self._last:
            return Explanation("reading", math.nan, math.nan)
        x, pred, z, sd = self._last
        a = np.abs(z)
        share = a * a / max(float((a * a).sum()), 1e-300)
        order = np.argsort(-a)
        j = int(order[0])
        # a persistent offset D drives u to D / sd: the threshold in reading units
        band = self.threshold * float(sd[j]) * max(float(np.sqrt(self._v[j])), self._floor_u)
        if self.mode == "single":
            note = f"member {j} departs from its {'siblings' if self.siblings else 'drivers'}"
        else:
            sign = "up" if z[j] > 0 else "down"
            note = f"all {self._n} sensors depart {sign} together"
        return Explanation(
            quantity="reading",
            observed=float(x[j]),
            expected=float(pred[j]),
            low=float(pred[j]) - band,
            high=float(pred[j]) + band,
            contributors=tuple((int(i), round(float(share[i]), 4)) for i in order),
            member=j,
            note=note,
        )

    def rebaseline(self, member: int) -> None:
        """After a sensor was replaced or re-zeroed: re-learn member ``member``'s offset over
        the next ticks (not judged meanwhile). A driver re-zeroed changes every prediction:
        then the whole reference is re-learned."""
        if 0 <= member < self._n:
            self._relearn[member] = _RELEARN
            self._u[member] = 0.0
        elif self._n <= member < self._n + self._k:
            fresh = type(self)(**self.params())
            self.__dict__.update(fresh.__dict__)

    # -- state --
    def to_state(self) -> tuple:
        return (
            self._count,
            self._t0,
            self._t,
            tuple(self._a.ravel().tolist()),
            tuple(self._b.ravel().tolist()),
            tuple(self._yy.tolist()),
            tuple(self._beta.ravel().tolist()),
            tuple(self._var.tolist()),
            tuple(self._u.tolist()),
            tuple(self._v.tolist()),
            self._nv,
            tuple(self._offset.tolist()),
            tuple(self._relearn.tolist()),
        )

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> Consistency:
        det = cls(**params)
        count, det._t0, det._t, a, b, yy, beta, var, u, v, nv, offset, relearn = state
        n, p = det._n, det._p
        det._count, det._nv = int(count), int(nv)
        det._a = np.array(a, dtype=float).reshape(n, p, p)
        det._b = np.array(b, dtype=float).reshape(n, p)
        det._beta = np.array(beta, dtype=float).reshape(n, p)
        det._yy, det._var, det._u, det._v, det._offset, det._relearn = (
            np.array(s, dtype=float) for s in (yy, var, u, v, offset, relearn)
        )
        return det

    def params(self) -> dict:
        return {
            "counts": dict(self.counts),
            "mode": self.mode,
            "siblings": self.siblings,
            "memory_s": self.memory_s,
            "warmup_s": self.warmup_s,
            "smooth": self.smooth,
            "threshold": self.threshold,
            "min_scale": self.min_scale,
            "refit": self.refit,
        }
