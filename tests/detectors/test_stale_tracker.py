"""StaleTracker's deadline heap against its definition: a series is newly stale at ``check(now)``
when ``now - t_last > factor * interval_s`` and it was not reported since it was last seen."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from twinwatch.detectors import StaleTracker


class _Scan:
    """The definition, by a scan of every series (what ``check`` did before the heap)."""

    def __init__(self, factor: float):
        self.factor = factor
        self.series: dict[str, list] = {}

    def seen(self, key: str, t: float, interval_s: float) -> None:
        entry = self.series.get(key)
        if entry is None:
            self.series[key] = [t, interval_s, False]
        else:
            entry[0] = max(entry[0], t)
            entry[1] = interval_s
            entry[2] = False

    def check(self, now: float) -> list[tuple[str, float]]:
        out = []
        for key, entry in self.series.items():
            if not entry[2] and now - entry[0] > self.factor * entry[1]:
                entry[2] = True
                out.append((key, now - entry[0]))
        return sorted(out)

    def forget(self, key: str) -> None:
        self.series.pop(key, None)


_KEYS = st.sampled_from([f"s{i}" for i in range(6)])
_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("seen"),
            _KEYS,
            st.floats(0, 100),
            st.sampled_from([0.1, 1.0, 2.5, 10.0]),
        ),
        st.tuples(st.just("check"), st.floats(0, 10)),  # time moves on by this much
        st.tuples(st.just("forget"), _KEYS),
        st.tuples(st.just("restore")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=_OPS, factor=st.sampled_from([1.0, 3.0, 0.7]))
def test_check_reports_what_a_scan_of_every_series_reports(ops, factor):
    tracker, scan, now = StaleTracker(factor), _Scan(factor), 0.0
    for op in ops:
        if op[0] == "seen":
            _, key, t, interval = op
            tracker.seen(key, t, interval)
            scan.seen(key, t, interval)
        elif op[0] == "check":
            now += op[1]
            assert tracker.check(now) == scan.check(now)
        elif op[0] == "forget":
            tracker.forget(op[1])
            scan.forget(op[1])
        else:  # a snapshot and a restore
            state = pickle.loads(pickle.dumps(tracker.to_state()))
            tracker = StaleTracker.from_state(tracker.params(), state)
    assert tracker.check(now + 1000.0) == scan.check(now + 1000.0)
    assert {k: tuple(v[:3]) for k, v in tracker._series.items()} == {
        k: tuple(v) for k, v in scan.series.items()
    }
