"""Alert lifecycle, table-driven with explicit times (no clock)."""

import pytest

from twinwatch.engine.lifecycle import FIRING, INACTIVE, AlertState, step


def run(seq, for_s, clear_s):
    s = AlertState()
    return [step(s, t, hit, for_s, clear_s) for t, hit in seq], s


def test_fires_immediately_without_for_and_resolves_after_clear():
    changes, s = run(
        [(0, False), (10, True), (20, True), (30, False), (100, False), (319, False), (320, False)],
        for_s=0,
        clear_s=300,
    )
    assert changes == [None, "firing", None, None, None, None, "resolved"]
    assert s.status == INACTIVE


def test_pending_until_for_elapses_and_a_short_blip_never_fires():
    changes, _ = run([(0, True), (30, True), (60, True), (90, True)], for_s=60, clear_s=300)
    assert changes == ["pending", None, "firing", None]
    changes, s = run([(0, True), (30, False), (60, True)], for_s=60, clear_s=300)
    assert changes == ["pending", None, "pending"]  # the blip reset the for-timer
    assert s.since == 60


def test_a_new_hit_during_clear_keeps_it_firing():
    changes, s = run(
        [(0, True), (200, False), (250, True), (500, False), (549, False), (551, False)],
        for_s=0,
        clear_s=300,
    )
    assert changes == ["firing", None, None, None, None, "resolved"]


@pytest.mark.parametrize("state", [(FIRING, 10.0, 20.0), (INACTIVE, 0.0, 0.0)])
def test_state_round_trip(state):
    assert AlertState.from_state(state).to_state() == state
