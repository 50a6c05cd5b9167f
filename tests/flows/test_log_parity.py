"""One classifier for every transport (issue #11): the same sshd lines published on the MQTT log
topic and sent over syslog (a real socket) give the same events and the same findings; PAM's
copy of a failure is not counted twice on either path."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime

import pytest
from bytewax.testing import TestingSource, run_main
from capture import Capture
from paths import SHARED_DATA

from twinwatch.app.services import free_port
from twinwatch.config import load_config
from twinwatch.engine.logparse import LogParser
from twinwatch.flows.dataflow import build_flow
from twinwatch.flows.security import build_log_flow
from twinwatch.flows.sources.syslog import SyslogSource
from twinwatch.schema import SecurityEvent, SecurityFinding

TOPIC = "city/security/sejong-soc/gw-1/sshd"


@pytest.fixture(scope="module")
def lines():
    path = SHARED_DATA / "loghub" / "OpenSSH_2k.log"
    if not path.is_file():
        pytest.fail(f"{path} missing")
    return path.read_text().splitlines()[:600]  # brute force, enumeration, PAM lines


def _send(port: int, data: bytes) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(data)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _summary(items):
    events = [
        (e.time, e.sensor, e.kind, e.outcome, e.user, e.src_ip)
        for e in items
        if type(e) is SecurityEvent
    ]
    findings = [
        (f.time, f.rule, f.src_ip, f.count, f.window_s, f.users)
        for f in items
        if type(f) is SecurityFinding
    ]
    return events, findings


def test_mqtt_and_syslog_give_the_same_events_and_findings(lines):
    config = load_config(environ={"TWINWATCH__SECURITY__HOSTS": "{LabSZ: sejong-soc/gw-1}"})
    now = datetime.now(UTC)
    parser = LogParser(config)
    times = [parser.parse_line(line, now).time for line in lines]

    # over MQTT: {"time", "line"} payloads on the gateway's sshd log topic
    payloads = [
        (TOPIC, json.dumps({"time": t.isoformat(), "line": line}).encode())
        for t, line in zip(times, lines)
    ]
    mqtt = Capture()
    run_main(
        build_flow(
            config,
            TestingSource([payloads[i : i + 100] for i in range(0, len(payloads), 100)]),
            influx_sink=mqtt,
            alert_sink=Capture(),
            dead_letter_sink=Capture(),
        )
    )

    # over syslog: the same lines on a real TCP socket
    port = free_port()
    syslog = Capture()
    sender = threading.Thread(
        target=_send, args=(port, "".join(f"<38>{line}\n" for line in lines).encode())
    )
    sender.start()
    run_main(
        build_log_flow(
            config,
            SyslogSource("127.0.0.1", port, idle_timeout_s=1.5),
            influx_sink=syslog,
            alert_sink=Capture(),
            dead_letter_sink=Capture(),
        )
    )
    sender.join()

    events_mqtt, findings_mqtt = _summary(mqtt.items)
    events_syslog, findings_syslog = _summary(syslog.items)
    assert len(events_mqtt) >= len(lines)  # "message repeated N times" gives N events
    assert events_mqtt == events_syslog
    assert findings_mqtt == findings_syslog
    rules = {f[1] for f in findings_mqtt}
    assert {"brute_force", "user_enum"} <= rules
    # PAM's line is recorded but is not a failed login on either path
    kinds = [e[2] for e in events_mqtt]
    assert "pam_failure" in kinds
    failures = sum(1 for line in lines if "Failed " in line and "repeated" not in line)
    repeated = sum(
        int(line.split("message repeated ")[1].split()[0])
        for line in lines
        if "message repeated" in line and "Failed " in line
    )
    assert kinds.count("auth_failure") == failures + repeated


def test_the_auth_failures_summary_says_the_real_count():
    """Issue #13: a 60-failure burst read "... 1 in 5 min" ({value} was the event weight)."""
    from twinwatch.engine.parse import Parser
    from twinwatch.engine.plan import Plan
    from twinwatch.engine.shard import Shard
    from twinwatch.schema import Alert

    config = load_config(environ={})
    t0 = datetime.now(UTC).replace(microsecond=0)
    line = "sshd[1]: Failed password for root from 198.51.100.7 port 22 ssh2"
    msgs = [
        (
            TOPIC,
            json.dumps(
                {
                    "time": datetime.fromtimestamp(t0.timestamp() + 2 * i, UTC).isoformat(),
                    "line": line,
                }
            ).encode(),
        )
        for i in range(60)
    ]
    records, dead = Parser(config).split(msgs)
    assert dead == [] and len(records) == 60
    out = Shard(Plan(config)).process(records)
    (fired,) = [a for a in out if type(a) is Alert and a.rule == "auth_failures"]
    assert fired.value == 20.0 and "20 in 5 min" in fired.summary  # fires at the 20th


def test_a_bug_on_one_event_dead_letters_that_event_only(monkeypatch):
    """The security step runs a batch at once (fast) but a detector bug on one event makes only
    that event an internal_error dead letter; the events around it are still detected."""
    from twinwatch.detectors.security import SecurityDetector

    real = SecurityDetector.update

    def buggy(self, t, kind, outcome, user, src_ip, dst_port):
        if user == "boom":
            raise RuntimeError("detector bug")
        return real(self, t, kind, outcome, user, src_ip, dst_port)

    monkeypatch.setattr(SecurityDetector, "update", buggy)
    config = load_config(environ={})
    lines = [
        f"Dec 10 06:55:{i:02d} gw sshd[1]: Failed password for {'boom' if i == 5 else 'root'} "
        f"from 192.0.2.9 port {i} ssh2".encode()
        for i in range(12)
    ]
    influx, dead = Capture(), Capture()
    run_main(
        build_log_flow(
            config,
            TestingSource([[("file:x", line) for line in lines]]),
            influx_sink=influx,
            alert_sink=Capture(),
            dead_letter_sink=dead,
        )
    )
    assert [(d.reason, "detector bug" in d.detail) for d in dead.items] == [
        ("internal_error", True)
    ]
    (bf,) = [f for f in influx.items if type(f) is SecurityFinding and f.rule == "brute_force"]
    assert bf.count == 10.0  # the 11 others were counted: the 10th fires
