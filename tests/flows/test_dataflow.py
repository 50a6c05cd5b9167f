"""The dataflow with Bytewax's test runner: replay file in, capture sinks out (no services).

Also: a shard's snapshot restores detectors and alert states exactly, and a replay resumed from a
Bytewax recovery snapshot continues where it stopped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from bytewax.testing import TestingSource, run_main
from capture import Capture

from twinwatch.config import load_config
from twinwatch.engine.parse import Parser
from twinwatch.engine.plan import Plan
from twinwatch.engine.shard import Shard
from twinwatch.flows.acks import DeadBatch
from twinwatch.flows.dataflow import build_flow
from twinwatch.flows.sources.replay import ReplaySource
from twinwatch.schema import Alert, AnomalyScore, DeadLetter, Reading, SecurityEvent

T0 = datetime(2026, 11, 20, tzinfo=UTC)
TURBIDITY = "city/water/sejong-wtp/filter-outlet/turbidity"


@pytest.fixture(scope="module")
def config():
    return load_config(environ={"TWINWATCH__SERVICES__ALERTMANAGER__URL": "http://127.0.0.1:9"})


def _replay_lines(values, start=T0, step_s=60, topic=TURBIDITY):
    return [
        json.dumps(
            {
                "topic": topic,
                "payload": {
                    "time": (start + timedelta(seconds=step_s * i))
                    .isoformat()
                    .replace("+00:00", "Z"),
                    "value": v,
                },
            }
        )
        for i, v in enumerate(values)
    ]


def run_replay(config, lines, tmp_path, batch_size=25):
    path = tmp_path / "replay.jsonl"
    path.write_text("\n".join(lines) + "\n")
    influx, alerts, dead = Capture(), Capture(), Capture()
    run_main(
        build_flow(
            config,
            ReplaySource([path], batch_size=batch_size),
            influx_sink=influx,
            alert_sink=alerts,
            dead_letter_sink=dead,
        )
    )
    return influx.items, alerts.items, dead.items


def test_replay_through_the_flow(config, tmp_path):
    values = [0.08 + 0.002 * (i % 5) for i in range(100)] + [0.9, 1.1, 0.95]  # > 0.5 NTU limit
    lines = _replay_lines(values)
    lines.insert(10, "this is not json")
    lines.insert(20, json.dumps({"topic": TURBIDITY, "payload": {"time": "x", "value": 1}}))
    lines.insert(30, json.dumps({"topic": TURBIDITY, "payload": '{"time": "2026-'}))
    influx, alerts, dead = run_replay(config, lines, tmp_path)

    readings = [r for r in influx if type(r) is Reading]
    assert [r.value for r in readings] == values  # every valid reading, in order
    scores = [s for s in influx if type(s) is AnomalyScore]
    assert len(scores) == len(values)
    # the example's turbidity detectors (rain raises it within its limit: no robust_z, issue #12)
    assert all(set(s.scores) == {"limits", "stuck", "gap"} for s in scores)
    assert [s.value for s in scores if "limits" in s.hits] == [0.9, 1.1, 0.95]
    # a line that is not a replay record is dead-lettered by the source with the real reason
    # (it used to reach the parser with a made-up topic: bad_topic)
    assert sorted(d.reason for d in dead) == ["bad_json", "bad_json", "bad_time"]
    not_json = next(d for d in dead if d.payload == "this is not json")
    assert not_json.reason == "bad_json" and not_json.topic.startswith("replay.jsonl@")
    assert [d for d in influx if type(d) is DeadLetter] == dead
    firing = [a for a in alerts if a.status == "firing" and a.rule == "limits"]
    assert len(firing) == 1 and firing[0].severity == "alert" and firing[0].value == 0.9
    assert firing[0].starts_at == T0 + timedelta(minutes=100)
    assert all(type(a) is Alert for a in alerts)


def test_a_silent_sensor_raises_a_stale_alert_and_resolves_when_back(config, tmp_path):
    # turbidity reports every minute for 3 h; pH (also every minute) stops for an hour after 1 h
    turb = _replay_lines([0.08] * 180)
    ph_topic = "city/water/sejong-wtp/filter-outlet/ph"
    ph = [s for i, s in enumerate(_replay_lines([7.2] * 180, topic=ph_topic)) if not 60 <= i < 120]
    lines = sorted(turb + ph, key=lambda ln: json.loads(ln)["payload"]["time"])
    _, alerts, _ = run_replay(config, lines, tmp_path, batch_size=2)  # a batch = 1 minute
    stale = [(a.status, a.sensor) for a in alerts if a.rule == "stale"]
    assert stale == [("firing", "ph"), ("resolved", "ph")]
    fired = next(a for a in alerts if a.rule == "stale")
    # stale_factor 5 x 60 s interval: fires once the watermark is > 5 min past the last reading
    assert timedelta(minutes=5) < fired.at - (T0 + timedelta(minutes=59)) <= timedelta(minutes=6)


def test_security_events_burst_alert(config, tmp_path):
    line = "sshd[1]: Failed password for root from 198.51.100.7 port 22 ssh2"
    lines = [
        json.dumps(
            {
                "topic": "city/security/sejong-soc/gw-1/sshd",
                "payload": {"time": (T0 + timedelta(seconds=5 * i)).isoformat(), "line": line},
            }
        )
        for i in range(30)
    ]
    influx, alerts, _ = run_replay(config, lines, tmp_path)
    events = [e for e in influx if type(e) is SecurityEvent]
    assert len(events) == 30 and events[0].src_ip == "198.51.100.7"
    fired = [a for a in alerts if a.rule == "auth_failures" and a.status == "firing"]
    assert len(fired) == 1
    assert fired[0].at == T0 + timedelta(seconds=5 * 19)  # the 20th failure within 5 min


def test_shard_snapshot_restores_exactly(config):
    parser, plan = Parser(config), Plan(config)
    msgs = [
        (
            TURBIDITY,
            json.dumps(
                {
                    "time": (T0 + timedelta(minutes=i)).isoformat(),
                    "value": 0.08 + (0.6 if i == 150 else 0.001 * (i % 7)),
                }
            ).encode(),
        )
        for i in range(200)
    ]
    records, _ = parser.split(msgs)
    a = Shard(plan)
    a.process(records[:120])
    b = Shard(plan, state=a.to_state())
    assert a.process(records[120:]) == b.process(records[120:])
    assert a.to_state() == b.to_state()


def test_source_batches_from_testing_source(config):
    """The flow accepts any source that emits lists of (topic, payload) - as MQTT does."""
    batches = [
        [(TURBIDITY, b'{"time":"2026-11-20T00:00:00Z","value":0.1}'), (TURBIDITY, b"garbage")]
    ]
    influx, alerts, dead = Capture(), Capture(), Capture()
    run_main(
        build_flow(
            config,
            TestingSource(batches),
            influx_sink=influx,
            alert_sink=alerts,
            dead_letter_sink=dead,
        )
    )
    # + the reading's 1-minute and 1-hour rollups (issue #5), written when input ends
    assert [type(x).__name__ for x in influx.items] == [
        "Reading",
        "AnomalyScore",
        "DeadLetter",
        "Rollup",
        "Rollup",
    ]
    assert [d.reason for d in dead.items] == ["bad_json"]


def test_csv_replay_and_resume_offset(config, tmp_path):
    """CSV replay (time,topic,value) feeds the same parse step; a partition resumes at its
    offset."""
    from twinwatch.flows.sources.replay import _ReplayPartition

    path = tmp_path / "day.csv"
    rows = ["time,topic,value"] + [
        f"{(T0 + timedelta(minutes=i)).isoformat()},{TURBIDITY},{0.1 + i / 1000}" for i in range(10)
    ]
    rows.insert(5, "garbage-without-commas")
    path.write_text("\n".join(rows) + "\n")
    part = _ReplayPartition(path, 0, batch_size=4, speed=None)
    items = part.next_batch()
    offset = part.snapshot()
    resumed = _ReplayPartition(path, offset, batch_size=4, speed=None)
    while True:
        try:
            items += resumed.next_batch()
        except StopIteration:
            break
    messages = [m for b in items if type(b) is not DeadBatch for m in b]
    errs = [d for b in items if type(b) is DeadBatch for d in b]
    oks, more = Parser(config).split(messages, source="file")
    assert not more
    assert [round(r.value, 3) for r in oks] == [round(0.1 + i / 1000, 3) for i in range(10)]
    # the source dead-letters a row that is not time,topic,value itself, naming where it was
    assert [e.reason for e in errs] == ["bad_schema"] and "day.csv@" in errs[0].topic
