"""Local service harness: InfluxDB, Mosquitto, Alertmanager, VictoriaMetrics, Prometheus.

Used by the test fixtures (tests/conftest.py) and by ``twinwatch services up|down|status``.
The binaries are the Debian packages installed by ``scripts/install-services.sh``; nothing
here depends on systemd or on the init scripts the packages ship.

Design
------
* **Project-local data dirs.** Every config file, database, WAL, persistence file, log
  (``<data_dir>/<name>.log``) and pid file (``<data_dir>/<name>.pid``) lives under the
  ``data_dir`` given to the service, and the process runs with that as its cwd. Nothing
  touches /var/lib or /etc, so runs are reproducible, parallel runs don't share state and
  ``rm -rf`` of the dir is a full reset.
* **Loopback only.** Every listener (including side ports such as InfluxDB's RPC port and
  Alertmanager's gossip port, which default to all interfaces) is bound to 127.0.0.1 or
  disabled: a test stack must never be reachable from the network. Ports default to free
  ephemeral ports, so nothing clashes with a distro-started daemon on the standard ports.
* **Stop by PID, never by name.** Other copies of these daemons (e.g. one started by the
  Debian package's invoke-rc.d, or another developer's stack) are not ours. We signal only
  the PID (process group) we recorded, and only after checking that /proc/<pid>/cmdline is
  still the command line we launched, so a stale pid file whose PID was reused by an
  unrelated process never kills that process.

VictoriaMetrics and the InfluxDB v2 write API
---------------------------------------------
VictoriaMetrics accepts InfluxDB line protocol at ``POST {url}/api/v2/write?precision=s``
(``org``/``bucket`` are accepted and ignored; v1-style ``/write`` works too), answers
204. A line ``traffic,sensor=s1 speed=42.5,count=7i 1700000000`` becomes the series
``traffic_speed{sensor="s1"}`` and ``traffic_count{sensor="s1"}`` (always
``<measurement>_<field>``, also for a field named ``value``; org/bucket add no label; default
precision is ns). Data is searchable ~1-2 s after the write (poll). Read it back with::

    GET {url}/api/v1/export?match[]={__name__=~"traffic_.*"}
    -> one JSON object per line (JSON Lines, not a JSON array):
       {"metric":{"__name__":"traffic_speed","sensor":"s1"},"values":[42.5],"timestamps":[1700000000000]}
       (timestamps in milliseconds)

or ``GET {url}/api/v1/query?query=traffic_speed`` (Prometheus JSON:
``data.result[i].value == [unix_ts, "42.5"]``). We start VM with ``-search.latencyOffset=0s``;
with the default 30s the query API hides points younger than 30 s. Points older than
``-retentionPeriod`` (here 100y) are dropped silently.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, ClassVar, Self

import httpx

INSTALL_HINT = "run scripts/install-services.sh"
_CHILDREN: dict[int, subprocess.Popen] = {}  # processes started by this interpreter, to reap them


__all__ = [
    "ServiceError",
    "BinaryMissing",
    "free_port",
    "port_free",
    "Service",
    "InfluxDB",
    "Mosquitto",
    "Alertmanager",
    "VictoriaMetrics",
    "Prometheus",
    "SERVICES",
    "up",
    "down",
    "status",
]


class ServiceError(RuntimeError):
    """A service could not be started/stopped."""


class BinaryMissing(ServiceError):
    """The service's binary is not installed."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    """pid exists and is not a zombie (an unreaped zombie is dead for our purposes)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _cmdline(pid: int) -> list[str] | None:
    """argv of a live process, else None (also None while it is exiting)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes() if _alive(pid) else b""
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1] or None


def _wait_gone(pid: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        proc = _CHILDREN.get(pid)
        if (proc.poll() is not None) if proc is not None else not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


class Service:
    name: ClassVar[str]
    binary: str  # the class's default; an instance may be given its own
    ready_path: ClassVar[str | None] = None  # HTTP readiness path; None = TCP connect
    ready_status: ClassVar[int] = 200
    scheme: ClassVar[str] = "http"

    def __init__(
        self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1", **extra: Any
    ):
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{self.name}: refusing to bind non-loopback address {host!r}")
        self.data_dir = Path(data_dir).resolve()
        self._host = host
        self._port = port or free_port(host)
        self.extra = extra
        self.binary = extra.pop("binary", None) or type(self).binary
        self.pid: int | None = None
        self.cmd: list[str] | None = None

    # -- paths / properties -------------------------------------------------
    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / f"{self.name}.pid"

    @property
    def running(self) -> bool:
        return self.pid is not None and self._owns(self.pid)

    def _owns(self, pid: int) -> bool:
        """True if pid is alive and is still the process we launched."""
        argv = _cmdline(pid)
        if not argv or Path(argv[0]).name != Path(self.binary).name:
            return False
        return self.cmd is None or argv == self.cmd

    # -- to be provided by subclasses ---------------------------------------
    def configure(self) -> list[str]:
        """Write config files into data_dir; return the command line."""
        raise NotImplementedError

    def ready(self) -> bool:
        try:
            if self.ready_path is None:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return True
            return (
                httpx.get(self.url + self.ready_path, timeout=1, trust_env=False).status_code
                == self.ready_status
            )
        except (OSError, httpx.HTTPError):
            return False

    # -- lifecycle ------------------------------------------------------------
    def start(self, timeout: float = 30) -> Self:
        if self.running:
            return self
        if not shutil.which(self.binary):
            raise BinaryMissing(f"{self.name}: binary {self.binary} not found; {INSTALL_HINT}")
        if not port_free(self.host, self.port):  # else we'd see a foreign server as "ready"
            raise ServiceError(f"{self.name}: {self.host}:{self.port} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cmd = self.configure()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")
        }  # env overrides config
        with open(self.log_file, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(self.cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=env,
                start_new_session=True,
            )
        _CHILDREN[proc.pid] = proc
        self.pid = proc.pid
        self.pid_file.write_text(
            json.dumps(
                {
                    "pid": proc.pid,
                    "port": self.port,
                    "host": self.host,
                    "binary": self.binary,
                    "cmdline": self.cmd,
                },
                indent=1,
            )
        )
        deadline = time.monotonic() + timeout
        while proc.poll() is None and not self.ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is None and self.ready():
            return self
        why = (
            f"exited with {proc.returncode}"
            if proc.returncode is not None
            else f"not ready after {timeout}s"
        )
        self.stop()
        raise ServiceError(
            f"{self.name} {why}; last lines of {self.log_file}:\n{_tail(self.log_file)}"
        )

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the process group, SIGKILL after timeout; only if the PID is still ours."""
        pid, self.pid = self.pid, None
        if pid is not None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
                if not self._owns(pid):  # checked before every signal
                    break
                try:
                    os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
                except ProcessLookupError:
                    break
                if _wait_gone(pid, wait):
                    break
            if (proc := _CHILDREN.pop(pid, None)) is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)  # reap our own child: no zombie, and /proc/<pid> is gone on return
        self.pid_file.unlink(missing_ok=True)

    @classmethod
    def from_pidfile(cls, data_dir: Path) -> Self | None:
        """Re-attach to a service started earlier (e.g. by another process)."""
        pid_file = Path(data_dir) / f"{cls.name}.pid"
        try:
            info = json.loads(pid_file.read_text())
            # The expected binary is the class's, never the file's: a forged/stale file can't widen
            # the check.
            svc = cls(
                data_dir,
                port=int(info.get("port") or 0) or None,
                host=info.get("host", "127.0.0.1"),
            )
            svc.pid, svc.cmd = int(info["pid"]), info.get("cmdline")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return svc

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} pid={self.pid} dir={self.data_dir}>"


