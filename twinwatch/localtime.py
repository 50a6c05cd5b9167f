"""Times shown to people: in the city's time zone with the zone marked, or in UTC on request.

    zone(config, utc=False) -> tzinfo     ZoneInfo(city.timezone), or UTC (``--utc``)
    show(t, tz) -> "2026-11-20 09:00:00 KST"
    span(a, b, tz) -> "2026-11-20 09:00 – 2026-11-21 09:00 KST"

Stored and exchanged times stay UTC (InfluxDB, Alertmanager, labels files); only what a person
reads is local. The zone is always marked (``KST``, ``UTC``; ``+0530`` where a zone has no
abbreviation), so a pasted line is never ambiguous.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from twinwatch.config import Config

__all__ = ["zone", "show", "span", "label"]


def zone(config: Config, utc: bool = False) -> tzinfo:
    return UTC if utc else ZoneInfo(config.city.timezone)


def label(t: datetime, tz: tzinfo) -> str:
    """The zone's name at ``t``: ``KST``, ``UTC``, or the offset when the zone has no name."""
    name = t.astimezone(tz).strftime("%Z")
    return name if name and name[0].isalpha() else t.astimezone(tz).strftime("%z")


def show(t: datetime, tz: tzinfo, *, seconds: bool = True) -> str:
    local = t.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else "")) + " " + label(t, tz)


def span(a: datetime, b: datetime, tz: tzinfo) -> str:
    return f"{show(a, tz, seconds=False).rsplit(' ', 1)[0]} – {show(b, tz, seconds=False)}"
