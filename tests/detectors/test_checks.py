"""The shared check suite: every registered detector of every family (scalar, vector, event, log)
through the same checks, like river's ``checks/``.

- params round trip: ``cls(**d.params())`` has the same params, and ``params()`` names exactly
  the constructor's arguments;
- state round trip: ``to_state -> (pickle) -> from_state`` continues with identical outputs, at
  several cut points (before any input, during warm-up, mid-stream); the snapshot is plain data
  (tuples, numbers, str; bytes for a pickled third-party model), is not mutated by later input,
  and its pickled size stays within a budget (the sizes are listed in docs/detectors.md);
- determinism: the same input gives the same outputs;
- warm-up: a learning detector scores 0.0 until it has learned enough;
- non-finite input: not scored (0.0) and not learned (state unchanged);
- scores are finite floats in [0, MAX_SCORE] on hostile series (constant, huge, tiny, jumps).

A detector added to a registry without an entry in ``EXAMPLES`` fails the first test.
"""

from __future__ import annotations

import copy
import inspect
import math
import pickle

import numpy as np
import pytest

from twinwatch.detectors import FAMILIES, MAX_SCORE, Rule, build
from twinwatch.detectors.base import Detector as ScalarDetector
from twinwatch.detectors.base import EventDetector, LogDetector, VectorDetector

N = 240
PROTOCOL = {
    "scalar": ScalarDetector,
    "vector": VectorDetector,
    "event": EventDetector,
    "log": LogDetector,
}

# Small but valid parameters for every registered detector (models kept small for speed).
EXAMPLES: dict[str, dict] = {
    # scalar
    "limits": {"low": 0.1, "high": 4.0},
    "robust_z": {"window": 40, "min_periods": 10},
    "cusum": {"warmup": 20},
    "hst": {"n_trees": 3, "height": 4, "window_size": 25, "seed": 7},
    "stuck": {"n": 5},
    "gap": {"interval_s": 1.0},
    "burst": {"window_s": 10.0, "threshold": 5.0},
    "gaussian": {"window": 50, "min_periods": 10},
    "likelihood": {
        "detector": "cusum",
        "detector_params": {"warmup": 20},
        "window": 50,
        "min_periods": 20,
    },
    "seasonal": {"period_s": 20.0, "bins": 4, "min_count": 3},
    "ensemble": {
        "members": [
            ["gaussian", {"window": 50, "min_periods": 10}],
            ["likelihood", {"detector": "robust_z", "window": 50, "min_periods": 20}],
        ]
    },
    "knn_cad": {"dim": 4, "k": 3, "window": 40, "calibration": 40, "min_periods": 10},
    # vector
    "pca_t2q": {"n": 3, "warmup": 30, "refit": 17},
    "isolation_forest": {"n": 3, "window": 40, "refit": 20, "n_estimators": 10},
    "vector_hst": {"n": 3, "n_trees": 3, "height": 4, "window_size": 25, "seed": 3},
    # vector, with roles (asset groups, issue #12; their physics: test_group_detectors.py)
    "consistency": {"counts": {"sensors": 2, "drivers": 1}, "warmup_s": 20.0},
    "response_ratio": {
        "counts": {"response": 2, "load": 1, "covariates": 0},
        "block_s": 5.0,
        "window_s": 30.0,
        "memory_s": 120.0,
        "warmup_s": 60.0,
    },
    "performance_ratio": {
        "counts": {"power": 1, "irradiance": 1, "module_temp": 1},
        "capacity_kw": 10.0,
        "min_irradiance": 1.0,
        "window_s": 20.0,
        "warmup_s": 20.0,
    },
    "night_flow": {"counts": {"inflow": 1, "outflow": 2}, "block_s": 10.0, "min_nights": 1},
    "schedule": {"counts": {"load": 2, "outdoor_temp": 1}, "min_count": 1},
    "dosing": {"counts": {"chlorine": 1, "flow": 2}, "min_count": 1},
    # event
    "security": {"brute_force_failures": 3, "spray_users": 2, "scan_ports": 3},
    # log
    "templates": {"rate_min_count": 5, "window_s": 5.0, "warmup_lines": 20, "warmup_s": 0.0},
}

# Readings a learning detector needs before its first non-zero score (with EXAMPLES' params).
WARMUP = {
    "robust_z": 10,
    "cusum": 20,
    "hst": 25,
    "gaussian": 10,
    "likelihood": 20,  # min_periods averages of the inner score (0.0 while the inner warms up)
    "knn_cad": 2 * 4 + 3 - 2 + 10,  # references, then min_periods calibration values
    "pca_t2q": 30,
    "isolation_forest": 40,  # min_periods defaults to window
    "vector_hst": 25,
}

