"""What this process' sinks did, for the command's exit status and last words.

    OUTCOME.stored / dead / refused / pending / unacked / dropped    (tallied by the sinks;
                                                                     points per measurement)
    OUTCOME.verdict() -> (exit status, lines to print)

A run that stored nothing, or could not store what it received, must not end quietly with
status 0: ``twinwatch run`` and ``twinwatch logs`` print the verdict's lines and exit with its
status (1 when something was not stored, or nothing was).
"""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["OUTCOME", "Outcome", "INPUT_MEASUREMENTS"]

INPUT_MEASUREMENTS = ("reading", "security_event")  # what a source's input becomes


class Outcome:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.stored: Counter[str] = Counter()  # measurement -> points written to InfluxDB
        self.dead: Counter[str] = Counter()  # reason -> dead letters made durable
        self.refused: dict[str, str] = {}  # cause -> the server's answer, one line
        self.pending: Counter[str] = Counter()  # measurement -> points left in a spool at close
        self.unacked: Counter[str] = Counter()  # measurement -> points neither written nor
        # spooled: their source messages were not acknowledged
        self.dropped = 0  # points deleted from a full spool (policy drop_oldest)
        self.dead_letter_path: str | None = None
        self.spool_path: str | None = None

    def add(self, counter: str, key: str, n: int = 1) -> None:
        with self._lock:
            getattr(self, counter)[key] += n

    def count(self, field: str, n: int) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + n)

    def refuse(self, cause: str, text: str) -> None:
        with self._lock:
            self.refused[cause] = text

    def verdict(self) -> tuple[int, list[str]]:
        lines = []
        why = "; ".join(self.refused.values()) or "InfluxDB was unavailable"
        if self.unacked:
            lines.append(
                f"{_points(self.unacked)} were not stored ({why}); their source messages were "
                "not acknowledged (MQTT redelivers them at the next start)"
            )
        if self.pending:
            lines.append(
                f"{_points(self.pending)} wait in the spool {self.spool_path or ''} ({why}); "
                "they are written when InfluxDB takes them, at the latest at the next start"
            )
        if self.dropped:
            lines.append(f"{self.dropped} points were dropped from a full spool (drop_oldest)")
        inputs = sum(
            c[m] for c in (self.stored, self.pending, self.unacked) for m in INPUT_MEASUREMENTS
        )
        if not inputs:
            n = self.dead.total()
            if n:
                reasons = ", ".join(f"{r} {c}" for r, c in self.dead.most_common())
                where = f"; see {self.dead_letter_path}" if self.dead_letter_path else ""
                lines.append(f"stored nothing: all {n} inputs were dead letters ({reasons}){where}")
            else:
                lines.append("stored nothing: no input arrived")
        return (1 if lines else 0), lines


def _points(by_measurement: Counter[str]) -> str:
    inputs = sum(by_measurement[m] for m in INPUT_MEASUREMENTS)
    return f"{by_measurement.total()} points ({inputs} readings and events)"


OUTCOME = Outcome()
