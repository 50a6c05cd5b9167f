"""The pipeline's own health, as Prometheus metrics (prometheus-client).

All metric objects live here so names and labels are defined once. Label values are bounded
sets (source kinds, sink names, dead-letter reasons, domains, detector names), never ids or text.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from twinwatch.config import ConfigError, is_loopback

__all__ = [
    "RECORDS_IN",
    "RECORDS_OUT",
    "DEAD_LETTERS",
    "DETECT_SECONDS",
    "SINK_WRITE_SECONDS",
    "SINK_ERRORS",
    "SINK_RETRIES",
    "SINK_SINCE_SUCCESS",
    "SINK_IN_FLIGHT",
    "SINK_QUEUED",
    "SINK_REFUSED",
    "SPOOL_BYTES",
    "SPOOL_DROPPED",
    "QUEUE_DEPTH",
    "SOURCE_READY",
    "SOURCE_PAUSED",
    "ANOMALIES",
    "ALERTS",
    "ALERT_QUEUE_DEPTH",
    "ALERT_QUEUE_DROPPED",
    "ALERT_DELIVERIES",
    "SYSLOG_CONNECTIONS",
    "SYSLOG_LIMITED",
    "serve",
]

log = logging.getLogger(__name__)

RECORDS_IN = Counter("twinwatch_records_in", "Raw records received, by source.", ["source"])
RECORDS_OUT = Counter(
    "twinwatch_records_out", "Records written, by sink and measurement.", ["sink", "measurement"]
)
DEAD_LETTERS = Counter(
    "twinwatch_dead_letters", "Records rejected to the dead-letter queue, by reason.", ["reason"]
)
DETECT_SECONDS = Histogram(
    "twinwatch_detect_seconds",
    "Detector time per reading (all detectors of its series).",
    buckets=(1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2),
)
SINK_WRITE_SECONDS = Histogram(
    "twinwatch_sink_write_seconds",
    "Duration of one batch write, by sink.",
    ["sink"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SINK_ERRORS = Counter(
    "twinwatch_sink_errors", "Failed batch writes (after retries), by sink.", ["sink"]
)
SINK_RETRIES = Counter("twinwatch_sink_retries", "Retried write attempts, by sink.", ["sink"])
# A hung or refused sink: the seconds since its last successful write keep growing, and a write
# that never returns keeps its batch in flight.
SINK_SINCE_SUCCESS = Gauge(
    "twinwatch_sink_seconds_since_success",
    "Seconds since the sink's last successful write (since start if none yet).",
    ["sink"],
)
SINK_IN_FLIGHT = Gauge(
    "twinwatch_sink_in_flight_batches", "Batches a sink is writing right now, by sink.", ["sink"]
)
SINK_QUEUED = Gauge(
    "twinwatch_sink_queued_records",
    "Records waiting for a sink's writer thread (bounded by services.influxdb.write_queue).",
    ["sink"],
)
SINK_REFUSED = Counter(
    "twinwatch_sink_refused",
    "Writes refused for credentials, permission or a missing database (kept, not dropped), "
    "by sink and HTTP status.",
    ["sink", "status"],
)
SPOOL_BYTES = Gauge(
    "twinwatch_spool_bytes", "Bytes waiting in the on-disk spool of a sink (backlog).", ["sink"]
)
SPOOL_DROPPED = Counter(
    "twinwatch_spool_dropped", "Points dropped because a sink's spool was full.", ["sink"]
)
QUEUE_DEPTH = Gauge(
    "twinwatch_queue_depth",
    "Records received but not yet taken by the flow, by source.",
    ["source"],
)
SOURCE_READY = Gauge(
    "twinwatch_source_ready", "1 while the source is connected and subscribed.", ["source"]
)
SOURCE_PAUSED = Gauge(
    "twinwatch_source_paused",
    "1 while the source has stopped taking messages because the flow is behind (backpressure).",
    ["source"],
)
ANOMALIES = Counter(
    "twinwatch_anomalies", "Detector hits, by domain and detector.", ["domain", "detector"]
)
ALERTS = Counter(
    "twinwatch_alerts",
    "Alert state changes, by domain, severity and status.",
    ["domain", "severity", "status"],
)

# Alert delivery (twinwatch.alerting.delivery); ``receiver`` is "alertmanager" or "webhook".
ALERT_QUEUE_DEPTH = Gauge(
    "twinwatch_alert_queue_depth",
    "Alert states waiting to be delivered, by receiver.",
    ["receiver"],
)
ALERT_QUEUE_DROPPED = Counter(
    "twinwatch_alert_queue_dropped",
    "Alert states dropped because a receiver's delivery queue was full.",
    ["receiver"],
)
ALERT_DELIVERIES = Counter(
    "twinwatch_alert_deliveries",
    "Alert states by receiver and outcome: sent (new state), resent (firing renewed), rejected "
    "(refused for good), duplicate (already told, not sent), orphan (a resolve with no firing).",
    ["receiver", "outcome"],
)
SYSLOG_CONNECTIONS = Gauge("twinwatch_syslog_connections", "Open syslog TCP connections.")
SYSLOG_LIMITED = Counter(
    "twinwatch_syslog_limited",
    "Syslog input held to a limit, by limit: refused (max_connections), idle_closed, "
    "truncated (max_line_bytes), throttled (TCP frames delayed by the rate limit), "
    "rate_dropped / queue_dropped (UDP datagrams dropped: rate limit, full queue), "
    "queue_paused (TCP reads paused while the flow's queue was full).",
    ["limit"],
)


def serve(host: str, port: int) -> None:
    """Expose /metrics on host:port (no-op when port is 0); warn when it is not loopback."""
    if port:
        if not is_loopback(host):
            log.warning(
                "metrics: serving /metrics on %s:%d, reachable beyond this machine "
                "(services.metrics.host); use 127.0.0.1 unless a firewall guards it",
                host,
                port,
            )
        try:
            start_http_server(port, addr=host)
        except OSError as e:
            raise ConfigError(
                f"services.metrics: cannot serve /metrics on {host}:{port}: {e.strerror} "
                "(set services.metrics.port, or 0 to disable)"
            ) from None
