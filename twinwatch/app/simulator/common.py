"""What all parts of the simulator share: its error, the Message, time units, seeded randomness."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import msgspec
import numpy as np

from twinwatch.schema import utc

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = 1_000_000
_CHUNK_S = 3600
_ENC = msgspec.json.Encoder()


class SimulationError(ValueError):
    """The simulation part of the config cannot be simulated (unknown model, kind or param)."""


class Message(NamedTuple):
    topic: str
    payload: bytes
    time: datetime  # simulated time (UTC)


def _rng(seed: int, *names: str) -> np.random.Generator:
    words = [seed % 2**32, (seed // 2**32) % 2**32]
    for name in names:
        digest = hashlib.sha256(name.encode()).digest()
        words += [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence(words))


def _p(p: dict, name: str, default: float | None = None) -> float:
    v = p.get(name, default)
    if v is None:
        raise SimulationError(f"sim parameter {name!r} is required")
    return float(v)


def _micros(t: datetime) -> int:
    """Epoch microseconds of an aware datetime, exactly."""
    return (utc(t) - _EPOCH) // timedelta(microseconds=1)
