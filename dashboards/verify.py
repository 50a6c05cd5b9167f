"""Find every query in the generated dashboards and expand Grafana's macros, so the queries can
be run against real InfluxDB and Prometheus servers (Grafana itself cannot run here).

    targets(doc) -> list[Target]            every panel target, variable and annotation query
    expand_influxql(q, start, end, interval, variables) -> str
    expand_promql(q, interval, rate_interval) -> str

Expansion follows Grafana 11's InfluxDB and Prometheus datasources: ``$timeFilter`` becomes
``time >= <ms>ms and time <= <ms>ms``, the global ``${__from}`` / ``${__to}`` the range's ends in
epoch milliseconds, ``$__interval`` a duration such as ``1m``, and a
template variable inside ``/^$var$/`` becomes its regex-escaped value, ``(a|b)`` for several,
or the variable's ``allValue`` for All.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import NamedTuple

__all__ = ["Target", "targets", "expand_influxql", "expand_promql", "duration", "regex_value"]


class Target(NamedTuple):
    dashboard: str  # uid
    where: str  # panel title, "variable <name>" or "annotation <name>"
    kind: str  # influxdb, prometheus, or another datasource type
    query: str
    time_from: str | None = None  # a panel's relative time override, e.g. "30d"


def _panels(panels: list[dict]) -> Iterator[dict]:
    for p in panels or []:
        yield p
        yield from _panels(p.get("panels", []))


def targets(doc: dict) -> list[Target]:
    uid = doc["uid"]
    out = []
    for p in _panels(doc.get("panels", [])):
        for t in p.get("targets", []):
            kind = (t.get("datasource") or p.get("datasource") or {}).get("type", "")
            text = t.get("query") if kind == "influxdb" else t.get("expr", "")
            out.append(Target(uid, p.get("title", ""), kind, text or "", p.get("timeFrom")))
    for v in (doc.get("templating") or {}).get("list", []):
        if v.get("type") == "query":
            out.append(Target(uid, f"variable {v['name']}", v["datasource"]["type"], v["query"]))
    for a in (doc.get("annotations") or {}).get("list", []):
        if "target" in a and "query" in a["target"]:
            out.append(
                Target(
                    uid, f"annotation {a['name']}", a["datasource"]["type"], a["target"]["query"]
                )
            )
    return out


def duration(seconds: float) -> str:
    """Grafana's interval format: 500ms, 10s, 5m, 2h, 1d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1000)}ms"


def regex_value(values: list[str]) -> str:
    """A multi-value variable inside an InfluxQL regex, as Grafana formats it."""
    escaped = [re.sub(r"([\\/^$.|?*+()\[\]{}-])", r"\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def expand_influxql(
    q: str, start: datetime, end: datetime, interval: str, variables: Mapping[str, str] = {}
) -> str:
    """``variables`` maps a name to its already formatted text (``regex_value`` or ``.*``)."""
    s, e = round(start.timestamp() * 1000), round(end.timestamp() * 1000)
    q = q.replace("$timeFilter", f"time >= {s}ms and time <= {e}ms")
    for name, value in (("__from", s), ("__to", e)):
        q = q.replace("${" + name + "}", str(value)).replace("$" + name, str(value))
    q = q.replace("$__interval", interval)
    for name in sorted(variables, key=len, reverse=True):  # $site before $s
        q = q.replace(f"${name}", variables[name])
    if re.search(r"\$\{?\w", q):
        raise ValueError(f"unexpanded variable in {q!r}")
    return q


def expand_promql(q: str, interval: str, rate_interval: str) -> str:
    q = q.replace("$__rate_interval", rate_interval).replace("$__interval", interval)
    if re.search(r"\$\w", q):
        raise ValueError(f"unexpanded variable in {q!r}")
    return q
