"""MQTT as a Bytewax source: QoS 1, persistent session, reconnect with backoff.

Each worker runs one paho client (its network thread fills a queue; ``next_batch`` drains it).
With more than one worker, or with ``shared_group`` set, workers subscribe through an MQTT shared
subscription (``$share/<group>/<prefix>/#``), so the broker splits the topics between the worker
processes: the source partitions without any coordination of ours.

``idle_timeout_s`` ends the stream after that long without a message (bounded runs such as the
demo); ``None`` runs forever.

Delivery is at least once: with QoS 1 the client acknowledges a message only when the flow has
made it durable (see flows/acks.py); until then the broker keeps it in our persistent session and
redelivers it after a crash. The broker must allow enough unacknowledged messages in flight
(mosquitto: ``max_inflight_messages 0`` or a few times ``flow.batch_size``).

Start-up and outages: the client connects in its network thread and retries with exponential
backoff (1 s doubling to 30 s), logging one line when the broker becomes unreachable and one when
it is back; the source never raises for the network.

Backpressure: the queue holds at most ``max_queued`` messages. When the flow falls behind (a
blocked sink, e.g. the spool's ``block`` policy), the network thread waits for room instead of
reading from the socket, so the backlog stays on the broker (in our persistent session), not in
the flow's memory (``twinwatch_source_paused`` is 1 meanwhile). Paused longer than 1.5 x the
keepalive, the broker drops the connection; after the reconnect it redelivers the
unacknowledged messages (duplicates are idempotent in InfluxDB).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from bytewax.inputs import DynamicSource, StatelessSourcePartition

from twinwatch.config import MqttService
from twinwatch.flows.acks import Acked
from twinwatch.metrics import QUEUE_DEPTH, RECORDS_IN, SOURCE_PAUSED, SOURCE_READY
from twinwatch.mqtt import BACKOFF, describe, make_client, why_unreachable

__all__ = ["MqttSource"]
log = logging.getLogger(__name__)

_POLL = timedelta(milliseconds=20)


class _MqttPartition(StatelessSourcePartition):
    def __init__(
        self,
        cfg: MqttService,
        topic: str,
        client_id: str,
        batch_size: int,
        idle_timeout_s: float | None,
        max_queued: int = 20_000,
    ):
        self.cfg = cfg
        self.batch_size = batch_size
        self.idle_timeout_s = idle_timeout_s
        self.max_queued = max(max_queued, batch_size)
        self.queue: collections.deque = collections.deque()  # append/popleft are thread-safe
        self.room = threading.Condition()
        self.closing = False
        self.unreachable = False
        self.last_message = time.monotonic()
        self.qos = cfg.qos
        self.client = make_client(cfg, client_id, manual_ack=cfg.qos == 1)
        self.client.on_connect = lambda c, u, flags, rc, props: self._on_connect(c, rc, topic)
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: SOURCE_READY.labels("mqtt").set(1)
        self.client.on_disconnect = self._on_disconnect
        # Connect in paho's thread: an unreachable broker is retried with backoff, not raised.
        self.client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        self.client.loop_start()

    def _on_connect(self, client, rc, topic: str) -> None:
        if rc.is_failure:
            log.error("%s refused the connection: %s", describe(self.cfg), rc)
            return
        if self.unreachable:
            log.warning("%s is reachable again", describe(self.cfg))
            self.unreachable = False
        client.subscribe(topic, qos=self.cfg.qos)

    def _on_connect_fail(self, client, userdata) -> None:
        if not self.unreachable:  # one line per outage, not one per attempt
            self.unreachable = True
            log.error(
                "cannot reach %s: %s; retrying with backoff (%d s doubling to %d s)",
                describe(self.cfg),
                why_unreachable(self.cfg),
                *BACKOFF,
            )

    @staticmethod
    def _on_disconnect(client, userdata, flags, rc, props) -> None:
        SOURCE_READY.labels("mqtt").set(0)
        if rc.is_failure:
            log.warning("MQTT disconnected (%s); reconnecting with backoff", rc)

    def _on_message(self, client, userdata, msg) -> None:
        if len(self.queue) >= self.max_queued:
            with self.room:  # the flow is behind: stop reading from the socket
                SOURCE_PAUSED.labels("mqtt").set(1)
                while len(self.queue) >= self.max_queued and not self.closing:
                    self.room.wait(0.5)
                SOURCE_PAUSED.labels("mqtt").set(0)
        self.queue.append((msg.topic, msg.payload, msg.mid))

    def next_batch(self) -> list:
        queue = self.queue
        n = min(len(queue), self.batch_size)
        QUEUE_DEPTH.labels("mqtt").set(len(queue))
        if n == 0:
            if (
                self.idle_timeout_s is not None
                and time.monotonic() - self.last_message > self.idle_timeout_s
            ):
                raise StopIteration
            return []
        self.last_message = time.monotonic()
        taken = [queue.popleft() for _ in range(n)]
        if len(queue) < self.max_queued:
            with self.room:
                self.room.notify()
        RECORDS_IN.labels("mqtt").inc(n)
        batch = [(topic, payload) for topic, payload, _ in taken]
        if self.qos == 1:
            mids = [mid for _, _, mid in taken]
            batch = Acked(batch, lambda: self._ack(mids))
        return [batch]

    def _ack(self, mids: list[int]) -> None:
        for mid in mids:
            self.client.ack(mid, 1)

    def next_awake(self) -> datetime | None:
        return None if self.queue else datetime.now(UTC) + _POLL

    def close(self) -> None:
        self.closing = True
        with self.room:
            self.room.notify_all()
        self.client.disconnect()
        self.client.loop_stop()


class MqttSource(DynamicSource):
    def __init__(
        self,
        cfg: MqttService,
        batch_size: int = 1000,
        idle_timeout_s: float | None = None,
        max_queued: int = 20_000,
    ):
        self.cfg = cfg
        self.batch_size = batch_size
        self.idle_timeout_s = idle_timeout_s
        self.max_queued = max_queued

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MqttPartition:
        topic = f"{self.cfg.topic_prefix}/#"
        group = self.cfg.shared_group or ("twinwatch" if worker_count > 1 else None)
        if group:
            topic = f"$share/{group}/{topic}"
        client_id = f"{self.cfg.client_id}-{worker_index}"
        return _MqttPartition(
            self.cfg, topic, client_id, self.batch_size, self.idle_timeout_s, self.max_queued
        )
