"""Building load against its time-of-week and temperature baseline.

A building's load follows its schedule: HVAC and lighting switch on around 08:00 and off around
19:00 on working days, less on Saturdays, little on Sundays and holidays. The practitioners'
baseline is the "time-of-week and temperature" model (Mathieu, Price, Kiliccote & Piette 2011,
"Quantifying Changes in Building Electricity Use, With Application to Demand Response", IEEE
Trans. Smart Grid 2(3); LBNL's TOWT, used in ASHRAE Guideline 14 M&V): one mean per time-of-week
slot plus a piecewise-linear term in the outdoor temperature. A step at 08:00 is then
*expected* (the 08:00 slot of every working day has it), so it never alerts; a load that stays
on through the night, or a chiller left running over a weekend, does.

Day types rather than 7 separate days: the working days share one profile (so a new
installation has a baseline after two working days, not two weeks), and holidays from the
city calendar use the Sunday profile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from twinwatch.detectors.base import (
    check_finite,
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

__all__ = ["Schedule"]

_DAY_TYPES = ("working day", "Saturday", "Sunday/holiday")


class Schedule(Grouped):
    """Load against its day-type x time-of-day slot baseline, corrected for outdoor temperature.

    Slots: ``slot_s`` long (15 min), per day type (working day, Saturday, Sunday/holiday in
    ``timezone`` with ``holidays``). Per slot, the EW mean and variance of the load minus the
    temperature term, over ``memory_days`` of that slot (gated: flagged ticks are not learned).
    Temperature term (with ``outdoor_temp``): ``h x max(balance_c - T, 0) + c x max(T -
    balance_c, 0)`` (heating and cooling degrees), h and c fitted by EW least squares on the slot
    residuals.

    score = deviation / max(slot sd, ``min_rel`` x slot mean, ``min_abs``), of the EWMA
    (``smooth``) of the deviation, so one noisy minute does not alert; ``direction="high"``
    (default) flags only excess load, since a quiet day the calendar did not know (a bridge day,
    an unplanned closure) is no incident while waste is; ``"both"`` also flags a deficit. 0.0
    while the slot has fewer than ``min_count`` days of history.

    >>> det = Schedule({"load": 1}, timezone="UTC", min_count=2)
    >>> def day(d, night_extra=0.0):
    ...     out = []
    ...     for m in range(0, 1440, 5):
    ...         h = m / 60
    ...         on = 8 <= h < 19 and (d + 3) % 7 < 5
    ...         load = 200 + 400 * on + (night_extra if h < 6 else 0) + (m % 3)
    ...         out.append(det.update(d * 86400.0 + m * 60, [load]))
    ...     return max(out)
    >>> max(day(d) for d in range(4, 18)) < det.threshold  # two weeks with their 08:00 steps
    True
    >>> day(18, night_extra=150.0) >= det.threshold  # chillers left on overnight
    True
    """

    name: ClassVar[str] = "schedule"
    kind: ClassVar[str] = "consumption"  # type: ignore[misc]
    ROLES: ClassVar[tuple[Role, ...]] = (
        Role("load", 1, None, "the building's active power (kW); several meters are summed"),
        Role("outdoor_temp", 0, 1, "outdoor air temperature (degC)"),
    )

    def __init__(
        self,
        counts: dict,
        timezone: str = "UTC",
        holidays: Sequence[str] = (),
        slot_s: float = 900.0,
        memory_days: float = 28.0,
        min_count: int = 2,
        balance_c: float = 18.0,
        smooth: float = 0.2,
        min_rel: float = 0.05,
        min_abs: float = 0.0,
        direction: str = "high",
        threshold: float = 5.0,
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
        self.balance_c = check_finite("balance_c", balance_c)
        self.smooth = check_positive("smooth", smooth)
        if self.smooth > 1.0:
            raise ValueError(f"smooth must be in (0, 1], got {smooth!r}")
        self.min_rel = check_nonnegative("min_rel", min_rel)
        self.min_abs = check_nonnegative("min_abs", min_abs)
        if direction not in ("high", "both"):
            raise ValueError(f"direction must be 'high' or 'both', got {direction!r}")
        self.direction = direction
        self.threshold = check_positive("threshold", threshold)
        self._meters = self.counts["load"]
        self._temp = self.counts["outdoor_temp"] == 1
        per_day = int(86400.0 // self.slot_s)
        self._slots = 3 * per_day
        self._per_day = per_day
        # per slot: (days seen, last day seen, mean, variance)
        self._days = [0] * self._slots
        self._ticks = [0] * self._slots
        self._t = 0.0
        self._seen = [-1] * self._slots
        self._mean = [0.0] * self._slots
        self._var = [0.0] * self._slots
        self._coef = [0.0, 0.0]  # heating, cooling (kW per degree)
        self._xtx = [0.0, 0.0, 0.0]  # EW moments of (hdd, cdd): hh, hc, cc
        self._xty = [0.0, 0.0]
        self._nt = 0
        self._dev = 0.0  # EWMA of the deviation
        self._last = (0.0, 0.0, 0.0, -1)  # observed, expected, scale, slot
        self._pending: tuple = ()  # a tick scored, for learn_one
        self._init_learning(learn)

    def _slot(self, t: float) -> tuple[int, int]:
        local = self._clock.local(t)
        kind = self._clock.day_type(local)
        return kind * self._per_day + int((local % 86400.0) // self.slot_s), int(local // 86400.0)

    def score_one(self, t: float, x: np.ndarray) -> float:
        load = float(x[: self._meters].sum())
        hdd = cdd = 0.0
        if self._temp:
            temp = float(x[self._meters])
            hdd, cdd = max(self.balance_c - temp, 0.0), max(temp - self.balance_c, 0.0)
        slot, day = self._slot(t)
        weather = self._coef[0] * hdd + self._coef[1] * cdd
        y = load - weather  # the schedule part of the load
        n, mean = self._days[slot], self._mean[slot]
        score = 0.0
        if n >= self.min_count:
            scale = max(math.sqrt(self._var[slot]), self.min_rel * abs(mean), self.min_abs, 1e-9)
            self._dev += self.smooth * ((y - mean) / scale - self._dev)  # the statistic
            score = self._dev if self.direction == "high" else abs(self._dev)
            self._last = (load, mean + weather, scale, slot)
        else:
            self._dev = 0.0
        dt = min(max(t - self._t, 0.0), self.slot_s) if self._ticks[slot] else 0.0
        self._t = t
        self._pending = (t, slot, day, y, load, hdd, cdd, dt)
        return clamp_score(score)

    def learn_one(self, t: float, x: np.ndarray) -> None:
        """The ticks the learning policy lets through (by default below half the threshold;
        a slot still warming up scores 0 and is always learned). A slot's day weighs
        1/``memory_days`` once the slot has ``min_count`` days (a plain mean before: the
        fault-free start)."""
        if not self._pending or self._pending[0] != t:
            return
        _, slot, day, y, load, hdd, cdd, dt = self._pending
        self._pending = ()
        n, mean = self._days[slot], self._mean[slot]
        if day != self._seen[slot]:
            self._seen[slot] = day
            self._days[slot] = n + 1
        self._ticks[slot] += 1
        # a slot gets slot_s of data a day: memory_days of it is memory_days x slot_s
        young = self._ticks[slot] if n < self.min_count else 0
        w = ew_weight(dt, self.memory_days * self.slot_s, young)
        d = y - mean
        self._mean[slot] = mean + w * d
        self._var[slot] = (1.0 - w) * (self._var[slot] + w * d * d)
        if self._temp and n >= self.min_count:
            self._learn_weather(hdd, cdd, load - mean)

    def _learn_weather(self, hdd: float, cdd: float, resid: float) -> None:
        self._nt += 1
        w = ew_weight(1.0, self.memory_days * 1440.0, self._nt)
        m = self._xtx
        m[0] += w * (hdd * hdd - m[0])
        m[1] += w * (hdd * cdd - m[1])
        m[2] += w * (cdd * cdd - m[2])
        self._xty[0] += w * (hdd * resid - self._xty[0])
        self._xty[1] += w * (cdd * resid - self._xty[1])
        if self._nt % 60 == 0:  # hourly: solve the 2x2 normal equations (ridge for one-sided)
            a, b, c = m[0] + 1e-6, m[1], m[2] + 1e-6
            det = a * c - b * b
            if det > 1e-12:
                self._coef = [
                    (c * self._xty[0] - b * self._xty[1]) / det,
                    (a * self._xty[1] - b * self._xty[0]) / det,
                ]

    def explain(self) -> Explanation:
        load, expected, scale, slot = self._last
        kind = _DAY_TYPES[slot // self._per_day] if slot >= 0 else ""
        minute = int((slot % self._per_day) * self.slot_s // 60) if slot >= 0 else 0
        return Explanation(
            unit_of=0,
            quantity="load",
            observed=load,
            expected=expected,
            low=expected - self.threshold * scale if self.direction == "both" else None,
            high=expected + self.threshold * scale,
            contributors=((0, 1.0),),
            member=0,
            note=f"{kind} {minute // 60:02d}:{minute % 60:02d} slot" if kind else "",
        )

    def _dump(self) -> tuple:
        return (
            tuple(self._days),
            tuple(self._ticks),
            self._t,
            tuple(self._seen),
            tuple(self._mean),
            tuple(self._var),
            tuple(self._coef),
            tuple(self._xtx),
            tuple(self._xty),
            self._nt,
            self._dev,
            self._last,
        )

    def _load(self, state: tuple) -> None:
        days, ticks, self._t, seen, mean, var, coef, xtx, xty, self._nt, self._dev, last = state
        self._days, self._ticks, self._seen = list(days), list(ticks), list(seen)
        self._mean, self._var, self._coef = list(mean), list(var), list(coef)
        self._xtx, self._xty, self._last = list(xtx), list(xty), tuple(last)
