"""Incident report: one self-contained HTML file (figures embedded as PNG data URIs) plus the
same figures as PNG files, for a time range and optionally one domain or site.

    build_report(db, config, start, end, out_dir, domain=None, site=None, tz=None) -> Path

Sections (each an ``<section id=...>``): ``summary`` (with the alerts still firing at the end of
the period, wherever they started), ``alerts`` (alerts per hour by severity, then every fired
alert), ``incidents`` (one figure per incident: the readings with the sensor's limits, the
detector scores divided by their thresholds so 1 is a hit, and the alert spans shaded by
severity), ``mtta-mttr``, ``noisy-sensors`` and ``dead-letters``.

Times are shown in ``tz`` (default: the city's ``city.timezone``; ``twinwatch report --utc``
passes UTC), the zone marked in every title and column header. Values are shown as stored, i.e.
at the sensor's own resolution (0.2188 mm stays 0.2188), durations to 0.1.

An incident is a run of overlapping alert episodes on one sensor (several detectors often fire
on the same excursion). A still-firing incident is drawn up to its last state change plus a
margin, marked "still firing", not stretched to the end of the period. Legends sit beside the
plots, never over the data. Figure text stays ASCII (the Korean severity names need a CJK font
the machine may not have). Security sensors have no readings: their panel shows the failures and
denies per minute. Figures use matplotlib's Agg backend (no display needed); the most severe
``max_incidents`` incidents get a figure.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from twinwatch.app.analysis import helpers as h  # noqa: E402
from twinwatch.app.analysis.query import Influx, check_range  # noqa: E402
from twinwatch.engine.plan import Plan  # noqa: E402
from twinwatch.localtime import label, show, span, zone  # noqa: E402
from twinwatch.schema import SEVERITIES  # noqa: E402

__all__ = ["build_report", "incidents", "SECTIONS"]

SECTIONS = ("summary", "alerts", "incidents", "mtta-mttr", "noisy-sensors", "dead-letters")
COLORS = {"attention": "#4c9be8", "caution": "#f2c94c", "alert": "#f2994a", "severe": "#eb5757"}
PAD = timedelta(minutes=45)
_CSS = """body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#eee}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}h2{border-bottom:2px solid #444}"""


def incidents(episodes: pl.DataFrame, end: datetime) -> list[dict]:
    """Overlapping episodes of one sensor merged: {series..., start, end, episodes, severity,
    open}. A still-firing episode overlaps everything after it; ``end`` is then the incident's
    last state change (``open`` True), not the end of the period."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    out: list[dict] = []
    rows = episodes.sort("fired_at").to_dicts()
    for key, group in _groupby(rows, lambda r: tuple(str(r[c]) for c in h.SERIES)):
        current = None
        for r in group:
            last = r["resolved_at"] or r["fired_at"]
            if current is not None and (current["open"] or r["fired_at"] <= current["end"]):
                current["end"] = max(current["end"], last)
                current["open"] = current["open"] or r["resolved_at"] is None
                current["episodes"].append(r)
                continue
            current = {
                **dict(zip(h.SERIES, key)),
                "start": r["fired_at"],
                "end": last,
                "open": r["resolved_at"] is None,
                "episodes": [r],
            }
            out.append(current)
    for inc in out:
        inc["severity"] = max((str(e["severity"]) for e in inc["episodes"]), key=rank.__getitem__)
    return sorted(out, key=lambda i: (-rank[i["severity"]], i["start"]))


def _groupby(rows: list[dict], key) -> list[tuple]:
    groups: dict = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return list(groups.items())


def _png(fig, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    path.write_bytes(buf.getvalue())
    return base64.b64encode(buf.getvalue()).decode()


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _number(v: float, column: str) -> str:
    """Durations to 0.1; measured values as stored (the sensor's resolution: 0.2188 stays
    0.2188, 12.5 stays 12.5; 10 significant digits drop float noise such as 0.30000000000000004)."""
    if column.endswith(("_s", "_min")):
        return f"{v:.1f}"
    return f"{v:.10g}"


def _table(df: pl.DataFrame, empty: str, tz: tzinfo) -> str:
    if not df.height:
        return f"<p>{html.escape(empty)}</p>"

    def cell(v, column: str) -> str:
        if isinstance(v, float):
            return _number(v, column)
        if isinstance(v, datetime):
            return v.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
        return html.escape("" if v is None else str(v))

    some = next((v for row in df.iter_rows() for v in row if isinstance(v, datetime)), None)
    zone_name = f" ({label(some, tz)})" if some is not None else ""
    head = "".join(
        f"<th>{html.escape(c)}{zone_name if isinstance(df.schema[c], pl.Datetime) else ''}</th>"
        for c in df.columns
    )
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(v, c)}</td>" for v, c in zip(row, df.columns)) + "</tr>"
        for row in df.iter_rows()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _time_axis(ax, tz: tzinfo) -> None:
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=tz))


def _legend(ax, **kw) -> None:
    """Beside the plot, so it never hides data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=7, **kw)


