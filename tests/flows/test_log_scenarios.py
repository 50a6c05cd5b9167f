"""Labelled security scenarios (twinwatch.app.simulator.security_logs) through the parser and the
security shard of the log flow: each attack kind is caught by the rule meant for it, and the
normal background (five formats, cron storm, nightly backup, deploy) raises no alert once its
templates are learned from the day before (``twinwatch logs --learn``).
``benchmarks/logs_attacks.py`` runs the same with a full day of background and reports delays."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from twinwatch.app.simulator.security_logs import ATTACKS, SCENARIO_SECURITY, attack, background
from twinwatch.config import EXAMPLE_CONFIG, parse_config
from twinwatch.engine.logparse import LogParser
from twinwatch.engine.security import SecurityShard, learn
from twinwatch.schema import Alert, SecurityFinding

START = 1764547200.0  # 2025-12-01 00:00 UTC
HOUR = 3600.0


@pytest.fixture(scope="module")
def config():
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    raw["city"]["timezone"] = "UTC"
    raw["security"] = SCENARIO_SECURITY
    return parse_config(raw, environ={})


def _events(config, lines):
    received = datetime.fromtimestamp(lines[-1].t + 60, UTC)
    events, dead = LogParser(config).split(((ln.origin, ln.line) for ln in lines), received)
    assert dead == []
    return sorted(events, key=lambda e: e.time)


@pytest.fixture(scope="module")
def learned(config):
    return learn(config, [_events(config, background(START, 24, seed=7, web_rate_per_s=0.2))])


def _run(config, learned, lines):
    shard = SecurityShard(config)
    shard.learned = learned
    events = _events(config, lines)
    return [o for i in range(0, len(events), 1000) for o in shard.process(events[i : i + 1000])]


def test_the_scenarios_are_deterministic():
    assert background(START, 1, seed=3) == background(START, 1, seed=3)
    assert background(START, 1, seed=3) != background(START, 1, seed=4)
    assert attack("slow_password_spray", START, 3) == attack("slow_password_spray", START, 3)


def test_the_background_is_quiet_after_learning(config, learned):
    """Day 2 (with its midnight cron storm, 02:00 backup and 14:00 deploy): no alert at all."""
    lines = background(START + 24 * HOUR, 16, seed=7, web_rate_per_s=0.2)
    out = _run(config, learned, lines)
    assert [a.summary for a in out if type(a) is Alert] == []
    assert len({ln.origin for ln in lines}) == 5  # five hosts, five formats


@pytest.fixture(scope="module")
def day2(config):
    return background(START + 24 * HOUR + 9 * HOUR, 4, seed=7, web_rate_per_s=0.2)


@pytest.mark.parametrize("kind", sorted(ATTACKS))
def test_each_attack_is_caught_by_its_rule(config, learned, day2, kind):
    at = START + 24 * HOUR + 10 * HOUR
    lines, label = attack(kind, at, seed=7)
    out = _run(config, learned, sorted(day2 + lines))
    hits = [f for f in out if type(f) is SecurityFinding and f.rule == label["rule"]]
    assert hits, f"{kind} not caught by {label['rule']}"
    first = hits[0]
    assert label["start"] <= first.time.timestamp() <= label["end"] + 1
    assert first.count >= 1 and first.window_s > 0
    if first.src_ip is not None:  # a per-IP rule names an attacker from TEST-NET-1
        assert first.src_ip.startswith("192.0.2.")
    alerts = [a for a in out if type(a) is Alert and a.rule == label["rule"]]
    assert alerts and alerts[0].details["count"] == f"{first.count:g}"
