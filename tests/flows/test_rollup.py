"""Rollups (twinwatch.flows.rollup), their line protocol, and retention (twinwatch.app.retention)
on InfluxDB 1.6.7."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from twinwatch.app.retention import apply_configured, apply_retention, statements
from twinwatch.config import InfluxService, Retention, load_config
from twinwatch.flows.dataflow import build_flow
from twinwatch.flows.rollup import finish, fold_rollups, merge_rollups, split_by_window
from twinwatch.influx import InfluxV1Writer
from twinwatch.lineprotocol import encode, encode_by_measurement
from twinwatch.schema import Reading, Rollup

T0 = datetime(2026, 11, 20, tzinfo=UTC)
TOPIC = "city/water/sejong-wtp/clearwell/chlorine"


def _reading(t: datetime, v: float, sensor: str = "chlorine") -> Reading:
    return Reading(
        time=t,
        domain="water",
        site="sejong-wtp",
        asset="clearwell",
        sensor=sensor,
        quantity="chlorine",
        unit="mg/L",
        value=v,
    )


def test_split_groups_by_window_and_ignores_other_records():
    rs = [_reading(T0 + timedelta(seconds=s), 1.0) for s in (0, 30, 59, 60)]
    items = split_by_window(("shard-3", [*rs, "not a reading"]), 60_000)
    ms = int(T0.timestamp() * 1000)
    assert sorted((key, start, len(group), latest) for key, (start, group, latest) in items) == [
        ("shard-3", ms, 3, ms + 59_000),
        ("shard-3", ms + 60_000, 1, ms + 60_000),
    ]


def test_fold_merge_finish_give_exact_statistics():
    start = int(T0.timestamp() * 1000)
    a = fold_rollups((0, {}), (start, [_reading(T0, 1.0), _reading(T0, 4.0)]))
    b = fold_rollups((0, {}), (start, [_reading(T0, -2.0)]))
    (r,) = finish(merge_rollups(a, b), "1m")
    assert (r.time, r.window, r.mean, r.min, r.max, r.count) == (T0, "1m", 1.0, -2.0, 4.0, 3)
    # hours from minutes: weighted by count, so the mean of readings, not a mean of means
    m2 = Rollup(
        time=T0 + timedelta(minutes=1),
        window="1m",
        domain="water",
        site="sejong-wtp",
        asset="clearwell",
        sensor="chlorine",
        quantity="chlorine",
        unit="mg/L",
        mean=10.0,
        min=10.0,
        max=10.0,
        count=1,
    )
    (h,) = finish(fold_rollups((0, {}), (start, [r, m2])), "1h")
    assert (h.mean, h.min, h.max, h.count) == (13 / 4, -2.0, 10.0, 4)


def test_rollup_line_protocol():
    r = Rollup(
        time=T0,
        window="1h",
        domain="water",
        site="sejong-wtp",
        asset="clearwell",
        sensor="chlorine",
        quantity="chlorine",
        unit="mg/L",
        mean=0.5,
        min=0.25,
        max=1.0,
        count=360,
    )
    line = (
        "reading_1h,asset=clearwell,domain=water,quantity=chlorine,sensor=chlorine,"
        "site=sejong-wtp,unit=mg/L mean=0.5,min=0.25,max=1.0,count=360i 1795132800000"
    )
    assert encode(r) == [line]
    assert encode_by_measurement([r]) == {"reading_1h": [line]}


def _run(config, payloads: list[list[tuple[str, bytes]]]) -> list:
    out: list = []
    run_main(
        build_flow(
            config,
            TestingSource(payloads),
            influx_sink=TestingSink(out),
            alert_sink=None,
            dead_letter_sink=TestingSink([]),
        )
    )
    return [r for b in out for r in b if type(r) is Rollup]


def _msg(t: datetime, v: float) -> tuple[str, bytes]:
    return TOPIC, msgspec.json.encode({"time": t, "value": v})


def test_flow_writes_minute_and_hour_rollups_and_skips_late_readings(tmp_path):
    config = load_config(
        environ={
            "TWINWATCH__SERVICES__ALERTMANAGER__URL": "",
            "TWINWATCH__FLOW__ROLLUP_LATENESS_S": "0",
        }
    )
    batches = [
        [_msg(T0 + timedelta(seconds=10 * i), 0.5 + (i % 3) * 0.1) for i in range(12)],
        # a minute later than the first window's end: closes 00:00 and 00:01
        [_msg(T0 + timedelta(minutes=3), 0.9)],
        [_msg(T0 + timedelta(seconds=5), 5.0)],
    ]  # late: its window is closed
    rollups = _run(config, batches)
    minutes = sorted(
        (r.time, r.count, round(r.mean, 6), r.max) for r in rollups if r.window == "1m"
    )
    assert minutes == [
        (T0, 6, 0.6, 0.7),
        (T0 + timedelta(minutes=1), 6, 0.6, 0.7),
        (T0 + timedelta(minutes=3), 1, 0.9, 0.9),
    ]
    (hour,) = [r for r in rollups if r.window == "1h"]
    assert (hour.time, hour.count, hour.max) == (T0, 13, 0.9)


def test_rollups_can_be_switched_off():
    config = load_config(
        environ={"TWINWATCH__SERVICES__ALERTMANAGER__URL": "", "TWINWATCH__FLOW__ROLLUPS": "false"}
    )
    assert _run(config, [[_msg(T0, 0.5)]]) == []


# --- retention -----------------------------------------------------------------------------


def test_retention_statements():
    r = Retention(database="400d", measurements={"reading": "30d", "alert": "INF"})
    assert statements(r, "tw", "autogen") == [
        'ALTER RETENTION POLICY "autogen" ON "tw" DURATION 400d',
        'DELETE FROM "reading" WHERE time < now() - 30d',
    ]


def test_bad_retention_duration_is_a_config_error():
    from twinwatch.config import ConfigError

    with pytest.raises(ConfigError, match="retention"):
        load_config(environ={"TWINWATCH__SERVICES__INFLUXDB__RETENTION__DATABASE": "30 days"})


@pytest.mark.services
def test_retention_is_applied_on_influxdb_1x(influxdb, influx_db):
    now = datetime.now(UTC)
    old, new = now - timedelta(days=40), now - timedelta(days=1)
    with InfluxV1Writer(influxdb.url, influx_db) as w:
        w.write_chunk(
            [
                f"reading,sensor=a value=1 {int(old.timestamp() * 1000)}",
                f"reading,sensor=a value=2 {int(new.timestamp() * 1000)}",
                f"reading_1h,sensor=a mean=1 {int(old.timestamp() * 1000)}",
            ]
        )
        cfg = InfluxService(
            url=influxdb.url,
            database=influx_db,
            retention=Retention(database="400d", measurements={"reading": "30d"}),
        )
        assert len(apply_configured(cfg)) == 2
        (rp,) = w.query(f'SHOW RETENTION POLICIES ON "{influx_db}"', epoch=None)[0]["series"]
        policies = {row[0]: dict(zip(rp["columns"], row)) for row in rp["values"]}
        assert policies["autogen"]["duration"] == "9600h0m0s" and policies["autogen"]["default"]
        (s,) = w.query("SELECT value FROM reading")[0]["series"]
        assert [v for _, v in s["values"]] == [2]  # the 40-day-old raw reading is gone
        (s,) = w.query("SELECT mean FROM reading_1h")[0]["series"]
        assert [v for _, v in s["values"]] == [1]  # its rollup stays
        assert apply_retention(w, Retention()) == []


def test_retention_on_an_unreachable_server_is_logged_not_fatal(caplog):
    from twinwatch.app.services import free_port

    cfg = InfluxService(
        url=f"http://127.0.0.1:{free_port()}", max_retries=0, retention=Retention(database="400d")
    )
    assert apply_configured(cfg) == []
    assert "retention not applied" in caplog.text
