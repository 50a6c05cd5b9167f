"""Chlorine dosing consistency: the free-chlorine residual against its expected daily cycle.

The residual at a plant outlet or in the network moves with the daily demand cycle (water age
and chlorine decay change with the flow), so a fixed baseline mistakes the cycle for drift (the
recurring false alarms of a CUSUM on the raw signal). What a dosing fault changes is the level
*relative to that cycle*: a failing dosing pump or a weakening hypochlorite stock lowers the
residual slowly, hour after hour, while the cycle goes on. So the reference is the residual's
profile over the day (per time-of-day slot and day type, working days apart from weekends and
holidays, as the demand differs), optionally corrected by the measured flow (flow-paced dosing:
residual against demand; e.g. the dose-flow consistency checks of AWWA M20, *Water Chlorination
and Chloramination Practices*, 2006), and the alarm is on the smoothed, standardised departure
from it (an EWMA chart, Roberts 1959; Montgomery, *Statistical Quality Control*, ch. 9).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from twinwatch.detectors.base import (
    check_int,
    check_nonnegative,
    check_positive,
    clamp_score,
)
from twinwatch.detectors.group import (
    Explanation,
    Grouped,
    LocalClock,
    Role,
    check_counts,
    ew_weight,
)

__all__ = ["Dosing"]

_CLIP = 2.5  # Huber's constant: learning sees deviations of at most this many spreads


class Dosing(Grouped):
    """Free chlorine against its daily profile (and the flow), EWMA of the standardised residual.

    Profile: per ``slot_s`` slot of the local day (``timezone``), for two day types (working
    days; weekends and ``holidays``), the EW mean over ``memory_days`` of that slot, learned
    with a weight ``(1 - score / threshold)**2`` (gated: a slow decline is not learned on its
    way down; the scatter learns from every unflagged tick). With ``flow``,
    the residual is also regressed on the flow's departure from *its* slot profile. The
    residual is divided by its EW standard deviation, smoothed with an EWMA (``smooth``) and
    divided by the EWMA's own spread on the reference (floored at the white-noise value), so a
    slow wander of the analyser is part of the normal scatter and a sustained decline is not.

    Phase I (Montgomery ch. 9: limits from a reference before monitoring): the scatter and the
    statistic's spread are learned from residuals against a profile of *earlier* days only, as a
    plain mean over ``warmup_s`` (a full daily cycle: the analyser's wander runs over hours to
    days, so a spread from the first hours is far too small), and nothing is judged before a
    slot has ``min_count`` earlier days and the warm-up is over.

    score = -z for ``direction="low"`` (default: under-dosing, the risk to public health), |z|
    for ``"both"``. 0.0 while a slot has fewer than ``min_count`` days.

    >>> det = Dosing({"chlorine": 1}, timezone="UTC", min_count=2)
    >>> def day(d, decline=0.0):
    ...     out = []
    ...     for m in range(1440):
    ...         demand = 1 + 0.4 * math.sin(2 * math.pi * (m / 1440 - 0.3))
    ...         cl = 0.9 - 0.1 * demand - decline * m / 1440 + 0.01 * ((m * 7919) % 11 - 5) / 5
    ...         out.append(det.update(d * 86400.0 + m * 60, [cl]))
    ...     return max(out)
    >>> max(day(d) for d in range(4, 11)) < det.threshold  # the daily cycle is not a drift
    True
    >>> day(11, decline=0.3) >= det.threshold  # 0.3 mg/L lost over the day
    True
    """

    name: ClassVar[str] = "dosing"
    kind: ClassVar[str] = "dosing"  # type: ignore[misc]
    ROLES: ClassVar[tuple[Role, ...]] = (
        Role("chlorine", 1, 1, "free chlorine residual (mg/L)"),
        Role("flow", 0, None, "the flow the dose is paced on, or a demand proxy (m3/h); summed"),
    )

    def __init__(
        self,
        counts: dict,
        timezone: str = "UTC",
        holidays: Sequence[str] = (),
        slot_s: float = 1800.0,
        memory_days: float = 14.0,
        min_count: int = 2,
        smooth: float = 0.05,
        min_scale: float = 0.005,
        warmup_s: float = 86400.0,
        direction: str = "low",
        threshold: float = 6.0,
        learn: str | Mapping[str, Any] | None = None,
    ) -> None:
        self.counts = check_counts(self.ROLES, counts)
        self.timezone = timezone
        self.holidays = tuple(str(h) for h in holidays)
        self._clock = LocalClock(timezone, self.holidays)
        self.slot_s = check_positive("slot_s", slot_s)
        if 86400.0 % self.slot_s:
            raise ValueError(f"slot_s must divide a day, got {slot_s!r}")
        self.memory_days = check_positive("memory_days", memory_days)
        self.min_count = check_int("min_count", min_count, 1)
        self.smooth = check_positive("smooth", smooth)
        if self.smooth > 1.0:
            raise ValueError(f"smooth must be in (0, 1], got {smooth!r}")
        self.min_scale = check_nonnegative("min_scale", min_scale)
        self.warmup_s = check_nonnegative("warmup_s", warmup_s)
        if direction not in ("low", "both"):
            raise ValueError(f"direction must be 'low' or 'both', got {direction!r}")
        self.direction = direction
        self.threshold = check_positive("threshold", threshold)
        self._flow = self.counts["flow"] > 0
        self._per_day = int(86400.0 // self.slot_s)
        slots = 2 * self._per_day
        self._days = [0] * slots
        self._ticks = [0] * slots
        self._seen = [-1] * slots
        self._cl = [0.0] * slots  # chlorine profile
        self._fl = [0.0] * slots  # flow profile
        self._t = 0.0
        self._n = 0  # ticks of scatter learned
        self._warm = 0.0  # seconds of scatter learned (Phase I until warmup_s)
        self._var = 0.0  # EW variance of the residual
        self._m = [0.0, 0.0]  # EW moments for the flow term: (df*df, df*resid)
        self._beta = 0.0
        self._u = 0.0  # EWMA of the standardised residual
        self._v = 0.0  # EW mean of u**2 on the reference
        self._last = (0.0, 0.0, 0.0)  # observed, expected, band
        self._floor_u = math.sqrt(self.smooth / (2.0 - self.smooth))
        self._pending: tuple = ()  # a tick scored, for learn_one
        self._init_learning(learn)

    def score_one(self, t: float, x: np.ndarray) -> float:
        cl = float(x[0])
        flow = float(x[1:].sum())
        local = self._clock.local(t)
        day = int(local // 86400.0)
        kind = 1 if self._clock.day_type(local) else 0
        slot = kind * self._per_day + int((local % 86400.0) // self.slot_s)
        dt = min(max(t - self._t, 0.0), self.slot_s) if self._t else 0.0
        self._t = t
        prev = self._days[slot] - (self._seen[slot] == day)  # earlier days in the profile
        df = flow - self._fl[slot]
        expected = self._cl[slot] + self._beta * df
        e = cl - expected
        score = 0.0
        if prev >= 1 and self._n:  # the chart runs on a profile from earlier days (Phase I on)
            sd = max(math.sqrt(self._var), self.min_scale, 1e-12)
            self._u += self.smooth * (e / sd - self._u)  # the statistic
            if prev >= self.min_count and self._warm >= self.warmup_s:  # Phase II: judged
                spread = max(math.sqrt(self._v), self._floor_u)
                z = self._u / spread
                score = -z if self.direction == "low" else abs(z)
                self._last = (cl, expected, self.threshold * sd * spread)
        score = clamp_score(score)
        self._pending = (t, slot, day, prev, cl, flow, df, e, dt, score)
        return score

    def learn_one(self, t: float, x: np.ndarray) -> None:
        """The ticks the learning policy lets through (by default below half the threshold).

        The profile (the level) is a plain mean over a slot's first ``min_count`` days, then
        moves at the memory's pace with a weight that shrinks to 0 at the threshold, clipped
        (robust: a slow decline is not learned on its way down). The scatter (the residual's
        spread, the flow term, the chart statistic's own spread) is learned from residuals
        against a profile of *earlier* days only, as a plain mean over the Phase I reference
        (``warmup_s``: a full daily cycle of the analyser's wander, before anything is judged),
        then at the memory's pace, clipped."""
        if not self._pending or self._pending[0] != t:
            return
        _, slot, day, prev, cl, flow, df, e, dt, score = self._pending
        self._pending = ()
        gate = max(1.0 - score / self.threshold, 0.0) ** 2
        if day != self._seen[slot]:
            self._seen[slot] = day
            self._days[slot] += 1
        self._ticks[slot] += 1
        young = self._ticks[slot] if prev < self.min_count else 0
        w = ew_weight(dt, self.memory_days * self.slot_s, young) * gate
        warm = self._warm >= self.warmup_s
        sd = math.sqrt(self._var)
        ec = min(max(e, -_CLIP * sd), _CLIP * sd) if warm else e  # Huber, once the spread is known
        self._cl[slot] += w * (ec if prev >= self.min_count else e)
        self._fl[slot] += w * (flow - self._fl[slot])
        if prev < 1:  # the scatter: around a profile of earlier days
            return
        self._n += 1
        self._warm += dt
        wg = ew_weight(dt, self.memory_days * 86400.0, 0 if warm else self._n)
        self._var += wg * (ec * ec - self._var)
        if self._flow:
            m = self._m
            m[0] += wg * (df * df - m[0])
            m[1] += wg * (df * (cl - self._cl[slot]) - m[1])
            self._beta = m[1] / m[0] if m[0] > 1e-12 else 0.0
        u2 = self._u * self._u
        if warm:
            u2 = min(u2, _CLIP * _CLIP * max(self._v, self._floor_u**2))
        self._v += wg * (u2 - self._v)

    def explain(self) -> Explanation:
        cl, expected, band = self._last
        return Explanation(
            unit_of=0,
            quantity="free chlorine",
            observed=cl,
            expected=expected,
            low=expected - band,
            high=expected + band if self.direction == "both" else None,
            contributors=((0, 1.0),),
            member=0,
            note="residual departs from its daily cycle",
        )

    def _dump(self) -> tuple:
        return (
            tuple(self._days),
            tuple(self._ticks),
            tuple(self._seen),
            tuple(self._cl),
            tuple(self._fl),
            self._t,
            self._n,
            self._warm,
            self._var,
            tuple(self._m),
            self._beta,
            self._u,
            self._v,
            self._last,
        )

    def _load(self, state: tuple) -> None:
        days, ticks, seen, cl, fl, self._t, self._n, self._warm, self._var, m, *rest = state
        self._beta, *rest = rest
        self._u, self._v, last = rest
        self._days, self._ticks, self._seen = list(days), list(ticks), list(seen)
        self._cl, self._fl, self._m, self._last = list(cl), list(fl), list(m), tuple(last)
