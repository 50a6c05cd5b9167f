"""At-least-once delivery: a batch carries the acknowledgement of the raw messages it came from.

The MQTT source receives with manual acknowledgement. The parse step splits a raw batch into
its records and its dead letters and gives each part a share of the batch's acknowledgement
(``split_ack``); the source message is acknowledged once *every* part is durable: the records
written to InfluxDB or fsynced to its spool, the dead letters fsynced to the dead-letter file (or
written to InfluxDB). So a poison batch is acknowledged only after its dead letters are durable,
and a batch whose write failed is never acknowledged. A message the flow had not made durable
when it died is redelivered by the broker (persistent session); InfluxDB overwrites the same
(series, time), so the redelivery is idempotent.

``DeadBatch`` marks a list of dead letters a source made itself (e.g. a replay line that is not
a replay record); the parse step passes it on unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Acked", "DeadBatch", "ack_all", "split_ack"]


class Acked(list):
    """A list of records with the acknowledgement of its source messages."""

    __slots__ = ("ack",)

    def __init__(self, items, ack: Callable[[], None]):
        super().__init__(items)
        self.ack = ack


class DeadBatch(list):
    """A list of DeadLetters made by a source, passed through the parse step as they are."""

    __slots__ = ()


def split_ack(ack: Callable[[], None], parts: int) -> list[Callable[[], None]]:
    """``parts`` one-shot callables; ``ack`` runs when every one of them has been called.

    Each part may be called more than once (two sinks may both make the same dead letters
    durable): only its first call counts.
    """
    lock = threading.Lock()
    waiting = set(range(parts))

    def part(i: int) -> Callable[[], None]:
        def done() -> None:
            with lock:
                if i not in waiting:
                    return
                waiting.discard(i)
                last = not waiting
            if last:
                ack()

        return done

    return [part(i) for i in range(parts)]


def ack_all(items) -> None:
    """Acknowledge every Acked batch among ``items`` (a sink's write_batch argument)."""
    for item in items:
        ack = getattr(item, "ack", None)
        if ack is not None:
            ack()
