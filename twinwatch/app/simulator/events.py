"""Security events, Poisson in time: sshd log lines and firewall allow/deny events, with the
ssh_brute_force and port_scan incidents.

sshd lines are syslog lines stamped in the city's local time (the payload's ``time`` is
authoritative, UTC), in the formats of the OpenSSH sample of loghub (Zhu et al., "Loghub: A Large
Collection of System Log Datasets for AI-driven Log Analytics", ISSRE 2023): ``Accepted
password|publickey for``, ``Failed password for [invalid user]``, ``Invalid user``, ``Received
disconnect``, ``pam_unix`` session lines. Security events use reserved addresses: attackers from
the RFC 5737 TEST-NETs, internet background noise from 198.18.0.0/15, inside hosts from
10.20.0.0/16.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from twinwatch.app.simulator.common import _CHUNK_S, _ENC, _EPOCH, _US, Message, _p, _rng
from twinwatch.app.simulator.weather import _plateau
from twinwatch.schema import FirewallPayload, LogPayload

if TYPE_CHECKING:  # the mixin's host class (sensors imports this module)
    from twinwatch.app.simulator.incidents import _Inc
    from twinwatch.app.simulator.sensors import _World
    from twinwatch.config import Asset


class _EventSource:
    """The event half of ``_SensorSim`` (a mixin): uses its ``world``, ``asset``, ``path``,
    ``topic``, ``index``, ``params``, ``incs``, ``start_us``, ``end_us`` and ``_state``."""

    world: _World
    asset: Asset
    path: str
    topic: str
    index: int
    params: dict[str, Any]
    incs: list[_Inc]
    start_us: int
    end_us: int
    _state: dict[str, Any]

    def _events(self, chunk_fn) -> Iterator[tuple[int, int, Message]]:
        rng = _rng(self.world.seed, self.path, "events")
        inc_rng = _rng(
            self.world.seed, self.path, "incident-events"
        )  # incidents change nothing else
        offline = [(i.t0, i.t1) for i in self.incs if i.kind == "sensor_offline"]
        pending: list[
            tuple[int, int, Any]
        ] = []  # (t_us, seq, payload-args), may lie in later chunks
        seq = 0
        topic, idx, E, td, enc = self.topic, self.index, _EPOCH, timedelta, _ENC.encode
        for c0 in range(self.start_us, self.end_us, _CHUNK_S * _US):
            c1 = min(c0 + _CHUNK_S * _US, self.end_us)
            for t_us, item in chunk_fn(rng, inc_rng, c0, c1):
                heapq.heappush(pending, (t_us, seq, item))
                seq += 1
            while pending and pending[0][0] < c1:
                t_us, _, item = heapq.heappop(pending)
                if any(a <= t_us / _US < b for a, b in offline):
                    continue
                dt = E + td(microseconds=t_us)
                payload: LogPayload | FirewallPayload
                if isinstance(item, str):
                    payload = LogPayload(dt, item)
                else:
                    payload = FirewallPayload(dt, *item)
                yield t_us, idx, Message(topic, enc(payload), dt)

    @staticmethod
    def _poisson_times(rng, rate_per_s: float, a_us: int, b_us: int) -> list[int]:
        if b_us <= a_us or rate_per_s <= 0:
            return []
        n = rng.poisson(rate_per_s * (b_us - a_us) / _US)
        t = np.sort(rng.integers(a_us // 1000, b_us // 1000, n)) * 1000  # millisecond resolution
        return t.tolist()

    def _windows(self, kind: str, c0: int, c1: int):
        for inc in self.incs:
            if inc.kind == kind:
                a, b = max(c0, int(inc.t0 * _US)), min(c1, int(inc.t1 * _US))
                if a < b:
                    yield inc, a, b

    # sshd: syslog lines as in loghub's OpenSSH sample, e.g.
    # "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for invalid user webmaster from
    #  173.234.31.186 port 38926 ssh2"
    _MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    _HUMANS = ("kimjh", "parksy", "leehs", "choimk", "jungyw")
    _SERVICES = ("ops", "deploy", "backup", "monitor")
    _GUESSES = (
        "root",
        "admin",
        "test",
        "user",
        "oracle",
        "ubuntu",
        "pi",
        "guest",
        "postgres",
        "git",
        "ftpuser",
        "support",
        "webmaster",
        "nagios",
        "hadoop",
        "mysql",
        "administrator",
        "ec2-user",
        "vagrant",
        "minecraft",
        "ops",
        "deploy",
        "test1",
        "info",
        "www",
    )

    def _syslog(self, t_us: int, pid: int, msg: str) -> str:
        local = (_EPOCH + timedelta(microseconds=t_us)).astimezone(self.world.tz)
        return (
            f"{self._MONTHS[local.month - 1]} {local.day:2d} {local:%H:%M:%S} "
            f"{self.asset.id} sshd[{pid}]: {msg}"
        )

    _B64 = list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")

    def _sshd_chunk(self, rng, inc_rng, c0: int, c1: int):
        st, out = self._state, []

        def add(t: int, pid: int, msg: str) -> None:
            out.append((t, self._syslog(t, pid, msg)))

        if not st:
            st["pid"] = int(rng.integers(2000, 30000))
            st["attack_pid"] = st["pid"] + 997
            st["hosts"] = {u: f"10.20.1.{int(rng.integers(10, 250))}" for u in self._HUMANS}
            st["hosts"].update({u: f"10.20.0.{int(rng.integers(2, 60))}" for u in self._SERVICES})
            st["key"] = {u: "".join(rng.choice(self._B64, 43)) for u in self._SERVICES}
        rate = _p(self.params, "logins_per_h", 20) / 3600
        fail = _p(self.params, "failure_rate", 0.05)
        times = self._poisson_times(rng, 1.7 * rate, c0, c1)  # thinned to office hours below
        ta = np.asarray(times, dtype=float) / _US
        hours = ((ta + self.world.utcoffset(ta)) % 86400 / 3600).tolist() if times else []
        for t, h in zip(times, hours):
            # people log in during office hours, service accounts around the clock
            if rng.random() >= (0.3 + 1.4 * float(_plateau(h, 8.5, 18.5))) / 1.7:
                continue
            st["pid"] += int(rng.integers(1, 40))
            pid, human = st["pid"], rng.random() < 0.7
            user = str(rng.choice(self._HUMANS if human else self._SERVICES))
            ip, port = st["hosts"][user], int(rng.integers(32768, 61000))
            if human and rng.random() < fail:  # a typo, then the right password
                add(t, pid, f"Failed password for {user} from {ip} port {port} ssh2")
                t += int(rng.integers(3, 20)) * _US
            if human:
                add(t, pid, f"Accepted password for {user} from {ip} port {port} ssh2")
            else:
                add(
                    t,
                    pid,
                    f"Accepted publickey for {user} from {ip} port {port} ssh2: "
                    f"ED25519 SHA256:{st['key'][user]}",
                )
            add(
                t + 20_000,
                pid,
                f"pam_unix(sshd:session): session opened for user {user} by (uid=0)",
            )
            t_end = t + int(rng.lognormal(np.log(600), 1.0) * _US)  # sessions of ~10 minutes
            add(t_end, pid, f"Received disconnect from {ip} port {port}:11: disconnected by user")
            add(t_end + 3000, pid, f"pam_unix(sshd:session): session closed for user {user}")
        existing = {*self._HUMANS, *self._SERVICES, "root"}
        for inc, a, b in self._windows("ssh_brute_force", c0, c1):
            ip = inc.params["src_ip"]
            for t in self._poisson_times(inc_rng, inc.params["rate_per_min"] / 60, a, b):
                st["attack_pid"] += int(inc_rng.integers(1, 4))
                pid, port = st["attack_pid"], int(inc_rng.integers(32768, 61000))
                user = str(inc_rng.choice(self._GUESSES))
                if user in existing:
                    add(t, pid, f"Failed password for {user} from {ip} port {port} ssh2")
                else:
                    add(t, pid, f"Invalid user {user} from {ip}")
                    t += int(inc_rng.integers(100, 1500)) * 1000
                    add(
                        t,
                        pid,
                        f"Failed password for invalid user {user} from {ip} port {port} ssh2",
                    )
        return out

    _ALLOW_PORTS = (1883, 8883, 443, 123, 53, 22)
    _ALLOW_W = (0.5, 0.2, 0.15, 0.05, 0.05, 0.05)
    _DENY_PORTS = (23, 22, 445, 3389, 80, 8080, 5900, 1433, 3306, 6379, 2323, 37215, 52869, 8443)

    def _firewall_chunk(self, rng, inc_rng, c0: int, c1: int):
        p = self.params
        times = self._poisson_times(rng, _p(p, "events_per_min", 10) / 60, c0, c1)
        n = len(times)
        out = []
        if n:
            deny = rng.random(n) < _p(p, "deny_rate", 0.1)
            inside = rng.integers(2, 80, n)
            outside = rng.integers(1, 255, (3, n))
            aport = rng.choice(self._ALLOW_PORTS, n, p=self._ALLOW_W)
            dport = rng.choice(self._DENY_PORTS, n)
            for i, t in enumerate(times):
                if deny[i]:
                    # internet noise from the RFC 2544 benchmark range 198.18.0.0/15
                    src = f"198.{18 + outside[0, i] % 2}.{outside[1, i]}.{outside[2, i]}"
                    out.append((t, ("deny", src, int(dport[i]), "tcp")))
                else:
                    src = f"10.20.{2 + inside[i] % 4}.{inside[i]}"  # the city's IoT devices
                    out.append((t, ("allow", src, int(aport[i]), "tcp")))
        for inc, a, b in self._windows("port_scan", c0, c1):
            st = self._state.setdefault(f"scan{inc.index}", {"ports": None, "i": 0})
            if st["ports"] is None:
                st["ports"] = inc_rng.permutation(np.arange(1, 65536)).tolist()
            ip = inc.params["src_ip"]
            for t in self._poisson_times(inc_rng, inc.params["rate_per_min"] / 60, a, b):
                port = st["ports"][st["i"] % 65535]
                st["i"] += 1
                out.append(
                    (t, ("allow" if port in (22, 443, 1883, 8883) else "deny", ip, port, "tcp"))
                )
        return out
