"""Soak: a steady stream through the full flow for a long time, watching memory and backlog.

    python -m benchmarks.soak [--duration-s 1800] [--rate 10000] [--series 1000]

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
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec

from benchmarks.flow_vs_loop import bench_config
from twinwatch.app import services
from twinwatch.config import MqttService
from twinwatch.mqtt import connect, make_client


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
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="twinwatch-soak-"))
    svcs = services.up(["influxdb", "mosquitto"], base)
    influxdb = svcs["influxdb"]
    assert isinstance(influxdb, services.InfluxDB)
    influxdb.create_database("soak")
    config_path = base / "city.yaml"
    import yaml

    config_path.write_text(yaml.safe_dump(bench_config(args.series)))
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
    topics = [
        f"city/structures/site{i // 100}/a{(i // 10) % 10}/s{i % 10}" for i in range(args.series)
    ]
    sent = [0]
    stop = threading.Event()

    def publish():
        # The network loop runs in this thread (client.loop), not in paho's background thread:
        # a QoS 1 publisher on loop_start() manages only ~3k messages/s here, which would make
        # the publisher, not the flow, the thing being measured. No in-flight window
        # (max_inflight_messages_set(0), unlimited): with a window of 5,000, paho 2.2 rescans its
        # queue on every PUBACK once the window is full and collapses to 3,500-8,900 msg/s
        # against 10,000-20,000 targets (issue #17).
        mqtt = MqttService(port=svcs["mosquitto"].port)
        client = make_client(mqtt, "soak-pub", clean_session=True)
        client.max_inflight_messages_set(0)
        connect(client, mqtt)
        enc = msgspec.json.Encoder()
        t0, start = datetime(2026, 1, 1, tzinfo=UTC), time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * args.rate)
            while sent[0] < due:
                i = sent[0]
                t = t0 + timedelta(seconds=10 * (i // args.series))
                client.publish(
                    topics[i % args.series],
                    enc.encode({"time": t, "value": 100.0 + (i * 7) % 13}),
                    qos=1,
                )
                sent[0] += 1
                if i % 200 == 0:
                    client.loop(0)
            client.loop(0.002)
        client.disconnect()

    pub = threading.Thread(target=publish, daemon=True)
    pub.start()
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
            rate_in = (sent[0] - last[1]) / (now - last[0])
            rate_out = (written - last[2]) / (now - last[0])
            last = (now, sent[0], written)
            samples.append((now, rss_mb(flow.pid), sent[0] - written, spool))
            print(
                f"{now:7.0f} {samples[-1][1]:8.1f} {rate_in:8.0f} {rate_out:9.0f} "
                f"{samples[-1][2]:9.0f} {spool:8.0f}",
                flush=True,
            )
    finally:
        stop.set()
        pub.join(timeout=10)
        flow.terminate()
        flow.wait(timeout=60)
        services.down(base)
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
