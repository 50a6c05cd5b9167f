"""The one replay file format: what ``twinwatch simulate --out`` writes and ``run --replay`` reads.

    JSONL: {"topic": "city/water/...", "payload": {"time": "...", "value": 0.8}}   one per line
           (a payload given as a JSON string is replayed as that string's text)
    CSV:   header ``time,topic,value``, one sensor reading per row

    encode_line(topic, payload) -> bytes          one JSONL line, payload bytes kept as they are
    decode_line(raw) -> (topic, payload)          raises BadReplayLine
    decode_csv_row(raw) -> (topic, payload)       raises BadReplayLine
    payload_time(payload) -> datetime | None      the payload's own ``time`` (pacing, labels)

The writer (``twinwatch.app.simulator.files``) and the reader (``twinwatch.flows.sources.replay``)
both use these functions, so the two ends cannot drift apart.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime

import msgspec

from twinwatch.schema import BadRecord

__all__ = [
    "CSV_HEADER",
    "BadReplayLine",
    "decode_csv_row",
    "decode_line",
    "encode_line",
    "payload_time",
]

CSV_HEADER = "time,topic,value"

_enc = msgspec.json.Encoder()


class BadReplayLine(BadRecord):
    """A line that is not a replay record (the reader dead-letters it with reason and text)."""


class _Line(msgspec.Struct):
    topic: str
    payload: msgspec.Raw


class _Time(msgspec.Struct):
    time: datetime


_line = msgspec.json.Decoder(_Line)
_time = msgspec.json.Decoder(_Time)


def encode_line(topic: str, payload: bytes) -> bytes:
    """One JSONL line (with its newline); ``payload`` must be a JSON document."""
    return b'{"topic":' + _enc.encode(topic) + b',"payload":' + payload + b"}\n"


def decode_line(raw: bytes) -> tuple[str, bytes]:
    """(topic, payload bytes) of one JSONL line."""
    try:
        rec = _line.decode(raw)
        payload = bytes(rec.payload)
        if payload[:1] == b'"':  # a raw payload stored as a JSON string is replayed as its text
            payload = msgspec.json.decode(payload, type=str).encode("utf-8", "surrogatepass")
    except msgspec.ValidationError as e:  # JSON, but not {"topic": ..., "payload": ...}
        raise BadReplayLine(
            "bad_schema", f'a replay line is {{"topic": ..., "payload": ...}}: {str(e)[:200]}'
        ) from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as e:
        raise BadReplayLine("bad_json", f"not a JSON replay line: {str(e)[:200]}") from None
    return rec.topic, payload


def decode_csv_row(raw: bytes) -> tuple[str, bytes]:
    """(topic, reading payload) of one ``time,topic,value`` CSV row."""
    row = next(csv.reader(io.StringIO(raw.decode("utf-8", "replace"))), [])
    if len(row) != 3:
        raise BadReplayLine("bad_schema", f"expected 3 CSV columns ({CSV_HEADER}), got {len(row)}")
    t, topic, value = row
    return topic, _enc.encode({"time": t, "value": _number(value)})


def _number(text: str) -> float | str:
    try:
        x = float(text)
    except ValueError:
        return text  # the parser dead-letters it with the field's name
    return x if math.isfinite(x) else text


def payload_time(payload: bytes) -> datetime | None:
    """The payload's ``time``, or None if it has none that parses."""
    try:
        return _time.decode(payload).time
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, OverflowError):
        return None
