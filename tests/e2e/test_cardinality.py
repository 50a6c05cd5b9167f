"""Bounded by the config, whatever devices send (issue #15), on a fresh real InfluxDB 1.6.7:
after 2,000 readings scattered over the weeks since 1700 and 20,000 distinct CCTV event kinds
through the real flow and InfluxSink, the shard count and the series count stay bounded.

Before: 2,000 scattered readings made 2,000 shards (InfluxDB 386 -> 693 MB, open files 257 ->
2,266), and 20,000 event kinds made 20,000 series. (benchmarks/ingest_bounds.py prints the
figures with and without the lateness bound.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from bytewax.testing import TestingSource, run_main

from twinwatch.app import services
from twinwatch.config import EXAMPLE_CONFIG, parse_config
from twinwatch.flows.dataflow import build_flow
from twinwatch.flows.sinks.influx import InfluxSink
from twinwatch.influx import InfluxV1Writer

CHLORINE = "city/water/sejong-wtp/clearwell/chlorine"
CCTV = "city/security/sejong-soc/gate-2/cctv"


def city(influx_url, tmp_path):
    """The example city with a CCTV camera (a device_event sensor) at the SOC."""
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    site = next(s for s in raw["sites"] if s["id"] == "sejong-soc")
    cctv = dict(id="cctv", quantity="video_event", unit="event", interval_s=86400)
    cctv.update(kind="device_event", detectors=[])
    site["assets"].append({"id": "gate-2", "kind": "gate", "name": "Gate 2", "sensors": [cctv]})
    raw["services"]["influxdb"].update(url=influx_url, database="bounds", spool_dir=str(tmp_path))
    raw["services"]["alertmanager"]["url"] = None
    raw.setdefault("flow", {})["dead_letter_path"] = str(tmp_path / "dead.jsonl")
    return parse_config(raw, environ={})


def messages(scattered: int, kinds: int) -> list[list[tuple[str, bytes]]]:
    now = datetime.now(UTC).replace(microsecond=0)
    at = [now - timedelta(seconds=10 * i) for i in range(100)]  # live readings
    at += [datetime(1700, 1, 1, tzinfo=UTC) + timedelta(weeks=7 * i) for i in range(scattered)]
    stream = [(CHLORINE, b'{"time":"%s","value":0.8}' % t.isoformat().encode()) for t in at]
    t = now.isoformat().encode()
    stream += [(CCTV, b'{"time":"%s","event":"kind_%d"}' % (t, i)) for i in range(kinds)]
    return [stream[i : i + 1000] for i in range(0, len(stream), 1000)]


@pytest.mark.services
def test_scattered_timestamps_and_event_kinds_stay_bounded(service_factory, tmp_path):
    db = service_factory(services.InfluxDB)
    db.create_database("bounds")
    config = city(db.url, tmp_path)
    assert config.flow.max_lateness_s == 7 * 86400  # the default
    allowed = set(config.security.device_events) | set(config.security.device_event_kinds)
    run_main(
        build_flow(
            config,
            TestingSource(messages(2000, 20_000)),
            influx_sink=InfluxSink(config.services.influxdb),
        )
    )
    with InfluxV1Writer(db.url, "bounds") as w:
        shards = [
            v
            for r in w.query("SHOW SHARDS", database="")
            for s in r.get("series", [])
            if s["name"] == "bounds"
            for v in s.get("values", [])
        ]
        kinds = w.query('SHOW TAG VALUES FROM "security_event" WITH KEY = "kind"')
        series = w.query('SHOW SERIES FROM "security_event"')
        events = w.query('SELECT count("message") FROM "security_event"')
        dead = w.query('SELECT count("detail") FROM "dead_letter" WHERE "reason" = \'bad_time\'')
    # the live readings span minutes: one shard group (two at a week boundary), not 2,001
    assert 1 <= len(shards) <= 2
    tag_values = {v[1] for r in kinds for s in r.get("series", []) for v in s["values"]}
    assert tag_values <= allowed | {"other"} and tag_values == {"other"}
    assert sum(len(s["values"]) for r in series for s in r.get("series", [])) <= len(allowed) + 1
    assert events[0]["series"][0]["values"][0][1] == 20_000  # every event kept, word in message
    assert dead[0]["series"][0]["values"][0][1] == 2000  # and every refused reading is known
