"""Running `twinwatch run` as a real subprocess in tests: its environment and readiness."""

from __future__ import annotations

import os
import time

import httpx

from twinwatch.app import services

READY = 'twinwatch_source_ready{source="mqtt"} 1.0'


def flow_env(
    tmp_path, mqtt, influx=None, database=None, alertmanager_url="null", **overrides: str
) -> tuple[dict[str, str], int]:
    """Environment for a flow on the given services: free metrics port, spool, dead letters and
    the alert delivery store under tmp_path; ``overrides`` are more TWINWATCH__SERVICES__/FLOW__
    keys, e.g. ``MQTT__CLIENT_ID="x"``. Returns (env, metrics port)."""
    port = services.free_port()
    env = dict(
        os.environ,
        TWINWATCH__SERVICES__MQTT__PORT=str(mqtt.port),
        TWINWATCH__SERVICES__ALERTMANAGER__URL=alertmanager_url,
        TWINWATCH__SERVICES__METRICS__PORT=str(port),
        TWINWATCH__SERVICES__INFLUXDB__SPOOL_DIR=str(tmp_path / "spool"),
        TWINWATCH__SERVICES__ALERTMANAGER__STATE_PATH=str(tmp_path / "alert-delivery.sqlite"),
        TWINWATCH__FLOW__DEAD_LETTER_PATH=str(tmp_path / "dead.jsonl"),
    )
    if influx is not None:
        env["TWINWATCH__SERVICES__INFLUXDB__URL"] = influx.url
    if database is not None:
        env["TWINWATCH__SERVICES__INFLUXDB__DATABASE"] = database
    for key, value in overrides.items():
        section = "FLOW__" if key.startswith("FLOW__") else "SERVICES__"
        env["TWINWATCH__" + (key if section == "FLOW__" else section + key)] = value
    return env, port


def metrics_text(url: str) -> str:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return ""


def wait_subscribed(metrics_url: str, proc, timeout: float = 60, output=None) -> None:
    """Wait until the flow process reports its MQTT source subscribed (fail if it exits)."""
    deadline = time.monotonic() + timeout
    while READY not in metrics_text(metrics_url):
        if proc.poll() is not None:
            text = output() if output else (proc.stdout.read().decode() if proc.stdout else "")
            raise AssertionError(f"flow exited ({proc.returncode}):\n{text[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("flow did not subscribe in time")
        time.sleep(0.2)
