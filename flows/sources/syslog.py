"""A syslog receiver as a Bytewax source: UDP and TCP on one port, one thread, bounded.

    SyslogSource(host="127.0.0.1", port=5514, idle_timeout_s=None, limits=SyslogListener())

Items are batches of ``(origin, line bytes)`` with origin ``syslog:udp:<peer>`` or
``syslog:tcp:<peer>``; ``twinwatch.engine.logparse`` parses them and dead-letters the rest.
UDP: one message per datagram. TCP (RFC 6587): octet counting (``<len> <msg>``) or newline
framing, decided per frame.

One asyncio event loop in one thread serves every connection (300 idle connections are 300
sockets, not 300 threads), and every input is bounded, with a counter on /metrics
(``twinwatch_syslog_limited{limit=...}``, ``twinwatch_syslog_connections``):

- ``max_connections``: further connections are refused (closed at once);
- ``idle_timeout_s``: a silent connection is closed;
- ``max_bytes`` (``security.max_line_bytes``): a longer frame is cut there while it streams in,
  never buffered whole, and passed on cut, so the parse step dead-letters it as ``too_large``;
- ``rate_lines_per_s``/``rate_burst`` per sender: TCP senders are slowed (their reads wait, so
  TCP pushes back to them: nothing is lost), UDP datagrams beyond the rate are dropped;
- ``queue_lines`` between the listener and the flow: when full, TCP reads pause (pushback) and
  UDP datagrams are dropped.

One partition (the port can be bound once). Network input has no offset to resume from: what
arrives while the flow is down is lost unless the sender queues it (rsyslog's action queue).
Binding to anything but a loopback address logs a warning.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import queue
import re
import threading
import time
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from twinwatch.config import SyslogListener
from twinwatch.metrics import QUEUE_DEPTH, RECORDS_IN, SYSLOG_CONNECTIONS, SYSLOG_LIMITED

__all__ = ["SyslogSource", "Framer"]

log = logging.getLogger(__name__)
_POLL = timedelta(milliseconds=50)
_OCTETS = re.compile(rb"(\d{1,7}) ")
_CHUNK = 65536


class Framer:
    """Frames of a TCP syslog stream fed in chunks: octet-counted (``<len> <msg>``, RFC 6587
    3.4.1) or newline-terminated (3.4.2), decided per frame from its first bytes. A frame
    longer than ``max_bytes`` is cut to ``max_bytes + 1`` bytes (so it is recognisably too
    large) and the rest is skipped as it arrives: memory stays below ``max_bytes`` + a chunk."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.frame = bytearray()
        self.need = 0  # octet-counted bytes still to read (kept or skipped)
        self.skip_line = False  # dropping the rest of an oversized newline frame
        self.truncated = 0

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        buf = self.buf
        buf += data
        limit = self.max_bytes + 1
        while buf:
            if self.need:  # inside an octet-counted frame
                take = min(self.need, len(buf))
                room = limit - len(self.frame)
                if room > 0:
                    self.frame += buf[: min(take, room)]
                del buf[:take]
                self.need -= take
                if not self.need:
                    self._emit(out, self.frame)
                    self.frame = bytearray()
                continue
            if self.skip_line:
                i = buf.find(b"\n")
                if i < 0:
                    buf.clear()
                    break
                del buf[: i + 1]
                self.skip_line = False
                continue
            m = _OCTETS.match(buf)
            if m is not None and bytes(buf[m.end() : m.end() + 1]) in (b"<", b""):
                if m.end() == len(buf):  # "<len> " and nothing more yet
                    break
                self.need = int(m.group(1))
                del buf[: m.end()]
                if not self.need:
                    continue
                continue
            if buf[:1].isdigit() and len(buf) < 9 and b" " not in buf and b"\n" not in buf:
                break  # maybe an octet count still arriving
            i = buf.find(b"\n")
            if i >= 0:
                self._emit(out, bytes(buf[: min(i, limit)]).rstrip(b"\r"))
                del buf[: i + 1]
            elif len(buf) > self.max_bytes:  # a line longer than the limit: cut, skip the rest
                self._emit(out, bytes(buf[:limit]))
                buf.clear()
                self.skip_line = True
            else:
                break
        return out

    def _emit(self, out: list[bytes], frame) -> None:
        if len(frame) > self.max_bytes:
            self.truncated += 1
            SYSLOG_LIMITED.labels("truncated").inc()
        if frame.strip():
            out.append(bytes(frame))

    def close(self) -> list[bytes]:
        """What is left at the end of the stream (a last line without its newline)."""
        rest, self.buf = bytes(self.buf), bytearray()
        if self.need or self.skip_line or not rest.strip():
            return [bytes(self.frame)] if self.frame.strip() else []
        return [rest[: self.max_bytes + 1].rstrip(b"\r\n")]


