"""Benchmark: size and cost of the flow's per-epoch snapshots (Bytewax recovery).

    python -m benchmarks.snapshot_cost [--series 1000] [--readings-per-series 200]

Builds a shard holding every series of the benchmark city (the same detectors as
benchmarks/flow_vs_loop.py), feeds it readings, then measures what Bytewax does at each epoch for a
touched key: ``snapshot()`` (our ``to_state()``) and pickling the result. The flow spreads series
over ``flow.shards`` keys, so one epoch costs at most this for all keys together.
"""

from __future__ import annotations

import argparse
import pickle
import time

from benchmarks.flow_vs_loop import bench_config, make_batches
from twinwatch.config import parse_config
from twinwatch.engine.parse import Parser
from twinwatch.engine.plan import Plan
from twinwatch.engine.shard import Shard


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--readings-per-series", type=int, default=200)
    args = ap.parse_args()
    config = parse_config(bench_config(args.series), environ={})
    n = len(config.catalog)
    batches = make_batches(config, n * args.readings_per_series, 1000)
    parser, shard = Parser(config), Shard(Plan(config))
    for raw in batches:
        shard.process(parser.split(raw)[0])
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        state = shard.to_state()
    snap_s = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    for _ in range(reps):
        blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    pickle_s = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    Shard(Plan(config), pickle.loads(blob))
    restore_s = time.perf_counter() - t
    print(
        f"{n:,} series, 5 detectors + alert states each, after "
        f"{args.readings_per_series} readings per series"
    )
    print(
        f"snapshot (to_state): {snap_s * 1e3:8.2f} ms per epoch  ({snap_s / n * 1e6:.1f} µs/series)"
    )
    print(f"pickle:              {pickle_s * 1e3:8.2f} ms per epoch")
    print(f"size:                {len(blob) / 1024:8.1f} KiB  ({len(blob) / n:,.0f} B/series)")
    print(f"restore:             {restore_s * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
