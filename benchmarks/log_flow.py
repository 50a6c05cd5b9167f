"""Throughput of the log flow: lines/s per core, from log file to findings and alerts.

    .venv/bin/python -m benchmarks.log_flow [--repeat 20] [--files HDFS/HDFS_2k.log ...]

Replays loghub's OpenSSH, Linux and Apache samples (Zhu et al., "Loghub: A Large Collection of
System Log Datasets for AI-driven Log Analytics", ISSRE 2023; ../shared/data/loghub), each
concatenated ``--repeat`` times, through the log flow (TailSource -> logparse -> security
detection with drain3 -> capture sinks) with one Bytewax worker, and the same parse + detect logic
as a plain loop. Sinks are in-memory: this measures the flow, not InfluxDB. Prints lines/s of
both, their ratio, and the split between parsing and detection, per second of wall time and per
CPU second of this process (= per core: the flow runs one worker; on a shared machine the CPU
figure is the stable one). ``--files`` replays other samples (paths under the loghub folder),
read with no declared format, e.g. those only the fallback format reads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bytewax.testing import run_main

from benchmarks.flow_vs_loop import CountingSink
from twinwatch.config import load_config
from twinwatch.engine.logparse import LogParser
from twinwatch.engine.security import SecurityShard
from twinwatch.flows.security import build_log_flow
from twinwatch.flows.sources.tail import TailSource

LOGHUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "loghub"
FILES = ("OpenSSH_2k.log", "Linux_2k.log", "Apache_2k.log")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--files", nargs="+", default=list(FILES), help="samples under loghub/")
    args = ap.parse_args()
    files = args.files
    missing = [f for f in files if not (LOGHUB / f).is_file()]
    if missing:
        print(f"loghub samples missing in {LOGHUB}: {', '.join(missing)}", file=sys.stderr)
        return 2
    config = load_config(environ={})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mixed.log"
        data = b"".join((LOGHUB / f).read_bytes() for f in files)
        path.write_bytes(data * args.repeat)
        lines = data.count(b"\n") * args.repeat
        raw = [("file:mixed", line.rstrip(b"\r\n")) for line in path.open("rb")]

        c0, t0 = time.process_time(), time.perf_counter()
        parser = LogParser(config)
        events = []
        for i in range(0, len(raw), 1000):
            events += parser.split(raw[i : i + 1000])[0]
        t1 = time.perf_counter()
        shard = SecurityShard(config)
        for i in range(0, len(events), 1000):
            shard.process(events[i : i + 1000])
        t2, c2 = time.perf_counter(), time.process_time()
        loop_s, loop_cpu = t2 - t0, c2 - c0

        influx, alerts, dead = CountingSink(), CountingSink(), CountingSink()
        t3, c3 = time.perf_counter(), time.process_time()
        run_main(
            build_log_flow(
                config,
                TailSource([path], batch_size=1000, follow=False),
                influx_sink=influx,
                alert_sink=alerts,
                dead_letter_sink=dead,
            )
        )
        flow_s, flow_cpu = time.perf_counter() - t3, time.process_time() - c3
    print(f"{lines} lines ({', '.join(files)} x {args.repeat}), 1 worker")
    print(
        f"  plain loop : {lines / loop_s:10,.0f} lines/s  (parse {lines / (t1 - t0):,.0f}/s, "
        f"detect {lines / (t2 - t1):,.0f}/s)"
    )
    print(
        f"  flow       : {lines / flow_s:10,.0f} lines/s  ({influx.n} records written, "
        f"{alerts.n} alert changes, {dead.n} dead letters)"
    )
    print(f"  flow / loop time ratio: {flow_s / loop_s:.2f}")
    print(
        f"  per CPU second (per core): loop {lines / loop_cpu:,.0f} lines/s, "
        f"flow {lines / flow_cpu:,.0f} lines/s, ratio {flow_cpu / loop_cpu:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
