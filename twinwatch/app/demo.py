"""``twinwatch demo``: the whole stack on this machine for a bounded time, then a summary.

1. start InfluxDB, Mosquitto and Alertmanager on loopback, data under ``var/`` (by PID files);
2. start the flow (``twinwatch run --idle-timeout``) as a child process and wait until it is
   subscribed;
3. publish the simulated city (seeded, with labelled incidents) at ``simulation.speed``: the
   ``duration_h`` hours that END NOW (``--end``), so Grafana's default "last 6 hours" and the
   README's ``--start=-6h`` / ``-1d`` show data. Each incident happens at its time of day
   (``at_h`` hours after local midnight, as configured) within that span: a PV inverter fault
   at noon stays at noon. An incident in the span's first hour, while the detectors learn
   their baseline, is left out (and said so). The same seed and end give the same data;
4. wait for the flow to drain and stop, then print what arrived, the anomaly episodes, the alerts,
   incidents injected vs detected with their detection delay, each false alarm by name, and the
   next commands to try.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from urllib.parse import urlparse, urlsplit
from zoneinfo import ZoneInfo

import httpx
import msgspec

from twinwatch.alerting.alertmanager import AlertmanagerClient, AlertmanagerError
from twinwatch.app import services, simulator
from twinwatch.app.evaluate import AlertRow, group_members, match_incidents, unmatched_alerts
from twinwatch.config import Config, ConfigError, load_config
from twinwatch.influx import InfluxV1Writer
from twinwatch.localtime import label, show, span, zone
from twinwatch.schema import DOMAINS, SEVERITIES, SEVERITY_KO

__all__ = ["run_demo", "ports_from_config", "demo_span", "episodes", "parse_end"]

IDLE_TIMEOUT_S = 10.0
WARMUP_H = 1.0  # the detectors' baseline: no incident is placed in the span's first hour
EPISODE_GAP_S = 600.0  # hits of a detector without an alert rule: a quieter spell ends an episode


def parse_end(text: str | None, now: datetime) -> datetime:
    """``--end``: ISO 8601 with an offset, or None or ``now`` for now (to the minute)."""
    if text is None or text == "now":
        return now.replace(second=0, microsecond=0)
    try:
        end = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--end {text!r}: expected ISO 8601, e.g. 2026-11-20T09:00:00+09:00"
        ) from None
    if end.tzinfo is None:
        raise ConfigError(f"--end {text!r} has no UTC offset; add Z or +09:00")
    return end.astimezone(UTC)


def demo_span(config: Config, end: datetime) -> tuple[datetime, Config, int]:
    """The simulated span ``[end - duration_h, end)`` and the config whose incidents happen at
    their time of day within it: ``at_h`` (hours after a local midnight) becomes hours after
    the span's start. Returns (start, config, incidents left out): those that would start in the
    first ``WARMUP_H`` (the detectors' baseline) or end after the span (cut short, an incident
    is not a fair test: a turbidity spike 6 minutes into its hour had not risen yet)."""
    sim = config.simulation
    start = end - timedelta(hours=sim.duration_h)
    local = start.astimezone(ZoneInfo(config.city.timezone))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    offset_h = (start - midnight).total_seconds() / 3600
    incidents, left_out = [], 0
    for inc in sim.incidents:
        at = inc.at_h - offset_h
        at = at + 24 if at < 0 else at  # that time of day, the next day
        if at < WARMUP_H or at + inc.duration_h > sim.duration_h:
            left_out += 1
            continue
        incidents.append(msgspec.structs.replace(inc, at_h=at))
    sim = msgspec.structs.replace(sim, incidents=incidents)
    return start, msgspec.structs.replace(config, simulation=sim), left_out


def episodes(hits: dict[tuple, list[float]], gap_s: dict[str, float]) -> dict[tuple, int]:
    """Anomaly episodes per (domain, site, asset, sensor, detector): runs of hits whose gaps are
    at most ``gap_s[detector]`` (the alert rule's ``clear_s``: one episode is what one alert
    would be), ``EPISODE_GAP_S`` without a rule. ``hits``: times in epoch seconds."""
    out = {}
    for key, times in hits.items():
        gap = gap_s.get(key[-1], EPISODE_GAP_S)
        times = sorted(times)
        out[key] = 1 + sum(b - a > gap for a, b in zip(times, times[1:])) if times else 0
    return out


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


def _progress(tz: tzinfo):
    """One self-overwriting line: messages, simulated time reached (local, zone marked), rate."""

    def progress(stats) -> None:
        reached = show(stats.last_time, tz, seconds=False) if stats.last_time else "-"
        print(
            f"\r  published {stats.messages:>9,}  simulated time {reached}  "
            f"{stats.rate:>7,.0f} msg/s",
            end="",
            flush=True,
        )

    return progress


def run_demo(
    config: Config,
    var: Path,
    *,
    config_path: str | None = None,
    sim_hours: float | None = None,
    speed: float | None = None,
    end: str | None = None,
    utc: bool = False,
) -> int:
    sim = config.simulation
    sim = msgspec.structs.replace(
        sim, duration_h=sim_hours or sim.duration_h, speed=speed or sim.speed
    )
    config = msgspec.structs.replace(config, simulation=sim)
    tz = zone(config, utc)
    end_t = parse_end(end, simulator.utcnow())
    start, _, _ = demo_span(config, end_t)
    var.mkdir(parents=True, exist_ok=True)
    print(
        f"twinwatch demo: {config.city.name}, {len(config.catalog)} sensors, "
        f"{sim.duration_h:g} simulated hours ({span(start, end_t, tz)}) at {sim.speed:g}x "
        f"(~{sim.duration_h * 3600 / sim.speed:.0f} s)\n"
    )

    print(f"starting services (data and logs under {var}/) ...")
    overrides = _claim_ports(config, var)
    os.environ.update(overrides)  # the flow child process and this process see the same ports
    config = msgspec.structs.replace(load_config(config_path), simulation=sim)
    start, config, left_out = demo_span(config, end_t)
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

        labels = simulator.incident_labels(config, start)
        simulator.write_labels(Path(sim.labels_path), labels)
        stats = simulator.publish_mqtt(
            simulator.generate(config, start),
            mqtt=config.services.mqtt,
            speed=sim.speed,
            progress=_progress(tz),
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
    print_summary(
        config,
        svcs,
        labels,
        start,
        stats.messages,
        tz=tz,
        left_out=left_out,
        overrides=overrides,
        config_path=config_path,
    )
    return 0


def _series(influx: InfluxV1Writer, q: str) -> list[dict]:
    return influx.query(q)[0].get("series", [])


def _counts(influx: InfluxV1Writer, q: str) -> dict[tuple, int]:
    """{tag values: count} of a ``SELECT count(..) ... GROUP BY`` query."""
    return {tuple(s.get("tags", {}).values()): s["values"][0][1] for s in _series(influx, q)}


def _next_commands(overrides: dict[str, str], config_path: str | None) -> list[str]:
    """The commands to try next, with the environment the demo's ports need (if it moved any)."""
    env = " ".join(f"{k}={v}" for k, v in overrides.items() if not _default(k, v))
    prefix = (env + " " if env else "") + ".venv/bin/twinwatch "
    cfg = f" -c {config_path}" if config_path else ""
    commands = [
        (f"report{cfg} --start=-1d -o var/report", "the incident report (HTML, figures, MTTA)"),
        (f"alerts{cfg} list", "what is firing now, to ack or silence"),
        (f"query{cfg} alerts --start=-6h", "every alert episode of the last 6 hours"),
    ]
    width = max(len(c) for c, _ in commands)
    return [f"{prefix}{c.ljust(width)}   # {why}" for c, why in commands]


