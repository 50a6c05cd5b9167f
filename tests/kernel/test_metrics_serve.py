"""The /metrics endpoint (issue #15): a non-loopback bind warns, a port in use is one line."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest

from twinwatch.app.services import free_port
from twinwatch.config import ConfigError, is_loopback
from twinwatch.metrics import serve


def test_non_loopback_bind_warns_and_serves(caplog):
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="twinwatch.metrics"):
        serve("0.0.0.0", port)
    assert "reachable beyond this machine" in caplog.text and "services.metrics.host" in caplog.text
    assert "twinwatch_" in httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False).text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="twinwatch.metrics"):
        serve("127.0.0.1", free_port())
    assert caplog.text == ""


def test_port_in_use_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve /metrics on 127.0.0.1:{port}"):
            serve("127.0.0.1", port)


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("metrics.example", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
