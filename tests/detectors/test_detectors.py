"""Per-detector tests: the algorithms pinned on known series, validation, doctests.

The checks every registered detector of every family goes through are in test_checks.py.
"""

from __future__ import annotations

import doctest
import importlib
import math
import pathlib
import pickle

import numpy as np
import pytest

from twinwatch import detectors
from twinwatch.detectors import (
    MAX_SCORE,
    REGISTRY,
    EventBurst,
    EwmaCusum,
    Gap,
    PhysicalLimits,
    RobustZ,
    ScaledHST,
    StaleTracker,
    Stuck,
    build,
)

PACKAGE_DIR = pathlib.Path(detectors.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE_DIR.glob("*.py"))

N = 240


def _times(seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return (1.7e9 + np.cumsum(rng.exponential(1.0, N))).tolist()


TIMES = _times()


def _run(det, xs, ts=TIMES):
    return [det.update(t, x) for t, x in zip(ts, xs)]


# --------------------------------------------------------------------------- doctests


@pytest.mark.parametrize("module", MODULES)
def test_doctests(module):
    mod = importlib.import_module(f"detectors.{module}" if module != "__init__" else "detectors")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (PhysicalLimits, {}),
        (PhysicalLimits, {"low": 4.0, "high": 0.1}),
        (PhysicalLimits, {"low": 1.0, "high": 1.0}),
        (PhysicalLimits, {"high": math.nan}),
        (PhysicalLimits, {"low": "0.1"}),
        (RobustZ, {"window": 0}),
        (RobustZ, {"window": 10.5}),
        (RobustZ, {"window": True}),
        (RobustZ, {"window": 10, "min_periods": 11}),
        (RobustZ, {"min_periods": 0}),
        (RobustZ, {"threshold": 0.0}),
        (RobustZ, {"threshold": math.inf}),
        (RobustZ, {"min_scale": 0.0}),
        (EwmaCusum, {"alpha": 0.0}),
        (EwmaCusum, {"alpha": 1.5}),
        (EwmaCusum, {"k": -0.1}),
        (EwmaCusum, {"h": 0.0}),
        (EwmaCusum, {"warmup": 1}),
        (ScaledHST, {"n_trees": 0}),
        (ScaledHST, {"height": 0}),
        (ScaledHST, {"window_size": 0}),
        (ScaledHST, {"seed": -1}),
        (ScaledHST, {"threshold": 1.5}),
        (ScaledHST, {"threshold": 0.0}),
        (Stuck, {"n": 1}),
        (Stuck, {"tolerance": -1.0}),
        (Gap, {"interval_s": 0.0}),
        (Gap, {"interval_s": 10.0, "factor": -3.0}),
        (EventBurst, {"window_s": 0.0}),
        (EventBurst, {"threshold": -1.0}),
        (StaleTracker, {"factor": 0.0}),
    ],
)
def test_invalid_constructor_args_raise_value_error(cls, kwargs):
    with pytest.raises(ValueError):
        cls(**kwargs)


def test_build_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="robust_z") as info:
        build("zscore")
    for name in REGISTRY:
        assert name in str(info.value)


def test_build_bad_keyword_is_value_error():
    with pytest.raises(ValueError, match="robust_z"):
        build("robust_z", windw=10)
    with pytest.raises(ValueError):
        build("gap")  # interval_s is required


# --------------------------------------------------------------------------- limits


def test_limits_exact_hit_positions():
    chlorine = PhysicalLimits(low=0.1, high=4.0)  # mg/L
    xs = [0.5, 0.1, 4.0, 4.01, 0.09, 2.0, 7.9, 0.0]
    scores = [chlorine.update(float(i), x) for i, x in enumerate(xs)]
    hits = [i for i, s in enumerate(scores) if s >= chlorine.threshold]
    assert hits == [3, 4, 6, 7]
    assert scores[:3] == [0.0, 0.0, 0.0]
    assert scores[6] == pytest.approx(1.0 + 3.9 / 3.9)
    assert scores[7] == pytest.approx(1.0 + 0.1 / 3.9)


def test_limits_one_sided():
    turbidity = PhysicalLimits(high=0.5)  # NTU
    assert turbidity.update(0.0, 0.5) == 0.0
    assert turbidity.update(0.0, -3.0) == 0.0
    assert turbidity.update(0.0, 1.0) == pytest.approx(2.0)  # scale = |high|
    floor = PhysicalLimits(low=0.0)
    assert floor.update(0.0, -2.0) == pytest.approx(3.0)  # limit 0: scale 1.0
    assert floor.to_state() == ()


