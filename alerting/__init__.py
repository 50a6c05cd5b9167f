"""Alerting: delivery of alert state changes to on-call (knows nothing of Bytewax).

alertmanager.py   Alertmanager API v2 client (alerts, silences) and payloads
webhook.py        the HMAC-signed direct webhook (sender, and ``verify`` for receivers)
notifiers.py      the one notifier interface over both
delivery.py       dedup, escalation, ordering, hold, re-send, retry: off the flow's thread
store.py          the delivery queue and what each receiver was told (SQLite)
rules.py          runbook and dashboard links      amconfig.py   alertmanager.yml
ops.py            ``twinwatch alerts list|ack|silence|silences|expire|config``
"""

from twinwatch.alerting.alertmanager import (
    AlertmanagerClient,
    AlertmanagerError,
    AlertmanagerRejected,
    AlertmanagerUnavailable,
    to_payload,
)

__all__ = [
    "AlertmanagerClient",
    "AlertmanagerError",
    "AlertmanagerRejected",
    "AlertmanagerUnavailable",
    "to_payload",
]
