"""A bounded on-disk FIFO of line-protocol chunks, for when InfluxDB is unreachable.

    spool = Spool(path, max_bytes, policy="drop_oldest")
    spool.push(lines)             # one segment file per chunk, written atomically (tmp + rename)
    seq, lines = spool.oldest()   # backfill in order ...
    spool.pop(seq)                # ... removing a segment only once it is written

Segments survive a restart of the flow: a new Spool over the same folder picks them up, oldest
first. When the spool is full, ``policy`` decides, and says so loudly:

* ``drop_oldest``: the oldest segments are deleted and their points counted as dropped;
* ``block``: ``push`` raises ``SpoolFull`` and the caller waits for InfluxDB. That blocks the
  flow's worker; the MQTT source then stops reading from the broker once it holds
  ``flow.max_queued`` messages, so the backlog stays on the broker (the persistent session),
  not in the flow's memory.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Literal

__all__ = ["Spool", "SpoolFull"]

log = logging.getLogger(__name__)


class SpoolFull(RuntimeError):
    """The spool is at its size limit and its policy is ``block``."""


class Spool:
    def __init__(
        self,
        path: str | Path,
        max_bytes: int,
        policy: Literal["drop_oldest", "block"] = "drop_oldest",
    ):
        if max_bytes < 1:
            raise ValueError("spool max_bytes must be >= 1")
        self.path = Path(path)  # created on the first push: no outage, no folder
        self.max_bytes = max_bytes
        self.policy = policy
        self.dropped = 0  # points deleted by drop_oldest
        self._segments: dict[int, int] = {}  # seq -> bytes, oldest first (dicts keep order)
        for f in sorted(self.path.glob("*.lp")):
            self._segments[int(f.stem)] = f.stat().st_size
        for tmp in self.path.glob("*.tmp"):  # a crash mid-write: the chunk never counted
            tmp.unlink()
        self._next = max(self._segments, default=0) + 1
        self.bytes = sum(self._segments.values())

    def __len__(self) -> int:
        return len(self._segments)

    def push(self, lines: list[str]) -> None:
        data = ("\n".join(lines) + "\n").encode()
        while self._segments and self.bytes + len(data) > self.max_bytes:
            if self.policy == "block":
                raise SpoolFull(f"spool {self.path} is full ({self.bytes} bytes)")
            seq = next(iter(self._segments))
            n = len(self._read(seq))
            self.pop(seq)
            self.dropped += n
            log.error(
                "spool %s full (%d bytes): dropped the oldest %d points",
                self.path,
                self.max_bytes,
                n,
            )
        seq, self._next = self._next, self._next + 1
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f"{seq:012d}.tmp"
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path / f"{seq:012d}.lp")
        self._segments[seq] = len(data)
        self.bytes += len(data)

    def oldest(self) -> tuple[int, list[str]] | None:
        if not self._segments:
            return None
        seq = next(iter(self._segments))
        return seq, self._read(seq)

    def points(self) -> Counter[str]:
        """Points waiting in the spool, by measurement; reads every segment (for reports)."""
        return Counter(
            line.split(",", 1)[0].split(" ", 1)[0]
            for seq in self._segments
            for line in self._read(seq)
        )

    def pop(self, seq: int) -> None:
        (self.path / f"{seq:012d}.lp").unlink(missing_ok=True)
        self.bytes -= self._segments.pop(seq)

    def _read(self, seq: int) -> list[str]:
        return (self.path / f"{seq:012d}.lp").read_text().splitlines()
