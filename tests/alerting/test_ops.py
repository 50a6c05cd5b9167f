"""``twinwatch alerts list|ack|silence|silences|expire|config`` on a real Alertmanager and a real
InfluxDB 1.6.7."""

from __future__ import annotations

import getpass
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from twinwatch.alerting import AlertmanagerClient
from twinwatch.alerting.alertmanager import is_ack_silence
from twinwatch.alerting.ops import OpsError, parse_matchers
from twinwatch.app import services
from twinwatch.app.cli import main, parser
from twinwatch.durations import BadDuration, parse_duration
from twinwatch.lineprotocol import encode
from twinwatch.schema import Alert, AlertAck, fingerprint

pytestmark = pytest.mark.services


def alert(sensor: str) -> Alert:
    labels = {
        "domain": "water",
        "site": "plant-1",
        "asset": "basin",
        "sensor": sensor,
        "rule": "limits",
    }
    t = datetime.now(UTC) - timedelta(minutes=7)
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
def env(monkeypatch, service_factory, influxdb, influx_db):
    am = service_factory(services.Alertmanager)  # its own: silences from other tests stay away
    monkeypatch.setenv("TWINWATCH__SERVICES__ALERTMANAGER__URL", am.url)
    monkeypatch.setenv("TWINWATCH__SERVICES__INFLUXDB__URL", influxdb.url)
    monkeypatch.setenv("TWINWATCH__SERVICES__INFLUXDB__DATABASE", influx_db)
    return am, influxdb, influx_db


def acks_in_influx(influx, db) -> list[list]:
    r = httpx.get(
        f"{influx.url}/query",
        params={
            "db": db,
            "q": 'SELECT fingerprint, "user", comment, sensor, severity FROM alert_ack',
        },
    ).json()
    series = r["results"][0].get("series")
    return series[0]["values"] if series else []


def test_ack_is_recorded_silences_the_alert_and_shows_in_list(env, capsys):
    am, influx, db = env
    a, b = alert("turb-ops"), alert("turb-2")
    with AlertmanagerClient(am.url) as c:
        c.post([a, b], datetime.now(UTC), 3600, "http://g")
    assert main(["alerts", "list"]) == 0
    out = capsys.readouterr().out
    assert a.fingerprint[:12] in out and "alert/경계" in out and "turb-ops = 7.5 NTU" in out
    assert "ACK" in out and "kim" not in out

    assert (
        main(["alerts", "ack", a.fingerprint[:8], "--by", "kim", "--comment", "crew on site"]) == 0
    )
    assert f"acknowledged {a.fingerprint}" in capsys.readouterr().out
    (row,) = acks_in_influx(influx, db)
    assert row[1:] == [a.fingerprint, "kim", "crew on site", "turb-ops", "alert"]

    with AlertmanagerClient(am.url) as c:
        got = {x["labels"]["sensor"]: x for x in c.get_alerts()}
        (sid,) = got["turb-ops"]["status"]["silencedBy"]
        (sil,) = [s for s in c.get_silences() if s["id"] == sid]
    assert got["turb-ops"]["status"]["state"] == "suppressed"
    assert got["turb-2"]["status"]["state"] == "active"  # the ack silences that alert only
    assert sil["createdBy"] == "kim" and is_ack_silence(sil) == a.fingerprint
    assert {m["name"]: m["value"] for m in sil["matchers"]} == a.labels

    assert main(["alerts", "list"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[1:]}
    assert " kim " in lines[a.fingerprint[:12]] and "suppressed" in lines[a.fingerprint[:12]]
    assert " kim " not in lines[b.fingerprint[:12]]


def test_a_second_ack_is_refused_with_who_and_when(env, capsys):
    am, influx, db = env
    a = alert("turb-dup")
    with AlertmanagerClient(am.url) as c:
        c.post([a], datetime.now(UTC), 3600, "http://g")
    assert main(["alerts", "ack", a.fingerprint, "--by", "kim", "--comment", "on it"]) == 0
    capsys.readouterr()
    assert main(["alerts", "ack", a.fingerprint, "--by", "lee"]) == 2
    err = capsys.readouterr().err
    assert "already acknowledged by kim at " in err and ": on it" in err
    assert [r[2] for r in acks_in_influx(influx, db)] == ["kim"]  # lee's was not written


def test_list_without_influxdb_still_lists(env, capsys, monkeypatch):
    """InfluxDB unreachable: the alerts are listed all the same, acks shown as unknown."""
    am, _, _ = env
    a = alert("turb-noinflux")
    with AlertmanagerClient(am.url) as c:
        c.post([a], datetime.now(UTC), 3600, "http://g")
    monkeypatch.setenv(
        "TWINWATCH__SERVICES__INFLUXDB__URL", f"http://127.0.0.1:{services.free_port()}"
    )
    assert main(["alerts", "list"]) == 0
    out, err = capsys.readouterr()
    (line,) = [ln for ln in out.splitlines() if ln.startswith(a.fingerprint[:12])]
    assert " ? " in line and "acks unknown" in err


def test_the_acting_user_defaults_to_the_os_user(env, capsys):
    am, influx, db = env
    assert parser().parse_args(["alerts", "ack", "abcd"]).by == getpass.getuser()
    a = alert("turb-me")
    with AlertmanagerClient(am.url) as c:
        c.post([a], datetime.now(UTC), 3600, "http://g")
    assert main(["alerts", "ack", a.fingerprint]) == 0
    assert [r[2] for r in acks_in_influx(influx, db)] == [getpass.getuser()]


def test_silence_list_and_expire(env, capsys):
    am, _, _ = env
    a = alert("turb-sil")
    with AlertmanagerClient(am.url) as c:
        c.post([a], datetime.now(UTC), 3600, "http://g")
    args = ["alerts", "silence", "sensor=turb-sil", "--duration", "90m", "--by", "kim"]
    assert main([*args, "--comment", "filter backwash"]) == 0
    sid = capsys.readouterr().out.split()[1]
    with AlertmanagerClient(am.url) as c:
        (got,) = c.get_alerts(filters=['sensor="turb-sil"'])
    assert got["status"]["state"] == "suppressed" and got["status"]["silencedBy"] == [sid]

    assert main(["alerts", "silences"]) == 0
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if ln.startswith(sid)]
    assert "active" in line and "kim" in line and "sensor=turb-sil" in line
    assert "filter backwash" in line

    assert main(["alerts", "expire", sid[:8]]) == 0
    assert f"expired silence {sid}" in capsys.readouterr().out
    with AlertmanagerClient(am.url) as c:
        (got,) = c.get_alerts(filters=['sensor="turb-sil"'])
    assert got["status"]["state"] == "active"
    assert main(["alerts", "silences"]) == 0
    assert sid not in capsys.readouterr().out  # expired ones only with --all
    assert main(["alerts", "silences", "--all"]) == 0
    assert sid in capsys.readouterr().out
    assert main(["alerts", "expire", sid]) == 2
    assert "already expired" in capsys.readouterr().err


