"""Alerting: alert lifecycle and delivery to Prometheus Alertmanager (knows nothing of Bytewax)."""

from twinwatch.alerting.alertmanager import (
    AlertmanagerClient,
    AlertmanagerError,
    AlertmanagerRejected,
    AlertmanagerUnavailable,
    FiringSet,
    to_payload,
)

__all__ = [
    "AlertmanagerClient",
    "AlertmanagerError",
    "AlertmanagerRejected",
    "AlertmanagerUnavailable",
    "FiringSet",
    "to_payload",
]
