"""The simulated span and its messages: where it starts, every sensor's messages merged in time
order, and the ground-truth labels of the injected incidents."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from twinwatch.app.simulator.common import _ENC, _US, Message, _micros
from twinwatch.app.simulator.incidents import INCIDENT_KINDS, LEGIT_KINDS, _Inc, _plan_incidents
from twinwatch.app.simulator.sensors import _SensorSim, _World
from twinwatch.schema import utc


def _plan(config, start: datetime) -> tuple[_World, list[_Inc], dict[str, list[_Inc]]]:
    incs, by_path = _plan_incidents(config, start)
    return _World(config), incs, by_path


def sim_start(config, now: datetime) -> datetime:
    """Start of the simulated span: the latest local midnight with ``start + duration_h <= now``
    (in ``config.city.timezone``), returned in UTC."""
    latest = utc(now) - timedelta(hours=config.simulation.duration_h)
    tz = ZoneInfo(config.city.timezone)
    day = latest.astimezone(tz).date()
    while True:
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
        if midnight <= latest:
            return midnight
        day -= timedelta(days=1)


def generate(config, start: datetime, *, duration_h: float | None = None) -> Iterator[Message]:
    """Every sensor's messages over ``[start, start + duration_h)``, in time order (streaming)."""
    world, _, by_path = _plan(config, start)
    start_us = _micros(start)
    span_h = config.simulation.duration_h if duration_h is None else duration_h
    end_us = start_us + int(round(span_h * 3600 * _US))
    sims: list[_SensorSim] = []
    for site in config.sites:
        for asset in site.assets:
            for sensor in asset.sensors:
                path = f"{site.id}/{asset.id}/{sensor.id}"
                sims.append(
                    _SensorSim(
                        world,
                        site,
                        asset,
                        sensor,
                        len(sims),
                        by_path.get(path, []),
                        start_us,
                        end_us,
                    )
                )
    for _, _, msg in heapq.merge(*(s.messages() for s in sims)):
        yield msg


def _iso(t: datetime | float) -> str:
    if not isinstance(t, datetime):
        t = datetime.fromtimestamp(t, UTC)
    return _ENC.encode(utc(t)).decode()[1:-1]


def incident_labels(config, start: datetime) -> list[dict]:
    """One label per incident injected (the ground truth for scoring the detectors). Incidents
    scheduled at or after the end of the simulated span are not injected, so not labelled."""
    _, incs, _ = _plan(config, start)
    span_h = config.simulation.duration_h
    domains = {site.id: site.domain for site in config.sites}
    labels = []
    for inc, spec in zip(incs, config.simulation.incidents):
        if spec.at_h >= span_h:
            continue
        site, asset, _ = spec.targets[0].split("/")
        extra = f" ({', '.join(f'{k}={v}' for k, v in spec.params.items())})" if spec.params else ""
        labels.append(
            {
                "id": f"inc-{inc.index + 1:02d}",
                "kind": inc.kind,
                "domain": domains[site],
                "site": site,
                "asset": asset,
                "sensors": [t.split("/")[2] for t in spec.targets],
                "targets": list(spec.targets),
                "start": _iso(inc.t0),
                "end": _iso(inc.t1),
                "description": f"{INCIDENT_KINDS[inc.kind]}{extra} on {', '.join(spec.targets)}",
                "expect": list(spec.expect),
                "legit": inc.kind in LEGIT_KINDS,
            }
        )
    return labels
