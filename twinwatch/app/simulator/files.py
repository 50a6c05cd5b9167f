"""JSON Lines files: incident labels, and message replays (written and read back byte for byte)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import msgspec

from twinwatch.app.simulator.common import _ENC, Message
from twinwatch.schema import utc


def write_labels(path, labels: Iterable[dict]) -> None:
    """Write the labels as JSON Lines (creates parent directories)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for label in labels:
            f.write(_ENC.encode(label) + b"\n")


def write_replay(path, messages: Iterable[Message]) -> int:
    """Write ``{"topic": ..., "payload": {...}}`` JSON Lines; return the number of messages."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "wb") as f:
        for m in messages:
            f.write(b'{"topic":' + _ENC.encode(m.topic) + b',"payload":' + m.payload + b"}\n")
            n += 1
    return n


class _ReplayLine(msgspec.Struct):
    topic: str
    payload: msgspec.Raw


class _TimeOnly(msgspec.Struct):
    time: datetime


def read_replay(path) -> Iterator[Message]:
    """Read back a file written by ``write_replay`` (payload bytes as they were generated)."""
    line_dec, time_dec = msgspec.json.Decoder(_ReplayLine), msgspec.json.Decoder(_TimeOnly)
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                r = line_dec.decode(line)
                payload = bytes(r.payload)
                yield Message(r.topic, payload, utc(time_dec.decode(payload).time))
