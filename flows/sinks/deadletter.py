"""Dead letters to a JSONL file: one rejected input per line with its reason (nothing is lost).

Each worker appends to its own file (``dead-letters.jsonl``, ``dead-letters.w1.jsonl``, ...) so
workers never interleave partial lines.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from twinwatch.metrics import DEAD_LETTERS
from twinwatch.schema import DeadLetter

__all__ = ["DeadLetterFileSink"]

_encoder = msgspec.json.Encoder()


class _Partition(StatelessSinkPartition):
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("ab")

    def write_batch(self, items: list[list[DeadLetter]]) -> None:
        for batch in items:
            for dl in batch:
                DEAD_LETTERS.labels(dl.reason).inc()
                self.file.write(_encoder.encode(dl) + b"\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class DeadLetterFileSink(DynamicSink):
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        path = self.path
        if worker_index:
            path = path.with_name(f"{path.stem}.w{worker_index}{path.suffix}")
        return _Partition(path)
