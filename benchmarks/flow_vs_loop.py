"""Benchmark: the Bytewax flow vs the same parse + detect + encode logic as a plain Python loop.

    python -m benchmarks.flow_vs_loop [--readings 1000000] [--series 1000] [--batch 1000]
                                      [--repeat 3] [--groups]

Both sides get the same pre-built raw MQTT messages (topic, JSON payload bytes) in batches and run
the same code: Parser.split -> shard routing -> Shard.process (limits, robust z, EWMA-CUSUM, stuck,
gap detectors + alert lifecycle) -> Liveness (with ``--groups`` also the asset-group step:
alignment on a 60 s tick + a consistency detector on 3 of each asset's 10 gauges against a 4th)
-> the InfluxDB sink's partition (flatten, line protocol per measurement, chunks, counts) with a
writer that drops the lines instead of sending them: so the ratio is what Bytewax itself costs,
and the per-core rate is the compute a reading needs including its encoding (I/O excluded:
benchmarks/e2e.py measures it). Both run in this one process, one after the other, alternating
which goes first, ``--repeat`` times; the ratio is robust to this noisy machine even when the
absolute rates are not. CPU time (all threads) is reported next to the wall time: readings per
CPU-second is the per-core rate.
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

from twinwatch.config import parse_config
from twinwatch.engine.alerts import Router, affinity
from twinwatch.engine.assets import AssetShard, member_readings
from twinwatch.engine.liveness import Liveness, latest_times, maintenance_windows
from twinwatch.engine.parse import Parser
from twinwatch.engine.plan import Plan
from twinwatch.engine.shard import Shard
from twinwatch.flows.dataflow import build_flow
from twinwatch.flows.placement import shard_keys
from twinwatch.flows.sinks.influx import _InfluxPartition


def bench_config(series: int, groups: bool = False) -> dict:
    """A city of `series` strain sensors (10 per asset, 10 assets per site), the default stack."""
    sensors = [
        {
            "id": f"s{k}",
            "quantity": "strain",
            "unit": "microstrain",
            "interval_s": 10,
            "limits": {"low": -800, "high": 800},
        }
        for k in range(10)
    ]
    sites = [
        {
            "id": f"site{i}",
            "name": f"site {i}",
            "domain": "structures",
            "lat": 36.5,
            "lon": 127.3,
            "assets": [
                {"id": f"a{j}", "kind": "bridge", "name": "span", "sensors": sensors}
                for j in range(10)
            ],
        }
        for i in range(max(1, series // 100))
    ]
    return {
        "city": {"name": "bench"},
        "sites": sites,
        "detectors": {
            "limits": {"type": "limits"},
            "robust_z": {"type": "robust_z", "params": {"window": 120, "threshold": 8}},
            "cusum": {"type": "cusum"},
            "stuck": {"type": "stuck"},
            "gap": {"type": "gap", "params": {"factor": 10}},
            "gauge_fault": {"type": "consistency", "params": {"warmup_s": 600}},
        },
        "domain_detectors": {"structures": ["limits", "robust_z", "cusum", "stuck", "gap"]},
        "alert_rules": [
            {"detector": d, "severity": "caution"}
            for d in ("limits", "robust_z", "cusum", "stuck", "gap", "gauge_fault")
        ],
        "services": {"alertmanager": {"url": None}},
        # --groups: every asset's first three gauges judged against a fourth (issue #12), as
        # the example city's bridge span, aligned on a 60 s tick
        "asset_groups": [
            {
                "id": "gauges",
                "site": f"site{i}",
                "asset": f"a{j}",
                "tick_s": 60,
                "detectors": {"gauge_fault": {"sensors": ["s0", "s1", "s2"], "drivers": ["s9"]}},
            }
            for i in range(max(1, series // 100))
            for j in range(10)
        ]
        if groups
        else [],
        # the same logic on both sides: the loop has no rollup windows or security branch (their
        # cost is measured on its own: docs/dashboards.md, benchmarks/log_flow.py)
        "flow": {"rollups": False},
        "security": {"enabled": False},
    }


def make_batches(config, readings: int, batch: int) -> list[list[tuple[str, bytes]]]:
    topics = [f"city/{d}/{s}/{a}/{n}" for (d, s, a, n) in config.catalog]
    rng = np.random.default_rng(7)
    values = rng.normal(100.0, 5.0, readings)
    spikes = rng.random(readings) < 0.0005
    values[spikes] += 200.0  # some anomalies, so alerts are created too
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    enc = msgspec.json.Encoder()
    n = len(topics)
    msgs = []
    for i in range(readings):
        t = t0 + timedelta(seconds=10 * (i // n))
        msgs.append((topics[i % n], enc.encode({"time": t, "value": float(values[i])})))
    return [msgs[i : i + batch] for i in range(0, readings, batch)]


class NullWriter:
    """The sink's writer without the network: counts the lines it is given."""

    batch_size = 5000
    max_retries = 0

    def __init__(self) -> None:
        self.lines = 0

    def write_chunk(self, lines) -> None:
        self.lines += len(lines)

    def close(self) -> None:
        pass


