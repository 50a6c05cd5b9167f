"""Run a flow until its input ends or the process is asked to stop (SIGTERM, SIGINT).

    source = stoppable(source)                  wrap the source before building the flow
    status = run(flow, workers_per_process=..., recovery_config=..., ...)   Bytewax's cli_main
    freeze_startup()                            run does it: startup objects out of full GC passes

Bytewax 0.21 on its own (measured here): ``cli_main`` of one worker ignores SIGINT (Ctrl-C does
nothing) and SIGTERM's default action kills the process (status -15) without closing the sinks
or taking a last snapshot; the next start then replays from an older snapshot.

So ``run`` handles both signals itself. The first one sets a flag; every source partition
wrapped by ``stoppable`` ends its stream at its next poll (within ``POLL_S``, also while a paced
replay waits); Bytewax then finishes the batches in flight through every step, takes a last
snapshot (with ``--recovery-dir``) and closes every sink: the InfluxDB sink writes or spools what
it holds and acknowledges it, the alert delivery sends what is ready. ``run`` returns 0. A
second signal exits at once (status 128 + signal number) without draining; nothing is lost
even then: the alert queue and the InfluxDB spool are on disk, and MQTT messages not yet
acknowledged are redelivered by the broker.

With several processes (``-i``/``-a``), stop them all: a Bytewax cluster finishes only when
every process' input has ended.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)

__all__ = ["stoppable", "run", "freeze_startup", "request_stop", "STOP", "POLL_S"]

log = logging.getLogger(__name__)
POLL_S = 0.2  # a stop is noticed within this long, whatever the source's own next_awake
STOP = threading.Event()


def request_stop() -> None:
    """End every stoppable source's stream at its next poll (what the first signal does)."""
    STOP.set()


def _awake(inner: Any) -> datetime | None:
    t = inner.next_awake()
    if t is None:  # "poll again at once": keep it, a busy source stays fast
        return None
    return min(t, datetime.now(UTC) + timedelta(seconds=POLL_S))


class _Stops:
    """What both kinds of partition wrapper do: end the stream once a stop is requested."""

    def __init__(self, inner: Any):
        self.inner = inner

    def next_batch(self) -> Iterable[Any]:
        if STOP.is_set():
            raise StopIteration
        return self.inner.next_batch()

    def next_awake(self) -> datetime | None:
        return _awake(self.inner)

    def close(self) -> None:
        self.inner.close()


class _StatefulPart(_Stops, StatefulSourcePartition):
    def snapshot(self) -> Any:
        return self.inner.snapshot()


class _StatelessPart(_Stops, StatelessSourcePartition):
    pass


class _StoppableFixed(FixedPartitionedSource):
    def __init__(self, inner: FixedPartitionedSource):
        self.inner = inner

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _StatefulPart:
        return _StatefulPart(self.inner.build_part(step_id, for_part, resume_state))


class _StoppableDynamic(DynamicSource):
    def __init__(self, inner: DynamicSource):
        self.inner = inner

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StatelessPart:
        return _StatelessPart(self.inner.build(step_id, worker_index, worker_count))


def stoppable(source: Any) -> Any:
    """``source`` (a Bytewax FixedPartitionedSource or DynamicSource) whose partitions end
    their streams once a stop is requested."""
    if isinstance(source, FixedPartitionedSource):
        return _StoppableFixed(source)
    if isinstance(source, DynamicSource):
        return _StoppableDynamic(source)
    raise TypeError(f"not a Bytewax source: {type(source).__name__}")


def freeze_startup() -> None:
    """Keep what exists now (modules, config, plan, the built flow), which lives as long as the
    process, out of the garbage collector's full passes.

    Those walk every tracked object: 75-91 ms with 1,100 sensors, a tail of alert latency; 2 ms
    once frozen (``benchmarks.alert_latency``, docs/alerting.md). Once per process: frozen
    objects that later die in a reference cycle are not reclaimed, so a process that runs flows
    again (tests, the demo) must not keep adding to them.
    """
    if not gc.get_freeze_count():
        gc.freeze()


def run(flow: Any, **cli_main_kw: Any) -> int:
    """``bytewax.run.cli_main(flow, **cli_main_kw)`` with graceful SIGTERM/SIGINT handling;
    returns 0 when the input ended or a stop drained the flow."""
    from bytewax.run import cli_main

    STOP.clear()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if received:
            log.error("%s again: exiting now, without draining the flow", name)
            logging.shutdown()
            os._exit(128 + signum)
        received.append(signum)
        log.warning(
            "%s: stopping: finishing the batches in flight and closing the sinks "
            "(send it again to exit at once)",
            name,
        )
        request_stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    freeze_startup()
    try:
        cli_main(flow, **cli_main_kw)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        log.info("stopped cleanly after %s", signal.Signals(received[0]).name)
    return 0
