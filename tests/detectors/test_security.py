"""Security rules one by one (table-driven, explicit times), their state round trip, the CCTV/IoT
device events over MQTT payloads, and user-name pseudonymisation."""

from __future__ import annotations

import json
import pickle

import pytest
import yaml

from twinwatch.config import EXAMPLE_CONFIG, load_config, parse_config
from twinwatch.detectors.security import SecurityDetector
from twinwatch.engine.logparse import LogParser, pseudonymise
from twinwatch.engine.parse import Parser
from twinwatch.engine.security import SecurityShard
from twinwatch.schema import Alert

IP = "192.0.2.7"


def rules(findings):
    return [f[0] for f in findings]


def test_password_spray_needs_distinct_users():
    det = SecurityDetector(spray_users=3, brute_force_failures=100)
    out = [
        rules(det.update(t, "auth_failure", "failure", u, IP, None))
        for t, u in [(0, "a"), (1, "a"), (2, "b"), (3, "a"), (4, "c"), (5, "d")]
    ]
    assert out == [[], [], [], [], ["password_spray"], []]  # once per episode


def test_success_after_failures_is_reported_and_quiet_logins_are_not():
    det = SecurityDetector(success_after_failures=3, brute_force_failures=100)
    assert det.update(0, "auth_success", "success", "root", IP, None) == []
    for t in (10, 11, 12):
        det.update(t, "auth_failure", "failure", "root", IP, None)
    (f,) = det.update(13, "auth_success", "success", "root", IP, None)
    assert f[:3] == ("success_after_failures", IP, 3.0) and f.window_s == 600.0
    assert det.update(13, "auth_success", "success", "root", "192.0.2.8", None) == []  # other IP
    assert det.update(10_000, "auth_success", "success", "root", IP, None) == []  # window passed


def test_user_enum_and_port_scan_and_window_expiry():
    det = SecurityDetector(enum_users=3, enum_window_s=60, scan_ports=3, scan_window_s=10)
    assert [
        rules(det.update(t, "invalid_user", "failure", u, IP, None))
        for t, u in [(0, "x"), (30, "y"), (70, "z"), (80, "w")]
    ] == [[], [], [], ["user_enum"]]
    assert [
        rules(det.update(t, "fw_deny", "deny", None, IP, p))
        for t, p in [(100, 22), (101, 23), (120, 80), (121, 443), (122, 8080)]
    ] == [[], [], [], [], ["port_scan"]]


def test_brute_force_re_arms_after_the_window_empties():
    det = SecurityDetector(brute_force_failures=2, brute_force_window_s=10)
    hits = [
        rules(det.update(t, "auth_failure", "failure", "root", IP, None)) for t in (0, 1, 2, 50, 51)
    ]
    assert hits == [[], ["brute_force"], [], [], ["brute_force"]]


def test_state_round_trip_gives_identical_findings():
    events = [
        (
            t,
            "auth_failure" if t % 3 else "invalid_user",
            "failure",
            f"u{t % 7}",
            f"192.0.2.{t % 4}",
            None,
        )
        for t in range(0, 600, 7)
    ]
    whole = SecurityDetector(brute_force_failures=5, spray_users=3, enum_users=3)
    a = [whole.update(*e) for e in events]
    half = SecurityDetector(brute_force_failures=5, spray_users=3, enum_users=3)
    b = [half.update(*e) for e in events[:40]]
    restored = SecurityDetector.from_state(
        dict(brute_force_failures=5, spray_users=3, enum_users=3),
        pickle.loads(pickle.dumps(half.to_state())),
    )
    b += [restored.update(*e) for e in events[40:]]
    assert a == b and any(a)


def test_sources_are_bounded():
    det = SecurityDetector(max_sources=10)
    for i in range(100):
        det.update(i, "auth_failure", "failure", "root", f"10.0.0.{i}", None)
    assert len(det._sources) == 10


def test_parameters_are_validated():
    with pytest.raises(ValueError, match="scan_ports"):
        SecurityDetector(scan_ports=0)


