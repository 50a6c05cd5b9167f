"""A lean MQTT 3.1.1 subscriber for the flow's hot path: buffered reads, batched PUBACKs.

    sub = Subscriber(cfg, client_id)
    present = sub.connect()                 # the session-present flag (MqttError if refused)
    sub.subscribe(filters, 1, on_message)   # and sub.unsubscribe(filters, on_message)
    sub.read(on_message)                    # what the socket holds: on_message(topic, payload, mid)
    sub.ack(mids); sub.flush()              # one write for a whole batch of PUBACKs

Why not paho-mqtt here (it stays for publishers and the start-up check): paho reads every packet
with three ``recv`` calls and a ``select``, builds an ``MQTTMessage`` and takes two locks per
message, and sends one PUBACK per ``ack()`` call, each waking its network thread. Measured here
(drain of a persistent session holding 100,000 QoS 1 messages, ``benchmarks/scale.py --drain``):
paho 26-40k msg/s, gmqtt 57k msg/s, this module 165-370k msg/s. The subscriber side of MQTT 3.1.1
is small (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBLISH in, PUBACK out, PING, DISCONNECT); it is
tested against the real Mosquitto (tests/flows/test_mqtt_source.py, tests/e2e/).

Not thread-safe: one thread owns the socket (the source's network thread). TLS and
username/password come from the same ``services.mqtt`` settings as paho's clients.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable

from twinwatch.config import MqttService
from twinwatch.mqtt import MqttError, describe

__all__ = ["Subscriber", "CONNACK_ERRORS", "OnMessage", "tls_context"]

OnMessage = Callable[[str, bytes, "int | None"], None]  # (topic, payload, packet id or None)

CONNACK_ERRORS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}
_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"
_READ = 1 << 18  # bytes per recv: a few thousand messages


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(header: int, body: bytes) -> bytes:
    return bytes([header]) + _varint(len(body)) + body


def tls_context(cfg: MqttService) -> ssl.SSLContext:
    t = cfg.tls
    ctx = ssl.create_default_context(cafile=t.ca_file)
    if t.cert_file:
        ctx.load_cert_chain(t.cert_file, t.key_file)
    if not t.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Subscriber:
    """One connection with one session. ``read`` and ``flush`` never block for long: the socket
    is non-blocking once connected."""

    def __init__(self, cfg: MqttService, client_id: str, *, clean_session: bool = False):
        self.cfg = cfg
        self.client_id = client_id
        self.clean_session = clean_session
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.out = bytearray()
        self.next_id = 0
        self.last_out = self.last_in = 0.0
        self.pending: dict[int, tuple[str, list]] = {}  # packet id -> (kind, answer)

    # --- connection -----------------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> bool:
        """Connect, send CONNECT and wait for CONNACK. Returns the session-present flag.
        Raises OSError/ssl.SSLError if unreachable, MqttError if the broker refuses us."""
        cfg = self.cfg
        sock = socket.create_connection((cfg.host, cfg.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if cfg.tls.enabled:
                sock = tls_context(cfg).wrap_socket(sock, server_hostname=cfg.host)
            flags = 0 if not self.clean_session else 0x02
            payload = _string(self.client_id)
            if cfg.username is not None:
                flags |= 0x80
                payload += _string(cfg.username)
                if cfg.password is not None:
                    flags |= 0x40
                    payload += _string(cfg.password.reveal())
            body = b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", cfg.keepalive_s)
            sock.sendall(_packet(0x10, body + payload))
            head = b""
            while len(head) < 4:
                chunk = sock.recv(4 - len(head))
                if not chunk:
                    raise ConnectionError("the broker closed the connection before CONNACK")
                head += chunk
            if head[0] != 0x20:
                raise MqttError(f"{describe(cfg)}: expected CONNACK, got packet {head[0]:#x}")
            if head[3]:
                who = f"user {cfg.username!r}" if cfg.username else "an anonymous client"
                why = CONNACK_ERRORS.get(head[3], head[3])
                raise MqttError(
                    f"{describe(cfg)} refused the connection: {why} "
                    f"({who}; services.mqtt.username/password)"
                )
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock
        self.buf.clear()
        self.out.clear()
        self.pending.clear()
        self.last_out = self.last_in = time.monotonic()
        return bool(head[2] & 1)

    def close(self, graceful: bool = True) -> None:
        sock, self.sock = self.sock, None
        if sock is None:
            return
        if graceful:
            try:
                sock.setblocking(True)
                sock.settimeout(2)
                if self.out:
                    sock.sendall(bytes(self.out))
                sock.sendall(_DISCONNECT)
            except OSError:
                pass
        self.out.clear()
        sock.close()

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    # --- requests that wait for an answer (at connect time only) ---------------------------

    def _request(
        self, header: int, kind: str, body: bytes, timeout: float, on_message: OnMessage
    ) -> bytes:
        """Send a request with a packet id and read until its answer; messages that arrive
        meanwhile go to ``on_message`` (required once the session may hold messages)."""
        self.next_id = self.next_id % 65535 + 1
        pid = self.next_id
        answer: list = []
        self.pending[pid] = (kind, answer)
        self.out += _packet(header, struct.pack("!H", pid) + body)
        deadline = time.monotonic() + timeout
        while not answer:
            self.flush()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind.upper()} within {timeout:g}s")
            self.wait(0.05, write=bool(self.out))
            self.read(on_message)
        return answer[0]

    def subscribe(
        self,
        filters: Iterable[str],
        qos: int,
        on_message: OnMessage,
        chunk: int = 500,
        timeout: float = 30.0,
    ) -> None:
        """Subscribe (in chunks of ``chunk`` filters per packet). Messages that arrive meanwhile
        (a persistent session's backlog) go to ``on_message``. MqttError if one is refused."""
        items = list(filters)
        for i in range(0, len(items), chunk):
            part = items[i : i + chunk]
            body = b"".join(_string(f) + bytes([qos]) for f in part)
            codes = self._request(0x82, "suback", body, timeout, on_message)
            refused = [f for f, c in zip(part, codes) if c == 0x80]
            if refused:
                raise MqttError(
                    f"{describe(self.cfg)} refused the subscription to {refused[0]!r}"
                    + (f" and {len(refused) - 1} more" if len(refused) > 1 else "")
                    + " (check the broker's ACL for this user)"
                )

    def unsubscribe(
        self,
        filters: Iterable[str],
        on_message: OnMessage,
        chunk: int = 500,
        timeout: float = 30.0,
    ) -> None:
        items = list(filters)
        for i in range(0, len(items), chunk):
            body = b"".join(_string(f) for f in items[i : i + chunk])
            self._request(0xA2, "unsuback", body, timeout, on_message)

    # --- the hot path ----------------------------------------------------------------------

    def wait(self, timeout: float, write: bool = False) -> bool:
        """Wait until the socket is readable (or writable, with ``write``); True if it is."""
        import select

        sock = self.sock
        if sock is None:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        r, w, _ = select.select([sock], [sock] if write else [], [], timeout)
        return bool(r or w)

    def read(self, on_message: OnMessage, limit: int = 0) -> int:
        """Read what the socket holds and hand each PUBLISH to ``on_message(topic, payload,
        mid)`` (mid None for QoS 0). Stops after ``limit`` messages if given (the rest stays in
        the buffer). Returns the number of messages. ConnectionError if the connection is gone."""
        sock = self.sock
        if sock is None:
            raise ConnectionError("not connected")
        buf = self.buf
        if not limit or len(buf) < _READ:
            try:
                data = sock.recv(_READ)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                data = None
            except OSError as e:
                raise ConnectionError(str(e) or type(e).__name__) from None
            if data is not None:
                if not data:
                    raise ConnectionError("the broker closed the connection")
                buf += data
                self.last_in = time.monotonic()
        n = 0
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            header = buf[pos]
            i = pos + 1
            length = 0
            shift = 0
            while True:
                if i >= end:
                    length = -1
                    break
                byte = buf[i]
                i += 1
                length |= (byte & 127) << shift
                shift += 7
                if not byte & 128:
                    break
                if shift > 21:
                    raise ConnectionError("malformed remaining length from the broker")
            if length < 0 or i + length > end:
                break
            kind = header & 0xF0
            if kind == 0x30:  # PUBLISH
                tlen = (buf[i] << 8) | buf[i + 1]
                j = i + 2 + tlen
                topic = buf[i + 2 : j].decode("utf-8", "replace")
                qos = (header >> 1) & 3
                mid = None
                if qos:
                    if qos == 2:
                        raise ConnectionError("the broker sent QoS 2 to a QoS <= 1 subscription")
                    mid = (buf[j] << 8) | buf[j + 1]
                    j += 2
                on_message(topic, bytes(buf[j : i + length]), mid)
                n += 1
            elif kind in (0x90, 0xB0):  # SUBACK, UNSUBACK
                pid = (buf[i] << 8) | buf[i + 1]
                kind_answer = self.pending.pop(pid, None)
                if kind_answer is not None:
                    kind_answer[1].append(bytes(buf[i + 2 : i + length]))
            elif kind == 0xD0:  # PINGRESP
                pass
            pos = i + length
            if limit and n >= limit:
                break
        if pos:
            del buf[:pos]
        return n

    def ack(self, mids: Iterable[int]) -> None:
        """Queue PUBACKs for these packet ids (sent by the next ``flush``, in one write)."""
        pack = struct.Struct("!BBH").pack
        self.out += b"".join([pack(0x40, 2, m) for m in mids])

    def flush(self) -> None:
        """Send what is queued (PUBACKs, requests) and a PINGREQ when the keepalive is due."""
        sock = self.sock
        if sock is None:
            return
        now = time.monotonic()
        keepalive = self.cfg.keepalive_s
        if keepalive and now - self.last_out > keepalive / 2 and not self.out:
            self.out += _PINGREQ
        if keepalive and now - self.last_in > 1.5 * keepalive + 5:
            raise ConnectionError(f"nothing from the broker for {now - self.last_in:.0f} s")
        while self.out:
            try:
                sent = sock.send(self.out)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as e:
                raise ConnectionError(str(e) or type(e).__name__) from None
            del self.out[:sent]
            self.last_out = now
