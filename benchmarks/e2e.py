"""End to end: the highest rate one `twinwatch run` sustains (MQTT -> flow -> InfluxDB), next to
what its two ends take alone, measured in one run on the same services.

    python -m benchmarks.e2e [--series 1000] [--start-rate 8000] [--window-s 10] [--repeat 1]
                             [--raw-readings 200000] [--messages 100000]
                             [--only raw|sub|e2e ...] [--set services.mqtt.catch_all=false]

Starts its own InfluxDB 1.6.7 and Mosquitto (free loopback ports, temp dir; Mosquitto with
docker/mosquitto/mosquitto.conf). Each repetition measures, in this order (reversed on odd
repetitions, so noise from other work on the machine hits every part):

* **raw /write**: the line protocol the flow writes for ``--raw-readings`` readings (the reading
  and its anomaly_score point, encoded by the flow's own code beforehand) POSTed in chunks of
  ``services.influxdb.batch_size`` lines, one request at a time, plain and gzip (level 1): the
  ceiling InfluxDB sets here, in readings/s.
* **bare subscriber**: a persistent session holding ``--messages`` QoS 1 messages drained by
  ``twinwatch.mqttsub`` (the flow's MQTT client) acknowledging per read: the ceiling the broker
  and the client set, in messages/s.
* **ladder**: ``twinwatch run`` on a city of ``--series`` strain sensors with the default
  detector stack, fed fixed QoS 1 rates (x1.25 per step) as in ``benchmarks.scale`` (sustained =
  written >= 97 % of published and the backlog grows by less than half a second of traffic over
  ``--window-s``); CPU of each process over the window, in % of one core.

The summary gives the sustained rate as a fraction of raw /write (issue #17 aims at >= 0.5 and
>= 40,000 readings/s).
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import scale
from benchmarks.flow_vs_loop import bench_config, make_batches
from benchmarks.scale import ladder
from twinwatch.app import services
from twinwatch.config import InfluxService, parse_config
from twinwatch.engine.parse import Parser
from twinwatch.engine.plan import Plan
from twinwatch.engine.shard import Shard
from twinwatch.lineprotocol import encode_by_measurement


def flow_lines(series: int, readings: int) -> list[str]:
    """The reading and anomaly_score lines the flow writes for ``readings`` readings."""
    config = parse_config(bench_config(series), environ={})
    parser, plan = Parser(config), Plan(config)
    shard = Shard(plan)
    lines: list[str] = []
    for raw in make_batches(config, readings, 1000):
        records, _ = parser.split(raw)
        for group in encode_by_measurement([*records, *shard.process(records)]).values():
            lines += group
    return lines


def raw_write(url: str, db: str, lines: list[str], chunk: int, gzipped: bool) -> float:
    """Seconds to POST ``lines`` to /write in chunks, one request at a time; joining and
    compressing each chunk are timed too (the flow's writer does them)."""
    headers = {"Content-Encoding": "gzip"} if gzipped else {}
    params = {"db": db, "precision": "ms"}
    with httpx.Client(timeout=60) as client:
        t0 = time.perf_counter()
        for i in range(0, len(lines), chunk):
            body = ("\n".join(lines[i : i + chunk]) + "\n").encode()
            if gzipped:
                body = gzip.compress(body, compresslevel=1)
            r = client.post(f"{url}/write", params=params, content=body, headers=headers)
            r.raise_for_status()
        return time.perf_counter() - t0


def bare_subscriber(port: int, n: int, cid: str) -> float:
    """Messages/s ``twinwatch.mqttsub`` drains from a session holding ``n`` QoS 1 messages."""
    scale.fill_session(port, n, cid)
    return n / scale.drain_lean(port, n, cid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--start-rate", type=float, default=8000)
    ap.add_argument("--max-rate", type=float, default=200_000)
    ap.add_argument("--warmup-s", type=float, default=4)
    ap.add_argument("--window-s", type=float, default=10)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--raw-readings", type=int, default=200_000)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--only", choices=["raw", "sub", "e2e"], action="append", default=[])
    scale.add_set_option(ap)
    args = ap.parse_args()
    scale.EXTRA_ENV.update(scale.env_overrides(args.set))
    base = Path(tempfile.mkdtemp(prefix="twinwatch-e2e-"))
    influx, broker = scale.bench_services(base)
    svcs: dict[str, services.Service] = {"influxdb": influx, "mosquitto": broker}
    config_path, topics = scale.bench_city(base, args.series)
    print(f"encoding {args.raw_readings:,} readings for the raw /write ...", flush=True)
    lines = flow_lines(args.series, args.raw_readings)
    chunk = InfluxService().batch_size
    results: dict[str, list[float]] = {"raw": [], "raw_gzip": [], "sub": [], "e2e": []}

    def raw(r: int) -> None:
        for gz in (False, True):
            db = f"raw{r}{'gz' if gz else ''}"
            influx.create_database(db)
            dt = raw_write(influx.url, db, lines, chunk, gz)
            influx.drop_database(db)
            rate = args.raw_readings / dt
            results["raw_gzip" if gz else "raw"].append(rate)
            print(
                f"  raw /write{' gzip' if gz else '     '}  {len(lines):,} points in "
                f"{dt:5.2f} s: {rate:>8,.0f} readings/s ({len(lines) / dt:,.0f} points/s)",
                flush=True,
            )

    def sub(r: int) -> None:
        rate = bare_subscriber(broker.port, args.messages, f"e2e-sub-{r}-{time.monotonic_ns()}")
        results["sub"].append(rate)
        print(f"  bare subscriber  {rate:>8,.0f} msg/s (twinwatch.mqttsub)", flush=True)

    def e2e(r: int) -> None:
        print(f"  ladder: 1 process, {args.series} series", flush=True)
        best = ladder(args, base, svcs, config_path, topics, 1, f"e2e{r}")
        results["e2e"].append(best[1] if best else 0.0)

    try:
        for r in range(args.repeat):
            print(f"repetition {r + 1}", flush=True)
            for part in (raw, sub, e2e) if r % 2 == 0 else (e2e, sub, raw):
                if not args.only or part.__name__ in args.only:
                    part(r)
    finally:
        for svc in svcs.values():
            svc.stop()
    print("\nsummary (same services, same run; the machine's load shows in the spread):")
    for r in range(args.repeat if not args.only else 0):
        e, w = results["e2e"][r], results["raw"][r]
        print(
            f"  {r + 1}: end to end {e:>8,.0f} readings/s  raw /write {w:>8,.0f} "
            f"(gzip {results['raw_gzip'][r]:,.0f})  bare subscriber {results['sub'][r]:>8,.0f} "
            f"msg/s  end to end / raw /write {e / w:.2f}"
        )


if __name__ == "__main__":
    main()
