"""A Bytewax sink for tests that keeps everything the flow wrote to it."""

from __future__ import annotations

from bytewax.outputs import DynamicSink, StatelessSinkPartition

__all__ = ["Capture"]


class Capture(DynamicSink):
    """Collects everything written to it (flattening the flow's batches)."""

    def __init__(self):
        self.items: list = []

    def build(self, step_id, worker_index, worker_count):
        items = self.items

        class _P(StatelessSinkPartition):
            def write_batch(self, batch):
                for b in batch:
                    items.extend(b)

        return _P()