def _alerts_figure(episodes: pl.DataFrame, path: Path, tz: tzinfo) -> str:
    fig, ax = plt.subplots(figsize=(11, 2.8))
    per_hour = (
        episodes.with_columns(
            pl.col("fired_at").dt.truncate("1h").alias("hour"), pl.col("severity").cast(pl.String)
        )
        .group_by("hour", "severity")
        .len()
    )
    bottom: dict = {}
    for sev in SEVERITIES:
        part = per_hour.filter(pl.col("severity") == sev).sort("hour")
        if not part.height:
            continue
        hours, counts = part["hour"].to_list(), part["len"].to_list()
        ax.bar(
            hours,
            counts,
            width=1 / 26,
            bottom=[bottom.get(x, 0) for x in hours],
            color=COLORS[sev],
            label=sev,
            align="edge",
        )
        for x, c in zip(hours, counts):
            bottom[x] = bottom.get(x, 0) + c
    ax.set_ylabel("alerts fired / h")
    _legend(ax)
    _time_axis(ax, tz)
    ax.set_xlabel(f"time ({label(episodes['fired_at'][0], tz)})")
    ax.set_title("Alerts fired per hour, by severity")
    return _png(fig, path)


def _incident_figure(
    db: Influx,
    plan: Plan,
    config,
    inc: dict,
    start: datetime,
    end: datetime,
    path: Path,
    tz: tzinfo,
) -> str:
    key = tuple(inc[c] for c in h.SERIES)
    a, b = max(start, inc["start"] - PAD), min(end, inc["end"] + PAD)
    where = dict(zip(h.SERIES, key))
    scores = db.read("anomaly_score", a, b, where=where) if b > a else pl.DataFrame()
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(12, 4.6), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    ref = config.catalog.get(key)
    series = "/".join(key)
    if scores.height and ref is not None and ref.sensor.kind == "reading":
        top.plot(scores["time"].to_list(), scores["value"].to_list(), lw=1, color="#333")
        top.set_ylabel(ref.sensor.unit)
        limits = ref.sensor.limits
        for name, v in (("low", limits and limits.low), ("high", limits and limits.high)):
            if v is not None:
                top.axhline(v, color="#eb5757", ls="--", lw=1, label=f"{name} limit {v:g}")
    elif scores.height:
        per_min = (
            scores.sort("time").group_by_dynamic("time", every="1m").agg(pl.col("value").sum())
        )
        top.step(per_min["time"].to_list(), per_min["value"].to_list(), lw=1, color="#333")
        top.set_ylabel("failures / min")
    try:
        thresholds = plan[series].thresholds()
    except KeyError:  # a sensor no longer in the config
        thresholds = {}
    for name, thr in thresholds.items():
        if scores.height and name in scores.columns and thr:
            bottom.plot(scores["time"].to_list(), (scores[name] / thr).to_list(), lw=1, label=name)
    bottom.axhline(1.0, color="#888", ls=":", lw=1)
    bottom.set_ylabel("score / threshold")
    for e in inc["episodes"]:
        sev = str(e["severity"])
        still = e["resolved_at"] is None
        for ax in (top, bottom):
            ax.axvspan(
                e["fired_at"],
                e["resolved_at"] or b,  # a still-firing alert: to the figure's edge, no further
                color=COLORS[sev],
                alpha=0.25,
                label=(f"{e['rule']} ({sev})" + (", still firing" if still else ""))
                if ax is top
                else None,
            )
    when = span(inc["start"], inc["end"], tz)
    top.set_title(
        f"{series}: {inc['severity']}, {when}" + (" (still firing)" if inc["open"] else "")
    )
    _legend(top)
    if thresholds:
        _legend(bottom)
    _time_axis(bottom, tz)
    bottom.set_xlabel(f"time ({label(inc['start'], tz)})")
    return _png(fig, path)


