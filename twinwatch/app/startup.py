"""What ``twinwatch run`` and ``twinwatch logs`` check before the flow starts, and say after.

    prepare(config, mqtt=True, create_db=True)   raises ConfigError/MqttError (one line each)
    finish() -> exit status                        prints why a run stored nothing or too little

Before: every secret the flow will read is there (a missing variable is one line naming the key,
not a traceback from a worker thread); the database exists (v1: created unless told not to) or
the bucket is checked (v2); retention is applied; the MQTT broker is tried once, so a TLS or
credentials problem is one line and exit 2, while an unreachable broker is one line and the
source retries with backoff. After: the sinks' tally (``twinwatch.flows.sinks.outcome``) decides
the exit status, and its lines say why.
"""

from __future__ import annotations

import logging
import sys

from twinwatch.config import Config, ConfigError, Secret

__all__ = ["prepare", "finish", "check_secrets"]

log = logging.getLogger(__name__)


def _secrets(config: Config, mqtt: bool) -> list[tuple[str, Secret]]:
    s = config.services
    out: list[tuple[str, Secret | None]] = [
        ("services.influxdb.password", s.influxdb.password),
        ("services.influxdb.token", s.influxdb.token),
        ("security.pseudonymise_key", config.security.pseudonymise_key),
    ]
    if mqtt:
        out.append(("services.mqtt.password", s.mqtt.password))
    am = s.alertmanager
    if am.url or am.webhook_url:
        out += [
            ("services.alertmanager.password", am.password),
            ("services.alertmanager.bearer_token", am.bearer_token),
            ("services.alertmanager.webhook_secret", am.webhook_secret),
        ]
    return [(key, secret) for key, secret in out if secret is not None]


def check_secrets(config: Config, mqtt: bool = True) -> None:
    """Read every secret the flow will need now; ConfigError naming the key if one is missing."""
    for key, secret in _secrets(config, mqtt):
        try:
            secret.reveal()
        except ConfigError as e:
            raise ConfigError(f"{key}: {str(e).removeprefix('secret: ')}") from None


def prepare(
    config: Config, *, mqtt: bool = True, create_db: bool = True, first: bool = True
) -> None:
    """``first``: this is the first (or only) process of the flow, which creates the database
    and applies retention."""
    from twinwatch.flows.sinks.outcome import OUTCOME
    from twinwatch.influx import InfluxError, prepare_database

    OUTCOME.reset()
    check_secrets(config, mqtt)
    influx = config.services.influxdb
    if first and create_db and influx.create_database:
        prepare_database(influx)
    if first:
        from twinwatch.app.retention import apply_configured

        try:
            apply_configured(influx)
        except InfluxError as e:
            log.error("retention not applied (applied at the next start): %s", e)
    if mqtt:
        from twinwatch.mqtt import check_broker

        unreachable = check_broker(config.services.mqtt)
        if unreachable:  # the source says so in one line, and retries with backoff
            log.debug("at start: %s", unreachable)


def finish() -> int:
    """Print what the run did not store (if anything) and return the exit status."""
    from twinwatch.flows.sinks.outcome import OUTCOME

    status, lines = OUTCOME.verdict()
    for line in lines:
        print(f"twinwatch: {line}", file=sys.stderr)
    return status
