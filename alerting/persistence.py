"""What has been delivered, by fingerprint, in SQLite: a restart neither loses nor repeats alerts.

    store = AlertStore(path)                 # ":memory:" for a throwaway store
    store.is_duplicate(alert) -> bool        # this very state was already delivered
    store.delivered(alerts, sent_at)         # after a successful post
    store.undelivered(alerts)                # after a failed post: retried, even after a restart
    store.firing() -> [(alert, sent_at)]     # to keep re-sending after a restart
    store.retry_queue() -> [alert]
    store.last(fingerprint) -> (alert, delivered) | None

One row per fingerprint holds its latest state (the Alert as msgspec JSON), when it was last
sent and whether that send succeeded. Resolved rows stay (a late replay of the same resolve is a
duplicate) until ``prune(before)``. SQLite in WAL mode, one connection per store, guarded by a
lock: the sink's flow thread and re-send thread share it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from twinwatch.schema import Alert

__all__ = ["AlertStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_state (
    fingerprint TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    alert       BLOB NOT NULL,
    sent_at     REAL,
    delivered   INTEGER NOT NULL
)"""
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Alert).decode


def _identity(a: Alert) -> tuple:
    return (a.status, a.severity, a.starts_at)


class AlertStore:
    def __init__(self, path: str | Path):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<AlertStore {self.path}>"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def last(self, fp: str) -> tuple[Alert, bool] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT alert, delivered FROM alert_state WHERE fingerprint=?", (fp,)
            ).fetchone()
        return None if row is None else (_decode(row[0]), bool(row[1]))

    def is_duplicate(self, a: Alert) -> bool:
        """True if this state of ``a`` (status, severity, startsAt) was already delivered."""
        last = self.last(a.fingerprint)
        return last is not None and last[1] and _identity(last[0]) == _identity(a)

    def _put(self, alerts: Iterable[Alert], sent_at: datetime | None, delivered: bool) -> None:
        ts = sent_at.timestamp() if sent_at is not None else None
        rows = [(a.fingerprint, a.status, _encode(a), ts, int(delivered)) for a in alerts]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO alert_state VALUES (?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def delivered(self, alerts: Iterable[Alert], sent_at: datetime) -> None:
        self._put(alerts, sent_at, True)

    def undelivered(self, alerts: Iterable[Alert]) -> None:
        self._put(alerts, None, False)

    def firing(self) -> list[tuple[Alert, datetime | None]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT alert, sent_at FROM alert_state WHERE status='firing' AND delivered=1"
            ).fetchall()
        return [
            (_decode(a), None if s is None else datetime.fromtimestamp(s, UTC)) for a, s in rows
        ]

    def retry_queue(self) -> list[Alert]:
        with self._lock:
            rows = self._db.execute("SELECT alert FROM alert_state WHERE delivered=0").fetchall()
        return [_decode(a) for (a,) in rows]

    def prune(self, before: datetime) -> int:
        """Forget delivered resolves sent before ``before``; returns how many."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM alert_state WHERE status='resolved' AND delivered=1 AND sent_at < ?",
                (before.timestamp(),),
            )
        return cur.rowcount
