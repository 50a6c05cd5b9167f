"""Delivery through a real Alertmanager 0.25 configured from our config by
``twinwatch.alerting.amconfig``.

Receivers are real local servers: an HTTP server (Alertmanager's webhook and Slack-compatible
notifiers post to it) and an aiosmtpd SMTP server (the email notifier). Each test starts its own
Alertmanager with the generated config (checked first by the real ``amtool check-config``) and
sends alerts through the flow's AlertmanagerSink. Times: group_wait 0.5 s, group_interval 1 s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import msgspec
import pytest
import yaml
from prometheus_client import REGISTRY

from twinwatch.alerting import AlertmanagerClient
from twinwatch.alerting.amconfig import amconfig, render
from twinwatch.alerting.ops import parse_matchers, silence
from twinwatch.alerting.store import last_states
from twinwatch.app import services
from twinwatch.config import EXAMPLE_CONFIG, ConfigError, parse_config
from twinwatch.flows.sinks.alertmanager import AlertmanagerSink
from twinwatch.schema import Alert, fingerprint

pytestmark = pytest.mark.services
GROUP_WAIT_S = 0.5


class Receiver:
    """A local HTTP server recording every POST as (path, JSON body, receive time)."""

    def __init__(self):
        self.posts: list[tuple[str, dict, float]] = []
        self.cond = threading.Condition()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.cond:
                    outer.posts.append((self.path, json.loads(body), time.time()))
                    outer.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, path: str = "/hook", **labels: str) -> list[tuple[str, dict]]:
        """(status, alert) of every notified alert whose labels include ``labels``."""
        with self.cond:
            return [
                (a["status"], a)
                for p, body, _ in self.posts
                if p == path
                for a in body.get("alerts", ())
                if labels.items() <= a["labels"].items()
            ]

    def wait(self, pred, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def close(self):
        self.server.shutdown()


class Smtp:
    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list[str] = []

        class Handler:
            async def handle_DATA(inner, server, session, envelope):
                self.messages.append(envelope.content.decode("utf-8", "replace"))
                return "250 OK"

        self.port = services.free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self):
        self.controller.stop()


def config_with(receiver_url: str, smtp_port: int, slack_file: str, **routing):
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    raw["services"]["alertmanager"]["routing"] = {
        "receiver": "hook",
        "receivers": [
            {"name": "hook", "type": "webhook", "url": f"{receiver_url}/hook"},
            {
                "name": "mail",
                "type": "email",
                "to": "oncall@example.org",
                "smtp_smarthost": f"127.0.0.1:{smtp_port}",
                "smtp_require_tls": False,
            },
            {
                "name": "chat",
                "type": "slack",
                "url_secret": {"file": slack_file},
                "channel": "#ops",
            },
        ],
        "routes": [
            # structures: webhook, and for alert/severe also mail and chat
            {
                "receiver": "mail",
                "domain": "structures",
                "severities": ["alert", "severe"],
                "continue": True,
            },
            {
                "receiver": "chat",
                "domain": "structures",
                "severities": ["alert", "severe"],
                "continue": True,
            },
            {"receiver": "hook"},
        ],
        "group_wait_s": GROUP_WAIT_S,
        "group_interval_s": 1,
        "repeat_interval_s": 3600,
        **routing,
    }
    for rule in raw["alert_rules"]:
        if rule["detector"] == "stuck":
            rule["renotify_s"] = 2  # this rule's own minimum re-notify interval
    return parse_config(raw, environ={})


@pytest.fixture
def stack(tmp_path, service_factory, require_services):
    require_services("alertmanager")
    if not shutil.which("amtool"):
        pytest.fail("amtool is not installed (prometheus-alertmanager package)")
    rx, smtp = Receiver(), Smtp()
    slack_file = tmp_path / "slack-url"
    slack_file.write_text(f"{rx.url}/slack\n")
    config = config_with(rx.url, smtp.port, str(slack_file))
    text = render(config)
    (tmp_path / "am.yml").write_text(text)
    check = subprocess.run(
        ["amtool", "check-config", str(tmp_path / "am.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    am = service_factory(services.Alertmanager, config_text=text)
    cfg = msgspec.structs.replace(
        config.services.alertmanager,
        url=am.url,
        resend_interval_s=0.5,
        state_path=str(tmp_path / "state.db"),
    )
    yield SimpleNamespace(rx=rx, smtp=smtp, am=am, cfg=cfg, config=config)
    rx.close()
    smtp.close()


def now() -> datetime:
    return datetime.now(UTC)


def mk(
    status="firing",
    *,
    domain="water",
    site="s1",
    asset="a1",
    sensor="p1",
    rule="limits",
    severity="alert",
    starts_at=None,
    value=9.5,
) -> Alert:
    labels = {"domain": domain, "site": site, "asset": asset, "sensor": sensor, "rule": rule}
    t = starts_at or now()
    return Alert(
        fingerprint=fingerprint(labels),
        status=status,
        severity=severity,
        domain=domain,
        site=site,
        asset=asset,
        sensor=sensor,
        rule=rule,
        starts_at=t,
        at=now(),
        value=value,
        unit="bar",
        summary=f"{rule} on {site}/{asset}/{sensor}",
        ends_at=now() if status == "resolved" else None,
    )


def slack(stack) -> list[dict]:
    with stack.rx.cond:
        return [body for p, body, _ in stack.rx.posts if p == "/slack"]


def sink(stack, **kw):
    """A partition of the flow's alert sink on the stack; its delivery thread posts."""
    return AlertmanagerSink(stack.cfg, **kw).build("am", 0, 1)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_generated_config_has_the_routing_tree_inhibitions_and_receivers(stack):
    doc = amconfig(stack.config)
    routes = doc["route"]["routes"]
    assert doc["route"]["group_by"] == ["alertname", "site", "asset"]
    assert routes[0]["matchers"] == ['domain="structures"', 'severity=~"alert|severe"']
    assert {"matchers": ['rule="stuck"'], "repeat_interval": "2s"} in routes[0]["routes"]
    assert len(doc["inhibit_rules"]) == 3
    kinds = {k for r in doc["receivers"] for k in r if k.endswith("_configs")}
    assert kinds == {"webhook_configs", "email_configs", "slack_configs"}


