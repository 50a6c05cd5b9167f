"""Benchmark: what the "firing now" panels cost over a long alert history.

    python -m benchmarks.alert_state [--alerts 200] [--days 365] [--episodes 30] [--repeat 15]

A real InfluxDB 1.6.7 (temp dir) gets a year of alert history written by the flow's own encoder
(``twinwatch.lineprotocol``: every Alert record is an ``alert`` and an ``alert_state`` point):
``--alerts`` alerts (one alert_state series each; the example city has about 160 sensor x rule
pairs), ``--episodes`` fired-and-resolved episodes each, spread over ``--days``, a tenth of them
still firing at the end. Then the control room's "firing now" panel queries, taken from the
generated dashboards and expanded as Grafana does for a 6-hour range, run ``--repeat`` times
each, interleaved with two references:

    old map      the map query this replaced (latest firing change in the range): fast, wrong
    1d lookback  the new map query with ``time > end - 1d``: what a periodic re-write of each
                 firing alert's state would allow (not implemented: see docs/dashboards.md)

Medians (ms) and each one's ratio to the old map query are printed; the "Firing now" rows are
checked against the firing set the generator made.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from twinwatch.app import services
from twinwatch.config import load_config
from twinwatch.dashboards.build import dashboards
from twinwatch.dashboards.verify import expand_influxql, targets
from twinwatch.engine.plan import Plan
from twinwatch.influx import InfluxV1Writer
from twinwatch.lineprotocol import encode_many
from twinwatch.schema import DOMAINS, SEVERITIES, Alert, fingerprint

PANELS = (
    ("twinwatch-control-room", "City map — sites by the severity firing now"),
    ("twinwatch-control-room", "Alerts firing now, per domain"),
    ("twinwatch-control-room", "Severe (심각) alerts firing now"),
    ("twinwatch-control-room", "Firing now"),
)


def history(n_alerts: int, days: int, episodes: int, end: datetime, seed: int = 1):
    """Alert records: per alert, ``episodes`` firing/resolved pairs; every tenth still firing."""
    rng = random.Random(seed)
    records, firing = [], set()
    span_s = days * 86400
    for i in range(n_alerts):
        labels = {
            "domain": DOMAINS[i % 4],
            "site": f"site-{i % 40}",
            "asset": f"asset-{i % 200}",
            "sensor": f"sensor-{i}",
            "rule": ("limits", "robust_z", "stuck", "gap")[i % 4],
        }
        fp = fingerprint(labels)
        starts = sorted(rng.uniform(0, span_s - 7200) for _ in range(episodes))
        for k, s in enumerate(starts):
            t0 = end - timedelta(seconds=span_s - s)
            sev = SEVERITIES[rng.randrange(4)]
            fired = msgspec.convert(
                dict(labels, fingerprint=fp, severity=sev, starts_at=t0, value=1.0, unit="")
                | {"status": "firing", "at": t0, "summary": "x"},
                Alert,
                from_attributes=True,
            )
            records.append(fired)
            if i % 10 == 0 and k == len(starts) - 1:
                firing.add(fp)  # still firing at the end
            else:
                t1 = t0 + timedelta(seconds=rng.uniform(60, 3600))
                records.append(msgspec.structs.replace(fired, status="resolved", at=t1, ends_at=t1))
    return records, firing


OLD_MAP = (
    'SELECT last("value") AS "value", "severity", "domain" AS "alert_domain" FROM "alert" '
    'WHERE "status" = \'firing\' AND $timeFilter GROUP BY "site"'
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--alerts", type=int, default=200)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args(argv)
    config = load_config(environ={})
    docs = dashboards(config, Plan(config).thresholds())
    queries = {
        title: next(
            t.query for t in targets(docs[uid]) if t.where == title and t.kind == "influxdb"
        )
        for uid, title in PANELS
    }
    map_title = PANELS[0][1]
    queries["1d lookback (map)"] = queries[map_title].replace(
        "time <= ${__to}ms", "time <= ${__to}ms AND time > ${__to}ms - 1d"
    )
    queries["old map (6h range)"] = OLD_MAP
    end = datetime.now(UTC).replace(microsecond=0)
    records, firing = history(args.alerts, args.days, args.episodes, end)
    with tempfile.TemporaryDirectory() as tmp:
        influx = services.InfluxDB(Path(tmp) / "influxdb").start(timeout=60)
        try:
            influx.create_database("bench")
            with InfluxV1Writer(influx.url, "bench", timeout=120) as w:
                lines = encode_many(records)
                for i in range(0, len(lines), 5000):
                    w.write_chunk(lines[i : i + 5000])
                (shards,) = w.query("SHOW SHARDS", epoch=None)
                n_shards = sum(
                    len(s["values"]) for s in shards.get("series", []) if s["name"] == "bench"
                )
                print(
                    f"{len(records):,} alert state changes: {args.alerts:,} alerts, "
                    f"{args.days} days, {len(lines):,} points in {n_shards} shards; "
                    f"{len(firing)} firing at the end"
                )
                texts = {
                    k: expand_influxql(q, end - timedelta(hours=6), end, "1m", {})
                    for k, q in queries.items()
                }
                times: dict[str, list[float]] = {k: [] for k in texts}
                rows: dict[str, int] = {}
                for _ in range(args.repeat):  # interleaved: the machine's noise hits all alike
                    for k, text in texts.items():
                        t0 = time.perf_counter()
                        (res,) = w.query(text)
                        times[k].append(time.perf_counter() - t0)
                        rows[k] = sum(len(s["values"]) for s in res.get("series", []))
                assert rows["Firing now"] == len(firing), (rows["Firing now"], len(firing))
                old = statistics.median(times["old map (6h range)"])
                for k, ts in times.items():
                    med = statistics.median(ts)
                    print(
                        f"  {k[:45]:45}  median {med * 1000:7.1f} ms  "
                        f"x{med / old:5.1f} of the old map  rows {rows[k]}"
                    )
        finally:
            influx.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
