"""Shared pytest fixtures.

Service fixtures start real processes (see twinwatch/app/services.py) on free loopback ports in
pytest's tmp dirs. A missing binary skips the test locally, but FAILS it when CI=true:
under CI a missing service is a broken install, never a reason to skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator

import pytest

from twinwatch.app import services
from twinwatch.app.services import Service


def _missing(msg: str) -> None:
    if "install-services.sh" not in msg:
        msg += " (run scripts/install-services.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {msg}", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def require_services() -> Callable[..., None]:
    """require_services("influxdb", ...): skip (fail under CI=true) unless the binaries exist."""

    def require(*names: str) -> None:
        for name in names:
            binary = services.SERVICES[name].binary
            if not shutil.which(binary):
                _missing(f"{name}: {binary} is not installed")

    return require


def _run(cls: type[Service], data_dir, **extra) -> Iterator[Service]:
    svc = cls(data_dir, **extra)
    try:
        svc.start(timeout=60)
    except services.BinaryMissing as e:
        _missing(str(e))
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory) -> Iterator[services.InfluxDB]:
    yield from _run(services.InfluxDB, tmp_path_factory.mktemp("influxdb"))


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory) -> Iterator[services.Mosquitto]:
    yield from _run(services.Mosquitto, tmp_path_factory.mktemp("mosquitto"))


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory) -> Iterator[services.Alertmanager]:
    yield from _run(services.Alertmanager, tmp_path_factory.mktemp("alertmanager"))


@pytest.fixture(scope="session")
def victoriametrics(tmp_path_factory) -> Iterator[services.VictoriaMetrics]:
    yield from _run(services.VictoriaMetrics, tmp_path_factory.mktemp("victoriametrics"))


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory) -> Iterator[services.Prometheus]:
    yield from _run(services.Prometheus, tmp_path_factory.mktemp("prometheus"))


@pytest.fixture
def service_factory(tmp_path) -> Iterator[Callable[..., Service]]:
    """start(cls, **extra) -> a fresh, started instance in tmp_path; stopped at teardown.
    For per-test configs, e.g. service_factory(services.Alertmanager, config_text=...)."""
    started: list[Service] = []

    def start(cls: type[Service], **extra) -> Service:
        svc = cls(tmp_path / f"{cls.name}-{len(started)}", **extra)
        try:
            svc.start(timeout=60)
        except services.BinaryMissing as e:
            _missing(str(e))
        started.append(svc)
        return svc

    yield start
    for svc in reversed(started):
        svc.stop()


@pytest.fixture
def influx_db(influxdb) -> Iterator[str]:
    """Name of a fresh, uniquely named database on the session InfluxDB (dropped afterwards)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    influxdb.create_database(name)
    yield name
    influxdb.drop_database(name)


@pytest.fixture(scope="session")
def analysis_run(influxdb, tmp_path_factory):
    """Six simulated hours through the real flow into the session InfluxDB, made once per session
    and read (never written) by every analysis test module (tests/analysis_run.py)."""
    from analysis_run import sim_run

    return sim_run(influxdb, tmp_path_factory.mktemp("sim"))
