"""1-minute and 1-hour rollups (mean/min/max/count) of readings, with Bytewax event-time windows.

    rollups(step_id, keyed, lateness) -> Stream[list[Rollup]]   (1m and 1h rollups, merged)
    fold_rollups / merge_rollups / finish                          plain functions, testable alone

Long-range Grafana panels read ``reading_1m`` / ``reading_1h`` instead of raw ``reading``: a day
is 1,440 points per series instead of 8,640 at 10 s, a year 8,760 hourly points. The rollups are
computed in the flow rather than by InfluxDB continuous queries or tasks, so they work the same on
InfluxDB 1.x, 2.x and 3.x (3.x has neither).

How it stays cheap: the flow moves *batches*, already keyed by shard for the detectors. Each
keyed batch is split by minute, so Bytewax's window operator pays its per-item cost per
shard-minute, not per reading; the fold is one dict update per reading. Each window's
accumulator maps a series to
``[sum, min, max, count, template]``. Minute rollups feed the hour windows (sums and counts
combine exactly, so the hourly mean is the mean of the readings, not a mean of means).

Windows are tumbling in event time (``EventClock``): a window closes once readings ``lateness``
past its end have arrived (plus wall time passing, when the stream is quiet), and every open
window closes at end of input. A reading older than the watermark is late: it still goes to the
raw ``reading`` measurement, but not into the already-written rollup. Choose ``lateness``
(``flow.rollup_lateness_s``) above the spread of arrival delays between sensors.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window

from twinwatch.schema import Reading, Rollup, RollupWindow

__all__ = ["rollups", "split_by_window", "fold_rollups", "merge_rollups", "finish"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000
_WINDOW_MS = {"1m": _MINUTE_MS, "1h": _HOUR_MS}

# accumulator: (window start ms, {(site, asset, sensor): [sum, min, max, count, template record]})
Acc = tuple[int, dict[tuple[str, str, str], list]]


def split_by_window(item: tuple[str, list], window_ms: int) -> list[tuple[str, tuple]]:
    """A keyed batch ``(key, records)`` -> ``(key, (window start ms, [records], latest ms))``
    per window; only readings and finer rollups are kept.

    ``latest`` is the item's event time for the window clock: the newest reading, or the last
    instant a finer rollup covers. Not the window start: every later item of the same window
    would then look older than the watermark and be dropped as late."""
    key, records = item
    groups: dict[int, list] = {}
    latest: dict[int, int] = {}
    for r in records:
        t = type(r)
        if t is Reading:
            ms = int(r.time.timestamp() * 1000)
        elif t is Rollup:
            ms = int(r.time.timestamp() * 1000) + _WINDOW_MS[r.window] - 1
        else:
            continue
        start = ms - ms % window_ms
        group = groups.get(start)
        if group is None:
            groups[start] = [r]
            latest[start] = ms
        else:
            group.append(r)
            if ms > latest[start]:
                latest[start] = ms
    return [(key, (start, group, latest[start])) for start, group in groups.items()]


def _build() -> Acc:
    return (0, {})


def fold_rollups(acc: Acc, item: tuple) -> Acc:
    """Add one (window start, readings or finer rollups, latest ms) item to a window's
    accumulator."""
    start, records = item[0], item[1]
    series = acc[1]
    for r in records:
        k = (r.site, r.asset, r.sensor)  # the domain follows from the site
        if type(r) is Reading:
            v = r.value
            s = series.get(k)
            if s is None:
                series[k] = [v, v, v, 1, r]
            else:
                s[0] += v
                if v < s[1]:
                    s[1] = v
                if v > s[2]:
                    s[2] = v
                s[3] += 1
        else:  # a finer Rollup
            s = series.get(k)
            if s is None:
                series[k] = [r.mean * r.count, r.min, r.max, r.count, r]
            else:
                s[0] += r.mean * r.count
                s[1] = min(s[1], r.min)
                s[2] = max(s[2], r.max)
                s[3] += r.count
    return (start, series)


def merge_rollups(a: Acc, b: Acc) -> Acc:
    """Merge two accumulators of the same window (Bytewax calls this for tumbling windows only
    if they overlap, which they never do; required by ``fold_window``)."""
    for key, s in b[1].items():
        t = a[1].get(key)
        if t is None:
            a[1][key] = s
        else:
            t[0] += s[0]
            t[1] = min(t[1], s[1])
            t[2] = max(t[2], s[2])
            t[3] += s[3]
    return (a[0] or b[0], a[1])


def finish(acc: Acc, window: RollupWindow) -> list[Rollup]:
    """A closed window's accumulator -> one Rollup per series."""
    start = _EPOCH + timedelta(milliseconds=acc[0])
    out = []
    for total, lo, hi, count, t in acc[1].values():
        out.append(
            Rollup(
                time=start,
                window=window,
                domain=t.domain,
                site=t.site,
                asset=t.asset,
                sensor=t.sensor,
                quantity=t.quantity,
                unit=t.unit,
                mean=total / count,
                min=lo,
                max=hi,
                count=count,
            )
        )
    return out


def _window(
    step_id: str, keyed: Stream, window: RollupWindow, window_ms: int, lateness: timedelta
) -> Stream:
    items = op.flat_map(f"{step_id}_split", keyed, lambda kv: split_by_window(kv, window_ms))
    clock: EventClock[tuple] = EventClock(
        lambda item: _EPOCH + timedelta(milliseconds=item[2]), wait_for_system_duration=lateness
    )
    windower = TumblingWindower(length=timedelta(milliseconds=window_ms), align_to=_EPOCH)
    out = fold_window(
        f"{step_id}_fold",
        items,
        clock,
        windower,
        _build,
        fold_rollups,
        merge_rollups,
        ordered=False,
    )
    return op.map(f"{step_id}_finish", out.down, lambda kv: (kv[0], finish(kv[1][1], window)))


def rollups(step_id: str, keyed: Stream, lateness: timedelta) -> Stream:
    """Keyed batches ``(shard, records)`` (the flow's detect input) -> batches of 1-minute and
    1-hour rollups of their readings."""
    minutes = _window(f"{step_id}_1m", keyed, "1m", _MINUTE_MS, lateness)
    hours = _window(f"{step_id}_1h", minutes, "1h", _HOUR_MS, lateness)
    return op.map(
        f"{step_id}_unkey", op.merge(f"{step_id}_merge", minutes, hours), lambda kv: kv[1]
    )
