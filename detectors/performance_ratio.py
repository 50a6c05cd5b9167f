"""PV performance ratio: the energy an array delivered over the energy its irradiance promised.

IEC 61724-1:2021 defines the performance ratio ``PR = (sum P) / (sum P0 * G / G_stc)`` (P0 the
array's rated power, G the plane-of-array irradiance, G_stc = 1000 W/m2), optionally with the
module temperature corrected to 25 degC (``P0 * (1 + gamma (T_mod - 25))``, the
temperature-corrected PR of Dierauf et al., NREL/TP-5200-57991, 2013). It is the quantity a PV
operator knows: a healthy system holds a steady PR (0.75-0.9 in the field), a string lost out of
eight takes it down by 12 %, an inverter trip to 0. Because PR divides the weather out, clouds
that make the output ramp all day (the false alarms of a z-score on the power) leave it alone.

Low sun is left out (G below ``min_irradiance``, 100 W/m2: reflection and spectral losses and
the mismatch between pyranometer and array dominate there; IEC 61724 analyses filter it the same
way, usually at 100-200 W/m2; 100 keeps a winter day judged).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from twinwatch.detectors.base import check_finite, check_positive, clamp_score
from twinwatch.detectors.group import Explanation, Grouped, Role, check_counts, ew_weight

__all__ = ["PerformanceRatio"]

_CLIP = 2.5  # Huber's constant: the reference learns deviations of at most this many spreads


class PerformanceRatio(Grouped):
    """Rolling performance ratio against its own reference.

    Vector: ``power`` (kW), ``irradiance`` (W/m2), optional ``module_temp`` (degC). Ticks with
    irradiance >= ``min_irradiance`` are *daylight ticks*; the current PR is the ratio of
    exponentially weighted sums of delivered and promised power over ``window_s`` of daylight
    (energy-weighted, as IEC 61724 aggregates). The reference is the EW mean and spread of that
    PR over ``memory_s`` of daylight, learned only while the detector does not flag, the mean
    with a weight ``(1 - score / threshold)**2`` (gated: a slow loss is not learned on its way
    down).

    score = (reference - current) / max(spread, ``min_drop`` x reference): in units of the PR's
    own day-to-day scatter, floored so a perfectly steady simulator does not alarm on a 1 %
    dip. One-sided (``direction="low"``, underperformance) by default; ``"both"`` also flags
    a PR that rises (a soiled or failing pyranometer reads low). Held (not re-scored) at night.

    Until the reference has learned ``warmup_s`` of daylight, only the physical floor applies:
    no working array delivers under ``min_pr`` of what its irradiance promises, so a PR below
    it (an inverter trip, a string of fuses blown) scores at least the threshold once the window
    holds a quarter of its span; otherwise 0.0.

    >>> det = PerformanceRatio({"power": 1, "irradiance": 1}, capacity_kw=100, warmup_s=3600)
    >>> for t in range(0, 8 * 3600, 60):
    ...     g = 800.0
    ...     score = det.update(float(t), [0.9 * 100 * g / 1000, g])
    >>> score
    0.0
    >>> for t in range(8 * 3600, 10 * 3600, 60):  # one string of eight lost: -12 %
    ...     score = det.update(float(t), [0.9 * 0.88 * 100 * 800 / 1000, 800.0])
    >>> score >= det.threshold, round(det.explain().observed, 3)
    (True, 0.807)
    """

    name: ClassVar[str] = "performance_ratio"
    kind: ClassVar[str] = "underperformance"  # type: ignore[misc]
    ROLES: ClassVar[tuple[Role, ...]] = (
        Role("power", 1, 1, "AC or DC power of the array or inverter (kW)"),
        Role("irradiance", 1, 1, "plane-of-array irradiance (W/m2)"),
        Role("module_temp", 0, 1, "module temperature (degC), for the temperature-corrected PR"),
    )

    def __init__(
        self,
        counts: dict,
        capacity_kw: float,
        gamma: float = -0.004,
        min_irradiance: float = 100.0,
        window_s: float = 3600.0,
        memory_s: float = 14 * 86400.0,
        warmup_s: float = 3600.0,
        min_drop: float = 0.02,
        min_pr: float = 0.3,
        direction: str = "low",
        threshold: float = 4.0,
        learn: str | Mapping[str, Any] | None = None,
    ) -> None:
        self.counts = check_counts(self.ROLES, counts)
        self.capacity_kw = check_positive("capacity_kw", capacity_kw)
        self.gamma = check_finite("gamma", gamma)
        self.min_irradiance = check_positive("min_irradiance", min_irradiance)
        self.window_s = check_positive("window_s", window_s)
        self.memory_s = check_positive("memory_s", memory_s)
        self.warmup_s = check_finite("warmup_s", warmup_s)
        self.min_drop = check_positive("min_drop", min_drop)
        self.min_pr = check_positive("min_pr", min_pr)
        if direction not in ("low", "both"):
            raise ValueError(f"direction must be 'low' or 'both', got {direction!r}")
        self.direction = direction
        self.threshold = check_positive("threshold", threshold)
        self._temp = self.counts["module_temp"] == 1
        self._t = 0.0  # last daylight tick
        self._day_s = 0.0  # daylight seen
        self._ref_s = 0.0  # daylight learned into the reference
        self._n = 0  # daylight ticks
        self._p = 0.0  # EW delivered power (window)
        self._e = 0.0  # EW promised power (window)
        self._nref = 0
        self._ref = 0.0  # EW mean PR (reference)
        self._var = 0.0  # EW variance of the PR around the reference
        self._score = 0.0
        self._pr = 0.0
        self._pending: tuple = ()  # a daylight tick scored, for learn_one
        self._init_learning(learn)

    def score_one(self, t: float, x: np.ndarray) -> float:
        power, g = float(x[0]), float(x[1])
        temp = float(x[2]) if self._temp else 25.0
        if g < self.min_irradiance:
            return self._score  # night and low sun: the verdict of the day so far holds
        promised = self.capacity_kw * g / 1000.0 * (1.0 + self.gamma * (temp - 25.0))
        dt = t - self._t if self._n else 0.0
        if promised <= 0.0 or dt < 0:
            return self._score
        dt = min(dt, 600.0)  # the first tick of the day continues yesterday's window
        self._n += 1
        self._t = t
        self._day_s += dt
        w = ew_weight(dt, self.window_s, self._n)
        self._p += w * (power - self._p)
        self._e += w * (promised - self._e)
        pr = self._p / self._e if self._e > 0 else 0.0
        self._pr = pr if math.isfinite(pr) else 0.0
        warm = self._ref_s >= self.warmup_s  # the reference has learned warmup_s of daylight
        score = 0.0
        if warm:
            scale = max(math.sqrt(self._var), self.min_drop * abs(self._ref), 1e-9)
            dev = (self._ref - self._pr) / scale
            score = dev if self.direction == "low" else abs(dev)
        if self._pr < self.min_pr and self._day_s >= self.window_s / 4:  # the physical floor
            score = max(score, self.threshold * self.min_pr / max(self._pr, 0.01 * self.min_pr))
        self._score = clamp_score(score)
        self._pending = (t, dt, warm)
        return self._score

    def learn_one(self, t: float, x: np.ndarray) -> None:
        """The reference learns the daylight ticks the learning policy lets through once the
        window is half full: its level with a weight ``(1 - score / threshold)**2`` and clipped
        (robust: a slow loss is not learned on its way down), its spread; a plain mean until it
        has learned ``warmup_s`` of daylight, then the memory's pace."""
        if not self._pending or self._pending[0] != t:
            return
        _, dt, warm = self._pending
        self._pending = ()
        if self._day_s < self.window_s / 2:
            return
        self._nref += 1
        self._ref_s += dt
        wr = ew_weight(dt, self.memory_s, 0 if warm else self._nref)
        d = self._pr - self._ref
        if warm:
            cap = _CLIP * max(math.sqrt(self._var), self.min_drop * abs(self._ref))
            d = min(max(d, -cap), cap)
        self._ref += wr * max(1.0 - self._score / self.threshold, 0.0) ** 2 * d
        self._var = (1.0 - wr) * (self._var + wr * d * d) if self._nref > 1 else 0.0

    def explain(self) -> Explanation:
        scale = max(math.sqrt(self._var), self.min_drop * abs(self._ref))
        return Explanation(
            quantity="performance ratio",
            observed=self._pr,
            expected=self._ref,
            low=self._ref - self.threshold * scale,
            high=self._ref + self.threshold * scale if self.direction == "both" else None,
            contributors=((0, 1.0),),  # the array under-delivers; the irradiance is the yardstick
            member=0,
            note=f"PR {self._pr:.3f} vs reference {self._ref:.3f}",
        )

    def _dump(self) -> tuple:
        return (
            self._t,
            self._day_s,
            self._ref_s,
            self._n,
            self._p,
            self._e,
            self._nref,
            self._ref,
            self._var,
            self._score,
            self._pr,
        )

    def _load(self, state: tuple) -> None:
        (
            self._t,
            self._day_s,
            self._ref_s,
            self._n,
            self._p,
            self._e,
            self._nref,
            self._ref,
            self._var,
            self._score,
            self._pr,
        ) = state
