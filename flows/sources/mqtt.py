"""MQTT as a Bytewax source: fixed partitions with series affinity, QoS 1, persistent sessions.

The source has ``flow.partitions`` partitions, a number fixed by the config, not by how many
processes run. Partition ``i`` of ``n`` keeps one persistent session under the client id
``<services.mqtt.client_id>-<i>of<n>`` and subscribes to the exact topics of its series: the
configured sensors whose series key ``route_of(series, n)`` is ``i`` (its own key, or its asset's
when an asset group uses it: ``twinwatch.engine.alerts.affinity``). Bytewax assigns the
partitions to the workers of however many processes run; adding or removing a process moves
whole partitions (their sessions, with whatever the broker queued for them meanwhile) and
parks nothing. Every reading of a series enters through the same partition, so a series is
never reordered across processes, and since ``flow.shards`` is a multiple of ``n`` every detector
shard (and rollup window) holds the series of one partition only.

Unknown topics (an unconfigured device, a typo) still become dead letters: with
``services.mqtt.catch_all`` (default) partition 0 subscribes to ``<prefix>/#`` instead of its own
topics, keeps its own and the unknown ones, and acknowledges and drops the known topics of the
other partitions (each arrives there too). It acknowledges those with the batch they arrived in,
so every PUBACK goes out in arrival order: Mosquitto finds a PUBACK's message by scanning the
session's in-flight list from the oldest, and acknowledging them at once, ahead of older
messages still on their way to InfluxDB, made the broker scan all of those for each one.
``services.mqtt.shared_group`` replaces all this with an MQTT shared subscription (no series
affinity); docs/scale-out.md compares the two.

Stale sessions: a partition that receives a known topic of another partition holds a
subscription it should not (left under the same client id by an earlier run): the message is
dropped there (its own partition receives it too) and one line says how to clear the session
(``twinwatch run --clean-session``). A partition that had a session in its recovery snapshot
but finds none on the broker says that messages published meanwhile were lost.

Delivery is at least once: a message is acknowledged only once the flow made it durable
(flows/acks.py); PUBACKs of a batch go out in one write. The broker must allow many
unacknowledged messages in flight (mosquitto: ``max_inflight_messages 0``, a large
``max_queued_messages``; docker/mosquitto/mosquitto.conf).

Each partition's connection runs in its own network thread (``twinwatch.mqttsub``, not paho:
see there why). It connects with backoff (1 s doubling to 30 s), logging one line when the
broker becomes unreachable and one when it is back; the source never raises for the network.
Backpressure: a partition holds at most ``max_queued`` messages that the flow has not
acknowledged; beyond that its thread stops reading, so the backlog stays on the broker
(``twinwatch_source_paused`` is 1). ``idle_timeout_s`` ends the stream after that long
without a message while reading (the demo, tests; a paused partition is not idle); ``None`` runs
forever.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import select
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from twinwatch.config import Config, MqttService
from twinwatch.engine.alerts import affinity, route_of
from twinwatch.flows.acks import Acked
from twinwatch.metrics import QUEUE_DEPTH, RECORDS_IN, SOURCE_PAUSED, SOURCE_READY
from twinwatch.mqtt import BACKOFF, MqttError, describe, why_unreachable
from twinwatch.mqttsub import Subscriber
from twinwatch.schema import series_key

__all__ = ["MqttSource", "partition_topics"]
log = logging.getLogger(__name__)

# how soon an idle partition looks again: the floor of alert latency. 10 ms against 20: alert
# p90 21-38 ms against 42-52 at 9,000 readings/s, for ~3 % of a core more at 1,000/s
_POLL = timedelta(milliseconds=10)
_LOCAL: dict[str, _MqttPartition] = {}  # this process' partitions, for the process-wide gauges


def _gauges() -> None:
    SOURCE_READY.labels("mqtt").set_function(
        lambda: float(bool(_LOCAL) and all(p.ready for p in list(_LOCAL.values())))
    )
    SOURCE_PAUSED.labels("mqtt").set_function(
        lambda: float(any(p.paused for p in list(_LOCAL.values())))
    )
    QUEUE_DEPTH.labels("mqtt").set_function(
        lambda: float(sum(p.held for p in list(_LOCAL.values())))
    )


class _Outage:
    """One log line per outage (and one when it ends) for all the partitions of this process,
    not one per partition and attempt."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reported = False

    def down(self, line: str) -> None:
        with self.lock:
            if not self.reported:
                self.reported = True
                log.error("%s", line)

    def up(self, line: str) -> None:
        with self.lock:
            if self.reported:
                self.reported = False
                log.warning("%s", line)


_OUTAGE = _Outage()


