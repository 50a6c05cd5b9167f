"""InfluxDB writers and the Bytewax InfluxSink.

Servers: the v1 API is tested on the real InfluxDB 1.6.7 (the Debian package; v1 API only, the
oldest and strictest server we support); the v2 write path on the real VictoriaMetrics, which
implements InfluxDB's ``/api/v2/write`` (no InfluxDB 2.x package is installed) and is read back
through its ``/api/v1/export`` API. Only failures a real server will not produce on demand (503,
429 with Retry-After, read timeouts) use an ``httpx.MockTransport`` stub, and those tests say so.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from httpstub import Sleeps, stub  # noqa: E402  (tests/httpstub.py)
from prometheus_client import REGISTRY

from twinwatch import lineprotocol as lp
from twinwatch.app import services
from twinwatch.config import ConfigError, InfluxService, Secret, Tls
from twinwatch.flows.sinks.influx import InfluxSink
from twinwatch.influx import (
    InfluxRejected,
    InfluxUnavailable,
    InfluxV1Writer,
    InfluxV2Writer,
    make_writer,
)
from twinwatch.schema import Alert, Annotation, AnomalyScore, DeadLetter, Reading, SecurityEvent

T0 = datetime(2026, 11, 23, 1, 0, 0, tzinfo=UTC)
MS0 = round(T0.timestamp() * 1000)
PASSWORD = "pa55-w0rd-never-logged"
TOKEN = "tok-3n-never-logged"


def readings(n: int, **kw) -> list[Reading]:
    base = dict(
        domain="water", site="s1", asset="pump-1", sensor="p1", quantity="pressure", unit="bar"
    )
    return [
        Reading(time=T0 + timedelta(seconds=i), value=float(i), **{**base, **kw}) for i in range(n)
    ]


def mixed_records() -> list:
    score = AnomalyScore(
        time=T0,
        domain="water",
        site="s1",
        asset="pump-1",
        sensor="p1",
        value=9.0,
        scores={"robust_z": 6.5, "cusum": 1.0},
        hits=("robust_z",),
    )
    alert = Alert(
        fingerprint="00ff00ff00ff00ff",
        status="firing",
        severity="caution",
        domain="water",
        site="s1",
        asset="pump-1",
        sensor="p1",
        rule="robust_z",
        starts_at=T0,
        at=T0,
        value=9.0,
        unit="bar",
        summary="robust_z on p1",
    )
    event = SecurityEvent(
        time=T0,
        site="hall",
        asset="gw",
        sensor="sshd",
        kind="auth_failure",
        outcome="failure",
        user="root",
        src_ip="10.1.2.3",
        dst_port=22,
        message="Failed password",
    )
    dead = DeadLetter(
        time=T0, source="mqtt", topic="city/x", reason="bad_json", detail="bad", payload="{"
    )
    return [score, alert, event, dead]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def rows(results: list[dict]) -> list[dict]:
    return [
        dict(zip(s["columns"], v))
        for r in results
        for s in r.get("series", [])
        for v in s["values"]
    ]


def closed_port_url() -> str:
    return f"http://127.0.0.1:{services.free_port()}"


# --- v1 on the real InfluxDB 1.6.7 ----------------------------------------------------------


@pytest.mark.services
@pytest.mark.parametrize("gzip", [False, True])
def test_v1_write_in_chunks_and_query(influxdb, influx_db, gzip):
    """Real InfluxDB 1.6.7: chunked writes (plain and gzip) land with ms timestamps."""
    with InfluxV1Writer(influxdb.url, influx_db, batch_size=4, gzip=gzip) as w:
        assert w.write(lp.encode_many(readings(10))) == 10
        got = rows(w.query('SELECT "value" FROM reading'))
    assert [(r["time"], r["value"]) for r in got] == [(MS0 + 1000 * i, float(i)) for i in range(10)]


@pytest.mark.services
def test_v1_query_create_database_and_statement_errors(influxdb):
    """Real InfluxDB 1.6.7: create_database via POST /query; InfluxQL errors are rejections."""
    with InfluxV1Writer(influxdb.url, "made_by_writer") as w:
        w.create_database()
        names = {r["name"] for r in rows(w.query("SHOW DATABASES", database=""))}
        assert "made_by_writer" in names
        with pytest.raises(InfluxRejected, match="error parsing query"):
            w.query("SELEKT nonsense")
        w.query('DROP DATABASE "made_by_writer"')


@pytest.mark.services
def test_v1_missing_database_is_rejected_without_retry(influxdb):
    """Real InfluxDB 1.6.7 answers 404 "database not found": not retryable."""
    sleeps = Sleeps()
    with (
        InfluxV1Writer(influxdb.url, "no_such_db", sleep=sleeps) as w,
        pytest.raises(InfluxRejected) as ei,
    ):
        w.write(lp.encode_many(readings(1)))
    assert ei.value.status == 404
    assert 'database not found: "no_such_db"' in str(ei.value)
    assert sleeps == []


@pytest.mark.services
def test_v1_malformed_line_is_rejected(influxdb, influx_db):
    """Real InfluxDB 1.6.7 answers 400 with the parser's message."""
    with InfluxV1Writer(influxdb.url, influx_db) as w, pytest.raises(InfluxRejected) as ei:
        w.write_chunk(["reading value=oops"])
    assert ei.value.status == 400
    assert "unable to parse" in ei.value.text


