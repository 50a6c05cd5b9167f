"""Liveness and gap detection against the flow's own clock problems (issue #15): a device whose
clock runs ahead, and the flow's downtime across a kill -9 restart (no services needed)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from twinwatch.config import load_config
from twinwatch.engine.liveness import Liveness, latest_times
from twinwatch.engine.plan import Plan
from twinwatch.engine.shard import Shard
from twinwatch.schema import Alert, Annotation, Reading, SecurityEvent

T0 = datetime(2026, 11, 20, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SPAN = "structures/sejong-bridge/span-2"
SENSORS = ["temp", "strain-1", "strain-2", "accel-rms", "tilt", "crack-1"]  # interval 10 s
VALUES = {"temp": 8.0, "strain-1": 120.0, "strain-2": 95.0, "accel-rms": 4.0, "tilt": 0.4}


@pytest.fixture(scope="module")
def config():
    return load_config(environ={})


def _batch(t: float, sensors=SENSORS) -> dict[str, float]:
    return {f"{SPAN}/{s}": T0.timestamp() + t for s in sensors}


def test_one_reading_a_day_ahead_does_not_make_every_series_stale(config):
    """Before: the watermark was the newest time seen, so one reading stamped now+23 h fired
    `stale` on every other series, and again on every later batch."""
    live = Liveness(config)
    out = []
    for t in range(0, 600, 10):
        batch = _batch(t)
        if t == 300:
            batch[f"{SPAN}/tilt"] = T0.timestamp() + 23 * 3600  # a device clock a day ahead
        out += live.process(batch)
    assert [a for a in out if a.status == "firing"] == []
    assert live.watermark < T0.timestamp() + 600


def test_a_silent_series_is_still_stale_against_the_robust_watermark(config):
    live = Liveness(config)
    out = []
    for t in range(0, 600, 10):
        sensors = SENSORS if t < 100 else SENSORS[1:]  # temp falls silent at t=100
        out += live.process(_batch(t, sensors))
    fired = [(a.sensor, a.status) for a in out]
    assert fired == [("temp", "firing")]  # once, and only that one


def test_downtime_across_a_restore_is_not_silence(config):
    """A snapshot at t=300, the flow killed and restarted; the broker's backlog starts at
    t=900 with one sensor only. Before: every other sensor was `stale` at once (the readings
    between snapshot and crash died with the process). Now they get a fresh grace period, and
    one that stays silent is still reported after it."""
    live = Liveness(config)
    for t in range(0, 310, 10):
        live.process(_batch(t))
    restored = Liveness(config, live.to_state())
    out = restored.process(_batch(900, ["strain-1", "strain-2", "accel-rms", "tilt"]))
    assert [a for a in out if a.status == "firing"] == []
    for t in range(910, 1000, 10):  # temp and crack-1 stay silent: stale after 5 x 10 s
        out += restored.process(_batch(t, ["strain-1", "strain-2", "accel-rms", "tilt"]))
    assert sorted(a.sensor for a in out if a.status == "firing") == ["crack-1", "temp"]


def _readings(t0: float, n: int, step: float = 10.0) -> list[Reading]:
    return [
        Reading(
            T0 + timedelta(seconds=t0 + step * i),
            "structures",
            "sejong-bridge",
            "span-2",
            s,
            "q",
            "u",
            VALUES[s],
        )
        for i in range(n)
        for s in VALUES
    ]


def test_restart_downtime_is_not_a_device_gap(config):
    """Readings every 10 s; the snapshot holds t=300, the process dies after t=800 (those
    readings were stored and acknowledged, their detector state lost), the backlog resumes at
    t=810. Before: every series raised `gap` (score 51 intervals, factor 10)."""
    plan = Plan(config)
    shard = Shard(plan)
    shard.process(_readings(0, 31))
    restored = Shard(plan, shard.to_state())
    out = restored.process(_readings(810, 20))
    gaps = [a for a in out if type(a) is Alert and a.rule == "gap"]
    assert gaps == []
    # a device that really falls silent after the restart still raises one
    later = [r for r in _readings(1010, 1) if r.sensor != "tilt"]
    restored.process(later)
    out = restored.process([r for r in _readings(1500, 1) if r.sensor == "tilt"])
    assert [(a.sensor, a.rule, a.status) for a in out if type(a) is Alert] == [
        ("tilt", "gap", "firing")
    ]


def test_latest_times_and_unknown_series_are_ignored(config):
    live = Liveness(config)
    assert live.process({"security/x/y/z": T0.timestamp()}) == []  # not a configured sensor
    rs = _readings(0, 2)
    assert latest_times(rs)[f"{SPAN}/tilt"] == T0.timestamp() + 10


# --- one clock per source partition (issue #14) ---------------------------------------------


class _Wall:
    """A wall clock the test moves (Liveness only uses it for a partition's idleness)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _split(config, partitions: int = 2) -> tuple[list[str], list[str]]:
    live = Liveness(config, partitions=partitions)
    ours = [f"{SPAN}/{s}" for s in SENSORS]
    return (
        [k for k in ours if live.part_of[k] == 0],
        [k for k in ours if live.part_of[k] == 1],
    )


def test_a_partition_that_lags_does_not_make_its_series_stale(config):
    """Two processes: partition 0 runs an hour of event time ahead of partition 1 (its
    process is slower). Before (one clock), the 12 false `stale` alerts of issue #14."""
    fast, slow = _split(config)
    assert fast and slow
    wall = _Wall()
    live = Liveness(config, clock=wall, partitions=2)
    out = []
    for t in range(0, 3600, 10):  # partition 0 delivers an hour
        wall.now += 0.01
        out += live.process({k: T0.timestamp() + t for k in fast})
        if t < 600:  # partition 1 delivers its first 10 minutes meanwhile, then lags
            out += live.process({k: T0.timestamp() + t for k in slow})
        else:
            out += live.process({k: T0.timestamp() + 590 for k in slow[:1]})  # a late batch
    assert [a for a in out if a.status == "firing"] == []


def test_a_silent_series_in_a_lively_partition_is_stale_as_before(config):
    fast, slow = _split(config)
    silent = slow[0]
    wall = _Wall()
    live = Liveness(config, clock=wall, partitions=2)
    out = []
    for t in range(0, 600, 10):
        wall.now += 0.01
        out += live.process({k: T0.timestamp() + t for k in fast + slow if k != silent or t < 60})
    fired = [a for a in out if a.status == "firing"]
    assert [a.sensor for a in fired] == [silent.split("/")[-1]]
    assert fired[0].value == pytest.approx(5 * 10, abs=10)  # stale_factor 5 x 10 s


def test_a_partition_whose_series_all_fall_silent_follows_the_streams_clock(config):
    """Its own clock stops with its series; after flow.partition_idle_s of wall clock without
    a batch, it is judged by the stream's clock, so its silent series are still reported."""
    live = Liveness(config, partitions=4)
    every = sorted(live.refs)
    silent = [k for k in every if live.part_of[k] == 3]
    others = [k for k in every if live.part_of[k] != 3]
    assert silent and len(others) > len(silent)
    wall = _Wall()
    live = Liveness(config, clock=wall, partitions=4)
    out = []
    for t in range(0, 7200, 60):
        wall.now += 6.0  # 10 s of event time per wall second
        out += live.process({k: T0.timestamp() + t for k in others + (silent if t < 600 else [])})
        if wall.now < 600 / 10 + config.flow.partition_idle_s:
            # not idle long enough yet: the silent partition keeps its own clock
            assert [a for a in out if a.status == "firing"] == []
    fired = {a.sensor for a in out if a.status == "firing"}
    assert fired == {live.refs[k].sensor.id for k in silent}


def test_after_a_restore_each_partition_gets_its_grace_at_its_first_batch(config):
    fast, slow = _split(config)
    wall = _Wall()
    live = Liveness(config, clock=wall, partitions=2)
    for t in range(0, 300, 10):
        live.process({k: T0.timestamp() + t for k in fast + slow})
    state = live.to_state()
    # the cluster was down for an hour; partition 0 comes back first, partition 1 ten
    # (wall) seconds later with its backlog from where it stopped
    restored = Liveness(config, state, clock=wall, partitions=2)
    out = []
    for t in range(3900, 4200, 10):
        wall.now += 1.0
        out += restored.process({k: T0.timestamp() + t for k in fast})
    for t in range(300, 600, 10):
        out += restored.process({k: T0.timestamp() + t for k in slow})
    assert [a for a in out if a.status == "firing"] == []


def _newest_record_by_record(records) -> dict[str, float]:
    """What ``latest_times`` means, spelled out: the newest epoch time per series key, keyed in
    the order each series first shows a time after the epoch (annotations are not signs of
    life)."""
    out: dict[str, float] = {}
    for r in records:
        if type(r) is Annotation:
            continue
        t = r.time.timestamp()
        if t > out.get(r.series, 0.0):
            out[r.series] = t
    return out


def test_latest_times_is_the_newest_time_per_series_in_first_seen_order():
    """The batch path (datetimes compared per record, converted once per series) equals the
    definition on random batches: repeated and interleaved series, times out of order,
    annotations, security events, pre-1970 times (before and after a series' later ones),
    naive datetimes, and two identities that spell one key ("a/b"+"c" and "a"+"b/c")."""
    rng = random.Random(17)
    idents = [("structures", "s", "a", f"n{i}") for i in range(6)]
    idents += [("structures", "a/b", "c", "x"), ("structures", "a", "b/c", "x")]
    for trial in range(300):
        batch: list = []
        for _ in range(rng.randint(0, 30)):
            domain, site, asset, sensor = rng.choice(idents)
            offset = rng.uniform(-60, 60) if trial % 3 else rng.uniform(-3e9, 3e9)
            t = T0 + timedelta(seconds=offset) if trial % 3 else EPOCH + timedelta(seconds=offset)
            if trial % 50 == 7 and rng.random() < 0.2:
                t = t.replace(tzinfo=None)
            kind = rng.random()
            if kind < 0.1:
                batch.append(Annotation(t, domain, site, asset, sensor, "maintenance", t))
            elif kind < 0.2:
                batch.append(SecurityEvent(t, site, asset, sensor, "fw_deny", "deny"))
            else:
                batch.append(Reading(t, domain, site, asset, sensor, "strain", "u", 1.0))
        expected = _newest_record_by_record(batch)
        got = latest_times(batch)
        assert list(got.items()) == list(expected.items()), trial


def _quorum_reference(latest: dict[str, float], quorum: int) -> float | None:
    """The clock's definition: the quorum-th newest of every series' time (at most half of
    the series seen, at least the newest), by a sort of all of them."""
    k = min(quorum, max(1, (len(latest) + 1) // 2))
    return sorted(latest.values(), reverse=True)[k - 1] if len(latest) >= k else None


def test_the_clocks_are_the_quorum_newest_of_every_series_time(config):
    """The clocks are kept from each batch's changes (not by sorting every series' time per
    batch); after every batch, and across snapshots and restores, each equals its definition,
    and the watermarks follow them (never backwards)."""
    rng = random.Random(7)
    live = Liveness(config, partitions=2)
    keys = sorted(live.intervals)
    latest: dict[str, float] = {}
    for i in range(400):
        batch = {
            k: T0.timestamp() + rng.choice([i, i - 50, i + 3600, 0.0]) for k in rng.sample(keys, 5)
        }
        before = (live.watermark, list(live.watermarks))
        live.process(batch)
        for k, t in batch.items():
            latest[k] = max(latest.get(k, t), t)
        clock = _quorum_reference(latest, live.quorum)
        stream_top = sorted((e for top in live.part_top for e in top), reverse=True)
        assert live._quorum_time(stream_top, len(latest)) == clock
        assert live.watermark == max(before[0], clock or 0.0)
        for p in range(2):
            mine = {k: t for k, t in latest.items() if live.part_of[k] == p}
            clock = _quorum_reference(mine, live.quorum)
            assert live._quorum_time(live.part_top[p], len(mine)) == clock
            if any(live.part_of[k] == p for k in batch):
                assert live.watermarks[p] == max(before[1][p], clock or 0.0)
        if i % 100 == 99:
            live = Liveness(config, state=live.to_state(), partitions=2)