def _noisy(db, start, end, episodes, domain, site) -> pl.DataFrame:
    noisy = h.noisy_sensors(db, start, end, top=10_000, episodes=episodes)
    for col, v in (("domain", domain), ("site", site)):
        if v is not None:
            noisy = noisy.filter(pl.col(col).cast(pl.String) == v)
    return noisy.head(10)


def build_report(
    db: Influx,
    config,
    start: datetime,
    end: datetime,
    out_dir: Path | str,
    *,
    domain: str | None = None,
    site: str | None = None,
    max_incidents: int = 12,
    tz: tzinfo | None = None,
) -> Path:
    start, end = check_range(start, end)
    tz = tz or zone(config)
    out = Path(out_dir)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    episodes = h.alert_history(db, start, end, domain=domain, site=site)
    incs = incidents(episodes, end)
    firing = h.firing_at(db, end, domain=domain, site=site)
    before = int((firing["started_at"] < start).sum())
    plan = Plan(config)
    scope = " ".join(f"{k}={v}" for k, v in (("domain", domain), ("site", site)) if v)
    title = f"twinwatch incident report — {config.city.name}" + (f" ({scope})" if scope else "")
    still = f"{firing.height} still firing at the end of the period" + (
        f" ({before} of them started before it)" if before else ""
    )
    parts = [
        f"<h1>{html.escape(title)}</h1><p>{html.escape(span(start, end, tz))}</p>",
        '<section id="summary"><h2>Summary</h2>',
        f"<p>{episodes.height} alerts fired in {len(incs)} incidents; {still}; "
        f"{episodes['acked_at'].is_not_null().sum()} acknowledged.</p>",
    ]
    if firing.height:
        parts += [
            f"<h3>Firing at {html.escape(show(end, tz, seconds=False))}</h3>",
            _table(
                firing.select(
                    "since", "started_at", *h.SERIES, "rule", "severity", "value", "unit"
                ),
                "",
                tz,
            ),
        ]
    parts += ["</section>", '<section id="alerts"><h2>Alerts</h2>']
    if episodes.height:
        parts.append(_img(_alerts_figure(episodes, figs / "alerts.png", tz), "alerts per hour"))
    cols = [
        "fired_at",
        *h.SERIES,
        "rule",
        "severity",
        "value",
        "unit",
        "resolved_at",
        "time_to_ack_s",
        "time_to_resolve_s",
    ]
    parts += [
        _table(episodes.select(cols), "No alerts fired in this period.", tz),
        "</section>",
        '<section id="incidents"><h2>Incidents</h2>',
    ]
    for i, inc in enumerate(incs[:max_incidents], 1):
        data = _incident_figure(
            db, plan, config, inc, start, end, figs / f"incident-{i:02d}.png", tz
        )
        parts.append(
            f"<h3>{i}. {html.escape('/'.join(inc[c] for c in h.SERIES))}</h3>"
            + _img(data, f"incident {i}")
        )
    if len(incs) > max_incidents:
        parts.append(f"<p>{len(incs) - max_incidents} less severe incidents not plotted.</p>")
    if not incs:
        parts.append("<p>No incidents.</p>")
    parts += [
        "</section>",
        '<section id="mtta-mttr"><h2>MTTA / MTTR</h2>',
        "<p>Minutes from firing to acknowledgement (MTTA) and to resolution (MTTR).</p>",
        _table(h.mtta_mttr(episodes), "No alerts.", tz),
        "</section>",
        '<section id="noisy-sensors"><h2>Top noisy sensors</h2>',
        _table(_noisy(db, start, end, episodes, domain, site), "No alerts or detector hits.", tz),
        "</section>",
        '<section id="dead-letters"><h2>Dead letters</h2>',
        _table(h.dead_letter_stats(db, start, end), "No dead letters in this period.", tz),
        "</section>",
    ]
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body>{''.join(parts)}</body></html>"
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