@pytest.fixture(scope="module")
def cctv_config():
    """The example city plus a CCTV camera and a door contact at the gateway's site."""
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    site = next(s for s in raw["sites"] if s["id"] == "sejong-soc")
    site["assets"].append(
        {
            "id": "gate-2",
            "kind": "gate",
            "name": "Gate 2",
            "sensors": [
                {
                    "id": "cctv",
                    "quantity": "video_event",
                    "unit": "event",
                    "interval_s": 86400,
                    "kind": "device_event",
                    "detectors": [],
                },
                {
                    "id": "door",
                    "quantity": "door_event",
                    "unit": "event",
                    "interval_s": 86400,
                    "kind": "device_event",
                    "detectors": [],
                },
            ],
        }
    )
    return parse_config(raw, environ={})


def _mqtt(parser, sensor, t, event):
    return parser.parse(
        f"city/security/sejong-soc/gate-2/{sensor}",
        json.dumps(
            {
                "time": f"2026-11-23T01:{t // 60:02d}:{t % 60:02d}Z",
                "event": event,
                "zone": "north fence",
            }
        ).encode(),
    )


def test_cctv_intrusion_and_door_open_correlate_to_a_severe_alert(cctv_config):
    parser = Parser(cctv_config)
    events = [
        _mqtt(parser, "door", 0, "door_open"),
        _mqtt(parser, "cctv", 30, "intrusion"),
        _mqtt(parser, "cctv", 50, "loitering"),
    ]
    assert [(e.sensor, e.kind, e.outcome) for e in events] == [
        ("door", "door_open", "info"),
        ("cctv", "intrusion", "info"),
        ("cctv", "loitering", "info"),
    ]
    out = SecurityShard(cctv_config).process(events)
    alerts = {(a.rule, a.severity) for a in out if type(a) is Alert and a.status == "firing"}
    assert alerts == {
        ("intrusion_door_open", "severe"),
        ("intrusion", "alert"),
        ("loitering", "attention"),
    }
    # door_open alone is not an alert, and a door opened long after an intrusion is no match
    out = SecurityShard(cctv_config).process(
        [_mqtt(parser, "cctv", 0, "intrusion"), _mqtt(parser, "door", 600, "door_open")]
    )
    assert {a.rule for a in out if type(a) is Alert} == {"intrusion"}


def test_device_event_payload_errors_are_dead_letters(cctv_config):
    parser = Parser(cctv_config)
    oks, errs = parser.split(
        [
            (
                "city/security/sejong-soc/gate-2/cctv",
                b'{"time": "2026-11-23T01:00:00Z", "event": "Bad Kind"}',
            ),
            ("city/security/sejong-soc/gate-2/cctv", b'{"time": "2026-11-23T01:00:00Z"}'),
        ]
    )
    assert oks == [] and [e.reason for e in errs] == ["bad_schema", "bad_schema"]


def test_user_names_can_be_pseudonymised(monkeypatch):
    monkeypatch.setenv("TW_TEST_PSEUDO_KEY", "s3cret")
    config = load_config(
        environ={"TWINWATCH__SECURITY__PSEUDONYMISE_KEY": "{env: TW_TEST_PSEUDO_KEY}"}
    )
    line = b"Dec 10 06:55:46 LabSZ sshd[1]: Failed password for alice from 192.0.2.1 port 1 ssh2"
    (ev,), _ = LogParser(config).split([("file:x", line)])
    assert ev.user == pseudonymise("alice", b"s3cret") != pseudonymise("alice", b"other")
    assert ev.user.startswith("u-") and "alice" not in ev.user and ev.src_ip == "192.0.2.1"
    (plain,), _ = LogParser(load_config(environ={})).split([("file:x", line)])
    assert plain.user == "alice"


def test_low_and_slow_spray_is_caught_by_the_spray_rule_itself():
    """Issue #13: one attempt every 7 minutes, each with a different user: never 5 users in
    600 s, but the slow window (8 users in 24 h) catches it at the 8th attempt."""
    det = SecurityDetector()
    found = []
    for i in range(12):
        found += [
            (i, f) for f in det.update(i * 420.0, "auth_failure", "failure", f"u{i}", IP, None)
        ]
    ((i, f),) = found
    assert (i, f.rule, f.count, f.window_s) == (7, "password_spray", 8.0, 86400.0)
    assert f.src_ip == IP and f.sources == (IP,) and len(f.users) == 8


