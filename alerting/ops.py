"""On-call operations: list, acknowledge, silence, list and expire silences.

    active(client) -> [dict]                          the alerts Alertmanager holds now
    find(client, prefix) -> dict                      one active alert by fingerprint prefix
    acks(reader, alerts) -> {fingerprint: AlertAck}   this episode's acknowledgement, if any
    acknowledge(client, writer, reader, alert, user, comment, now, for_) -> (AlertAck, silence id)
    silence(client, matchers, start, end, by, comment) -> silence id
    parse_matchers(["site=x", "sensor=~p.*"]) -> [Alertmanager matcher dicts]
    run(args, config) -> exit status                  the ``twinwatch alerts`` command

An acknowledgement is two things (docs/alerting.md):

* a record: an ``AlertAck`` point in the ``alert_ack`` measurement, written through the kernel's
  InfluxDB client (tags domain, site, asset, sensor, rule, severity; fields fingerprint, user,
  comment, summary): the dashboards' annotations, ``alerts list`` and the analysts' MTTA read it;
* a silence on exactly that alert's label set, created by the user, its comment naming the
  fingerprint: Alertmanager shows the alert as suppressed by whom, and stops re-notifying it.
  The delivery ends the silence when the episode resolves (alerting/notifiers.py), so the next
  episode pages; ``--for`` (default 24 h) bounds it in case the alert never resolves.

One acknowledgement per episode: a second is refused with who acknowledged it and when. The
acting user defaults to the OS user. Errors the operator can fix (unreachable service, unknown
alert, bad matcher) raise OpsError with one clear line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, TextIO

import msgspec

from twinwatch.alerting.alertmanager import (
    AlertmanagerClient,
    AlertmanagerError,
    ack_silence_comment,
    is_ack_silence,
)
from twinwatch.alerting.amconfig import render
from twinwatch.config import Config, ConfigError
from twinwatch.durations import parse_duration
from twinwatch.influx import InfluxError, InfluxV1Writer, Writer, make_reader, make_writer
from twinwatch.lineprotocol import encode
from twinwatch.localtime import show, zone
from twinwatch.schema import AlertAck

__all__ = [
    "OpsError",
    "active",
    "find",
    "acks",
    "acknowledge",
    "silence",
    "parse_matchers",
    "run",
    "LABELS",
]

LABELS = ("alertname", "domain", "site", "asset", "sensor", "rule", "severity")
_MATCHER = re.compile(r"^([a-z_]+)(=~|!~|!=|=)(.+)$")
_TAGS = ("domain", "site", "asset", "sensor", "rule", "severity")


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


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


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


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def acks(reader: InfluxV1Writer, alerts: Sequence[dict]) -> dict[str, AlertAck]:
    """The first acknowledgement of each alert's current episode (at or after its startsAt)."""
    if not alerts:
        return {}
    starts = {a["annotations"]["fingerprint"]: _time(a["startsAt"]) for a in alerts}
    since = min(starts.values())
    where = " OR ".join(f"fingerprint = {_quote(fp)}" for fp in starts)
    q = (
        'SELECT fingerprint, "user", comment, summary, domain, site, asset, sensor, rule, '
        f"severity FROM alert_ack WHERE time >= {int(since.timestamp() * 1000)}ms "
        f"AND ({where})"
    )
    out: dict[str, AlertAck] = {}
    for res in reader.query(q, epoch="ms"):
        for series in res.get("series", []):
            cols = series["columns"]
            for row in series["values"]:
                r = dict(zip(cols, row))
                fp = r["fingerprint"]
                t = datetime.fromtimestamp(r["time"] / 1000, UTC)
                if fp in starts and t >= starts[fp] and fp not in out:
                    out[fp] = AlertAck(
                        time=t,
                        fingerprint=fp,
                        **{k: r.get(k) or "" for k in _TAGS},
                        user=r.get("user") or "",
                        comment=r.get("comment") or "",
                        summary=r.get("summary") or "",
                    )
    return out


def acknowledge(
    client: AlertmanagerClient,
    writer: Writer,
    reader: InfluxV1Writer,
    alert: dict,
    user: str,
    comment: str,
    now: datetime,
    for_: timedelta,
    tz: tzinfo,
) -> tuple[AlertAck, str]:
    """Record the ack in InfluxDB and silence the alert; refuse a second ack of the episode."""
    fp = alert["annotations"]["fingerprint"]
    lab = alert["labels"]
    try:
        earlier = acks(reader, [alert]).get(fp)
    except InfluxError as e:
        raise OpsError(f"cannot check earlier acknowledgements in InfluxDB: {e}") from None
    if earlier is not None:
        raise OpsError(
            f"{fp} ({lab.get('alertname')}) was already acknowledged by {earlier.user} at "
            f"{_local(earlier.time, tz)}" + (f": {earlier.comment}" if earlier.comment else "")
        )
    ack = AlertAck(
        time=now,
        fingerprint=fp,
        **{k: lab.get(k, "") for k in _TAGS},
        user=user,
        comment=comment,
        summary=alert["annotations"].get("summary", ""),
    )
    try:
        writer.write_chunk(encode(ack))
    except InfluxError as e:
        raise OpsError(f"cannot record the acknowledgement in InfluxDB: {e}") from None
    matchers = [
        {"name": k, "value": v, "isRegex": False, "isEqual": True}
        for k, v in sorted(lab.items())
        if k in LABELS
    ]
    try:
        sid = client.post_silence(matchers, now, now + for_, user, ack_silence_comment(fp, comment))
    except AlertmanagerError as e:
        raise OpsError(
            f"acknowledgement recorded, but the alert could not be silenced: {e}"
        ) from None
    return ack, sid


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


