"""Scale-out: the sustained end-to-end rate (MQTT -> flow -> InfluxDB) of 1 and of 2 processes,
measured in one run, with each process' CPU share; and the MQTT intake clients side by side.

    python -m benchmarks.scale [--series 1000] [--processes 1,2] [--window-s 12] [--repeat 1]
    python -m benchmarks.scale --drain [--messages 100000]
    python -m benchmarks.scale --catch-all-cost [--messages 100000] [--repeat 2]

Starts its own InfluxDB and Mosquitto (free loopback ports, temp dir; Mosquitto with
docker/mosquitto/mosquitto.conf). For each process count, `twinwatch run` processes (a cluster
with ``-i/-a`` when more than one) take a city of ``--series`` strain sensors with the default
detector stack; a publisher ladders fixed QoS 1 rates (x1.25 per step). A rate is sustained when,
over a ``--window-s`` window after a warm-up, the flow writes at least 97 % of what was published
and the backlog (published - written) does not grow by more than half a second of traffic. The
highest sustained rate is reported with the CPU of every process involved (flow processes,
mosquitto, influxd, the publisher), in % of one core, over that window. Ladders of 1 and 2
processes alternate (``--repeat``), so noise from other work on the machine hits both.

The publisher writes PUBLISH packets itself in bulk (QoS 1, at most 20,000 unacknowledged) so
that it costs little CPU: on 2 cores it competes with what it measures.

``--drain``: a persistent session holds ``--messages`` QoS 1 messages; paho (as the flow used it:
network thread, one ``ack()`` per message), gmqtt (if installed) and twinwatch.mqttsub drain it,
in alternating order.

``--catch-all-cost``: the source's four partitions in this process take ``--messages`` readings
over ``--series`` topics (at 20,000/s), with and without partition 0's ``<prefix>/#``: CPU per
published message of the partitions' network threads, of the worker's polling, and of the broker.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import struct
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
from twinwatch.config import MqttService
from twinwatch.mqttsub import Subscriber

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
EXTRA_ENV: dict[str, str] = {}  # TWINWATCH__ overrides for every flow process (--set)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _metrics(url: str) -> str:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return ""


def written(urls: list[str]) -> float:
    """Readings the flow processes wrote to InfluxDB (their /metrics)."""
    total = 0.0
    for url in urls:
        for line in _metrics(url).splitlines():
            if line.startswith("twinwatch_records_out_total{") and 'measurement="reading"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


class Publisher:
    """QoS 1 PUBLISH packets written in bulk from one thread; at most ``window`` unacknowledged.
    ``rate`` may change while it runs; ``sent`` counts messages published."""

    def __init__(self, port: int, topics: list[str], window: int = 20_000):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = f"scale-pub-{os.getpid()}".encode()
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(cid)) + cid
        self.sock.sendall(bytes([0x10, len(body)]) + body)
        assert self.sock.recv(4)[3] == 0
        self.topics = [struct.pack("!H", len(t)) + t.encode() for t in topics]
        self.window = window
        self.rate = 0.0
        self.limit: int | None = None  # stop after this many messages
        self.sent = 0
        self.acked = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        enc = msgspec.json.Encoder()
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        n = len(self.topics)
        origin, base = time.monotonic(), 0
        rate = self.rate
        buf = bytearray()
        while not self.stop.is_set():
            if self.rate != rate:  # a new step: pace from here
                rate, origin, base = self.rate, time.monotonic(), self.sent
            due = base + int((time.monotonic() - origin) * rate)
            due = min(due, self.acked + self.window)
            if self.limit is not None:
                due = min(due, self.limit)
            buf.clear()
            for i in range(self.sent, due):
                t = t0 + timedelta(seconds=10 * (i // n))
                payload = enc.encode({"time": t, "value": 100.0 + (i * 7) % 13})
                mid = i % 65535 + 1
                var = self.topics[i % n] + struct.pack("!H", mid) + payload
                length = len(var)
                if length > 127:
                    head = bytes([0x32, (length & 0x7F) | 0x80, length >> 7])
                else:
                    head = bytes([0x32, length])
                buf += head + var
            if buf:
                self.sock.sendall(buf)
                self.sent = due
            r, _, _ = select.select([self.sock], [], [], 0.002)
            if r:
                data = self.sock.recv(1 << 16)
                self.acked += len(data) // 4  # PUBACKs: 4 bytes each (a split one is counted late)
        self.sock.close()


def _flows(
    base: Path, config_path: Path, mqtt_port: int, influx_url: str, db: str, n: int, tag: str
):
    addresses = ",".join(f"127.0.0.1:{services.free_port()}" for _ in range(n))
    procs, urls = [], []
    for i in range(n):
        port = services.free_port()
        env = dict(
            os.environ,
            TWINWATCH__SERVICES__MQTT__PORT=str(mqtt_port),
            TWINWATCH__SERVICES__MQTT__CLIENT_ID=f"scale-{tag}",
            TWINWATCH__SERVICES__INFLUXDB__URL=influx_url,
            TWINWATCH__SERVICES__INFLUXDB__DATABASE=db,
            TWINWATCH__SERVICES__INFLUXDB__SPOOL_DIR=str(base / f"spool-{tag}"),
            TWINWATCH__SERVICES__ALERTMANAGER__URL="null",
            TWINWATCH__FLOW__DEAD_LETTER_PATH=str(base / f"dead-{tag}.jsonl"),
            **EXTRA_ENV,
        )
        args = ["--metrics-port", str(port)]
        if n > 1:
            args += ["-i", str(i), "-a", addresses]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "twinwatch.app.cli", "run", "-c", str(config_path), *args],
                env=env,
                stdout=(base / f"flow-{tag}-{i}.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        urls.append(f"http://127.0.0.1:{port}/metrics")
    deadline = time.monotonic() + 120
    for url, proc in zip(urls, procs):
        while 'twinwatch_source_ready{source="mqtt"} 1.0' not in _metrics(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"flow did not start; see {base}/flow-{tag}-*.log")
            time.sleep(0.2)
    return procs, urls


def ladder(args, base: Path, svcs: dict, config_path: Path, topics: list[str], n: int, tag: str):
    influx = svcs["influxdb"]
    db = f"scale_{tag}"
    influx.create_database(db)
    procs, urls = _flows(base, config_path, svcs["mosquitto"].port, influx.url, db, n, tag)
    pub = Publisher(svcs["mosquitto"].port, topics)
    others = {"mosquitto": svcs["mosquitto"].pid, "influxd": influx.pid, "publisher": os.getpid()}
    best = None
    rate = args.start_rate
    try:
        while rate <= args.max_rate:
            pub.rate = rate
            time.sleep(args.warmup_s)
            t0, s0, w0 = time.monotonic(), pub.sent, written(urls)
            c0 = {
                **{f"flow{i}": cpu_s(p.pid) for i, p in enumerate(procs)},
                **{k: cpu_s(pid) for k, pid in others.items()},
            }
            time.sleep(args.window_s)
            t1, s1, w1 = time.monotonic(), pub.sent, written(urls)
            c1 = {
                **{f"flow{i}": cpu_s(p.pid) for i, p in enumerate(procs)},
                **{k: cpu_s(pid) for k, pid in others.items()},
            }
            dt = t1 - t0
            sent_rate, wrote_rate = (s1 - s0) / dt, (w1 - w0) / dt
            growth = (s1 - w1) - (s0 - w0)
            cpu = {k: 100 * (c1[k] - c0[k]) / dt for k in c0}
            ok = (
                wrote_rate >= 0.97 * sent_rate and growth <= 0.5 * rate and sent_rate >= 0.95 * rate
            )
            print(
                f"  {n} proc  rate {rate:>7,.0f}/s  published {sent_rate:>7,.0f}/s  "
                f"written {wrote_rate:>7,.0f}/s  backlog +{growth:>7,.0f}  "
                + "  ".join(f"{k} {v:3.0f}%" for k, v in cpu.items())
                + ("  sustained" if ok else "  NOT sustained"),
                flush=True,
            )
            if not ok:
                break
            best = (rate, wrote_rate, cpu)
            rate *= 1.25
    finally:
        pub.stop.set()
        pub.thread.join(timeout=10)
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        influx.drop_database(db)
    return best


def add_set_option(ap: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): a config override for the flow processes."""
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for the flow, e.g. services.mqtt.catch_all=false",
    )


