"""Backtest: run a detector configuration over stored history before changing production.

    frame = load_history(db=..., start, end)   or   load_history(parquet="history.parquet")
    result = backtest(config, frame, labels, progress=...)
    result.summary()            # one row: alerts, incidents detected, recall, false alarms, ...

History is what the flow stored (``reading`` and ``security_event``; ``twinwatch query history``
saves the same frame as Parquet). It is turned back into ``Reading``/``SecurityEvent`` records in
time order and fed, in batches of ``flow.batch_size``, through the flow's own logic: the shard
detectors and alert rules (``twinwatch.engine.shard.Shard``), the asset groups
(``twinwatch.engine.assets.AssetShard``), the stale-sensor check
(``twinwatch.engine.liveness.Liveness``) and, when ``security.enabled``, the security rules and log
templates (``twinwatch.engine.security.SecurityShard``), so a config gives the alerts the live
flow would have given. The security branch's findings are stored as security events too
(``kind`` = the rule, outcome ``info``); they are outputs, not inputs, so they are left out of
the replay.

Scoring against the simulator's incident labels:

- incident level (``twinwatch.app.evaluate``, as the demo): detected incidents, recall, detection
  delays, and firing alerts outside any incident (false alarms);
- sample level (scikit-learn): every scored reading/event is labelled "in an incident" when its
  sensor is a target and its time is in the incident's window, and predicted positive when an
  alert of its series is firing; precision, recall, F1 and the confusion matrix.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from twinwatch.app.analysis.query import AnalysisError, EmptyResult
from twinwatch.app.evaluate import (
    AlertRow,
    IncidentResult,
    group_members,
    match_incidents,
    unmatched_alerts,
)
from twinwatch.engine.assets import AssetShard, member_readings
from twinwatch.engine.liveness import Liveness, latest_times, maintenance_windows
from twinwatch.engine.plan import Plan
from twinwatch.engine.shard import Shard
from twinwatch.schema import Alert, AnomalyScore, Reading, SecurityEvent

__all__ = [
    "BacktestResult",
    "load_history",
    "records",
    "backtest",
    "read_labels",
    "alert_rows",
    "live_alerts",
]

# Kinds of the findings twinwatch.flows.security writes back as security events
# (twinwatch.detectors.security rules, twinwatch.detectors.logtemplates): not part of the input
# stream.
FINDING_KINDS = frozenset(
    {
        "brute_force",
        "password_spray",
        "user_enum",
        "success_after_failures",
        "port_scan",
        "new_template",
        "template_rate",
    }
)


def read_labels(path: str | Path) -> list[dict]:
    """Incident labels as the simulator writes them (``simulation.labels_path``, JSON Lines)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise AnalysisError(f"cannot read incident labels {path}: {e.strerror}") from None
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as e:
        raise AnalysisError(f"{path} is not JSON Lines of incident labels: {e}") from None


def load_history(
    *,
    db=None,
    start: datetime | None = None,
    end: datetime | None = None,
    parquet: str | Path | None = None,
    progress=None,
) -> pl.DataFrame:
    """The history frame from InfluxDB (``db`` and a range) or from a Parquet file."""
    if parquet is not None:
        try:
            df = pl.read_parquet(parquet)
        except (OSError, pl.exceptions.PolarsError) as e:
            raise AnalysisError(f"cannot read {parquet}: {e}") from None
        if start is not None and end is not None:
            df = df.filter(pl.col("time").is_between(start, end, closed="left"))
    else:
        from twinwatch.app.analysis.helpers import history

        if start is None or end is None:
            raise AnalysisError("reading the history from InfluxDB needs a start and an end")
        df = history(db, start, end, progress=progress)
    missing = {"time", "domain", "site", "asset", "sensor"} - set(df.columns)
    if missing:
        raise AnalysisError(
            f"history has no column {', '.join(sorted(missing))}; save it with "
            "`twinwatch query history --format parquet`"
        )
    if not df.height:
        raise EmptyResult("no readings or security events in the history to backtest")
    return df


def records(df: pl.DataFrame) -> list[Reading | SecurityEvent]:
    """History rows -> records, in time order (readings have a value, events a kind)."""
    has_events = "kind" in df.columns
    cols = {c: pl.col(c).cast(pl.String) for c in df.columns if df.schema[c] == pl.Categorical}
    out: list[Reading | SecurityEvent] = []
    utc = UTC  # as the parser makes them (polars gives zoneinfo's UTC)
    for r in df.with_columns(**cols).sort("time", maintain_order=True).iter_rows(named=True):
        r["time"] = r["time"].replace(tzinfo=utc)
        if has_events and r["kind"] is not None:
            if r["outcome"] == "info" and r["kind"] in FINDING_KINDS:
                continue
            out.append(
                SecurityEvent(
                    r["time"],
                    r["site"],
                    r["asset"],
                    r["sensor"],
                    r["kind"],
                    r["outcome"],
                    r.get("user"),
                    r.get("src_ip"),
                    r.get("dst_port"),
                    r.get("message") or "",
                    r["domain"],
                    severity=r.get("severity"),  # log lines' fields (issue #13)
                    facility=r.get("facility"),
                    program=r.get("program"),
                    host=r.get("host"),
                )
            )
        else:
            out.append(
                Reading(
                    r["time"],
                    r["domain"],
                    r["site"],
                    r["asset"],
                    r["sensor"],
                    r["quantity"],
                    r["unit"],
                    r["value"],
                )
            )
    return out


