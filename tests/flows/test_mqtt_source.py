"""The MQTT source's partitions on a real Mosquitto: series affinity, unknown topics, stale
sessions, acknowledgement (twinwatch.flows.sources.mqtt, twinwatch.mqttsub).

The partitions are built as Bytewax builds them (``build_part``) and polled like a worker does,
so each assertion is about what the broker delivered to which session.
"""

from __future__ import annotations

import logging
import time
import uuid

import paho.mqtt.client as paho
import pytest

from twinwatch.config import load_config
from twinwatch.engine.alerts import affinity, route_of
from twinwatch.flows.sources.mqtt import MqttSource, partition_topics
from twinwatch.mqtt import connect, make_client
from twinwatch.schema import series_key

pytestmark = pytest.mark.services


def _config(mosquitto, client_id: str, **env: str):
    environ = {
        "TWINWATCH__SERVICES__MQTT__PORT": str(mosquitto.port),
        "TWINWATCH__SERVICES__MQTT__CLIENT_ID": client_id,
        "TWINWATCH__FLOW__PARTITIONS": "2",
        "TWINWATCH__FLOW__SHARDS": "4",
    }
    environ.update({f"TWINWATCH__{k}": v for k, v in env.items()})
    return load_config(environ=environ)


def _publish(config, topics: list[str], qos: int = 1) -> None:
    pub = make_client(config.services.mqtt, f"pub-{uuid.uuid4().hex[:8]}", clean_session=True)
    connect(pub, config.services.mqtt)
    pub.loop_start()
    try:
        for i, topic in enumerate(topics):
            info = pub.publish(topic, b'{"time": "2026-01-01T00:00:00Z", "value": %d}' % i, qos=qos)
            info.wait_for_publish(10)
    finally:
        pub.loop_stop()
        pub.disconnect()


def _drain(parts, want: int, timeout: float = 20, ack: bool = True) -> dict[str, list[str]]:
    """Poll the partitions like a worker until ``want`` messages arrived (then a little longer,
    to catch duplicates): partition key -> topics received."""
    got: dict[str, list[str]] = {p.key: [] for p in parts}
    deadline = time.monotonic() + timeout
    settle = None
    while time.monotonic() < deadline:
        for p in parts:
            for batch in p.next_batch():
                got[p.key] += [topic for topic, _ in batch]
                if ack and getattr(batch, "ack", None):
                    batch.ack()
        total = sum(map(len, got.values()))
        if total >= want and settle is None:
            settle = time.monotonic() + 1.0  # anything more would be a duplicate
        if settle is not None and time.monotonic() > settle:
            break
        time.sleep(0.01)
    return got


def _ready(parts, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.ready for p in parts):
        assert time.monotonic() < deadline, "partitions did not subscribe in time"
        time.sleep(0.05)


def _build(source: MqttSource, resume=None):
    return [source.build_part("source", key, resume) for key in source.list_parts()]


def _close(parts) -> None:
    for p in parts:
        p.close()


def test_every_configured_topic_has_one_partition_nested_in_the_shards(mosquitto):
    config = _config(mosquitto, "nest")
    routes = partition_topics(config)
    assert len(routes) == len(config.catalog)
    assert set(routes.values()) == {0, 1}
    by_asset = affinity(config)
    for d, s, a, x in config.catalog:
        key = series_key(d, s, a, x)
        p = routes[f"city/{d}/{s}/{a}/{x}"]
        # every detector shard holds the series of one partition (flow.shards % partitions == 0)
        assert route_of(key, by_asset, config.flow.shards) % config.flow.partitions == p
    # the members of an asset's groups enter through one partition (their asset's)
    for g in config.asset_groups:
        topics = {t for t in routes if t.split("/")[2:4] == [g.site, g.asset]}
        members = {t for t in topics if t.split("/")[-1] in g.members}
        assert len({routes[t] for t in members}) == 1, g.id


def test_partitions_split_the_series_and_partition_0_takes_unknown_topics(mosquitto):
    config = _config(mosquitto, f"split-{uuid.uuid4().hex[:6]}")
    routes = partition_topics(config)
    known = sorted(routes)
    unknown = ["city/water/nowhere/x/y", "city/bad", "other/prefix/a/b/c"]
    source = MqttSource(config, batch_size=100, max_queued=10_000)
    parts = _build(source)
    try:
        _ready(parts)
        assert [p.client_id for p in parts] == [
            f"{config.services.mqtt.client_id}-0of2",
            f"{config.services.mqtt.client_id}-1of2",
        ]
        topics = known * 3 + unknown[:2]  # "other/prefix" matches no subscription at all
        _publish(config, topics)
        got = _drain(parts, len(topics))
    finally:
        _close(parts)
    for key, index in (("0of2", 0), ("1of2", 1)):
        mine = [t for t in got[key] if routes.get(t, 0) == index]
        assert mine == got[key]  # nothing of the other partition's
        assert sorted(mine) == sorted(t for t in topics if routes.get(t, 0) == index)  # once each
    assert set(unknown[:2]) <= set(got["0of2"])  # unknown topics reach the dead-letter path
    assert parts[0].dropped == len([t for t in topics if routes.get(t, 0) == 1])  # measured cost