def test_env_secret_and_unknown_receiver_are_clear_errors(tmp_path):
    rx_url = "http://127.0.0.1:1"
    cfg = config_with(rx_url, 25, str(tmp_path / "x"))
    raw = msgspec.to_builtins(cfg)
    raw["services"]["alertmanager"]["routing"]["receivers"][2]["url_secret"] = {"env": "SLACK"}
    with pytest.raises(ConfigError, match=r"must be a \{file: \.\.\.\} reference"):
        amconfig(parse_config(raw, environ={}))
    raw = msgspec.to_builtins(cfg)
    raw["services"]["alertmanager"]["routing"]["routes"][0]["receiver"] = "pager"
    with pytest.raises(ConfigError, match=r"routes\[0\].receiver: no receiver named 'pager'"):
        amconfig(parse_config(raw, environ={}))


def test_firing_and_resolved_reach_webhook_email_and_slack_within_group_wait(stack):
    part = sink(stack)
    a = mk(
        domain="structures",
        site="bridge",
        asset="span-2",
        sensor="strain-1",
        severity="severe",
        value=950,
    )
    sent = time.time()
    part.write_batch([a])
    assert stack.rx.wait(
        lambda: stack.rx.alerts(sensor="strain-1") and slack(stack) and stack.smtp.messages,
        timeout=10,
    )
    first = min(t for p, _, t in stack.rx.posts if p == "/hook")
    assert first - sent < GROUP_WAIT_S + 1.5  # group_wait, plus one dispatch tick
    ((status, hook),) = stack.rx.alerts(sensor="strain-1")
    assert status == "firing" and hook["labels"]["severity"] == "severe"
    ann = hook["annotations"]
    assert ann["summary"] == a.summary and "950 bar" in ann["description"]
    assert ann["runbook_url"] == "https://runbooks.example/twinwatch/structures/limits"
    assert "var-asset=span-2" in ann["dashboard_url"] and "from=" in ann["dashboard_url"]
    chat = json.dumps(slack(stack)[0])
    assert "limits on bridge/span-2/strain-1" in chat and "runbooks.example" in chat
    mail = stack.smtp.messages[0]
    assert "limits on bridge/span-2/strain-1" in mail and "runbooks.example" in mail
    part.write_batch(
        [
            mk(
                "resolved",
                domain="structures",
                site="bridge",
                asset="span-2",
                sensor="strain-1",
                severity="severe",
                starts_at=a.starts_at,
            )
        ]
    )
    assert stack.rx.wait(
        lambda: ("resolved",) in [(s,) for s, _ in stack.rx.alerts(sensor="strain-1")], timeout=10
    )
    assert stack.rx.wait(lambda: len(stack.smtp.messages) >= 2, timeout=10)
    part.close()


