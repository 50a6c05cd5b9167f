"""A short simulated run through the real flow into a real InfluxDB, shared by the analysis tests.

Six simulated hours of the example city, with seven of its incidents moved into that span, go
through ``twinwatch.flows.dataflow.build_flow`` (Bytewax's ``run_main``) with the real
``InfluxSink`` pointed at the session InfluxDB 1.6.7. A tee records every record the flow handed
to the sink (what was written), and a few garbage messages make dead letters. Then an on-call
engineer acknowledges two of the fired alerts: ``alert_ack`` points, as ``twinwatch alerts ack``
(issue #4) writes them.

The run is made once per test session (the ``analysis_run`` fixture in tests/conftest.py): every
analysis test file reads the same database, none writes to it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from bytewax.testing import TestingSource, run_main

from twinwatch.app import simulator
from twinwatch.config import Incident, load_config
from twinwatch.flows.dataflow import build_flow
from twinwatch.flows.sinks.influx import InfluxSink, _flatten
from twinwatch.influx import InfluxV1Writer
from twinwatch.lineprotocol import encode
from twinwatch.schema import AlertAck

START = datetime(2026, 11, 19, 15, 0, tzinfo=UTC)  # local midnight in Seoul
HOURS = 6.0
INCIDENTS = [
    Incident("chlorine_dosing_failure", ["sejong-wtp/clearwell/chlorine"], 1.0, 2.0),
    Incident("turbidity_spike", ["sejong-wtp/filter-outlet/turbidity"], 1.5, 1.0),
    Incident("sensor_offline", ["busan-ev-hub/charger-1/power"], 2.0, 1.0),
    Incident("pipe_burst", ["sejong-dma-1/inlet/pressure", "sejong-dma-1/inlet/flow"], 3.0, 1.5),
    Incident(
        "bearing_overheating",
        ["busan-wind/turbine-1/bearing-temp", "busan-wind/turbine-1/vibration"],
        3.0,
        2.5,
    ),
    Incident("ssh_brute_force", ["sejong-soc/gw-1/sshd"], 4.0, 0.5),
    Incident("port_scan", ["sejong-soc/gw-1/firewall"], 4.5, 0.25),
]
GARBAGE = [
    ("city/water/sejong-wtp/filter-outlet/turbidity", b"not json"),
    ("city/water/nowhere/x/y", b'{"time":"2026-11-19T16:00:00Z","value":1}'),
    ("city/water/sejong-wtp/filter-outlet/turbidity", b'{"time":"x","value":1}'),
]


@dataclass
class SimRun:
    config: object  # twinwatch Config pointed at the run's database
    start: datetime
    end: datetime
    labels: list[dict]
    written: list = field(default_factory=list)  # every record the flow gave the sink
    acks: list[tuple[str, datetime]] = field(default_factory=list)
    messages: int = 0
    dead_letter_path: Path | None = None


class _Tee(InfluxSink):
    """The real InfluxSink, also remembering what it was given."""

    def __init__(self, cfg, seen: list):
        super().__init__(cfg)
        self.seen = seen

    def build(self, step_id, worker_index, worker_count):
        part = super().build(step_id, worker_index, worker_count)
        write, seen = part.write_batch, self.seen

        def write_batch(items):
            seen.extend(_flatten(items))
            write(items)

        part.write_batch = write_batch
        return part


def sim_run(influxdb, tmp_dir: Path) -> SimRun:
    """Run once per session by the ``analysis_run`` fixture (tests/conftest.py)."""
    db = f"analysis_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(db)
    env = {
        "TWINWATCH__SERVICES__INFLUXDB__URL": influxdb.url,
        "TWINWATCH__SERVICES__INFLUXDB__DATABASE": db,
        "TWINWATCH__SERVICES__ALERTMANAGER__URL": "",
        "TWINWATCH__FLOW__DEAD_LETTER_PATH": str(tmp_dir / "dead.jsonl"),
    }
    config = load_config(environ=env)
    sim = msgspec.structs.replace(config.simulation, duration_h=HOURS, incidents=INCIDENTS)
    config = msgspec.structs.replace(config, simulation=sim)
    labels = simulator.incident_labels(config, START)
    msgs = [(m.topic, m.payload) for m in simulator.generate(config, START)]
    msgs[5000:5000] = GARBAGE
    bs = config.flow.batch_size
    batches = [msgs[i : i + bs] for i in range(0, len(msgs), bs)]
    run = SimRun(
        config,
        START,
        START + timedelta(hours=HOURS),
        labels,
        messages=len(msgs),
        dead_letter_path=tmp_dir / "dead.jsonl",
    )
    run_main(
        build_flow(
            config, TestingSource(batches), influx_sink=_Tee(config.services.influxdb, run.written)
        )
    )
    # Issue #4's acknowledgements: the on-call engineer acks the first two firing alerts.
    firing = [a for a in run.written if type(a).__name__ == "Alert" and a.status == "firing"]
    for a, delay in zip(firing[:2], (timedelta(minutes=4), timedelta(minutes=11))):
        run.acks.append((a.fingerprint, a.at + delay))
    # The point as ``twinwatch alerts ack`` writes it: the one AlertAck record and its encoder.
    lines = [
        line
        for a, (_, t) in zip(firing, run.acks)
        for line in encode(
            AlertAck(
                time=t,
                fingerprint=a.fingerprint,
                domain=a.domain,
                site=a.site,
                asset=a.asset,
                sensor=a.sensor,
                rule=a.rule,
                severity=a.severity,
                user="oncall",
                comment="looking",
                summary=a.summary,
            )
        )
    ]
    with InfluxV1Writer(influxdb.url, db) as w:
        w.write_chunk(lines)
    return run
