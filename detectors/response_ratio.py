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
(a debonded gauge loses its response) is a sensor problem, which ``consistency`` reports. So the
score is the *smallest* departure of a ratio from 1, and 0 unless all sensors moved the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from twinwatch.detectors.base import check_finite, check_positive, clamp_score
from twinwatch.detectors.group import Explanation, Grouped, Role, check_counts, ew_weight

__all__ = ["ResponseRatio"]

_CLIP = 2.5  # Huber's constant for the spread of the ratio


class ResponseRatio(Grouped):
    """Per response sensor, slope on ``load`` over the recent ``window_s`` against the
    reference over ``memory_s``; both exponentially weighted least squares on ``block_s`` means.

    Block means, not raw ticks: a load proxy read with noise (an accelerometer's RMS as a
    traffic measure) biases a regression slope towards 0 by a factor that depends on how much
    the load varied (errors in variables), so a quiet Sunday would look like a change of
    stiffness; averaging a block removes most of that noise. The ``covariates`` (temperature)
    are regressed out with their *reference* coefficients, so the recent window estimates only
    the load's slope and is not confused by a day on which traffic and temperature rise
    together.

    ratio_i = slope_recent_i / slope_ref_i; m = the ratio - 1 closest to 0 when every ratio lies
    on the same side of 1, else 0. score = |m| / max(sd, ``min_sd``), sd the EW spread of m on the
    reference; judged at the end of each block and held in between. The reference learns only
    blocks that are not flagged, its slopes with a weight shrinking to 0 near the threshold and
    its spread from clipped values (gated, robust: a slow change is not learned on its way).
    0.0 until ``warmup_s``; ticks with a missing member are left out of the block.

    >>> rng = np.random.default_rng(1)
    >>> det = ResponseRatio({"response": 2, "load": 1}, window_s=6 * 3600, warmup_s=86400)
    >>> def run(t0, hours, gain):
    ...     out = []
    ...     for t in range(t0, t0 + hours * 3600, 60):
    ...         load = max(math.sin(2 * math.pi * t / 86400), 0) + 0.1 * rng.random()
    ...         xs = [100 + 30 * gain * load, 50 + 20 * gain * load] + rng.normal(0, 1, 2)
    ...         out.append(det.update(float(t), [*xs, load + rng.normal(0, 0.05)]))
    ...     return max(out)
    >>> run(0, 72, 1.0) < det.threshold
    True
    >>> run(72 * 3600, 24, 1.3) >= det.threshold  # both gauges respond 30 % more per unit load
    True
    >>> round(det.explain().observed / det.explain().expected, 1)
    1.3
    """

    name: ClassVar[str] = "response_ratio"
    kind: ClassVar[str] = "structural"  # type: ignore[misc]
    ROLES: ClassVar[tuple[Role, ...]] = (
        Role("response", 1, None, "strain gauges, displacement or acceleration of the structure"),
        Role("load", 1, 1, "the load whose effect is tracked: traffic, wind, or temperature"),
        Role("covariates", 0, None, "other drivers to regress out (temperature)"),
    )

    def __init__(
        self,
        counts: dict,
        block_s: float = 900.0,
        window_s: float = 86400.0,
        memory_s: float = 14 * 86400.0,
        warmup_s: float = 2 * 86400.0,
        min_sd: float = 0.02,
        threshold: float = 5.0,
        learn: str | Mapping[str, Any] | None = None,
    ) -> None:
        self.counts = check_counts(self.ROLES, counts)
        self.block_s = check_positive("block_s", block_s)
        self.window_s = check_positive("window_s", window_s)
        self.memory_s = check_positive("memory_s", memory_s)
        if self.memory_s <= self.window_s:
            raise ValueError("memory_s must be longer than window_s")
        self.warmup_s = check_finite("warmup_s", warmup_s)
        self.min_sd = check_positive("min_sd", min_sd)
        self.threshold = check_positive("threshold", threshold)
        self._r = self.counts["response"]
        self._p = 2 + self.counts["covariates"]  # intercept, load, covariates
        r, p = self._r, self._p
        self._block = -1.0  # the current block's index
        self._sum = np.zeros(r + p - 1)  # its sums and tick count
        self._cnt = 0
        self._blocks = 0
        self._nref = 0
        self._nv = 0
        self._t0 = 0.0
        self._t = 0.0  # end of the last block
        self._a_rec = np.zeros((p, p))
        self._b_rec = np.zeros((p, r))
        self._a_ref = np.zeros((p, p))
        self._b_ref = np.zeros((p, r))
        self._rec = np.zeros(r)  # slopes, recent and reference (0: not estimated yet)
        self._ref = np.zeros(r)
        self._var = 0.0  # EW variance of m on the reference
        self._m = 0.0
        self._score = 0.0
        self._pending: tuple = ()  # a block closed by score_one, for learn_one
        self._init_learning(learn)

    @staticmethod
    def _coef(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        ridge = 1e-9 * np.trace(a) + 1e-12
        with np.errstate(all="ignore"):
            try:
                out = np.linalg.solve(a + ridge * np.eye(len(a)), b)
            except np.linalg.LinAlgError:
                return None
        return out if np.isfinite(out).all() else None

    def _slopes(self) -> tuple[np.ndarray, np.ndarray] | None:
        ref = self._coef(self._a_ref, self._b_ref)  # (p, r): intercept, load, covariates
        if ref is None:
            return None
        a, b = self._a_rec, self._b_rec
        # recent: regress y - covariates x reference coefficients on (1, load) only
        rec = self._coef(a[:2, :2], b[:2] - a[:2, 2:] @ ref[2:])
        return None if rec is None else (rec[1], ref[1])

    def score_one(self, t: float, x: np.ndarray) -> float:
        self._pending = ()  # a block not learned with its own tick is not learned later
        if not self._blocks and not self._cnt:  # the first tick
            self._t0 = t
        block = t // self.block_s
        if block != self._block and self._cnt:
            self._close_block((self._block + 1) * self.block_s)
        self._block = block
        self._sum += x
        self._cnt += 1
        return self._score

    def _close_block(self, t: float) -> None:
        """A block's means enter the recent fit; the ratio and the score are judged."""
        v = self._sum / self._cnt
        self._sum = np.zeros_like(self._sum)
        self._cnt = 0
        y = v[: self._r]
        phi = np.empty(self._p)
        phi[0] = 1.0
        phi[1:] = v[self._r :]
        dt = t - self._t if self._blocks else 0.0
        self._blocks += 1
        self._t = t
        outer, cross = np.outer(phi, phi), np.outer(phi, y)
        w = ew_weight(dt, self.window_s, self._blocks)
        self._a_rec += w * (outer - self._a_rec)
        self._b_rec += w * (cross - self._b_rec)
        age = t - self._t0
        m, judged = 0.0, False
        if self._nref > 2 * self._p and age >= self.window_s / 2:
            slopes = self._slopes()
            if slopes is not None:
                self._rec, self._ref = slopes
                with np.errstate(all="ignore"):
                    dev = self._rec / self._ref - 1.0
                if np.isfinite(dev).all():
                    judged = True
                    if (dev > 0).all() or (dev < 0).all():
                        m = float(dev[np.argmin(np.abs(dev))])  # the smallest: every one moved
        self._m = m
        sd = max(math.sqrt(self._var), self.min_sd)
        self._score = clamp_score(abs(m) / sd) if age >= self.warmup_s else 0.0
        self._pending = (dt, outer, cross, m, judged, age)

    def learn_one(self, t: float, x: np.ndarray) -> None:
        """The reference learns the closed blocks the learning policy lets through: its slopes
        with a weight shrinking to 0 at the threshold (robust), its spread, clipped; a plain
        mean over the fault-free start (``warmup_s``), then the memory's pace."""
        if not self._pending:
            return
        dt, outer, cross, m, judged, age = self._pending
        self._pending = ()
        score = self._score
        young = age < self.warmup_s
        self._nref += 1
        wr = ew_weight(dt, self.memory_s, self._nref if young else 0)
        wr *= max(1.0 - score / self.threshold, 0.0) ** 2
        self._a_ref += wr * (outer - self._a_ref)
        self._b_ref += wr * (cross - self._b_ref)
        if judged:  # the spread
            self._nv += 1
            sd = max(math.sqrt(self._var), self.min_sd)
            m2 = m * m if young else min(m * m, _CLIP * _CLIP * sd * sd)
            self._var += ew_weight(dt, self.memory_s, self._nv if young else 0) * (m2 - self._var)

    def explain(self) -> Explanation:
        rec, ref = self._rec, self._ref
        with np.errstate(all="ignore"):
            dev = np.abs(np.nan_to_num(rec / ref - 1.0))
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
            note=f"response per unit load x{1.0 + self._m:.2f} on all {self._r} sensors",
        )

    def _dump(self) -> tuple:
        return (
            self._block,
            tuple(self._sum.tolist()),
            self._cnt,
            self._blocks,
            self._nref,
            self._nv,
            self._t0,
            self._t,
            tuple(self._a_rec.ravel().tolist()),
            tuple(self._b_rec.ravel().tolist()),
            tuple(self._a_ref.ravel().tolist()),
            tuple(self._b_ref.ravel().tolist()),
            tuple(self._rec.tolist()),
            tuple(self._ref.tolist()),
            self._var,
            self._m,
            self._score,
        )

    def _load(self, state: tuple) -> None:
        self._block, sums, self._cnt, self._blocks, self._nref, self._nv, *rest = state
        self._t0, self._t, a_rec, b_rec, a_ref, b_ref, rec, ref, *last = rest
        self._var, self._m, self._score = last
        p, r = self._p, self._r
        self._sum = np.array(sums, dtype=float)
        self._a_rec = np.array(a_rec, dtype=float).reshape(p, p)
        self._b_rec = np.array(b_rec, dtype=float).reshape(p, r)
        self._a_ref = np.array(a_ref, dtype=float).reshape(p, p)
        self._b_ref = np.array(b_ref, dtype=float).reshape(p, r)
        self._rec, self._ref = np.array(rec, dtype=float), np.array(ref, dtype=float)
