"""On-call operations: list active alerts, acknowledge one, silence a maintenance window.

    active(client) -> [dict]                               the alerts Alertmanager holds now
    find(client, prefix) -> dict                           one active alert by fingerprint prefix
    acknowledge(alert, influx_cfg, by, comment, now)       an ``alert_ack`` point in InfluxDB
    silence(client, matchers, start, end, by, comment) -> silence id
    parse_matchers(["site=x", "sensor=~p.*"]) -> [Alertmanager matcher dicts]
    run(args, config) -> exit status                        the ``twinwatch alerts`` command

An acknowledgement is recorded, not enforced: the ``alert_ack`` measurement (tags domain, site,
asset, sensor, rule, severity; fields fingerprint, by, comment) is a Grafana annotation source
next to the ``alert`` measurement. To stop notifications, silence. Errors the operator can fix
(unreachable service, unknown alert, bad matcher) raise OpsError with one clear line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec

from twinwatch.alerting.alertmanager import AlertmanagerClient, AlertmanagerError
from twinwatch.alerting.amconfig import render
from twinwatch.config import Config, ConfigError, InfluxService

__all__ = [
    "OpsError",
    "active",
    "find",
    "acknowledge",
    "silence",
    "parse_matchers",
    "parse_duration",
    "ack_line",
    "run",
    "LABELS",
]

LABELS = ("alertname", "domain", "site", "asset", "sensor", "rule", "severity")
_MATCHER = re.compile(r"^([a-z_]+)(=~|!~|!=|=)(.+)$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


class OpsError(ConfigError):
    """An operation the operator asked for cannot be done; the message says why."""


def parse_matchers(texts: Sequence[str]) -> list[dict[str, Any]]:
    if not texts:
        raise OpsError("silence: give at least one matcher such as site=sejong-bridge")
    out = []
    for t in texts:
        m = _MATCHER.match(t)
        if m is None:
            raise OpsError(
                f"bad matcher {t!r}: expected label=value, label!=value, label=~regex "
                "or label!~regex"
            )
        name, op, value = m.groups()
        if name not in LABELS:
            raise OpsError(f"bad matcher {t!r}: unknown label {name!r}; known: {', '.join(LABELS)}")
        out.append(
            {"name": name, "value": value, "isRegex": "~" in op, "isEqual": not op.startswith("!")}
        )
    return out


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise OpsError(f"bad duration {text!r}: expected e.g. 30m, 2h, 1d")
    return timedelta(
        seconds=float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    )


def active(client: AlertmanagerClient) -> list[dict]:
    try:
        alerts = client.get_alerts(active=True)
    except AlertmanagerError as e:
        raise OpsError(f"cannot list alerts: {e}") from None
    return sorted(alerts, key=lambda a: a["startsAt"])


def find(client: AlertmanagerClient, prefix: str) -> dict:
    if len(prefix) < 4:
        raise OpsError("give at least 4 characters of the fingerprint")
    hits = [a for a in active(client) if a["annotations"].get("fingerprint", "").startswith(prefix)]
    if not hits:
        raise OpsError(f"no active alert with fingerprint {prefix}* (see `twinwatch alerts list`)")
    if len({a["annotations"]["fingerprint"] for a in hits}) > 1:
        raise OpsError(f"fingerprint {prefix}* is ambiguous; give more characters")
    return hits[-1]


def _tag(v: str) -> str:
    return re.sub(r"([,= ])", r"\\\1", v)


def _str(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ack_line(alert: dict, by: str, comment: str, now: datetime) -> str:
    """The ``alert_ack`` line-protocol point (ms precision) for an Alertmanager alert."""
    lab = alert["labels"]
    tags = ",".join(
        f"{k}={_tag(lab.get(k, '') or '-')}"
        for k in ("asset", "domain", "rule", "sensor", "severity", "site")
    )
    fields = (
        f"fingerprint={_str(alert['annotations'].get('fingerprint', ''))},by={_str(by)},"
        f"comment={_str(comment)},summary={_str(alert['annotations'].get('summary', ''))}"
    )
    return f"alert_ack,{tags} {fields} {int(now.timestamp() * 1000)}"


def acknowledge(alert: dict, influx: InfluxService, by: str, comment: str, now: datetime) -> None:
    params = {"db": influx.database, "precision": "ms"}
    if influx.retention_policy:
        params["rp"] = influx.retention_policy
    headers, auth = {}, None
    if influx.token is not None:
        headers["Authorization"] = f"Token {influx.token.reveal()}"
    elif influx.username:
        auth = (influx.username, influx.password.reveal() if influx.password else "")
    try:
        r = httpx.post(
            influx.url.rstrip("/") + "/write",
            params=params,
            headers=headers,
            auth=auth,
            content=ack_line(alert, by, comment, now).encode(),
            timeout=influx.timeout_s,
        )
    except httpx.TransportError as e:
        raise OpsError(
            f"cannot record the acknowledgement: InfluxDB at {influx.url}: {type(e).__name__}: {e}"
        ) from None
    if not r.is_success:
        raise OpsError(
            f"cannot record the acknowledgement: InfluxDB at {influx.url}: "
            f"HTTP {r.status_code}: {r.text.strip()[:300]}"
        )


def silence(
    client: AlertmanagerClient,
    matchers: list[dict],
    start: datetime,
    end: datetime,
    by: str,
    comment: str,
) -> str:
    if end <= start:
        raise OpsError("silence: the end must be after the start")
    try:
        return client.post_silence(matchers, start, end, by, comment)
    except AlertmanagerError as e:
        raise OpsError(f"cannot create the silence: {e}") from None


def _table(alerts: list[dict]) -> str:
    rows = [("FINGERPRINT", "SEVERITY", "STATE", "SINCE", "ALERT", "WHERE", "SUMMARY")]
    for a in alerts:
        lab, ann = a["labels"], a["annotations"]
        rows.append(
            (
                ann.get("fingerprint", a.get("fingerprint", ""))[:12],
                f"{lab.get('severity', '')}/{ann.get('severity_ko', '')}",
                a["status"]["state"],
                a["startsAt"][:19],
                lab.get("alertname", ""),
                f"{lab.get('site', '')}/{lab.get('asset', '')}/{lab.get('sensor', '')}",
                ann.get("summary", ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + "  " + r[6] for r in rows
    )


def run(args: Any, config: Config, out=None) -> int:
    """``twinwatch alerts list|ack|silence|config``; raises OpsError/ConfigError on user errors."""
    out = out or sys.stdout
    if args.action == "config":
        print(render(config), end="", file=out)
        return 0
    # The CLI fails fast: one retry, not the flow's several with backoff.
    cfg = msgspec.structs.replace(config.services.alertmanager, max_retries=1)
    if args.alertmanager_url:
        cfg = msgspec.structs.replace(cfg, url=args.alertmanager_url)
    if cfg.url is None:
        raise OpsError("services.alertmanager.url is not set (or pass --alertmanager-url)")
    with AlertmanagerClient.from_config(cfg) as client:
        now = datetime.now(UTC)
        if args.action == "list":
            alerts = active(client)
            print(_table(alerts) if alerts else "no active alerts", file=out)
        elif args.action == "ack":
            alert = find(client, args.fingerprint)
            acknowledge(alert, config.services.influxdb, args.by, args.comment, now)
            print(
                f"acknowledged {alert['annotations']['fingerprint']} "
                f"({alert['labels'].get('alertname')}) as {args.by}",
                file=out,
            )
        elif args.action == "silence":
            matchers = parse_matchers(args.matchers)
            start = now
            end = start + parse_duration(args.duration)
            sid = silence(client, matchers, start, end, args.by, args.comment)
            print(f"silence {sid} until {end.isoformat(timespec='seconds')}", file=out)
    return 0
