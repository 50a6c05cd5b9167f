"""What every command says about itself: a description in its --help, and `services status` as a
table a person reads (no Python reprs). No services needed: status reads pid files."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from twinwatch.app.cli import main, parser


def _subcommands(p: argparse.ArgumentParser, path=()):
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subcommands(sub, (*path, name))


def test_every_subcommand_help_starts_with_what_it_does(capsys):
    commands = list(_subcommands(parser()))
    assert len(commands) >= 16  # run, simulate, ..., and the alerts subcommands
    for path, _ in commands:
        with pytest.raises(SystemExit) as e:
            main([*path, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        body = text.split("\n\n", 1)[1]  # after the usage block
        description = body.strip().splitlines()[0]
        assert not description.startswith(("options:", "positional")), (path, text)
        assert len(description) > 10, (path, description)


def test_services_status_is_a_readable_table(tmp_path, capsys):
    (tmp_path / "influxdb").mkdir()
    (tmp_path / "influxdb" / "influxdb.pid").write_text(
        json.dumps({"pid": 999_999_999, "port": 18086, "host": "127.0.0.1"})
    )  # an earlier run's pid file whose process is gone
    assert main(["services", "status", "--var", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "{" not in out and ": '" not in out and "True" not in out  # no dict reprs
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert set(lines) == {"influxdb", "mosquitto", "alertmanager", "victoriametrics", "prometheus"}
    assert lines["mosquitto"] == "stopped"
    assert re.match(
        r"stopped +\(an earlier run's pid file for http://127.0.0.1:18086", lines["influxdb"]
    )