def _local(t: datetime, tz: tzinfo) -> str:
    return show(t, tz, seconds=False)  # the city's zone, marked (twinwatch.localtime)


def _table(rows: list[tuple[str, ...]]) -> str:
    """Columns padded to their widths; the last one (free text) is not."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def _alerts_table(alerts: list[dict], ack_of: dict[str, AlertAck] | None, tz: tzinfo) -> str:
    rows: list[tuple[str, ...]] = [
        ("FINGERPRINT", "SEVERITY", "STATE", "SINCE", "ACK", "ALERT", "WHERE", "SUMMARY")
    ]
    for a in alerts:
        lab, ann = a["labels"], a["annotations"]
        fp = ann.get("fingerprint", a.get("fingerprint", ""))
        ack = "?" if ack_of is None else "-"
        if ack_of is not None and fp in ack_of:
            ack = f"{ack_of[fp].user} {_local(ack_of[fp].time, tz)[11:16]}"
        rows.append(
            (
                fp[:12],
                f"{lab.get('severity', '')}/{ann.get('severity_ko', '')}",
                a["status"]["state"],
                _local(_time(a["startsAt"]), tz),
                ack,
                lab.get("alertname", ""),
                f"{lab.get('site', '')}/{lab.get('asset', '')}/{lab.get('sensor', '')}",
                ann.get("summary", ""),
            )
        )
    return _table(rows)


def _silences_table(silences: list[dict], tz: tzinfo) -> str:
    rows: list[tuple[str, ...]] = [("ID", "STATE", "ENDS", "BY", "MATCHERS", "COMMENT")]
    for s in sorted(silences, key=lambda s: s["endsAt"]):
        ops = {(False, True): "=", (True, True): "=~", (False, False): "!=", (True, False): "!~"}
        matchers = ",".join(
            f"{m['name']}{ops[(m['isRegex'], m.get('isEqual', True))]}{m['value']}"
            for m in s["matchers"]
        )
        rows.append(
            (
                s["id"],
                s["status"]["state"],
                _local(_time(s["endsAt"]), tz),
                s.get("createdBy", ""),
                matchers,
                ("ack: " if is_ack_silence(s) else "") + s.get("comment", ""),
            )
        )
    return _table(rows)


def _find_silence(client: AlertmanagerClient, prefix: str) -> dict:
    if len(prefix) < 8:
        raise OpsError("give at least 8 characters of the silence id (see `alerts silences`)")
    hits = [s for s in client.get_silences() if s["id"].startswith(prefix)]
    if not hits:
        raise OpsError(f"no silence {prefix}* (see `twinwatch alerts silences --all`)")
    if len(hits) > 1:
        raise OpsError(f"silence id {prefix}* is ambiguous; give more characters")
    return hits[0]


def run(args: Any, config: Config, out: TextIO | None = None) -> int:
    """``twinwatch alerts list|ack|silence|silences|expire|config``; raises OpsError/ConfigError
    on user errors."""
    out = out or sys.stdout
    if args.action == "config":
        print(render(config), end="", file=out)
        return 0
    tz = zone(config, getattr(args, "utc", False))
    # The CLI fails fast: one retry, not the flow's patient delivery.
    cfg = msgspec.structs.replace(config.services.alertmanager, max_retries=1)
    if args.alertmanager_url:
        cfg = msgspec.structs.replace(cfg, url=args.alertmanager_url)
    if not cfg.url:
        raise OpsError("services.alertmanager.url is not set (or pass --alertmanager-url)")
    influx = msgspec.structs.replace(config.services.influxdb, max_retries=1)
    with AlertmanagerClient.from_config(cfg) as client:
        now = datetime.now(UTC)
        if args.action == "list":
            alerts = active(client)
            if not alerts:
                print("no active alerts", file=out)
                return 0
            ack_of: dict[str, AlertAck] | None
            try:
                with make_reader(influx) as reader:
                    ack_of = acks(reader, alerts)
            except InfluxError as e:
                print(f"twinwatch: acks unknown (ACK ?): InfluxDB: {e}", file=sys.stderr)
                ack_of = None
            print(_alerts_table(alerts, ack_of, tz), file=out)
        elif args.action == "ack":
            alert = find(client, args.fingerprint)
            with make_writer(influx) as writer, make_reader(influx) as reader:
                ack, sid = acknowledge(
                    client,
                    writer,
                    reader,
                    alert,
                    args.by,
                    args.comment,
                    now,
                    parse_duration(args.for_),
                    tz,
                )
            print(
                f"acknowledged {ack.fingerprint} ({alert['labels'].get('alertname')}) as "
                f"{ack.user}; silenced until it resolves, at most until "
                f"{_local(now + parse_duration(args.for_), tz)} (silence {sid})",
                file=out,
            )
        elif args.action == "silence":
            matchers = parse_matchers(args.matchers)
            end = now + parse_duration(args.duration)
            sid = silence(client, matchers, now, end, args.by, args.comment)
            print(f"silence {sid} until {_local(end, tz)}", file=out)
        elif args.action == "silences":
            try:
                silences = client.get_silences()
            except AlertmanagerError as e:
                raise OpsError(f"cannot list silences: {e}") from None
            if not args.all:
                silences = [s for s in silences if s["status"]["state"] != "expired"]
            print(_silences_table(silences, tz) if silences else "no silences", file=out)
        elif args.action == "expire":
            try:
                s = _find_silence(client, args.id)
                if s["status"]["state"] == "expired":
                    raise OpsError(f"silence {s['id']} has already expired")
                client.expire_silence(s["id"])
            except AlertmanagerError as e:
                raise OpsError(f"cannot expire the silence: {e}") from None
            print(f"expired silence {s['id']} ({s.get('comment', '')})", file=out)
    return 0
