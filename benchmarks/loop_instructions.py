"""Benchmark: CPU instructions per reading of the default stack (parse, detect, liveness, encoding).

    python -m benchmarks.loop_instructions [--readings 20000] [--warm 50000] [--series 1000]

Wall and CPU time on a shared 2-core machine swing by 1.5x between runs, so a change of 10 % in
`benchmarks.flow_vs_loop` needs many alternated repetitions to show. Instructions do not swing:
this runs `benchmarks.flow_vs_loop.plain_loop` under valgrind's cachegrind (``apt install
valgrind``) twice, once over ``--warm`` readings (every series past its detectors' warm-up) and
once over the same plus ``--readings`` more, and divides the difference by ``--readings``: the
steady-state instructions of one reading, interpreter and libraries included. Run it on two
trees to compare them (each with its own venv); instructions are a proxy for time (cache misses
and branch mispredictions are not counted), so report it next to a timed benchmark.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child(series: int, warm: int, readings: int, count: int) -> None:
    """Inside valgrind: the loop over ``warm`` readings, then (``count`` = 1) ``readings`` more.
    Both runs build the same batches: only the loop over them differs."""
    from benchmarks.flow_vs_loop import bench_config, make_batches, plain_loop
    from twinwatch.config import parse_config

    config = parse_config(bench_config(series), environ={})
    batches = make_batches(config, warm + readings, 1000)
    plain_loop(config, batches if count else batches[: warm // 1000])


def instructions(series: int, warm: int, readings: int, count: int) -> int:
    """Instructions valgrind counts for the child run."""
    cmd = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--trace-children=yes",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.loop_instructions",
        "--child",
        str(series),
        str(warm),
        str(readings),
        str(count),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    counts = re.findall(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if not counts:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(counts[-1].replace(",", ""))


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        _child(*map(int, sys.argv[2:]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readings", type=int, default=20_000)
    ap.add_argument("--warm", type=int, default=50_000, help="readings before counting")
    ap.add_argument("--series", type=int, default=1000)
    args = ap.parse_args()
    if args.warm % 1000 or args.readings % 1000:
        ap.error("--warm and --readings must be multiples of the batch size, 1000")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt install valgrind")
    print(
        f"counting instructions: {args.warm:,} readings, then {args.readings:,} more "
        f"({args.series:,} series; about a minute per run under valgrind) ...",
        flush=True,
    )
    base = instructions(args.series, args.warm, args.readings, 0)
    total = instructions(args.series, args.warm, args.readings, 1)
    print(f"{(total - base) / args.readings:,.0f} instructions per reading (steady state)")


if __name__ == "__main__":
    main()
