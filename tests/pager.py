"""An on-call pager for tests: a real HTTP webhook receiver behind a real Alertmanager, counting
the notifications per alert (fingerprint annotation) and status.

    pager = Pager()                                   starts the receiver on a free port
    am = service_factory(services.Alertmanager, config_text=pager.alertmanager_config())
    pager.count(rule="limits") -> {(fingerprint, "firing"|"resolved"): n}
    pager.orphans() -> fingerprints notified resolved without a firing notification before
    pager.settled(am_url)                             Alertmanager has nothing left to send
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

__all__ = ["Pager", "GROUP_WAIT_S", "GROUP_INTERVAL_S"]

GROUP_WAIT_S = 0.5
GROUP_INTERVAL_S = 1.0


class Pager:
    def __init__(self) -> None:
        self.notifications: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.notifications.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/page"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def alertmanager_config(self) -> str:
        """One group per alert (group_by every label), fast flushes, resolved notifications on,
        no repeat within a test."""
        return f"""
route:
  receiver: pager
  group_by: [alertname, domain, site, asset, sensor, rule, severity]
  group_wait: {int(GROUP_WAIT_S * 1000)}ms
  group_interval: {int(GROUP_INTERVAL_S * 1000)}ms
  repeat_interval: 12h
receivers:
  - name: pager
    webhook_configs: [{{url: "{self.url}", send_resolved: true}}]
"""

    def alerts(self, **labels: str) -> list[dict]:
        """Every alert of every notification, in arrival order, matching ``labels``."""
        with self.lock:
            notes = list(self.notifications)
        return [
            a
            for n in notes
            for a in n["alerts"]
            if all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    def count(self, **labels: str) -> Counter:
        return Counter(
            (a["annotations"]["fingerprint"], a["status"]) for a in self.alerts(**labels)
        )

    def orphans(self) -> list[str]:
        """Fingerprints whose resolved notification came without a firing one before it."""
        fired, out = set(), []
        for a in self.alerts():
            fp = a["annotations"]["fingerprint"]
            if a["status"] == "firing":
                fired.add(fp)
            elif fp not in fired:
                out.append(fp)
        return out

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "notifications") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {self.alerts()}")
            time.sleep(0.1)

    def settled(self, am_url: str, timeout: float = 30.0) -> None:
        """Wait until Alertmanager holds no alert group and every notification it counted as
        sent has arrived here: after this nothing more is on its way."""

        def quiet() -> bool:
            groups = httpx.get(f"{am_url}/api/v2/alerts/groups", timeout=5).json()
            sent = 0.0
            for line in httpx.get(f"{am_url}/metrics", timeout=5).text.splitlines():
                if line.startswith('alertmanager_notifications_total{integration="webhook"}'):
                    sent = float(line.split()[-1])
            with self.lock:
                got = len(self.notifications)
            return not groups and sent == got

        self.wait_for(quiet, timeout, "Alertmanager to settle")
