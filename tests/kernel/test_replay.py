"""The one replay format (twinwatch/replay.py): what the simulator writes, ReplaySource reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from twinwatch.app.simulator.common import Message
from twinwatch.app.simulator.files import read_replay, write_replay
from twinwatch.flows.acks import DeadBatch
from twinwatch.flows.sources.replay import ReplaySource
from twinwatch.replay import BadReplayLine, decode_csv_row, decode_line, encode_line, payload_time

T = datetime(2026, 11, 20, tzinfo=UTC)
TOPIC = "city/water/sejong-wtp/clearwell/chlorine"


def test_a_line_round_trips_byte_for_byte():
    payload = b'{"time":"2026-11-20T00:00:00Z","value":0.8}'
    line = encode_line(TOPIC, payload)
    assert line.endswith(b"\n") and decode_line(line) == (TOPIC, payload)
    assert payload_time(payload) == T
    # a raw payload stored as a JSON string is replayed as its text
    assert decode_line(b'{"topic":"t","payload":"{\\"time\\": 1"}') == ("t", b'{"time": 1')


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"not json", "bad_json"),
        (b'{"topic": "t"}', "bad_schema"),
        (b'{"ts": 1, "v": 2}', "bad_schema"),
        (b'{"topic": "t", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}", "bad_json"),
        (b'{"topic": "\xff", "payload": {}}', "bad_json"),
    ],
)
def test_bad_lines_name_their_reason(line, reason):
    with pytest.raises(BadReplayLine) as e:
        decode_line(line)
    assert e.value.reason == reason


def test_csv_rows():
    topic, payload = decode_csv_row(b"2026-11-20T00:00:00Z,%s,0.8\n" % TOPIC.encode())
    assert topic == TOPIC and payload == b'{"time":"2026-11-20T00:00:00Z","value":0.8}'
    _, payload = decode_csv_row(b"2026-11-20T00:00:00Z,t,nan\n")
    assert payload.endswith(b'"value":"nan"}')  # the parser rejects it with the field named
    with pytest.raises(BadReplayLine, match="3 CSV columns"):
        decode_csv_row(b"a,b\n")


def test_the_simulators_file_is_what_the_replay_source_reads(tmp_path):
    msgs = [
        Message(TOPIC, b'{"time":"2026-11-20T00:0%d:00Z","value":0.%d}' % (i, i), T)
        for i in range(1, 6)
    ]
    path = tmp_path / "sim.jsonl"
    assert write_replay(path, msgs) == 5
    assert [(m.topic, m.payload) for m in read_replay(path)] == [(m.topic, m.payload) for m in msgs]
    with path.open("ab") as f:
        f.write(b"garbage\n")
    part = ReplaySource([path], batch_size=100).build_part("s", str(path), None)
    items = part.next_batch()
    assert items[0] == [(m.topic, m.payload) for m in msgs]
    assert type(items[1]) is DeadBatch and [d.reason for d in items[1]] == ["bad_json"]
    assert items[1][0].topic == f"sim.jsonl@{path.stat().st_size - len(b'garbage') - 1}"