@pytest.mark.services
def test_sink_writes_mixed_batches_and_counts(influxdb, influx_db):
    """Real InfluxDB 1.6.7: items are records or lists of records, any schema type."""
    cfg = InfluxService(url=influxdb.url, database=influx_db, batch_size=3)
    part = InfluxSink(cfg).build("influxdb", 0, 1)
    before = {
        m: metric("twinwatch_records_out_total", sink="influxdb", measurement=m)
        for m in lp.MEASUREMENTS
    }
    rs = readings(5)
    note = Annotation(T0, "water", "s1", "pump-1", "p1", "maintenance", T0, "seal replaced")
    part.write_batch([rs[:2], rs[2], mixed_records(), note, rs[3:]])
    part.close()
    with InfluxV1Writer(influxdb.url, influx_db) as w:
        counts = {m: len(rows(w.query(f'SELECT * FROM "{m}"'))) for m in lp.MEASUREMENTS}
    expected = {
        "reading": 5,
        "anomaly_score": 1,
        "anomaly": 1,
        "alert": 1,
        "alert_state": 1,  # every alert record also writes its state
        "security_event": 1,
        "security_finding": 0,  # a measurement of its own since #13, not in this batch
        "dead_letter": 1,
        "annotation": 1,
    }
    assert counts == expected
    assert (part.written, part.dropped) == (12, 0)
    for m, n in expected.items():
        after = metric("twinwatch_records_out_total", sink="influxdb", measurement=m)
        assert after - before[m] == n, m


