"""``twinwatch logs --check`` and ``--learn``, declared formats and journald export framing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bytewax.testing import run_main
from capture import Capture
from paths import SHARED_DATA

from twinwatch.app.cli import main
from twinwatch.config import load_config
from twinwatch.engine.logparse import LogParser
from twinwatch.engine.security import SecurityShard
from twinwatch.flows.security import build_log_flow
from twinwatch.flows.sources.tail import TailSource
from twinwatch.schema import Alert, SecurityEvent

LOGHUB = SHARED_DATA / "loghub"
EXAMPLE = "twinwatch/examples/loghub-sources.yaml"


def _need(path):
    if not path.is_file():
        pytest.fail(f"{path} missing") if __import__("os").environ.get("CI") == "true" else (
            pytest.skip(f"{path} missing")
        )
    return path


def test_check_reports_the_parse_rate_and_first_unparsed_lines(tmp_path, capsys):
    hpc = _need(LOGHUB / "HPC" / "HPC_2k.log")
    assert main(["logs", "-c", EXAMPLE, "--check", str(hpc)]) == 0
    assert "2000 of 2000 lines parsed (100.00 %), source 'hpc'" in capsys.readouterr().out
    mixed = tmp_path / "mixed.log"
    mixed.write_text(
        "Nov 9 10:00:00 gw sshd[1]: Accepted password for ann from 192.0.2.1 port 1 ssh2\n"
        "garbage that is no log line\n"
        "<13>1 0001-01-01T00:00:00+01:00 h app - - - year one\n"
    )
    assert main(["logs", "--check", str(mixed)]) == 0
    out = capsys.readouterr().out
    assert "1 of 3 lines parsed (33.33 %)" in out and "auth_success 1" in out
    assert "line 2: bad_log: garbage" in out and "line 3: bad_time:" in out
    assert "bad_log 1" in out and "bad_time 1" in out


def test_a_bad_source_declaration_is_one_clear_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        Path(EXAMPLE)
        .read_text()
        .replace(
            "timezone: UTC, format: apache_error", "timezone: Mars/Olympus, format: apache_error"
        )
    )
    assert main(["logs", "-c", str(cfg), "--check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "Mars/Olympus" in err and "Traceback" not in err


def test_learn_persists_templates_that_the_flow_then_knows(tmp_path, capsys, monkeypatch):
    apache = _need(LOGHUB / "Apache_2k.log")
    state = tmp_path / "learned.json"
    monkeypatch.setenv("TWINWATCH__SECURITY__TEMPLATES__STATE_PATH", str(state))
    assert main(["logs", "--learn", str(apache)]) == 0
    assert "learned" in capsys.readouterr().out
    learned = json.loads(state.read_text())["assets"]["logs/unmapped"]
    assert len(learned["templates"]) >= 5 and learned["sources"]["http"]["warm"]

    config = load_config()  # reads the same environment: the flow loads the learned file
    events, _ = LogParser(config).split([("file:x", raw) for raw in apache.open("rb")])
    shard = SecurityShard(config)
    out = shard.process(events[:50])  # no warm-up needed: it was learned
    assert shard.assets["logs/unmapped"].templates.template_count == len(learned["templates"])
    assert not [a for a in out if type(a) is Alert and a.rule == "new_template"]
    last = events[49].time.strftime("%a %b %d %H:%M:%S %Y")
    new, _ = LogParser(config).split(
        [("file:x", f"[{last}] [error] mod_evil: shell spawned".encode())]
    )
    assert [a.rule for a in shard.process(new) if type(a) is Alert] == ["new_template"]


def test_journald_export_records_through_the_tail_source(tmp_path):
    export = tmp_path / "journal.export"
    export.write_text(
        "__REALTIME_TIMESTAMP=1700000000000000\n_HOSTNAME=gw1\nSYSLOG_IDENTIFIER=sshd\n"
        "PRIORITY=5\nSYSLOG_FACILITY=10\n"
        "MESSAGE=Failed password for root from 192.0.2.44 port 22 ssh2\n\n"
        "__REALTIME_TIMESTAMP=1700000001000000\n_HOSTNAME=gw1\nSYSLOG_IDENTIFIER=cron\n"
        "PRIORITY=6\nMESSAGE=job done\n\n"
        '{"__REALTIME_TIMESTAMP": "1700000002000000", "_HOSTNAME": "gw1", '
        '"SYSLOG_IDENTIFIER": "sudo", "PRIORITY": "3", "MESSAGE": "auth failure"}\n\n'
    )
    config = load_config(environ={})
    influx = Capture()
    run_main(
        build_log_flow(
            config,
            TailSource([export], follow=False, framing="journal"),
            influx_sink=influx,
            alert_sink=Capture(),
            dead_letter_sink=Capture(),
        )
    )
    events = [e for e in influx.items if type(e) is SecurityEvent]
    got = [(e.sensor, e.kind, e.src_ip, e.severity, e.facility, e.host) for e in events]
    assert got == [
        ("sshd", "auth_failure", "192.0.2.44", "notice", "authpriv", "gw1"),
        ("cron", "other", None, "info", None, "gw1"),
        ("sudo", "other", None, "err", None, "gw1"),
    ]
    assert events[0].time.timestamp() == 1700000000.0


def test_twinwatch_config_checks_the_declared_log_formats(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(Path(EXAMPLE).read_text().replace("format: apache_error", "format: apache_err"))
    assert main(["config", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown log format 'apache_err'" in err and "security.sources.apache" in err
