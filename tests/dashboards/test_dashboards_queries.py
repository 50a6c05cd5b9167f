"""Every dashboard query runs against real services and returns data.

InfluxQL: a simulated run of the example city (16 simulated hours, its incidents included) goes
through the real flow (``build_flow`` + ``run_main``) and the real ``InfluxSink`` into the
InfluxDB 1.6.7 fixture; acknowledgements are written as the alert workflow (#4) writes them.
Then every InfluxQL target of every panel, variable and annotation, with Grafana's macros
expanded, must run without error and return at least one row.

PromQL: the real ``twinwatch run`` process reads simulated MQTT messages (plus bad ones, and an
Alertmanager URL on a closed port so the sink fails for real) while a real Prometheus scrapes
its /metrics and the Alertmanager fixture; every Prometheus target must return a sample.

Grafana itself cannot run here, so the panels' rendering is not exercised; their JSON is
checked structurally in test_dashboards.py.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from bytewax.testing import TestingSource, run_main

from twinwatch.app import services
from twinwatch.app.services import free_port
from twinwatch.app.simulator import generate
from twinwatch.config import load_config
from twinwatch.dashboards import build
from twinwatch.dashboards.verify import expand_influxql, expand_promql, regex_value, targets
from twinwatch.engine.plan import Plan
from twinwatch.flows.dataflow import build_flow
from twinwatch.flows.sinks.influx import InfluxSink
from twinwatch.influx import InfluxV1Writer
from twinwatch.lineprotocol import format_line
from twinwatch.schema import DOMAINS

SIM_HOURS = 16
SECURITY_INCIDENTS = ("ssh_brute_force", "port_scan")


def _config(environ: dict):
    return load_config(environ={"TWINWATCH__SERVICES__ALERTMANAGER__URL": "", **environ})


def dashboards(config) -> dict[str, dict]:
    return build.dashboards(config, Plan(config).thresholds())


@pytest.fixture(scope="module")
def city_run(influxdb, tmp_path_factory):
    """The example city's 16 simulated hours, ending an hour ago, in a fresh database."""
    db = "dash_" + os.urandom(4).hex()
    influxdb.create_database(db)
    tmp = tmp_path_factory.mktemp("dash")
    config = _config(
        {
            "TWINWATCH__SERVICES__INFLUXDB__URL": influxdb.url,
            "TWINWATCH__SERVICES__INFLUXDB__DATABASE": db,
            "TWINWATCH__SERVICES__INFLUXDB__SPOOL_DIR": str(tmp / "spool"),
            "TWINWATCH__FLOW__DEAD_LETTER_PATH": str(tmp / "dead.jsonl"),
        }
    )
    # security alerts come from attacks, not from every new log template (#13): move the example
    # city's attacks (at 20 and 21 h) into the span so the security panels have alerts to show
    sim = config.simulation
    incidents = [
        msgspec.structs.replace(i, at_h=i.at_h - 8.0) if i.kind in SECURITY_INCIDENTS else i
        for i in sim.incidents
    ]
    config = msgspec.structs.replace(
        config, simulation=msgspec.structs.replace(sim, incidents=incidents)
    )
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=SIM_HOURS)
    msgs = [(m.topic, m.payload) for m in generate(config, start, duration_h=SIM_HOURS)]
    batches = [msgs[i : i + 1000] for i in range(0, len(msgs), 1000)]
    run_main(
        build_flow(
            config,
            TestingSource(batches),
            influx_sink=InfluxSink(config.services.influxdb),
            alert_sink=None,
        )
    )
    with InfluxV1Writer(influxdb.url, db) as w:  # acknowledgements, as `alerts ack` writes them
        fired = w.query(
            'SELECT "fingerprint", "summary" FROM "alert" WHERE "status" = \'firing\' '
            "GROUP BY * LIMIT 1"
        )
        first = {}  # one acknowledged alert per domain: every domain shows its acks
        for s in fired[0]["series"]:
            first.setdefault(s["tags"]["domain"], s)
        w.write_chunk(
            [
                format_line(
                    "alert_ack",
                    {k: v for k, v in s["tags"].items() if k != "status"},
                    {"fingerprint": fp, "user": "oncall", "comment": "on it", "summary": text},
                    t + 60_000,
                )
                for s in first.values()
                for t, fp, text in s["values"]
            ]
        )
        assert len(first) == 4
    yield config, db, start, end
    influxdb.drop_database(db)


def _influxql(influxdb, db: str, q: str) -> list:
    r = httpx.get(f"{influxdb.url}/query", params={"db": db, "q": q, "epoch": "ms"}, timeout=30)
    r.raise_for_status()
    (result,) = r.json()["results"]
    assert "error" not in result, f"{q}\n-> {result['error']}"
    return result.get("series", [])


