"""Attack patterns in the security events of one asset, per source IP, over sliding windows.

    det = SecurityDetector(brute_force_failures=10, ...)
    det.update(t, kind, outcome, user, src_ip, dst_port) -> [(rule, src_ip, value, detail)]

Rules (thresholds from ``security.detection`` in the config):

    brute_force             >= N failed logins (``auth_failure``) from one IP within the window
    password_spray          failed logins for >= U distinct user names from one IP
    user_enum               >= U distinct *invalid* user names (``invalid_user``) from one IP
    success_after_failures  a successful login from an IP with >= K failures in the window (severe:
                            the burst may have found a password)
    port_scan               firewall denies (``outcome == "deny"``) to >= P distinct ports, one IP
    intrusion_door_open     video ``intrusion`` and a ``door_open``/``door_forced`` event at the
                            asset within ``correlate_window_s`` of each other, in either order

A windowed rule reports once when its count reaches the threshold, and again only after the count
has fallen below it (one finding per episode, not one per event). Events out of order are counted at
the latest time seen. Memory is bounded: at most ``max_sources`` IPs, least recently seen dropped.

Examples
--------
>>> det = SecurityDetector(brute_force_failures=3, brute_force_window_s=60.0)
>>> [det.update(t, "auth_failure", "failure", "root", "192.0.2.7", None) for t in (0, 10, 20)]
[[], [], [('brute_force', '192.0.2.7', 3.0, '3 failed logins in 60 s')]]
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

from twinwatch.detectors.base import Settings

__all__ = ["SecurityDetector", "Finding"]

Finding = tuple[str, str | None, float, str]  # (rule, src_ip, value, detail)
_DOORS = ("door_open", "door_forced")


class _Window:
    """Items seen in the last ``window_s`` seconds, with a count per distinct item."""

    __slots__ = ("window_s", "events", "counts", "active")

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.events: deque[tuple[float, object]] = deque()
        self.counts: dict[object, int] = {}
        self.active = False  # in an episode (already reported)

    def add(self, t: float, item: object) -> None:
        self.events.append((t, item))
        self.counts[item] = self.counts.get(item, 0) + 1

    def expire(self, t: float) -> None:
        cutoff = t - self.window_s
        events, counts = self.events, self.counts
        while events and events[0][0] <= cutoff:
            _, item = events.popleft()
            n = counts[item] - 1
            if n:
                counts[item] = n
            else:
                del counts[item]

    def crossed(self, value: int, threshold: int) -> bool:
        """True once when value reaches threshold; re-armed when it falls below again."""
        if value >= threshold:
            if not self.active:
                self.active = True
                return True
            return False
        self.active = False
        return False


class SecurityDetector(Settings):
    """Brute force, password spraying, user enumeration, success after failures, port scans and
    video/door correlation for one asset. Pure: time comes in with each event.

    The ``event`` family's detector (registered as ``security``)."""

    name: ClassVar[str] = "security"
    family: ClassVar[str] = "event"
    _RULES = ("brute_force", "password_spray", "user_enum", "success_after_failures", "port_scan")

    def __init__(
        self,
        brute_force_window_s: float = 300.0,
        brute_force_failures: int = 10,
        spray_window_s: float = 600.0,
        spray_users: int = 5,
        enum_window_s: float = 600.0,
        enum_users: int = 5,
        success_window_s: float = 600.0,
        success_after_failures: int = 5,
        scan_window_s: float = 60.0,
        scan_ports: int = 15,
        correlate_window_s: float = 120.0,
        max_sources: int = 10_000,
    ) -> None:
        for k, v in list(locals().items()):
            if k != "self" and not v > 0:
                raise ValueError(f"{k} must be > 0, got {v!r}")
            if k != "self":
                setattr(self, k, v)  # each setting under its own name, for params()
        self.windows = (
            brute_force_window_s,
            spray_window_s,
            enum_window_s,
            success_window_s,
            scan_window_s,
        )
        self.thresholds = (
            brute_force_failures,
            spray_users,
            enum_users,
            success_after_failures,
            scan_ports,
        )
        self.correlate_window_s = correlate_window_s
        self.max_sources = max_sources
        self._sources: dict[str, tuple[_Window, ...]] = {}  # least recently seen first
        self._t_last = float("-inf")
        self._intrusion = float("-inf")  # last video intrusion at this asset
        self._door = float("-inf")  # last door open/forced at this asset
        self._corr_active = False

    def _source(self, ip: str) -> tuple[_Window, ...]:
        ws = self._sources.pop(ip, None)
        if ws is None:
            ws = tuple(_Window(w) for w in self.windows)
            if len(self._sources) >= self.max_sources:
                del self._sources[next(iter(self._sources))]
        self._sources[ip] = ws  # re-insert: most recently seen last
        return ws

    def update(
        self,
        t: float,
        kind: str,
        outcome: str,
        user: str | None,
        src_ip: str | None,
        dst_port: int | None,
    ) -> list[Finding]:
        t = max(float(t), self._t_last)
        self._t_last = t
        if src_ip is None:
            return self._correlate(t, kind)
        bf, spray, enum, succ, scan = self._source(src_ip)
        found: list[Finding] = []
        if kind == "auth_failure":
            for w in (bf, spray, succ):
                w.add(t, user)
        elif kind == "invalid_user":
            enum.add(t, user)
        elif outcome == "deny" and dst_port is not None:
            scan.add(t, dst_port)
        for w in (bf, spray, enum, succ, scan):
            w.expire(t)
        n_bf, n_bf_min = len(bf.events), self.thresholds[0]
        if bf.crossed(n_bf, n_bf_min):
            found.append(
                (
                    "brute_force",
                    src_ip,
                    float(n_bf),
                    f"{n_bf} failed logins in {self.windows[0]:g} s",
                )
            )
        if spray.crossed(len(spray.counts), self.thresholds[1]):
            found.append(
                (
                    "password_spray",
                    src_ip,
                    float(len(spray.counts)),
                    f"failed logins for {len(spray.counts)} user names",
                )
            )
        if enum.crossed(len(enum.counts), self.thresholds[2]):
            found.append(
                (
                    "user_enum",
                    src_ip,
                    float(len(enum.counts)),
                    f"{len(enum.counts)} invalid user names tried",
                )
            )
        if kind == "auth_success" and len(succ.events) >= self.thresholds[3]:
            found.append(
                (
                    "success_after_failures",
                    src_ip,
                    float(len(succ.events)),
                    f"login as {user} after {len(succ.events)} failures",
                )
            )
        if scan.crossed(len(scan.counts), self.thresholds[4]):
            found.append(
                (
                    "port_scan",
                    src_ip,
                    float(len(scan.counts)),
                    f"denied on {len(scan.counts)} ports in {self.windows[4]:g} s",
                )
            )
        return found

    def _correlate(self, t: float, kind: str) -> list[Finding]:
        if kind == "intrusion":
            self._intrusion = t
        elif kind in _DOORS:
            self._door = t
        else:
            return []
        both = abs(self._intrusion - self._door) <= self.correlate_window_s
        if both and not self._corr_active:
            self._corr_active = True
            return [
                (
                    "intrusion_door_open",
                    None,
                    1.0,
                    f"intrusion and door opened within {abs(self._intrusion - self._door):.0f} s",
                )
            ]
        self._corr_active = both
        return []

    def to_state(self) -> tuple:
        """Plain tuples: per IP the (time, item) pairs and episode flag of each window."""
        return (
            self._t_last,
            self._intrusion,
            self._door,
            self._corr_active,
            tuple(
                (ip, tuple((tuple(w.events), w.active) for w in ws))
                for ip, ws in self._sources.items()
            ),
        )

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> SecurityDetector:
        det = cls(**params)
        det._t_last, det._intrusion, det._door, det._corr_active, sources = state
        for ip, windows in sources:
            ws = det._source(ip)
            for w, (events, active) in zip(ws, windows):
                for t, item in events:
                    w.add(t, item)
                w.active = active
        return det
