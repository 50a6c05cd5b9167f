"""Security detection on real logs: loghub's OpenSSH, Linux and Apache samples.

The logs are from loghub (Zhu et al., "Loghub: A Large Collection of System Log Datasets for
AI-driven Log Analytics", ISSRE 2023; https://github.com/logpai/loghub), read from
../shared/data/loghub, never copied into the repository.

Ground truth for OpenSSH_2k.log is derived here from the raw lines with explicit rules, without
the project's parser or detector:

- a failed login is a line ``Failed <method> for [invalid user ]<user> from <ip> port <n>``
  (the user name may hold spaces: it runs up to the last ``from``); sshd's
  ``message repeated N times: [ Failed ... ]`` is N failed logins (PAM's duplicate
  ``authentication failure`` lines are not counted: they repeat sshd's own line);
- brute force: >= 10 failed logins from one IP within 300 s (events with t > t_now - 300 count);
  the expected detection time is the line at which the count reaches 10; a new episode of the
  same IP starts only after a later line mentioning the IP saw fewer than 10 in the window;
- invalid-user enumeration: >= 5 distinct user names in ``Invalid user <user> from <ip>`` lines
  from one IP within 600 s; expected at the line where the 5th distinct name appears.

The detector must find exactly those IPs, at exactly those lines' times.
"""

from __future__ import annotations

import os
import re
from collections import deque
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest
from bytewax.testing import run_main
from capture import Capture
from paths import SHARED_DATA

from twinwatch.config import load_config
from twinwatch.detectors.security import SecurityDetector
from twinwatch.engine.logparse import LogParser
from twinwatch.engine.security import SecurityShard
from twinwatch.flows.security import build_log_flow
from twinwatch.flows.sources.tail import TailSource
from twinwatch.schema import Alert, AnomalyScore, SecurityEvent, SecurityFinding

LOGHUB = SHARED_DATA / "loghub"


def _log(name: str) -> Path:
    path = LOGHUB / name
    if not path.is_file():
        msg = f"loghub sample {path} is missing (../shared/data/loghub)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def config():
    return load_config(environ={"TWINWATCH__SERVICES__ALERTMANAGER__URL": "http://127.0.0.1:9"})


# sshd writes user names verbatim, spaces included ("Invalid user  0101 from ..." is the user
# " 0101"), and the address after them: a user name runs up to the last " from <IP>".
_FAILED = re.compile(r"Failed \S+ for (?:invalid user )?.* from (\d+\.\d+\.\d+\.\d+) port \d+")
_REPEAT = re.compile(
    r"message repeated (\d+) times: \[ Failed \S+ for (?:invalid user )?.* "
    r"from (\d+\.\d+\.\d+\.\d+) port \d+"
)
_INVALID = re.compile(r"Invalid user (.*) from (\d+\.\d+\.\d+\.\d+)$")


def _stamp(line: str) -> str:
    return line[:15]  # "Dec 10 06:55:46"


def ground_truth(lines, pattern_events, threshold, window_s, distinct):
    """{ip: [stamps of the lines where an episode starts]}, by brute force over all lines.

    An episode starts at the line where the count first reaches the threshold; the next one can
    only start after a later line mentioning the IP saw the count below the threshold again.
    """
    seen: dict[str, deque] = {}
    active: set[str] = set()
    found: dict[str, list[str]] = {}
    for line in lines:
        t = datetime.strptime("2000 " + _stamp(line), "%Y %b %d %H:%M:%S").timestamp()
        hits = pattern_events(line)
        for ip, item in hits:
            seen.setdefault(ip, deque()).append((t, item))
        for ip in {ip for ip, _ in hits} | {ip for ip in seen if ip in line}:
            q = seen[ip]
            while q and q[0][0] <= t - window_s:
                q.popleft()
            n = len({i for _, i in q}) if distinct else len(q)
            if n >= threshold and ip not in active:
                active.add(ip)
                found.setdefault(ip, []).append(_stamp(line))
            elif n < threshold:
                active.discard(ip)
    return found


def _failures(line):
    m = _REPEAT.search(line)
    if m:
        return [(m.group(2), None)] * int(m.group(1))
    m = _FAILED.search(line)
    return [(m.group(1), None)] if m else []


def _invalid(line):
    m = _INVALID.search(line)
    return [(m.group(2), m.group(1))] if m else []


def _findings(config, path, tmp_path):
    influx, alerts, dead = Capture(), Capture(), Capture()
    run_main(
        build_log_flow(
            config,
            TailSource([path], batch_size=200, follow=False),
            influx_sink=influx,
            alert_sink=alerts,
            dead_letter_sink=dead,
        )
    )
    return influx.items, alerts.items, dead.items