def mosquitto(base: Path) -> services.Mosquitto:
    """A Mosquitto in ``base`` with the deployment's settings (docker/mosquitto/mosquitto.conf:
    the flow holds thousands of messages in flight), not started."""
    conf = (ROOT / "docker/mosquitto/mosquitto.conf").read_text()
    return services.Mosquitto(base / "mosquitto", config_text=conf)


def bench_services(base: Path) -> tuple[services.InfluxDB, services.Mosquitto]:
    """InfluxDB and the deployment's Mosquitto, started in ``base``."""
    influx, broker = services.InfluxDB(base / "influxdb"), mosquitto(base)
    influx.start()
    broker.start()
    return influx, broker


def bench_topics(series: int) -> list[str]:
    """The topics of ``bench_config(series)``'s sensors, in catalogue order."""
    return [f"city/structures/site{i // 100}/a{(i // 10) % 10}/s{i % 10}" for i in range(series)]


def bench_city(base: Path, series: int) -> tuple[Path, list[str]]:
    """``bench_config(series)`` written to ``base/city.yaml``, and its sensors' topics."""
    config_path = base / "city.yaml"
    config_path.write_text(yaml.safe_dump(bench_config(series)))
    return config_path, bench_topics(series)


def env_overrides(items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` items (``services.mqtt.catch_all=false``) as TWINWATCH__ variables."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out["TWINWATCH__" + key.upper().replace(".", "__")] = value
    return out


def fill_session(port: int, n: int, cid: str) -> None:
    """Leave ``n`` QoS 1 messages queued on the broker for the persistent session ``cid``."""
    sub = Subscriber(MqttService(port=port), cid)
    sub.connect()
    sub.subscribe(["city/#"], 1, lambda *a: None)
    sub.close()
    pub = Publisher(port, [f"city/structures/s{i % 10}/a{i % 7}/x{i % 100}" for i in range(100)])
    pub.limit, pub.rate = n, 1e9
    while pub.acked < n:
        time.sleep(0.01)
    pub.stop.set()
    pub.thread.join()


def drain_lean(port: int, n: int, cid: str) -> float:
    """Seconds ``twinwatch.mqttsub`` takes to drain the ``n`` messages of session ``cid``."""
    sub = Subscriber(MqttService(port=port), cid)
    mids: list[int] = []
    t0 = time.perf_counter()
    sub.connect()
    while len(mids) < n:
        sub.wait(1.0)
        before = len(mids)
        sub.read(lambda t, p, m: mids.append(m or 0))
        sub.ack(mids[before:])  # one write per read, as the source acknowledges per batch
        sub.flush()
    dt = time.perf_counter() - t0
    sub.close()
    return dt


def drain(args) -> None:
    import paho.mqtt.client as paho

    base = Path(tempfile.mkdtemp(prefix="twinwatch-drain-"))
    broker = mosquitto(base)
    broker.start()
    port, n = broker.port, args.messages

    def run_paho(cid: str) -> float:
        c = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False, manual_ack=True
        )
        got: list[int] = []
        c.on_message = lambda cl, u, m: got.append(m.mid)
        t0 = time.perf_counter()
        c.connect("127.0.0.1", port)
        c.loop_start()
        acked = 0
        while acked < n:
            upto = len(got)
            for mid in got[acked:upto]:
                c.ack(mid, 1)
            acked = upto
            time.sleep(0.001)
        dt = time.perf_counter() - t0
        c.disconnect()
        c.loop_stop()
        return dt

    def run_gmqtt(cid: str) -> float:
        import asyncio

        import gmqtt  # type: ignore[import-not-found,import-untyped,unused-ignore]
        from gmqtt.mqtt.constants import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
            MQTTv311,
        )

        async def go() -> float:
            got = [0]
            done = asyncio.Event()
            c = gmqtt.Client(cid, clean_session=False)

            def on_message(client, topic, payload, qos, properties):
                got[0] += 1
                if got[0] >= n:
                    done.set()
                return 0

            c.on_message = on_message
            t0 = time.perf_counter()
            await c.connect("127.0.0.1", port, version=MQTTv311)
            await asyncio.wait_for(done.wait(), 120)
            dt = time.perf_counter() - t0
            await c.disconnect()
            return dt

        return asyncio.run(go())

    clients = {
        "paho": run_paho,
        "twinwatch.mqttsub": lambda cid: drain_lean(port, n, cid),
    }
    try:
        import gmqtt  # noqa: F401

        clients["gmqtt"] = run_gmqtt
    except ImportError:
        print("(gmqtt not installed: pip install gmqtt to include it)")
    order = list(clients) + list(reversed(clients))
    try:
        for name in order:
            cid = f"drain-{name}-{time.monotonic_ns()}"
            fill_session(port, n, cid)
            dt = clients[name](cid)
            print(f"{name:18} drained {n:,} QoS 1 messages in {dt:5.2f} s: {n / dt:>9,.0f} msg/s")
    finally:
        broker.stop()


def _thread_cpu_s(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def catch_all_cost(args) -> None:
    """CPU per published message of the source's network threads and of the broker, with and
    without partition 0's catch-all subscription (alternating, ``--repeat`` times)."""
    from twinwatch.config import parse_config
    from twinwatch.flows.sources.mqtt import MqttSource

    base = Path(tempfile.mkdtemp(prefix="twinwatch-catchall-"))
    broker = mosquitto(base)
    broker.start()
    assert broker.pid is not None
    bpid = broker.pid
    raw = bench_config(args.series)
    topics = bench_topics(args.series)
    n = args.messages
    try:
        for r in range(2 * args.repeat):
            catch_all = r % 2 == 0
            raw["services"] = {
                "mqtt": {"port": broker.port, "client_id": f"ca{r}", "catch_all": catch_all}
            }
            config = parse_config(raw, environ={})
            source = MqttSource(config, batch_size=1000, max_queued=10 * n)
            parts = [source.build_part("in", key, None) for key in source.list_parts()]
            while not all(p.ready for p in parts):
                time.sleep(0.05)
            ids = [p.thread.native_id for p in parts]
            t0 = {i: _thread_cpu_s(i) for i in ids if i is not None}
            w0, b0 = time.thread_time(), cpu_s(bpid)
            pub = Publisher(broker.port, topics)
            pub.limit, pub.rate = n, 20_000.0
            got = 0
            while got < n:
                for p in parts:
                    for batch in p.next_batch():
                        got += len(batch)
                        batch.ack()
                time.sleep(0.002)
            dt_worker = time.thread_time() - w0  # polling included: an upper bound
            threads = sum(_thread_cpu_s(i) - c for i, c in t0.items())
            broker_s = cpu_s(bpid) - b0
            pub.stop.set()
            pub.thread.join()
            for p in parts:
                p.close()
            print(
                f"catch_all={str(catch_all):5}  network threads {1e6 * threads / n:5.1f} us/msg  "
                f"worker (next_batch, ack) {1e6 * dt_worker / n:5.1f} us/msg  "
                f"broker {1e6 * broker_s / n:5.1f} us/msg  "
                f"(partition 0 dropped {parts[0].dropped:,} of {n:,})",
                flush=True,
            )
    finally:
        broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--start-rate", type=float, default=4000)
    ap.add_argument("--max-rate", type=float, default=200_000)
    ap.add_argument("--warmup-s", type=float, default=4)
    ap.add_argument("--window-s", type=float, default=12)
    ap.add_argument("--repeat", type=int, default=1)
    add_set_option(ap)
    ap.add_argument("--drain", action="store_true")
    ap.add_argument("--catch-all-cost", action="store_true")
    ap.add_argument("--messages", type=int, default=100_000)
    args = ap.parse_args()
    if args.drain:
        drain(args)
        return
    if args.catch_all_cost:
        catch_all_cost(args)
        return
    EXTRA_ENV.update(env_overrides(args.set))
    base = Path(tempfile.mkdtemp(prefix="twinwatch-scale-"))
    influx, broker = bench_services(base)
    svcs: dict[str, services.Service] = {"influxdb": influx, "mosquitto": broker}
    config_path, topics = bench_city(base, args.series)
    counts = [int(x) for x in args.processes.split(",")]
    results: dict[int, list] = {n: [] for n in counts}
    try:
        for r in range(args.repeat):
            for n in counts if r % 2 == 0 else reversed(counts):
                print(
                    f"ladder: {n} process(es), {args.series} series, repetition {r + 1}", flush=True
                )
                results[n].append(ladder(args, base, svcs, config_path, topics, n, f"{n}p{r}"))
    finally:
        for svc in svcs.values():
            svc.stop()
    print("\nhighest sustained rate (written readings/s) and CPU over that window (% of a core):")
    for n, runs in results.items():
        for best in runs:
            if best is None:
                print(f"  {n} process(es): none sustained from {args.start_rate:,.0f}/s")
                continue
            rate, wrote, cpu = best
            print(
                f"  {n} process(es): {wrote:>8,.0f}/s  "
                + "  ".join(f"{k} {v:.0f}%" for k, v in cpu.items())
            )
    if len(counts) == 2 and all(results[n] and all(results[n]) for n in counts):
        a, b = (sum(x[1] for x in results[n]) / len(results[n]) for n in counts)
        print(f"ratio {counts[1]} / {counts[0]} processes: {b / a:.2f}x")


if __name__ == "__main__":
    main()
