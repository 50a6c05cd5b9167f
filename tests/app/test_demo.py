"""`twinwatch demo` end to end, as the README runs it but unpaced and on free ports:
real InfluxDB 1.6.7, Mosquitto and Alertmanager started by the demo itself under a temp dir.

Checks the issue's acceptance: the summary shows every injected incident class detected with a
delay, names every false alarm, counts anomaly episodes (not hits) and ends with the next
commands, which work; afterwards InfluxQL returns readings for all four domains, anomaly scores
and alerts, and Alertmanager shows firing alerts. The span's placement (the hours that end now,
incidents at their time of day) is checked without services.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from twinwatch.app import services, simulator
from twinwatch.app.demo import WARMUP_H, demo_span, episodes, parse_end
from twinwatch.config import ConfigError, load_config

KST = ZoneInfo("Asia/Seoul")


def _last_local_midnight() -> datetime:
    now = datetime.now(KST)
    return now.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def test_the_span_ends_now_with_incidents_at_their_time_of_day():
    config = load_config(environ={})
    now = datetime(2026, 11, 20, 5, 10, 12, tzinfo=UTC)  # 14:10 KST
    end = parse_end(None, now)
    assert end == now.replace(second=0)  # the default: now, to the minute
    start, shifted, left_out = demo_span(config, end)
    assert end - start == timedelta(hours=24)  # duration_h, ending at the end
    by_kind = {i.kind: i.at_h for i in config.simulation.incidents}
    assert len(shifted.simulation.incidents) + left_out == len(by_kind)
    for inc in shifted.simulation.incidents:
        t = (start + timedelta(hours=inc.at_h)).astimezone(KST)
        assert inc.at_h >= WARMUP_H and inc.at_h + inc.duration_h <= 24
        assert t.hour + t.minute / 60 == pytest.approx(by_kind[inc.kind] % 24)  # its time of day
    # 14:10 KST: the 14:30 sensor_offline would start 20 minutes into the span, and the 13:30
    # turbidity_spike (1 h) would be cut short by the span's end 40 minutes in: both left out
    kinds = {i.kind for i in shifted.simulation.incidents}
    assert left_out == 2 and not {"sensor_offline", "turbidity_spike"} & kinds
    labels = simulator.incident_labels(shifted, start)
    assert all(start <= datetime.fromisoformat(lb["start"]) < end for lb in labels)
    assert all(datetime.fromisoformat(lb["end"]) <= end for lb in labels)
    # the same seed and end give the same day
    again = demo_span(config, parse_end("2026-11-20T14:10:00+09:00", now))
    assert again == (start, shifted, left_out)
    with pytest.raises(ConfigError, match="no UTC offset"):
        parse_end("2026-11-20T14:10:00", now)


def test_anomaly_episodes_not_hits():
    key = ("security", "sejong-soc", "gw-1", "firewall", "firewall_denies")
    scan = [1000.0 + i for i in range(900)]  # a port scan: 900 hits in 15 minutes
    later = [5000.0, 5100.0]
    assert episodes({key: scan + later}, {"firewall_denies": 300}) == {key: 2}
    assert episodes({key: scan + later}, {}) == {key: 2}  # no rule: a 10-minute quiet spell
    assert episodes({key: [0.0, 400.0]}, {"firewall_denies": 300}) == {key: 2}


@pytest.mark.services
def test_demo_detects_every_incident_class(tmp_path, require_services):
    require_services("influxdb", "mosquitto", "alertmanager")
    ports = {name: services.free_port() for name in ("influx", "mqtt", "am", "metrics")}
    env = dict(
        os.environ,
        TWINWATCH__SERVICES__INFLUXDB__URL=f"http://127.0.0.1:{ports['influx']}",
        TWINWATCH__SERVICES__MQTT__PORT=str(ports["mqtt"]),
        TWINWATCH__SERVICES__MQTT__CLIENT_ID="demo-test-flow",
        TWINWATCH__SERVICES__ALERTMANAGER__URL=f"http://127.0.0.1:{ports['am']}",
        TWINWATCH__SERVICES__METRICS__PORT=str(ports["metrics"]),
        TWINWATCH__FLOW__DEAD_LETTER_PATH=str(tmp_path / "dead.jsonl"),
        TWINWATCH__SERVICES__INFLUXDB__SPOOL_DIR=str(tmp_path / "spool"),
        TWINWATCH__SERVICES__ALERTMANAGER__STATE_PATH=str(tmp_path / "alert-delivery.sqlite"),
        TWINWATCH__SIMULATION__LABELS_PATH=str(tmp_path / "incidents.jsonl"),
    )
    var = tmp_path / "var"
    end = _last_local_midnight()  # a whole local day: every incident in, none cut short
    try:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "twinwatch.app.cli",
                "demo",
                "--var",
                str(var),
                "--speed",
                "1e9",
                "--end",
                end.isoformat(),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        out = run.stdout
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        config = load_config(environ=env)
        kinds = {i.kind for i in config.simulation.incidents}
        detected = set(re.findall(r"^  (\w+) +\S+ +after +[\d.]+ min by ", out, re.M))
        assert detected == kinds, out[-4000:]
        n = len(config.simulation.incidents)
        assert f"incidents injected vs detected: {n}/{n}" in out
        start = end - timedelta(hours=config.simulation.duration_h)
        assert f"simulated {start.astimezone(KST):%Y-%m-%d %H:%M} – " in out

        # every false alarm by name: local time, sensor, detector (severity)
        false = int(re.search(r"false alarms\): (\d+)", out)[1])
        named = re.findall(
            r"^  \d{4}-\d\d-\d\d \d\d:\d\d KST  (\S+/\S+/\S+) +(\w+) \((\w+)\)$", out, re.M
        )
        assert len(named) == false

        # anomaly episodes, not hits: the port scan and the brute force are a few episodes
        sec = re.search(r"^  security events +[\d,]+ +([\d,]+) \(([\d,]+) hits\)", out, re.M)
        episodes_n, hits = (int(g.replace(",", "")) for g in sec.groups())
        assert 0 < episodes_n < 50 < hits

        # the next three commands, and they work as printed
        nxt = out.split("next, try:\n")[1].splitlines()
        commands = [line.split("#")[0].strip() for line in nxt[:3]]
        assert {c.split("twinwatch ")[1].split()[0] for c in commands} == {
            "report",
            "alerts",
            "query",
        }
        assert "/d/twinwatch-control-room" in nxt[3]
        twinwatch = os.path.join(os.path.dirname(sys.executable), "twinwatch")
        user_env = {k: v for k, v in os.environ.items() if not k.startswith("TWINWATCH__")}
        for command in commands:  # as a user pastes them: the demo's ports come with them
            done = subprocess.run(
                command.replace(".venv/bin/twinwatch", shlex.quote(twinwatch)),
                shell=True,
                env=user_env,
                capture_output=True,
                text=True,
                timeout=300,
                cwd=tmp_path,
            )
            assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
        assert (tmp_path / "var" / "report" / "report.html").exists()

        url, db = config.services.influxdb.url, config.services.influxdb.database

        def count(q):
            r = httpx.get(f"{url}/query", params={"db": db, "q": q}).json()
            return {
                tuple(s.get("tags", {}).values()): s["values"][0][1]
                for s in r["results"][0].get("series", [])
            }

        readings = count("SELECT count(value) FROM reading GROUP BY domain")
        events = count("SELECT count(message) FROM security_event GROUP BY domain")
        assert set(readings) | set(events) == {
            ("structures",),
            ("water",),
            ("energy",),
            ("security",),
        }
        groups = "|".join(sorted({g.id for g in config.asset_groups}))
        scores = count(
            f"SELECT count(hits) FROM anomaly_score WHERE sensor !~ /^({groups})$/ GROUP BY domain"
        )
        assert scores == {**readings, **events}  # one score point per reading and event
        ticks = count(f"SELECT count(hits) FROM anomaly_score WHERE sensor =~ /^({groups})$/")
        assert ticks[()] > 0  # and the asset groups' points, one per group tick (issue #12)
        published = int(re.search(r"messages published: ([\d,]+)", out)[1].replace(",", ""))
        assert sum(readings.values()) + sum(events.values()) == published  # nothing lost
        assert count("SELECT count(value) FROM alert WHERE status='firing'")[()] >= n
        active = httpx.get(f"{config.services.alertmanager.url}/api/v2/alerts").json()
        assert any(a["status"]["state"] == "active" for a in active)
    finally:
        services.down(var)
