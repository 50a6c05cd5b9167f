"""A snapshot restores under a changed config (issue #11): state is matched by name, not position.

Between snapshot and restore the chlorine sensor's detectors are reordered and the pH sensor is
removed from the config. The restore neither raises nor loses the remaining state: the chlorine
series continues with exactly the scores and alerts of an uninterrupted run, and the departed
sensor's state is dropped with one log line (detection shard and liveness alike).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from twinwatch.config import EXAMPLE_CONFIG, load_config
from twinwatch.engine.liveness import Liveness, latest_times
from twinwatch.engine.parse import Parser
from twinwatch.engine.plan import Plan
from twinwatch.engine.shard import Shard
from twinwatch.schema import Alert, AnomalyScore

T0 = datetime(2026, 11, 20, tzinfo=UTC)
CHLORINE = "city/water/sejong-wtp/clearwell/chlorine"
PH = "city/water/sejong-wtp/filter-outlet/ph"
ENV = {"TWINWATCH__SERVICES__ALERTMANAGER__URL": "http://127.0.0.1:9"}


def _changed_config(tmp_path):
    """The example with the chlorine detectors reversed and the pH sensor removed."""
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    wtp = next(s for s in raw["sites"] if s["id"] == "sejong-wtp")
    outlet = next(a for a in wtp["assets"] if a["id"] == "filter-outlet")
    outlet["sensors"] = [s for s in outlet["sensors"] if s["id"] != "ph"]
    clearwell = next(a for a in wtp["assets"] if a["id"] == "clearwell")
    chlorine = next(s for s in clearwell["sensors"] if s["id"] == "chlorine")
    # its own list, or the domain's when it names none (#12: chlorine left cusum for the
    # dosing group detector and now runs the water defaults)
    current = chlorine.get("detectors") or raw["domain_detectors"]["water"]
    assert len(current) > 2  # the reorder below must change positions
    chlorine["detectors"] = list(reversed(current))
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return load_config(path, environ=ENV)


def _messages(n=400):
    out = []
    for i in range(n):
        t = (T0 + timedelta(minutes=i)).isoformat()
        # a breach of the chlorine floor at 300-310 so alert state is part of the snapshot
        cl = 0.05 if 300 <= i <= 310 else 0.9 + 0.01 * (i % 5)
        out.append((CHLORINE, json.dumps({"time": t, "value": cl}).encode()))
        out.append((PH, json.dumps({"time": t, "value": 7.2 + 0.01 * (i % 3)}).encode()))
    return out


def _by_name(outputs):
    """Outputs as comparable data independent of the order detectors run in."""
    scores = [
        (o.time, o.sensor, tuple(sorted(o.scores.items())), tuple(sorted(o.hits)))
        for o in outputs
        if isinstance(o, AnomalyScore)
    ]
    alerts = sorted(
        (a.at, a.sensor, a.rule, a.status, a.severity) for a in outputs if isinstance(a, Alert)
    )
    return scores, alerts


@pytest.fixture(scope="module")
def records():
    config = load_config(environ=ENV)
    good, dead = Parser(config).split(_messages())
    assert not dead
    return good


def test_detectors_reordered_and_a_sensor_removed_restore_without_loss(records, tmp_path, caplog):
    before = Plan(load_config(environ=ENV))
    after = Plan(_changed_config(tmp_path))
    cut = 2 * 305  # mid-breach: the limits alert is firing in the snapshot
    a = Shard(before)
    a.process(records[:cut])
    snapshot = a.to_state()
    assert any(key.endswith("/ph") for key in snapshot)

    with caplog.at_level(logging.WARNING, logger="twinwatch.engine.shard"):
        b = Shard(after, state=snapshot)
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "ph" in dropped[0].getMessage()

    rest = [r for r in records[cut:] if r.sensor == "chlorine"]
    expected = _by_name(a.process(rest))
    got = _by_name(b.process(rest))
    assert got == expected
    assert any(status == "resolved" for *_, status, _ in got[1])  # the firing alert carried over
    chlorine_a = next(v for k, v in a.to_state().items() if k.endswith("/chlorine"))
    chlorine_b = next(v for k, v in b.to_state().items() if k.endswith("/chlorine"))
    assert chlorine_b == chlorine_a  # same state by (name, type), whatever the order


def test_liveness_restores_without_a_removed_sensor(records, tmp_path, caplog):
    before = load_config(environ=ENV)
    live = Liveness(before, clock=lambda: 0.0)
    live.process(latest_times(records[:200]))
    snapshot = live.to_state()

    with caplog.at_level(logging.WARNING, logger="twinwatch.engine.liveness"):
        restored = Liveness(_changed_config(tmp_path), state=snapshot, clock=lambda: 0.0)
    assert any("dropped 1 series" in r.getMessage() for r in caplog.records)
    kept = {k for k in restored.latest}
    assert any(k.endswith("/chlorine") for k in kept)
    assert not any(k.endswith("/ph") for k in kept)
    assert restored.latest == {k: t for k, t in live.latest.items() if not k.endswith("/ph")}
