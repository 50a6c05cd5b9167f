"""`twinwatch services up|down|status [NAME...]` on real processes (issue #15): NAME is honoured,
and `up` creates the configured database."""

from __future__ import annotations

import httpx

from twinwatch.app import services
from twinwatch.app.cli import main


def test_down_and_status_act_on_the_named_service_only(
    tmp_path, require_services, monkeypatch, capsys
):
    require_services("influxdb", "mosquitto")
    ports = {"influxdb": services.free_port(), "mosquitto": services.free_port()}
    monkeypatch.setenv(
        "TWINWATCH__SERVICES__INFLUXDB__URL", f"http://127.0.0.1:{ports['influxdb']}"
    )
    monkeypatch.setenv("TWINWATCH__SERVICES__INFLUXDB__DATABASE", "made_by_up")
    monkeypatch.setenv("TWINWATCH__SERVICES__MQTT__PORT", str(ports["mosquitto"]))
    var = str(tmp_path)
    try:
        assert main(["services", "up", "influxdb", "mosquitto", "--var", var]) == 0
        out = capsys.readouterr().out
        assert "database 'made_by_up' ready" in out
        r = httpx.get(
            f"http://127.0.0.1:{ports['influxdb']}/query",
            params={"q": "SHOW DATABASES"},
            trust_env=False,
        )
        assert ["made_by_up"] in r.json()["results"][0]["series"][0]["values"]

        assert main(["services", "status", "mosquitto", "--var", var]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 1 and lines[0].split()[:2] == ["mosquitto", "running"]

        # before: `down mosquitto` stopped everything
        assert main(["services", "down", "mosquitto", "--var", var]) == 0
        assert capsys.readouterr().out.strip() == "stopped: mosquitto"
        st = services.status(tmp_path)
        assert st["influxdb"]["running"] and not st["mosquitto"]["running"]

        assert main(["services", "down", "nosuch", "--var", var]) == 2
        assert "unknown service nosuch" in capsys.readouterr().err
        assert services.status(tmp_path)["influxdb"]["running"]
    finally:
        services.down(tmp_path)