def test_openssh_brute_force_and_enumeration_match_ground_truth(config, tmp_path):
    path = _log("OpenSSH_2k.log")
    lines = path.read_text().splitlines()
    det = config.security.detection
    assert (det.brute_force_failures, det.brute_force_window_s) == (10, 300)
    assert (det.enum_users, det.enum_window_s) == (5, 600)
    truth_bf = ground_truth(lines, _failures, 10, 300, distinct=False)
    truth_enum = ground_truth(lines, _invalid, 5, 600, distinct=True)
    assert len(truth_bf) >= 5 and truth_enum  # the sample really has attacks

    influx, alerts, dead = _findings(config, path, tmp_path)
    assert dead == []
    tz = ZoneInfo(config.city.timezone)

    def stamp(t):
        return t.astimezone(tz).strftime("%b %d %H:%M:%S")

    # the detector, per source IP, over the events the flow parsed
    det = SecurityDetector(**msgspec.structs.asdict(config.security.detection))
    found: dict[str, dict[str, list[str]]] = {}
    for e in (e for e in influx if type(e) is SecurityEvent):
        for f in det.update(e.time.timestamp(), e.kind, e.outcome, e.user, e.src_ip, e.dst_port):
            found.setdefault(f.rule, {}).setdefault(f.src_ip, []).append(stamp(e.time))
    assert found["brute_force"] == truth_bf  # the same IPs, at the same lines' times
    assert found["user_enum"] == truth_enum

    # the flow recorded each finding as an anomaly at those times
    def anomalies(rule):
        return sorted(
            stamp(s.time) for s in influx if type(s) is AnomalyScore and s.hits == (rule,)
        )

    assert anomalies("brute_force") == sorted(t for ts in truth_bf.values() for t in ts)
    assert anomalies("user_enum") == sorted(t for ts in truth_enum.values() for t in ts)
    firing = [a for a in alerts if a.status == "firing" and a.rule == "brute_force"]
    assert firing and all(a.severity == "alert" and a.domain == "security" for a in firing)
    first_ip = min(truth_bf, key=lambda ip: truth_bf[ip][0])
    # the alert says the real count and window, and carries them (and the IP) as details
    assert f"10 failed logins from {first_ip} in 300 s" in firing[0].summary
    assert firing[0].value == 10.0
    assert firing[0].details["src_ip"] == first_ip and firing[0].details["window_s"] == "300"
    # every per-IP finding is stored as a security_finding record that carries the IP
    stored = sorted(
        (stamp(f.time), f.src_ip)
        for f in influx
        if type(f) is SecurityFinding and f.rule == "brute_force"
    )
    assert stored == sorted((t, ip) for ip, ts in truth_bf.items() for t in ts)


@pytest.mark.parametrize("name", ["Linux_2k.log", "Apache_2k.log", "OpenSSH_2k.log"])
def test_template_findings_are_quiet_on_normal_logs(config, name):
    """drain3 learns every template, but a new template is a finding only when it is rare for
    its source's own baseline: at most one template/severity alert per source-hour after the
    warm-up (benchmarks/logs_quiet.py runs all 14 samples)."""
    events, _ = LogParser(config).split([("file:x", raw) for raw in _log(name).open("rb")])
    shard = SecurityShard(config)
    out = shard.process(events)
    templates = shard.assets["logs/unmapped"].templates
    assert templates.template_count >= 5  # it did learn the sample's templates
    rules = ("new_template", "template_rate", "severity_spike")
    alerts = [a for a in out if type(a) is Alert and a.status == "firing" and a.rule in rules]
    span_h = (events[-1].time - events[0].time).total_seconds() / 3600
    warm_h = config.security.templates.warmup_s / 3600
    assert len(alerts) <= max(span_h - warm_h, 1.0), [a.summary for a in alerts]


@pytest.mark.parametrize("name, split", [("Linux_2k.log", 0.5), ("Apache_2k.log", 0.25)])
def test_restart_resumes_without_realerting_old_templates(config, name, split):
    """A shard restored from its snapshot half-way gives exactly the findings an uninterrupted
    run gives for the second half (templates, baselines and rules all restored), and knows
    every template learned before the restart."""
    quick = msgspec.structs.replace(
        config.security,
        templates=msgspec.structs.replace(config.security.templates, warmup_s=0.0, warmup_lines=50),
    )
    config = msgspec.structs.replace(config, security=quick)
    events, _ = LogParser(config).split([("file:x", raw) for raw in _log(name).open("rb")])
    half = int(len(events) * split)

    def findings(outputs):
        return [(o.time, o.rule, o.count) for o in outputs if type(o) is SecurityFinding]

    whole = SecurityShard(config)
    whole.process(events[:half])
    known = whole.assets["logs/unmapped"].templates.template_count
    second = findings(whole.process(events[half:]))
    assert second  # the second half has findings to compare

    import pickle

    before = SecurityShard(config)
    before.process(events[:half])
    restored = SecurityShard(config, pickle.loads(pickle.dumps(before.to_state())))
    assert restored.assets["logs/unmapped"].templates.template_count == known
    assert findings(restored.process(events[half:])) == second


def test_a_new_error_template_on_a_quiet_source_alerts(config):
    """After the warm-up on Apache's normal log, a never-seen line at error severity is a
    new_template alert (attention) that resolves after security.clear_s of quiet."""
    events, _ = LogParser(config).split(
        [("file:x", raw) for raw in _log("Apache_2k.log").open("rb")]
    )
    shard = SecurityShard(config)
    shard.process(events)
    last = events[-1].time.strftime("%a %b %d %H:%M:%S %Y")
    line = f"[{last}] [error] mod_security: request body of 9999999 bytes refused, core dumped"
    new, _ = LogParser(config).split([("file:x", line.encode())])
    out = shard.process(new)
    (alert,) = [a for a in out if type(a) is Alert]
    assert (alert.rule, alert.status, alert.severity) == ("new_template", "firing", "attention")
    assert "core dumped" in alert.summary and alert.details["count"] == "4"  # error weight
