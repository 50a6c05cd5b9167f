"""Shard keys that Bytewax places on the worker that runs their source partition.

    shard_keys(shards, partitions) -> list[str]     key of shard s, for s in range(shards)

Series affinity puts every series of a detector shard into one source partition (``flow.shards``
is a multiple of ``flow.partitions``; shard ``s`` belongs to partition ``s % partitions``). If the
shard's key also lives on the worker that reads that partition, the detect and rollup steps need
no exchange between processes at all: each process detects, rolls up and writes the series it
received, and only the small liveness summaries cross to one worker.

How Bytewax 0.21 places things (checked against Bytewax itself in tests/flows/test_placement.py):

- the partitions of a ``FixedPartitionedSource``, which every worker can build, are dealt out
  in sorted key order, round robin: the partition of rank ``r`` runs on worker ``r % W``;
- a stateful step's key ``k`` lives on worker ``siphash13(k + b"\\xff") % W`` (Rust's
  ``DefaultHasher`` over a ``String``).

So shard ``s`` gets the first key ``"s"``, ``"s~1"``, ``"s~2"``, ... whose hash is congruent to its
partition's rank modulo ``lcm(1..min(partitions, 8))``: it then sits with its partition for every
worker count ``W <= partitions`` (up to 8; above that for the W dividing 840). The keys depend
on the config only, never on the number of processes, so snapshots survive a rescale.
"""

from __future__ import annotations

import math
from functools import cache

__all__ = ["shard_keys", "partition_keys", "route", "siphash13"]

_MASK = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 (Rust's ``DefaultHasher`` with its zero keys)."""
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573

    def rounds(v0: int, v1: int, v2: int, v3: int, n: int) -> tuple[int, int, int, int]:
        for _ in range(n):
            v0 = (v0 + v1) & _MASK
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _MASK
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _MASK
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _MASK
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)
        return v0, v1, v2, v3

    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 1)
        v0 ^= m
    b = ((n & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v3 ^= b
    v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 1)
    v0 ^= b
    v2 ^= 0xFF
    v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 3)
    return v0 ^ v1 ^ v2 ^ v3


def route(key: str, workers: int) -> int:
    """The worker on which Bytewax keeps a stateful step's ``key``."""
    return siphash13(key.encode() + b"\xff") % workers


def partition_keys(partitions: int) -> list[str]:
    """The MQTT source's partition keys, in partition order (``<i>of<n>``)."""
    return [f"{i}of{partitions}" for i in range(partitions)]


@cache
def shard_keys(shards: int, partitions: int) -> list[str]:
    ranks = {key: r for r, key in enumerate(sorted(partition_keys(partitions)))}
    rank = [ranks[key] for key in partition_keys(partitions)]
    modulus = math.lcm(*range(1, min(partitions, 8) + 1))
    keys = []
    for s in range(shards):
        want = rank[s % partitions] % modulus
        key, j = str(s), 0
        while siphash13(key.encode() + b"\xff") % modulus != want:
            j += 1
            key = f"{s}~{j}"
        keys.append(key)
    return keys
