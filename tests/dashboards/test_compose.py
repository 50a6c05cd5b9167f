"""The docker compose stack, checked structurally: there is no Docker engine here.

Validated against the compose-spec JSON schema (``tests/data/compose_spec.json``, the copy that
ships in the docker-compose 1.29.2 wheel, Apache-2.0), with variables interpolated from
``docker/.env.example`` the way compose does; plus what the schema cannot know: mounted paths and
build files exist, every variable is defined, images are pinned, the flows' environment is a valid
twinwatch config, and Alertmanager's config passes the real ``amtool check-config``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml
from paths import ROOT as REPO

from twinwatch.config import load_config
from twinwatch.dashboards.build import DASHBOARD_DIR

ROOT = REPO
DOCKER = ROOT / "docker"
SCHEMA = json.loads((REPO / "tests" / "data" / "compose_spec.json").read_text())
TEXT = (DOCKER / "compose.yaml").read_text()
VAR = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def _env_example() -> dict[str, str]:
    env = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def _interpolate(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if env.get(name):
            return env[name]
        if "?" in m.group(0).split("}")[0] and ":-" not in m.group(0):
            raise KeyError(f"{name} is required: {default}")
        return default or ""

    return VAR.sub(sub, text).replace("$$", "$")


FILLED = {
    **_env_example(),
    "INFLUX_ADMIN_PASSWORD": "x" * 12,
    "INFLUX_ADMIN_TOKEN": "t" * 32,
    "GRAFANA_ADMIN_PASSWORD": "p" * 12,
}
COMPOSE = yaml.safe_load(_interpolate(TEXT, FILLED))
SERVICES = COMPOSE["services"]


def test_compose_file_matches_the_compose_spec_schema():
    jsonschema.Draft201909Validator(SCHEMA).validate(COMPOSE)
    broken = dict(COMPOSE, services={**SERVICES, "grafana": {**SERVICES["grafana"], "ports": 3}})
    with pytest.raises(jsonschema.ValidationError):  # the schema does reject bad files
        jsonschema.Draft201909Validator(SCHEMA).validate(broken)


def test_every_variable_is_defined_and_secrets_have_no_default():
    example = _env_example()
    for name, _default in VAR.findall(TEXT):
        assert name in example, f"${{{name}}} is not in docker/.env.example"
    for secret in ("INFLUX_ADMIN_PASSWORD", "INFLUX_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD"):
        assert example[secret] == "", f"{secret} must not have a value in the example"
        assert re.search(r"\$\{" + secret + r":\?", TEXT), f"{secret} must be required (:?)"
        with pytest.raises(KeyError, match=secret):
            _interpolate(TEXT, {**FILLED, secret: ""})


def test_every_mounted_path_and_build_file_exists():
    mounts = 0
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source} does not exist"
                mounts += 1
            else:
                assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"
    assert mounts >= 6
    build = SERVICES["flows"]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == ROOT and (context / build["dockerfile"]).exists()


def test_services_are_pinned_healthy_and_restarting():
    assert set(SERVICES) == {
        "mosquitto",
        "influxdb",
        "alertmanager",
        "prometheus",
        "grafana",
        "flows",
        "simulator",
    }
    assert SERVICES["simulator"]["profiles"] == ["simulator"]
    for name, svc in SERVICES.items():
        image = svc["image"]
        assert re.search(r":v?\d+\.\d+\.\d+$", image), f"{name}: image {image} is not pinned"
        if name != "simulator":
            assert svc["restart"] == "unless-stopped", name
            assert svc["healthcheck"]["test"][0] == "CMD", name
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} is not on loopback"
    assert SERVICES["influxdb"]["image"].startswith("influxdb:2.7.")


def test_dockerfile_is_pinned_and_runs_as_non_root():
    text = (DOCKER / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", text, re.M)
    assert re.search(r":\d+\.\d+\.\d+", base), base
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")


def test_influxdb_init_and_grafana_provisioning():
    env = SERVICES["influxdb"]["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert {
        "DOCKER_INFLUXDB_INIT_ORG",
        "DOCKER_INFLUXDB_INIT_BUCKET",
        "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN",
        "DOCKER_INFLUXDB_INIT_RETENTION",
    } <= set(env)
    g = SERVICES["grafana"]
    targets = {v.split(":")[1]: v.split(":")[0] for v in g["volumes"]}
    assert targets[DASHBOARD_DIR] == "../dashboards/generated"
    assert (
        targets["/etc/grafana/provisioning/datasources"] == "../dashboards/provisioning/datasources"
    )
    # every $VAR of the datasource provisioning is set in Grafana's environment
    ds = (ROOT / "dashboards/provisioning/datasources/twinwatch.yaml").read_text()
    assert set(re.findall(r"\$(\w+)", ds)) <= set(g["environment"])
    assert g["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == FILLED["GRAFANA_ADMIN_PASSWORD"]


def test_flows_environment_is_a_valid_twinwatch_config():
    env = {k: str(v) for k, v in SERVICES["flows"]["environment"].items()}
    config = load_config(environ=env)
    assert config.services.influxdb.url == "http://influxdb:8086"
    assert config.services.influxdb.token.env == "INFLUX_TOKEN"
    assert env["INFLUX_TOKEN"] == FILLED["INFLUX_ADMIN_TOKEN"]
    port = config.services.metrics.port
    prom = yaml.safe_load((DOCKER / "prometheus/prometheus.yml").read_text())
    scraped = {
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    assert f"flows:{port}" in scraped and "alertmanager:9093" in scraped


def test_alertmanager_config_passes_amtool(require_services):
    amtool = shutil.which("amtool")
    if amtool is None:
        require_services("alertmanager")  # skips locally, fails under CI=true
        pytest.skip("amtool is not installed")
    r = subprocess.run(
        [amtool, "check-config", str(DOCKER / "alertmanager/alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stdout + r.stderr