def test_water_caution_goes_to_the_webhook_only(stack):
    part = sink(stack)
    part.write_batch([mk(severity="caution", sensor="cl-1")])
    assert stack.rx.wait(lambda: stack.rx.alerts(sensor="cl-1"))
    time.sleep(1.0)
    assert not slack(stack) and not stack.smtp.messages
    part.close()


def am_alert(stack, **labels):
    with AlertmanagerClient(stack.am.url) as c:
        for a in c.get_alerts(filters=[f'{k}="{v}"' for k, v in labels.items()]):
            return a
    return None


def test_silence_suppresses_notifications(stack):
    with AlertmanagerClient(stack.am.url) as c:
        sid = silence(
            c,
            parse_matchers(["site=plant-9", "sensor=~turb.*"]),
            now(),
            now() + timedelta(hours=2),
            "test",
            "maintenance window",
        )
    part = sink(stack)
    part.write_batch([mk(site="plant-9", sensor="turb-1"), mk(site="plant-9", sensor="ph-1")])
    assert stack.rx.wait(lambda: stack.rx.alerts(sensor="ph-1"))  # not silenced: notified
    time.sleep(GROUP_WAIT_S + 1.5)
    assert stack.rx.alerts(sensor="turb-1") == []
    assert am_alert(stack, sensor="turb-1")["status"]["silencedBy"] == [sid]
    part.close()


def test_inhibition_stale_power_outage_and_severe(stack):
    part = sink(stack)
    # the sources first, so they are active when the targets' groups flush
    part.write_batch(
        [
            mk(rule="stale", sensor="p7", severity="caution"),
            mk(
                domain="energy",
                site="pv-farm",
                asset="grid",
                sensor="mains",
                rule="power_outage",
                severity="severe",
            ),
            mk(rule="robust_z", sensor="p8", severity="severe"),
        ]
    )
    assert stack.rx.wait(
        lambda: stack.rx.alerts(rule="stale") and stack.rx.alerts(rule="power_outage")
    )
    part.write_batch(
        [
            mk(rule="limits", sensor="p7"),  # value anomaly of the stale sensor: inhibited
            mk(rule="limits", sensor="p9"),  # another sensor: notified
            mk(domain="energy", site="pv-farm", asset="inv-1", sensor="ac-power", rule="limits"),
            mk(domain="energy", site="other", asset="inv-1", sensor="ac-power", rule="limits"),
        ]
    )
    assert stack.rx.wait(lambda: stack.rx.alerts(sensor="p9") and stack.rx.alerts(site="other"))
    time.sleep(GROUP_WAIT_S + 1.5)
    assert stack.rx.alerts(sensor="p7", rule="limits") == []
    assert stack.rx.alerts(site="pv-farm", asset="inv-1") == []
    assert am_alert(stack, sensor="p7", rule="limits")["status"]["inhibitedBy"]
    assert am_alert(stack, site="pv-farm", asset="inv-1")["status"]["inhibitedBy"]
    # severe inhibits the lower severities of the same alert (the label set without severity)
    with AlertmanagerClient(stack.am.url) as c:
        c.post([mk(rule="robust_z", sensor="p8", severity="caution")], now(), 3600, "http://x")
    time.sleep(GROUP_WAIT_S + 1.5)
    assert [a["labels"]["severity"] for _, a in stack.rx.alerts(sensor="p8")] == ["severe"]
    part.close()


