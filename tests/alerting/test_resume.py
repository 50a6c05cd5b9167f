"""After a restart the engine takes its alert lifecycle back from what on-call was last told
(``twinwatch.engine.lifecycle.adopt``, wired by twinwatch.flows.sinks.alertmanager): the detect
shard, liveness and the security shard, on the example city's real plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from twinwatch.config import EXAMPLE_CONFIG, load_config
from twinwatch.engine.lifecycle import FIRING, INACTIVE, PENDING, AlertState, adopt
from twinwatch.engine.liveness import Liveness
from twinwatch.engine.plan import Plan
from twinwatch.engine.security import SecurityShard
from twinwatch.engine.shard import Shard
from twinwatch.flows.sinks.alertmanager import resume_states, store_path, unowned
from twinwatch.schema import Alert, Reading, SecurityEvent, fingerprint, series_key

T0 = datetime(2026, 11, 20, tzinfo=UTC)
CONFIG = load_config(EXAMPLE_CONFIG, environ={})
PLAN = Plan(CONFIG)
CHLORINE = series_key("water", "sejong-wtp", "clearwell", "chlorine")


def told(status, *, rule="limits", starts=40, at=None, severity="severe", **where) -> Alert:
    loc = {"domain": "water", "site": "sejong-wtp", "asset": "clearwell", "sensor": "chlorine"}
    loc |= where
    at_t = T0 + timedelta(minutes=at if at is not None else starts)
    return Alert(
        fingerprint=fingerprint({**loc, "rule": rule}),
        status=status,
        severity=severity,
        **loc,
        rule=rule,
        starts_at=T0 + timedelta(minutes=starts),
        at=at_t,
        value=0.02,
        unit="mg/L",
        summary="x",
        ends_at=at_t if status == "resolved" else None,
    )


def chlorine(minutes: range, value=lambda i: 0.9 + 0.01 * (i % 5)) -> list[Reading]:
    return [
        Reading(
            T0 + timedelta(minutes=i),
            "water",
            "sejong-wtp",
            "clearwell",
            "chlorine",
            "free_chlorine",
            "mg/L",
            value(i),
        )
        for i in minutes
    ]


def limits(outputs) -> list[tuple[str, str, int]]:
    return [
        (a.status, a.severity, int((a.starts_at - T0).total_seconds() // 60))
        for a in outputs
        if type(a) is Alert and a.rule == "limits"
    ]


M = 60.0
ADOPT = {
    "firing over inactive": ((INACTIVE, 0, 0), ("firing", 40 * M, 40 * M), (FIRING, 40 * M)),
    "firing over pending of the same episode": (
        (PENDING, 40 * M, 40 * M),
        ("firing", 40 * M, 41 * M),
        (FIRING, 40 * M),
    ),
    "firing over an older firing episode": (
        (FIRING, 10 * M, 12 * M),
        ("firing", 40 * M, 40 * M),
        (FIRING, 40 * M),
    ),
    "a later episode in the snapshot is kept": (
        (PENDING, 50 * M, 50 * M),
        ("firing", 40 * M, 40 * M),
        (PENDING, 50 * M),
    ),
    "resolved ends the same episode": (
        (FIRING, 40 * M, 42 * M),
        ("resolved", 40 * M, 52 * M),
        (INACTIVE, 40 * M),
    ),
    "resolved of an older episode leaves a later one": (
        (FIRING, 60 * M, 60 * M),
        ("resolved", 40 * M, 52 * M),
        (FIRING, 60 * M),
    ),
}


@pytest.mark.parametrize("before, newest, after", ADOPT.values(), ids=ADOPT.keys())
def test_adopt(before, newest, after):
    state = AlertState(status=before[0], since=before[1], last_hit=before[2])
    adopt(state, *newest)
    assert (state.status, state.since) == after


def test_detect_shard_owns_the_paged_episode_after_a_crash():
    """The snapshot predates the firing (the readings after it were acknowledged and are not
    replayed): the restored shard resolves the paged episode once readings are normal, instead
    of never (it forgot) or firing again with a later start."""
    fresh = Shard(PLAN)  # the state died with the process
    assert limits(fresh.process(chlorine(range(43, 60)))) == []  # forgotten: firing for ever
    shard = Shard(PLAN, None, {(CHLORINE, "limits"): told("firing")})
    assert limits(shard.process(chlorine(range(43, 60)))) == [("resolved", "severe", 40)]


def test_detect_shard_continuing_breach_does_not_refire():
    shard = Shard(PLAN, None, {(CHLORINE, "limits"): told("firing")})
    breach = chlorine(range(41, 44), value=lambda i: 0.02)
    assert limits(shard.process(breach)) == []  # the paged episode goes on
    assert limits(shard.process(chlorine(range(44, 60)))) == [("resolved", "severe", 40)]


def test_detect_shard_resolved_after_the_snapshot_is_inactive():
    """The snapshot holds the episode firing; the resolve was paged after it: no second
    resolve, and a new breach is a new episode."""
    firing = Shard(PLAN)
    firing.process(chlorine(range(30, 40)) + chlorine(range(40, 41), value=lambda i: 0.02))
    state = firing.to_state()
    shard = Shard(PLAN, state, {(CHLORINE, "limits"): told("resolved", at=52)})
    assert limits(shard.process(chlorine(range(41, 70)))) == []
    breach = chlorine(range(70, 71), value=lambda i: 0.02)
    assert limits(shard.process(breach)) == [("firing", "severe", 70)]


def test_liveness_owns_the_paged_stale_alert():
    key = series_key("water", "sejong-wtp", "clearwell", "chlorine")
    stale = told("firing", rule="stale", starts=100, severity="caution")
    live = Liveness(CONFIG, None, {(key, "stale"): msgspec.structs.replace(stale, value=600.0)})
    (resolved,) = live.process({key: (T0 + timedelta(minutes=130)).timestamp()})
    assert (resolved.status, resolved.rule, resolved.starts_at) == (
        "resolved",
        "stale",
        stale.starts_at,
    )


def test_security_shard_owns_the_paged_alert():
    brute = told(
        "firing",
        rule="brute_force",
        domain="security",
        site="sejong-bridge",
        asset="gateway",
        sensor="sshd",
        severity="alert",
    )
    shard = SecurityShard(CONFIG, None, {("x", "brute_force"): brute})
    quiet = SecurityEvent(
        T0 + timedelta(hours=3), "sejong-bridge", "gateway", "sshd", "session", "info"
    )
    out = [a for a in shard.process([quiet]) if type(a) is Alert]
    assert [(a.status, a.rule, a.starts_at) for a in out] == [
        ("resolved", "brute_force", brute.starts_at)
    ]


def test_unowned_firing_alerts_are_released():
    gone = told("firing", sensor="removed-sensor")
    kept = told("firing")
    resolved = told("resolved", sensor="removed-too")
    states = {
        (series_key(a.domain, a.site, a.asset, a.sensor), a.rule): a for a in (gone, kept, resolved)
    }
    assert unowned(CONFIG, PLAN, states, security=True) == [gone]


def test_each_flow_has_its_own_store(tmp_path):
    cfg = msgspec.structs.replace(
        CONFIG.services.alertmanager, state_path=str(tmp_path / "d.sqlite")
    )
    assert store_path(cfg) == str(tmp_path / "d.sqlite")
    assert store_path(cfg, "twinwatch-logs") == str(tmp_path / "d.twinwatch-logs.sqlite")
    assert resume_states(cfg) == {}  # nothing stored yet
    assert resume_states(msgspec.structs.replace(cfg, url=None)) == {}