def test_a_typo_followed_by_a_login_is_no_spray():
    det = SecurityDetector(spray_users=3)
    out = []
    for t, u in enumerate(["ann", "bob", "cy", "dee"]):  # NAT: four users mistype, then log in
        out += det.update(2 * t, "auth_failure", "failure", u, IP, None)
        out += det.update(2 * t + 1, "auth_success", "success", u, IP, None)
    assert rules(out) == []


def test_distributed_spray_the_same_users_from_many_sources():
    det = SecurityDetector(distributed_sources=6, distributed_users=3)
    out = []
    for k in range(8):  # 8 addresses, each tries the same 3 users once
        for j, user in enumerate(("admin", "oracle", "test")):
            out += det.update(k * 60 + j, "auth_failure", "failure", user, f"203.0.113.{k}", None)
    (f,) = [f for f in out if f.rule == "distributed_spray"]
    assert f.count == 6.0 and len(f.sources) == 6 and set(f.users) == {"admin", "oracle", "test"}
    assert f.src_ip is None  # an asset-wide finding: the sources are listed instead
    assert rules(out).count("brute_force") == 0  # no single source is a brute force


def test_credential_stuffing_many_users_once_each():
    det = SecurityDetector(stuffing_users=20, spray_users=1000, slow_spray_users=1000)
    out = []
    for i in range(30):
        kind, outcome = ("auth_success", "success") if i == 25 else ("auth_failure", "failure")
        out += det.update(i * 30.0, kind, outcome, f"user{i}@example.org", IP, None)
    (f,) = [f for f in out if f.rule == "credential_stuffing"]
    assert f.count == 20.0 and f.src_ip == IP
    # a spray retries the same dozen users, round after round: many attempts per user
    det = SecurityDetector()
    out = [
        f
        for i in range(120)
        for f in det.update(i * 30.0, "auth_failure", "failure", f"u{i % 12}", IP, None)
    ]
    assert "credential_stuffing" not in rules(out) and "password_spray" in rules(out)


def test_cross_source_success_after_failures_elsewhere():
    det = SecurityDetector(cross_source_failures=5, brute_force_failures=100)
    for k in range(6):
        det.update(k * 100.0, "auth_failure", "failure", "root", f"198.51.100.{k}", None)
    (f,) = det.update(700.0, "auth_success", "success", "root", "192.0.2.200", None)
    assert f.rule == "cross_source_success" and f.src_ip == "192.0.2.200" and f.count == 6.0
    assert f.users == ("root",) and "198.51.100.5" in f.sources
    # the same login pattern from the failing address itself is success_after_failures' job
    assert det.update(800.0, "auth_success", "success", "root", "192.0.2.200", None) == []
    # one address guessing an account, then its owner logging in from the office: brute force,
    # not a cross-source takeover (distinct sources count, not failures)
    for k in range(20):
        det.update(900.0 + k, "auth_failure", "failure", "admin", "198.51.100.99", None)
    out = det.update(1000.0, "auth_success", "success", "admin", "10.20.1.5", None)
    assert "cross_source_success" not in rules(out)


def test_slow_port_scan_one_port_every_ten_minutes():
    det = SecurityDetector()
    found = [
        f for i in range(30) for f in det.update(i * 600.0, "fw_deny", "deny", None, IP, 1000 + i)
    ]
    (f,) = found
    assert (f.rule, f.count, f.window_s) == ("port_scan", 25.0, 86400.0)


def test_findings_are_keyed_on_the_events_source_address():
    """Issue #15: a user name that names another address cannot steer it into a finding."""
    config = load_config(environ={})
    parser = LogParser(config)
    line = (
        "Dec 10 06:55:46 gw sshd[1]: Failed password for invalid user x from 10.0.0.5 port 22 "
        "ssh2 from 203.0.113.9 port 4242 ssh2"
    )
    events, _ = parser.split([("file:x", line.encode())] * 10)
    out = SecurityShard(config).process(events)
    (alert,) = [a for a in out if type(a) is Alert and a.rule == "brute_force"]
    assert (
        alert.details["src_ip"] == "203.0.113.9"
        and "10.0.0.5 port 22" not in alert.details["src_ip"]
    )
    assert "from 203.0.113.9" in alert.summary
