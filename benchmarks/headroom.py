"""Headroom: what Mosquitto, InfluxDB and the load generator alone take at fixed rates, so what
this machine leaves the flow (issue #17 asks one process for >= 40,000 readings/s).

    python -m benchmarks.headroom [--rates 20000 30000 40000] [--series 1000] [--window-s 20]

Starts its own InfluxDB and Mosquitto (free loopback ports, temp dir, the deployment's broker
config) and publishes QoS 1 readings as ``benchmarks.e2e`` does. Instead of the flow, a lean
consumer in a process of its own reads them with ``twinwatch.mqttsub``, writes the flow's two
points per reading (its line protocol, encoded by the flow's code beforehand; fresh timestamps) to
InfluxDB in requests of 500 readings, and acknowledges after each write: nothing but the I/O the
flow must do. Per rate: published and written readings/s, CPU of each process over
``--window-s`` in % of one core, and what the services leave of the machine's cores, in CPU
microseconds per reading: the budget of everything one flow process does for a reading (at most
one core: its Python runs under one GIL).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.e2e import flow_lines
from benchmarks.scale import Publisher, bench_services, bench_topics, cpu_s

REQUEST = 500  # readings per write, as the flow's writer fills them


def consumer(
    port: int, url: str, templates: list[tuple[str, str]], ready: Any, stop: Any, out: Any
) -> None:
    import httpx

    from twinwatch.config import MqttService
    from twinwatch.mqttsub import Subscriber

    sub = Subscriber(MqttService(port=port), "headroom-consumer")
    sub.connect()
    sub.subscribe(["city/#"], 1, lambda *a: None)
    ready.set()
    mids: list[int] = []
    ts, written = 1_800_000_000_000, 0
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            sub.wait(0.05)
            sub.read(lambda t, p, m: mids.append(m or 0))
            if len(mids) < REQUEST:
                continue
            body: list[str] = []
            for i in range(len(mids)):
                ts += 1
                reading, score = templates[i % len(templates)]
                body += (f"{reading} {ts}", f"{score} {ts}")
            params = {"db": "headroom", "precision": "ms"}
            r = client.post(f"{url}/write", params=params, content="\n".join(body).encode())
            r.raise_for_status()
            sub.ack(mids)  # durable: acknowledge, as the flow does
            sub.flush()
            written += len(mids)
            mids.clear()
            out.value = written
    sub.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[20_000, 30_000, 40_000])
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--window-s", type=float, default=20)
    args = ap.parse_args()
    # the flow's two lines for one reading per series, without their timestamps (flow_lines
    # gives them grouped by measurement: the readings', then the scores')
    bare = [line.rsplit(" ", 1)[0] for line in flow_lines(args.series, args.series)]
    readings = [line for line in bare if line.startswith("reading,")]
    scores = [line for line in bare if line.startswith("anomaly_score,")]
    assert len(readings) == len(scores) == args.series
    templates = list(zip(readings, scores))
    base = Path(tempfile.mkdtemp(prefix="twinwatch-headroom-"))
    influx, broker = bench_services(base)
    ctx = multiprocessing.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Value("d", 0.0)
    proc = None
    try:
        influx.create_database("headroom")
        assert broker.port is not None and influx.pid is not None and broker.pid is not None
        proc = ctx.Process(
            target=consumer,
            args=(broker.port, influx.url, templates, ready, stop, out),
            daemon=True,
        )
        proc.start()
        if not ready.wait(60):
            raise SystemExit("the consumer did not start")
        pub = Publisher(broker.port, bench_topics(args.series))
        pids = {
            "consumer": proc.pid or 0,
            "mosquitto": broker.pid,
            "influxd": influx.pid,
            "publisher": os.getpid(),
        }
        for rate in args.rates:
            pub.rate = rate
            time.sleep(8)  # settle at the new rate
            c0 = {k: cpu_s(p) for k, p in pids.items()}
            w0, s0, t0 = out.value, pub.sent, time.monotonic()
            time.sleep(args.window_s)
            c1 = {k: cpu_s(p) for k, p in pids.items()}
            dt = time.monotonic() - t0
            w, s = (out.value - w0) / dt, (pub.sent - s0) / dt
            cpu = {k: 100 * (c1[k] - c0[k]) / dt for k in c0}
            services = cpu["mosquitto"] + cpu["influxd"] + cpu["publisher"]
            # one process: at most one core, whatever is free (its Python runs under one GIL)
            left = min(100.0, max(0.0, 100 * (os.cpu_count() or 1) - services))
            print(
                f"rate {rate:>7,.0f}/s  published {s:>7,.0f}/s  written {w:>7,.0f}/s  "
                + "  ".join(f"{k} {v:3.0f}%" for k, v in cpu.items())
                + f"  | services {services:.0f}% of {100 * (os.cpu_count() or 1)}%: the flow "
                f"has {left:.0f}% = {left / 100 / rate * 1e6:.1f} us of CPU per reading",
                flush=True,
            )
        pub.stop.set()
        pub.thread.join(timeout=10)
    finally:
        stop.set()
        if proc is not None:
            proc.join(timeout=10)
        broker.stop()
        influx.stop()


if __name__ == "__main__":
    main()