# --------------------------------------------------------------------------- robust z


def _reference_robust_z(window_values, x):
    v = np.asarray(window_values)
    med = np.median(v)
    mad = np.median(np.abs(v - med))
    return abs(x - med) / (1.4826 * mad)


def test_robust_z_hand_computed():
    det = RobustZ(window=5, min_periods=5)
    for i, x in enumerate([1.0, 2.0, 3.0, 4.0, 100.0]):
        assert det.update(float(i), x) == 0.0
    # median 3, deviations (2, 1, 0, 1, 97) -> MAD 1
    assert det.update(5.0, 10.0) == pytest.approx(7.0 / 1.4826)
    assert det.to_state()[0] == ((2.0, 3.0, 4.0, 100.0, 10.0), None)  # oldest left the window

    even = RobustZ(window=4, min_periods=4)
    for i, x in enumerate([10.0, 1.0, 4.0, 2.0]):
        even.update(float(i), x)
    # median 3, deviations (7, 2, 1, 1) -> MAD 1.5
    assert even.update(4.0, 0.0) == pytest.approx(3.0 / (1.4826 * 1.5))

    flat = RobustZ(window=5, min_periods=5)
    for i, x in enumerate([5.0, 5.0, 6.0, 5.0, 5.0]):
        flat.update(float(i), x)
    # MAD 0 -> mean absolute deviation 0.2 * 1.2533
    assert flat.update(5.0, 6.0) == pytest.approx(1.0 / (1.2533 * 0.2))


def test_robust_z_matches_numpy_reference_on_a_stream():
    rng = np.random.default_rng(3)
    xs = np.round(rng.standard_t(3, 600), 2).tolist()  # heavy tails and ties
    for window in (7, 8, 31):  # the window of the previous readings, all learned
        det = RobustZ(window=window, min_periods=window, learn="always")
        for i, x in enumerate(xs):
            score = det.update(float(i), x)
            if i >= window:
                prev = xs[i - window : i]
                if np.median(np.abs(np.asarray(prev) - np.median(prev))) > 0:
                    assert score == pytest.approx(_reference_robust_z(prev, x), rel=1e-9)


def test_robust_z_spike_in_normal_noise_hits_exactly_there():
    rng = np.random.default_rng(2024)
    xs = rng.normal(50.0, 2.0, 3000)
    xs[1500] += 10 * 2.0  # +10 sigma
    det = RobustZ()
    scores = _run(det, xs.tolist(), [float(i) for i in range(3000)])
    hits = [i for i, s in enumerate(scores) if s >= det.threshold]
    assert hits == [1500]
    assert 8.0 < scores[1500] < 12.0


def test_robust_z_flat_line_then_step():
    det = RobustZ()
    ts = [float(i) for i in range(400)]
    xs = [20.0] * 200 + [20.0 + 1e-12] + [20.0] * 50 + [25.0] * 149
    scores = _run(det, xs, ts)
    assert max(scores[:251]) < 1e-3  # float-level wiggle on a flat line: relative floor
    assert scores[251] >= 1e5  # real jump off a flat line
    assert scores[251] <= MAX_SCORE

    # a flat line with occasional quantisation wiggles: learned, they score finite and moderate
    # (learn: always; with the default policy a wiggle that scores as a hit is not learned, and
    # the cure for a quantised sensor is min_scale = its resolution)
    xs = [20.0 + (0.01 if i % 10 == 0 else 0.0) for i in range(400)]
    scores = _run(RobustZ(learn="always"), xs, [float(i) for i in range(400)])
    assert max(scores[130:]) < 100.0
    scores = _run(RobustZ(min_scale=0.01), xs, [float(i) for i in range(400)])
    assert max(scores[130:]) < 1.01  # one resolution step


def test_robust_z_min_scale_for_series_at_zero():
    xs = [0.0] * 150 + [0.5]  # PV output at night, then first light
    assert _run(RobustZ(), xs)[-1] == pytest.approx(0.5 / 1e-9)
    assert _run(RobustZ(min_scale=1.0), xs)[-1] == pytest.approx(0.5)


# --------------------------------------------------------------------------- CUSUM


