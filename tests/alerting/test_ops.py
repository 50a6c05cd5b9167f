"""``twinwatch alerts list|ack|silence|config`` on a real Alertmanager and a real InfluxDB."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import httpx
import pytest

from twinwatch.alerting import AlertmanagerClient
from twinwatch.alerting.ops import OpsError, ack_line, parse_duration, parse_matchers
from twinwatch.app import services
from twinwatch.app.cli import main
from twinwatch.schema import Alert, fingerprint

pytestmark = pytest.mark.services


def alert(sensor: str) -> Alert:
    labels = {
        "domain": "water",
        "site": "plant-1",
        "asset": "basin",
        "sensor": sensor,
        "rule": "limits",
    }
    t = datetime.now(UTC)
    return Alert(
        fingerprint=fingerprint(labels),
        status="firing",
        severity="alert",
        domain="water",
        site="plant-1",
        asset="basin",
        sensor=sensor,
        rule="limits",
        starts_at=t,
        at=t,
        value=7.5,
        unit="NTU",
        summary=f"{sensor} = 7.5 NTU, too high",
    )


@pytest.fixture
def env(monkeypatch, alertmanager, influxdb, influx_db):
    monkeypatch.setenv("TWINWATCH__SERVICES__ALERTMANAGER__URL", alertmanager.url)
    monkeypatch.setenv("TWINWATCH__SERVICES__INFLUXDB__URL", influxdb.url)
    monkeypatch.setenv("TWINWATCH__SERVICES__INFLUXDB__DATABASE", influx_db)
    return alertmanager, influxdb, influx_db


def test_list_ack_and_silence(env, capsys):
    am, influx, db = env
    a = alert("turb-ops")
    with AlertmanagerClient(am.url) as c:
        c.post([a], datetime.now(UTC), 3600, "http://g")
    assert main(["alerts", "list"]) == 0
    out = capsys.readouterr().out
    assert a.fingerprint[:12] in out and "alert/경계" in out and "turb-ops = 7.5 NTU" in out

    assert (
        main(["alerts", "ack", a.fingerprint[:8], "--by", "kim", "--comment", "crew on site"]) == 0
    )
    assert f"acknowledged {a.fingerprint}" in capsys.readouterr().out
    r = httpx.get(
        f"{influx.url}/query",
        params={"db": db, "q": 'SELECT fingerprint, "by", comment, sensor FROM alert_ack'},
    ).json()
    (row,) = r["results"][0]["series"][0]["values"]
    assert row[1:] == [a.fingerprint, "kim", "crew on site", "turb-ops"]

    assert (
        main(
            [
                "alerts",
                "silence",
                "sensor=turb-ops",
                "--duration",
                "30m",
                "--by",
                "kim",
                "--comment",
                "filter backwash",
            ]
        )
        == 0
    )
    assert "silence " in capsys.readouterr().out
    with AlertmanagerClient(am.url) as c:
        (got,) = c.get_alerts(filters=['sensor="turb-ops"'])
        assert got["status"]["state"] == "suppressed" and got["status"]["silencedBy"]
        sil = [s for s in c.get_silences() if s["id"] == got["status"]["silencedBy"][0]][0]
        assert sil["comment"] == "filter backwash" and sil["createdBy"] == "kim"
        c.expire_silence(sil["id"])


def test_clear_errors(env, capsys, monkeypatch):
    assert main(["alerts", "ack", "ffffffffffff"]) == 2
    assert "no active alert with fingerprint ffffffffffff*" in capsys.readouterr().err
    assert main(["alerts", "silence", "color=red"]) == 2
    assert "unknown label 'color'" in capsys.readouterr().err
    assert main(["alerts", "silence", "site=x", "--duration", "soon"]) == 2
    assert "bad duration 'soon'" in capsys.readouterr().err
    monkeypatch.setenv(
        "TWINWATCH__SERVICES__ALERTMANAGER__URL", f"http://127.0.0.1:{services.free_port()}"
    )
    assert main(["alerts", "list"]) == 2
    assert "cannot list alerts: get alerts from http://127.0.0.1:" in capsys.readouterr().err


def test_config_prints_a_config_amtool_accepts(tmp_path, capsys, require_services):
    require_services("alertmanager")
    assert main(["alerts", "config"]) == 0
    (tmp_path / "am.yml").write_text(capsys.readouterr().out)
    r = subprocess.run(
        ["amtool", "check-config", str(tmp_path / "am.yml")], capture_output=True, text=True
    )
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_parsers_and_ack_line_escaping():
    assert parse_matchers(["site=a b", "sensor!~p.*"]) == [
        {"name": "site", "value": "a b", "isRegex": False, "isEqual": True},
        {"name": "sensor", "value": "p.*", "isRegex": True, "isEqual": False},
    ]
    assert parse_duration("90m").total_seconds() == 5400
    with pytest.raises(OpsError):
        parse_matchers([])
    line = ack_line(
        {
            "labels": {"site": "a b", "domain": "water"},
            "annotations": {"fingerprint": "f", "summary": 'say "hi"'},
        },
        "kim",
        "x,y",
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert line.startswith("alert_ack,asset=-,domain=water,rule=-,sensor=-,severity=-,site=a\\ b ")
    assert 'summary="say \\"hi\\""' in line and line.endswith(" 1767225600000")
