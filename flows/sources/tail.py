"""Follow log files as a Bytewax source, like ``tail -F``, resuming from the offset after a restart.

    TailSource(paths, follow=True, poll_s=0.5, idle_timeout_s=None)

Items are batches of ``(origin, line bytes)`` with origin ``file:<path>``. Only complete lines
are emitted: a line still being written waits for its newline. One partition per file; its
snapshot is ``(inode, offset)`` of the first line not yet emitted.

- Rotation (the file renamed away and a new one created, as logrotate does): the old file is read
  to its end, then the new one from its start. A truncated file (``copytruncate``) is read from 0.
- Restart: the snapshot's inode is looked up at the path and, if the file was rotated while the
  flow was down, among its siblings (``auth.log.1``); the rest of that file is read first.
- ``follow=False`` reads each file to its end and stops (replaying a log, e.g. loghub's samples).
- ``framing`` ``journal`` (per path): one item per block of lines up to a blank line, joined by
  newlines (``journalctl -o export``); a block is emitted once its blank line is written, and
  the snapshot offset is the start of the first block not yet emitted.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from twinwatch.metrics import RECORDS_IN

__all__ = ["TailSource"]

_MAX_LINE = 1 << 20  # a longer "line" is cut here (and dead-lettered as too large)


def _open(path: Path) -> BinaryIO | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


class _TailPartition(StatefulSourcePartition):
    def __init__(
        self,
        path: Path,
        state: tuple[int, int] | None,
        batch_size: int,
        follow: bool,
        poll_s: float,
        idle_timeout_s: float | None,
        framing: str = "line",
    ):
        self.path = path
        self.journal = framing == "journal"
        self.block: list[bytes] = []  # journal: the lines of the block being read
        self.block_start: int | None = None  # ... and its offset
        self.origin = f"file:{path}"
        self.batch_size = batch_size
        self.follow = follow
        self.poll_s = poll_s
        self.idle_timeout_s = idle_timeout_s
        self.last_line = time.monotonic()
        self.wait_until: float | None = None
        self.fh = _open(path)
        self.rotated_from: BinaryIO | None = None  # the previous file, still to be finished
        if state is not None:
            inode, offset = state
            if self.fh is not None and os.fstat(self.fh.fileno()).st_ino == inode:
                self.fh.seek(min(offset, os.fstat(self.fh.fileno()).st_size))
            else:  # rotated while the flow was down: finish the old file first
                self.rotated_from = self._rotated_sibling(inode)
                if self.rotated_from is not None:
                    self.rotated_from.seek(offset)

    def _rotated_sibling(self, inode: int) -> BinaryIO | None:
        for p in sorted(self.path.parent.glob(self.path.name + ".*")):
            try:
                if p.stat().st_ino == inode:
                    return p.open("rb")
            except OSError:
                continue
        return None

    def _read(self, fh: BinaryIO, batch: list) -> None:
        while len(batch) < self.batch_size:
            pos = fh.tell()
            line = fh.readline(_MAX_LINE)
            if not line:
                return
            if not line.endswith(b"\n") and len(line) < _MAX_LINE:
                fh.seek(pos)  # incomplete: wait for the rest
                return
            if self.journal:
                self._journal(line.rstrip(b"\r\n"), pos, batch)
            elif line.strip():
                batch.append((self.origin, line.rstrip(b"\r\n")))

    def _journal(self, line: bytes, pos: int, batch: list) -> None:
        if line:
            if not self.block:
                self.block_start = pos
            self.block.append(line)
        elif self.block:
            batch.append((self.origin, b"\n".join(self.block)))
            self.block, self.block_start = [], None

    def _reopen_if_rotated(self) -> bool:
        """At the end of the current file: switch to a new file at the path, or rewind after a
        truncation. True when there may be more to read now."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False  # rotated away, the new file not created yet
        if self.fh is None:
            self.fh = _open(self.path)
            return self.fh is not None
        cur = os.fstat(self.fh.fileno())
        if st.st_ino != cur.st_ino:
            self.fh.close()
            self.fh = _open(self.path)
            return True
        if st.st_size < self.fh.tell():  # copytruncate
            self.fh.seek(0)
            return True
        return False

    def next_batch(self) -> list:
        if self.wait_until is not None and time.monotonic() < self.wait_until:
            return []
        self.wait_until = None
        batch: list = []
        if self.rotated_from is not None:
            self._read(self.rotated_from, batch)
            if len(batch) < self.batch_size:
                self.rotated_from.close()
                self.rotated_from = None
        if self.fh is not None:
            self._read(self.fh, batch)
        if not batch and self._reopen_if_rotated() and self.fh is not None:
            self._read(self.fh, batch)
        if batch:
            self.last_line = time.monotonic()
            RECORDS_IN.labels("file").inc(len(batch))
            return [batch]
        if not self.follow or (
            self.idle_timeout_s is not None
            and time.monotonic() - self.last_line > self.idle_timeout_s
        ):
            raise StopIteration
        self.wait_until = time.monotonic() + self.poll_s
        return []

    def next_awake(self) -> datetime | None:
        if self.wait_until is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.wait_until - time.monotonic())

    def snapshot(self) -> tuple[int, int] | None:
        fh = self.rotated_from or self.fh
        if fh is None:
            return None
        offset = self.block_start if self.block_start is not None else fh.tell()
        return (os.fstat(fh.fileno()).st_ino, offset)

    def close(self) -> None:
        for fh in (self.fh, self.rotated_from):
            if fh is not None:
                fh.close()


class TailSource(FixedPartitionedSource):
    def __init__(
        self,
        paths: list[str | Path],
        batch_size: int = 1000,
        follow: bool = True,
        poll_s: float = 0.5,
        idle_timeout_s: float | None = None,
        framing: dict[str, str] | str = "line",
    ):
        self.paths = [Path(p) for p in paths]
        self.framing = framing
        if not follow:
            missing = [str(p) for p in self.paths if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"log files not found: {', '.join(missing)}")
        self.batch_size = batch_size
        self.follow = follow
        self.poll_s = poll_s
        self.idle_timeout_s = idle_timeout_s

    def list_parts(self) -> list[str]:
        return [str(p) for p in self.paths]

    def build_part(self, step_id: str, for_part: str, resume_state):
        return _TailPartition(
            Path(for_part),
            resume_state,
            self.batch_size,
            self.follow,
            self.poll_s,
            self.idle_timeout_s,
            self.framing if isinstance(self.framing, str) else self.framing.get(for_part, "line"),
        )
