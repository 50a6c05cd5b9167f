"""A syslog receiver as a Bytewax source: UDP and TCP on one loopback port.

    SyslogSource(host="127.0.0.1", port=5514, idle_timeout_s=None)

Items are batches of ``(origin, line bytes)`` with origin ``syslog:udp:<peer>`` or
``syslog:tcp:<peer>``; ``twinwatch.engine.logparse`` parses RFC 3164 and RFC 5424 and
dead-letters the rest.
UDP: one message per datagram. TCP (RFC 6587): octet counting (``<len> <msg>``) or newline
framing, detected per frame. A frame longer than ``max_bytes`` is cut there and passed on, so the
parse step dead-letters it as ``too_large`` and the connection goes on.

One partition (the port can be bound once). Network input has no offset to resume from: what
arrives while the flow is down is lost unless the sender queues it (rsyslog's action queue).
"""

from __future__ import annotations

import queue
import re
import socket
import socketserver
import threading
import time
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from twinwatch.metrics import QUEUE_DEPTH, RECORDS_IN

__all__ = ["SyslogSource"]

_POLL = timedelta(milliseconds=50)
_OCTETS = re.compile(rb"(\d{1,7}) <")


def _frames(rfile, max_bytes: int):
    """Yield the frames of a TCP syslog stream: octet-counted (``<len> <PRI>...``, RFC 6587
    3.4.1) or newline-terminated (3.4.2), decided per frame from its first bytes."""
    while True:
        head = rfile.peek(16)[:16]
        if not head:
            return
        m = _OCTETS.match(head)
        if m is None:
            yield _line_rest(rfile, max_bytes)
            continue
        rfile.read(len(m.group(1)) + 1)
        n = int(m.group(1))
        data = rfile.read(min(n, max_bytes + 1))
        if n > len(data):
            rfile.read(n - len(data))  # skip the rest of an oversized frame
        yield data


def _line_rest(rfile, max_bytes: int) -> bytes:
    line = rfile.readline(max_bytes + 1)
    if len(line) > max_bytes and not line.endswith(b"\n"):
        while True:  # drop the rest of an oversized line, keep what fits (dead-lettered later)
            more = rfile.readline(65536)
            if not more or more.endswith(b"\n"):
                break
    return line.rstrip(b"\r\n")


class _Partition(StatefulSourcePartition):
    def __init__(
        self, host: str, port: int, batch_size: int, idle_timeout_s: float | None, max_bytes: int
    ):
        self.queue: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self.batch_size = batch_size
        self.idle_timeout_s = idle_timeout_s
        self.last_message = time.monotonic()
        q = self.queue

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                origin = f"syslog:tcp:{self.client_address[0]}"
                for frame in _frames(self.rfile, max_bytes):
                    if frame:
                        q.put((origin, frame))

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.tcp = socketserver.ThreadingTCPServer((host, port), Handler)
        self.tcp.daemon_threads = True
        self.udp = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
        )
        self.udp.bind((host, self.tcp.server_address[1]))
        self.udp.settimeout(0.2)
        self.running = True
        threading.Thread(target=self.tcp.serve_forever, daemon=True, name="syslog-tcp").start()
        threading.Thread(
            target=self._udp_loop, args=(max_bytes,), daemon=True, name="syslog-udp"
        ).start()

    def _udp_loop(self, max_bytes: int) -> None:
        while self.running:
            try:
                data, peer = self.udp.recvfrom(max(max_bytes + 1, 65535))
            except TimeoutError:
                continue
            except OSError:
                return
            self.queue.put((f"syslog:udp:{peer[0]}", data.rstrip(b"\r\n")))

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
        self.running = False
        self.tcp.shutdown()
        self.tcp.server_close()
        self.udp.close()


class SyslogSource(FixedPartitionedSource):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5514,
        batch_size: int = 1000,
        idle_timeout_s: float | None = None,
        max_bytes: int = 8192,
    ):
        self.host, self.port = host, port
        self.batch_size = batch_size
        self.idle_timeout_s = idle_timeout_s
        self.max_bytes = max_bytes

    def list_parts(self) -> list[str]:
        return ["syslog"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Partition:
        return _Partition(
            self.host, self.port, self.batch_size, self.idle_timeout_s, self.max_bytes
        )
