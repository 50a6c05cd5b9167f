"""Vector detectors with roles: the detectors of asset groups (issue #12).

An asset group (``asset_groups`` in the config) feeds a *vector* detector (``base.Vector``) one
aligned tick of its asset at a time (``twinwatch.engine.align``): ``update(t, xs) -> score``. A
plain vector detector (PCA T2/Q, isolation forest) takes ``n`` interchangeable sensors. The
domain detectors here also say what each value *is*: they declare ``ROLES`` (the ``power`` and
``irradiance`` of a PV inverter, the ``sensors`` and ``drivers`` of a strain-gauge span), the
config maps sensors to roles, and how many sensors fill each role is passed to the constructor
as ``counts`` ({role: n}, checked against each role's arity); ``xs`` is laid out role by role in
``ROLES`` order. ``roles_of(cls)`` gives any vector class's roles (one ``sensors`` role for the
plain ones).

On top of the vector protocol a :class:`Grouped` detector has

* ``kind``: what a hit means to the operator (``sensor_fault``, ``structural``, ``leak``, ...);
* ``explain()``: why it scored what it scored, in the operator's quantities: expected against
  observed, the normal band, which members contributed how much (:class:`Explanation`); the
  engine puts it on the alert;
* ``rebaseline(member)``: re-learn after an operator's maintenance annotation (a sensor replaced
  and re-zeroed), by default by starting afresh.

Learning: the protocol's learning policy (``learn``, :mod:`twinwatch.detectors.policy`) decides
which ticks are learned, as for every learner; a group detector only changes its defaults
(:data:`LEARN`): ``gate: 0.5`` (a tick is learned only while it scores below half the threshold,
so a slow incident, a drifting gauge or a chlorine decline, is not absorbed on its way to the
threshold), ``drift_s`` one week (an asset fault stays flagged until it is repaired, annotated
or accepted with ``accept(t)``; only a change that lasts a week becomes normal by itself, and is
then re-learned from its last tick on) and ``hold: 1``. A
user's ``learn`` setting overrides these key by key. Inside a learned tick the estimators are
robust: their warm-up is a plain mean over the fault-free start, then they move at their
memory's pace (``ew_weight``), and what they learn is clipped at a few spreads (Huber).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from twinwatch.detectors.base import Vector, check_int

__all__ = [
    "LEARN",
    "Role",
    "Grouped",
    "Explanation",
    "check_counts",
    "ew_weight",
    "roles_of",
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


#: The learning policy's defaults for the detectors with roles (a user's ``learn`` overrides them
#: key by key): learn only clearly normal ticks, accept a change by itself only after a week, and
#: hold one tick of an episode (their baselines are days of history: an accepted change is
#: re-learned from the next ticks, so holding more would only grow the snapshot).
LEARN: dict[str, Any] = {"gate": 0.5, "drift_s": 7 * 86400.0, "hold": 1}

#: The role of a plain vector detector's interchangeable sensors.
SENSORS = Role("sensors", 1, None, "sensors judged together")


def roles_of(cls: type) -> tuple[Role, ...]:
    """The roles of a vector detector class (``ROLES``, or one ``sensors`` role)."""
    return getattr(cls, "ROLES", (SENSORS,))


class Grouped(Vector):
    """Base of the vector detectors with roles (see the module docstring).

    Subclasses declare ``ROLES`` and ``kind``, take ``counts`` as their first constructor
    argument (stored as validated by :func:`check_counts`) and ``learn`` as their last (then
    call ``self._init_learning(learn)``), and implement ``score_one``, ``learn_one``,
    ``_dump``/``_load`` and ``explain``. ``learn_one`` is called only for the ticks the policy
    lets through: whatever ``score_one`` leaves for it must not outlive the next ``score_one``.
    """

    ROLES: ClassVar[tuple[Role, ...]]
    kind: str
    counts: dict[str, int]

    @property
    def n(self) -> int:  # type: ignore[override]
        return sum(self.counts.values())

    def _init_learning(self, learn: str | Mapping[str, Any] | None) -> None:
        """The protocol's learning policy with the group defaults (:data:`LEARN`) under the
        user's setting; ``params()`` keeps the user's setting as given."""
        spec = {"mode": learn} if isinstance(learn, str) else dict(learn or {})
        super()._init_learning({**LEARN, **spec})
        self.learn = learn

    def explain(self) -> Explanation:
        raise NotImplementedError

    def rebaseline(self, member: int) -> None:
        """A member was replaced or re-zeroed: learn the reference again, from the next tick."""
        fresh = type(self)(**self.params())
        self.__dict__.update(fresh.__dict__)


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

    Warm-up: detectors pass their count while warming up (the fit of the fault-free start) and
    0 afterwards, so the reference then moves at its memory's pace only and an
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
