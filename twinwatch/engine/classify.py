"""The one security classifier: (program, message) of a log line -> what happened, for every
transport (MQTT log topics, syslog, log files).

    classify(program, message) -> [Classified(sensor, kind, outcome, user, src_ip, dst_port)]

Usually one result; N for sshd's ``message repeated N times: [ ... ]`` (N attempts happened and
the brute-force rules count attempts). ``sensor`` is the security category of the line
(``sshd``, ``firewall``, ``http``, ``windows``) or None when the line has none: the caller then
names the sensor from the program through the config (bounded, see ``LogParser``).

Kinds (only ``auth_failure`` counts as a failed login in the rules, so a line is never counted
twice):

    sshd      auth_failure (``Failed <method> for [invalid user] U from IP``), invalid_user
              (``Invalid user U from IP``: the same attempt's announcement, counted by the
              enumeration rule only), auth_success, pam_failure (PAM's copy of sshd's own
              failure line: recorded, never counted), disconnect, probe, bad_rdns, other
    firewall  fw_deny / fw_allow for kernel netfilter lines (iptables, ufw, nftables: ``SRC=``
              ``DPT=``) from any program
    http      auth_failure / auth_success (HTTP basic auth: an access-log user with 401/403 or
              2xx/3xx; Apache ``AH01617 user U: authentication failure``; nginx ``user "U" was not
              found`` / ``password mismatch``), http_Nxx, http_error (error log at err or worse)
    windows   Security log events 4625/4771/4776 (failure) -> auth_failure, 4624 -> auth_success,
              4740 -> account_lockout, from Snare/NXLog-style lines (``EventID=4625``, tab- or
              key=value-separated)

Attacker-chosen text cannot steer an address: every pattern takes the source address from the
fixed tail sshd (or Windows, Apache, nginx) writes *after* the user name, user names are matched
greedily up to that tail, and an address is kept only if ``ipaddress`` accepts it. A user name
that contains ``from 10.0.0.5 port 22`` stays part of the user name.

Formats follow loghub's samples (Zhu et al., "Loghub: A Large Collection of System Log Datasets
for AI-driven Log Analytics", ISSRE 2023) and the OpenSSH, netfilter, Apache, nginx and Windows
Security-log documentation.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import NamedTuple

from twinwatch.schema import Outcome

__all__ = ["Classified", "classify", "valid_ip", "SECURITY_SENSORS"]

SECURITY_SENSORS = ("sshd", "firewall", "http", "windows")
_MAX_REPEAT = 1000  # "message repeated N times" expands to N events, within reason
_MAX_USER = 128


class Classified(NamedTuple):
    sensor: str | None  # security category, or None (named from the program by the caller)
    kind: str
    outcome: Outcome
    user: str | None = None
    src_ip: str | None = None
    dst_port: int | None = None


@lru_cache(maxsize=65536)
def valid_ip(text: str | None) -> str | None:
    """The address in canonical form, or None if ``text`` is not an IPv4/IPv6 address."""
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


def _user(text: str | None) -> str | None:
    if text is None or text == "":
        return None
    return text[:_MAX_USER]


_IP = r"(?P<ip>[0-9A-Fa-f.:]{2,45})"
# what sshd appends after the user name: the address (a host name with UseDNS: kept as no IP)
_TAIL = r"(?P<ip>\S+)(?: port \d+)?(?: ssh\d?)?(?:: .*)?$"
_SSHD = [  # (pattern, kind, outcome): the first match wins
    (re.compile(r"^Failed \S+ for invalid user (?P<user>.*) from " + _TAIL), "auth_failure"),
    (re.compile(r"^Failed \S+ for (?P<user>.*) from " + _TAIL), "auth_failure"),
    (re.compile(r"^Invalid user (?P<user>.*) from " + _TAIL), "invalid_user"),
    (re.compile(r"^Accepted \S+ for (?P<user>.*) from " + _TAIL), "auth_success"),
    (
        re.compile(r"authentication failures?;.*rhost=(?P<ip>\S*)(?:\s+user=(?P<user>\S+))?"),
        "pam_failure",
    ),
    (
        re.compile(
            r"^(?:Received disconnect|Connection closed|Disconnected|Connection reset) (?:from|by)"
            r" (?:(?:invalid |authenticating )?user (?P<user>.*) )?"
            r"(?P<ip>[0-9A-Fa-f.:]+?)(?: port \d+)?(?::.*| \[preauth\].*)?$"
        ),
        "disconnect",
    ),
    (re.compile(r"^Did not receive identification string from " + _IP), "probe"),
    (re.compile(r"^reverse mapping checking .* \[(?P<ip>[^\]]+)\] failed"), "bad_rdns"),
]
_OUTCOME: dict[str, Outcome] = {
    "auth_failure": "failure",
    "invalid_user": "failure",
    "pam_failure": "failure",
    "auth_success": "success",
}
_REPEATED = re.compile(r"message repeated (\d+) times: \[ ?(.*?) ?\]$")

_FIREWALL = re.compile(r"\bSRC=(?P<ip>\S+) .*?\bPROTO=(?P<proto>\S+)(?:.*?\bDPT=(?P<port>\d+))?")
_FW_ALLOW = re.compile(r"ACCEPT|ALLOW|PASS", re.I)

_ACCESS = re.compile(
    r'^(?P<ip>\S+) \S+ (?P<user>\S+) \[[^\]]*\] "(?P<req>[^"]*)" (?P<status>\d{3}) '
)
_APACHE_CLIENT = re.compile(r"\[client (?P<ip>[0-9A-Fa-f.:]+?)(?::\d+)?\]")
_APACHE_AUTH = re.compile(
    r"(?:AH0\d{4}: )?user (?P<user>.*?)(?:: authentication failure for| not found:)"
)
_NGINX_CLIENT = re.compile(r", client: (?P<ip>[0-9A-Fa-f.:]+)")
_NGINX_AUTH = re.compile(r'user "(?P<user>.*?)"(?:: password mismatch| was not found in)')

_WIN_ID = re.compile(r"(?:\bEventI[Dd]|\bEventCode|\bEvent ID)[=:]\s*\"?(\d{3,5})\b")
_WIN_USER = re.compile(r"(?:TargetUserName[=:]\s*\"?|Account Name:\s+)(?P<user>[^\s\"\t,]+)")
_WIN_IP = re.compile(r"(?:IpAddress[=:]\s*\"?|Source Network Address:\s+)(?P<ip>[0-9A-Fa-f.:]+)")
_WIN_KINDS: dict[str, tuple[str, Outcome]] = {
    "4625": ("auth_failure", "failure"),
    "4771": ("auth_failure", "failure"),
    "4776": ("auth_failure", "failure"),
    "4624": ("auth_success", "success"),
    "4740": ("account_lockout", "info"),
}
_HTTP_PROGRAMS = ("apache", "httpd", "apache2", "nginx", "http_access", "apache_access")


def _sshd(message: str) -> list[Classified]:
    m = _REPEATED.match(message)
    if m:
        one = _sshd(m.group(2))
        return one * min(int(m.group(1)), _MAX_REPEAT)
    for pattern, kind in _SSHD:
        m = pattern.search(message)
        if m:
            groups = m.groupdict()
            return [
                Classified(
                    "sshd",
                    kind,
                    _OUTCOME.get(kind, "info"),
                    _user(groups.get("user")),
                    valid_ip(groups.get("ip")),
                )
            ]
    return [Classified("sshd", "other", "info")]


def _firewall(message: str) -> list[Classified] | None:
    m = _FIREWALL.search(message)
    if m is None:
        return None
    allow = _FW_ALLOW.search(message[: m.start()]) is not None
    port = m.group("port")
    return [
        Classified(
            "firewall",
            "fw_allow" if allow else "fw_deny",
            "allow" if allow else "deny",
            None,
            valid_ip(m.group("ip")),
            int(port) if port and int(port) <= 65535 else None,
        )
    ]


def _http(message: str, severity: int | None) -> list[Classified]:
    m = _ACCESS.match(message)
    if m:
        status = int(m.group("status"))
        user = None if m.group("user") == "-" else _user(m.group("user"))
        ip = valid_ip(m.group("ip"))
        if user is not None and status in (401, 403):
            return [Classified("http", "auth_failure", "failure", user, ip)]
        if user is not None and status < 400:
            return [Classified("http", "auth_success", "success", user, ip)]
        outcome: Outcome = "failure" if status in (401, 403) else "info"
        return [Classified("http", f"http_{status // 100}xx", outcome, user, ip)]
    m = _APACHE_CLIENT.search(message) or _NGINX_CLIENT.search(message)
    ip = valid_ip(m.group("ip")) if m else None
    a = _APACHE_AUTH.search(message) or _NGINX_AUTH.search(message)
    if a is not None and ip is not None:
        return [Classified("http", "auth_failure", "failure", _user(a.group("user")), ip)]
    kind = "http_error" if severity is not None and severity <= 3 else "other"
    return [Classified("http", kind, "info", None, ip)]


def _event_id(message: str) -> str | None:
    """The Windows event id: Snare's tab-separated field 5 after ``MSWinEventLog`` (criticality,
    log, record number, date, id), or an ``EventID=``/``EventCode:`` pair."""
    if "MSWinEventLog\t" in message:
        fields = message.split("MSWinEventLog\t", 1)[1].split("\t", 6)
        return fields[4] if len(fields) > 5 and fields[4].isdigit() else None
    m = _WIN_ID.search(message)
    return m.group(1) if m else None


def _windows(message: str) -> list[Classified] | None:
    event_id = _event_id(message)
    if event_id is None:
        return None
    kind = _WIN_KINDS.get(event_id)
    if kind is None:
        return [Classified("windows", "other", "info")]
    # 4625's text names the subject ("-") before the target account: the last name is the target
    users = _WIN_USER.findall(message)
    ip = _WIN_IP.search(message)
    return [
        Classified(
            "windows",
            kind[0],
            kind[1],
            _user(users[-1]) if users and users[-1] != "-" else None,
            valid_ip(ip.group("ip")) if ip else None,
        )
    ]


def classify(program: str, message: str, severity: int | None = None) -> list[Classified]:
    """[Classified] of one log line's message, by its program (``sshd``, ``sshd(pam_unix)``,
    ``kernel``, ``apache``, ...) and then by content (netfilter fields, Windows event ids).
    ``severity`` is the line's syslog severity (0 emerg .. 7 debug) if its format has one."""
    base = program.split("(", 1)[0].split("[", 1)[0].lower()
    if base == "sshd":
        return _sshd(message)
    if base in _HTTP_PROGRAMS:
        return _http(message, severity)
    if "SRC=" in message:
        fw = _firewall(message)
        if fw is not None:
            return fw
    if "4" in message and (
        base in ("mswineventlog", "windows", "security", "microsoft-windows-security-auditing")
        or "EventI" in message
        or "MSWinEventLog" in message
        or "Event ID" in message
    ):
        if base == "mswineventlog":  # the tag was split off: Snare's fields follow it
            message = "MSWinEventLog\t" + message
        win = _windows(message)
        if win is not None:
            return win
    return [Classified(None, "other", "info")]
