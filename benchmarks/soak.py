"""Soak: a steady stream through the full flow for a long time, watching memory and backlog.

    python -m benchmarks.soak [--duration-s 1800] [--rate 10000] [--series 1000] [--set K=V ...]

Starts its own InfluxDB and Mosquitto (free loopback ports, temp dir), runs `twinwatch run`, and
publishes `rate` readings/s over `series` series. Every 10 s it samples the flow's RSS, the backlog
(published - written to InfluxDB) and the spool size; at the end it prints the samples and the RSS
growth after warm-up (the first 20 % of the run). Goal: growth < 10 %. Not a CI test.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.scale import Publisher, add_set_option, bench_city, bench_services, env_overrides
from twinwatch.app import services


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmRSS:\s+(\d+)", text)
    if m is None:
        raise RuntimeError(f"no VmRSS in /proc/{pid}/status")
    return int(m[1]) / 1024


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration-s", type=float, default=1800)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--series", type=int, default=1000)
    add_set_option(ap)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="twinwatch-soak-"))
    influxdb, broker = bench_services(base)
    svcs: dict[str, services.Service] = {"influxdb": influxdb, "mosquitto": broker}
    influxdb.create_database("soak")
    config_path, topics = bench_city(base, args.series)
    metrics_port = services.free_port()
    env = dict(
        os.environ,
        TWINWATCH__SERVICES__MQTT__PORT=str(svcs["mosquitto"].port),
        TWINWATCH__SERVICES__INFLUXDB__URL=svcs["influxdb"].url,
        TWINWATCH__SERVICES__INFLUXDB__DATABASE="soak",
        TWINWATCH__SERVICES__INFLUXDB__SPOOL_DIR=str(base / "spool"),
        TWINWATCH__SERVICES__METRICS__PORT=str(metrics_port),
        TWINWATCH__FLOW__DEAD_LETTER_PATH=str(base / "dead.jsonl"),
    )
    env.update(env_overrides(args.set))
    flow = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twinwatch.app.cli",
            "run",
            "-c",
            str(config_path),
            "--idle-timeout",
            "30",
        ],
        env=env,
        stdout=(base / "flow.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    while 'twinwatch_source_ready{source="mqtt"} 1.0' not in _get(url):
        time.sleep(0.2)
    # benchmarks.scale's publisher: QoS 1 PUBLISH packets written in bulk, at most 20,000
    # unacknowledged; a paho publisher costs about a core at 20,000/s on this machine, which it
    # would take from the flow it measures (and paho's in-flight window collapses, issue #17)
    pub = Publisher(svcs["mosquitto"].port, topics)
    pub.rate = args.rate
    samples = []
    start = time.monotonic()
    print(
        f"{'t (s)':>7} {'rss MB':>8} {'sent/s':>8} {'written/s':>9} {'backlog':>9} {'spool B':>8}"
    )
    last = (0.0, 0, 0.0)
    try:
        while time.monotonic() - start < args.duration_s:
            time.sleep(10)
            text = _get(url)
            now = time.monotonic() - start
            written = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("twinwatch_records_out_total{")
                and 'measurement="reading"' in line
            )
            spool = metric(text, "twinwatch_spool_bytes")
            sent = pub.sent
            rate_in = (sent - last[1]) / (now - last[0])
            rate_out = (written - last[2]) / (now - last[0])
            last = (now, sent, written)
            samples.append((now, rss_mb(flow.pid), sent - written, spool))
            print(
                f"{now:7.0f} {samples[-1][1]:8.1f} {rate_in:8.0f} {rate_out:9.0f} "
                f"{samples[-1][2]:9.0f} {spool:8.0f}",
                flush=True,
            )
    finally:
        pub.stop.set()
        pub.thread.join(timeout=10)
        flow.terminate()
        flow.wait(timeout=60)
        for svc in svcs.values():
            svc.stop()
    warm = [s for s in samples if s[0] >= 0.2 * args.duration_s]
    if len(warm) >= 2:
        growth = (warm[-1][1] - warm[0][1]) / warm[0][1] * 100
        print(
            f"RSS after warm-up {warm[0][1]:.1f} MB -> {warm[-1][1]:.1f} MB: "
            f"{growth:+.1f} % (goal < 10 %)"
        )


def _get(url: str) -> str:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return ""


if __name__ == "__main__":
    main()
