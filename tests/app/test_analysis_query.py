"""InfluxQL -> polars against real InfluxDB 1.6.7, filled by a short simulated run of the flow
(tests/analysis_run.py): what the helpers read equals what the flow wrote."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from twinwatch.app.analysis import helpers as h
from twinwatch.app.analysis.query import (
    TIME,
    BadTimeRange,
    Influx,
    check_range,
    parse_duration,
    parse_time,
)
from twinwatch.influx import InfluxV1Writer
from twinwatch.schema import Alert, AnomalyScore, DeadLetter, Reading, SecurityEvent

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def run(analysis_run):
    return analysis_run


@pytest.fixture(scope="module")
def db(run):
    with Influx(run.config.services.influxdb) as client:
        yield client


def _ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def written(run, kind):
    return [r for r in run.written if type(r) is kind]


def test_readings_equal_what_the_flow_wrote(run, db):
    calls = []
    df = h.readings(
        db,
        run.start,
        run.end,
        chunk=timedelta(hours=1),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(i, 6) for i in range(1, 7)]  # six 1-hour chunks, progress after each
    assert dict(df.schema) == {
        "time": TIME,
        "asset": pl.Categorical,
        "domain": pl.Categorical,
        "quantity": pl.Categorical,
        "sensor": pl.Categorical,
        "site": pl.Categorical,
        "unit": pl.Categorical,
        "value": pl.Float64,
    }
    got = sorted(
        (
            _ms(r["time"]),
            r["domain"],
            r["site"],
            r["asset"],
            r["sensor"],
            r["quantity"],
            r["unit"],
            r["value"],
        )
        for r in df.iter_rows(named=True)
    )
    want = sorted(
        (_ms(r.time), r.domain, r.site, r.asset, r.sensor, r.quantity, r.unit, r.value)
        for r in written(run, Reading)
    )
    assert len(want) > 30_000 and got == want  # counts, tags and exact values
    one = h.readings(db, run.start, run.end, chunk=timedelta(days=1))
    assert one.equals(df)  # chunking changes nothing


def test_filters_and_events(run, db):
    df = h.readings(db, run.start, run.end, site="sejong-wtp", sensor="turbidity")
    want = [r for r in written(run, Reading) if r.site == "sejong-wtp" and r.sensor == "turbidity"]
    assert df["value"].to_list() == [r.value for r in sorted(want, key=lambda r: r.time)]
    ev = h.events(db, run.start, run.end)
    want_ev = written(run, SecurityEvent)
    assert ev.height == len(want_ev) > 0
    assert Counter(ev["kind"].cast(pl.String)) == Counter(e.kind for e in want_ev)
    assert ev["dst_port"].dtype == pl.Int64
    assert Counter(ev["src_ip"].drop_nulls()) == Counter(e.src_ip for e in want_ev if e.src_ip)
    hist = h.history(db, run.start, run.end)
    assert hist.height == len(written(run, Reading)) + len(want_ev)
    assert hist["time"].is_sorted()


def test_rollup_in_influxql_matches_polars_on_raw_data(run, db):
    raw = h.readings(db, run.start, run.end)
    for every in ("1h", "15m"):
        server = h.rollup(db, run.start, run.end, every, chunk=timedelta(hours=2))
        local = h.rollup_frame(raw, every)
        assert server.height == local.height > 0
        assert server.select("time", *h.SERIES, "count").equals(
            local.select("time", *h.SERIES, "count")
        )
        for col in ("mean", "min", "max"):
            assert (server[col] - local[col]).abs().max() < 1e-9
    water = h.rollup(db, run.start, run.end, "1h", domain="water")
    assert set(water["domain"].cast(pl.String)) == {"water"}
    assert water["count"].sum() == sum(1 for r in written(run, Reading) if r.domain == "water")


def test_scores_next_to_readings(run, db):
    df = h.scores_with_readings(
        db, run.start, run.end, site="sejong-wtp", asset="filter-outlet", sensor="turbidity"
    )
    want = sorted(
        (
            s
            for s in written(run, AnomalyScore)
            if (s.site, s.sensor) == ("sejong-wtp", "turbidity")
        ),
        key=lambda s: s.time,
    )
    assert df.height == len(want)
    # turbidity's detectors are limits, stuck, gap (rain raises it within its limit, issue #12)
    assert df["limits"].to_list() == [s.scores["limits"] for s in want]
    assert df["stuck"].to_list() == [s.scores["stuck"] for s in want]
    assert df["hits"].to_list() == [len(s.hits) for s in want]
    assert df["value"].to_list() == [s.value for s in want]


def test_alert_history_has_every_fired_episode_with_durations(run, db):
    eps = h.alert_history(db, run.start, run.end)
    alerts = written(run, Alert)
    fired = {(a.fingerprint, _ms(a.starts_at)): a for a in alerts if a.status == "firing"}
    resolved = {(a.fingerprint, _ms(a.starts_at)): a for a in alerts if a.status == "resolved"}
    assert eps.height == len(fired) > 5
    for r in eps.iter_rows(named=True):
        key = (r["fingerprint"], _ms(r["started_at"]))
        a = fired[key]
        assert (str(r["rule"]), str(r["severity"]), _ms(r["fired_at"])) == (
            a.rule,
            a.severity,
            _ms(a.at),
        )
        end = resolved.get(key)
        assert r["time_to_resolve_s"] == (None if end is None else (_ms(end.at) - _ms(a.at)) / 1e3)
    # the two acknowledgements written like `twinwatch alerts ack`, matched to their episodes
    acked = {
        r["fingerprint"]: (r["time_to_ack_s"], r["acked_by"])
        for r in eps.filter(pl.col("acked_at").is_not_null()).iter_rows(named=True)
    }
    assert acked == {  # as acked, by the `user` field `twinwatch alerts ack` writes
        run.acks[0][0]: (4 * 60.0, "oncall"),
        run.acks[1][0]: (11 * 60.0, "oncall"),
    }
    table = h.mtta_mttr(eps)
    assert table["alerts"].sum() == eps.height and table["acked"].sum() == 2


def test_no_alert_ack_measurement_gives_null_acks(run, influxdb, influx_db):
    a = next(a for a in written(run, Alert) if a.status == "firing")
    line = (
        f"alert,asset={a.asset},domain={a.domain},rule={a.rule},sensor={a.sensor},"
        f'severity={a.severity},site={a.site},status=firing fingerprint="{a.fingerprint}",'
        f'value=1.5,unit="x",summary="s",starts_at_ms={_ms(a.starts_at)}i {_ms(a.at)}'
    )
    with InfluxV1Writer(influxdb.url, influx_db) as w:
        w.write_chunk([line])
    cfg = run.config.services.influxdb
    import msgspec

    with Influx(msgspec.structs.replace(cfg, database=influx_db)) as other:
        eps = h.alert_history(other, run.start, run.end)
        assert eps.height == 1 and eps["acked_at"].to_list() == [None]
        assert eps["time_to_resolve_s"].to_list() == [None]  # still firing
        assert eps["value"].to_list() == [1.5]  # a float written as 1.5, read as Float64
        empty = h.readings(other, run.start, run.end)
        assert empty.height == 0 and empty.schema["time"] == TIME


def test_noisy_sensors_and_dead_letters(run, db):
    noisy = h.noisy_sensors(db, run.start, run.end, top=3)
    per_sensor = Counter(
        (a.domain, a.site, a.asset, a.sensor) for a in written(run, Alert) if a.status == "firing"
    )
    top = sorted(per_sensor.values(), reverse=True)[:3]
    assert noisy["alerts"].to_list() == top
    # dead letters carry the wall-clock time they arrived at, not the simulated time
    now = datetime.now(UTC)
    dead = h.dead_letter_stats(db, now - timedelta(hours=1), now + timedelta(minutes=1))
    want = Counter((d.source, d.reason) for d in written(run, DeadLetter))
    assert {
        (str(r["source"]), str(r["reason"])): r["count"] for r in dead.iter_rows(named=True)
    } == want
    assert sum(want.values()) == 3


def test_times_and_ranges():
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert parse_time("-6h", now) == now - timedelta(hours=6)
    assert parse_time("now", now) == now
    assert parse_time("2026-11-20T09:00:00+09:00", now) == datetime(2026, 11, 20, tzinfo=UTC)
    assert parse_duration("15m") == timedelta(minutes=15)
    for bad in ("2026-11-20T00:00:00", "yesterday", "-6x"):
        with pytest.raises(BadTimeRange):
            parse_time(bad, now)
    with pytest.raises(BadTimeRange, match="not after start"):
        check_range(now, now - timedelta(hours=1))
