"""The docker compose stack: there is no Docker engine here, so it is checked structurally and
its configs are run as real local processes.

Validated against the compose-spec JSON schema (``tests/data/compose_spec.json``, the copy that
ships in the docker-compose 1.29.2 wheel, Apache-2.0), with variables interpolated from
``docker/.env.example`` the way compose does; plus what the schema cannot know: mounted paths and
build files exist, every variable is defined, images are pinned, the flows' environment is a valid
twinwatch config with persisted delivery state, the build context leaves out .venv and var/,
Alertmanager's config is the generated one, passes the real ``amtool check-config`` and delivers
to a service of the stack.

Then the stack's own configs and command lines are rendered into local processes where a Debian
package exists (Mosquitto, Alertmanager, Prometheus) plus the stack's alert receiver: container
paths become the mounted files and temp dirs, ports become free loopback ports, compose's service
names become 127.0.0.1, and each must start and pass the healthcheck compose would run; an alert
posted to that Alertmanager reaches the receiver.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest
import yaml
from paths import ROOT as REPO

from twinwatch.alerting.amconfig import render
from twinwatch.app.services import free_port
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
        "alert-receiver",
        "prometheus",
        "grafana",
        "flows",
        "simulator",
    }
    assert SERVICES["simulator"]["profiles"] == ["simulator"]
    for name, svc in SERVICES.items():
        image = svc["image"]
        pinned = re.search(r":v?\d+\.\d+\.\d+(-[a-z]+)*$", image)
        assert pinned, f"{name}: image {image} is not pinned"
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


# --- out of the box: build context, delivery state, a receiver for the alerts ---------------

# How docker/alertmanager/alertmanager.yml is generated (docker/README.md): the example city with
# its on-call webhook pointed at the stack's receiver.
RECEIVER_ENV = {
    "TWINWATCH__SERVICES__ALERTMANAGER__ROUTING__RECEIVERS": (
        '[{name: on-call, type: webhook, url: "http://alert-receiver:9095/alerts"}]'
    )
}


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore matching, for the patterns used there (dirs, globs, **/)."""
    parts = path.split("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        if pat.startswith("**/"):
            if any(fnmatch.fnmatch(p, pat[3:]) for p in parts):
                return True
        elif any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1)):
            return True
    return False


def test_the_build_context_leaves_out_the_venv_and_local_data():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [x.strip() for x in lines if x.strip() and not x.startswith("#")]
    for path in (
        ".venv/lib/python3.11/site-packages/x.py",
        "var/influxdb/data/x",
        "build/lib/x",
        "docker/.env",
        "twinwatch/__pycache__/config.cpython-311.pyc",
        ".git/HEAD",
    ):
        assert _ignored(path, patterns), path
    # everything the Dockerfile copies is still sent
    copied = re.findall(r"^COPY (.+) \S+$", (DOCKER / "Dockerfile").read_text(), re.M)
    sources = [src for line in copied for src in line.split()]
    assert {"twinwatch", "flows", "detectors", "alerting", "dashboards"} <= set(sources)
    for src in sources:
        for f in [ROOT / src] if (ROOT / src).is_file() else (ROOT / src).rglob("*.py"):
            rel = f.relative_to(ROOT).as_posix()
            if "__pycache__" not in rel:
                assert not _ignored(rel, patterns), rel


def test_delivery_state_is_persisted_in_a_volume():
    env = {k: str(v) for k, v in SERVICES["flows"]["environment"].items()}
    state = load_config(environ=env).services.alertmanager.state_path
    assert state
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["flows"]["volumes"]}
    volume = next(mounts[m] for m in mounts if state.startswith(m.rstrip("/") + "/"))
    assert volume in COMPOSE["volumes"]  # a named volume: survives a re-created container


