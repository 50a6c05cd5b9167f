"""Dead letters: the one way to make one, and the one way to survive a bug on one record.

    dead_letter(source, topic, reason, detail, payload) -> DeadLetter   (bounded sizes)
    internal_error(where, error, topic, payload) -> DeadLetter          (logged once per kind)

Every step of the flows that touches input catches per record: bad input is a ``BadRecord``
with a reason from ``DEAD_LETTER_REASONS``; anything else a record makes a step raise is a bug,
and that record becomes an ``internal_error`` dead letter while the rest of its batch and the
flow go on.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from twinwatch.schema import DeadLetter

__all__ = ["PAYLOAD_PREVIEW", "dead_letter", "internal_error"]

log = logging.getLogger(__name__)

PAYLOAD_PREVIEW = 512  # bytes of a rejected payload kept in the dead-letter queue


def dead_letter(
    source: str,
    topic: str,
    reason: str,
    detail: str,
    payload: bytes | str,
    received: datetime | None = None,
) -> DeadLetter:
    """The one way to make a DeadLetter: bounded topic, detail and payload preview."""
    if isinstance(payload, bytes):
        payload = payload[:PAYLOAD_PREVIEW].decode("utf-8", "replace")
    return DeadLetter(
        received or datetime.now(UTC),
        source,
        topic[:256],
        reason,
        detail[:512],
        payload[:PAYLOAD_PREVIEW],
    )


_logged: set[tuple[str, str]] = set()


def internal_error(
    where: str, error: Exception, topic: str, payload: bytes | str, source: str = "flow"
) -> DeadLetter:
    """A record whose processing raised (a bug, not bad input): logged once per (where, error
    type) with the reason, and dead-lettered so the rest of its batch and the flow go on."""
    detail = f"{where}: {type(error).__name__}: {error}"
    if (where, type(error).__name__) not in _logged:
        _logged.add((where, type(error).__name__))
        log.error(
            "%s raised on one record (dead-lettered as internal_error; further ones are only "
            "counted): %s",
            where,
            detail,
            exc_info=error,
        )
    return dead_letter(source, topic, "internal_error", detail, payload)
