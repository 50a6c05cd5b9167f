"""Log sources: syslog over real UDP and TCP sockets, a file tail across rotation and restart."""

from __future__ import annotations

import os
import socket
import threading
import time

from bytewax.testing import run_main
from capture import Capture

from twinwatch.app.services import free_port
from twinwatch.config import load_config
from twinwatch.flows.security import build_log_flow
from twinwatch.flows.sources.syslog import SyslogSource
from twinwatch.flows.sources.tail import TailSource
from twinwatch.schema import DeadLetter, SecurityEvent

CONFIG = load_config(environ={"TWINWATCH__SECURITY__HOSTS": "{gw1: sejong-soc/gw-1}"})

RFC3164 = b"<38>Dec 10 06:55:46 gw1 sshd[24200]: Invalid user webmaster from 192.0.2.10"
RFC5424 = (
    b'<38>1 2026-11-23T01:00:00.123Z gw1 sshd 4321 - [meta x="1"] '
    b"Failed password for root from 192.0.2.11 port 4242 ssh2"
)
FIREWALL = (
    b"<4>Nov 22 23:59:01 gw1 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.7 "
    b"DST=10.0.0.1 LEN=40 PROTO=TCP SPT=4444 DPT=23 WINDOW=1024"
)
MALFORMED = b"this is not syslog at all"


def _send(port: int) -> None:
    for _ in range(100):  # the receiver binds when the flow starts
        try:
            tcp = socket.create_connection(("127.0.0.1", port), timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    else:
        raise AssertionError("syslog receiver did not start")
    with tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(RFC3164, ("127.0.0.1", port))
        udp.sendto(MALFORMED, ("127.0.0.1", port))
        tcp.sendall(RFC5424 + b"\n" + FIREWALL + b"\n")  # newline framing
        tcp.sendall(b"%d %s" % (len(RFC3164), RFC3164))  # octet counting (RFC 6587)
        tcp.sendall(b"\xff\xfe bad bytes\n")


def test_syslog_udp_and_tcp_to_events_and_dead_letters():
    port = free_port()
    influx, alerts, dead = Capture(), Capture(), Capture()
    flow = build_log_flow(
        CONFIG,
        SyslogSource("127.0.0.1", port, idle_timeout_s=1.5),
        influx_sink=influx,
        alert_sink=alerts,
        dead_letter_sink=dead,
    )
    sender = threading.Thread(target=_send, args=(port,))
    sender.start()
    run_main(flow)
    sender.join()
    events = [
        e
        for e in influx.items
        if type(e) is SecurityEvent and e.kind in ("invalid_user", "auth_failure", "fw_deny")
    ]
    got = sorted((e.asset, e.sensor, e.kind, e.user, e.src_ip, e.dst_port) for e in events)
    assert got == sorted(
        [
            ("gw-1", "sshd", "invalid_user", "webmaster", "192.0.2.10", None),
            ("gw-1", "sshd", "invalid_user", "webmaster", "192.0.2.10", None),
            ("gw-1", "sshd", "auth_failure", "root", "192.0.2.11", None),
            ("gw-1", "firewall", "fw_deny", None, "198.51.100.7", 23),
        ]
    )
    rfc5424 = next(e for e in events if e.kind == "auth_failure")
    assert rfc5424.time.isoformat() == "2026-11-23T01:00:00.123000+00:00"
    assert sorted((d.reason, d.topic.split(":")[1]) for d in dead.items) == [
        ("bad_encoding", "tcp"),
        ("bad_log", "udp"),
    ]
    assert all(d.source == "syslog" for d in dead.items)
    assert [d for d in influx.items if type(d) is DeadLetter] == dead.items


def _drain(part) -> list[bytes]:
    """Everything the partition has now (after its poll interval of 0.01 s)."""
    time.sleep(0.02)
    out = []
    while True:
        try:
            batch = part.next_batch()
        except StopIteration:
            return out
        if not batch:
            return out
        out += [line for _, line in batch[0]]


def test_tail_follows_rotation_and_resumes_from_its_offset(tmp_path):
    log = tmp_path / "auth.log"
    log.write_bytes(b"a1\na2\npartial")
    src = TailSource([log], batch_size=10, poll_s=0.01)
    part = src.build_part("tail", str(log), None)
    assert _drain(part) == [b"a1", b"a2"]  # the incomplete line waits for its newline
    with log.open("ab") as f:
        f.write(b" line\na3\n")
    assert _drain(part) == [b"partial line", b"a3"]
    state = part.snapshot()
    part.close()

    # while the flow is down: more lines, then logrotate (rename + new file), then new lines
    with log.open("ab") as f:
        f.write(b"a4\n")
    os.rename(log, tmp_path / "auth.log.1")
    log.write_bytes(b"b1\n")
    part = src.build_part("tail", str(log), state)
    assert _drain(part) + _drain(part) == [b"a4", b"b1"]  # the rest of the old file, then the new

    # rotation while running: the old file is finished before the new one is read
    with log.open("ab") as f:
        f.write(b"b2\n")
    os.rename(log, tmp_path / "auth.log.2")
    with (tmp_path / "auth.log.2").open("ab") as f:
        f.write(b"b3\n")
    log.write_bytes(b"c1\n")
    assert _drain(part) + _drain(part) == [b"b2", b"b3", b"c1"]
    state = part.snapshot()
    part.close()

    # restart without changes: nothing is read twice
    part = src.build_part("tail", str(log), state)
    assert _drain(part) == []
    with log.open("ab") as f:  # copytruncate: emptied in place, then written again (as tail -F,
        f.truncate(0)  # noticed when the file is shorter than the offset read)
        f.write(b"d\n")
    assert _drain(part) + _drain(part) == [b"d"]
    part.close()


def test_replay_stops_at_the_end_of_the_file(tmp_path):
    log = tmp_path / "x.log"
    log.write_bytes(b"one\ntwo\n")
    part = TailSource([log], follow=False).build_part("tail", str(log), None)
    assert part.next_batch() == [[(f"file:{log}", b"one"), (f"file:{log}", b"two")]]
    try:
        part.next_batch()
        raise AssertionError("a replay must stop at the end")
    except StopIteration:
        pass