class InfluxDB(Service):
    name, binary, ready_path, ready_status = "influxdb", "/usr/bin/influxd", "/ping", 204

    def configure(self) -> list[str]:
        d, h = self.data_dir, self.host
        rpc = self.extra.get("rpc_port") or free_port(h)
        # Debian's 1.6.7 uses `reporting-enabled` (patched); upstream uses `reporting-disabled`.
        (d / "influxdb.conf").write_text(f"""\
reporting-disabled = true
reporting-enabled = false
bind-address = "{h}:{rpc}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[http]
  bind-address = "{h}:{self.port}"
  auth-enabled = {str(bool(self.extra.get("auth"))).lower()}
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  log-enabled = false
[[udp]]
  enabled = false
[[graphite]]
  enabled = false
[[collectd]]
  enabled = false
[[opentsdb]]
  enabled = false
""")
        return [self.binary, "run", "-config", str(d / "influxdb.conf")]

    def create_database(self, name: str) -> None:
        r = httpx.post(
            self.url + "/query",
            data={"q": f'CREATE DATABASE "{name}"'},
            timeout=10,
            trust_env=False,
        )
        r.raise_for_status()
        if "error" in r.text:
            raise ServiceError(f"CREATE DATABASE {name}: {r.text}")

    def drop_database(self, name: str) -> None:
        httpx.post(
            self.url + "/query", data={"q": f'DROP DATABASE "{name}"'}, timeout=10, trust_env=False
        ).raise_for_status()


