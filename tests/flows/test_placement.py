"""Shard keys sit on the worker that reads their source partition (twinwatch.flows.placement),
checked against Bytewax itself: a real dataflow with W workers reports where each source
partition ran and where each shard key's state lives."""

from __future__ import annotations

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import cluster_main

from twinwatch.flows.placement import partition_keys, route, shard_keys


class _Part(StatefulSourcePartition):
    def __init__(self, key: str, items: list):
        self.items = items

    def next_batch(self) -> list:
        if not self.items:
            raise StopIteration
        items, self.items = self.items, []
        return items

    def snapshot(self) -> None:
        return None


class _Source(FixedPartitionedSource):
    def __init__(self, partitions: int, keys: list[str]):
        self.partitions = partitions
        self.keys = keys

    def list_parts(self) -> list[str]:
        return partition_keys(self.partitions)

    def build_part(self, step_id, for_part, resume_state):
        i = partition_keys(self.partitions).index(for_part)
        mine = [k for s, k in enumerate(self.keys) if s % self.partitions == i]
        return _Part(for_part, [(k, for_part) for k in mine])


class _Where(DynamicSink):
    def __init__(self, seen: dict):
        self.seen = seen

    def build(self, step_id, worker_index, worker_count):
        seen = self.seen

        class _W(StatelessSinkPartition):
            def write_batch(self, items):
                for item in items:
                    seen[item] = worker_index

        return _W()


class _Keep(op.StatefulBatchLogic):
    def __init__(self):
        self.key = None

    def on_batch(self, items):
        return [("state", items[0])], op.StatefulBatchLogic.RETAIN

    def snapshot(self):
        return None


@pytest.mark.parametrize(
    ("partitions", "shards", "workers"), [(4, 16, 2), (4, 16, 3), (4, 16, 4), (2, 8, 2), (8, 16, 4)]
)
def test_each_shard_key_lives_with_its_partition(partitions, shards, workers):
    keys = shard_keys(shards, partitions)
    sources: dict = {}
    states: dict = {}
    flow = Dataflow("placement")
    items = op.input("in", flow, _Source(partitions, keys))  # (shard key, partition key)
    op.output("where_read", op.map("part", items, lambda kv: kv[1]), _Where(sources))
    kept = op.stateful_batch("keep", items, lambda _: _Keep())  # keyed by the shard key
    op.output("where_kept", op.map("key", kept, lambda kv: kv[0]), _Where(states))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert set(sources) == set(partition_keys(partitions))
    for s, key in enumerate(keys):
        part = partition_keys(partitions)[s % partitions]
        assert states[key] == sources[part] == route(key, workers), (s, key, part)