class _Bucket:
    """Token bucket of one sender: ``rate`` lines/s, up to ``burst``."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self) -> float:
        """0 if a line may pass now, else the seconds until it may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class _Listener:
    """The asyncio side: TCP server and UDP endpoint on one port, in one thread."""

    def __init__(self, host: str, port: int, limits: SyslogListener, max_bytes: int):
        self.host, self.port, self.limits, self.max_bytes = host, port, limits, max_bytes
        self.queue: queue.Queue[tuple[str, bytes]] = queue.Queue(limits.queue_lines)
        self.loop = asyncio.new_event_loop()
        self.connections = 0
        self._buckets: dict[str, _Bucket] = {}
        self._tasks: set[asyncio.Task] = set()
        self._ready: asyncio.Future | None = None
        started = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self._start())
            except BaseException as e:  # bind errors go back to the caller
                error.append(e)
                started.set()
                return
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True, name="syslog")
        self.thread.start()
        started.wait()
        if error:
            raise error[0]

    async def _start(self) -> None:
        self.server = await asyncio.start_server(
            self._connection, self.host, self.port, reuse_address=True, backlog=1024
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self.udp, _ = await self.loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(self.host, self.port)
        )

    def bucket(self, peer: str) -> _Bucket:
        b = self._buckets.get(peer)
        if b is None:
            if len(self._buckets) >= 10_000:
                self._buckets.clear()
            b = self._buckets[peer] = _Bucket(self.limits.rate_lines_per_s, self.limits.rate_burst)
        return b

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        if self.connections >= self.limits.max_connections:
            SYSLOG_LIMITED.labels("refused").inc()
            writer.close()
            return
        self.connections += 1
        SYSLOG_CONNECTIONS.set(self.connections)
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        origin = f"syslog:tcp:{peer}"
        framer = Framer(self.max_bytes)
        bucket = self.bucket(peer)
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(_CHUNK), self.limits.idle_timeout_s)
                except TimeoutError:
                    SYSLOG_LIMITED.labels("idle_closed").inc()
                    break
                frames = framer.feed(data) if data else framer.close()
                for frame in frames:
                    wait = bucket.take()
                    if wait:  # TCP pushback: slow this sender down, lose nothing
                        SYSLOG_LIMITED.labels("throttled").inc()
                    while wait:
                        await asyncio.sleep(wait)
                        wait = bucket.take()
                    await self._put(origin, frame)
                if not data:
                    break
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # the peer went away, or the source is closing
        finally:
            self.connections -= 1
            SYSLOG_CONNECTIONS.set(self.connections)
            writer.close()

    async def _put(self, origin: str, frame: bytes) -> None:
        paused = False
        while True:
            try:
                self.queue.put_nowait((origin, frame))
                return
            except queue.Full:  # the flow is behind: stop reading this connection for now
                if not paused:
                    SYSLOG_LIMITED.labels("queue_paused").inc()
                    paused = True
                await asyncio.sleep(0.01)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            self.udp.close()
            for task in asyncio.all_tasks(self.loop):
                if task is not asyncio.current_task():
                    task.cancel()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, listener: _Listener):
        self.listener = listener

    def datagram_received(self, data: bytes, addr) -> None:
        peer = str(addr[0])
        if self.listener.bucket(peer).take():
            SYSLOG_LIMITED.labels("rate_dropped").inc()
            return
        frame = data.rstrip(b"\r\n")
        if len(frame) > self.listener.max_bytes:
            SYSLOG_LIMITED.labels("truncated").inc()
            frame = frame[: self.listener.max_bytes + 1]
        if not frame.strip():
            return
        try:
            self.listener.queue.put_nowait((f"syslog:udp:{peer}", frame))
        except queue.Full:
            SYSLOG_LIMITED.labels("queue_dropped").inc()


class _Partition(StatefulSourcePartition):
    def __init__(
        self,
        host: str,
        port: int,
        batch_size: int,
        idle_timeout_s: float | None,
        max_bytes: int,
        limits: SyslogListener,
    ):
        self.listener = _Listener(host, port, limits, max_bytes)
        self.queue = self.listener.queue
        self.batch_size = batch_size
        self.idle_timeout_s = idle_timeout_s
        self.last_message = time.monotonic()

    def next_batch(self) -> list:
        q = self.queue
        batch: list[tuple[str, bytes]] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(q.get_nowait())
            except queue.Empty:
                break
        QUEUE_DEPTH.labels("syslog").set(q.qsize())
        if not batch:
            if (
                self.idle_timeout_s is not None
                and time.monotonic() - self.last_message > self.idle_timeout_s
            ):
                raise StopIteration
            return []
        self.last_message = time.monotonic()
        RECORDS_IN.labels("syslog").inc(len(batch))
        return [batch]

    def next_awake(self) -> datetime | None:
        return None if not self.queue.empty() else datetime.now(UTC) + _POLL

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.listener.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SyslogSource(FixedPartitionedSource):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5514,
        batch_size: int = 1000,
        idle_timeout_s: float | None = None,
        max_bytes: int = 8192,
        limits: SyslogListener | None = None,
    ):
        self.host, self.port = host, port
        self.batch_size = batch_size
        self.idle_timeout_s = idle_timeout_s
        self.max_bytes = max_bytes
        self.limits = limits or SyslogListener()
        if not _is_loopback(host):
            log.warning(
                "syslog receiver binds %s:%d, not a loopback address: any host that reaches it "
                "can send log lines (and attacks) into the flow; restrict it with a firewall",
                host,
                port,
            )

    def list_parts(self) -> list[str]:
        return ["syslog"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Partition:
        return _Partition(
            self.host,
            self.port,
            self.batch_size,
            self.idle_timeout_s,
            self.max_bytes,
            self.limits,
        )