def test_the_catch_all_partition_acknowledges_in_arrival_order(mosquitto):
    """Partition 0 also receives the other partition's topics. Mosquitto looks up each PUBACK
    by scanning the session's in-flight list from the oldest message, so acknowledging those at
    once, ahead of older messages still being made durable, cost the broker a scan of every
    waiting message per PUBACK (it reached 82 % of a core at 19,500 readings/s). They are
    acknowledged with the batch they arrived in: every PUBACK goes out in arrival order.

    The test records the packet ids partition 0 receives and the PUBACKs it sends (wrappers
    that call through to the real subscriber)."""
    config = _config(mosquitto, f"order-{uuid.uuid4().hex[:6]}")
    routes = partition_topics(config)
    mine = sorted(t for t in routes if routes[t] == 0)
    theirs = sorted(t for t in routes if routes[t] == 1)
    topics = [t for pair in zip(mine, theirs) for t in pair] + ["city/bad"]  # 1:1, interleaved
    parts = _build(MqttSource(config, batch_size=7))
    part = parts[0]
    try:
        _ready(parts)
        arrived: list[int] = []
        acked: list[int] = []
        on_message, sub = part._on_message, part.sub
        ack = sub.ack

        def record_arrival(topic, payload, mid):
            arrived.append(mid)
            on_message(topic, payload, mid)

        def record_ack(mids):
            mids = list(mids)
            acked.extend(mids)
            ack(mids)

        part._on_message, sub.ack = record_arrival, record_ack
        _publish(config, topics)
        _until(lambda: len(arrived) == len(topics))
        batches = [b for _ in range(len(topics)) for b in part.next_batch()]
        received = [topic for b in batches for topic, _ in b]
        assert received == [t for t in topics if routes.get(t, 0) == 0]  # its own, in order
        assert acked == []  # nothing acknowledged before its batch is durable, not even theirs
        for b in batches:  # durable, in order
            b.ack()
        _until(lambda: len(acked) == len(arrived))
    finally:
        _close(parts)
    assert acked == arrived  # all of them, in the order they arrived


def _until(cond, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_unacknowledged_messages_are_redelivered_to_the_same_partition(mosquitto):
    config = _config(mosquitto, f"redeliver-{uuid.uuid4().hex[:6]}")
    routes = partition_topics(config)
    topics = sorted(routes)
    source = MqttSource(config, batch_size=1000)
    parts = _build(source)
    try:
        _ready(parts)
        _publish(config, topics)
        first = _drain(parts, len(topics), ack=False)  # the flow dies before making them durable
    finally:
        _close(parts)
    assert sum(map(len, first.values())) == len(topics)
    parts = _build(MqttSource(config, batch_size=1000), resume=True)
    try:
        again = _drain(parts, len(topics))  # acknowledged this time
    finally:
        _close(parts)
    assert {k: sorted(v) for k, v in again.items()} == {k: sorted(v) for k, v in first.items()}
    parts = _build(MqttSource(config, batch_size=1000), resume=True)
    try:
        _ready(parts)
        after = _drain(parts, 1, timeout=2)
    finally:
        _close(parts)
    assert after == {"0of2": [], "1of2": []}  # acknowledged: never again


def test_a_stale_wildcard_subscription_on_a_partition_session_is_cleared(mosquitto):
    """Before: the demo's session kept `city/#`, and a 2-process run received 1.5x what was
    published. Now the partition unsubscribes it when it finds its session present."""
    config = _config(mosquitto, f"stale-{uuid.uuid4().hex[:6]}")
    routes = partition_topics(config)
    old = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=f"{config.services.mqtt.client_id}-1of2",
        clean_session=False,
    )
    old.connect("127.0.0.1", mosquitto.port)
    old.loop_start()
    old.subscribe("city/#", 1)[1]
    time.sleep(0.5)
    old.loop_stop()
    old.disconnect()
    parts = _build(MqttSource(config, batch_size=1000))
    try:
        _ready(parts)
        topics = sorted(routes)
        _publish(config, topics)
        got = _drain(parts, len(topics))
        assert parts[1].dropped == 0  # unsubscribed: nothing foreign was even delivered
    finally:
        _close(parts)
    assert sorted(got["1of2"]) == sorted(t for t in topics if routes[t] == 1)
    assert sorted(got["0of2"]) == sorted(t for t in topics if routes[t] == 0)


