"""Behaviour of the NAB-era detectors (the shared protocol suite is in test_detectors.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twinwatch.detectors import REGISTRY, build
from twinwatch.detectors.multivariate import PcaT2Q, chi2_quantile


def noise(n: int, seed: int = 0, scale: float = 1.0, level: float = 10.0) -> list[float]:
    return (level + scale * np.random.default_rng(seed).normal(size=n)).tolist()


def run(det, xs, t0: float = 0.0, dt: float = 60.0) -> list[float]:
    return [det.update(t0 + i * dt, x) for i, x in enumerate(xs)]


def test_gaussian_hand_computed():
    det = build("gaussian", window=4, min_periods=4)
    run(det, [1.0, 2.0, 3.0, 4.0])
    z = (5.0 - 2.5) / math.sqrt(1.25)
    assert det.update(300.0, 5.0) == pytest.approx(1 - 0.5 * math.erfc(z / math.sqrt(2)))
    # the window slid: [2, 3, 4, 5], mean 3.5
    assert det.update(360.0, 3.5) == pytest.approx(0.5)


def test_likelihood_is_calibrated_whatever_the_scale():
    xs = noise(3000, seed=1)
    small = run(build("likelihood"), xs)
    large = run(build("likelihood"), [1000.0 * x for x in xs])
    assert small == pytest.approx(large, abs=1e-6)
    assert sum(s >= 0.5 for s in small) <= 3  # "once in 10**5" -> ~0 in 3,000 noise readings
    spiked = xs[:2500] + [xs[2500] + 20.0] + xs[2501:]
    assert run(build("likelihood"), spiked)[2500] >= 0.5


def test_seasonal_compares_with_the_same_hour():
    hours = np.arange(24 * 30)
    rng = np.random.default_rng(2)
    xs = (100 + 50 * np.sin(2 * np.pi * hours / 24) + rng.normal(size=hours.size)).tolist()
    det = build("seasonal", period_s=86400.0, bins=24, min_count=5)
    scores = run(det, xs, dt=3600.0)
    assert max(scores[24 * 7 :]) < det.threshold
    t_next = hours.size * 3600.0  # midnight: the normal level is ~100
    noon_level = 150.0
    assert det.update(t_next, noon_level) > det.threshold
    det2 = build("seasonal", period_s=86400.0, bins=24, min_count=5)
    run(det2, xs, dt=3600.0)
    assert det2.update(t_next + 6 * 3600.0, noon_level) < det2.threshold  # 6 a.m. + 6 h sine peak


def test_ensemble_is_the_max_of_its_members():
    members = [["gaussian", {"window": 100}], ["likelihood", {"min_periods": 50}]]
    xs = noise(600, seed=6)
    xs[400] += 15
    # learn: always on all three (with the default policy the members learn what the ensemble's
    # score lets through, which differs from what they let through on their own)
    ens = run(build("ensemble", members=members, learn="always"), xs)
    a = run(build("gaussian", window=100, learn="always"), xs)
    b = run(build("likelihood", min_periods=50, learn="always"), xs)
    assert ens == [max(x, y) for x, y in zip(a, b)]


@pytest.mark.parametrize("name", ["ensemble", "likelihood"])
def test_composites_reject_unknown_inner_detectors(name):
    key = "members" if name == "ensemble" else "detector"
    value = [["nope", {}]] if name == "ensemble" else "nope"
    with pytest.raises(ValueError, match="unknown detector"):
        REGISTRY[name](**{key: value})


# --------------------------------------------------------------------------- multivariate


def pump(n: int, seed: int = 7) -> np.ndarray:
    """current, flow, pressure follow the load; vibration and temperature mostly noise."""
    rng = np.random.default_rng(seed)
    load = np.zeros(n)  # AR(1) load around its mean, sd ~1
    for i in range(1, n):
        load[i] = 0.98 * load[i - 1] + 0.2 * rng.normal()
    return np.column_stack(
        [
            10 + 2 * load + 0.1 * rng.normal(size=n),
            50 + 8 * load + 0.4 * rng.normal(size=n),
            3 + 0.3 * load + 0.02 * rng.normal(size=n),
            rng.normal(1.0, 0.1, n),
            rng.normal(40.0, 0.5, n),
        ]
    )


def test_chi2_quantile_close_to_tables():
    assert chi2_quantile(0.999, 1) == pytest.approx(10.828, rel=0.035)
    assert chi2_quantile(0.999, 3) == pytest.approx(16.266, rel=0.02)
    assert chi2_quantile(0.999, 5) == pytest.approx(20.515, rel=0.015)
    assert chi2_quantile(0.99, 10) == pytest.approx(23.209, rel=0.01)


def test_pca_t2q_flags_broken_correlation_not_normal_operation():
    data = pump(6000)
    det = PcaT2Q(n=5)
    scores = [det.update(float(t), row) for t, row in enumerate(data)]
    assert sum(s >= 1.0 for s in scores[1000:]) / 5000 < 0.01
    row = data[-1].copy()
    row[1] -= 8 * 1.5  # flow drops while current does not: a blocked impeller / closed valve
    assert det.update(6000.0, row) >= 1.0
    assert det.update(6001.0, data[-1]) < 1.0


def test_pca_t2q_state_round_trip_and_bad_input():
    data = pump(1200, seed=8)
    det = PcaT2Q(n=5, refit=37)
    for t, row in enumerate(data[:700]):
        det.update(float(t), row)
    restored = PcaT2Q.from_state(det.params(), det.to_state())
    rest = [(float(t), row) for t, row in enumerate(data[700:], 700)]
    assert [restored.update(t, r) for t, r in rest] == [det.update(t, r) for t, r in rest]
    before = det.to_state()
    assert det.update(2000.0, [1.0, math.nan, 1.0, 1.0, 1.0]) == 0.0
    assert det.to_state() == before
    with pytest.raises(ValueError, match="expected 5 readings"):
        det.update(2001.0, [1.0, 2.0])
    with pytest.raises(ValueError):
        PcaT2Q(n=1)