_DEFAULT_PORTS = {"INFLUXDB__URL": "8086", "ALERTMANAGER__URL": "9093", "MQTT__PORT": "1883"}


def _default(key: str, value: str) -> bool:
    """Is this override the example config's own port (no need to repeat it)?"""
    for suffix, port in _DEFAULT_PORTS.items():
        if key.endswith(suffix):
            return value.endswith(":" + port) or value == port
    return True  # metrics: only the flow uses it


def print_summary(
    config: Config,
    svcs: dict,
    labels: list[dict],
    start: datetime,
    published: int,
    *,
    tz: tzinfo = UTC,
    left_out: int = 0,
    overrides: dict[str, str] | None = None,
    config_path: str | None = None,
) -> None:
    url, db = svcs["influxdb"].url, config.services.influxdb.database
    since = f"time >= {int(start.timestamp() * 1000)}ms"
    with InfluxV1Writer(url, db) as influx:
        readings = _counts(
            influx, f"SELECT count(value) FROM reading WHERE {since} GROUP BY domain"
        )
        events = _counts(influx, f"SELECT count(message) FROM security_event WHERE {since}")
        hits: dict[tuple, list[float]] = {}
        for series in _series(
            influx,
            f"SELECT score FROM anomaly WHERE {since} GROUP BY domain, site, asset, sensor, "
            "detector",
        ):
            tags = series["tags"]
            key = tuple(tags[k] for k in ("domain", "site", "asset", "sensor", "detector"))
            hits[key] = [t / 1000 for t, _ in series["values"]]
        dead = _counts(influx, "SELECT count(detail) FROM dead_letter GROUP BY reason")
        rows = _series(influx, f"SELECT * FROM alert WHERE status = 'firing' AND {since}")
    clear = {r.detector: r.clear_s for r in config.alert_rules}
    runs = episodes(hits, clear)
    eps: Counter[str] = Counter()
    nhits: Counter[str] = Counter()
    for run_key, n in runs.items():
        eps[run_key[0]] += n
        nhits[run_key[0]] += len(hits[run_key])
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
                    row.get("kind") or "",
                    row.get("detector") or "",
                )
            )

    print("\n" + "=" * 78)
    print(f"twinwatch demo summary — {config.city.name}")
    print("=" * 78)
    end = start + timedelta(hours=config.simulation.duration_h)
    print(f"\nsimulated {span(start, end, tz)}; messages published: {published:,}")
    print(
        "\nreadings ingested per domain   anomaly episodes (detector hits)\n"
        "  (an episode: one detector's hits on one sensor, until it is quiet for the rule's "
        "clear_s)"
    )
    for d in DOMAINS:
        n = readings.get((d,), 0) if d != "security" else sum(events.values())
        name = "security events" if d == "security" else d
        print(f"  {name:17} {n:>10,}   {eps[d]:>8,} ({nhits[d]:,} hits)")
    print(
        f"  dead letters      {sum(dead.values()):>10,}"
        + (f"   ({', '.join(f'{k[0]} {n}' for k, n in dead.items())})" if dead else "")
    )

    by = Counter((a.domain, a.severity) for a in alerts)
    print("\nalerts fired, by domain and severity")
    print("  " + " " * 12 + "".join(f"{s + ' ' + SEVERITY_KO[s]:>16}" for s in SEVERITIES))
    for d in DOMAINS:
        print(f"  {d:12}" + "".join(f"{by.get((d, s), 0):>16}" for s in SEVERITIES))

    groups = group_members(config)
    results = match_incidents(labels, alerts, groups=groups)
    incidents = [r for r in results if not r.legit]
    detected = sum(r.detected for r in incidents)
    skipped = left_out + len(config.simulation.incidents) - len(labels)
    print(
        f"\nincidents injected vs detected: {detected}/{len(incidents)}"
        + (
            f" ({skipped} not injected: at their time of day they would start in the span's "
            f"first {WARMUP_H:g} h or end after it)"
            if skipped
            else ""
        )
    )
    for r in results:
        a, delay_s = r.first_alert, r.delay_s
        if r.legit:
            how = "quiet (legitimate change)" if a is None else f"FALSE ALARM by {a.rule}"
        elif a is not None and delay_s is not None:  # detected
            how = f"after {delay_s / 60:6.1f} min by {a.rule} ({a.severity}) on {a.sensor}"
            if not r.right_kind:
                how += f" (not a {'/'.join(r.expect)} detector)"
        else:
            how = "NOT DETECTED"
        print(f"  {r.kind:24} {r.targets[0]:34} {how}")
    false = sorted(unmatched_alerts(labels, alerts, groups=groups), key=lambda a: a.at)
    print(f"alerts outside any incident (false alarms): {len(false)}")
    for a in false:
        print(f"  {show(a.at, tz, seconds=False)}  {a.target:34} {a.rule} ({a.severity})")

    am = svcs["alertmanager"].url
    try:
        with AlertmanagerClient(am, max_retries=0) as client:
            active = client.get_alerts(active=True)
        n = len(active)
        print(f"\nAlertmanager {am}: {n} alert{'s' if n != 1 else ''} firing now")
    except AlertmanagerError as e:
        print(f"\nAlertmanager {am}: not reachable ({e})")

    print(
        f"\nthe data: InfluxDB {url}, database '{db}' (InfluxQL; measurements reading, "
        "security_event, anomaly_score, anomaly, alert, alert_state, dead_letter, annotation); "
        f"incident labels {config.simulation.labels_path}; dead letters "
        f"{config.flow.dead_letter_path}"
    )
    print("\nnext, try:")
    for line in _next_commands(overrides or {}, config_path):
        print("  " + line)
    grafana = urlsplit(config.services.alertmanager.generator_url)
    print(
        f"  Grafana, once the compose stack runs (docs/deploy.md): "
        f"{grafana.scheme}://{grafana.netloc}/d/twinwatch-control-room  "
        f"(times in {label(end, ZoneInfo(config.city.timezone))})"
    )
    print(
        "\nthe services keep running for you to explore; stop them with:  make stop"
        "   (or: .venv/bin/twinwatch services down)"
    )
