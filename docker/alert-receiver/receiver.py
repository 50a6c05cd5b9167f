"""The compose stack's alert receiver: Alertmanager's webhook lands here, so the stack delivers
somewhere out of the box. Standard library only (it runs in the pinned python image).

    POST /alerts    Alertmanager webhook JSON (version 4): one log line per alert on stdout
                    (`docker compose logs -f alert-receiver`), kept in memory (the last 500)
    GET  /alerts    the kept notifications, newest last, as JSON
    GET  /healthz   200 "ok" (the container's healthcheck)

It is a stand-in for the on-call's real channels: configure email, Slack or a pager in the
city config's ``services.alertmanager.routing.receivers`` and regenerate alertmanager.yml
(docs/deploy.md). Bodies over 1 MiB are refused; nothing is written to disk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20
KEPT: deque[dict] = deque(maxlen=500)
LOCK = threading.Lock()


def log_lines(body: dict) -> list[str]:
    """One line per alert: STATUS severity site/asset/sensor rule: summary (since)."""
    lines = []
    for a in body.get("alerts", []):
        lab, ann = a.get("labels", {}), a.get("annotations", {})
        where = "/".join(lab.get(k, "?") for k in ("site", "asset", "sensor"))
        lines.append(
            f"{a.get('status', '?').upper():8} {lab.get('severity', '?'):9} {where} "
            f"{lab.get('rule', lab.get('alertname', '?'))}: {ann.get('summary', '')} "
            f"(since {a.get('startsAt', '?')})"
        )
    return lines


class Handler(BaseHTTPRequestHandler):
    server_version = "twinwatch-alert-receiver"

    def _reply(self, status: int, body: bytes, kind: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b"ok\n")
        elif self.path == "/alerts":
            with LOCK:
                body = json.dumps(list(KEPT)).encode()
            self._reply(200, body, "application/json")
        else:
            self._reply(404, b"not found\n")

    def do_POST(self) -> None:
        if self.path != "/alerts":
            self._reply(404, b"not found\n")
            return
        size = int(self.headers.get("Content-Length") or 0)
        if size > MAX_BODY:
            self._reply(413, b"too large\n")
            return
        try:
            body = json.loads(self.rfile.read(size))
            lines = log_lines(body)
        except (ValueError, AttributeError, TypeError) as e:
            self._reply(400, f"bad notification: {e}\n".encode())
            return
        received = datetime.now(UTC).isoformat(timespec="seconds")
        with LOCK:
            KEPT.append({"received": received, **body})
        for line in lines:
            print(f"{received} {line}", flush=True)
        self._reply(200, b"ok\n")

    def log_message(self, format: str, *args) -> None:  # access log off: the alerts are the log
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="0.0.0.0", help="bind address (default: all, in a container)")
    p.add_argument("--port", type=int, default=9095)
    args = p.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `docker stop`: PID 1 has no default
    print(f"alert receiver listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
