"""One way to make a paho-mqtt 2.x client from the config: auth, TLS, reconnect backoff.

Used by the flow's MQTT source and by the simulator's publisher, so both honour the same
``services.mqtt`` settings. The password is read from its Secret only here, at connect time.

    make_client(cfg, client_id)     a configured client (MqttError naming the TLS setting at fault)
    connect(client, cfg)            connect now (MqttError: one line with cause and settings)
    check_broker(cfg)               at start: raises MqttError for what retrying cannot fix
                                    (TLS, credentials); returns the reason if merely unreachable
"""

from __future__ import annotations

import socket
import ssl
import threading

import paho.mqtt.client as mqtt

from twinwatch.config import ConfigError, MqttService

__all__ = ["make_client", "connect", "check_broker", "describe", "why_unreachable", "MqttError"]

BACKOFF = (1, 30)  # seconds: paho's reconnect delay doubles from the first to the second


class MqttError(RuntimeError):
    """The broker could not be reached or refused us."""


def describe(cfg: MqttService) -> str:
    """Where the broker is, naming the settings (for one-line errors)."""
    tls = ", TLS" if cfg.tls.enabled else ""
    return f"MQTT broker {cfg.host}:{cfg.port}{tls} (services.mqtt.host/port)"


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
        try:
            client.tls_set(
                ca_certs=cfg.tls.ca_file,
                certfile=cfg.tls.cert_file,
                keyfile=cfg.tls.key_file,
                cert_reqs=ssl.CERT_REQUIRED if cfg.tls.verify else ssl.CERT_NONE,
            )
        except (OSError, ssl.SSLError, ValueError) as e:
            raise ConfigError(
                f"services.mqtt.tls: cannot load the CA/certificate/key files "
                f"(ca_file={cfg.tls.ca_file}, cert_file={cfg.tls.cert_file}, "
                f"key_file={cfg.tls.key_file}): {_reason(e)}"
            ) from None
        client.tls_insecure_set(not cfg.tls.verify)
    client.reconnect_delay_set(min_delay=BACKOFF[0], max_delay=BACKOFF[1])
    return client


def _reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {e.verify_message}"
    if isinstance(e, ssl.SSLError):
        return f"TLS handshake failed: {e.reason or e}"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return " ".join(str(e).split()) or type(e).__name__


def why_unreachable(cfg: MqttService) -> str:
    """The socket's reason for not reaching the broker (paho's retry loop does not say)."""
    try:
        socket.create_connection((cfg.host, cfg.port), timeout=2).close()
    except OSError as e:
        return _reason(e)
    return "the connection failed"


def connect(client: mqtt.Client, cfg: MqttService) -> None:
    try:
        client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
    except ssl.SSLError as e:
        raise MqttError(f"{describe(cfg)}: {_reason(e)} (services.mqtt.tls)") from None
    except OSError as e:
        raise MqttError(f"cannot reach {describe(cfg)}: {_reason(e)}") from None


def check_broker(cfg: MqttService, timeout: float = 5.0) -> str | None:
    """Try the broker once, as the flow will: None if it accepts us. A TLS failure or refused
    credentials raise MqttError (retrying will not fix them); an unreachable broker returns
    the reason (the source retries with backoff)."""
    client = make_client(cfg, f"{cfg.client_id}-check", clean_session=True)
    answer: list = []
    done = threading.Event()

    def on_connect(c, userdata, flags, rc, props) -> None:
        answer.append(rc)
        done.set()

    client.on_connect = on_connect
    try:
        connect(client, cfg)
    except MqttError as e:
        if "(services.mqtt.tls)" in str(e):
            raise
        return str(e)
    client.loop_start()
    try:
        if not done.wait(timeout):
            return f"{describe(cfg)} did not answer within {timeout:g}s"
        rc = answer[0]
        if rc.is_failure:
            who = f"user {cfg.username!r}" if cfg.username else "an anonymous client"
            raise MqttError(
                f"{describe(cfg)} refused the connection: {rc} "
                f"({who}; services.mqtt.username/password)"
            )
        return None
    finally:
        client.disconnect()
        client.loop_stop()