def test_clear_errors(env, capsys, monkeypatch):
    assert main(["alerts", "ack", "ffffffffffff"]) == 2
    assert "no active alert with fingerprint ffffffffffff*" in capsys.readouterr().err
    assert main(["alerts", "silence", "color=red"]) == 2
    assert "unknown label 'color'" in capsys.readouterr().err
    assert main(["alerts", "silence", "site=x", "--duration", "soon"]) == 2
    assert "bad duration 'soon'" in capsys.readouterr().err
    assert main(["alerts", "expire", "0000000000"]) == 2
    assert "no silence 0000000000*" in capsys.readouterr().err
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


def test_matchers_durations_and_the_ack_encoding():
    assert parse_matchers(["site=a b", "sensor!~p.*"]) == [
        {"name": "site", "value": "a b", "isRegex": False, "isEqual": True},
        {"name": "sensor", "value": "p.*", "isRegex": True, "isEqual": False},
    ]
    with pytest.raises(OpsError):
        parse_matchers([])
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("1w") == timedelta(weeks=1)  # `query` and `silence` share one grammar
    for bad in ("1.5h", "1h30m", "0m", "soon", "-2h"):
        with pytest.raises(BadDuration):
            parse_duration(bad)
    (line,) = encode(
        AlertAck(
            time=datetime(2026, 1, 1, tzinfo=UTC),
            fingerprint="f",
            domain="water",
            site="a b",
            asset="x",
            sensor="s",
            rule="limits",
            severity="alert",
            user="kim",
            comment="x,y\nz",
            summary='say "hi"',
        )
    )
    assert line.startswith(
        "alert_ack,asset=x,domain=water,rule=limits,sensor=s,severity=alert,site=a\\ b "
    )
    assert 'user="kim"' in line and 'comment="x,y\\nz"' in line
    assert 'summary="say \\"hi\\""' in line and line.endswith(" 1767225600000")