def test_repeated_firing_does_not_renotify_before_repeat_interval(stack):
    resent = metric("twinwatch_alert_deliveries_total", receiver="alertmanager", outcome="resent")
    part = sink(stack)
    part.write_batch([mk(rule="limits", sensor="q1"), mk(rule="stuck", sensor="q2")])
    deadline = time.monotonic() + 20
    while (  # re-sent every 0.5 s, as a firing alert should be
        metric("twinwatch_alert_deliveries_total", receiver="alertmanager", outcome="resent")
        - resent
        < 20
    ):
        assert time.monotonic() < deadline, "not re-sent"
        time.sleep(0.1)
    assert len(stack.rx.alerts(sensor="q1")) == 1  # repeat_interval 1 h
    assert len(stack.rx.alerts(sensor="q2")) >= 2  # rule "stuck": renotify_s 2 s
    part.close()


def test_restart_neither_duplicates_nor_loses(stack):
    a = mk(rule="limits", sensor="r1")
    part = sink(stack)
    part.write_batch([a])
    assert stack.rx.wait(lambda: stack.rx.alerts(sensor="r1"))
    part.close()  # the process stops ...
    # ... and a new one replays the same state (Bytewax resumes from its last snapshot)
    dup = metric("twinwatch_alert_deliveries_total", receiver="alertmanager", outcome="duplicate")
    part = sink(stack)
    assert [x.fingerprint for x in last_states(stack.cfg.state_path)] == [a.fingerprint]
    part.write_batch([a])
    assert (
        metric("twinwatch_alert_deliveries_total", receiver="alertmanager", outcome="duplicate")
        - dup
        == 1
    )
    time.sleep(GROUP_WAIT_S + 2)
    assert len(stack.rx.alerts(sensor="r1")) == 1
    part.write_batch([mk("resolved", rule="limits", sensor="r1", starts_at=a.starts_at)])
    assert stack.rx.wait(
        lambda: [s for s, _ in stack.rx.alerts(sensor="r1")] == ["firing", "resolved"]
    )
    part.close()


def test_escalation_resolves_the_lower_label_set(stack):
    part = sink(stack)
    t0 = now()
    part.write_batch([mk(rule="robust_z", sensor="e1", severity="caution", starts_at=t0)])
    assert stack.rx.wait(lambda: stack.rx.alerts(sensor="e1"))
    part.write_batch([mk(rule="robust_z", sensor="e1", severity="severe", starts_at=t0)])
    assert stack.rx.wait(
        lambda: (
            ("firing", "severe")
            in [(s, a["labels"]["severity"]) for s, a in stack.rx.alerts(sensor="e1")]
        )
    )
    # The caution label set is resolved, not left active until its TTL (its resolved
    # notification itself is muted by "severe inhibits lower severities"). Like every resolve it
    # waits until its firing had time to be notified (resolve_hold_s), so poll for it.
    deadline = time.monotonic() + stack.cfg.hold_s + 10
    while am_alert(stack, sensor="e1", severity="caution") is not None:
        assert time.monotonic() < deadline, "the lower label set was never resolved"
        time.sleep(0.2)
    assert am_alert(stack, sensor="e1", severity="severe") is not None
    part.close()


def test_failed_posts_are_retried_when_alertmanager_is_back(stack):
    """Alertmanager stopped, then restarted on the same port (a real outage)."""
    part = sink(stack, background=False)
    stack.am.stop()
    firing = mk(rule="limits", sensor="x1")
    part.write_batch([firing])
    assert part.delivery.run_once() == 0
    assert part.delivery.store.depth("alertmanager") == 1
    part.close()
    part = sink(stack, background=False)  # even across a restart of our process
    assert part.delivery.store.depth("alertmanager") == 1
    stack.am.start(timeout=60)
    assert part.delivery.run_once() == 1
    assert part.delivery.store.depth("alertmanager") == 0
    assert am_alert(stack, sensor="x1")["labels"]["rule"] == "limits"
    part.close()