def partition_topics(config: Config) -> dict[str, int]:
    """topic -> partition index, for every configured sensor (series affinity: the partition
    is the series' route among ``flow.partitions``, as liveness and the detect steps assume)."""
    prefix = config.services.mqtt.topic_prefix
    n = config.flow.partitions
    routes = affinity(config)
    return {
        f"{prefix}/{d}/{s}/{a}/{x}": route_of(series_key(d, s, a, x), routes, n)
        for (d, s, a, x) in config.catalog
    }


class _MqttPartition(StatefulSourcePartition):
    def __init__(
        self,
        source: MqttSource,
        key: str,
        index: int,
        had_session: bool,
    ):
        self.cfg = cfg = source.cfg
        self.key = key
        self.index = index
        self.batch_size = source.batch_size
        self.idle_timeout_s = source.idle_timeout_s
        self.max_queued = max(source.max_queued, source.batch_size)
        self.clean_session = source.clean_session
        self.had_session = had_session
        self.client_id = f"{cfg.client_id}-{key}"
        prefix = f"{cfg.topic_prefix}/#"
        routes = source.routes
        catch_all = source.catch_all
        if routes is None:  # shared subscription: the broker picks the partition
            self.filters = [f"$share/{cfg.shared_group}/{prefix}"]
            self.stale = [prefix]
        elif catch_all == index:
            self.filters = [prefix]
            self.stale = []
        else:
            self.filters = sorted(t for t, i in routes.items() if i == index)
            self.stale = [prefix, f"$share/twinwatch/{prefix}"]
        self.routes = routes
        self.catch_all = catch_all
        self.queue: collections.deque = collections.deque()  # (topic, payload, mid)
        self.acks: collections.deque = collections.deque()  # lists of mids, from any thread
        self.taken = 0  # QoS 1 messages the flow took (counted by the worker thread)
        self.acked = 0  # ... and of those, acknowledged (counted by the network thread)
        self.sub: Subscriber | None = None
        self.ready = False
        self.paused = False
        self.closing = False
        self.warned_foreign = False
        self.dropped = 0
        self.last_message = time.monotonic()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        _LOCAL[key] = self
        _gauges()
        self.thread = threading.Thread(target=self._run, name=f"mqtt-{key}", daemon=True)
        self.thread.start()

    # --- the network thread ---------------------------------------------------------------

    def _run(self) -> None:
        delay = float(BACKOFF[0])
        while not self.closing:
            sub = Subscriber(self.cfg, self.client_id, clean_session=self.clean_session)
            try:
                present = sub.connect()
            except MqttError as e:
                _OUTAGE.down(
                    f"{e}; retrying with backoff ({BACKOFF[0]} s doubling to {BACKOFF[1]} s)"
                )
                self._sleep(delay)
                delay = min(delay * 2, BACKOFF[1])
                continue
            except OSError as e:
                why = e.strerror or str(e) or why_unreachable(self.cfg)
                _OUTAGE.down(
                    f"cannot reach {describe(self.cfg)}: {why}; retrying with backoff "
                    f"({BACKOFF[0]} s doubling to {BACKOFF[1]} s)"
                )
                self._sleep(delay)
                delay = min(delay * 2, BACKOFF[1])
                continue
            _OUTAGE.up(f"{describe(self.cfg)} is reachable again")
            delay = float(BACKOFF[0])
            self.sub = sub
            try:
                self._session(sub, present)
                self._loop(sub)
            except (ConnectionError, TimeoutError, OSError) as e:
                if not self.closing:
                    log.warning(
                        "MQTT partition %s disconnected (%s); reconnecting with backoff",
                        self.key,
                        e,
                    )
            except MqttError as e:
                log.error("%s", e)
                self._sleep(delay)
            finally:
                self.ready = False
                sub.close(graceful=self.closing)

    def _session(self, sub: Subscriber, present: bool) -> None:
        if self.clean_session:
            log.info("MQTT session %s started clean (--clean-session)", self.client_id)
            self.clean_session = False  # once: the next connects keep the session
        elif self.had_session and not present:
            log.error(
                "the broker has no session for %s although the last run had one: messages "
                "published while the flow was down were lost (was the broker restarted without "
                "persistence, or the session cleared?)",
                self.client_id,
            )
        if present and self.stale:
            sub.unsubscribe(self.stale, self._on_message)
        sub.subscribe(self.filters, self.cfg.qos, self._on_message)
        self.had_session = True
        self.ready = True

    @property
    def held(self) -> int:
        """Messages the flow holds: queued, or taken and not yet acknowledged."""
        return len(self.queue) + self.taken - self.acked

    def _loop(self, sub: Subscriber) -> None:
        wake = self.wake_r
        sock = sub.sock
        assert sock is not None  # connected
        more = False  # complete messages left in the subscriber's buffer
        while not self.closing:
            acks = self.acks
            while acks:
                mids = acks.popleft()
                sub.ack(mids)
                self.acked += len(mids)
            sub.flush()
            room = self.max_queued - self.held
            self.paused = room <= 0
            if self.paused:  # not reading on purpose: the broker's silence is not a dead link
                sub.last_in = time.monotonic()  # (our PINGREQs keep the session alive)
                self.last_message = sub.last_in  # nor idleness: the backlog waits there
            readable = [wake] if self.paused else [sock, wake]
            writable = [sock] if sub.out else []
            timeout = 0.0 if more and not self.paused else 0.5
            ready = select.select(readable, writable, [], timeout)[0]
            if wake in ready:
                with contextlib.suppress(BlockingIOError):
                    wake.recv(4096)
            if not self.paused and (more or sock in ready):
                more = sub.read(self._on_message, limit=room) == room

    def _on_message(self, topic: str, payload: bytes, mid: int | None) -> None:
        routes = self.routes
        if routes is not None:
            owner = routes.get(topic, self.catch_all)
            if owner != self.index:  # another partition's (it receives this message too)
                if mid is not None:  # acknowledged in arrival order, with its batch
                    self.queue.append((None, None, mid))
                self.dropped += 1
                if self.index != self.catch_all and not self.warned_foreign:
                    self.warned_foreign = True
                    log.warning(
                        "MQTT session %s holds a subscription that is not its own: it received "
                        "%s, which partition %s takes (left under this client id by an earlier "
                        "run?). Such messages are dropped here. To clear the session: "
                        "twinwatch run --clean-session (or another services.mqtt.client_id)",
                        self.client_id,
                        topic,
                        owner,
                    )
                return
        self.queue.append((topic, payload, mid))
        self.last_message = time.monotonic()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.closing and time.monotonic() < deadline:
            time.sleep(0.1)

    # --- the worker's side ------------------------------------------------------------------

    def next_batch(self) -> list:
        queue = self.queue
        n = min(len(queue), self.batch_size)
        if n == 0:
            if self.idle_timeout_s is not None and self._idle() > self.idle_timeout_s:
                raise StopIteration
            return []
        taken = [queue.popleft() for _ in range(n)]
        batch = [(topic, payload) for topic, payload, _ in taken if topic is not None]
        RECORDS_IN.labels("mqtt").inc(len(batch))
        mids = [mid for _, _, mid in taken if mid is not None]
        if not mids:
            return [batch]
        self.taken += len(mids)
        if not batch:  # only other partitions' messages: nothing to make durable
            self._ack(mids)
            return []
        return [Acked(batch, lambda: self._ack(mids))]

    def _idle(self) -> float:
        """Seconds since any partition of this process received a message: the partitions of
        a bounded run end together, not one by one as each falls quiet."""
        parts = list(_LOCAL.values()) or [self]
        return time.monotonic() - max(p.last_message for p in parts)

    def _ack(self, mids: list[int]) -> None:
        """Called once the batch is durable, from whichever thread made it so."""
        self.acks.append(mids)
        with contextlib.suppress(OSError):  # already woken (buffer full), or closing
            self.wake_w.send(b"\0")

    def next_awake(self) -> datetime | None:
        return None if self.queue else datetime.now(UTC) + _POLL

    def snapshot(self) -> bool:
        return self.had_session  # the next run expects its session on the broker

    def close(self) -> None:
        self.closing = True
        self._ack([])
        self.thread.join(timeout=10)
        _LOCAL.pop(self.key, None)
        self.wake_r.close()
        self.wake_w.close()


class MqttSource(FixedPartitionedSource):
    """``flow.partitions`` partitions named ``<i>of<n>``; see the module docstring."""

    def __init__(
        self,
        config: Config,
        batch_size: int = 1000,
        idle_timeout_s: float | None = None,
        max_queued: int = 20_000,
        *,
        clean_session: bool = False,
    ):
        self.cfg: MqttService = config.services.mqtt
        self.partitions = config.flow.partitions
        self.batch_size = batch_size
        self.idle_timeout_s = idle_timeout_s
        self.max_queued = max_queued
        self.clean_session = clean_session
        self.routes = None if self.cfg.shared_group else partition_topics(config)
        self.catch_all = 0 if self.cfg.catch_all else None
        # partitions with series affinity: liveness keeps one clock per partition
        self.affinity_partitions = 1 if self.routes is None else self.partitions

    def list_parts(self) -> list[str]:
        n = self.partitions
        return [f"{i}of{n}" for i in range(n)]

    def build_part(self, step_id: str, for_part: str, resume_state: bool | None) -> _MqttPartition:
        index = int(for_part.split("of")[0])
        part = _MqttPartition(self, for_part, index, bool(resume_state))
        log.info("MQTT partition %s runs here (client id %s)", for_part, part.client_id)
        return part