def test_cusum_hand_computed_and_held_at_h():
    det = EwmaCusum(alpha=0.5, k=0.5, h=3.0, warmup=2)
    assert det.update(0.0, 0.0) == 0.0
    assert det.update(1.0, 2.0) == 0.0  # baseline: mean 1, var 1
    assert det.update(2.0, 3.0) == pytest.approx(1.5)  # z = 2 -> S+ = 1.5
    assert det.to_state()[0] == (3, 2.0, 1.5, 1.5, 0.0)
    assert det.update(3.0, 5.0) == pytest.approx(1.5 + 3.0 / math.sqrt(1.5) - 0.5)  # hit
    # the sums are held at h, and (learn: gated) the flagged reading is not learned
    assert det.to_state()[0] == (3, 2.0, 1.5, 3.0, 0.0)
    assert det.update(4.0, 3.5) == pytest.approx(3.0 + 1.5 / math.sqrt(1.5) - 0.5)  # still a hit
    assert det.update(5.0, 2.0) == pytest.approx(2.5)  # back at the baseline: the hits stop
    always = EwmaCusum(alpha=0.5, k=0.5, h=3.0, warmup=2, learn="always")
    for t, x in enumerate([0.0, 2.0, 3.0, 5.0]):
        always.update(float(t), x)
    assert always.to_state()[0] == (4, 3.5, 3.0, 3.0, 0.0)  # the hit was learned


def test_cusum_constant_and_step_off_constant():
    det = EwmaCusum()
    assert _run(det, [7.0] * 100) == [0.0] * 100
    assert det.update(TIMES[100], 7.5) >= det.threshold


def _noise(seed, n):
    return np.random.default_rng(seed).normal(100.0, 3.0, n)


def test_cusum_quiet_on_stationary_noise():
    det = EwmaCusum()
    xs = _noise(11, 5000).tolist()
    scores = [det.update(float(i), x) for i, x in enumerate(xs)]
    assert max(scores) < det.threshold


def test_cusum_detects_slow_ramp_that_robust_z_misses():
    xs = _noise(5, 1400)
    start = 1000
    xs[start:] += 0.05 * 3.0 * np.arange(400)  # drift of 0.05 sigma per sample
    ts = [float(i) for i in range(len(xs))]
    cusum = EwmaCusum()
    scores = _run(cusum, xs.tolist(), ts)
    hits = [i for i, s in enumerate(scores) if s >= cusum.threshold]
    assert hits and hits[0] >= start
    assert hits[0] - start <= 80
    assert len(hits) >= 3  # keeps firing while the drift goes on
    zscores = _run(RobustZ(), xs.tolist(), ts)
    assert max(zscores[: hits[0] + 1]) < 6.0


# --------------------------------------------------------------------------- HST


def test_hst_flags_large_spike_after_warmup():
    rng = np.random.default_rng(8)
    xs = rng.normal(3.5, 0.05, 900)  # water pressure, bar
    xs[800] = 4.2  # +14 sigma
    det = ScaledHST()
    scores = _run(det, xs.tolist(), [float(i) for i in range(900)])
    assert scores[: det.window_size] == [0.0] * det.window_size
    normal = scores[det.window_size : 800]
    assert scores[800] >= det.threshold
    assert np.median(normal) < 0.7
    assert max(normal) < det.threshold
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_hst_state_is_built_lazily_and_small_before_first_update():
    det = ScaledHST()
    assert det.to_state()[0][-1] is None
    det.update(0.0, 1.0)
    assert isinstance(det.to_state()[0][-1], bytes)


# --------------------------------------------------------------------------- stale


def test_stuck_fires_exactly_at_nth_identical_value():
    det = Stuck(n=4)
    xs = [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0]
    scores = _run(det, xs)
    hits = [i for i, s in enumerate(scores) if s >= det.threshold]
    assert hits == [4, 5]
    assert scores[4] == 1.0 and scores[5] == 1.25 and scores[6] == 0.25
    assert det.to_state() == (3.0, 2)


def test_stuck_tolerance():
    det = Stuck(n=3, tolerance=0.05)
    scores = _run(det, [1.0, 1.04, 1.0, 1.2])
    assert scores == pytest.approx([1 / 3, 2 / 3, 1.0, 1 / 3])


