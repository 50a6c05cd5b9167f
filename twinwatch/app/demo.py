"""``twinwatch demo``: the whole stack on this machine for a bounded time, then a summary.

1. start InfluxDB, Mosquitto and Alertmanager on loopback, data under ``var/`` (by PID files);
2. start the flow (``twinwatch run --idle-timeout``) as a child process and wait until it is
   subscribed;
3. publish the simulated city (seeded, with labelled incidents) at ``simulation.speed``;
4. wait for the flow to drain and stop, then print what arrived, what was detected and alerted,
   incidents injected vs detected with their detection delay, and where the data is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx
import msgspec

from twinwatch.alerting.alertmanager import AlertmanagerClient, AlertmanagerError
from twinwatch.app import services, simulator
from twinwatch.app.evaluate import AlertRow, match_incidents, unmatched_alerts
from twinwatch.config import Config, ConfigError, load_config
from twinwatch.influx import InfluxV1Writer
from twinwatch.schema import DOMAINS, SEVERITIES, SEVERITY_KO

__all__ = ["run_demo", "ports_from_config"]

IDLE_TIMEOUT_S = 10.0


def ports_from_config(config: Config) -> dict[str, int]:
    s = config.services
    ports = {"mosquitto": s.mqtt.port}
    for name, url in (("influxdb", s.influxdb.url), ("alertmanager", s.alertmanager.url)):
        if url and (port := urlparse(url).port):
            ports[name] = port
    return ports


def _claim_ports(config: Config, var: Path) -> dict[str, str]:
    """TWINWATCH__... overrides moving our services off ports another program holds.

    On a systemd machine, installing Debian's influxdb/mosquitto/alertmanager starts the
    distribution's own daemons on the default ports; the demo then runs its own on free ones.
    """
    overrides = {}
    running = services.status(var)
    wanted = dict(ports_from_config(config), metrics=config.services.metrics.port)
    keys = {
        "influxdb": ("INFLUXDB__URL", "http://127.0.0.1:{}"),
        "alertmanager": ("ALERTMANAGER__URL", "http://127.0.0.1:{}"),
        "mosquitto": ("MQTT__PORT", "{}"),
        "metrics": ("METRICS__PORT", "{}"),
    }
    for name, port in wanted.items():
        if name in running and running[name]["running"]:
            port = running[name]["port"]  # ours, from an earlier demo run: reuse it
        elif not services.port_free("127.0.0.1", port):
            new = services.free_port()
            print(f"  port {port} is in use by another program; {name} takes {new} instead")
            port = new
        key, fmt = keys[name]
        overrides["TWINWATCH__SERVICES__" + key] = fmt.format(port)
    return overrides


def _wait_ready(proc: subprocess.Popen, metrics_url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(
                f"the flow exited early (status {proc.returncode}); "
                f"last lines of {log}:\n{log.read_text()[-3000:]}"
            )
        try:
            if 'twinwatch_source_ready{source="mqtt"} 1.0' in httpx.get(metrics_url).text:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ConfigError(f"the flow did not subscribe within {timeout:.0f} s; see {log}")


def run_demo(
    config: Config,
    var: Path,
    *,
    config_path: str | None = None,
    sim_hours: float | None = None,
    speed: float | None = None,
) -> int:
    sim = config.simulation
    sim = msgspec.structs.replace(
        sim, duration_h=sim_hours or sim.duration_h, speed=speed or sim.speed
    )
    config = msgspec.structs.replace(config, simulation=sim)
    var.mkdir(parents=True, exist_ok=True)
    print(
        f"twinwatch demo: {config.city.name}, {len(config.catalog)} sensors, "
        f"{sim.duration_h:g} simulated hours at {sim.speed:g}x "
        f"(~{sim.duration_h * 3600 / sim.speed:.0f} s)\n"
    )

    print(f"starting services (data and logs under {var}/) ...")
    overrides = _claim_ports(config, var)
    os.environ.update(overrides)  # the flow child process and this process see the same ports
    config = msgspec.structs.replace(load_config(config_path), simulation=sim)
    svcs = services.up(["influxdb", "mosquitto", "alertmanager"], var, ports_from_config(config))
    for name, svc in svcs.items():
        print(f"  {name:13} {svc.url}")
    # A demo run starts clean, so its summary counts only its own alerts and dead letters.
    db = config.services.influxdb.database
    influxdb = svcs["influxdb"]
    assert isinstance(influxdb, services.InfluxDB)
    influxdb.drop_database(db)
    influxdb.create_database(db)
    Path(config.flow.dead_letter_path).unlink(missing_ok=True)

    flow_log = var / "flow.log"
    cmd = [sys.executable, "-m", "twinwatch.app.cli", "run", "--idle-timeout", str(IDLE_TIMEOUT_S)]
    if config_path:
        cmd += ["--config", config_path]
    with flow_log.open("w") as log:
        flow = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        m = config.services.metrics
        _wait_ready(flow, f"http://{m.host}:{m.port}/metrics", flow_log)
        print(
            f"flow running (pid {flow.pid}, log {flow_log}, metrics "
            f"http://{m.host}:{m.port}/metrics)\n"
        )

        start = simulator.sim_start(config, simulator.utcnow())
        labels = simulator.incident_labels(config, start)
        simulator.write_labels(Path(sim.labels_path), labels)
        stats = simulator.publish_mqtt(
            simulator.generate(config, start),
            mqtt=config.services.mqtt,
            speed=sim.speed,
            progress=simulator.print_progress,
        )
        print(f"\npublished {stats.messages:,} messages; waiting for the flow to drain ...")
        flow.wait(timeout=600)
    finally:
        if flow.poll() is None:
            flow.terminate()
            flow.wait(timeout=30)
    if flow.returncode != 0:
        print(f"the flow failed (status {flow.returncode}); see {flow_log}", file=sys.stderr)
        return 1
    print_summary(config, svcs, labels, start, stats.messages)
    return 0


def _series(influx: InfluxV1Writer, q: str) -> list[dict]:
    return influx.query(q)[0].get("series", [])


def _counts(influx: InfluxV1Writer, q: str) -> dict[tuple, int]:
    """{tag values: count} of a ``SELECT count(..) ... GROUP BY`` query."""
    return {tuple(s.get("tags", {}).values()): s["values"][0][1] for s in _series(influx, q)}


def print_summary(
    config: Config, svcs: dict, labels: list[dict], start: datetime, published: int
) -> None:
    url, db = svcs["influxdb"].url, config.services.influxdb.database
    since = f"time >= {int(start.timestamp() * 1000)}ms"
    with InfluxV1Writer(url, db) as influx:
        readings = _counts(
            influx, f"SELECT count(value) FROM reading WHERE {since} GROUP BY domain"
        )
        events = _counts(influx, f"SELECT count(message) FROM security_event WHERE {since}")
        anomalies = _counts(
            influx, f"SELECT count(score) FROM anomaly WHERE {since} GROUP BY domain"
        )
        dead = _counts(influx, "SELECT count(detail) FROM dead_letter GROUP BY reason")
        rows = _series(influx, f"SELECT * FROM alert WHERE status = 'firing' AND {since}")
    alerts = []
    for series in rows:
        cols = series["columns"]
        for v in series["values"]:
            row = dict(zip(cols, v))
            alerts.append(
                AlertRow(
                    datetime.fromtimestamp(row["time"] / 1000, UTC),
                    row["domain"],
                    row["site"],
                    row["asset"],
                    row["sensor"],
                    row["rule"],
                    row["severity"],
                )
            )

    print("\n" + "=" * 78)
    print(f"twinwatch demo summary — {config.city.name}")
    print("=" * 78)
    print(f"\nmessages published: {published:,}")
    print("\nreadings ingested per domain   anomalies (detector hits)")
    for d in DOMAINS:
        n = readings.get((d,), 0) if d != "security" else sum(events.values())
        label = "security events" if d == "security" else d
        print(f"  {label:17} {n:>10,}   {anomalies.get((d,), 0):>8,}")
    print(
        f"  dead letters      {sum(dead.values()):>10,}"
        + (f"   ({', '.join(f'{k[0]} {n}' for k, n in dead.items())})" if dead else "")
    )

    by = Counter((a.domain, a.severity) for a in alerts)
    print("\nalerts fired, by domain and severity")
    print("  " + " " * 12 + "".join(f"{s + ' ' + SEVERITY_KO[s]:>16}" for s in SEVERITIES))
    for d in DOMAINS:
        print(f"  {d:12}" + "".join(f"{by.get((d, s), 0):>16}" for s in SEVERITIES))

    results = match_incidents(labels, alerts)
    detected = sum(r.detected for r in results)
    skipped = len(config.simulation.incidents) - len(labels)
    print(
        f"\nincidents injected vs detected: {detected}/{len(results)}"
        + (f" ({skipped} scheduled after the simulated span, not injected)" if skipped else "")
    )
    for r in results:
        a, delay_s = r.first_alert, r.delay_s
        if a is not None and delay_s is not None:  # detected
            how = f"after {delay_s / 60:6.1f} min by {a.rule} ({a.severity}) on {a.sensor}"
        else:
            how = "NOT DETECTED"
        print(f"  {r.kind:24} {r.targets[0]:34} {how}")
    false = unmatched_alerts(labels, alerts)
    print(
        f"alerts outside any incident (false alarms): {len(false)}"
        + (
            f" — {', '.join(f'{k} {n}' for k, n in Counter(a.rule for a in false).items())}"
            if false
            else ""
        )
    )

    am = svcs["alertmanager"].url
    try:
        with AlertmanagerClient(am, max_retries=0) as client:
            active = client.get_alerts(active=True)
        print(f"\nAlertmanager {am}: {len(active)} active alerts (GET /api/v2/alerts)")
    except AlertmanagerError as e:
        print(f"\nAlertmanager {am}: not reachable ({e})")

    print(
        f"\nwhere the data is: InfluxDB {url}, database '{db}' (InfluxQL), e.g.\n"
        f"  curl -G {url}/query --data-urlencode db={db} --data-urlencode "
        "\"q=SELECT mean(value) FROM reading WHERE domain='water' AND time > now() - 2d "
        'GROUP BY site, sensor, time(1h)"'
    )
    print("measurements: reading, security_event, anomaly_score, anomaly, alert, dead_letter")
    print(
        f"incident labels: {config.simulation.labels_path}; dead letters: "
        f"{config.flow.dead_letter_path}"
    )
    print(
        "\nthe services keep running for you to explore; stop them with:  make stop"
        "   (or: .venv/bin/twinwatch services down)"
    )
