"""The delivery store (SQLite): the queue of alert states to deliver, and what was delivered.

    store = DeliveryStore(path)             # None: in memory (throwaway)
    store.latest(fingerprints) -> {fingerprint: (alert, owner)}
    store.enqueue(alerts, receivers, owner, queue_max) -> {receiver: dropped}
    store.pending(receiver, owners, limit) -> [(seq, alert)]     oldest first
    store.sent(receiver, [(seq, alert)], now) / store.discard(seqs)
    store.told(receiver) -> {(fingerprint, severity): Told}       firing label sets delivered
    store.renewed(receiver, keys, now)
    last_states(path) -> [alert]            the newest state of every fingerprint (for a restart)

Three tables, one file for every worker and process of the flow on a host (SQLite in WAL mode
serialises writers; every row names its ``owner``, the Bytewax worker that emitted it):

* ``latest``: the newest state the engine emitted per fingerprint, and which worker emitted it.
  New states are judged against it (duplicates after a replay, escalations, resolves of what
  was really sent); after a restart the engine takes its alert lifecycle back from it.
* ``outbox``: per receiver, the states still to deliver, in order. Bounded per receiver: beyond
  ``queue_max`` the oldest are dropped (counted by the caller).
* ``told``: per receiver, the firing label sets (fingerprint, severity) it accepted, with when
  first and last sent: the re-sends, and the hold of a resolve behind its firing.

A state becomes durable in ``enqueue`` (one transaction), before the flow moves on; a crash
between a POST and ``sent`` re-sends that state, which Alertmanager merges (same labels).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import msgspec

from twinwatch.schema import Alert

__all__ = ["DeliveryStore", "Told", "last_states"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS latest (
        fingerprint TEXT PRIMARY KEY, owner INTEGER NOT NULL, alert BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, receiver TEXT NOT NULL, owner INTEGER NOT NULL,
        alert BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS outbox_by_receiver ON outbox (receiver, seq)",
    """CREATE TABLE IF NOT EXISTS told (
        receiver TEXT NOT NULL, fingerprint TEXT NOT NULL, severity TEXT NOT NULL,
        alert BLOB NOT NULL, first_sent REAL NOT NULL, last_sent REAL NOT NULL,
        PRIMARY KEY (receiver, fingerprint, severity))""",
)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Alert).decode


class Told(NamedTuple):
    alert: Alert  # the firing state as sent
    first_sent: datetime  # when this episode's firing was first accepted
    last_sent: datetime  # when it was last (re-)sent


def _ts(t: datetime) -> float:
    return t.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class DeliveryStore:
    def __init__(self, path: str | Path | None):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = ":memory:" if path is None else str(path)
        # timeout: other workers' connections to the same file hold the write lock briefly
        self._db = sqlite3.connect(
            self.path, timeout=30, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._lock = threading.Lock()  # the flow's thread and the delivery thread share it

    def __repr__(self) -> str:
        return f"<DeliveryStore {self.path}>"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def latest(self, fingerprints: Iterable[str]) -> dict[str, tuple[Alert, int]]:
        fps = list(set(fingerprints))
        if not fps:
            return {}
        with self._lock:
            rows = self._db.execute(
                f"SELECT fingerprint, alert, owner FROM latest WHERE fingerprint IN "
                f"({','.join('?' * len(fps))})",
                fps,
            ).fetchall()
        return {fp: (_decode(a), owner) for fp, a, owner in rows}

    def enqueue(
        self, alerts: Sequence[Alert], receivers: Sequence[str], owner: int, queue_max: int
    ) -> dict[str, int]:
        """Record ``alerts`` as the newest states (by ``owner``) and queue them for every
        receiver, in one transaction. Returns how many old entries each receiver dropped."""
        if not alerts:
            return {}
        latest = {a.fingerprint: a for a in alerts}  # the last of several states wins
        blobs = [_encode(a) for a in alerts]
        dropped: dict[str, int] = {}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO latest VALUES (?, ?, ?)",
                    [(fp, owner, _encode(a)) for fp, a in latest.items()],
                )
                for r in receivers:
                    self._db.executemany(
                        "INSERT INTO outbox (receiver, owner, alert) VALUES (?, ?, ?)",
                        [(r, owner, b) for b in blobs],
                    )
                    (n,) = self._db.execute(
                        "SELECT COUNT(*) FROM outbox WHERE receiver=?", (r,)
                    ).fetchone()
                    if n > queue_max:
                        self._db.execute(
                            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
                            "WHERE receiver=? ORDER BY seq LIMIT ?)",
                            (r, n - queue_max),
                        )
                        dropped[r] = n - queue_max
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return dropped

    def depth(self, receiver: str) -> int:
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM outbox WHERE receiver=?", (receiver,)
            ).fetchone()
        return n

    def pending(
        self, receiver: str, owners: tuple[int, int], limit: int = 1000
    ) -> list[tuple[int, Alert]]:
        """The oldest queued states of ``receiver`` this worker delivers: ``owners`` is (its
        index, the worker count); worker 0 also takes those of workers that no longer exist."""
        me, count = owners
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, alert FROM outbox WHERE receiver=? AND (owner=? OR (?=0 AND "
                "owner>=?)) ORDER BY seq LIMIT ?",
                (receiver, me, me, count, limit),
            ).fetchall()
        return [(seq, _decode(a)) for seq, a in rows]

    def sent(self, receiver: str, items: Sequence[tuple[int, Alert]], now: datetime) -> None:
        """``items`` were accepted by ``receiver`` at ``now``: out of the queue, into ``told``."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for seq, a in items:
                    self._db.execute("DELETE FROM outbox WHERE seq=?", (seq,))
                    key = (receiver, a.fingerprint, a.severity)
                    if a.status == "firing":
                        row = self._db.execute(
                            "SELECT alert, first_sent FROM told WHERE receiver=? AND "
                            "fingerprint=? AND severity=?",
                            key,
                        ).fetchone()
                        same_episode = row is not None and _decode(row[0]).starts_at == a.starts_at
                        first = row[1] if same_episode else _ts(now)
                        self._db.execute(
                            "INSERT OR REPLACE INTO told VALUES (?, ?, ?, ?, ?, ?)",
                            (*key, _encode(a), first, _ts(now)),
                        )
                    else:
                        self._db.execute(
                            "DELETE FROM told WHERE receiver=? AND fingerprint=? AND severity=?",
                            key,
                        )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def discard(self, seqs: Iterable[int]) -> None:
        """Remove queued states for good (refused by the receiver)."""
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE seq=?", [(s,) for s in seqs])

    def told(self, receiver: str) -> dict[tuple[str, str], Told]:
        with self._lock:
            rows = self._db.execute(
                "SELECT fingerprint, severity, alert, first_sent, last_sent FROM told "
                "WHERE receiver=?",
                (receiver,),
            ).fetchall()
        return {(fp, sev): Told(_decode(a), _dt(f), _dt(last)) for fp, sev, a, f, last in rows}

    def renewed(self, receiver: str, keys: Iterable[tuple[str, str]], now: datetime) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE told SET last_sent=? WHERE receiver=? AND fingerprint=? AND severity=?",
                [(_ts(now), receiver, fp, sev) for fp, sev in keys],
            )

    def forget(self, receiver: str, keys: Iterable[tuple[str, str]]) -> None:
        """Drop ``told`` rows whose label set is no longer firing (escalated or resolved)."""
        with self._lock:
            self._db.executemany(
                "DELETE FROM told WHERE receiver=? AND fingerprint=? AND severity=?",
                [(receiver, fp, sev) for fp, sev in keys],
            )


def last_states(path: str | Path | None) -> list[Alert]:
    """The newest state of every fingerprint in the store at ``path`` (none if it does not
    exist): what on-call was last told, or is about to be."""
    if path is None or not Path(path).is_file():
        return []
    db = sqlite3.connect(str(path), timeout=30)
    try:
        rows = db.execute("SELECT alert FROM latest").fetchall()
    except sqlite3.OperationalError:  # an empty file, or not ours yet
        return []
    finally:
        db.close()
    return [_decode(a) for (a,) in rows]
