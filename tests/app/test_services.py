"""Tests of twinwatch.app.services against the real binaries."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import queue
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from twinwatch.app import services

pytestmark = pytest.mark.services

SERVICE_FIXTURES = ["influxdb", "mosquitto", "alertmanager", "victoriametrics", "prometheus_server"]


# -- /proc helpers -------------------------------------------------------------
def _group_pids(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


def _fd_targets(pid: int) -> dict[str, str]:
    out = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            out[fd.name] = os.readlink(fd)
    return out


def _hex_addr(h: str) -> str:
    raw = bytes.fromhex(h)
    # /proc/net prints each 32-bit word in host (little-endian) order
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def bound_addresses(pid: int) -> list[tuple[str, str, int]]:
    """(proto, ip, port) of every listening TCP / bound UDP socket of pid's process group."""
    inodes = {
        t[8:-1]
        for p in _group_pids(pid)
        for t in _fd_targets(p).values()
        if t.startswith("socket:[")
    }
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if inode in inodes and (state == "0A" if proto.startswith("tcp") else True):
                ip, port = local.rsplit(":", 1)
                found.append((proto, _hex_addr(ip), int(port, 16)))
    return found


def written_files(pid: int) -> list[str]:
    """Regular files the process group has open for writing."""
    paths = []
    for p in _group_pids(pid):
        for fd, target in _fd_targets(p).items():
            if not target.startswith("/") or target.startswith(("/dev/", "/proc/")):
                continue
            try:
                flags = int(
                    Path(f"/proc/{p}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0], 8
                )
            except (FileNotFoundError, IndexError):
                continue
            if flags & 0o3:  # O_WRONLY or O_RDWR
                paths.append(target)
    return paths


def _wait_for(fn, timeout=15.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


# -- every service ---------------------------------------------------------------
@pytest.mark.parametrize("fixture", SERVICE_FIXTURES)
def test_service_ready_loopback_and_local(fixture, request):
    svc = request.getfixturevalue(fixture)
    assert svc.running and svc.ready()
    assert svc.host == "127.0.0.1" and svc.url.endswith(f"127.0.0.1:{svc.port}")

    addrs = bound_addresses(svc.pid)
    assert ("tcp", "127.0.0.1", svc.port) in addrs
    for proto, ip, port in addrs:
        assert ipaddress.ip_address(ip).is_loopback, f"{svc.name} binds {proto} {ip}:{port}"

    assert Path(os.readlink(f"/proc/{svc.pid}/cwd")) == svc.data_dir
    for path in written_files(svc.pid):
        assert Path(path).is_relative_to(svc.data_dir), (
            f"{svc.name} writes {path} outside {svc.data_dir}"
        )

    info = json.loads(svc.pid_file.read_text())
    assert info["pid"] == svc.pid and info["port"] == svc.port and info["host"] == "127.0.0.1"
    assert info["binary"] == svc.binary and info["cmdline"][0] == svc.binary


@pytest.mark.parametrize("cls", list(services.SERVICES.values()), ids=list(services.SERVICES))
def test_start_stop(cls, tmp_path, require_services):
    require_services(cls.name)
    svc = cls(tmp_path / cls.name).start(timeout=60)
    pid = svc.pid
    assert svc.running and svc.pid_file.exists() and svc.log_file.exists()
    assert svc.start() is svc and svc.pid == pid  # idempotent
    svc.stop()
    assert not svc.running and svc.pid is None
    assert not svc.pid_file.exists()
    assert not Path(f"/proc/{pid}").exists()
    assert not svc.ready()
    # everything it created is inside its data dir
    assert sorted(p.name for p in tmp_path.iterdir()) == [cls.name]
    if cls is services.Mosquitto:
        assert (svc.data_dir / "mosquitto.db").exists()  # persistence saved on SIGTERM


def test_start_failure_reports_log(tmp_path, require_services):
    require_services("alertmanager")
    svc = services.Alertmanager(tmp_path, config_text="route: [this is not valid")
    with pytest.raises(services.ServiceError, match="exited with") as exc:
        svc.start(timeout=20)
    assert "last lines of" in str(exc.value) and "yaml" in str(exc.value).lower()
    assert not svc.pid_file.exists()


def test_missing_binary_error(tmp_path):
    svc = services.InfluxDB(tmp_path, binary="/nonexistent/influxd")
    with pytest.raises(services.BinaryMissing, match="install-services.sh"):
        svc.start()


def test_port_in_use_is_an_error(tmp_path, influxdb):
    with pytest.raises(services.ServiceError, match="already in use"):
        services.Mosquitto(tmp_path, port=influxdb.port).start()


def test_rejects_non_loopback_host(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        services.InfluxDB(tmp_path, port=8086, host="0.0.0.0")


# -- pid handling ------------------------------------------------------------------
@pytest.mark.parametrize("pidfile", ["full", "pid-only", "forged"])
def test_stale_pidfile_never_kills_other_process(tmp_path, pidfile):
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        d = tmp_path / "influxdb"
        d.mkdir()
        info = {"pid": sleeper.pid}
        if pidfile == "full":
            info |= {
                "port": 8086,
                "host": "127.0.0.1",
                "binary": "/usr/bin/influxd",
                "cmdline": ["/usr/bin/influxd", "run", "-config", str(d / "influxdb.conf")],
            }
        if pidfile == "forged":  # claims to be the sleep itself: binary must come from the class
            info |= {"binary": "/usr/bin/sleep", "cmdline": ["sleep", "30"]}
        (d / "influxdb.pid").write_text(json.dumps(info))
        assert services.InfluxDB.from_pidfile(d).running is False

        assert services.status(tmp_path)["influxdb"]["running"] is False
        assert services.down(tmp_path) == []
        time.sleep(0.2)
        assert sleeper.poll() is None, "down() killed an unrelated process"
        assert not (d / "influxdb.pid").exists()  # stale pid file cleaned up
    finally:
        sleeper.kill()
        sleeper.wait()


def test_up_status_down_roundtrip(tmp_path, require_services):
    require_services("influxdb", "victoriametrics")
    names = ["influxdb", "victoriametrics"]
    try:
        started = services.up(names, tmp_path, {})
        assert set(started) == set(names) and all(s.running for s in started.values())
        st = services.status(tmp_path)
        for name in names:
            assert st[name]["running"] and st[name]["pid"] == started[name].pid
            assert st[name]["url"] == started[name].url
            assert (tmp_path / name / f"{name}.pid").exists()
        assert not st["mosquitto"]["running"]
        # up again: already running ones are reused, not restarted
        again = services.up(names, tmp_path, {})
        assert {n: s.pid for n, s in again.items()} == {n: s.pid for n, s in started.items()}
        pids = [s.pid for s in started.values()]
    finally:
        stopped = services.down(tmp_path)
    assert sorted(stopped) == sorted(names)
    assert not any(v["running"] for v in services.status(tmp_path).values())
    assert not any(Path(f"/proc/{p}").exists() for p in pids)
    assert services.down(tmp_path) == []


def test_up_with_fixed_port(tmp_path, require_services):
    require_services("mosquitto")
    from twinwatch.app.services import free_port

    port = free_port()
    try:
        assert services.up(["mosquitto"], tmp_path, {"mosquitto": port})["mosquitto"].port == port
        assert services.status(tmp_path)["mosquitto"]["port"] == port
    finally:
        services.down(tmp_path)


# -- data round trips ----------------------------------------------------------------
def test_influxdb_write_query_roundtrip(influxdb, influx_db):
    now = int(time.time())
    lines = (
        f"traffic,sensor=s1 speed=42.5,count=7i {now}\n"
        f"traffic,sensor=s2 speed=13.0,count=2i {now}\n"
    )
    r = httpx.post(
        f"{influxdb.url}/write", params={"db": influx_db, "precision": "s"}, content=lines
    )
    assert r.status_code == 204, r.text
    r = httpx.get(
        f"{influxdb.url}/query",
        params={"db": influx_db, "epoch": "s", "q": "SELECT speed, count, sensor FROM traffic"},
    )
    r.raise_for_status()
    series = r.json()["results"][0]["series"][0]
    assert series["name"] == "traffic" and series["columns"] == ["time", "speed", "count", "sensor"]
    assert sorted(series["values"]) == [[now, 13.0, 2, "s2"], [now, 42.5, 7, "s1"]]


def test_influx_db_fixture_is_fresh(influxdb, influx_db):
    r = httpx.get(f"{influxdb.url}/query", params={"q": "SHOW DATABASES"})
    assert [influx_db] in r.json()["results"][0]["series"][0]["values"]
    r = httpx.get(f"{influxdb.url}/query", params={"db": influx_db, "q": "SHOW MEASUREMENTS"})
    assert "series" not in r.json()["results"][0]


def test_victoriametrics_v2_write_roundtrip(victoriametrics):
    m = f"tw_{uuid.uuid4().hex[:8]}"
    now = int(time.time())
    r = httpx.post(
        f"{victoriametrics.url}/api/v2/write",
        params={"org": "twinwatch", "bucket": "test", "precision": "s"},
        content=f"{m},sensor=s1,district=d1 speed=42.5,count=7i {now}\n",
    )
    assert r.status_code == 204, r.text

    def export():
        r = httpx.get(
            f"{victoriametrics.url}/api/v1/export", params={"match[]": f'{{__name__=~"{m}_.*"}}'}
        )
        r.raise_for_status()
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]

    rows = _wait_for(lambda: len(export()) == 2 and export())
    assert rows, "data written via /api/v2/write never became visible"
    by_name = {row["metric"]["__name__"]: row for row in rows}
    assert by_name[f"{m}_speed"]["metric"] == {
        "__name__": f"{m}_speed",
        "sensor": "s1",
        "district": "d1",
    }
    assert by_name[f"{m}_speed"]["values"] == [42.5] and by_name[f"{m}_count"]["values"] == [7]
    assert by_name[f"{m}_speed"]["timestamps"] == [now * 1000]

    r = httpx.get(f"{victoriametrics.url}/api/v1/query", params={"query": f"{m}_speed"})
    (result,) = r.json()["data"]["result"]
    assert float(result["value"][1]) == 42.5


def test_mosquitto_pubsub_qos1(mosquitto):
    import paho.mqtt.client as mqtt

    got: queue.Queue = queue.Queue()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, msg: got.put(msg.payload)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("tw/test", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    try:
        time.sleep(0.3)
        for i in range(100):
            pub.publish("tw/test", f"m{i}", qos=1)
        received = [got.get(timeout=10) for _ in range(100)]
        assert received == [f"m{i}".encode() for i in range(100)]
    finally:
        for c in (pub, sub):
            c.loop_stop()
            c.disconnect()


def test_alertmanager_accepts_alerts(alertmanager):
    alert = {
        "labels": {"alertname": f"TwTest{uuid.uuid4().hex[:6]}", "severity": "warning"},
        "annotations": {"summary": "test"},
    }
    r = httpx.post(f"{alertmanager.url}/api/v2/alerts", json=[alert])
    assert r.status_code == 200, r.text
    names = _wait_for(
        lambda: (
            {
                a["labels"]["alertname"]
                for a in httpx.get(f"{alertmanager.url}/api/v2/alerts").json()
            }
            >= {alert["labels"]["alertname"]}
        )
    )
    assert names


def test_default_alertmanager_config_is_valid(tmp_path, require_services):
    require_services("alertmanager")
    conf = tmp_path / "am.yml"
    conf.write_text(services.DEFAULT_ALERTMANAGER_CONFIG)
    r = subprocess.run(["amtool", "check-config", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_prometheus_scrapes_targets(service_factory, victoriametrics):
    prom = service_factory(
        services.Prometheus, scrape_targets=[f"127.0.0.1:{victoriametrics.port}"]
    )

    def up_value():
        r = httpx.get(f"{prom.url}/api/v1/query", params={"query": 'up{job="twinwatch"}'})
        res = r.json()["data"]["result"]
        return res and res[0]["value"][1] == "1"

    assert _wait_for(up_value, timeout=20), "prometheus never scraped its target"
