"""The control room shows the truth: what the panels say is firing is what Alertmanager holds.

A simulated day of the example city (its eleven incidents, ending now) goes over real Mosquitto
into a real `twinwatch run`, which writes to a real InfluxDB 1.6.7 and posts to a fresh real
Alertmanager. The day is published in parts; after each part (a moment of the day) the flow has
taken everything, and the panels' own queries (from the generated dashboards, Grafana's macros
expanded as Grafana does) are run against InfluxDB and compared with Alertmanager's active
alerts:

* "Firing now" (Alerts dashboard): the same alerts (fingerprint) at the same severity;
* the control-room counts per domain and of severe alerts;
* the map: the highest severity firing per site;

each for three dashboard ranges (last 5 minutes, 6 hours, 30 days: the state does not depend on
the range), and for a range that ENDS at an earlier moment (the state then, not now). At the
first moment an alert is acknowledged (the ``alert_ack`` point `twinwatch alerts ack` writes) and
must appear in the Acknowledgements panel. The test prints what it compared at each moment (run
with ``-s`` to see it).
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest
from flowproc import flow_env, metrics_text, wait_subscribed

from twinwatch.app import services, simulator
from twinwatch.config import load_config
from twinwatch.dashboards.build import dashboards
from twinwatch.dashboards.verify import expand_influxql, targets
from twinwatch.engine.plan import Plan
from twinwatch.influx import InfluxV1Writer
from twinwatch.lineprotocol import format_line
from twinwatch.schema import SEVERITIES

MOMENTS_H = (10.0, 16.75, 21.1)  # chlorine + stuck sensor; pipe burst; bearing + port scan
LEVEL = {s: i for i, s in enumerate(SEVERITIES, 1)}
RANGES = {"5m": timedelta(minutes=5), "6h": timedelta(hours=6), "30d": timedelta(days=30)}


def _panel(docs: dict, uid: str, title: str) -> str:
    (t,) = [t for t in targets(docs[uid]) if t.where == title and t.kind == "influxdb"]
    return t.query


class Panels:
    """The panel queries of the generated dashboards, run on InfluxDB for a range."""

    def __init__(self, docs: dict, influx: InfluxV1Writer):
        self.influx = influx
        self.firing = _panel(docs, "twinwatch-alerts", "Firing now")
        self.per_domain = _panel(docs, "twinwatch-control-room", "Alerts firing now, per domain")
        self.severe = _panel(docs, "twinwatch-control-room", "Severe (심각) alerts firing now")
        self.map = _panel(
            docs, "twinwatch-control-room", "City map — sites by the severity firing now"
        )
        self.acks = _panel(docs, "twinwatch-alerts", "Acknowledgements")

    def _run(self, q: str, start: datetime, end: datetime) -> list[dict]:
        variables = {"domain": ".*", "severity": ".*"}
        (result,) = self.influx.query(expand_influxql(q, start, end, "1m", variables))
        assert "error" not in result, result
        return [
            dict(zip(s["columns"], row), **s.get("tags", {}))
            for s in result.get("series", [])
            for row in s["values"]
        ]

    def state(self, start: datetime, end: datetime) -> dict:
        rows = self._run(self.firing, start, end)
        return {
            "firing": {(r["fingerprint"], r["severity"]) for r in rows},
            "per_domain": {
                r["domain"]: r["sum"] for r in self._run(self.per_domain, start, end) if r["sum"]
            },
            "severe": sum(r["count"] for r in self._run(self.severe, start, end)),
            "map": {r["site"]: r["level"] for r in self._run(self.map, start, end) if r["level"]},
            "rows": rows,
        }

    def acknowledged(self, start: datetime, end: datetime) -> set[tuple[str, str]]:
        return {(r["fingerprint"], r["user"]) for r in self._run(self.acks, start, end)}


def _expected(active: list[dict]) -> dict:
    """What the panels must show, derived from Alertmanager's active alerts alone."""
    firing = {(a["annotations"]["fingerprint"], a["labels"]["severity"]) for a in active}
    per_domain: dict[str, int] = {}
    by_site: dict[str, int] = {}
    for a in active:
        lab = a["labels"]
        per_domain[lab["domain"]] = per_domain.get(lab["domain"], 0) + 1
        by_site[lab["site"]] = max(by_site.get(lab["site"], 0), LEVEL[lab["severity"]])
    severe = sum(a["labels"]["severity"] == "severe" for a in active)
    return {"firing": firing, "per_domain": per_domain, "severe": severe, "map": by_site}


def _comparable(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "rows"}


def _active(am_url: str) -> list[dict]:
    return httpx.get(f"{am_url}/api/v2/alerts", params={"active": "true"}, timeout=5).json()


def _taken(metrics_url: str) -> float:
    for line in metrics_text(metrics_url).splitlines():
        if line.startswith('twinwatch_records_in_total{source="mqtt"}'):
            return float(line.split()[-1])
    return 0.0


def _written(influx: InfluxV1Writer) -> int:
    n = 0
    for m, field in (("reading", "value"), ("security_event", "message")):
        (res,) = influx.query(f'SELECT count("{field}") FROM "{m}"')
        n += sum(s["values"][0][1] for s in res.get("series", []))
    return n


