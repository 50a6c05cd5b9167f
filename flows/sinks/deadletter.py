"""Dead letters to a JSONL file: one rejected input per line with its reason (nothing is lost).

    DeadLetterFileSink(path)     Bytewax sink; items are lists of DeadLetters
    DeadLetterFile(path)         the appender both it and the InfluxDB sink (for points InfluxDB
                                 refused) write through

Each worker appends to its own file (``dead-letters.jsonl``, ``dead-letters.w1.jsonl``, ...) so
workers never interleave partial lines; within a process every line is written whole. A batch
that carries the acknowledgement of its source messages (``twinwatch.flows.acks``) is fsynced
before it is acknowledged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import msgspec
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from twinwatch.flows.acks import ack_all
from twinwatch.flows.sinks.outcome import OUTCOME
from twinwatch.metrics import DEAD_LETTERS
from twinwatch.schema import DeadLetter

__all__ = ["DeadLetterFileSink", "DeadLetterFile", "worker_path"]

_encoder = msgspec.json.Encoder()


def worker_path(path: str | Path, worker_index: int) -> Path:
    path = Path(path)
    if worker_index:
        path = path.with_name(f"{path.stem}.w{worker_index}{path.suffix}")
    return path


class DeadLetterFile:
    """Appends dead letters as JSON lines; counts them (metric and run outcome)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = path.open("ab")
        OUTCOME.dead_letter_path = str(path)

    def write(self, dead: Iterable[DeadLetter], sync: bool = False) -> None:
        data = bytearray()
        for dl in dead:
            DEAD_LETTERS.labels(dl.reason).inc()
            OUTCOME.add("dead", dl.reason)
            data += _encoder.encode(dl) + b"\n"
        if data:
            self.file.write(data)
            self.file.flush()
        if sync:
            os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


class _Partition(StatelessSinkPartition):
    def __init__(self, path: Path):
        self.out = DeadLetterFile(path)

    def write_batch(self, items: list[list[DeadLetter]]) -> None:
        acked = any(getattr(b, "ack", None) is not None for b in items)
        self.out.write((dl for batch in items for dl in batch), sync=acked)
        ack_all(items)  # durable: their source messages may be forgotten

    def close(self) -> None:
        self.out.close()


class DeadLetterFileSink(DynamicSink):
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(worker_path(self.path, worker_index))
