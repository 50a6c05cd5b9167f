"""Security scenarios: every attack kind caught by the rule meant for it (with its delay), and the
simulated normal background quiet (alerts per source-hour).

    .venv/bin/python -m benchmarks.logs_attacks [--seed 42]

The scenarios are ``twinwatch.app.simulator.security_logs``: a background of five hosts in five
log formats (sshd/cron/rsync over RFC 3164 syslog, nginx access log, netfilter, an RFC 5424
application, Windows Security events) with a midnight cron storm, a nightly backup and a daily
deploy, and nine labelled attacks. Day 1 of the background is the archive the templates are
learned from (``twinwatch logs --learn``); day 2 is measured: every alert on it is a false
alarm. Each attack is then replayed inside day 2's background (6 hours around it) with the
default thresholds; the delay is from the attack's first line to the intended rule's first
finding. Lines go through the same parser and security shard as the log flow.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict

import yaml

from twinwatch.app.simulator.security_logs import ATTACKS, SCENARIO_SECURITY, attack, background
from twinwatch.config import EXAMPLE_CONFIG, parse_config
from twinwatch.engine.logparse import LogParser
from twinwatch.engine.security import SecurityShard, learn
from twinwatch.schema import Alert, SecurityFinding

START = 1764547200.0  # 2025-12-01 00:00 UTC
DAY = 86400.0


def scenario_config():
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    raw["city"]["timezone"] = "UTC"
    raw["security"] = dict(SCENARIO_SECURITY)
    return parse_config(raw, environ={})


def run(config, lines, learned, batch=1000):
    parser = LogParser(config)
    shard = SecurityShard(config)
    shard.learned = learned
    events, dead = [], 0
    for i in range(0, len(lines), batch):
        ev, dl = parser.split(((ln.origin, ln.line) for ln in lines[i : i + batch]), _now(lines))
        events += ev
        dead += len(dl)
    events.sort(key=lambda e: e.time)
    out = []
    for i in range(0, len(events), batch):
        out += shard.process(events[i : i + batch])
    return events, out, dead


def _now(lines):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(lines[-1].t + 60, UTC)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    config = scenario_config()
    day1 = background(START, 24, args.seed)
    day2 = background(START + DAY, 24, args.seed)
    parser = LogParser(config)
    events1, _ = parser.split(((ln.origin, ln.line) for ln in day1), _now(day1))
    events1.sort(key=lambda e: e.time)
    learned = learn(config, [events1])

    events, out, dead = run(config, day2, learned)
    alerts = [a for a in out if type(a) is Alert and a.status == "firing"]
    per_source: dict[str, int] = defaultdict(int)
    for a in alerts:
        per_source[f"{a.asset}/{a.sensor}"] += 1
    sources = {f"{e.asset}/{e.sensor}" for e in events}
    print(
        f"background day 2: {len(day2)} lines ({dead} dead letters), {len(sources)} sources, "
        f"{len(alerts)} alerts: {dict(Counter(a.rule for a in alerts))}"
    )
    worst = max((n / 24 for n in per_source.values()), default=0.0)
    print(f"  worst source: {worst:.3f} alerts per source-hour (target <= 1)")
    for a in alerts:
        print(f"  false alarm {a.at:%H:%M} {a.rule}: {a.summary[:110]}")

    print(f"{'attack':24} {'rule':24} {'delay':>9}  first finding")
    misses = 0
    for kind in ATTACKS:
        at = START + DAY + 10 * 3600 + 123.0
        lines, label = attack(kind, at, args.seed)
        window = [ln for ln in day2 if at - 3 * 3600 <= ln.t < at + 3 * 3600]
        _, out, _ = run(config, sorted(window + lines), learned)
        hits = [
            f
            for f in out
            if type(f) is SecurityFinding and f.rule == label["rule"] and f.time.timestamp() >= at
        ]
        if not hits:
            misses += 1
            print(f"{kind:24} {label['rule']:24} {'MISSED':>9}")
            continue
        f = hits[0]
        delay = f.time.timestamp() - at
        print(f"{kind:24} {label['rule']:24} {delay:8.0f}s  {f.detail[:70]}")
    print(f"{len(ATTACKS) - misses} of {len(ATTACKS)} attack kinds caught by their rule")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
