"""The log flow into a real InfluxDB 1.6.7 (issue #15): security events that share a second and
arrive out of order are all stored, and 20,000 syslog program names do not make 20,000 series."""

from __future__ import annotations

import random

import pytest
from bytewax.testing import TestingSource, run_main
from capture import Capture

from twinwatch.config import InfluxService, load_config
from twinwatch.flows.security import build_log_flow
from twinwatch.flows.sinks.influx import InfluxSink
from twinwatch.influx import InfluxV1Writer

pytestmark = pytest.mark.services


def _run(config, influxdb, db, batches):
    run_main(
        build_log_flow(
            config,
            TestingSource(batches),
            influx_sink=InfluxSink(InfluxService(url=influxdb.url, database=db)),
            alert_sink=Capture(),
            dead_letter_sink=Capture(),
        )
    )


def _count(w, q) -> int:
    (res,) = w.query(q)
    series = res.get("series") or []
    return sum(row[1] for s in series for row in s["values"])


def test_events_sharing_a_second_out_of_order_are_all_stored(influxdb, influx_db):
    """Before: 2 of 200 stored (two interleaved seconds overwrote each other)."""
    config = load_config(environ={})
    rng = random.Random(7)
    lines = [
        f"Dec 10 06:55:{46 + i % 2:02d} gw sshd[{i}]: Failed password for u{i} from "
        f"192.0.2.{i % 250} port {1000 + i} ssh2".encode()
        for i in range(200)
    ]
    rng.shuffle(lines)  # the two seconds interleave, out of order
    _run(
        config,
        influxdb,
        influx_db,
        [[("file:auth.log", line) for line in lines[i : i + 37]] for i in range(0, 200, 37)],
    )
    with InfluxV1Writer(influxdb.url, influx_db) as w:
        assert _count(w, "SELECT count(message) FROM security_event") == 200
        users = {
            row[1]
            for s in w.query('SELECT "user" FROM security_event')[0]["series"]
            for row in s["values"]
        }
    assert users == {f"u{i}" for i in range(200)}


def test_20000_program_names_stay_a_bounded_set_of_series(influxdb, influx_db):
    """Before: 20,000 programs made 20,000 series. Now a program is its own sensor only if the
    config or the built-in allow-list names it; the rest are the sensor "other", raw name kept."""
    config = load_config(environ={"TWINWATCH__SECURITY__PROGRAMS": "{pumpd: pumps}"})
    lines = [
        f"Nov  9 10:00:{i % 60:02d} host{i % 3} prog{i}[1]: started job {i}".encode()
        for i in range(20_000)
    ] + [b"Nov  9 10:01:00 host0 pumpd[2]: pressure ok", b"Nov  9 10:01:00 host0 cron[3]: tick"]
    _run(
        config,
        influxdb,
        influx_db,
        [[("file:x", line) for line in lines[i : i + 1000]] for i in range(0, len(lines), 1000)],
    )
    with InfluxV1Writer(influxdb.url, influx_db) as w:
        (res,) = w.query('SHOW TAG VALUES FROM security_event WITH KEY = "sensor"')
        sensors = {v[1] for v in res["series"][0]["values"]}
        (res,) = w.query("SHOW SERIES FROM security_event")
        n_series = len(res["series"][0]["values"])
        programs = w.query("SELECT count(DISTINCT(program)) FROM security_event")
    assert sensors == {"other", "pumps", "cron"}
    assert n_series <= 4  # one per (sensor, kind, outcome): other, pumps, cron
    assert programs[0]["series"][0]["values"][0][1] == 20_002  # the raw names, as a field
