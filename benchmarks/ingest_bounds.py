"""What hostile timestamps and device event kinds cost a real InfluxDB 1.6.7, bounded and not.

    python -m benchmarks.ingest_bounds [--scattered 2000] [--kinds 20000]

For each setting it starts a fresh InfluxDB (temp dir, free port), sends 100 live readings and
then ``scattered`` valid readings one per 7 weeks since 1700 through the real flow
(``build_flow`` + the real ``InfluxSink``), and ``kinds`` CCTV events with distinct event words,
and reports InfluxDB's shard count (SHOW SHARDS), its RSS and open files, and the
security_event series count (SHOW SERIES), before and after. Settings: the default config
(``flow.max_lateness_s`` 7 days, event kinds from ``security.device_event_kinds``) and
``max_lateness_s: null`` (the old, unbounded event time). Not a CI test
(tests/e2e/test_cardinality.py checks the bounds).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from bytewax.testing import TestingSource, run_main

from twinwatch.app import services
from twinwatch.config import EXAMPLE_CONFIG, parse_config
from twinwatch.flows.dataflow import build_flow
from twinwatch.flows.sinks.influx import InfluxSink
from twinwatch.influx import InfluxV1Writer

CHLORINE = "city/water/sejong-wtp/clearwell/chlorine"
CCTV = "city/security/sejong-soc/gate-2/cctv"


def city(influx_url: str, tmp: Path, lateness: float | None):
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
                }
            ],
        }
    )
    raw["services"]["influxdb"].update(url=influx_url, database="bounds", spool_dir=str(tmp))
    raw["services"]["alertmanager"]["url"] = None
    raw.setdefault("flow", {}).update(
        max_lateness_s=lateness, dead_letter_path=str(tmp / "d.jsonl")
    )
    return parse_config(raw, environ={})


def messages(scattered: int, kinds: int) -> list[list[tuple[str, bytes]]]:
    now = datetime.now(UTC).replace(microsecond=0)
    live = [
        (
            CHLORINE,
            b'{"time":"%s","value":0.8}' % (now - timedelta(seconds=10 * i)).isoformat().encode(),
        )
        for i in range(100)
    ]
    start = datetime(1700, 1, 1, tzinfo=UTC)
    old = [
        (
            CHLORINE,
            b'{"time":"%s","value":0.5}' % (start + timedelta(weeks=7 * i)).isoformat().encode(),
        )
        for i in range(scattered)
    ]
    t = now.isoformat().encode()
    cctv = [(CCTV, b'{"time":"%s","event":"kind_%d"}' % (t, i)) for i in range(kinds)]
    stream = live + old + cctv
    return [stream[i : i + 1000] for i in range(0, len(stream), 1000)]


def _field(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    if m is None:
        raise RuntimeError(f"{pattern!r} not found")
    return m[1]


def measure(db: services.InfluxDB) -> dict:
    status = Path(f"/proc/{db.pid}/status").read_text()
    with InfluxV1Writer(db.url, "bounds") as w:
        shards = sum(
            len(s.get("values", []))
            for r in w.query("SHOW SHARDS", database="")
            for s in r.get("series", [])
            if s.get("name") == "bounds"
        )
        series = w.query('SHOW SERIES FROM "security_event"')
        n_series = sum(len(s.get("values", [])) for r in series for s in r.get("series", []))
    return {
        "shards": shards,
        "rss_mb": round(int(_field(r"VmRSS:\s+(\d+)", status)) / 1024),
        "open_files": len(list(Path(f"/proc/{db.pid}/fd").iterdir())),
        "event_series": n_series,
    }


def run(lateness: float | None, scattered: int, kinds: int) -> tuple[dict, dict, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = services.InfluxDB(Path(tmp) / "influxdb").start()
        try:
            with InfluxV1Writer(db.url, "bounds") as w:
                w.create_database()
            time.sleep(1)
            before = measure(db)
            config = city(db.url, Path(tmp), lateness)
            t0 = time.perf_counter()
            run_main(
                build_flow(
                    config,
                    TestingSource(messages(scattered, kinds)),
                    influx_sink=InfluxSink(config.services.influxdb),
                )
            )
            took = time.perf_counter() - t0
            time.sleep(2)
            return before, measure(db), took
        finally:
            db.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scattered", type=int, default=2000)
    p.add_argument("--kinds", type=int, default=20000)
    args = p.parse_args()
    for name, lateness in (("bounded (default, 7 d)", 7 * 86400.0), ("unbounded (null)", None)):
        before, after, took = run(lateness, args.scattered, args.kinds)
        print(f"{name}: flow {took:.1f} s")
        for k in before:
            print(f"  {k:13} {before[k]:>6} -> {after[k]:>6}")


if __name__ == "__main__":
    main()