def _print_moment(label: str, at: datetime, tz, active: list[dict], state: dict) -> None:
    print(f"\n=== {label}: simulated {at.astimezone(tz):%Y-%m-%d %H:%M %Z} ===")
    print(f"Alertmanager active alerts: {len(active)}")
    for a in sorted(active, key=lambda a: (-LEVEL[a["labels"]["severity"]], a["startsAt"])):
        lab = a["labels"]
        print(
            f"  {a['annotations']['fingerprint'][:12]}  {lab['severity']:9} "
            f"{lab['site']}/{lab['asset']}/{lab['sensor']}  {lab['rule']}"
        )
    print(f"panel 'Firing now' (alert_state): {len(state['rows'])} rows")
    for r in sorted(state["rows"], key=lambda r: (-r["level"], r["time"])):
        print(
            f"  {r['fingerprint'][:12]}  {r['severity']:9} "
            f"{r['site']}/{r['asset']}/{r['sensor']}  {r['rule']}"
        )
    print(f"panel 'Alerts firing now, per domain': {state['per_domain']}")
    print(f"panel 'Severe alerts firing now': {state['severe']}")
    names = {v: k for k, v in LEVEL.items()}
    print(f"map (highest severity per site): { {s: names[v] for s, v in state['map'].items()} }")


@pytest.mark.services
def test_panels_agree_with_alertmanager_through_a_simulated_day(
    influxdb, mosquitto, influx_db, service_factory, tmp_path
):
    am = service_factory(services.Alertmanager)  # fresh: no other test's alerts
    env, port = flow_env(
        tmp_path,
        mosquitto,
        influxdb,
        influx_db,
        alertmanager_url=am.url,
        MQTT__CLIENT_ID=f"state-{influx_db}",
    )
    config = load_config(environ=env)
    docs = dashboards(config, Plan(config).thresholds())
    tz = ZoneInfo(config.city.timezone)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(hours=24)  # the simulated day ends now, as the demo's does
    sim = msgspec.structs.replace(config.simulation, duration_h=24.0)
    config = msgspec.structs.replace(config, simulation=sim)
    messages = list(simulator.generate(config, start))
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    flow = subprocess.Popen(
        [sys.executable, "-m", "twinwatch.app.cli", "run"],
        env=env,
        stdout=(tmp_path / "flow.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    published, i = 0, 0
    seen: list[tuple[datetime, dict]] = []
    try:
        wait_subscribed(metrics_url, flow, output=lambda: (tmp_path / "flow.log").read_text())
        with InfluxV1Writer(influxdb.url, influx_db) as influx:
            panels = Panels(docs, influx)
            for k, hours in enumerate(MOMENTS_H, 1):
                moment = start + timedelta(hours=hours)
                j = next((n for n in range(i, len(messages)) if messages[n].time >= moment), None)
                part = messages[i:j]
                i = len(messages) if j is None else j
                published += simulator.publish_mqtt(
                    part, mqtt=config.services.mqtt, speed=0, client_id=f"state-sim-{influx_db}"
                ).messages
                deadline = time.monotonic() + 120
                while _taken(metrics_url) < published or _written(influx) < published:
                    assert flow.poll() is None, (tmp_path / "flow.log").read_text()[-3000:]
                    assert time.monotonic() < deadline, "the flow did not take the day's part"
                    time.sleep(0.5)
                # Alertmanager receives from the flow's sink asynchronously: poll until both
                # sides agree (or fail with both shown)
                deadline = time.monotonic() + 60
                while True:
                    active = _active(am.url)
                    got = panels.state(now - RANGES["6h"], now)
                    if _comparable(got) == _expected(active) or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                _print_moment(f"moment {k}", moment, tz, active, got)
                assert active, "every chosen moment has an incident firing"
                assert _comparable(got) == _expected(active)
                for name, span in RANGES.items():  # any range ending now: the same state
                    assert _comparable(panels.state(now - span, now)) == _expected(active), name
                seen.append((moment, _expected(active)))
                if k == 1:  # the on-call engineer acknowledges the most severe alert
                    a = max(active, key=lambda a: LEVEL[a["labels"]["severity"]])
                    fp = a["annotations"]["fingerprint"]
                    lab = {k: a["labels"][k] for k in ("domain", "site", "asset", "sensor")}
                    lab |= {"rule": a["labels"]["rule"], "severity": a["labels"]["severity"]}
                    line = format_line(
                        "alert_ack",
                        lab,
                        {
                            "fingerprint": fp,
                            "user": "oncall",
                            "comment": "crew sent",
                            "summary": a["annotations"]["summary"],
                        },
                        round(time.time() * 1000),
                    )
                    influx.write_chunk([line])
                    wall = datetime.now(UTC) + timedelta(seconds=1)
                    assert (fp, "oncall") in panels.acknowledged(wall - RANGES["5m"], wall)
            # a range that ends at an earlier moment shows the state of that moment
            for moment, expected in seen[:-1]:
                got = panels.state(moment - RANGES["6h"], moment)
                assert _comparable(got) == expected, moment
    finally:
        flow.terminate()
        try:
            flow.wait(timeout=30)
        except subprocess.TimeoutExpired:
            flow.kill()
    assert len({frozenset(e["firing"]) for _, e in seen}) == len(MOMENTS_H)  # the day moved on
