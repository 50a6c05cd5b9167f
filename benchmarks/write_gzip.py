"""Gzip or not for InfluxDB writes: raw /write of the flow's line protocol, plain vs gzip (level
1, compressed by the sender as ``twinwatch.influx`` does), on loopback and over an emulated link.

    python -m benchmarks.write_gzip [--readings 100000] [--repeat 2]
                                    [--shape "tbf rate 100mbit burst 64kb latency 50ms"]

Loopback: InfluxDB on 127.0.0.1. Link (needs root: ``ip netns``, ``tc``): a network namespace
joined to this one by a veth pair; InfluxDB listens on the host end (10.213.0.1), the writer
runs inside the namespace, and ``tc qdisc add dev <veth> root <--shape>`` shapes both ends
(a token bucket by default: this kernel has no ``netem``, so bandwidth is emulated, latency
is not). Everything is
removed at the end. Plain and gzip alternate, ``--repeat`` times each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from twinwatch.app import services
from twinwatch.config import InfluxService

NS, HOST_IF, NS_IF = "twgzip", "twgzip0", "twgzip1"
HOST_IP, NS_IP = "10.213.0.1", "10.213.0.2"


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


def _link_up(shape: str) -> None:
    _sh("ip", "netns", "add", NS)
    _sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
    _sh("ip", "link", "set", NS_IF, "netns", NS)
    _sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_IF)
    _sh("ip", "link", "set", HOST_IF, "up")
    _sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/30", "dev", NS_IF)
    _sh("ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "up")
    _sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
    _sh("tc", "qdisc", "add", "dev", HOST_IF, "root", *shape.split())
    _sh("ip", "netns", "exec", NS, "tc", "qdisc", "add", "dev", NS_IF, "root", *shape.split())


def _link_down() -> None:
    subprocess.run(["ip", "link", "del", HOST_IF], check=False)
    subprocess.run(["ip", "netns", "del", NS], check=False)


def _writer(url: str, db: str, lines_path: Path, gz: bool, ns: bool) -> float:
    """Seconds for benchmarks.e2e.raw_write in a child process (inside the namespace if ``ns``)."""
    code = (
        "import sys; from benchmarks.e2e import raw_write; "
        "lines = open(sys.argv[1]).read().splitlines(); "
        "print(raw_write(sys.argv[2], sys.argv[3], lines, int(sys.argv[4]), sys.argv[5] == '1'))"
    )
    cmd = [sys.executable, "-c", code, str(lines_path), url, db, str(InfluxService().batch_size)]
    cmd.append("1" if gz else "0")
    if ns:
        cmd = ["ip", "netns", "exec", NS, *cmd]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    from benchmarks.e2e import flow_lines

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--shape", default="tbf rate 100mbit burst 64kb latency 50ms")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="twinwatch-gzip-"))
    lines = flow_lines(args.series, args.readings)
    lines_path = base / "lines.lp"
    lines_path.write_text("\n".join(lines) + "\n")
    plain = len(lines_path.read_bytes())
    print(f"{len(lines):,} points, {plain / len(lines):.0f} bytes per point", flush=True)
    results: dict[str, list[float]] = {}
    _link_down()
    influx = services.InfluxDB(base / "influxdb")
    # the veth's host end: reachable from this host and the namespace only (the services
    # harness binds loopback addresses only, so the address is set past its check)
    influx._host = HOST_IP
    try:
        _link_up(args.shape)
        influx.start()
        url = f"http://{HOST_IP}:{influx.port}"
        for r in range(args.repeat):
            for where, ns in (
                ("loopback", False),
                (f"link ({args.shape.split(' latency')[0]})", True),
            ):
                for gz in (False, True) if r % 2 == 0 else (True, False):
                    db = f"g{r}{int(ns)}{int(gz)}"
                    influx.create_database(db)
                    dt = _writer(url, db, lines_path, gz, ns)
                    influx.drop_database(db)
                    key = f"{where:32} {'gzip ' if gz else 'plain'}"
                    results.setdefault(key, []).append(args.readings / dt)
                    print(f"  {key} {args.readings / dt:>9,.0f} readings/s", flush=True)
    finally:
        influx.stop()
        _link_down()
    print(json.dumps({k: [round(v) for v in vs] for k, vs in results.items()}, indent=1))


if __name__ == "__main__":
    main()