@pytest.mark.services
def test_sink_in_a_bytewax_flow(influxdb, influx_db):
    """Real InfluxDB 1.6.7 behind a real Bytewax run (TestingSource -> op.output)."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSource, run_main

    rs = readings(6)
    flow = Dataflow("influx_sink_test")
    batches = op.input("in", flow, TestingSource([rs[:3], rs[3:], mixed_records()]))
    op.output("influxdb", batches, InfluxSink(InfluxService(url=influxdb.url, database=influx_db)))
    run_main(flow)
    with InfluxV1Writer(influxdb.url, influx_db) as w:
        assert len(rows(w.query("SELECT * FROM reading"))) == 6
        assert len(rows(w.query("SELECT * FROM alert"))) == 1


@pytest.mark.services
def test_missing_database_is_spooled_loudly_and_backfilled_once_created(influxdb, tmp_path, caplog):
    """Real InfluxDB 1.6.7, database missing (404): nothing is dropped or acknowledged as
    written. The points go to the spool with one loud line naming the setting, the refusal is
    counted; once the database exists the next backfill stores every point. (Behaviour changed
    on purpose, issue #15: the batch used to be acknowledged and dropped.)"""
    db = "created_later"
    cfg = InfluxService(
        url=influxdb.url, database=db, batch_size=2, spool_dir=str(tmp_path / "spool")
    )
    now = [0.0]
    sink = InfluxSink(cfg)
    part = sink.build("influxdb", 0, 1)
    part._clock = lambda: now[0]
    refused = metric("twinwatch_sink_refused_total", sink="influxdb", status="404")
    acked = []
    from twinwatch.flows.acks import Acked

    with caplog.at_level(logging.WARNING, logger="twinwatch.flows.sinks.influx"):
        part.write_batch([Acked(readings(5), lambda: acked.append(1))])
    assert acked == [1]  # durable: fsynced to the spool
    assert part.written == 0 and part.dropped == 0 and part.spool.points() == {"reading": 5}
    assert metric("twinwatch_sink_refused_total", sink="influxdb", status="404") > refused
    loud = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(loud) == 1 and "database not found" in loud[0].getMessage()
    assert "services.influxdb.create_database" in loud[0].getMessage()
    try:
        influxdb.create_database(db)
        now[0] += cfg.spool_retry_s + 1
        part.write_batch([readings(7)[5:]])
        part.close()
        with InfluxV1Writer(influxdb.url, db) as w:
            values = [r["value"] for r in rows(w.query("SELECT value FROM reading"))]
        assert values == [float(i) for i in range(7)]  # in order, none lost
        assert "accepts writes again" in caplog.text
    finally:
        influxdb.drop_database(db)


@pytest.mark.services
def test_a_point_influxdb_refuses_is_dead_lettered_and_the_rest_written(
    influxdb, influx_db, tmp_path
):
    """Real InfluxDB 1.6.7: a field type conflict refuses one point of a chunk (HTTP 400
    partial write). The sink isolates it by halving the chunk: that point becomes a
    write_rejected dead letter (file and dead_letter measurement), the other points are stored
    and the batch is acknowledged."""
    old = T0 - timedelta(days=30)  # another shard group, where `value` was first a string
    with InfluxV1Writer(influxdb.url, influx_db) as w:
        w.write_chunk([f'reading,domain=water value="text" {round(old.timestamp() * 1000)}'])
    records = readings(7)
    records.insert(3, records[0].__class__(**{**_fields(records[0]), "time": old}))
    dead_path = tmp_path / "dead.jsonl"
    cfg = InfluxService(url=influxdb.url, database=influx_db, spool_dir=str(tmp_path / "spool"))
    part = InfluxSink(cfg, dead_letter_path=dead_path).build("influxdb", 0, 1)
    acked = []
    from twinwatch.flows.acks import Acked

    part.write_batch([Acked(records, lambda: acked.append(1))])
    part.close()
    assert acked == [1] and part.rejected == 1
    with InfluxV1Writer(influxdb.url, influx_db) as w:
        stored = rows(w.query("SELECT value FROM reading WHERE sensor = 'p1'"))
        dead_rows = rows(w.query("SELECT * FROM dead_letter"))
    assert sorted(r["value"] for r in stored) == [float(i) for i in range(7)]
    dead = [json.loads(line) for line in dead_path.read_text().splitlines()]
    assert [d["reason"] for d in dead] == ["write_rejected"]
    assert "field type conflict" in dead[0]["detail"]
    assert "value=0.0" in dead[0]["payload"]  # the refused line itself
    assert [r["reason"] for r in dead_rows] == ["write_rejected"]


def _fields(r) -> dict:
    return msgspec.structs.asdict(r)


# --- retries (stubbed failures) -------------------------------------------------------------


def test_retry_on_503_and_429_honours_retry_after():
    """Stub (httpx.MockTransport): a real InfluxDB does not answer 503/429 on demand."""
    client, seen = stub(
        [
            httpx.Response(503, json={"error": "engine overloaded"}),
            httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "slow down"}),
            httpx.Response(204),
        ]
    )
    sleeps, hooks = Sleeps(), []
    w = InfluxV1Writer(
        "http://influx.invalid:8086",
        "db",
        client=client,
        sleep=sleeps,
        on_retry=lambda n, d, e: hooks.append((n, e.status)),
        backoff_s=0.5,
    )
    w.write_chunk(["m v=1 1"])
    assert len(seen) == 3
    assert 0.25 <= sleeps[0] < 0.5  # 0.5 s backoff with jitter in [0.5, 1)
    assert sleeps[1] == 2.0  # Retry-After replaces the backoff
    assert hooks == [(1, 503), (2, 429)]
    req = seen[-1]
    assert req.url.params["db"] == "db" and req.url.params["precision"] == "ms"
    assert req.content == b"m v=1 1\n"