class Mosquitto(Service):
    name, binary, scheme = "mosquitto", "/usr/sbin/mosquitto", "mqtt"

    def configure(self) -> list[str]:
        pw = self.extra.get("password_file")
        auth = f"allow_anonymous false\npassword_file {pw}" if pw else "allow_anonymous true"
        tls = self.extra.get("tls")  # (cafile, certfile, keyfile): the listener speaks TLS only
        if tls:
            auth += "\ncafile {}\ncertfile {}\nkeyfile {}".format(*tls)
        # As root, mosquitto 2 drops to user "mosquitto", which can't write our data dir: stay us.
        user = f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        text = self.extra.get("config_text")  # e.g. docker/mosquitto/mosquitto.conf, as it is
        if text is not None:  # ... but on our port and data dir, and with our auth
            lines = []
            for line in text.splitlines():
                word = line.split(maxsplit=1)[0] if line.strip() else ""
                if word == "listener":
                    line = f"listener {self.port} {self.host}"
                elif word == "persistence_location":
                    line = f"persistence_location {self.data_dir}/"
                elif word == "allow_anonymous" or (word == "password_file" and pw):
                    line = auth
                lines.append(line)
            (self.data_dir / "mosquitto.conf").write_text("\n".join(lines) + "\n" + user)
            return [self.binary, "-c", str(self.data_dir / "mosquitto.conf")]
        (self.data_dir / "mosquitto.conf").write_text(f"""\
listener {self.port} {self.host}
{auth}
persistence true
persistence_location {self.data_dir}/
max_inflight_messages 0
max_queued_messages 1000000
log_dest stdout
log_type error
log_type warning
{user}""")
        return [self.binary, "-c", str(self.data_dir / "mosquitto.conf")]


DEFAULT_ALERTMANAGER_CONFIG = """\
route:
  receiver: default
  group_by: [alertname]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 4h
receivers:
  - name: default
"""


class Alertmanager(Service):
    name, binary, ready_path = "alertmanager", "/usr/bin/prometheus-alertmanager", "/-/ready"

    def configure(self) -> list[str]:
        conf = self.data_dir / "alertmanager.yml"
        conf.write_text(self.extra.get("config_text") or DEFAULT_ALERTMANAGER_CONFIG)
        return [
            self.binary,
            f"--config.file={conf}",
            f"--storage.path={self.data_dir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]


class VictoriaMetrics(Service):
    name, binary, ready_path = "victoriametrics", "/usr/bin/victoria-metrics", "/health"

    def configure(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_dir / 'vm'}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-loggerLevel=WARN",
        ]


class Prometheus(Service):
    name, binary, ready_path = "prometheus", "/usr/bin/prometheus", "/-/ready"

    def configure(self) -> list[str]:
        targets = list(self.extra.get("scrape_targets") or [])
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [{"job_name": "twinwatch", "static_configs": [{"targets": targets}]}]
            if targets
            else [],
        }
        conf = self.data_dir / "prometheus.yml"
        conf.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
        return [
            self.binary,
            f"--config.file={conf}",
            f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--log.level=warn",
        ]


SERVICES: dict[str, type[Service]] = {
    c.name: c for c in (InfluxDB, Mosquitto, Alertmanager, VictoriaMetrics, Prometheus)
}


def _lookup(name: str) -> type[Service]:
    try:
        return SERVICES[name]
    except KeyError:
        raise ServiceError(f"unknown service {name!r}; known: {', '.join(SERVICES)}") from None


def up(names: list[str], base_dir: Path, ports: dict[str, int] | None = None) -> dict[str, Service]:
    """Start the named services under base_dir/<name>/ unless already running there."""
    ports, result, started = ports or {}, {}, []
    try:
        for name in names or list(SERVICES):
            cls = _lookup(name)
            svc = cls.from_pidfile(Path(base_dir) / name)
            if svc is None or not svc.running:
                svc = cls(Path(base_dir) / name, port=ports.get(name)).start()
                started.append(svc)
            result[name] = svc
    except BaseException:
        for svc in started:
            svc.stop()
        raise
    return result


def down(base_dir: Path, names: list[str] | None = None) -> list[str]:
    """Stop the named services (default: every one) with a pid file under base_dir; return the
    names actually stopped. Stale pid files (dead PID, or PID reused by another program) are
    removed, nothing is signalled."""
    stopped = []
    for name in names or list(SERVICES):
        cls = _lookup(name)
        svc = cls.from_pidfile(Path(base_dir) / name)
        if svc is not None:
            was_running = svc.running
            svc.stop()
            if was_running:
                stopped.append(name)
        else:
            (Path(base_dir) / name / f"{name}.pid").unlink(missing_ok=True)  # unreadable pid file
    return stopped


def status(base_dir: Path, names: list[str] | None = None) -> dict[str, dict]:
    """State of the named services (default: every one) under base_dir."""
    out = {}
    for name in names or list(SERVICES):
        cls = _lookup(name)
        svc = cls.from_pidfile(Path(base_dir) / name)
        running = svc is not None and svc.running
        out[name] = {
            "running": running,
            "pid": svc.pid if svc and running else None,
            "url": svc.url if svc else None,
            "port": svc.port if svc else None,
            "data_dir": str(Path(base_dir) / name),
        }
    return out