def plain_loop(config, batches) -> int:
    parser, plan, live = Parser(config), Plan(config), Liveness(config)
    shards: dict[str, Shard] = {}
    groups: dict[str, AssetShard] = {}
    keys = shard_keys(config.flow.shards, config.flow.partitions)
    route = Router(keys, affinity(config))
    writer = NullWriter()
    sink = _InfluxPartition(writer)
    for raw in batches:
        records, dead = parser.split(raw)
        out: list = [records]
        for key, recs in route(records):
            shard = shards.get(key)
            if shard is None:
                shard = shards[key] = Shard(plan)
            out.append(shard.process(recs))
        if plan.groups:  # as the flow's asset step
            members = member_readings(records, plan)
            for key, recs in route(members):
                out.append(groups.setdefault(key, AssetShard(plan)).process(recs))
        out.append(live.process(latest_times(records), maintenance_windows(records)))
        sink.write_batch(out)
    sink.close()
    return writer.lines


class NullInflux(DynamicSink):
    """The InfluxDB sink's partition (encoding included) with a NullWriter."""

    def __init__(self):
        self.writer = NullWriter()

    def build(self, step_id, worker_index, worker_count):
        return _InfluxPartition(self.writer)


class CountingSink(DynamicSink):
    """A sink that only counts the records written to it (benchmarks measure the flow, not I/O)."""

    def __init__(self):
        self.n = 0

    def build(self, step_id, worker_index, worker_count):
        sink = self

        class _P(StatelessSinkPartition):
            def write_batch(self, items):
                sink.n += sum(len(i) for i in items)

        return _P()


def flow_run(config, batches) -> int:
    influx, alerts, dead = NullInflux(), CountingSink(), CountingSink()
    flow = build_flow(
        config, TestingSource(batches), influx_sink=influx, alert_sink=alerts, dead_letter_sink=dead
    )
    run_main(flow)
    return influx.writer.lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--groups", action="store_true", help="an asset group on every asset")
    args = ap.parse_args()
    config = parse_config(bench_config(args.series, args.groups), environ={})
    print(
        f"building {args.readings:,} readings over {len(config.catalog):,} series ...", flush=True
    )
    batches = make_batches(config, args.readings, args.batch)
    sides = [("plain loop", plain_loop), ("bytewax flow", flow_run)]
    ratios, per_core = [], []
    for rep in range(args.repeat):
        results = {}
        for name, fn in sides if rep % 2 == 0 else sides[::-1]:
            gc.collect()
            t, c = time.perf_counter(), time.process_time()
            points = fn(config, batches)
            dt, cpu = time.perf_counter() - t, time.process_time() - c
            results[name] = dt
            print(
                f"{rep + 1}  {name:13} {dt:6.1f} s  {args.readings / dt:>8,.0f} readings/s  "
                f"cpu {cpu:6.1f} s: {args.readings / cpu:>8,.0f} readings per cpu-second  "
                f"({points:,} points encoded)",
                flush=True,
            )
            if name == "plain loop":
                per_core.append(args.readings / cpu)
        ratios.append(results["bytewax flow"] / results["plain loop"])
        print(f"{rep + 1}  ratio flow/loop (time): {ratios[-1]:.2f}", flush=True)
    print(
        f"ratio flow/loop over {args.repeat} repetitions: {min(ratios):.2f}-{max(ratios):.2f} "
        f"(target <= 1.1); loop per core {min(per_core):,.0f}-{max(per_core):,.0f} readings/s "
        "(target >= 100,000)"
    )


if __name__ == "__main__":
    main()