def test_retries_exhausted_raise_unavailable():
    """Stub (httpx.MockTransport): forces an endless 502 and a read timeout."""
    client, seen = stub(
        [
            httpx.Response(502, text="bad gateway"),
            httpx.ReadTimeout("slow"),
            httpx.Response(500, text="x"),
        ]
    )
    sleeps = Sleeps()
    w = InfluxV1Writer(
        "http://influx.invalid:8086",
        "db",
        client=client,
        sleep=sleeps,
        max_retries=2,
        backoff_s=1.0,
        max_backoff_s=1.5,
    )
    with pytest.raises(InfluxUnavailable) as ei:
        w.write_chunk(["m v=1 1"])
    assert ei.value.status == 500 and len(seen) == 3
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] < 1.0 and 0.75 <= sleeps[1] < 1.5  # capped


def test_retry_after_http_date_is_capped():
    """Stub (httpx.MockTransport): 503 with an HTTP-date Retry-After far in the future."""
    far = (datetime.now(UTC) + timedelta(hours=1)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    client, _ = stub([httpx.Response(503, headers={"Retry-After": far}), httpx.Response(204)])
    sleeps = Sleeps()
    InfluxV1Writer(
        "http://x.invalid", "db", client=client, sleep=sleeps, max_backoff_s=30
    ).write_chunk(["m v=1 1"])
    assert sleeps == [30]


def test_connection_refused_is_retried_then_unavailable():
    """Real socket: nothing listens on the port, so the connect error is genuine."""
    sleeps = Sleeps()
    with (
        InfluxV1Writer(closed_port_url(), "db", max_retries=2, sleep=sleeps) as w,
        pytest.raises(InfluxUnavailable, match="ConnectError"),
    ):
        w.write_chunk(["m v=1 1"])
    assert len(sleeps) == 2


def test_sink_survives_an_outage_without_a_spool_and_does_not_acknowledge():
    """Real socket, nothing listening, no spool configured: write_batch logs, counts, never
    raises, and leaves the batch unacknowledged (MQTT redelivers it at the next start). It used
    to acknowledge and drop it (issue #15)."""
    from twinwatch.flows.acks import Acked

    cfg = InfluxService(url=closed_port_url(), max_retries=2, batch_size=2, spool_dir=None)
    sleeps = Sleeps()
    sink = InfluxSink(cfg, writer_factory=lambda c, **kw: make_writer(c, sleep=sleeps, **kw))
    part = sink.build("influxdb", 0, 1)
    retries = metric("twinwatch_sink_retries_total", sink="influxdb")
    errors = metric("twinwatch_sink_errors_total", sink="influxdb")
    acked = []
    part.write_batch([Acked(readings(5), lambda: acked.append(1))])
    assert acked == [] and part.unacked == 5 and part.written == 0
    assert len(sleeps) == 2  # the first chunk's retries; the rest of the batch is kept at once
    assert metric("twinwatch_sink_retries_total", sink="influxdb") - retries == 2
    assert metric("twinwatch_sink_errors_total", sink="influxdb") - errors == 1
    part.close()


# --- v2 write path on the real VictoriaMetrics -----------------------------------------------


def vm_export(vm, match: str, want: int, timeout: float = 20.0) -> list[dict]:
    """Poll VictoriaMetrics' /api/v1/export (JSON Lines) until ``want`` series are there."""
    deadline = time.monotonic() + timeout
    while True:
        httpx.get(vm.url + "/internal/force_flush", timeout=5, trust_env=False)
        r = httpx.get(
            vm.url + "/api/v1/export", params={"match[]": match}, timeout=5, trust_env=False
        )
        r.raise_for_status()
        series = [json.loads(line) for line in r.text.splitlines() if line.strip()]
        if len(series) >= want or time.monotonic() > deadline:
            return series
        time.sleep(0.2)


@pytest.mark.services
def test_v2_writer_to_victoriametrics(victoriametrics):
    """Real VictoriaMetrics /api/v2/write (influxdb-client, precision ms). VictoriaMetrics names
    each series <measurement>_<field> with the tags as labels."""
    site = "v2 site,1"  # escaped in line protocol, plain in the label
    rs = readings(3, site=site)
    score, alert, event, _ = mixed_records()
    with InfluxV2Writer(victoriametrics.url, "twinwatch", batch_size=2) as w:
        w.write(lp.encode_many([*rs, score, event]))
    got = vm_export(victoriametrics, '{__name__="reading_value",site="v2 site,1"}', 1)
    assert len(got) == 1
    assert got[0]["metric"] == {
        "__name__": "reading_value",
        "domain": "water",
        "site": site,
        "asset": "pump-1",
        "sensor": "p1",
        "quantity": "pressure",
        "unit": "bar",
    }
    assert got[0]["values"] == [0.0, 1.0, 2.0]
    assert got[0]["timestamps"] == [MS0, MS0 + 1000, MS0 + 2000]
    numeric = {
        s["metric"]["__name__"]: s["values"]
        for s in vm_export(victoriametrics, '{__name__=~"anomaly.*|security_event_dst_port"}', 7)
    }
    # Note the names: the `anomaly` point's `score` field becomes `anomaly_score{detector=...}`.
    assert numeric == {
        "anomaly_score_robust_z": [6.5],
        "anomaly_score_cusum": [1.0],
        "anomaly_score_value": [9.0],
        "anomaly_score_hits": [1.0],
        "anomaly_score": [6.5],
        "anomaly_value": [9.0],
        "security_event_dst_port": [22.0],
    }


@pytest.mark.services
def test_v2_via_make_writer_and_sink(victoriametrics):
    """Real VictoriaMetrics through make_writer(api="v2") and the sink."""
    cfg = InfluxService(
        url=victoriametrics.url,
        api="v2",
        database="twinwatch",
        spool_dir=None,
        retention_policy="autogen",
    )
    with make_writer(cfg) as w:
        assert w.bucket == "twinwatch/autogen"
    part = InfluxSink(cfg).build("influxdb", 0, 1)
    part.write_batch([readings(4, site="via-sink")])
    part.close()
    assert part.written == 4
    (got,) = vm_export(victoriametrics, '{__name__="reading_value",site="via-sink"}', 1)
    assert got["values"] == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.services
def test_v2_rejected_by_a_server_without_the_v2_api(influxdb):
    """Real InfluxDB 1.6.7 has no /api/v2/write: its 404 maps to InfluxRejected, no retry."""
    sleeps = Sleeps()
    with (
        InfluxV2Writer(influxdb.url, "db", sleep=sleeps) as w,
        pytest.raises(InfluxRejected) as ei,
    ):
        w.write_chunk(["m v=1 1"])
    assert ei.value.status == 404 and sleeps == []


def test_v2_connection_refused_is_unavailable():
    """Real socket, nothing listening: urllib3's connect error maps to InfluxUnavailable."""
    sleeps = Sleeps()
    with (
        InfluxV2Writer(closed_port_url(), "db", max_retries=1, sleep=sleeps) as w,
        pytest.raises(InfluxUnavailable),
    ):
        w.write_chunk(["m v=1 1"])
    assert len(sleeps) == 1


# --- auth and secrets -------------------------------------------------------------------------


@pytest.mark.services
def test_basic_auth_on_real_influxdb_and_secrets_stay_hidden(
    service_factory, monkeypatch, caplog, tmp_path
):
    """Real InfluxDB 1.6.7 with auth-enabled: the right password writes, a wrong one is a 401
    rejection (the sink spools the point, never drops it); neither repr, errors nor logs show
    the password."""
    db = service_factory(services.InfluxDB, auth=True)
    httpx.post(
        db.url + "/query",
        data={"q": f"CREATE USER admin WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES"},
        trust_env=False,
    )
    monkeypatch.setenv("TW_TEST_INFLUX_PW", PASSWORD)
    monkeypatch.setenv("TW_TEST_INFLUX_BAD", "wrong-" + PASSWORD)
    good = InfluxService(
        url=db.url, database="authdb", username="admin", password=Secret(env="TW_TEST_INFLUX_PW")
    )
    bad = InfluxService(
        url=db.url, database="authdb", username="admin", password=Secret(env="TW_TEST_INFLUX_BAD")
    )
    with caplog.at_level(logging.DEBUG):
        with make_writer(good) as w:
            w.create_database()
            w.write(lp.encode_many(readings(2)))
            assert len(rows(w.query("SELECT * FROM reading"))) == 2
            assert PASSWORD not in repr(w) and "admin" in repr(w)
        with make_writer(bad) as w, pytest.raises(InfluxRejected) as ei:
            w.write(lp.encode_many(readings(1)))
        assert ei.value.status == 401 and "authorization failed" in str(ei.value)
        spooled = msgspec.structs.replace(bad, spool_dir=str(tmp_path / "spool"))
        part = InfluxSink(spooled).build("influxdb", 0, 1)
        part.write_batch([readings(1)])
        part.close()
        assert part.dropped == 0 and part.spool.points() == {
            "reading": 1
        }  # kept for a fixed password
    assert "authorization failed" in caplog.text
    for text in (caplog.text, str(ei.value), repr(good), repr(bad), repr(part.writer)):
        assert PASSWORD not in text


def test_token_never_in_repr(monkeypatch):
    monkeypatch.setenv("TW_TEST_INFLUX_TOKEN", TOKEN)
    for api in ("v1", "v2"):
        cfg = InfluxService(api=api, token=Secret(env="TW_TEST_INFLUX_TOKEN"), org="city")
        w = make_writer(cfg)
        assert TOKEN not in repr(w) and "auth=token" in repr(w)
        assert TOKEN not in repr(cfg)
        w.close()


def test_config_errors_are_raised_when_built():
    with pytest.raises(ConfigError, match="not the URL"):
        InfluxV1Writer("http://admin:secret@127.0.0.1:8086", "db")
    with pytest.raises(ConfigError, match="https"):
        make_writer(InfluxService(url="http://127.0.0.1:8086", tls=Tls(enabled=True)))
    with pytest.raises(ConfigError, match="either"):
        InfluxV1Writer("http://127.0.0.1:8086", "db", username="u", token="t")
    with pytest.raises(ConfigError, match="TW_TEST_UNSET"):
        make_writer(InfluxService(token=Secret(env="TW_TEST_UNSET")))


def test_tls_settings_build_an_ssl_context():
    import ssl

    from twinwatch.http import ssl_context

    assert ssl_context(Tls(enabled=True, verify=False)).verify_mode == ssl.CERT_NONE
    assert ssl_context(Tls(enabled=True)).verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(OSError):
        ssl_context(Tls(enabled=True, ca_file="/nonexistent/ca.pem"))
    w = make_writer(
        InfluxService(url="https://influx.example:8086", tls=Tls(enabled=True, verify=False))
    )
    assert w.url.startswith("https://")
    w.close()
