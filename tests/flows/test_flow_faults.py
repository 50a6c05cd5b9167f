"""Faults inside the flow (issue #15): a bug on one record, and when a batch is acknowledged.

Bytewax's test runner with capture sinks, plus the real dead-letter file sink; the detector bug
is injected with monkeypatch (no real input makes our detectors raise on demand: that is the
point of the guard).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main
from capture import Capture

from twinwatch.config import load_config
from twinwatch.detectors.stale import Stuck
from twinwatch.flows.acks import Acked, ack_all, split_ack
from twinwatch.flows.dataflow import build_flow
from twinwatch.flows.sinks.deadletter import DeadLetterFileSink
from twinwatch.schema import AnomalyScore, Reading

T0 = datetime(2026, 11, 20, tzinfo=UTC)
TURBIDITY = "city/water/sejong-wtp/filter-outlet/turbidity"


@pytest.fixture(scope="module")
def config():
    return load_config(environ={"TWINWATCH__SERVICES__ALERTMANAGER__URL": "null"})


def _msg(i: int, value: float) -> tuple[str, bytes]:
    t = (T0 + timedelta(minutes=i)).isoformat()
    return TURBIDITY, b'{"time":"%s","value":%r}' % (t.encode(), value)


class AckingCapture(Capture):
    """A capture sink that, like the real sinks, acknowledges what it holds."""

    def build(self, step_id, worker_index, worker_count):
        items = self.items

        class _P(StatelessSinkPartition):
            def write_batch(self, batch):
                for b in batch:
                    items.extend(b)
                ack_all(batch)

        return _P()


class Never(DynamicSink):
    """A sink that takes the batches and never makes them durable (never acknowledges)."""

    def build(self, step_id, worker_index, worker_count):
        class _P(StatelessSinkPartition):
            def write_batch(self, batch):
                pass

        return _P()


def test_a_bug_on_one_record_dead_letters_that_record_only(config, monkeypatch, caplog):
    real = Stuck.update  # one of turbidity's detectors (limits, stuck, gap)

    def buggy(self, t, x):
        if x == 0.0913:
            raise ZeroDivisionError("injected")
        return real(self, t, x)

    monkeypatch.setattr(Stuck, "update", buggy)
    values = [0.08 + (i % 7) / 1000 for i in range(60)]
    values[20] = values[40] = 0.0913
    batches = [[_msg(i, v) for i, v in enumerate(values)][k : k + 10] for k in range(0, 60, 10)]
    influx, dead = Capture(), Capture()
    with caplog.at_level(logging.ERROR):
        run_main(
            build_flow(config, TestingSource(batches), influx_sink=influx, dead_letter_sink=dead)
        )
    assert [d.reason for d in dead.items] == ["internal_error", "internal_error"]
    assert "ZeroDivisionError: injected" in dead.items[0].detail
    assert "0.0913" in dead.items[0].payload
    scores = [s for s in influx.items if type(s) is AnomalyScore]
    assert len(scores) == 58  # every other reading was scored
    assert len([r for r in influx.items if type(r) is Reading]) == 60  # and all are stored
    logged = [r for r in caplog.records if "injected" in r.getMessage()]
    assert len(logged) == 1  # logged once (with its traceback), then only counted


def test_a_poison_batch_is_acknowledged_once_its_dead_letters_are_on_disk(config, tmp_path):
    acks: list[int] = []
    mixed = Acked([_msg(0, 0.08), (TURBIDITY, b"{poison")], lambda: acks.append(1))
    only_poison = Acked([(TURBIDITY, b"\xff")], lambda: acks.append(2))
    path = tmp_path / "dead.jsonl"
    run_main(
        build_flow(
            config,
            TestingSource([mixed, only_poison]),
            influx_sink=AckingCapture(),
            dead_letter_sink=DeadLetterFileSink(path),
        )
    )
    assert sorted(acks) == [1, 2]  # once each
    assert [json.loads(x)["reason"] for x in path.read_text().splitlines()] == [
        "bad_json",
        "bad_encoding",
    ]


def test_a_batch_is_not_acknowledged_while_any_part_is_not_durable(config):
    acks: list[int] = []
    mixed = Acked([_msg(0, 0.08), (TURBIDITY, b"{poison")], lambda: acks.append(1))
    # the records are written, but the dead-letter sink never makes its part durable
    run_main(
        build_flow(config, TestingSource([mixed]), influx_sink=Capture(), dead_letter_sink=Never())
    )
    assert acks == []


def test_split_ack_fires_once_when_every_part_is_done():
    calls = []
    a, b = split_ack(lambda: calls.append("ack"), 2)
    a()
    a()  # a part called twice (two sinks made the same dead letters durable) counts once
    assert calls == []
    b()
    b()
    assert calls == ["ack"]
