"""One way to make a paho-mqtt 2.x client from the config: auth, TLS, reconnect backoff.

Used by the flow's MQTT source and by the simulator's publisher, so both honour the same
``services.mqtt`` settings. The password is read from its Secret only here, at connect time.
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt

from twinwatch.config import MqttService

__all__ = ["make_client", "MqttError"]


class MqttError(RuntimeError):
    """The broker could not be reached or refused us."""


def make_client(
    cfg: MqttService, client_id: str, *, clean_session: bool = False, manual_ack: bool = False
) -> mqtt.Client:
    """A configured, not yet connected client. ``clean_session=False`` keeps the broker-side
    session (subscriptions and queued QoS 1 messages) across reconnects and restarts;
    ``manual_ack`` leaves acknowledging received QoS 1 messages to the caller."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password.reveal() if cfg.password else None)
    if cfg.tls.enabled:
        client.tls_set(
            ca_certs=cfg.tls.ca_file,
            certfile=cfg.tls.cert_file,
            keyfile=cfg.tls.key_file,
            cert_reqs=ssl.CERT_REQUIRED if cfg.tls.verify else ssl.CERT_NONE,
        )
        client.tls_insecure_set(not cfg.tls.verify)
    client.reconnect_delay_set(min_delay=1, max_delay=30)  # exponential backoff, capped
    return client


def connect(client: mqtt.Client, cfg: MqttService) -> None:
    try:
        client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
    except OSError as e:
        raise MqttError(f"cannot reach MQTT broker at {cfg.host}:{cfg.port}: {e}") from None
