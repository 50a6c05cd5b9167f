"""At-least-once delivery: a batch carries the acknowledgement of the raw messages it came from.

The MQTT source receives with manual acknowledgement; the flow attaches ``ack`` to the batch of
records parsed from those messages (or to their dead letters when none was valid), and the
InfluxDB sink calls it once the batch is durable: written, or fsynced to the spool. A message the
flow had not made durable when it died is redelivered by the broker (persistent session); InfluxDB
overwrites the same (series, time), so the redelivery is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Acked", "ack_all"]


class Acked(list):
    """A list of records with the acknowledgement of its source messages."""

    __slots__ = ("ack",)

    def __init__(self, items, ack: Callable[[], None]):
        super().__init__(items)
        self.ack = ack


def ack_all(items) -> None:
    """Acknowledge every Acked batch among ``items`` (a sink's write_batch argument)."""
    for item in items:
        ack = getattr(item, "ack", None)
        if ack is not None:
            ack()