def test_gap_scores():
    det = Gap(interval_s=10.0, factor=3.0)
    ts = [100.0, 110.0, 121.0, 160.0, 160.0, 150.0, 170.0]
    scores = [det.update(t, 1.0) for t in ts]
    assert scores == pytest.approx([0.0, 1.0, 1.1, 3.9, 0.0, 0.0, 1.0])
    assert [s >= det.threshold for s in scores] == [False, False, False, True, False, False, False]
    assert det.to_state() == (170.0,)
    assert det.update(math.nan, 1.0) == 0.0
    assert det.update(200.0, math.nan) == pytest.approx(3.0)  # x is ignored


def test_stale_tracker_reports_silent_series_once():
    tr = StaleTracker(factor=3.0)
    tr.seen("bridge/strain-1", 0.0, 10.0)
    tr.seen("bridge/strain-2", 0.0, 10.0)
    tr.seen("pv/inverter-7", 0.0, 60.0)
    assert tr.check(30.0) == []  # not longer than 3 intervals yet
    assert tr.check(31.0) == [("bridge/strain-1", 31.0), ("bridge/strain-2", 31.0)]
    assert tr.check(100.0) == []  # reported once
    tr.seen("bridge/strain-1", 105.0, 10.0)  # back again
    assert tr.check(135.0) == []
    assert tr.check(136.0) == [("bridge/strain-1", 31.0)]  # can go stale again
    assert tr.check(181.0) == [("pv/inverter-7", 181.0)]

    restored = StaleTracker.from_state(tr.params(), pickle.loads(pickle.dumps(tr.to_state())))
    assert restored.to_state() == tr.to_state()
    assert restored.check(1000.0) == tr.check(1000.0) == []
    snapshot = tr.to_state()
    tr.seen("bridge/strain-2", 1000.0, 10.0)
    assert snapshot == restored.to_state()  # earlier snapshot not mutated
    tr.forget("bridge/strain-2")
    assert len(tr) == 2
    with pytest.raises(ValueError):
        tr.seen("x", 0.0, 0.0)


# --------------------------------------------------------------------------- burst


def test_event_burst_counts_in_window_and_forgets():
    det = EventBurst(window_s=60.0, threshold=3.0)  # sshd auth failures on one host
    events = [(0.0, 1.0), (10.0, 1.0), (15.0, 0.0), (20.0, 1.0)]
    events += [(59.9, 1.0), (60.0, 1.0), (75.0, 0.0)]
    scores = [det.update(t, w) for t, w in events]
    assert scores == [1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 3.0]  # t=0 leaves at t=60, t=10 at t=70
    assert [s >= det.threshold for s in scores] == [False] * 3 + [True] * 4
    assert det.to_state() == ((20.0, 1.0), (59.9, 1.0), (60.0, 1.0), (75.0, 0.0))
    assert det.update(500.0, 0.0) == 0.0
    assert det.to_state() == ((500.0, 0.0),)
    assert det.update(501.0, -5.0) == 0.0  # negative weight counts as 0


def test_event_burst_out_of_order_round_trip():
    det = EventBurst(window_s=10.0)
    for t, w in [(0.0, 1.0), (5.0, 2.0), (14.0, 0.0)]:
        det.update(t, w)
    restored = EventBurst.from_state(det.params(), det.to_state())
    # an out-of-order event is counted at the newest time seen (14), evicting t=0 in both
    assert det.update(9.0, 1.0) == restored.update(9.0, 1.0) == 3.0


def test_robust_z_diff_mode_flags_a_step_not_a_trend():
    """diff=True scores the change: PV's climb out of the night is normal, a trip is not."""
    from twinwatch.detectors.robust_z import RobustZ

    rng = np.random.default_rng(3)
    night = [abs(rng.normal(0, 0.001)) for _ in range(100)]
    morning = [0.5 * i + rng.normal(0, 0.3) for i in range(1, 200)]  # rising 0.5 per sample
    series = night + morning
    level = RobustZ(window=60, min_periods=20, min_scale=1.0)
    assert max(level.update(float(i), v) for i, v in enumerate(series)) > 8.0  # sunrise flagged
    det = RobustZ(window=60, min_periods=20, min_scale=1.0, diff=True)
    assert max(det.update(float(i), v) for i, v in enumerate(series)) < 4.0  # not in diff mode
    assert det.update(300.0, 0.0) > 50.0  # a drop from ~100 to 0 in one step is