def test_alertmanager_config_is_generated_and_delivers_inside_the_stack():
    text = (DOCKER / "alertmanager/alertmanager.yml").read_text()
    assert text == render(load_config(environ=RECEIVER_ENV)), "regenerate it: see docker/README.md"
    urls = [
        w["url"] for r in yaml.safe_load(text)["receivers"] for w in r.get("webhook_configs", [])
    ]
    assert urls
    for url in urls:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        assert host in SERVICES, f"{url}: no compose service {host}"
        assert str(port) in SERVICES[host]["command"], f"{url}: {host} does not listen on {port}"


# --- the stack's configs as local processes ---------------------------------------------------


def _healthcheck(name: str, port: int) -> list[str]:
    """The compose healthcheck of a service, aimed at the local process' port."""
    test = SERVICES[name]["healthcheck"]["test"]
    assert test[0] == "CMD"
    inside = re.search(r"127\.0\.0\.1:(\d+)", " ".join(test))
    argv = [a.replace(f":{inside[1]}", f":{port}") if inside else a for a in test[1:]]
    return [sys.executable if a == "python" else a for a in argv]


def _local_paths(name: str, tmp: Path) -> dict[str, str]:
    """Container path -> local path: bind mounts are the repository's files, volumes temp dirs."""
    out = {}
    for vol in SERVICES[name].get("volumes", []):
        source, target = vol.split(":")[:2]
        if source.startswith("."):
            out[target] = str((DOCKER / source).resolve())
        else:
            (tmp / source).mkdir(parents=True, exist_ok=True)
            out[target] = str(tmp / source)
    return out


def _command(name: str, tmp: Path) -> list[str]:
    paths = _local_paths(name, tmp)
    argv = []
    for arg in SERVICES[name]["command"]:
        flag, eq, value = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
        for target in sorted(paths, key=len, reverse=True):  # the longest mount wins
            if value == target or value.startswith(target.rstrip("/") + "/"):
                value = paths[target] + value[len(target.rstrip("/")) :]
                break
        argv.append(flag + eq + value)
    return argv


