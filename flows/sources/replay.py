"""Replay files as a Bytewax source: JSONL (as written by ``twinwatch simulate --out``) or CSV.

    JSONL: {"topic": "city/water/...", "payload": {"time": "...", "value": 0.8}}   one per line
    CSV:   header ``time,topic,value`` (sensor readings only)

One partition per file (resumable: the snapshot is the byte offset of the next line), so a
multi-worker run spreads files over workers. ``speed`` paces the replay by the payloads' own
timestamps (e.g. 60 = one simulated minute per second); ``None`` replays as fast as possible.
A line that is not a valid replay record is passed on with the topic ``<file>:<line>`` so the
parse step dead-letters it with its reason instead of the source crashing.
"""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from twinwatch.metrics import RECORDS_IN

__all__ = ["ReplaySource"]


class _Line(msgspec.Struct):
    topic: str
    payload: msgspec.Raw


class _Time(msgspec.Struct):
    time: datetime


_line = msgspec.json.Decoder(_Line)
_time = msgspec.json.Decoder(_Time)


def _from_line(raw: bytes, where: str) -> tuple[str, bytes]:
    try:
        rec = _line.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return where, raw.rstrip(b"\n")
    payload = bytes(rec.payload)
    if payload[:1] == b'"':  # a raw payload stored as a JSON string is replayed as its text
        payload = msgspec.json.decode(payload).encode()
    return rec.topic, payload


def _from_csv(raw: bytes, where: str) -> tuple[str, bytes]:
    row = next(csv.reader(io.StringIO(raw.decode("utf-8", "replace"))), [])
    if len(row) != 3:
        return where, raw.rstrip(b"\n")
    t, topic, value = row
    return topic, b'{"time":"%s","value":%s}' % (t.encode(), value.encode())


class _ReplayPartition(StatefulSourcePartition):
    def __init__(self, path: Path, offset: int, batch_size: int, speed: float | None):
        self.path = path
        self.file = path.open("rb")
        self.convert = _from_csv if path.suffix == ".csv" else _from_line
        if offset:
            self.file.seek(offset)
        elif self.convert is _from_csv:
            self.file.readline()  # header
        self.batch_size = batch_size
        self.speed = speed
        self.origin: tuple[float, float] | None = None  # (first payload time, wall start)
        self.wait_until: float | None = None
        self.pending: list[tuple[str, bytes]] = []
        self.resume_at = self.file.tell()

    def next_batch(self) -> list:
        if self.wait_until is not None:
            if time.monotonic() < self.wait_until:
                return []
            self.wait_until = None
        if not self.pending:
            self.resume_at = self.file.tell()
        batch = self.pending or self._read()
        self.pending = []
        if not batch:
            raise StopIteration
        if self.speed and self._ahead(batch, self.speed):
            self.pending = batch
            return []
        RECORDS_IN.labels("file").inc(len(batch))
        return [batch]

    def _read(self) -> list[tuple[str, bytes]]:
        batch = []
        for _ in range(self.batch_size):
            pos = self.file.tell()
            raw = self.file.readline()
            if not raw:
                break
            if raw.strip():
                batch.append(self.convert(raw, f"{self.path.name}@{pos}"))
        return batch

    def _ahead(self, batch, speed: float) -> bool:
        """True (and sleep scheduled) when the batch's last payload time is still in the future."""
        try:
            t = _time.decode(batch[-1][1]).time.timestamp()
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        now = time.monotonic()
        if self.origin is None:
            self.origin = (t, now)
        due = self.origin[1] + (t - self.origin[0]) / speed
        if due > now:
            self.wait_until = due
            return True
        return False

    def next_awake(self) -> datetime | None:
        if self.wait_until is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.wait_until - time.monotonic())

    def snapshot(self) -> int:
        # Byte offset of the first line not yet emitted (a held-back paced batch is re-read).
        return self.resume_at if self.pending else self.file.tell()

    def close(self) -> None:
        self.file.close()


class ReplaySource(FixedPartitionedSource):
    def __init__(self, paths: list[str | Path], batch_size: int = 1000, speed: float | None = None):
        self.paths = [Path(p) for p in paths]
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"replay files not found: {', '.join(missing)}")
        self.batch_size = batch_size
        self.speed = speed

    def list_parts(self) -> list[str]:
        return [str(p) for p in self.paths]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        return _ReplayPartition(Path(for_part), resume_state or 0, self.batch_size, self.speed)
