"""JSON Lines files: incident labels, and message replays (written and read back byte for byte)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from twinwatch.app.simulator.common import _ENC, Message
from twinwatch.replay import decode_line, encode_line, payload_time
from twinwatch.schema import utc


def write_labels(path, labels: Iterable[dict]) -> None:
    """Write the labels as JSON Lines (creates parent directories)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for label in labels:
            f.write(_ENC.encode(label) + b"\n")


def write_replay(path, messages: Iterable[Message]) -> int:
    """Write the messages as replay JSON Lines (twinwatch.replay); return their number."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "wb") as f:
        for m in messages:
            f.write(encode_line(m.topic, m.payload))
            n += 1
    return n


def read_replay(path) -> Iterator[Message]:
    """Read back a file written by ``write_replay`` (payload bytes as they were generated)."""
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                topic, payload = decode_line(line)
                when = payload_time(payload)
                if when is None:
                    raise ValueError(f"{path}: a replay payload without a time: {line[:200]!r}")
                yield Message(topic, payload, utc(when))
