"""Ingestion with Alertmanager down vs up: an unreachable Alertmanager must not slow the flow.

    python -m benchmarks.alert_outage [--series 200] [--readings 200000] [--rounds 2]
                                      [--cap-s 90] [--down refused|hung]

Real processes in a temp dir on free ports: InfluxDB 1.6.7, Alertmanager 0.25 and the flow
(``twinwatch run --replay``, as fast as it goes, InfluxDB writes included). Every series breaches
its limits for 3 readings in every 100, so alerts fire and resolve all along (about 2 alert
state changes per 100 readings). The rate is the readings written to InfluxDB per second
(``twinwatch_records_out_total{sink="influxdb",measurement="reading"}``), from the first write
to the end of the replay or ``cap_s``. Runs alternate Alertmanager up and down (``refused``: the
process stopped, connections refused; ``hung``: a socket that accepts and never answers, so
every request waits for its timeout), to spread this noisy machine's load over both. Prints
each run, then the median rates and their ratio down/up.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import yaml

from benchmarks.flow_vs_loop import bench_config
from twinwatch.app import services


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def write_replay(path: Path, config: dict, readings: int) -> None:
    topics = [
        f"city/structures/{site['id']}/{asset['id']}/{s['id']}"
        for site in config["sites"]
        for asset in site["assets"]
        for s in asset["sensors"]
    ]
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    enc = msgspec.json.Encoder()
    n = len(topics)
    with path.open("wb") as f:
        for i in range(readings):
            k = i // n  # the k-th reading of each series, 10 s apart
            value = 900.0 if k % 100 in (50, 51, 52) else 100.0 + (k * 7 + i) % 13
            payload = enc.encode({"time": t0 + timedelta(seconds=10 * k), "value": value})
            f.write(enc.encode({"topic": topics[i % n], "payload": payload.decode()}) + b"\n")


class Hung:
    """Accepts connections and never answers (a hung Alertmanager)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def run_once(base: Path, n: int, influx, am_url: str, replay: Path, readings: int, cap_s: float):
    db = f"outage{n}"
    influx.create_database(db)
    port = services.free_port()
    env = dict(
        os.environ,
        TWINWATCH_CONFIG=str(base / "city.yaml"),
        TWINWATCH__SERVICES__INFLUXDB__URL=influx.url,
        TWINWATCH__SERVICES__INFLUXDB__DATABASE=db,
        TWINWATCH__SERVICES__INFLUXDB__SPOOL_DIR=str(base / f"spool{n}"),
        TWINWATCH__SERVICES__ALERTMANAGER__URL=am_url,
        TWINWATCH__SERVICES__ALERTMANAGER__STATE_PATH=str(base / f"delivery{n}.sqlite"),
        TWINWATCH__SERVICES__METRICS__PORT=str(port),
        TWINWATCH__FLOW__DEAD_LETTER_PATH=str(base / f"dead{n}.jsonl"),
    )
    log = (base / f"flow{n}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinwatch.app.cli", "run", "--replay", str(replay)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    name = 'twinwatch_records_out_total{measurement="reading",sink="influxdb"}'
    first = last = None
    started = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - started < cap_s + 30:
            try:
                written = metric(httpx.get(f"http://127.0.0.1:{port}/metrics").text, name)
            except httpx.HTTPError:
                written = 0.0
            now = time.monotonic()
            if written and first is None:
                first = (now, written)
            if written:
                last = (now, written)
            if first and (written >= readings or now - first[0] >= cap_s):
                break
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
        log.close()
    if first is None or last is None or last[0] == first[0]:
        return 0.0, 0.0
    return (last[1] - first[1]) / (last[0] - first[0]), last[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cap-s", type=float, default=90.0)
    ap.add_argument("--down", choices=("refused", "hung"), default="refused")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="twinwatch-am-outage-"))
    config = bench_config(args.series)
    config["flow"]["shards"] = 16
    (base / "city.yaml").write_text(yaml.safe_dump(config))
    replay = base / "replay.jsonl"
    write_replay(replay, config, args.readings)
    influx = services.InfluxDB(base / "influxdb").start(timeout=60)
    am = services.Alertmanager(base / "alertmanager").start(timeout=60)
    rates: dict[str, list[float]] = {"up": [], "down": []}
    try:
        n = 0
        for r in range(args.rounds):
            order = ("up", "down") if r % 2 == 0 else ("down", "up")
            for state in order:
                hung = None
                if state == "down":
                    if args.down == "hung":
                        hung = Hung()
                        url = f"http://127.0.0.1:{hung.port}"
                    else:
                        am.stop()
                        url = am.url
                else:
                    url = am.url
                rate, written = run_once(base, n, influx, url, replay, args.readings, args.cap_s)
                n += 1
                if hung is not None:
                    hung.close()
                if state == "down" and args.down == "refused":
                    am.start(timeout=60)
                rates[state].append(rate)
                print(
                    f"round {r} alertmanager {state:4}: {rate:9.0f} readings/s "
                    f"({written:.0f} written)",
                    flush=True,
                )
    finally:
        am.stop()
        influx.stop()
    up, down = statistics.median(rates["up"]), statistics.median(rates["down"])
    print(
        f"median: up {up:.0f} readings/s, down ({args.down}) {down:.0f} readings/s, "
        f"ratio down/up {down / up:.2f}"
    )


if __name__ == "__main__":
    main()
