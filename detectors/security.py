"""Attack patterns in the security events of one asset: per source IP, per user and per asset,
over sliding windows of event time.

    det = SecurityDetector(brute_force_failures=10, ...)
    det.update(t, kind, outcome, user, src_ip, dst_port) -> [Finding]

Rules (thresholds from ``security.detection`` in the config); only ``auth_failure`` counts as a
failed login, ``invalid_user`` as an enumeration attempt, a ``deny`` with a port as a scan probe:

    brute_force             >= N failed logins from one IP within the window
    password_spray          failed logins for >= U distinct users from one IP within 600 s, or
                            (low and slow) >= U' users within hours; users that then log in
                            from that IP are not counted (a typo is not a spray)
    distributed_spray       >= S source IPs with failed logins at the asset, and >= K users each
                            failed from >= 2 of them, within the window (the same users from many
                            sources); a failure followed by that user's login from the same IP
                            is a typo and leaves the count
    credential_stuffing     >= U distinct users attempted (failed or not) from one IP with about
                            one attempt each (<= ``stuffing_max_attempts`` per user): a list of
                            leaked user/password pairs, not guessing
    user_enum               >= U distinct *invalid* user names from one IP
    success_after_failures  a login from an IP with >= K failures in the window
    cross_source_success    a login of a user who failed from >= K distinct *other* IPs in the
                            window (distributed guessing, then a login from somewhere else; a
                            single-source brute force on the account is brute_force's)
    port_scan               denies to >= P distinct ports from one IP within 60 s, or (slow scan)
                            >= P' ports within hours
    intrusion_door_open     video ``intrusion`` and a ``door_open``/``door_forced`` event at the
                            asset within ``correlate_window_s`` of each other, in either order

A rule reports once per episode: when its count reaches the threshold, and again only after an
event of the same key (IP, user, asset) saw it below every threshold again. A finding carries the
real count, the window, and who: the key IP, the offending sources and users (at most 10 each,
most active first). The key is always the validated source address of the events (never text
from the message), so a user name that contains an address cannot steer it into a finding.

Events out of order are counted at the latest time seen. Memory is bounded: at most
``max_sources`` IPs and ``max_users`` users per asset (least recently seen dropped), at most
``_CAP`` distinct items per window.

Examples
--------
>>> det = SecurityDetector(brute_force_failures=3, brute_force_window_s=60.0)
>>> [len(det.update(t, "auth_failure", "failure", "root", "192.0.2.7", None)) for t in (0, 10)]
[0, 0]
>>> f = det.update(20, "auth_failure", "failure", "root", "192.0.2.7", None)[0]
>>> f.rule, f.src_ip, f.count, f.window_s, f.detail
('brute_force', '192.0.2.7', 3.0, 60.0, '3 failed logins from 192.0.2.7 in 60 s')
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, ClassVar, NamedTuple

from twinwatch.detectors.base import Settings

__all__ = ["SecurityDetector", "Finding"]

_DOORS = ("door_open", "door_forced")
_CAP = 4096  # distinct items kept per window (counts saturate there: far above any threshold)
_SHOW = 10  # sources/users named in a finding


class Finding(NamedTuple):
    rule: str
    src_ip: str | None  # the key of a per-IP rule
    count: float  # type: ignore[assignment]  # what the rule counted (shadows tuple.count)
    window_s: float
    detail: str
    sources: tuple[str, ...] = ()
    users: tuple[str, ...] = ()


class _Times:
    """Event times (and an item each) in the last ``window_s`` seconds."""

    __slots__ = ("window_s", "events")

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.events: deque[tuple[float, object]] = deque()

    def add(self, t: float, item: object = None) -> None:
        self.events.append((t, item))
        if len(self.events) > 8 * _CAP:
            self.events.popleft()

    def expire(self, t: float) -> int:
        cutoff, events = t - self.window_s, self.events
        while events and events[0][0] <= cutoff:
            events.popleft()
        return len(events)


class _Distinct:
    """Distinct items seen in the last ``window_s`` seconds: item -> [last time, count]."""

    __slots__ = ("window_s", "items", "total")

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.items: OrderedDict[Any, list] = OrderedDict()  # oldest last-seen first
        self.total = 0  # occurrences of the live items

    def add(self, t: float, item: object) -> None:
        entry = self.items.pop(item, None)
        if entry is None:
            entry = [t, 0]
            if len(self.items) >= _CAP:
                self.total -= self.items.popitem(last=False)[1][1]
        entry[0] = t
        entry[1] += 1
        self.total += 1
        self.items[item] = entry

    def discard(self, item: object) -> None:
        entry = self.items.pop(item, None)
        if entry is not None:
            self.total -= entry[1]

    def expire(self, t: float) -> int:
        cutoff, items = t - self.window_s, self.items
        while items:
            item, entry = next(iter(items.items()))
            if entry[0] > cutoff:
                break
            del items[item]
            self.total -= entry[1]
        return len(items)

    def top(self) -> tuple[str, ...]:
        ranked = sorted(self.items.items(), key=lambda kv: (-kv[1][1], -kv[1][0]))
        return tuple(str(k) for k, _ in ranked[:_SHOW])

    def state(self) -> tuple:
        return tuple((k, e[0], e[1]) for k, e in self.items.items())

    def restore(self, state: tuple) -> None:
        for k, t, n in state:
            self.items[k] = [t, n]
            self.total += n


class _Source:
    """The windows of one source IP and the rules in an episode for it."""

    __slots__ = (
        "bf",
        "succ",
        "spray",
        "slow_spray",
        "enum",
        "stuff",
        "scan",
        "slow_scan",
        "active",
    )

    def __init__(self, w: dict[str, float]):
        self.bf = _Times(w["brute_force"])
        self.succ = _Times(w["success"])
        self.spray = _Distinct(w["spray"])
        self.slow_spray = _Distinct(w["slow_spray"])
        self.enum = _Distinct(w["enum"])
        self.stuff = _Distinct(w["stuffing"])
        self.scan = _Distinct(w["scan"])
        self.slow_scan = _Distinct(w["slow_scan"])
        self.active: set[str] = set()


def _users(users: tuple[str, ...]) -> str:
    return ", ".join(users[:5]) + (", ..." if len(users) > 5 else "")


class SecurityDetector(Settings):
    """Brute force, password spraying (fast, slow, distributed), credential stuffing, user
    enumeration, logins after failures (per IP and across IPs), port scans (fast and slow) and
    video/door correlation for one asset. Pure: time comes in with each event.

    The ``event`` family's detector (registered as ``security``)."""

    name: ClassVar[str] = "security"
    family: ClassVar[str] = "event"

    def __init__(
        self,
        brute_force_window_s: float = 300.0,
        brute_force_failures: int = 10,
        spray_window_s: float = 600.0,
        spray_users: int = 5,
        slow_spray_window_s: float = 86400.0,
        slow_spray_users: int = 8,
        distributed_window_s: float = 3600.0,
        distributed_sources: int = 8,
        distributed_users: int = 3,
        stuffing_window_s: float = 3600.0,
        stuffing_users: int = 20,
        stuffing_max_attempts: float = 1.5,
        enum_window_s: float = 600.0,
        enum_users: int = 5,
        success_window_s: float = 600.0,
        success_after_failures: int = 5,
        cross_source_window_s: float = 3600.0,
        cross_source_failures: int = 5,
        scan_window_s: float = 60.0,
        scan_ports: int = 15,
        slow_scan_window_s: float = 86400.0,
        slow_scan_ports: int = 25,
        correlate_window_s: float = 120.0,
        max_sources: int = 10_000,
        max_users: int = 10_000,
    ) -> None:
        params = dict(locals())
        params.pop("self")
        for k, v in params.items():
            if not v > 0:
                raise ValueError(f"{k} must be > 0, got {v!r}")
            setattr(self, k, v)  # each setting under its own name, for params()
        self.p = params
        self.windows = {
            "brute_force": brute_force_window_s,
            "success": success_window_s,
            "spray": spray_window_s,
            "slow_spray": slow_spray_window_s,
            "enum": enum_window_s,
            "stuffing": stuffing_window_s,
            "scan": scan_window_s,
            "slow_scan": slow_scan_window_s,
        }
        self._sources: OrderedDict[str, _Source] = OrderedDict()  # least recently seen first
        # per asset: failed (user, ip) pairs, distinct IPs per user and users per IP
        self._pairs = _Distinct(distributed_window_s)
        self._ips_of_user: dict[str, int] = {}
        self._users_of_ip: dict[str, int] = {}
        self._shared = 0
        self._dist_active = False
        # per user: failures (time, ip) for the cross-source rule
        self._user_fails: OrderedDict[str, deque] = OrderedDict()
        self._t_last = float("-inf")
        self._intrusion = float("-inf")  # last video intrusion at this asset
        self._door = float("-inf")  # last door open/forced at this asset
        self._corr_active = False

    # --- state of one IP, user, asset ----------------------------------------------------------

    def _source(self, ip: str) -> _Source:
        s = self._sources.get(ip)
        if s is None:
            s = self._sources[ip] = _Source(self.windows)
            if len(self._sources) > self.p["max_sources"]:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(ip)
        return s

    def _episode(self, active: set[str], rule: str, hit: bool) -> bool:
        """True once when ``hit`` starts an episode of ``rule``; re-armed when it stops."""
        if hit:
            if rule not in active:
                active.add(rule)
                return True
            return False
        active.discard(rule)
        return False

    # --- the rules -----------------------------------------------------------------------------

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
        s = self._source(src_ip)
        found: list[Finding] = []
        p = self.p
        failure = kind == "auth_failure"
        success = kind == "auth_success"
        if failure:
            s.bf.add(t, user)
            s.succ.add(t)
            if user is not None:
                s.spray.add(t, user)
                s.slow_spray.add(t, user)
        elif success and user is not None:  # a typo followed by a login is no spray
            s.spray.discard(user)
            s.slow_spray.discard(user)
        elif kind == "invalid_user" and user is not None:
            s.enum.add(t, user)
        elif outcome == "deny" and dst_port is not None:
            s.scan.add(t, dst_port)
            s.slow_scan.add(t, dst_port)
        if (failure or success) and user is not None:
            s.stuff.add(t, user)

        n_bf = s.bf.expire(t)
        if self._episode(s.active, "brute_force", n_bf >= p["brute_force_failures"]):
            users = tuple(dict.fromkeys(str(u) for _, u in reversed(s.bf.events) if u))[:_SHOW]
            found.append(
                Finding(
                    "brute_force",
                    src_ip,
                    float(n_bf),
                    p["brute_force_window_s"],
                    f"{n_bf} failed logins from {src_ip} in {p['brute_force_window_s']:g} s",
                    (src_ip,),
                    users,
                )
            )
        n_fast, n_slow = s.spray.expire(t), s.slow_spray.expire(t)
        fast, slow = n_fast >= p["spray_users"], n_slow >= p["slow_spray_users"]
        if self._episode(s.active, "password_spray", fast or slow):
            w = s.spray if fast else s.slow_spray
            n = n_fast if fast else n_slow
            users = w.top()
            found.append(
                Finding(
                    "password_spray",
                    src_ip,
                    float(n),
                    w.window_s,
                    f"failed logins for {n} users from {src_ip} in {w.window_s:g} s "
                    f"({w.total} attempts): {_users(users)}",
                    (src_ip,),
                    users,
                )
            )
        n_enum = s.enum.expire(t)
        if self._episode(s.active, "user_enum", n_enum >= p["enum_users"]):
            users = s.enum.top()
            found.append(
                Finding(
                    "user_enum",
                    src_ip,
                    float(n_enum),
                    p["enum_window_s"],
                    f"{n_enum} invalid user names from {src_ip} in {p['enum_window_s']:g} s: "
                    f"{_users(users)}",
                    (src_ip,),
                    users,
                )
            )
        n_stuff = s.stuff.expire(t)
        stuffing = (
            n_stuff >= p["stuffing_users"] and s.stuff.total <= p["stuffing_max_attempts"] * n_stuff
        )
        if self._episode(s.active, "credential_stuffing", stuffing):
            users = s.stuff.top()
            found.append(
                Finding(
                    "credential_stuffing",
                    src_ip,
                    float(n_stuff),
                    p["stuffing_window_s"],
                    f"{n_stuff} users tried once each from {src_ip} in "
                    f"{p['stuffing_window_s']:g} s ({s.stuff.total} attempts)",
                    (src_ip,),
                    users,
                )
            )
        n_succ = s.succ.expire(t)
        if success and n_succ >= p["success_after_failures"]:
            found.append(
                Finding(
                    "success_after_failures",
                    src_ip,
                    float(n_succ),
                    p["success_window_s"],
                    f"login as {user} from {src_ip} after {n_succ} failures in "
                    f"{p['success_window_s']:g} s",
                    (src_ip,),
                    (str(user),) if user else (),
                )
            )
        n_scan, n_slow_scan = s.scan.expire(t), s.slow_scan.expire(t)
        fast, slow = n_scan >= p["scan_ports"], n_slow_scan >= p["slow_scan_ports"]
        if self._episode(s.active, "port_scan", fast or slow):
            w = s.scan if fast else s.slow_scan
            n = n_scan if fast else n_slow_scan
            ports = sorted(int(k) for k in w.items)
            found.append(
                Finding(
                    "port_scan",
                    src_ip,
                    float(n),
                    w.window_s,
                    f"denied on {n} ports from {src_ip} in {w.window_s:g} s: "
                    + ", ".join(map(str, ports[:12]))
                    + (", ..." if len(ports) > 12 else ""),
                    (src_ip,),
                )
            )
        if failure and user is not None:
            found += self._distributed(t, user, src_ip)
        elif success and user is not None:
            if (user, src_ip) in self._pairs.items:  # a typo, then a login: not spraying
                self._pairs.discard((user, src_ip))
                self._forget(user, src_ip)
            found += self._cross_source(t, user, src_ip)
        return found

    def _distributed(self, t: float, user: str, ip: str) -> list[Finding]:
        pairs, by_user, by_ip = self._pairs, self._ips_of_user, self._users_of_ip
        key = (user, ip)
        if key not in pairs.items:
            if len(pairs.items) >= _CAP:
                old, entry = pairs.items.popitem(last=False)
                pairs.total -= entry[1]
                self._forget(*old)
            self._count(user, ip, +1)
        pairs.add(t, key)
        cutoff = t - pairs.window_s
        while pairs.items:
            old, entry = next(iter(pairs.items.items()))
            if entry[0] > cutoff:
                break
            pairs.discard(old)
            self._forget(*old)
        fails = self._user_fails.pop(user, None) or deque(maxlen=_CAP)
        fails.append((t, ip))
        self._user_fails[user] = fails
        if len(self._user_fails) > self.p["max_users"]:
            self._user_fails.popitem(last=False)
        n_sources = len(by_ip)
        hit = (
            n_sources >= self.p["distributed_sources"]
            and self._shared >= self.p["distributed_users"]
        )
        if not hit:
            self._dist_active = False
            return []
        if self._dist_active:
            return []
        self._dist_active = True
        shared = [u for u, n in by_user.items() if n >= 2]
        sources = tuple(i for i, _ in sorted(by_ip.items(), key=lambda kv: -kv[1])[:_SHOW])
        users = tuple(sorted(shared, key=lambda u: -by_user[u])[:_SHOW])
        w = self.p["distributed_window_s"]
        return [
            Finding(
                "distributed_spray",
                None,
                float(n_sources),
                w,
                f"failed logins from {n_sources} sources in {w:g} s, {len(shared)} users "
                f"tried from several of them: {_users(users)}",
                sources,
                users,
            )
        ]

    def _count(self, user: str, ip: str, step: int) -> None:
        """Distinct IPs per user and users per IP among the live pairs; ``_shared`` counts
        the users failed from >= 2 IPs."""
        n = self._ips_of_user.get(user, 0)
        m = n + step
        if m > 0:
            self._ips_of_user[user] = m
        else:
            self._ips_of_user.pop(user, None)
        if n < 2 <= m:
            self._shared += 1
        elif m < 2 <= n:
            self._shared -= 1
        k = self._users_of_ip.get(ip, 0) + step
        if k > 0:
            self._users_of_ip[ip] = k
        else:
            self._users_of_ip.pop(ip, None)

    def _forget(self, user: str, ip: str) -> None:
        self._count(user, ip, -1)

    def _rebuild_pairs(self) -> None:
        self._ips_of_user, self._users_of_ip, self._shared = {}, {}, 0
        for u, i in self._pairs.items:
            self._count(u, i, +1)

    def _cross_source(self, t: float, user: str, ip: str) -> list[Finding]:
        fails = self._user_fails.get(user)
        if not fails:
            return []
        w = self.p["cross_source_window_s"]
        while fails and fails[0][0] <= t - w:
            fails.popleft()
        others = [i for _, i in fails if i != ip]
        distinct = tuple(dict.fromkeys(reversed(others)))  # most recent first
        if len(distinct) < self.p["cross_source_failures"]:
            return []
        fails.clear()  # one finding per login after failures
        return [
            Finding(
                "cross_source_success",
                ip,
                float(len(distinct)),
                w,
                f"login as {user} from {ip} after {len(others)} failures from "
                f"{len(distinct)} other sources in {w:g} s",
                (ip, *distinct[:_SHOW]),
                (user,),
            )
        ]

    def _correlate(self, t: float, kind: str) -> list[Finding]:
        if kind == "intrusion":
            self._intrusion = t
        elif kind in _DOORS:
            self._door = t
        else:
            return []
        gap = abs(self._intrusion - self._door)
        both = gap <= self.p["correlate_window_s"]
        if both and not self._corr_active:
            self._corr_active = True
            return [
                Finding(
                    "intrusion_door_open",
                    None,
                    1.0,
                    self.p["correlate_window_s"],
                    f"intrusion and door opened within {gap:.0f} s",
                )
            ]
        self._corr_active = both
        return []

    # --- snapshots -----------------------------------------------------------------------------

    def to_state(self) -> tuple:
        """Plain tuples: per IP its windows and episode flags; the asset's pairs; per user the
        recent failures."""
        return (
            self._t_last,
            self._intrusion,
            self._door,
            self._corr_active,
            tuple(
                (
                    ip,
                    tuple(s.bf.events),
                    tuple(t for t, _ in s.succ.events),
                    tuple(
                        w.state()
                        for w in (
                            s.spray,
                            s.slow_spray,
                            s.enum,
                            s.stuff,
                            s.scan,
                            s.slow_scan,
                        )
                    ),
                    tuple(sorted(s.active)),
                )
                for ip, s in self._sources.items()
            ),
            self._pairs.state(),
            self._dist_active,
            tuple((u, tuple(f)) for u, f in self._user_fails.items()),
        )

    @classmethod
    def from_state(cls, params: dict, state: tuple) -> SecurityDetector:
        det = cls(**params)
        (
            det._t_last,
            det._intrusion,
            det._door,
            det._corr_active,
            sources,
            pairs,
            det._dist_active,
            user_fails,
        ) = state
        for ip, bf, succ, windows, active in sources:
            s = det._source(ip)
            s.bf.events.extend(bf)
            s.succ.events.extend((t, None) for t in succ)
            for w, ws in zip(
                (s.spray, s.slow_spray, s.enum, s.stuff, s.scan, s.slow_scan), windows
            ):
                w.restore(ws)
            s.active = set(active)
        det._pairs.restore(pairs)
        det._rebuild_pairs()
        for u, fails in user_fails:
            det._user_fails[u] = deque(fails, maxlen=_CAP)
        return det
