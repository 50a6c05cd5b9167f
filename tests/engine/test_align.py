"""Time alignment of asset groups (twinwatch.engine.align): jitter, missing samples, different
rates, late and out-of-order readings, silent spells, snapshots."""

from __future__ import annotations

import math
import random

from twinwatch.engine.align import Aligner


def feed(aligner: Aligner, readings: list[tuple[float, int, float]]) -> list:
    out = []
    for t, member, value in readings:
        out += aligner.push(t, member, value)
    return out


def test_two_rates_with_jitter_give_one_vector_per_tick():
    """A flow meter every 30 s and an analyser every 60 s, each with +-2 s of clock jitter."""
    rng = random.Random(1)
    readings = []
    for k in range(120):
        readings.append((30 * k + rng.uniform(-2, 2), 0, float(k)))  # value = its index
        if k % 2 == 0:
            readings.append((30 * k + rng.uniform(-2, 2), 1, 100.0 + k))
    readings.sort()
    ticks = feed(Aligner(60.0, (75.0, 150.0), lateness_s=30.0), readings)
    times = [t for t, _ in ticks]
    assert times == [60.0 * i for i in range(len(times))]  # on the epoch grid, no gap
    assert len(times) >= 58
    for t, (flow, cl) in ticks:
        k = round(t / 30)
        assert flow in (k, k - 1, k + 1)  # the latest reading around the tick, jitter or not
        assert cl in (100.0 + k, 100.0 + k - 2, 100.0 + k + 2)


def test_missing_samples_are_bridged_within_tolerance_then_nan():
    readings = [(10.0 * k, 0, 1.0) for k in range(60)]
    readings += [(10.0 * k, 1, 2.0) for k in range(60) if k not in (20, 40, 41, 42, 43, 44)]
    readings.sort()
    ticks = dict(feed(Aligner(10.0, (25.0, 25.0)), readings))
    assert ticks[200.0] == (1.0, 2.0)  # one missing sample: the previous value, 10 s old
    assert math.isnan(ticks[430.0][1])  # five missing: older than the tolerance
    assert ticks[430.0][0] == 1.0


def test_late_reading_within_lateness_counts_and_later_ones_do_not():
    a = Aligner(60.0, (90.0, 90.0), lateness_s=20.0)
    out = feed(a, [(50.0, 0, 1.0), (58.0, 1, 5.0), (70.0, 0, 2.0)])  # t=70 < 60 + 20: not due
    assert out == []
    out = feed(a, [(61.0, 1, 6.0), (81.0, 0, 3.0)])  # 61 arrived late but within lateness
    assert out == [(60.0, (2.0, 6.0))]
    out = feed(a, [(59.0, 1, 99.0), (150.0, 0, 4.0)])  # older than the member's latest: ignored
    assert out == [(120.0, (3.0, 6.0))]


def test_silent_asset_skips_ticks_instead_of_iterating_them():
    a = Aligner(10.0, (25.0,))
    feed(a, [(0.0, 0, 1.0), (10.0, 0, 1.0)])
    out = feed(a, [(86400.0 * 30, 0, 2.0)])  # a month of silence
    assert [t for t, _ in out] == [10.0, 20.0, 30.0]  # the last value ages out, then a jump
    assert a.to_state()[0] == 86400.0 * 30


def test_state_round_trip_continues_identically():
    rng = random.Random(7)
    readings = sorted((rng.uniform(0, 3600), rng.randrange(3), rng.random()) for _ in range(900))
    full = feed(Aligner(30.0, (60.0, 60.0, 60.0), 10.0), readings)
    a = Aligner(30.0, (60.0, 60.0, 60.0), 10.0)
    first = feed(a, readings[:400])
    b = Aligner(30.0, (60.0, 60.0, 60.0), 10.0, state=a.to_state())
    assert first + feed(b, readings[400:]) == full


def test_a_state_of_other_members_is_not_restored():
    a = Aligner(10.0, (25.0, 25.0))
    feed(a, [(0.0, 0, 1.0), (0.0, 1, 2.0)])
    b = Aligner(10.0, (25.0, 25.0, 25.0), state=a.to_state())  # a member was added
    out = feed(b, [(5.0, 2, 3.0), (15.0, 2, 3.0)])
    assert len(out) == 1 and out[0][0] == 10.0
    vec = out[0][1]
    assert math.isnan(vec[0]) and math.isnan(vec[1]) and vec[2] == 3.0
