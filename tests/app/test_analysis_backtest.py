"""Backtests over the history the short simulated run stored in real InfluxDB 1.6.7
(tests/analysis_run.py), scored against the simulator's incident labels."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import msgspec
import pytest

from twinwatch.app.analysis.backtest import (
    FINDING_KINDS,
    alert_rows,
    backtest,
    live_alerts,
    load_history,
    records,
)
from twinwatch.app.analysis.query import EmptyResult, Influx
from twinwatch.app.evaluate import match_incidents, unmatched_alerts
from twinwatch.schema import Alert

pytestmark = pytest.mark.services
T = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def run(analysis_run):
    return analysis_run


@pytest.fixture(scope="module")
def history(run):
    with Influx(run.config.services.influxdb) as db:
        return load_history(db=db, start=run.start, end=run.end)


@pytest.fixture(scope="module")
def result(run, history):
    calls = []
    res = backtest(run.config, history, run.labels, progress=lambda d, t: calls.append((d, t)))
    n = len(records(history))
    assert calls[-1] == (n, n) and len(calls) > 10
    return res


def test_history_replays_the_input_not_the_findings(run, history):
    recs = records(history)
    inputs = [
        r
        for r in run.written
        if type(r).__name__ in ("Reading", "SecurityEvent")
        and not (getattr(r, "outcome", "") == "info" and r.kind in FINDING_KINDS)
    ]

    def key(r):  # InfluxDB keeps milliseconds
        return (round(r.time.timestamp() * 1000), repr(msgspec.structs.replace(r, time=T)))

    assert sorted(map(key, recs)) == sorted(map(key, inputs))  # every input, exactly


def test_backtest_recall_equals_the_live_flow(run, result):
    with Influx(run.config.services.influxdb) as db:
        live = live_alerts(db, run.start, run.end)
    # the live flow's alerts, as stored, and as the flow emitted them, agree
    assert Counter(a.rule for a in live) == Counter(
        a.rule for a in run.written if type(a) is Alert and a.status == "firing"
    )
    live_results = match_incidents(run.labels, live)
    assert [r.detected for r in result.incidents] == [r.detected for r in live_results]
    assert result.recall == sum(r.detected for r in live_results) / len(run.labels) >= 5 / 7
    # detector alerts are the same alerts at the same times; only the stale check depends on
    # how the stream was cut into batches
    not_stale = lambda rows: sorted((a.at, a.sensor, a.rule) for a in rows if a.rule != "stale")  # noqa: E731
    assert not_stale(alert_rows(result.alerts)) == not_stale(live)
    assert len(result.false_alarms) == len(unmatched_alerts(run.labels, live))


def test_sample_metrics_from_scikit_learn(result, history):
    (tn, fp), (fn, tp) = result.confusion
    assert tn + fp + fn + tp == result.samples == len(records(history))
    assert result.precision == pytest.approx(tp / (tp + fp))
    assert result.recall_samples == pytest.approx(tp / (tp + fn))
    assert 0 < result.f1 < 1


def test_parquet_history_gives_the_same_backtest(run, history, result, tmp_path):
    path = tmp_path / "history.parquet"
    history.write_parquet(path)
    again = backtest(run.config, load_history(parquet=path), run.labels)
    assert [a for a in again.alerts] == result.alerts
    assert again.summary() == result.summary()


def test_a_changed_threshold_changes_the_alerts(run, history, result):
    """What the backtest is for: try a config before production. Without robust_z alerts the
    attention-level alerts disappear and the incidents only robust_z caught are missed."""
    rules = [r for r in run.config.alert_rules if r.detector != "robust_z"]
    quieter = msgspec.structs.replace(run.config, alert_rules=rules)
    res = backtest(quieter, history, run.labels)
    assert "robust_z" not in res.by_rule and result.by_rule["robust_z"] > 0
    assert len(res.fired) == len(result.fired) - result.by_rule["robust_z"]
    only_z = {r.id for r in result.incidents if r.detected and r.first_alert.rule == "robust_z"}
    assert {r.id for r in res.incidents if not r.detected} <= only_z | {
        r.id for r in result.incidents if not r.detected
    }


def test_empty_history_is_a_clear_error(run):
    from datetime import timedelta

    with Influx(run.config.services.influxdb) as db, pytest.raises(EmptyResult):
        load_history(db=db, start=run.end + timedelta(days=1), end=run.end + timedelta(days=2))
