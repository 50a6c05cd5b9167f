"""One place builds the sinks for every flow factory (issue #11): `twinwatch run` and
`twinwatch logs` get the same sinks for the same config, so a webhook-only site gets its alerts
from both (before: `logs` built no alert sink without an Alertmanager URL)."""

from __future__ import annotations

import logging

import pytest

from twinwatch.config import InfluxService, load_config
from twinwatch.flows.sinks import build_sinks
from twinwatch.flows.sinks.alertmanager import AlertmanagerSink
from twinwatch.influx import prepare_database


@pytest.mark.parametrize(
    "env, alerts",
    [
        ({"TWINWATCH__SERVICES__ALERTMANAGER__URL": "null"}, False),
        (
            {
                "TWINWATCH__SERVICES__ALERTMANAGER__URL": "null",
                "TWINWATCH__SERVICES__ALERTMANAGER__WEBHOOK_URL": "https://oncall.example/hook",
                # a webhook needs its secret (read at connect; not set here, so not checked)
                "TWINWATCH__SERVICES__ALERTMANAGER__WEBHOOK_SECRET__ENV": "TW_TEST_UNSET_SECRET",
            },
            True,
        ),
        ({}, True),
    ],
)
def test_both_flows_build_the_same_sinks(env, alerts, tmp_path):
    from bytewax.testing import TestingSource

    from twinwatch.flows.dataflow import build_flow
    from twinwatch.flows.security import build_log_flow

    config = load_config(environ=env)
    sinks = build_sinks(config)
    assert isinstance(sinks.alerts, AlertmanagerSink) is alerts
    for flow in (build_flow(config, TestingSource([])), build_log_flow(config, TestingSource([]))):
        steps = {s.step_id.rsplit(".", 1)[-1] for s in flow.substeps}
        assert ("alertmanager" in steps) is alerts


@pytest.mark.services
def test_prepare_database_on_a_v2_server_without_a_bucket_api(victoriametrics, caplog):
    """Real VictoriaMetrics: it takes /api/v2/write but has no bucket API; the start-up check
    says so and goes on."""
    cfg = InfluxService(url=victoriametrics.url, api="v2", bucket="b", org="o")
    with caplog.at_level(logging.INFO, logger="twinwatch.influx"):
        assert prepare_database(cfg) is True
    assert "has no bucket API" in caplog.text


@pytest.mark.services
def test_prepare_database_creates_it_on_v1(influxdb):
    cfg = InfluxService(url=influxdb.url, database="made_at_start")
    try:
        assert prepare_database(cfg) is True
        assert prepare_database(cfg) is True  # idempotent
        import httpx

        r = httpx.get(f"{influxdb.url}/query", params={"q": "SHOW DATABASES"}, trust_env=False)
        assert ["made_at_start"] in r.json()["results"][0]["series"][0]["values"]
    finally:
        influxdb.drop_database("made_at_start")
