"""flows.graceful.run: what exists before the flow is kept out of the collector's full passes."""

from __future__ import annotations

import gc

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from twinwatch.flows import graceful


def _flow(items: list[int], out: list[int]) -> Dataflow:
    flow = Dataflow("graceful_gc")
    op.output("out", op.input("in", flow, TestingSource(items)), TestingSink(out))
    return flow


def test_run_freezes_what_exists_before_the_flow_once_per_process():
    gc.unfreeze()  # as a fresh process: nothing frozen yet
    try:
        alive = [[i] for i in range(5_000)]  # containers that outlive the run, like the plan's
        out: list[int] = []
        assert graceful.run(_flow([1, 2, 3], out)) == 0
        assert out == [1, 2, 3]
        frozen = gc.get_freeze_count()
        assert frozen >= len(alive)
        # a second run in the same process adds nothing: frozen cycles are never reclaimed
        more = [[i] for i in range(5_000)]
        out2: list[int] = []
        assert graceful.run(_flow([4], out2)) == 0
        assert out2 == [4]
        assert gc.get_freeze_count() == frozen
        del alive, more
    finally:
        gc.unfreeze()  # back to the collector: the rest of the test session as before