ALL_TARGETS = [t for doc in dashboards(_config({})).values() for t in targets(doc)]


def test_every_panel_has_a_query():
    kinds = {t.kind for t in ALL_TARGETS}
    assert kinds == {"influxdb", "prometheus", "grafana-testdata-datasource"}
    assert sum(t.kind == "influxdb" for t in ALL_TARGETS) > 40


@pytest.mark.services
def test_every_influxql_query_returns_data(city_run, influxdb):
    config, db, start, end = city_run
    docs = dashboards(config)

    def firing_moment(where: str) -> datetime:
        q = f'SELECT "level" FROM "alert_state" WHERE {where} LIMIT 1'
        (series,) = _influxql(influxdb, db, q)
        return datetime.fromtimestamp(series["values"][0][0] / 1000, UTC)

    checked = 0
    for doc in docs.values():
        # "Firing now" panels read the state at the range's end (${__to}): end them when an
        # alert of the domain fires (a severe one on the city-wide boards: the severe count)
        domain = doc["uid"].removeprefix("twinwatch-")
        state_end = firing_moment(
            f'"domain" = \'{domain}\' AND "level" > 0' if domain in DOMAINS else '"level" = 4'
        )
        all_values = {
            v["name"]: v.get("allValue", ".*")
            for v in (doc.get("templating") or {}).get("list", [])
        }
        for t in targets(doc):
            if t.kind != "influxdb":
                continue
            t0 = end - timedelta(days=30) if t.time_from == "30d" else start
            t1 = state_end if "${__to}" in t.query else end
            q = expand_influxql(t.query, t0, t1, "5m", all_values)
            assert _influxql(influxdb, db, q), f"{t.dashboard} / {t.where}: no data for\n{q}"
            checked += 1
    assert checked == sum(t.kind == "influxdb" for t in ALL_TARGETS)


@pytest.mark.services
def test_template_variables_chain_with_a_concrete_selection(city_run, influxdb):
    """Pick the first site, then the first asset of it, then the first sensor: every panel
    that filters by them still runs, and the readings rollup panel has data for the choice."""
    config, db, start, end = city_run
    doc = dashboards(config)["twinwatch-structures"]
    chosen: dict[str, str] = {}
    for v in doc["templating"]["list"]:
        q = expand_influxql(v["query"], start, end, "5m", chosen)
        (series,) = _influxql(influxdb, db, q)
        values = [row[1] for row in series["values"]]
        assert values, v["name"]
        chosen[v["name"]] = regex_value(values[:1])
    for t in targets(doc):
        if t.kind == "influxdb" and "$sensor" in t.query:
            _influxql(influxdb, db, expand_influxql(t.query, start, end, "5m", chosen))
    trend = next(t for t in targets(doc) if t.where.startswith("Trend"))
    assert _influxql(
        influxdb, db, expand_influxql(trend.query, end - timedelta(days=30), end, "1h", chosen)
    )


@pytest.mark.services
def test_rollups_read_by_long_range_panels_match_raw_readings(city_run, influxdb):
    """The hourly rollup equals mean/min/max/count of the raw readings of that hour."""
    _, db, start, _ = city_run
    hour = start + timedelta(hours=2)
    where = (
        f"sensor = 'strain-1' AND time >= {int(hour.timestamp())}s AND "
        f"time < {int(hour.timestamp()) + 3600}s"
    )
    (raw,) = _influxql(
        influxdb,
        db,
        f"SELECT mean(value), min(value), max(value), count(value) FROM reading WHERE {where}",
    )
    (roll,) = _influxql(influxdb, db, f"SELECT mean, min, max, count FROM reading_1h WHERE {where}")
    _, mean, lo, hi, n = raw["values"][0]
    assert roll["values"] == [[int(hour.timestamp() * 1000), pytest.approx(mean), lo, hi, n]]


# --- Prometheus ---------------------------------------------------------------------------


