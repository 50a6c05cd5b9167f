"""Response-ratio trend: a structure's response per unit of load, against its reference.

A loss of stiffness makes the same traffic or the same temperature change produce a larger
strain or deflection. Structural health monitoring tracks exactly that ratio: the slope of the
response against the load (influence-line and load-test practice; for temperature-driven
response, Yarnold & Moon 2015, "Temperature-based structural health monitoring baseline for
long-span bridges", Eng. Struct. 86; Kromanis & Kripakaran 2016, "SHM of bridges: a
regression-based approach", Struct. Health Monit.). The slope is estimated by least squares over
a recent window and over a long reference, with the other drivers (temperature) regressed out;
their ratio is the quantity an engineer reads ("the span now deflects 1.2x as much per vehicle").

Only a change shared by *every* response sensor is structural: a single gauge whose slope moves
is a sensor problem, which ``consistency`` reports. So the score is the median ratio's departure
from 1, and 0 unless all sensors moved the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from twinwatch.detectors.base import check_finite, check_int, check_positive, clamp_score
from twinwatch.detectors.group import Explanation, Role, check_counts, ew_weight

__all__ = ["ResponseRatio"]


class ResponseRatio:
    """Per response sensor, slope on ``load`` (with ``covariates`` regressed out) over the
    recent ``window_s`` against the reference over ``memory_s``; both EW least squares.

    ratio_i = slope_recent_i / slope_ref_i; m = median(ratio) - 1 when every ratio lies on the
    same side of 1, else 0. score = |m| / max(sd, ``min_sd``) where sd is the EW spread of m on
    the reference (learned, like the reference slopes, only from ticks that are not flagged,
    with a weight shrinking to 0 near the threshold). 0.0 until ``warmup_s`` of ticks; a tick
    with a missing member is skipped.

    >>> rng = np.random.default_rng(1)
    >>> det = ResponseRatio({"response": 2, "load": 1}, window_s=3 * 3600, warmup_s=86400)
    >>> def run(t0, hours, gain):
    ...     out = []
    ...     for t in range(t0, t0 + hours * 3600, 60):
    ...         load = max(math.sin(2 * math.pi * t / 86400), 0) + 0.1 * rng.random()
    ...         xs = [100 + 30 * gain * load, 50 + 20 * gain * load] + rng.normal(0, 1, 2)
    ...         out.append(det.update(float(t), [*xs, load]))
    ...     return max(out)
    >>> run(0, 72, 1.0) < det.threshold
    True
    >>> run(72 * 3600, 24, 1.3) >= det.threshold  # both gauges respond 30 % more per unit load
    True
    >>> round(det.explain().observed / det.explain().expected, 1)
    1.3
    """

    name: ClassVar[str] = "response_ratio"
    kind: ClassVar[str] = "structural"
    ROLES: ClassVar[tuple[Role, ...]] = (
        Role("response", 1, None, "strain gauges, displacement or acceleration of the structure"),
        Role("load", 1, 1, "the load whose effect is tracked: traffic, wind, or temperature"),
        Role("covariates", 0, None, "other drivers to regress out (temperature)"),
    )

    def __init__(
        self,
        counts: dict,
        window_s: float = 6 * 3600.0,
        memory_s: float = 14 * 86400.0,
        warmup_s: float = 86400.0,
        min_sd: float = 0.02,
        threshold: float = 5.0,
        refit: int = 10,
    ) -> None:
        self.counts = check_counts(self.ROLES, counts)
        self.window_s = check_positive("window_s", window_s)
        self.memory_s = check_positive("memory_s", memory_s)
        if self.memory_s <= self.window_s:
            raise ValueError("memory_s must be longer than window_s")
        self.warmup_s = check_finite("warmup_s", warmup_s)
        self.min_sd = check_positive("min_sd", min_sd)
        self.threshold = check_positive("threshold", threshold)
        self.refit = check_int("refit", refit, 1)
        self._n = self.counts["response"]
        self._p = 2 + self.counts["covariates"]  # intercept, load, covariates
        n, p = self._n, self._p
        self._count = 0
        self._nref = 0
        self._nv = 0
        self._t0 = math.nan
        self._t = math.nan
        self._a_rec = np.zeros((p, p))
        self._b_rec = np.zeros((p, n))
        self._a_ref = np.zeros((p, p))
        self._b_ref = np.zeros((p, n))
        self._slopes = (np.full(n, math.nan), np.full(n, math.nan))  # recent, reference
        self._var = 0.0  # EW variance of m on the reference
        self._m = 0.0
        self._score = 0.0

    @staticmethod
    def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ridge = 1e-9 * np.trace(a) + 1e-12
        return np.linalg.solve(a + ridge * np.eye(len(a)), b)[1]  # the load's row

    def update(self, t: float, xs: Sequence[float]) -> float:
        v = np.asarray(xs, dtype=float)
        if v.shape != (self._n + self._p - 1,):
            raise ValueError(f"expected {self._n + self._p - 1} values, got shape {v.shape}")
        if not np.isfinite(v).all():
            return self._score
        y = v[: self._n]
        phi = np.empty(self._p)
        phi[0] = 1.0
        phi[1:] = v[self._n :]
        if self._count == 0:
            self._t0 = t
        dt = t - self._t if self._count else 0.0
        self._count += 1
        self._t = t
        w = ew_weight(dt, self.window_s, self._count)
        outer = np.outer(phi, phi)
        self._a_rec += w * (outer - self._a_rec)
        self._b_rec += w * (np.outer(phi, y) - self._b_rec)
        age = t - self._t0
        if self._count % self.refit == 0 and self._nref > self._p and age >= self.window_s:
            self._slopes = (self._solve(self._a_rec, self._b_rec), self._solve_ref())
        rec, ref = self._slopes
        ratio = rec / np.where(np.abs(ref) > 1e-12, ref, math.nan)
        m = 0.0
        if np.isfinite(ratio).all() and ((ratio > 1).all() or (ratio < 1).all()):
            m = float(np.median(ratio)) - 1.0
        self._m = m
        score = 0.0
        if age >= self.warmup_s:
            score = clamp_score(abs(m) / max(math.sqrt(self._var), self.min_sd))
        self._score = score
        if score < self.threshold:  # the reference learns only what is not flagged
            gate = (1.0 - score / self.threshold) ** 2  # slopes: less and less near the threshold
            self._nref += 1
            wr = ew_weight(dt, self.memory_s, self._nref) * gate
            self._a_ref += wr * (outer - self._a_ref)
            self._b_ref += wr * (np.outer(phi, y) - self._b_ref)
            if age >= self.warmup_s / 2 and np.isfinite(ratio).all():
                self._nv += 1
                self._var += ew_weight(dt, self.memory_s, self._nv) * (m * m - self._var)
        return score

    def _solve_ref(self) -> np.ndarray:
        return self._solve(self._a_ref, self._b_ref)

    def explain(self) -> Explanation:
        rec, ref = self._slopes
        ratio = rec / np.where(np.abs(ref) > 1e-12, ref, math.nan)
        dev = np.abs(np.nan_to_num(ratio - 1.0))
        share = dev / max(float(dev.sum()), 1e-300)
        order = np.argsort(-dev)
        med_rec, med_ref = float(np.median(rec)), float(np.median(ref))
        band = self.threshold * max(math.sqrt(self._var), self.min_sd) * abs(med_ref)
        return Explanation(
            quantity="response per unit load",
            observed=med_rec,
            expected=med_ref,
            low=med_ref - band,
            high=med_ref + band,
            contributors=tuple((int(i), round(float(share[i]), 4)) for i in order),
            note=f"response per unit load x{1.0 + self._m:.2f} on all {self._n} sensors",
        )

    def rebaseline(self, member: int) -> None:
        """A replaced sensor: its slope is learned again (in practice, the whole reference)."""
        fresh = type(self)(**self.params())
        self.__dict__.update(fresh.__dict__)

    def to_state(self) -> tuple:
        return (
            self._count,
            self._nref,
            self._nv,
            self._t0,
            self._t,
            tuple(self._a_rec.ravel().tolist()),
            tuple(self._b_rec.ravel().tolist()),
            tuple(self._a_ref.ravel().tolist()),
            tuple(self._b_ref.ravel().tolist()),
            tuple(self._slopes[0].tolist()),
            tuple(self._slopes[1].tolist()),
            self._var,
            self._m,
            self._score,
        )

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> ResponseRatio:
        det = cls(**params)
        (det._count, det._nref, det._nv, det._t0, det._t, a_rec, b_rec, a_ref, b_ref) = state[:9]
        rec, ref, det._var, det._m, det._score = state[9:]
        p, n = det._p, det._n
        det._a_rec = np.array(a_rec, dtype=float).reshape(p, p)
        det._b_rec = np.array(b_rec, dtype=float).reshape(p, n)
        det._a_ref = np.array(a_ref, dtype=float).reshape(p, p)
        det._b_ref = np.array(b_ref, dtype=float).reshape(p, n)
        det._slopes = (np.array(rec, dtype=float), np.array(ref, dtype=float))
        return det

    def params(self) -> dict:
        return {
            "counts": dict(self.counts),
            "window_s": self.window_s,
            "memory_s": self.memory_s,
            "warmup_s": self.warmup_s,
            "min_sd": self.min_sd,
            "threshold": self.threshold,
            "refit": self.refit,
        }
