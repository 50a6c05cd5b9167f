"""The syslog listener's limits (issue #15), on real sockets: one thread for any number of
connections, frames cut without buffering them whole, connection and rate limits, metrics."""

from __future__ import annotations

import logging
import socket
import threading
import time

from bytewax.testing import run_main
from capture import Capture
from prometheus_client import REGISTRY

from twinwatch.app.services import free_port
from twinwatch.config import SyslogListener, load_config
from twinwatch.flows.security import build_log_flow
from twinwatch.flows.sources.syslog import Framer, SyslogSource
from twinwatch.schema import DeadLetter, SecurityEvent

LINE = b"<38>Dec 10 06:55:46 gw1 sshd[1]: Invalid user u%d from 192.0.2.10"


def _limited(limit: str) -> float:
    return REGISTRY.get_sample_value("twinwatch_syslog_limited_total", {"limit": limit}) or 0.0


def _until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _part(**limits):
    src = SyslogSource("127.0.0.1", 0, batch_size=10_000, limits=SyslogListener(**limits))
    return src.build_part("syslog", "syslog", None)


def _drain(part, n, timeout=10.0):
    got = []
    _until(
        lambda: got.extend(b for batch in part.next_batch() for b in batch) or len(got) >= n,
        timeout,
        f"{n} frames",
    )
    return got


def test_framer_cuts_a_10_mb_frame_without_buffering_it():
    framer = Framer(8192)
    out, peak = [], 0
    big = b"<13>Nov  9 10:00:00 h app: " + b"x" * (10 << 20) + b"\n"
    for i in range(0, len(big), 65536):
        out += framer.feed(big[i : i + 65536])
        peak = max(peak, len(framer.buf) + len(framer.frame))
    out += framer.feed(b"<13>Nov  9 10:00:01 h app: after\n")
    assert peak <= 8192 + 65536  # never the whole frame
    assert [len(f) for f in out] == [8193, len(b"<13>Nov  9 10:00:01 h app: after")]
    # octet counting, split anywhere, and an oversized counted frame
    framer = Framer(16)
    stream = b"5 <1>ab" + b"30 <1>" + b"y" * 27 + b"3 <1>"
    got = [f for i in range(len(stream)) for f in framer.feed(stream[i : i + 1])]
    assert got == [b"<1>ab", b"<1>" + b"y" * 14, b"<1>"]


def test_300_idle_connections_use_no_thread_and_the_limit_refuses_more():
    part = _part(max_connections=300, idle_timeout_s=60)
    port = part.listener.port
    threads = threading.active_count()
    refused = _limited("refused")
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(310)]
    try:
        _until(lambda: part.listener.connections == 300, what="300 connections")
        _until(lambda: _limited("refused") - refused == 10, what="10 refused")
        assert threading.active_count() <= threads + 1
        assert REGISTRY.get_sample_value("twinwatch_syslog_connections") == 300
        socks[0].sendall(LINE % 1 + b"\n")  # the accepted ones still work
        assert _drain(part, 1) == [("syslog:tcp:127.0.0.1", LINE % 1)]
    finally:
        for s in socks:
            s.close()
        part.close()


def test_idle_connections_are_closed():
    part = _part(idle_timeout_s=0.3)
    before = _limited("idle_closed")
    try:
        s = socket.create_connection(("127.0.0.1", part.listener.port))
        _until(lambda: _limited("idle_closed") > before, what="idle close")
        _until(lambda: part.listener.connections == 0, what="closed")
        s.close()
    finally:
        part.close()


def test_rate_limit_slows_tcp_without_loss_and_drops_udp_beyond_it():
    part = _part(rate_lines_per_s=200, rate_burst=20)
    port = part.listener.port
    try:
        throttled = _limited("throttled")
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"".join(LINE % i + b"\n" for i in range(120)))
            got = _drain(part, 120)
        assert [line for _, line in got] == [LINE % i for i in range(120)]  # all, in order
        assert time.monotonic() - t0 >= 0.4  # 100 beyond the burst at 200/s
        assert _limited("throttled") > throttled
        dropped = _limited("rate_dropped")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            for i in range(200):
                u.sendto(LINE % i, ("127.0.0.1", port))
        _until(lambda: _limited("rate_dropped") > dropped, what="UDP drops")
    finally:
        part.close()


def test_a_10_mb_frame_is_a_too_large_dead_letter_and_the_next_line_is_read():
    config = load_config(environ={})
    port = free_port()
    influx, dead = Capture(), Capture()

    def send():
        _until(lambda: _connectable(port), what="listener")
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"<13>Nov  9 10:00:00 h app: " + b"x" * (10 << 20) + b"\n")
            s.sendall(LINE % 7 + b"\n")

    sender = threading.Thread(target=send)
    sender.start()
    run_main(
        build_log_flow(
            config,
            SyslogSource("127.0.0.1", port, idle_timeout_s=2.0),
            influx_sink=influx,
            alert_sink=Capture(),
            dead_letter_sink=dead,
        )
    )
    sender.join()
    assert [(d.reason, len(d.payload) <= 512) for d in dead.items] == [("too_large", True)]
    events = [e for e in influx.items if type(e) is SecurityEvent]
    assert [(e.kind, e.user) for e in events] == [("invalid_user", "u7")]
    assert all(type(d) is DeadLetter for d in influx.items if type(d) is not SecurityEvent)


def _connectable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_binding_beyond_loopback_warns(caplog):
    with caplog.at_level(logging.WARNING):
        SyslogSource("127.0.0.1", 5514)
        assert not caplog.records
        SyslogSource("0.0.0.0", 5514)  # constructing binds nothing yet
    assert "not a loopback address" in caplog.records[0].getMessage()
