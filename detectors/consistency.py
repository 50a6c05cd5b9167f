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
departure minus the second largest, while the others stay in control (below half the
threshold); ``mode="common"`` (kind ``structural``) scores the smallest
departure when all share a sign. Run both on one group as two named detectors. A third mode,
``residual`` (kind ``behaviour``), scores the largest departure whatever the others do: the
normal-behaviour model of condition monitoring, e.g. a wind-turbine bearing's temperature against
what its load predicts (Zaher et al. 2009, "Online wind turbine fault detection through automated
SCADA data analysis", Wind Energy 12), for one sensor or a few.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from twinwatch.detectors.base import check_finite, check_int, check_positive, clamp_score
from twinwatch.detectors.group import Explanation, Grouped, Role, check_counts, ew_weight

__all__ = ["Consistency"]

_MODES = {"single": "sensor_fault", "common": "structural", "residual": "behaviour"}
_RELEARN = 30.0  # ticks over which a re-zeroed sensor's offset is re-learned (not judged)
_CLIP = 2.5  # Huber's constant: learning sees deviations of at most this many spreads


class Consistency(Grouped):
    """Sensors of one quantity judged against their drivers or their siblings.

    ``counts``: {"sensors": n, "drivers": k}. Features of sensor i: an intercept, the drivers
    and, when ``siblings`` (default: when there are no drivers), the mean of the other sensors.
    Per sensor, an exponentially weighted least-squares fit (time constant ``memory_s``), learned
    as the learning policy says (``learn``; by default only ticks on which no sensor is half-way
    to the threshold: an incident, even a slow one, is not learned), predicts it; the
    residual over the fit's spread is smoothed by an EWMA (``smooth`` = lambda) and divided
    by the EWMA's own spread on the reference (floored at the white-noise value
    ``sqrt(lambda / (2 - lambda))``): that is each sensor's departure z. 0.0 until
    ``warmup_s`` of ticks have been seen (the reference needs a full daily cycle of temperature
    and traffic). A tick with a missing member is not judged (the vector protocol).

    ``single`` needs two sensors with drivers or three against siblings (two siblings mirror
    each other: nothing tells which one departed); ``common`` needs two sensors.

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
        Role("sensors", 1, None, "sensors of one quantity on one asset (the gauges of a span)"),
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
        learn: str | Mapping[str, Any] | None = None,
    ) -> None:
        self.counts = check_counts(self.ROLES, counts)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        self.mode = mode
        self.kind = _MODES[mode]
        n, k = self.counts["sensors"], self.counts["drivers"]
        self.siblings = (k == 0) if siblings is None else bool(siblings)
        if self.siblings and n < 2:
            raise ValueError("judging sensors against their siblings needs at least 2 sensors")
        if not self.siblings and k == 0:
            raise ValueError("with no drivers the siblings must be the reference (siblings: true)")
        least = {"single": 3 if k == 0 else 2, "common": 2, "residual": 1}[mode]
        if n < least:
            raise ValueError(
                f"mode {mode!r} needs at least {least} sensors"
                + (" (two siblings mirror each other)" if mode == "single" and k == 0 else "")
            )
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
        self._t0 = 0.0  # first tick
        self._t = 0.0  # last tick
        self._a = np.zeros((n, self._p, self._p))  # EW feature moments, per sensor
        self._b = np.zeros((n, self._p))  # EW feature x reading moments
        self._yy = np.zeros(n)  # EW reading moments: the fit's residual variance comes from them
        self._seen = 0  # ticks learned
        self._u = np.zeros(n)  # EWMA of standardised residuals (the test statistic)
        self._v = np.zeros(n)  # EW mean of u**2 on the reference (from warmup_s / 2 on)
        self._nv = 0
        self._offset = np.zeros(n)  # re-zero corrections (rebaseline)
        self._relearn = np.zeros(n)  # ticks of offset re-learning left, per sensor
        self._beta = np.zeros((n, self._p))
        self._var = np.zeros(n)  # residual variance of the current fit
        self._last: tuple = ()  # (x, predicted, z, sd) of the last scored tick
        self._pending: tuple = ()  # what score_one computed, for learn_one
        self._init_learning(learn)
        # the policy gates a tick on its score (a contrast of the sensors); the reference must
        # also not learn a tick on which any one sensor is past the policy's gate
        pol = self._learning.policy
        self._member_gate = math.inf if pol.mode == "always" else pol.gate * self.threshold

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
        with np.errstate(all="ignore"):
            try:
                beta = np.linalg.solve(self._a + ridge * np.eye(self._p), self._b[..., None])
            except np.linalg.LinAlgError:  # degenerate drivers (constant, or overflowing)
                return
            beta = beta[..., 0]
            var = np.maximum(self._yy - (beta * self._b).sum(axis=1), 0.0)
        if np.isfinite(beta).all() and np.isfinite(var).all():
            self._beta, self._var = beta, var

    def score_one(self, t: float, x: np.ndarray) -> float:
        y, d = x[: self._n] - self._offset, x[self._n :]
        phi = self._features(y, d)
        if self._count == 0:
            self._t0 = t
        dt = t - self._t if self._count else 0.0
        self._count += 1
        self._t = t
        if self._count % self.refit == 0 and self._seen > self._p:
            self._fit()
        with np.errstate(all="ignore"):
            pred = (phi * self._beta).sum(axis=1)
            e = y - pred
            sd = np.sqrt(np.maximum(self._var, self.min_scale**2 + 1e-18 * (1.0 + y * y)))
            r = np.where(self._var > 0, e / sd, 0.0)
        r = np.where(np.isfinite(r) & (self._relearn <= 0), r, 0.0)  # re-zeroed: not judged yet
        self._u = (1.0 - self.smooth) * self._u + self.smooth * r  # the statistic: every tick
        age = t - self._t0
        warm = age >= self.warmup_s
        z = self._u / np.maximum(np.sqrt(self._v), self._floor_u)
        score = self._score(z) if warm else 0.0
        self._last = (x[: self._n].copy(), pred + self._offset, z, sd)
        # a tick with a sensor past the policy's gate (whatever the mode), or a raw outlier
        # (robust fit), is not learned: a slow drift must not drag the reference along
        skip = (warm and float(np.abs(z).max()) >= self._member_gate) or float(np.abs(r).max()) >= 8
        self._pending = (t, dt, phi, y, e, skip, age)
        return clamp_score(score)

    def learn_one(self, t: float, x: np.ndarray) -> None:
        if not self._pending or self._pending[0] != t:
            self.score_one(t, x)
        _, dt, phi, y, e, skip, age = self._pending
        self._pending = ()
        relearning = self._relearn > 0
        if relearning.any():  # a re-zeroed sensor: its new offset, a running mean
            done = _RELEARN - self._relearn[relearning]
            self._offset[relearning] += e[relearning] / (done + 1.0)
            self._relearn[relearning] -= 1
        if not skip:
            self._learn(dt, phi, y, age)

    def _learn(self, dt: float, phi: np.ndarray, y: np.ndarray, age: float) -> None:
        """Robust, gated learning (Huber): the fit learns each reading pulled to within
        ``_CLIP`` spreads of its prediction, and the EWMA's spread learns clipped squares, so a
        slow drift barely moves the reference on its way to the threshold. A plain mean over
        the fault-free start (``warmup_s``), then the memory's pace (reference mode)."""
        young = age < self.warmup_s
        self._seen += 1
        w = ew_weight(dt, self.memory_s, self._seen if young else 0)
        with np.errstate(all="ignore"):  # readings near the float limit: the fit rejects them
            pred = (phi * self._beta).sum(axis=1)
            sd = np.sqrt(self._var)
            yc = np.where(self._var > 0, np.clip(y, pred - _CLIP * sd, pred + _CLIP * sd), y)
            a = self._a + w * (np.einsum("ip,iq->ipq", phi, phi) - self._a)
            b = self._b + w * (phi * yc[:, None] - self._b)
            yy = self._yy + w * (yc * yc - self._yy)
        if not (np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(yy).all()):
            return
        self._a, self._b, self._yy = a, b, yy
        if age >= self.warmup_s / 2:  # the EWMA's spread, once the fit has settled
            self._nv += 1
            wv = ew_weight(dt, self.memory_s, self._nv if young else 0)
            cap = _CLIP * _CLIP * np.maximum(self._v, self._floor_u**2)
            u2 = self._u**2 if young else np.minimum(self._u**2, cap)
            self._v += wv * (u2 - self._v)

    def _score(self, z: np.ndarray) -> float:
        a = np.abs(z)
        if self.mode == "residual":
            return float(a.max())
        if self.mode == "single":  # one departs while the others stay in control
            top2 = np.partition(a, self._n - 2)[-2:]
            return float(top2[1] - top2[0]) if top2[0] < self.threshold / 2 else 0.0
        return float(a.min()) if (z > 0).all() or (z < 0).all() else 0.0

    def explain(self) -> Explanation:
        if not self._last:
            return Explanation("{member}", math.nan, math.nan)
        x, pred, z, sd = self._last
        a = np.abs(z)
        share = a * a / max(float((a * a).sum()), 1e-300)
        order = np.argsort(-a)
        j = int(order[0])
        # a persistent offset D drives u to D / sd: the threshold in reading units
        band = self.threshold * float(sd[j]) * max(float(np.sqrt(self._v[j])), self._floor_u)
        if self.mode != "common":
            ref = "siblings" if self.siblings else "drivers"
            note = f"departs from what its {ref} predict by {float(x[j] - pred[j]):+.4g}"
        else:
            sign = "up" if z[j] > 0 else "down"
            note = f"all {self._n} sensors depart {sign} together"
        return Explanation(
            quantity="{member}",
            observed=float(x[j]),
            expected=float(pred[j]),
            low=float(pred[j]) - band,
            high=float(pred[j]) + band,
            contributors=tuple((int(i), round(float(share[i]), 4)) for i in order),
            member=j,
            note=note,
            unit_of=j,
        )

    def rebaseline(self, member: int) -> None:
        """After a sensor was replaced or re-zeroed: re-learn member ``member``'s offset over
        the next ticks (not judged meanwhile). A driver re-zeroed changes every prediction:
        then the whole reference is re-learned."""
        if 0 <= member < self._n:
            self._relearn[member] = _RELEARN
            self._u[member] = 0.0
        else:
            super().rebaseline(member)

    # -- state --
    def _dump(self) -> tuple:
        return (
            self._count,
            self._t0,
            self._t,
            tuple(self._a.ravel().tolist()),
            tuple(self._b.ravel().tolist()),
            tuple(self._yy.tolist()),
            self._seen,
            tuple(self._beta.ravel().tolist()),
            tuple(self._var.tolist()),
            tuple(self._u.tolist()),
            tuple(self._v.tolist()),
            self._nv,
            tuple(self._offset.tolist()),
            tuple(self._relearn.tolist()),
        )

    def _load(self, state: tuple) -> None:
        self._count, self._t0, self._t, a, b, yy, self._seen, beta, *rest = state
        var, u, v, self._nv, offset, relearn = rest
        n, p = self._n, self._p
        self._a = np.array(a, dtype=float).reshape(n, p, p)
        self._b = np.array(b, dtype=float).reshape(n, p)
        self._beta = np.array(beta, dtype=float).reshape(n, p)
        self._yy, self._var, self._u, self._v, self._offset, self._relearn = (
            np.array(s, dtype=float) for s in (yy, var, u, v, offset, relearn)
        )
