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
"""

from __future__ import annotations

import collections
import logging
import time
from datetime import UTC, datetime, timedelta

from bytewax.inputs import DynamicSource, StatelessSourcePartition

from twinwatch.config import MqttService
from twinwatch.flows.acks import Acked
from twinwatch.metrics import QUEUE_DEPTH, RECORDS_IN, SOURCE_READY
from twinwatch.mqtt import connect, make_client

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
    ):
        self.batch_size = batch_size
        self.idle_timeout_s = idle_timeout_s
        self.queue: collections.deque = collections.deque()  # append/popleft are thread-safe
        self.last_message = time.monotonic()
        self.qos = cfg.qos
        self.client = make_client(cfg, client_id, manual_ack=cfg.qos == 1)
        self.client.on_connect = lambda c, u, flags, rc, props: self._on_connect(c, rc, topic, cfg)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: SOURCE_READY.labels("mqtt").set(1)
        self.client.on_disconnect = self._on_disconnect
        connect(self.client, cfg)
        self.client.loop_start()

    @staticmethod
    def _on_connect(client, rc, topic: str, cfg: MqttService) -> None:
        if rc.is_failure:
            log.error("MQTT broker %s:%s refused the connection: %s", cfg.host, cfg.port, rc)
            return
        client.subscribe(topic, qos=cfg.qos)

    @staticmethod
    def _on_disconnect(client, userdata, flags, rc, props) -> None:
        SOURCE_READY.labels("mqtt").set(0)
        if rc.is_failure:
            log.warning("MQTT disconnected (%s); reconnecting with backoff", rc)

    def _on_message(self, client, userdata, msg) -> None:
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
        self.client.loop_stop()
        self.client.disconnect()


class MqttSource(DynamicSource):
    def __init__(
        self, cfg: MqttService, batch_size: int = 1000, idle_timeout_s: float | None = None
    ):
        self.cfg = cfg
        self.batch_size = batch_size
        self.idle_timeout_s = idle_timeout_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MqttPartition:
        topic = f"{self.cfg.topic_prefix}/#"
        group = self.cfg.shared_group or ("twinwatch" if worker_count > 1 else None)
        if group:
            topic = f"$share/{group}/{topic}"
        client_id = f"{self.cfg.client_id}-{worker_index}"
        return _MqttPartition(self.cfg, topic, client_id, self.batch_size, self.idle_timeout_s)