def test_a_foreign_subscription_is_dropped_and_named_with_the_way_to_clear_it(mosquitto, caplog):
    config = _config(mosquitto, f"foreign-{uuid.uuid4().hex[:6]}")
    routes = partition_topics(config)
    topics = sorted(routes)
    water = [t for t in topics if t.startswith("city/water/")]
    old = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=f"{config.services.mqtt.client_id}-1of2",
        clean_session=False,
    )
    old.connect("127.0.0.1", mosquitto.port)
    old.loop_start()
    old.subscribe("city/water/#", 1)  # a filter the partition cannot know to unsubscribe
    time.sleep(0.5)
    old.loop_stop()
    old.disconnect()
    caplog.set_level(logging.WARNING, "twinwatch.flows.sources.mqtt")
    parts = _build(MqttSource(config, batch_size=1000))
    try:
        _ready(parts)
        _publish(config, topics)
        got = _drain(parts, len(topics))
        assert len(got["1of2"]) == len([t for t in topics if routes[t] == 1])  # no duplicates
        assert sorted(got["0of2"] + got["1of2"]) == topics  # each once
        assert any(routes[t] == 0 for t in water)  # the stale filter did deliver foreign topics
        warnings = [r.getMessage() for r in caplog.records if "not its own" in r.getMessage()]
        assert len(warnings) == 1  # one line, not one per message
        assert "--clean-session" in warnings[0]
    finally:
        _close(parts)
    # --clean-session drops the stale subscription: nothing foreign arrives any more
    parts = _build(MqttSource(config, batch_size=1000, clean_session=True))
    try:
        _ready(parts)
        _publish(config, water)
        got = _drain(parts, len(water))
        assert parts[1].dropped == 0
    finally:
        _close(parts)
    assert sorted(got["0of2"] + got["1of2"]) == water


def test_a_session_missing_from_the_broker_says_messages_were_lost(mosquitto, caplog):
    config = _config(mosquitto, f"lost-{uuid.uuid4().hex[:6]}")
    caplog.set_level(logging.ERROR, "twinwatch.flows.sources.mqtt")
    parts = _build(MqttSource(config), resume=True)  # the last run's snapshot had a session
    try:
        _ready(parts)
    finally:
        _close(parts)
    lines = [r.getMessage() for r in caplog.records if "no session for" in r.getMessage()]
    assert len(lines) == 2 and "were lost" in lines[0]


def test_a_paused_partition_is_not_idle_while_the_broker_holds_its_backlog(mosquitto):
    """Backpressure is not the end of the stream: a partition that stops reading because the
    flow holds ``max_queued`` unacknowledged messages (a slow sink) hears nothing from the broker
    on purpose, so its idle timeout must not end a bounded run while its backlog waits there.
    (It did: the kill test of tests/e2e/test_scale.py lost the restarted cluster's backlog.)"""
    config = _config(mosquitto, f"paused-{uuid.uuid4().hex[:6]}", FLOW__PARTITIONS="1")
    topics = sorted(partition_topics(config))[:6]
    idle = 0.5
    (part,) = _build(MqttSource(config, batch_size=2, idle_timeout_s=idle, max_queued=2))
    try:
        _ready([part])
        _publish(config, topics)
        deadline = time.monotonic() + 20
        held = []
        while not held:  # the first batch, not acknowledged: the sink is slow
            assert time.monotonic() < deadline
            held = part.next_batch()
            time.sleep(0.01)
        assert part.paused
        quiet_until = time.monotonic() + 3 * idle  # paused: the broker is silent on purpose
        while time.monotonic() < quiet_until:
            assert part.next_batch() == []  # raises StopIteration if taken for idle
            time.sleep(0.05)
        got = [topic for topic, _ in held[0]]
        held[0].ack()  # durable at last: the partition reads on
        with pytest.raises(StopIteration):  # idle once the backlog is in and nothing more comes
            while time.monotonic() < deadline:
                for batch in part.next_batch():
                    got += [topic for topic, _ in batch]
                    batch.ack()
                time.sleep(0.01)
        assert sorted(got) == topics
    finally:
        part.close()