# Pickled snapshot budget in bytes after N inputs with EXAMPLES' params: the snapshot is copied
# and pickled every epoch, so growth is a regression. Actual sizes: see test output / docs.
STATE_BUDGET = {
    "hst": 12_000,
    "vector_hst": 12_000,
    "templates": 20_000,
    "security": 6_000,
    "isolation_forest": 5_000,
    "schedule": 10_000,  # 3 day types x 96 slots of 15 min, a few numbers each
    "dosing": 4_000,  # 2 day types x 48 slots of 30 min
}
DEFAULT_BUDGET = 3_000

REGISTERED = sorted((name, fam) for fam, reg in FAMILIES.items() for name in reg)
NAMES = [name for name, _ in REGISTERED]
FAMILY = dict(REGISTERED)
RULES = sorted(n for n, cls in FAMILIES["scalar"].items() if issubclass(cls, Rule))
LEARNERS = sorted(n for n, f in REGISTERED if f in ("scalar", "vector") and n not in RULES)
NUMERIC = sorted(n for n, f in REGISTERED if f in ("scalar", "vector"))


# --------------------------------------------------------------------------- inputs per family


def _times(seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return (1.7e9 + np.cumsum(rng.exponential(1.0, N))).tolist()


TIMES = _times()


def _series() -> dict[str, list[float]]:
    rng = np.random.default_rng(12345)
    noise = rng.normal(size=N)
    signs = np.where(rng.random(N) < 0.5, -1.0, 1.0)
    return {
        "random": (10.0 + 2.0 * noise).tolist(),
        "constant": [5.0] * N,
        "zeros": [0.0] * N,
        "huge": (1e12 + 1e3 * noise).tolist(),
        "huge_constant": [1e12] * N,
        "huge_jumps": (signs * 1e12).tolist(),
        "extreme": (signs * 1e300).tolist(),
        "tiny": (1e-12 * noise).tolist(),
        "step": [0.0] * (N // 2) + [10.0] * (N - N // 2),
        "flat_then_step_huge": [3.0] * (N // 2) + [3e12] * (N - N // 2),
        "counts": rng.poisson(2.0, N).astype(float).tolist(),
    }


SERIES = _series()


def _vectors(xs: list[float]) -> list[list[float]]:
    """A correlated vector per reading: the series, a scaled copy with noise, and noise."""
    rng = np.random.default_rng(7)
    return [[x, 2.0 * x + 0.1 * rng.normal(), rng.normal()] for x in xs]


VECTORS = {name: _vectors(xs) for name, xs in SERIES.items()}


_IPS = ["192.0.2.1", "192.0.2.2", "198.51.100.9", None]
_KINDS = [
    ("auth_failure", "failure"),
    ("auth_success", "success"),
    ("invalid_user", "failure"),
    ("fw_deny", "deny"),
    ("door_open", "info"),
    ("intrusion", "alarm"),
]


def _events() -> list[tuple]:
    rng = np.random.default_rng(3)
    out = []
    for _ in range(N):
        kind, outcome = _KINDS[int(rng.integers(len(_KINDS)))]
        ip = _IPS[int(rng.integers(len(_IPS)))]
        user = f"user{int(rng.integers(5))}"
        port = int(rng.integers(1, 40)) if kind == "fw_deny" else None
        out.append((kind, outcome, user, ip, port))
    return out


EVENTS = _events()
_LINES = [
    "sshd[{p}]: Failed password for root from 192.0.2.{i} port {p} ssh2",
    "sshd[{p}]: Accepted publickey for deploy from 10.0.0.{i} port {p} ssh2",
    "kernel: [UFW BLOCK] IN=eth0 SRC=198.51.100.{i} DST=10.0.0.1 DPT={p}",
    "CRON[{p}]: (root) CMD (run-parts /etc/cron.hourly)",
    "systemd[1]: Started Session {p} of user deploy.",
]
LINES = [_LINES[(i * 7) % len(_LINES)].format(i=i % 250, p=1000 + i) for i in range(N)]


def run(det, name: str, lo: int = 0, hi: int = N, series: str = "random") -> list:
    """Feed inputs lo..hi of the family's stream and return the outputs."""
    fam = FAMILY[name]
    out = []
    for i in range(lo, hi):
        t = TIMES[i]
        if fam == "scalar":
            out.append(det.update(t, SERIES[series][i]))
        elif fam == "vector":
            out.append(det.update(t, VECTORS[series][i]))
        elif fam == "event":
            out.append(det.update(t, *EVENTS[i]))
        else:
            out.append(det.update(t, LINES[i]))
    return out


def make(name: str):
    return build(name, family=FAMILY[name], **EXAMPLES[name])


def is_plain(value) -> bool:
    """Tuples/lists/dicts of numbers, str, bool, None (bytes: a pickled third-party model)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return True
    if isinstance(value, (tuple, list)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(is_plain(k) and is_plain(v) for k, v in value.items())
    return False


# --------------------------------------------------------------------------- the checks


def test_every_registered_detector_has_examples():
    assert set(NAMES) == set(EXAMPLES)
    for fam, reg in FAMILIES.items():
        for name, cls in reg.items():
            assert cls.name == name and cls.family == fam


@pytest.mark.parametrize("name", NAMES)
def test_params_round_trip(name):
    det = make(name)
    assert isinstance(det, PROTOCOL[FAMILY[name]])
    params = det.params()
    cls = type(det)
    assert cls(**params).params() == params
    sig = list(inspect.signature(cls.__init__).parameters)[1:]
    assert list(params) == sig  # every constructor argument, under its own name
    assert {k: params[k] for k in EXAMPLES[name]} == EXAMPLES[name]
    params_copy = copy.deepcopy(params)
    for v in params.values():  # the caller's copy cannot reach into the detector
        if isinstance(v, (dict, list)):
            v.clear()
    assert det.params() == params_copy
    assert repr(det).startswith(f"{cls.__name__}(")
    if FAMILY[name] in ("scalar", "vector"):
        assert isinstance(det.threshold, float) and det.threshold > 0


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_gives_identical_outputs(name):
    for cut in (0, 7, N // 2 + 3):  # before any input, during warm-up, mid-stream
        det = make(name)
        run(det, name, 0, cut)
        state = det.to_state()
        assert is_plain(state), state
        cls = type(det)
        restored = cls.from_state(det.params(), state)
        via_pickle = cls.from_state(EXAMPLES[name], pickle.loads(pickle.dumps(state)))
        expected = run(det, name, cut)
        assert run(restored, name, cut) == expected
        assert run(via_pickle, name, cut) == expected
        assert restored.to_state() == det.to_state()


@pytest.mark.parametrize("name", NAMES)
def test_snapshot_is_immutable_and_small(name):
    det = make(name)
    run(det, name, 0, N // 2, series="counts" if FAMILY[name] == "scalar" else "random")
    state = det.to_state()
    frozen = copy.deepcopy(state)
    pickled = pickle.dumps(state)
    run(det, name, N // 2, N, series="counts" if FAMILY[name] == "scalar" else "random")
    assert state == frozen
    assert pickle.dumps(state) == pickled
    size = len(pickle.dumps(det.to_state(), pickle.HIGHEST_PROTOCOL))
    print(f"{name}: {size} bytes pickled after {N} inputs")
    assert size <= STATE_BUDGET.get(name, DEFAULT_BUDGET)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name):
    assert run(make(name), name) == run(make(name), name)


@pytest.mark.parametrize("series", sorted(SERIES))
@pytest.mark.parametrize("name", NUMERIC)
def test_scores_are_finite_and_nonnegative(name, series):
    scores = run(make(name), name, series=series)
    for s in scores:
        assert type(s) is float
        assert math.isfinite(s) and 0.0 <= s <= MAX_SCORE
    assert run(make(name), name, series=series) == scores


# Warm-ups in time, not readings (days of history; slots of the day): test_group_detectors.py.
TIMED = {"consistency", "response_ratio", "performance_ratio", "night_flow", "schedule", "dosing"}


@pytest.mark.parametrize("name", sorted(WARMUP))
def test_zero_during_warmup(name):
    assert set(WARMUP) == set(LEARNERS) - {"seasonal", "ensemble"} - TIMED
    n_warm = WARMUP[name]
    for series in ("random", "step", "huge_jumps"):
        scores = run(make(name), name, series=series)
        assert scores[:n_warm] == [0.0] * n_warm
        assert any(s > 0.0 for s in scores[n_warm:])


def test_seasonal_warms_up_per_slot():
    det = make("seasonal")  # 4 slots of 5 s each; a slot scores from its 4th reading on
    seen = [0] * 4
    warm = []
    for t in range(60):
        slot = (t % 20) // 5
        score = det.update(float(t), 1.0 + (t * 7) % 3)
        if seen[slot] < 3:
            assert score == 0.0
        else:
            warm.append(score)
        seen[slot] += 1
    assert len(warm) == 60 - 12 and any(s > 0 for s in warm)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", NUMERIC)
def test_non_finite_input_is_not_scored_or_learned(name, bad):
    det = make(name)
    run(det, name, 0, 100)
    before = det.to_state()
    x = bad if FAMILY[name] == "scalar" else [1.0, bad, 1.0]
    score = det.update(TIMES[100], x)
    assert math.isfinite(score) and score >= 0.0
    if name not in ("gap", "burst"):  # gap ignores x; burst counts it with weight 0
        assert score == 0.0
        assert det.to_state() == before


@pytest.mark.parametrize("name", sorted(n for n, f in REGISTERED if f == "vector"))
def test_vector_input_is_not_mutated_and_length_is_checked(name):
    det = make(name)
    xs = [np.array(v) for v in VECTORS["random"]]
    copies = [v.copy() for v in xs]
    for t, v in zip(TIMES, xs):
        det.update(t, v)
    assert all((a == b).all() for a, b in zip(xs, copies))
    with pytest.raises(ValueError, match="expected 3 readings"):
        det.update(TIMES[-1] + 1, [1.0, 2.0])
