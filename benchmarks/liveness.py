"""Benchmark: what the liveness step costs per batch as the city grows.

    python -m benchmarks.liveness [--series 1000,10000,50000] [--batch 10] [--calls 2000]

The flow calls ``Liveness.process`` once per batch with the newest time of each series in it.
At low rates the batches are small (a few readings every 10 ms per source partition), so a cost
per batch that grows with the number of series the city has (a sort of every series' time for
the stream's clock, a scan of every series for silence) is paid hundreds of times a second.
This city has ``--series`` strain sensors (``benchmarks.flow_vs_loop``'s); every series is seen
once, then ``--calls`` batches of ``--batch`` series each, time moving on. Prints CPU µs per call.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.flow_vs_loop import bench_config
from twinwatch.config import parse_config
from twinwatch.engine.liveness import Liveness
from twinwatch.schema import series_key

T0 = 1.7e9


def per_call_us(series: int, batch: int, calls: int) -> float:
    config = parse_config(bench_config(series), environ={})
    keys = [series_key(d, s, a, x) for d, s, a, x in config.catalog]
    live = Liveness(config)
    live.process({k: T0 for k in keys})
    start = time.process_time()
    for i in range(calls):
        first = i * batch
        live.process(
            {keys[(first + j) % len(keys)]: T0 + 1 + (first + j) * 0.001 for j in range(batch)}
        )
    return 1e6 * (time.process_time() - start) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", default="1000,10000,50000")
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    for n in map(int, args.series.split(",")):
        us = per_call_us(n, args.batch, args.calls)
        print(f"{n:>7,} series: {us:8.1f} us CPU per Liveness.process call of {args.batch} series")


if __name__ == "__main__":
    main()