@pytest.mark.services
def test_every_promql_query_returns_data(
    influxdb, mosquitto, alertmanager, influx_db, service_factory, tmp_path
):
    """Two real flows read the same simulated MQTT stream while Prometheus scrapes them: one
    writes to InfluxDB and fails to reach Alertmanager (sink errors), the other finds InfluxDB
    down and fills a tiny spool (retries, spool backlog, points dropped)."""
    metrics_port, down_port = free_port(), free_port()
    prom = service_factory(
        services.Prometheus,
        scrape_targets=[
            f"127.0.0.1:{metrics_port}",
            f"127.0.0.1:{down_port}",
            f"{alertmanager.host}:{alertmanager.port}",
        ],
    )
    env = dict(
        os.environ,
        TWINWATCH__SERVICES__MQTT__PORT=str(mosquitto.port),
        TWINWATCH__SERVICES__MQTT__CLIENT_ID=f"dash-{influx_db}",
        TWINWATCH__SERVICES__INFLUXDB__URL=influxdb.url,
        TWINWATCH__SERVICES__INFLUXDB__DATABASE=influx_db,
        TWINWATCH__SERVICES__INFLUXDB__SPOOL_DIR=str(tmp_path / "spool"),
        TWINWATCH__SERVICES__ALERTMANAGER__STATE_PATH=str(tmp_path / "alert-delivery.sqlite"),
        # a closed port: the Alertmanager sink fails for real (sink errors panel)
        TWINWATCH__SERVICES__ALERTMANAGER__URL=f"http://127.0.0.1:{free_port()}",
        TWINWATCH__SERVICES__ALERTMANAGER__MAX_RETRIES="0",
        TWINWATCH__SERVICES__METRICS__PORT=str(metrics_port),
        TWINWATCH__FLOW__DEAD_LETTER_PATH=str(tmp_path / "dead.jsonl"),
        # an attack inside the 3 simulated hours: the flow raises alerts for the alert panels
        # (since #13 normal logs raise none)
        TWINWATCH__SIMULATION__INCIDENTS=(
            "[{kind: ssh_brute_force, targets: [sejong-soc/gw-1/sshd], at_h: 1.0, duration_h: 0.5}]"
        ),
    )
    down_env = dict(
        env,
        TWINWATCH__SERVICES__MQTT__CLIENT_ID=f"dash-down-{influx_db}",
        TWINWATCH__SERVICES__INFLUXDB__URL=f"http://127.0.0.1:{free_port()}",  # InfluxDB down
        TWINWATCH__SERVICES__INFLUXDB__MAX_RETRIES="1",
        TWINWATCH__SERVICES__INFLUXDB__SPOOL_DIR=str(tmp_path / "spool-down"),
        TWINWATCH__SERVICES__INFLUXDB__SPOOL_MAX_BYTES="4096",  # full at once: drops
        TWINWATCH__SERVICES__ALERTMANAGER__URL="",
        TWINWATCH__SERVICES__METRICS__PORT=str(down_port),
        TWINWATCH__FLOW__DEAD_LETTER_PATH=str(tmp_path / "dead-down.jsonl"),
    )
    config = load_config(environ=env)
    t_start = time.time()
    cmd = [sys.executable, "-m", "twinwatch.app.cli", "run", "--idle-timeout", "6"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    down = subprocess.Popen(cmd, env=down_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for p in (proc, down):
            _wait(lambda: _prom(prom, 'count(twinwatch_source_ready{source="mqtt"} == 1) == 2'), p)
        from twinwatch.app.simulator.publish import publish_mqtt
        from twinwatch.mqtt import connect, make_client

        start = datetime.now(UTC) - timedelta(hours=3)
        msgs = list(generate(config, start, duration_h=3))
        pub = make_client(config.services.mqtt, "dash-bad", clean_session=True)
        connect(pub, config.services.mqtt)
        pub.loop_start()
        pub.publish("city/water/nowhere/x/y", b"{}", qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        publish_mqtt(msgs, mqtt=config.services.mqtt, speed=0, client_id="dash-sim")
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out.decode()[-3000:]
        down.wait(timeout=120)  # its status is not the point: it lost data on purpose
        time.sleep(3)  # the last scrapes
    finally:
        for p in (proc, down):
            if p.poll() is None:
                p.kill()
    t_end = time.time()
    checked = 0
    for doc in dashboards(config).values():
        for t in targets(doc):
            if t.kind != "prometheus":
                continue
            q = expand_promql(t.query, "1s", "4s")
            r = httpx.get(
                f"{prom.url}/api/v1/query_range",
                params={"query": q, "start": t_start, "end": t_end, "step": 1},
            )
            assert r.status_code == 200, f"{q}: {r.text}"
            samples = [
                v
                for s in r.json()["data"]["result"]
                for _, v in s["values"]
                if not math.isnan(float(v))
            ]
            assert samples, f"{t.dashboard} / {t.where}: no data for {q}"
            checked += 1
    assert checked == sum(t.kind == "prometheus" for t in ALL_TARGETS) >= 10


def _prom(prom, q: str) -> bool:
    r = httpx.get(f"{prom.url}/api/v1/query", params={"query": q})
    return r.status_code == 200 and bool(r.json()["data"]["result"])


def _wait(cond, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        if cond():
            return
        time.sleep(0.3)
    raise AssertionError("timed out waiting for the flow to be scraped while subscribed")