def alert_rows(alerts) -> list[AlertRow]:
    """Firing alerts (schema ``Alert``s) as ``twinwatch.app.evaluate`` rows."""
    return [
        AlertRow(a.at, a.domain, a.site, a.asset, a.sensor, a.rule, a.severity, a.kind, a.detector)
        for a in alerts
        if a.status == "firing"
    ]


def live_alerts(db, start: datetime, end: datetime) -> list[AlertRow]:
    """The firing alerts the live flow stored, to compare a backtest against."""
    df = db.read("alert", start, end, where={"status": "firing"})
    if not df.height:
        return []
    df = df.with_columns(pl.col(pl.Categorical).cast(pl.String))
    return [
        AlertRow(
            r["time"], r["domain"], r["site"], r["asset"], r["sensor"], r["rule"], r["severity"]
        )
        for r in df.iter_rows(named=True)
    ]


@dataclass
class BacktestResult:
    alerts: list[Alert]
    incidents: list[IncidentResult]
    false_alarms: list[AlertRow]
    samples: int
    precision: float
    recall_samples: float
    f1: float
    confusion: list[list[int]]  # [[tn, fp], [fn, tp]]
    by_rule: Counter = field(default_factory=Counter)

    @property
    def fired(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def recall(self) -> float:
        return (
            sum(r.detected for r in self.incidents) / len(self.incidents)
            if self.incidents
            else float("nan")
        )

    def summary(self) -> dict:
        return {
            "alerts_fired": len(self.fired),
            "incidents": len(self.incidents),
            "detected": sum(r.detected for r in self.incidents),
            "recall": self.recall,
            "false_alarms": len(self.false_alarms),
            "sample_precision": self.precision,
            "sample_recall": self.recall_samples,
            "sample_f1": self.f1,
            "samples": self.samples,
        }

    def incident_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "domain": r.domain,
                    "target": r.targets[0],
                    "detected": r.detected,
                    "delay_min": None if r.delay_s is None else r.delay_s / 60,
                    "rule": r.first_alert.rule if r.first_alert else None,
                }
                for r in self.incidents
            ],
            schema={
                "id": pl.String,
                "kind": pl.String,
                "domain": pl.String,
                "target": pl.String,
                "detected": pl.Boolean,
                "delay_min": pl.Float64,
                "rule": pl.String,
            },
        )


def _windows(labels: list[dict]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for lb in labels:
        a = datetime.fromisoformat(lb["start"]).timestamp()
        b = datetime.fromisoformat(lb["end"]).timestamp()
        for target in lb["targets"]:
            out[target].append((a, b))
    return out


def backtest(
    config,
    history: pl.DataFrame | list,
    labels: list[dict],
    *,
    grace_s: float = 1800.0,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Replay ``history`` (frame or records) through ``config``'s detectors and alert rules."""
    recs = records(history) if isinstance(history, pl.DataFrame) else history
    plan = Plan(config)
    shard, assets, liveness = Shard(plan), AssetShard(plan), Liveness(config)
    security = None
    if config.security.enabled:
        from twinwatch.engine.security import SecurityShard

        security = SecurityShard(config)
    windows = _windows(labels)
    firing: Counter = Counter()  # series -> alerts firing now
    alerts: list[Alert] = []
    y_true: list[bool] = []
    y_pred: list[bool] = []
    bs = config.flow.batch_size
    for i in range(0, len(recs), bs):
        batch = recs[i : i + bs]
        # The flow runs the shards and the liveness check on each batch alike.
        for out in shard.process(batch):
            if type(out) is AnomalyScore:
                series = f"{out.domain}/{out.site}/{out.asset}/{out.sensor}"
                target = f"{out.site}/{out.asset}/{out.sensor}"
                t = out.time.timestamp()
                y_true.append(any(a <= t <= b for a, b in windows.get(target, ())))
                y_pred.append(firing[series] > 0)
                continue
            if type(out) is not Alert:  # an accepted-baseline annotation
                continue
            alerts.append(out)
            series = f"{out.domain}/{out.site}/{out.asset}/{out.sensor}"
            if out.status == "firing":
                firing[series] += 1
            elif out.status == "resolved":
                firing[series] -= 1
        more = [
            a for a in assets.process(member_readings(batch, plan)) if type(a) is Alert
        ] + liveness.process(latest_times(batch), maintenance_windows(batch))
        if security is not None:
            more += [
                a
                for a in security.process([r for r in batch if type(r) is SecurityEvent])
                if type(a) is Alert
            ]
        for a in more:  # after the batch's scores: their effect on y_pred starts next batch
            firing[f"{a.domain}/{a.site}/{a.asset}/{a.sensor}"] += {
                "firing": 1,
                "resolved": -1,
            }.get(a.status, 0)
        alerts += more
        if progress is not None:
            progress(min(i + bs, len(recs)), len(recs))
    rows = alert_rows(alerts)
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, average="binary", zero_division=0.0
    )
    cm = confusion_matrix(y_true, y_pred, labels=[False, True]).tolist()
    groups = group_members(config)
    return BacktestResult(
        alerts,
        match_incidents(labels, rows, grace_s, groups),
        unmatched_alerts(labels, rows, grace_s, groups),
        len(y_true),
        float(p),
        float(r),
        float(f),
        cm,
        Counter(a.rule for a in rows),
    )
