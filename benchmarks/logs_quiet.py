"""Alerts per source-hour on normal logs: loghub's 14 samples and the simulated background.

    .venv/bin/python -m benchmarks.logs_quiet

Each loghub sample (Zhu et al., ISSRE 2023; ../shared/data/loghub) is parsed with the sources
declared in ``twinwatch/examples/loghub-sources.yaml`` and run through the security shard with
the default thresholds, as one asset. The target is at most 1 alert per source-hour after the
warm-up (``security.templates.warmup_s``/``warmup_lines``): a source is a (asset, sensor) log
stream, and hours are its event-time span after its warm-up, at least 1 (a sample that spans 10
minutes may raise at most one alert). Alerts of the attack rules are counted apart: the OpenSSH
sample *is* an attack log (brute force from many addresses), and those are true alerts.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from twinwatch.config import EXAMPLE_CONFIG, load_config
from twinwatch.engine.logparse import LogParser
from twinwatch.engine.security import SecurityShard
from twinwatch.schema import Alert

LOGHUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "loghub"
SOURCES = EXAMPLE_CONFIG.parent / "loghub-sources.yaml"
LOG_RULES = ("new_template", "template_rate", "severity_spike")


def rates(config, events) -> dict[str, tuple[float, int, int, float]]:
    """{sensor: (hours after warm-up, log-rule alerts after it, attack alerts, span hours)}"""
    tpl = config.security.templates
    shard = SecurityShard(config)
    first: dict[str, float] = {}
    lines: dict[str, int] = defaultdict(int)
    warm_at: dict[str, float] = {}
    last: dict[str, float] = {}
    log_alerts: dict[str, int] = defaultdict(int)
    attack_alerts: dict[str, int] = defaultdict(int)
    for i in range(0, len(events), 500):
        batch = events[i : i + 500]
        for e in batch:
            t = e.time.timestamp()
            first.setdefault(e.sensor, t)
            lines[e.sensor] += 1
            last[e.sensor] = max(last.get(e.sensor, t), t)
            if (
                e.sensor not in warm_at
                and lines[e.sensor] > tpl.warmup_lines
                and t - first[e.sensor] >= tpl.warmup_s
            ):
                warm_at[e.sensor] = t
        for a in shard.process(batch):
            if type(a) is Alert and a.status == "firing":
                if a.rule in LOG_RULES:
                    log_alerts[a.sensor] += 1
                else:
                    attack_alerts[a.sensor] += 1
    out = {}
    for sensor in first:
        warm = warm_at.get(sensor)
        hours = 0.0 if warm is None else (last[sensor] - warm) / 3600
        span = (last[sensor] - first[sensor]) / 3600
        out[sensor] = (hours, log_alerts[sensor], attack_alerts[sensor], span)
    return out


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    if not LOGHUB.is_dir():
        print(f"loghub samples missing in {LOGHUB}", file=sys.stderr)
        return 2
    config = load_config(SOURCES, environ={})
    parser = LogParser(config)
    worst = 0.0
    print(f"{'sample/sensor':28} {'span h':>7} {'warm h':>7} {'alerts':>6} {'per h':>6} attack")
    for log in sorted(LOGHUB.glob("*/*_2k.log")):
        events, _ = parser.split((f"file:{log}", raw) for raw in log.read_bytes().splitlines())
        events.sort(key=lambda e: e.time)
        for sensor, (hours, n, attacks, span) in sorted(rates(config, events).items()):
            per_h = n / max(hours, 1.0)
            worst = max(worst, per_h)
            print(
                f"{log.parent.name + '/' + sensor:28} {span:7.1f} {hours:7.1f} {n:6d} "
                f"{per_h:6.2f} {attacks}"
            )
    print(f"worst: {worst:.2f} log-rule alerts per source-hour after warm-up (target <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
