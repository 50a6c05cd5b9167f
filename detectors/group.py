"""The asset-group detector protocol: detectors that judge several sensors of one asset together.

A group detector sees one *aligned tick* of its asset at a time (``twinwatch.engine.align``):
``update(t, xs) -> score``, where ``xs`` holds one value per member sensor, laid out role by role
in the order of the class's ``ROLES`` (``nan`` = that member had no recent reading). A role is a
part the detector needs: the ``power`` and ``irradiance`` of a PV inverter, the ``sensors`` and
``drivers`` of a strain-gauge span. The config maps sensors to roles; how many sensors fill each
role is passed to the constructor as ``counts`` ({role: n}), checked against the role's arity.

After a hit, ``explain()`` says why: what was expected against what was observed, and which
members contributed how much (``Explanation``). The engine turns it into the alert's fields.

Learning policy (issue #12): a group detector learns its reference only from ticks it did not
flag (gated learning), with a long memory, so an incident is never learned as the new normal;
``rebaseline(member)`` re-learns one member's level after an operator's maintenance annotation
(a sensor replaced and re-zeroed). Otherwise the protocol is the per-series one (``base``):
scores are finite floats >= 0, ``score >= threshold`` is a hit, 0.0 while warming up,
``to_state()`` / ``from_state(params, state)`` give compact plain data, no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from twinwatch.detectors.base import check_int

__all__ = [
    "Role",
    "GroupDetector",
    "Explanation",
    "check_counts",
    "ew_weight",
    "LocalClock",
]


class Role(NamedTuple):
    """A part a group detector needs: ``name`` filled by ``least``..``most`` sensors (None: any)."""

    name: str
    least: int
    most: int | None
    doc: str = ""

    def arity(self) -> str:
        if self.most is None:
            return f"at least {self.least}"
        return f"exactly {self.least}" if self.least == self.most else f"{self.least}-{self.most}"


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a group detector scored what it scored, in the operator's quantities.

    ``observed`` and ``expected`` are values of ``quantity`` (e.g. the performance ratio, the
    night flow, a gauge's reading; ``{member}`` in it stands for the sensor's name), in the unit
    of member ``unit_of`` (None: dimensionless); ``low``/``high`` the band that counts as
    normal (either may be None); ``contributors`` (member index, share) with shares summing to
    ~1, largest first; ``member`` the index the finding is about (a faulty gauge), or None.
    """

    quantity: str
    observed: float
    expected: float
    low: float | None = None
    high: float | None = None
    contributors: tuple[tuple[int, float], ...] = ()
    member: int | None = None
    note: str = ""
    unit_of: int | None = None


@runtime_checkable
class GroupDetector(Protocol):
    name: ClassVar[str]
    ROLES: ClassVar[tuple[Role, ...]]
    kind: str  # what a hit means to the operator: "sensor_fault", "structural", "leak", ...
    threshold: float

    def update(self, t: float, xs: Sequence[float]) -> float: ...

    def explain(self) -> Explanation: ...

    def rebaseline(self, member: int) -> None: ...

    def to_state(self) -> Any: ...

    @classmethod
    def from_state(cls, params: dict, state: Any) -> GroupDetector: ...

    def params(self) -> dict: ...


def check_counts(roles: tuple[Role, ...], counts: dict) -> dict[str, int]:
    """Validate ``counts`` ({role: number of sensors}) against the roles' arity; return it
    complete (absent optional roles as 0) in ROLES order."""
    if not isinstance(counts, dict):
        raise ValueError(f"counts must be a mapping of role -> number of sensors, got {counts!r}")
    known = {r.name for r in roles}
    unknown = set(counts) - known
    if unknown:
        raise ValueError(
            f"unknown role(s) {', '.join(sorted(map(str, unknown)))}; roles: {', '.join(known)}"
        )
    out = {}
    for r in roles:
        n = check_int(f"counts[{r.name}]", counts.get(r.name, 0), 0)
        if n < r.least or (r.most is not None and n > r.most):
            raise ValueError(f"role {r.name!r} takes {r.arity()} sensor(s), got {n}")
        out[r.name] = n
    return out


def ew_weight(dt: float, memory_s: float, count: int) -> float:
    """Weight of a new observation in an exponentially weighted average with time constant
    ``memory_s``, ``dt`` seconds after the previous one; a plain running mean while ``count``
    (observations so far, this one included) is small, so early estimates are not biased to the
    first value. ``count`` 0: the time constant only.

    Reference mode: detectors pass their count while warming up (the fit of the fault-free
    start) and 0 afterwards, so the reference then moves at its memory's pace only and an
    incident below the threshold is not learned faster just because the detector is young.
    """
    w = -math.expm1(-dt / memory_s) if dt > 0 else 0.0
    return max(w, 1.0 / count) if count > 0 else w


class LocalClock:
    """Local wall-clock time of epoch seconds in an IANA time zone (DST-safe), with the offset
    cached per hour; and a holiday calendar of local dates (``YYYY-MM-DD``)."""

    __slots__ = ("tz", "holidays", "_hour", "_offset")

    def __init__(self, timezone: str, holidays: Sequence[str] = ()):
        try:
            self.tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"unknown time zone {timezone!r}") from None
        days = []
        for d in holidays:
            try:
                days.append(datetime.strptime(str(d), "%Y-%m-%d").date().toordinal())
            except ValueError:
                raise ValueError(f"holiday {d!r} is not a YYYY-MM-DD date") from None
        self.holidays = frozenset(days)
        self._hour = math.nan
        self._offset = 0.0

    def local(self, t: float) -> float:
        """``t`` shifted to local wall-clock seconds (so ``local % 86400`` is the time of day)."""
        hour = t // 3600
        if hour != self._hour:
            self._hour = hour
            off = datetime.fromtimestamp(hour * 3600, UTC).astimezone(self.tz).utcoffset()
            self._offset = off.total_seconds() if off is not None else 0.0
        return t + self._offset

    def day_type(self, local: float) -> int:
        """0 workday, 1 Saturday, 2 Sunday or holiday (the day types of building schedules)."""
        day = int(local // 86400)
        if day + 719163 in self.holidays:  # 719163 = date(1970, 1, 1).toordinal()
            return 2
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        return 2 if weekday == 6 else 1 if weekday == 5 else 0
