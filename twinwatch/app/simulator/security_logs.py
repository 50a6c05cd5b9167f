"""Labelled security-log scenarios: a normal background of several log formats at realistic
rates, with the legitimate bursts that must stay quiet, and one scenario per attack kind.

    background(start, hours, seed) -> [LogLine]           normal logs of five hosts
    attack(kind, at, seed) -> ([LogLine], label)           one labelled attack (ATTACKS)
    SCENARIO_SECURITY                                      the config's security section for them

Deterministic per seed (numpy generators seeded by name), nothing reads the clock. Times are
epoch seconds in UTC; lines carry them as their own formats do.

The background (hosts -> assets in ``SCENARIO_SECURITY``):

    gw-1   sshd (RFC 3164): ~30 logins/h by 20 staff from their own addresses, 5 % after one
           mistyped password; PAM session lines; cron every 5 min; a **cron storm** at midnight
           (150 jobs within a minute); a **nightly backup** 02:00-02:30 (2 lines/s)
    web-1  nginx access log (combined): ~2 requests/s from 500 internal clients, 2 % 404, basic
           auth on /admin (a 401 then a 200 now and then)
    fw-1   kernel netfilter denies: internet background noise, ~1/min from 768 addresses to 20
           common ports
    app-1  RFC 5424 application log with severities (1 % warning, 0.2 % err); a **deploy** at
           14:00 (restart: 40 lines in a minute, two warnings)
    win-1  Windows Security events over syslog (Snare ``MSWinEventLog``): ~20 logons/h, 3 %
           after one failure

Attacks come from TEST-NET-1 (192.0.2.0/24), the background from private and TEST-NET-2/3
ranges, so nothing here is a real address. Each label names the rule meant to catch it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from twinwatch.app.simulator.common import _rng

__all__ = ["LogLine", "ATTACKS", "SCENARIO_SECURITY", "background", "attack"]

USERS = [
    "kim.minjun", "lee.seoyeon", "park.jiho", "choi.yuna", "jung.hyun", "kang.dohyun",
    "cho.eunji", "yoon.sungmin", "jang.haeun", "lim.jaewon", "han.soyoung", "oh.taeyang",
    "seo.minji", "shin.woojin", "kwon.hana", "hwang.jun", "ahn.chaeyoung", "song.kyungmin",
    "ryu.dabin", "jeon.sanghoon",
]  # fmt: skip
SCENARIO_SECURITY = {
    "hosts": {
        "gw-1": "sejong-soc/gw-1",
        "web-1": "sejong-soc/web-1",
        "fw-1": "sejong-soc/fw-1",
        "app-1": "sejong-soc/app-1",
        "win-1": "sejong-soc/win-1",
    },
    "sources": [
        {"name": "nginx", "files": ["*/nginx/*"], "asset": "sejong-soc/web-1", "timezone": "UTC"}
    ],
}
_MON = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PORTS = (
    21,
    22,
    23,
    25,
    53,
    80,
    110,
    135,
    139,
    143,
    443,
    445,
    1433,
    3306,
    3389,
    5432,
    5900,
    8080,
    8443,
    9200,
)
SYSLOG = "syslog:udp:10.0.0.{}"
NGINX = "file:/var/log/nginx/access.log"


@dataclass(frozen=True, order=True)
class LogLine:
    t: float
    origin: str
    line: bytes


def _ts3164(t: float) -> str:
    g = time.gmtime(t)
    return f"{_MON[g.tm_mon - 1]} {g.tm_mday:2d} {g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d}"


def sshd(t: float, host: str, pid: int, msg: str, prog: str = "sshd", pri: int = 38) -> LogLine:
    return LogLine(t, SYSLOG.format(1), f"<{pri}>{_ts3164(t)} {host} {prog}[{pid}]: {msg}".encode())


def kernel_deny(t: float, ip: str, port: int, sport: int) -> LogLine:
    msg = (
        f"[UFW BLOCK] IN=eth0 OUT= MAC=00:16:3e:aa:bb:cc SRC={ip} DST=10.0.0.3 LEN=40 TOS=0x00 "
        f"PREC=0x00 TTL=49 ID=54321 PROTO=TCP SPT={sport} DPT={port} WINDOW=1024 RES=0x00 "
        "SYN URGP=0"
    )
    return LogLine(t, SYSLOG.format(3), f"<4>{_ts3164(t)} fw-1 kernel: {msg}".encode())


def nginx(t: float, ip: str, user: str | None, req: str, status: int, size: int) -> LogLine:
    g = time.gmtime(t)
    stamp = f"{g.tm_mday:02d}/{_MON[g.tm_mon - 1]}/{g.tm_year}:{time.strftime('%H:%M:%S', g)}"
    line = (
        f'{ip} - {user or "-"} [{stamp} +0000] "{req} HTTP/1.1" {status} {size} "-" "Mozilla/5.0"'
    )
    return LogLine(t, NGINX, line.encode())


def app(t: float, severity: int, msg: str) -> LogLine:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
    return LogLine(
        t, SYSLOG.format(4), f"<{128 + severity}>1 {stamp} app-1 meterd 812 - - {msg}".encode()
    )


def windows(t: float, n: int, event: int, user: str, ip: str) -> LogLine:
    what = {4624: "Success Audit", 4625: "Failure Audit"}[event]
    ctime = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(t))
    msg = (
        f"MSWinEventLog\t1\tSecurity\t{n}\t{ctime}\t{event}\tMicrosoft-Windows-Security-Auditing"
        f"\tN/A\tN/A\t{what}\twin-1\tLogon\t\tAn account logon event. Subject: Account Name: - "
        f"New Logon: Account Name: {user} Network Information: Source Network Address: {ip}"
    )
    return LogLine(t, SYSLOG.format(5), f"<13>{_ts3164(t)} win-1 {msg}".encode())


def _poisson(rng, rate_per_s: float, a: float, b: float) -> np.ndarray:
    if b <= a:
        return np.empty(0)
    n = rng.poisson(rate_per_s * (b - a))
    return np.sort(rng.uniform(a, b, n))


def background(
    start: float, hours: float, seed: int = 42, web_rate_per_s: float = 2.0
) -> list[LogLine]:
    """Normal logs of the five hosts for ``hours`` from ``start`` (epoch s, UTC); the web
    server's request rate can be lowered for quick runs."""
    end = start + hours * 3600
    out: list[LogLine] = []
    rng = _rng(seed, "seclogs/gw-1/sshd")
    home = {u: f"10.20.{i}.{10 + i}" for i, u in enumerate(USERS)}
    for i, t in enumerate(_poisson(rng, 30 / 3600, start, end)):
        user = USERS[rng.integers(len(USERS))]
        pid = 20000 + i
        port = int(rng.integers(40000, 60000))
        if rng.random() < 0.05:
            out.append(
                sshd(
                    t, "gw-1", pid, f"Failed password for {user} from {home[user]} port {port} ssh2"
                )
            )
            t += float(rng.uniform(3, 12))
        out.append(
            sshd(t, "gw-1", pid, f"Accepted password for {user} from {home[user]} port {port} ssh2")
        )
        out.append(
            sshd(
                t, "gw-1", pid, f"pam_unix(sshd:session): session opened for user {user} by (uid=0)"
            )
        )
        out.append(
            sshd(
                t + float(rng.uniform(60, 3600)),
                "gw-1",
                pid,
                f"pam_unix(sshd:session): session closed for user {user}",
            )
        )
    day0 = start - start % 86400
    for k in range(int((end - start) // 300) + 1):  # cron every 5 minutes
        t = start - start % 300 + 300 * k + 1
        if start <= t < end:
            out.append(
                sshd(
                    t,
                    "gw-1",
                    900 + k % 50,
                    "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
                    "CRON",
                    78,
                )
            )
    for day in np.arange(day0, end, 86400):
        for j in range(150):  # the midnight cron storm
            t = day + float(rng.uniform(0, 60))
            if start <= t < end:
                out.append(
                    sshd(
                        t,
                        "gw-1",
                        3000 + j,
                        f"(batch{j % 12}) CMD (/opt/jobs/nightly-{j}.sh --quiet)",
                        "CRON",
                        78,
                    )
                )
        t0 = day + 2 * 3600  # the nightly backup, 02:00-02:30
        for t in _poisson(rng, 2.0, max(t0, start), min(t0 + 1800, end)):
            n = int(rng.integers(1_000, 50_000_000))
            out.append(
                sshd(
                    t,
                    "gw-1",
                    4242,
                    f"backup: sent {n} bytes to nas-1:/backup/gw-1/{int(t) % 997}.tar",
                    "rsync",
                    30,
                )
            )
        t0 = day + 14 * 3600  # the daily deploy of app-1
        if start <= t0 < end:
            version = f"2.{int((day - day0) // 86400) + 3}.{int(rng.integers(0, 9))}"
            for j in range(20):
                out.append(app(t0 + j, 6, f"stopping worker {j} for deploy"))
                out.append(app(t0 + 30 + j, 6, f"worker {j} started, version {version}"))
            out.append(app(t0 + 55, 4, "config key cache.size is deprecated, use cache.max_bytes"))
            out.append(app(t0 + 56, 4, "config key retry is deprecated, use retry.max"))

    rng = _rng(seed, "seclogs/web-1/nginx")
    clients = [f"10.30.{i // 250}.{i % 250 + 1}" for i in range(500)]
    paths = [
        "/",
        "/api/v1/readings",
        "/api/v1/alerts",
        "/static/app.js",
        "/dashboard/water",
        "/dashboard/energy",
        "/favicon.ico",
        "/api/v1/sensors",
    ]
    for t in _poisson(rng, web_rate_per_s, start, end):
        ip = clients[rng.integers(len(clients))]
        if (
            rng.random() < 0.02 / web_rate_per_s
        ):  # the admin area, ~0.02/s: basic auth from the admin's own desk
            k = int(rng.integers(len(USERS)))
            user, ip = USERS[k], clients[k]
            if rng.random() < 0.2:
                out.append(nginx(t, ip, user, "GET /admin/", 401, 179))
                t += float(rng.uniform(2, 8))
            out.append(nginx(t, ip, user, "GET /admin/", 200, 5120))
            continue
        status = 404 if rng.random() < 0.02 else 200
        out.append(
            nginx(
                t,
                ip,
                None,
                f"GET {paths[rng.integers(len(paths))]}",
                status,
                int(rng.integers(200, 90000)),
            )
        )

    rng = _rng(seed, "seclogs/fw-1/kernel")
    internet = [f"{net}.{i}" for net in ("198.51.100", "203.0.113", "100.64.7") for i in range(256)]
    for t in _poisson(rng, 1 / 60, start, end):
        ip = internet[rng.integers(len(internet))]
        port = _PORTS[rng.integers(len(_PORTS))]
        out.append(kernel_deny(t, ip, port, int(rng.integers(1024, 65535))))

    rng = _rng(seed, "seclogs/app-1/meterd")
    for t in _poisson(rng, 0.2, start, end):
        u = rng.random()
        if u < 0.002:
            out.append(
                app(t, 3, f"upstream meter-gw-{int(rng.integers(1, 9))} timed out after 30 s")
            )
        elif u < 0.012:
            out.append(app(t, 4, f"slow query on readings: {int(rng.integers(500, 3000))} ms"))
        else:
            out.append(
                app(
                    t,
                    6,
                    f"batch of {int(rng.integers(50, 400))} readings stored in "
                    f"{int(rng.integers(3, 90))} ms",
                )
            )

    rng = _rng(seed, "seclogs/win-1/security")
    for n, t in enumerate(_poisson(rng, 20 / 3600, start, end)):
        user = USERS[rng.integers(len(USERS))]
        ip = f"10.40.{rng.integers(0, 4)}.{rng.integers(1, 250)}"
        if rng.random() < 0.03:
            out.append(windows(t, 2 * n, 4625, user, ip))
            t += float(rng.uniform(3, 15))
        out.append(windows(t, 2 * n + 1, 4624, user, ip))
    return sorted(ln for ln in out if start <= ln.t < end)


# --- attacks -----------------------------------------------------------------------------------


def _brute_force(rng, at):
    ip = "192.0.2.10"
    lines = [
        sshd(
            at + 2.0 * i,
            "gw-1",
            7000 + i // 3,
            f"Failed password for root from {ip} port {40000 + i} ssh2",
        )
        for i in range(60)
    ]
    return lines, at + 120


def _user_enum(rng, at):
    ip = "192.0.2.11"
    names = ["oracle", "postgres", "test", "guest", "ftpuser", "git", "ubuntu", "pi"]
    lines = [
        sshd(at + 15.0 * i, "gw-1", 7100 + i, f"Invalid user {u} from {ip} port {41000 + i}")
        for i, u in enumerate(names)
    ]
    return lines, at + 15 * len(names)


def _slow_spray(rng, at):
    """Issue #13: one attempt every 7 minutes, a different user each time, for 3 hours."""
    ip = "192.0.2.12"
    lines = [
        sshd(
            at + 420.0 * i,
            "gw-1",
            7200 + i,
            f"Failed password for {USERS[i % 20]} from {ip} port {42000 + i} ssh2",
        )  # fmt: skip
        for i in range(26)
    ]
    return lines, at + 420 * 25


def _distributed_spray(rng, at):
    targets = ["admin", "kim.minjun", "lee.seoyeon", "backup"]
    lines = []
    for k in range(12):
        ip = f"192.0.2.{100 + k}"
        for j, user in enumerate(targets):
            t = at + 200.0 * k + 20.0 * j + float(rng.uniform(0, 5))
            lines.append(
                sshd(
                    t,
                    "gw-1",
                    7300 + 4 * k + j,
                    f"Failed password for {user} from {ip} port {43000 + k} ssh2",
                )
            )
    return sorted(lines), at + 200 * 12


def _credential_stuffing(rng, at):
    """A leaked list against the web admin area: 40 accounts once each, one pair works."""
    ip = "192.0.2.13"
    lines = [
        nginx(
            at + 20.0 * i,
            ip,
            f"user{i:03d}@mail.example",
            "GET /admin/",
            200 if i == 33 else 401,
            179,
        )  # fmt: skip
        for i in range(40)
    ]
    return lines, at + 800


def _success_after_failures(rng, at):
    ip = "192.0.2.14"
    lines = [
        sshd(at + 5.0 * i, "gw-1", 7400, f"Failed password for admin from {ip} port 44000 ssh2")
        for i in range(8)
    ]
    lines.append(
        sshd(at + 45, "gw-1", 7400, f"Accepted password for admin from {ip} port 44000 ssh2")
    )
    return lines, at + 45


def _cross_source_success(rng, at):
    """A Windows account guessed from six addresses, then logged into from a seventh."""
    lines = [
        windows(at + 300.0 * k, 90000 + k, 4625, "ops.admin", f"192.0.2.{150 + k}")
        for k in range(6)
    ]
    lines.append(windows(at + 1900, 90010, 4624, "ops.admin", "192.0.2.200"))
    return lines, at + 1900


def _port_scan(rng, at):
    ip = "192.0.2.15"
    lines = [kernel_deny(at + 0.5 * i, ip, 1 + i * 7, 50000) for i in range(50)]
    return lines, at + 25


def _slow_port_scan(rng, at):
    ip = "192.0.2.16"
    lines = [kernel_deny(at + 300.0 * i, ip, 1000 + 13 * i, 50001) for i in range(40)]
    return lines, at + 300 * 39


ATTACKS = {  # kind -> (the rule meant to catch it, generator)
    "brute_force": ("brute_force", _brute_force),
    "user_enum": ("user_enum", _user_enum),
    "slow_password_spray": ("password_spray", _slow_spray),
    "distributed_spray": ("distributed_spray", _distributed_spray),
    "credential_stuffing": ("credential_stuffing", _credential_stuffing),
    "success_after_failures": ("success_after_failures", _success_after_failures),
    "cross_source_success": ("cross_source_success", _cross_source_success),
    "port_scan": ("port_scan", _port_scan),
    "slow_port_scan": ("port_scan", _slow_port_scan),
}


def attack(kind: str, at: float, seed: int = 42) -> tuple[list[LogLine], dict]:
    """The lines of one attack starting at ``at``, and its label (kind, rule, start, end)."""
    rule, make = ATTACKS[kind]
    lines, end = make(_rng(seed, f"seclogs/attack/{kind}"), at)
    return lines, {"kind": kind, "rule": rule, "start": at, "end": end}
