"""Every alert paged exactly once, in order, across crashes and restarts (issue #15, part 3).

Real processes: Mosquitto (the flow's persistent session), InfluxDB 1.6.7, Alertmanager 0.25
with a webhook receiver that counts the pages (tests/pager.py), and ``twinwatch run`` as a
subprocess. One chlorine episode: 40 normal readings a minute apart, 3 below the 0.1 mg/L legal
minimum (``limits``, severe, from minute 40), then normal again: it resolves at minute 52
(``clear_s`` 600). For each way of stopping the flow, the pager must get exactly one firing and
one resolved notification for the episode, with its real start and end, and no resolved
notification of anything it was never paged firing (an orphan).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from flowproc import flow_env, metrics_text, wait_subscribed  # tests/flowproc.py
from pager import Pager  # tests/pager.py

from twinwatch.alerting.store import DeliveryStore
from twinwatch.app import services
from twinwatch.config import load_config
from twinwatch.mqtt import connect, make_client
from twinwatch.schema import fingerprint

pytestmark = pytest.mark.services

T0 = datetime(2026, 11, 20, tzinfo=UTC)
TOPIC = "city/water/sejong-wtp/clearwell/chlorine"
LIMITS = fingerprint(
    {
        "domain": "water",
        "site": "sejong-wtp",
        "asset": "clearwell",
        "sensor": "chlorine",
        "rule": "limits",
    }
)
START, END = "2026-11-20T00:40:00", "2026-11-20T00:52:00"  # the episode, in event time


def value(i: int) -> float:
    return 0.02 if 40 <= i <= 42 else 0.9 + 0.01 * ((i * 7) % 5)


class Flow:
    """``twinwatch run`` on the test's services, restartable with the same session and state."""

    def __init__(self, tmp_path, mosquitto, influxdb, influx_db, am, epoch_s: float = 600):
        self.env, port = flow_env(
            tmp_path,
            mosquitto,
            influxdb,
            influx_db,
            am.url,
            MQTT__CLIENT_ID=f"paging-{influx_db}",
            ALERTMANAGER__RESEND_INTERVAL_S="1",
            # no RESOLVE_HOLD_S: the hold is read from the running Alertmanager (0.5 s/1 s + 2 s)
        )
        self.metrics = f"http://127.0.0.1:{port}/metrics"
        self.recovery = tmp_path / "recovery"
        self.epoch_s = epoch_s
        self.log_path = tmp_path / "flow.log"
        self.log = self.log_path.open("ab")
        self.proc: subprocess.Popen | None = None
        self.config = load_config(environ=self.env)
        self.pub = make_client(self.config.services.mqtt, f"pub-{influx_db}", clean_session=True)
        connect(self.pub, self.config.services.mqtt)
        self.pub.loop_start()

    def start(self, idle_timeout: float = 8) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twinwatch.app.cli",
                "run",
                "--idle-timeout",
                str(idle_timeout),
                "--recovery-dir",
                str(self.recovery),
                "--epoch-s",
                str(self.epoch_s),
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_subscribed(self.metrics, self.proc, output=self.output)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def publish(self, indices) -> None:
        enc = msgspec.json.Encoder()
        for i in indices:
            payload = enc.encode({"time": T0 + timedelta(minutes=i), "value": value(i)})
            self.pub.publish(TOPIC, payload, qos=1).wait_for_publish(10)

    def wait_read(self, n: int, timeout: float = 30) -> None:
        """Wait until the flow has taken ``n`` MQTT messages in this run."""
        want = f'twinwatch_records_in_total{{source="mqtt"}} {float(n)}'
        deadline = time.monotonic() + timeout
        while want not in metrics_text(self.metrics):
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, f"flow did not read {n} messages"
            time.sleep(0.1)

    def wait_exit(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        self.pub.loop_stop()
        self.pub.disconnect()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def pager():
    p = Pager()
    yield p
    p.close()


@pytest.fixture
def world(tmp_path, mosquitto, influxdb, influx_db, service_factory, pager):
    am = service_factory(services.Alertmanager, config_text=pager.alertmanager_config())
    flow = Flow(tmp_path, mosquitto, influxdb, influx_db, am)
    yield flow, am
    flow.close()


def assert_paged_once(pager: Pager, am, flow: Flow, ends=(END,)) -> None:
    """After the flow exited: the queue is empty, Alertmanager has settled, and the episode was
    paged exactly once firing and once resolved, with its real start and end."""
    store = DeliveryStore(flow.config.services.alertmanager.state_path)
    assert store.depth("alertmanager") == 0
    store.close()
    pager.settled(am.url)
    limits = pager.alerts(rule="limits")
    assert [(a["status"], a["startsAt"][:19]) for a in limits] == [
        ("firing", START),
        ("resolved", START),
    ], limits
    assert limits[1]["endsAt"][:19] in ends
    assert pager.orphans() == []
    assert all(n == 1 for n in pager.count().values()), pager.count()  # nothing paged twice


def test_kill_9_just_after_firing(world, pager):
    """The flow is killed right after the page, before any snapshot holds the firing (the
    recovery snapshot is older: --epoch-s 600), and its MQTT messages are acknowledged. The
    restarted engine takes the episode back from the delivery store: no second page, and the
    resolve comes when the readings are normal again (before: firing for ever)."""
    flow, am = world
    flow.start()
    flow.publish(range(43))
    pager.wait_for(lambda: pager.count(rule="limits")[(LIMITS, "firing")] == 1)
    flow.proc.send_signal(signal.SIGKILL)
    flow.proc.wait()
    flow.start()
    flow.publish(range(43, 61))
    pager.wait_for(lambda: pager.count(rule="limits")[(LIMITS, "resolved")] == 1)
    assert flow.wait_exit() == 0, flow.output()
    # 00:52 if minutes 41-42 were redelivered to the new process; 00:50 if the killed one had
    # acknowledged them (durable in InfluxDB) without a snapshot of their hits: the engine then
    # counts clear_s from the paged firing, the last hit it knows.
    assert_paged_once(pager, am, flow, ends=(END, "2026-11-20T00:50:00"))


def test_fire_and_resolve_while_the_flow_is_down(world, pager):
    """The episode happens while the flow is stopped; Mosquitto queues it in the flow's
    session. On restart the firing and the resolve arrive in one catch-up batch: both are paged,
    in order, with the episode's own times (before: 0 notifications)."""
    flow, am = world
    flow.start()
    flow.publish(range(40))
    flow.wait_read(40)
    flow.proc.send_signal(signal.SIGTERM)
    assert flow.wait_exit() == 0, flow.output()
    flow.publish(range(40, 61))  # the whole episode, nobody listening
    flow.start()
    pager.wait_for(lambda: pager.count(rule="limits")[(LIMITS, "resolved")] == 1)
    assert flow.wait_exit() == 0, flow.output()
    assert_paged_once(pager, am, flow)


def test_sigterm_one_second_after_firing(world, pager):
    """SIGTERM 1 s after the page: the flow drains, closes its sinks and exits 0 (before: -15,
    sinks not closed); the restarted flow resolves the episode with the start that was paged
    (before: paged twice, with the wrong start)."""
    flow, am = world
    flow.start(idle_timeout=60)
    flow.publish(range(43))
    pager.wait_for(lambda: pager.count(rule="limits")[(LIMITS, "firing")] == 1)
    time.sleep(1.0)  # the scenario: a stop one second after the alert
    t0 = time.monotonic()
    flow.proc.send_signal(signal.SIGTERM)
    assert flow.wait_exit(timeout=30) == 0, flow.output()
    assert "SIGTERM: stopping" in flow.output() and "stopped cleanly" in flow.output()
    print(f"SIGTERM -> exit 0 in {time.monotonic() - t0:.2f} s")
    flow.start()
    flow.publish(range(43, 61))
    pager.wait_for(lambda: pager.count(rule="limits")[(LIMITS, "resolved")] == 1)
    assert flow.wait_exit() == 0, flow.output()
    assert_paged_once(pager, am, flow)


def test_ctrl_c_stops_a_paced_replay(tmp_path, mosquitto, influxdb, influx_db):
    """SIGINT stops a replay paced at 1x (ten hours of data) promptly and cleanly (before:
    Ctrl-C did not stop it within 10 s)."""
    replay = tmp_path / "slow.jsonl"
    enc = msgspec.json.Encoder()
    with replay.open("wb") as f:
        for i in range(600):
            payload = enc.encode({"time": T0 + timedelta(minutes=i), "value": value(i)})
            f.write(enc.encode({"topic": TOPIC, "payload": payload.decode()}) + b"\n")
    env, port = flow_env(tmp_path, mosquitto, influxdb, influx_db, FLOW__BATCH_SIZE="1")
    metrics = f"http://127.0.0.1:{port}/metrics"
    log = tmp_path / "replay.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "twinwatch.app.cli", "run", "--replay", str(replay)]
            + ["--speed", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while 'twinwatch_records_in_total{source="file"}' not in metrics_text(metrics):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the replay did not start"
            time.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        took = time.monotonic() - t0
    assert rc == 0, log.read_text()
    assert took < 10, f"took {took:.1f} s"
    assert "SIGINT: stopping" in log.read_text()
    print(f"SIGINT -> exit 0 in {took:.2f} s")


def test_log_flow_pages_a_webhook_only_site_and_stops_on_sigterm(
    tmp_path, influxdb, influx_db, pager
):
    """`twinwatch logs` builds the same alert sink as `run` (a site with only the signed
    webhook gets its pages), and SIGTERM stops a file it follows: drained, exit 0."""
    log = tmp_path / "auth.log"
    log.write_bytes(
        b"".join(
            b"<38>1 2026-11-23T01:00:%02dZ gw1 sshd 4321 - - Failed password for root from "
            b"192.0.2.11 port 4242 ssh2\n" % i
            for i in range(12)
        )
    )
    env = dict(
        os.environ,
        TW_TEST_HOOK_SECRET="0123456789abcdef0123456789abcdef",
        TWINWATCH__SERVICES__ALERTMANAGER__URL="",
        TWINWATCH__SERVICES__ALERTMANAGER__WEBHOOK_URL=pager.url,
        TWINWATCH__SERVICES__ALERTMANAGER__WEBHOOK_SECRET__ENV="TW_TEST_HOOK_SECRET",
        TWINWATCH__SERVICES__ALERTMANAGER__STATE_PATH=str(tmp_path / "delivery.sqlite"),
        TWINWATCH__SERVICES__INFLUXDB__URL=influxdb.url,
        TWINWATCH__SERVICES__INFLUXDB__DATABASE=influx_db,
        TWINWATCH__SERVICES__INFLUXDB__SPOOL_DIR=str(tmp_path / "spool"),
        TWINWATCH__SERVICES__METRICS__PORT="0",
        TWINWATCH__FLOW__DEAD_LETTER_PATH=str(tmp_path / "dead.jsonl"),
        TWINWATCH__SECURITY__HOSTS="{gw1: sejong-soc/gw-1}",
    )
    out = tmp_path / "logs.log"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "twinwatch.app.cli", "logs", "--tail", str(log)],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
        try:
            pager.wait_for(lambda: pager.alerts(rule="brute_force"), timeout=60)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, out.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    (page,) = pager.alerts(rule="brute_force")
    assert page["status"] == "firing" and page["labels"]["asset"] == "gw-1"
    assert "SIGTERM: stopping" in out.read_text()
    assert (tmp_path / "delivery.twinwatch-logs.sqlite").is_file()  # the log flow's own queue
