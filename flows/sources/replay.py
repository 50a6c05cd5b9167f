"""Replay files as a Bytewax source: JSONL (as written by ``twinwatch simulate --out``) or CSV,
in the one replay format of ``twinwatch.replay``.

One partition per file (resumable: the snapshot is the byte offset of the next line), so a
multi-worker run spreads files over workers. ``speed`` paces the replay by the payloads' own
timestamps (e.g. 60 = one simulated minute per second); ``None`` replays as fast as possible.
A line that is not a valid replay record becomes a dead letter with its reason (topic
``<file>@<byte offset>``) instead of crashing the source.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from twinwatch.engine.deadletter import dead_letter
from twinwatch.flows.acks import DeadBatch
from twinwatch.metrics import RECORDS_IN
from twinwatch.replay import decode_csv_row, decode_line, payload_time
from twinwatch.schema import BadRecord, DeadLetter

__all__ = ["ReplaySource"]


MAX_LINE_BYTES = 1 << 20  # a longer line is dead-lettered (too_large), not read into memory


def _dead(path: Path, pos: int, reason: str, detail: str, raw: bytes) -> DeadLetter:
    return dead_letter("file", f"{path.name}@{pos}", reason, detail, raw)


class _ReplayPartition(StatefulSourcePartition):
    """Emits per read a batch of (topic, payload) messages and, when some lines were not replay
    records, a DeadBatch of their dead letters (the parse step passes those on as they are)."""

    def __init__(self, path: Path, offset: int, batch_size: int, speed: float | None):
        self.path = path
        self.file = path.open("rb")
        self.decode = decode_csv_row if path.suffix == ".csv" else decode_line
        if offset:
            self.file.seek(offset)
        elif self.decode is decode_csv_row:
            self.file.readline(MAX_LINE_BYTES)  # header
        self.batch_size = batch_size
        self.speed = speed
        self.origin: tuple[float, float] | None = None  # (first payload time, wall start)
        self.wait_until: float | None = None
        self.pending: list[list] = []
        self.resume_at = self.file.tell()

    def next_batch(self) -> list:
        if self.wait_until is not None:
            if time.monotonic() < self.wait_until:
                return []
            self.wait_until = None
        if not self.pending:
            self.resume_at = self.file.tell()
        items = self.pending or self._read()
        self.pending = []
        if not items:
            raise StopIteration
        if self.speed and items[0] and self._ahead(items[0], self.speed):
            self.pending = items
            return []
        RECORDS_IN.labels("file").inc(sum(len(b) for b in items))
        return [b for b in items if b]

    def _read(self) -> list[list]:
        batch: list[tuple[str, bytes]] = []
        dead = DeadBatch()
        while len(batch) + len(dead) < self.batch_size:
            pos = self.file.tell()
            raw = self.file.readline(MAX_LINE_BYTES)
            if not raw:
                break
            if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (more := self.file.readline(MAX_LINE_BYTES)) and not more.endswith(b"\n"):
                    pass  # skip the rest of the line
                dead.append(_dead(self.path, pos, "too_large", "line over 1 MiB", raw))
                continue
            if not raw.strip():
                continue
            try:
                batch.append(self.decode(raw))
            except BadRecord as e:
                dead.append(_dead(self.path, pos, e.reason, e.detail, raw.rstrip(b"\n")))
        return [batch, dead] if batch or dead else []

    def _ahead(self, batch, speed: float) -> bool:
        """True (and sleep scheduled) when the batch's last payload time is still in the future."""
        when = payload_time(batch[-1][1])
        if when is None:
            return False
        t = when.timestamp()
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