class _Proc:
    """A local process started from a rendered compose service; stopped by its own PID."""

    def __init__(self, argv: list[str], log: Path):
        self.log = log
        with log.open("wb") as f:
            self.p = subprocess.Popen(
                argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
            )

    def healthy(self, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert self.p.poll() is None, f"exited {self.p.returncode}: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"not healthy in time: {self.log.read_text()}"
            time.sleep(0.3)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def _passes(argv: list[str]) -> Callable[[], bool]:
    return lambda: subprocess.run(argv, capture_output=True, timeout=10).returncode == 0


def _mosquitto_conf(tmp: Path, port: int) -> Path:
    """docker/mosquitto/mosquitto.conf with the listener on a loopback port and its data in tmp."""
    paths = _local_paths("mosquitto", tmp)
    text = (DOCKER / "mosquitto/mosquitto.conf").read_text()
    text = re.sub(r"^listener \d+.*$", f"listener {port} 127.0.0.1", text, flags=re.M)
    for target, local in paths.items():
        text = text.replace(target.rstrip("/") + "/", local + "/")
    if os.getuid() == 0:  # as root, mosquitto drops to user "mosquitto", who can't write tmp
        text += f"\nuser {pwd.getpwuid(0).pw_name}\n"
    conf = tmp / "mosquitto.conf"
    conf.write_text(text)
    return conf


def _mqtt_uptime(port: int) -> Callable[[], bool]:
    """The compose healthcheck (`sh -c "mosquitto_sub ... -t '$SYS/broker/uptime' -C 1 -W 3"`,
    logging in when MQTT_HEALTHCHECK_USER is set) as the container runs it, on this port; with
    paho where mosquitto-clients is missing (scripts/install-services.sh mosquitto-clients)."""
    test = SERVICES["mosquitto"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "sh", "-c"]
    command = test[3].replace("$$", "$")  # compose's escape for a literal $
    match = re.search(r"-t '([^']+)'", command)
    assert match is not None, command
    topic = match[1]
    if shutil.which("mosquitto_sub"):
        return _passes(
            ["sh", "-c", command.replace("mosquitto_sub", f"mosquitto_sub -p {port}", 1)]
        )

    def check() -> bool:
        import paho.mqtt.client as paho

        got = []
        c = paho.Client(paho.CallbackAPIVersion.VERSION2)
        c.on_message = lambda *a: got.append(a[2].payload)
        try:
            c.connect("127.0.0.1", port, 5)
        except OSError:
            return False
        c.subscribe(topic)
        deadline = time.monotonic() + 3
        while not got and time.monotonic() < deadline:
            c.loop(0.2)
        c.disconnect()
        return bool(got)

    return check


@pytest.mark.services
def test_the_stacks_configs_start_as_local_processes_and_pass_their_healthchecks(
    require_services, tmp_path
):
    require_services("mosquitto", "alertmanager", "prometheus")
    if not shutil.which("wget"):
        pytest.fail("wget (the healthchecks' client) is not installed")
    ports = {name: free_port() for name in ("mosquitto", "alertmanager", "prometheus", "recv")}
    procs: list[_Proc] = []
    try:
        # the alert receiver, as compose runs it
        argv = _command("alert-receiver", tmp_path)
        argv = [sys.executable, *argv[1:-1], str(ports["recv"]), "--host", "127.0.0.1"]
        recv = _Proc(argv, tmp_path / "receiver.log")
        procs.append(recv)
        recv.healthy(_passes(_healthcheck("alert-receiver", ports["recv"])))

        mq = _Proc(
            ["/usr/sbin/mosquitto", "-c", str(_mosquitto_conf(tmp_path, ports["mosquitto"]))],
            tmp_path / "mosquitto.log",
        )
        procs.append(mq)
        mq.healthy(_mqtt_uptime(ports["mosquitto"]))

        # Alertmanager: its generated config with compose's DNS name of the receiver resolved to
        # the local one, and group_wait shortened from 30 s so the test need not wait
        am_conf = yaml.safe_load((DOCKER / "alertmanager/alertmanager.yml").read_text())
        am_conf["route"]["group_wait"] = "1s"
        for r in am_conf["receivers"]:
            for w in r.get("webhook_configs", []):
                w["url"] = w["url"].replace("alert-receiver:9095", f"127.0.0.1:{ports['recv']}")
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_conf))
        argv = _command("alertmanager", tmp_path)
        argv = [
            "/usr/bin/prometheus-alertmanager",
            *(a for a in argv if not a.startswith("--config.file")),
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
            "--cluster.listen-address=",
        ]
        am = _Proc(argv, tmp_path / "alertmanager.log")
        procs.append(am)
        am.healthy(_passes(_healthcheck("alertmanager", ports["alertmanager"])))

        argv = [
            "/usr/bin/prometheus",
            *_command("prometheus", tmp_path),
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        ]
        prom = _Proc(argv, tmp_path / "prometheus.log")
        procs.append(prom)
        prom.healthy(_passes(_healthcheck("prometheus", ports["prometheus"])))

        # an alert reaches the receiver through the stack's Alertmanager config
        now = datetime.now(UTC)
        alert = {
            "labels": {
                "alertname": "structures_limits",
                "domain": "structures",
                "site": "sejong-bridge",
                "asset": "span-2",
                "sensor": "crack-1",
                "rule": "limits",
                "severity": "alert",
            },
            "annotations": {"summary": "crack-1 outside its limits: 0.45 mm"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        }
        url = f"http://127.0.0.1:{ports['alertmanager']}/api/v2/alerts"
        httpx.post(url, json=[alert], timeout=5).raise_for_status()
        recv_url = f"http://127.0.0.1:{ports['recv']}/alerts"

        def delivered() -> bool:
            kept = httpx.get(recv_url, timeout=5).json()
            return any(a["labels"]["sensor"] == "crack-1" for n in kept for a in n["alerts"])

        recv.healthy(delivered, timeout=60)
        recv.stop()
        assert "FIRING   alert     sejong-bridge/span-2/crack-1 limits: crack-1 outside" in (
            recv.log.read_text()
        )
    finally:
        for p in reversed(procs):
            p.stop()
