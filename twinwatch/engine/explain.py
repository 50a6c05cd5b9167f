"""Explanations on alerts: which detector fired, which sensors contributed and by how much, and
what was expected against what was observed (issue #12).

    group_explanation(gp, name, kind, det, score) -> (unit, dict)   for an asset group's alert
    series_explanation(ref, name, kind, det, x) -> dict   for a per-sensor detector's alert
    stale_explanation(ref, silent_s, expected_s) -> dict
    baseline_note(domain, site, asset, sensor, name, drift) -> Annotation   a change accepted

Each returns the keyword arguments of ``make_alert`` that carry the explanation (``detector``,
``kind``, ``observed``, ``expected``, ``expected_low``, ``expected_high``, ``contributors``,
``explanation``), so the on-call engineer can judge the alert without opening a notebook. They
are computed only when an alert changes state, never per reading.

Per-sensor detectors predate explanations; their baseline is read from their public snapshot
(``to_state()``) for the ones whose snapshot holds it (robust_z's window, cusum's mean and
variance), the limits come from the sensor's config, and any other detector reports the
observed value and its score. A detector may provide ``explain(x) -> Explanation`` itself, which
then wins.
"""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime
from typing import Any

from twinwatch.config import SensorRef
from twinwatch.detectors.group import Explanation
from twinwatch.schema import Annotation

__all__ = [
    "group_explanation",
    "series_explanation",
    "stale_explanation",
    "explanation_line",
    "baseline_note",
]


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _g(x: float | None) -> str:
    return "?" if x is None else f"{x:.4g}"


def explanation_line(
    *,
    detector: str,
    kind: str,
    quantity: str,
    unit: str,
    observed: float | None,
    expected: float | None,
    low: float | None,
    high: float | None,
    contributors: tuple[tuple[str, float], ...],
    note: str = "",
) -> str:
    """One line for the on-call engineer, e.g. ``consistency (sensor_fault): strain-2 reading
    182 microstrain, expected 151 (normal 139-163); contributors strain-2 91%, strain-1 6%``."""
    u = f" {unit}" if unit else ""
    text = f"{detector} ({kind}): {quantity} {_g(observed)}{u}"
    if expected is not None:
        text += f", expected {_g(expected)}"
    if low is not None or high is not None:
        band = (
            f"{_g(low)}-{_g(high)}"
            if low is not None and high is not None
            else (f">= {_g(low)}" if low is not None else f"<= {_g(high)}")
        )
        text += f" (normal {band})"
    if contributors:
        top = ", ".join(f"{s} {share:.0%}" for s, share in contributors[:4])
        text += f"; contributors {top}"
    if note:
        text += f"; {note}"
    return text[:1024]


def _fields(
    detector: str,
    kind: str,
    quantity: str,
    unit: str,
    observed: float | None,
    expected: float | None,
    low: float | None,
    high: float | None,
    contributors: tuple[tuple[str, float], ...],
    note: str = "",
) -> dict[str, Any]:
    observed, expected, low, high = map(_num, (observed, expected, low, high))
    return {
        "detector": detector,
        "kind": kind,
        "observed": observed,
        "expected": expected,
        "expected_low": low,
        "expected_high": high,
        "contributors": contributors,
        "explanation": explanation_line(
            detector=detector,
            kind=kind,
            quantity=quantity,
            unit=unit,
            observed=observed,
            expected=expected,
            low=low,
            high=high,
            contributors=contributors,
            note=note,
        ),
    }


def group_explanation(gp, name: str, kind: str, det, score: float) -> tuple[str, dict[str, Any]]:
    """The unit of the observed quantity, and the explanation of group detector ``name`` (type
    ``kind``) of group plan ``gp`` (a plain vector detector, without ``explain``, reports its
    score against its threshold)."""
    _, _, _, idx = next(d for d in gp.detectors if d[0] == name)
    sensors = [gp.members[i] for i in idx]
    if not hasattr(det, "explain"):
        share = round(1.0 / len(sensors), 4)
        return "", _fields(
            kind,
            getattr(det, "kind", "multivariate"),
            "score",
            "",
            score,
            None,
            None,
            det.threshold,
            tuple((s, share) for s in sensors),
            f"{name}: the sensors together, against their learned relation",
        )
    e: Explanation = det.explain()
    contributors = tuple((sensors[i], share) for i, share in e.contributors if i < len(sensors))
    quantity = e.quantity.replace("{member}", sensors[e.member] if e.member is not None else "")
    unit = gp.units[idx[e.unit_of]] if e.unit_of is not None else ""
    note = f"{name}: {e.note}" if e.note else name
    return unit, _fields(
        kind, det.kind, quantity, unit, e.observed, e.expected, e.low, e.high, contributors, note
    )


def series_explanation(ref: SensorRef, name: str, kind: str, det, x: float) -> dict[str, Any]:
    """The explanation of per-sensor detector ``name`` (registry type ``kind``) on reading x."""
    sensor, unit = ref.sensor.id, ref.sensor.unit
    own = ((sensor, 1.0),)
    expected = low = high = None
    note = ""
    explain = getattr(det, "explain", None)
    if callable(explain):
        e = explain(x)
        return _fields(
            kind, kind, sensor, unit, e.observed, e.expected, e.low, e.high, own, e.note or name
        )
    try:
        if kind == "limits" and ref.sensor.limits is not None:
            low, high = ref.sensor.limits.low, ref.sensor.limits.high
            note = ref.sensor.limits.source
        elif kind == "robust_z":
            window = det.to_state()[0][0]  # (model (window, prev), learning policy)
            if window:
                expected = statistics.median(window)
                mad = statistics.median(abs(v - expected) for v in window)
                band = det.threshold * 1.4826 * mad
                low, high = expected - band, expected + band
        elif kind == "cusum":
            _, expected, var, _, _ = det.to_state()[0]  # (model, learning policy)
            note = f"sustained departure from the running mean (sd {math.sqrt(max(var, 0)):.4g})"
        elif kind == "stuck":
            note = f"the same value {getattr(det, 'n', '?')} times in a row"
        elif kind == "gap":
            interval = det.params().get("interval_s")
            return _fields(
                kind,
                kind,
                f"{sensor} gap",
                "s",
                None,
                interval,
                None,
                None,
                own,
                "late or missing readings",
            )
    except (AttributeError, TypeError, ValueError, IndexError, statistics.StatisticsError):
        expected = low = high = None  # a snapshot of another shape: report what was observed
    return _fields(kind, kind, sensor, unit, x, expected, low, high, own, note or name)


def stale_explanation(ref: SensorRef, silent_s: float, expected_s: float) -> dict[str, Any]:
    return _fields(
        "stale",
        "stale",
        f"{ref.sensor.id} silent for",
        "s",
        silent_s,
        expected_s,
        None,
        expected_s,
        ((ref.sensor.id, 1.0),),
        "no reading for longer than the sensor's stale limit",
    )


def baseline_note(domain: str, site: str, asset: str, sensor: str, name: str, drift) -> Annotation:
    """The learning policy's drift rule accepted a change as detector ``name``'s new baseline
    (``det.drift``, twinwatch.detectors.policy): an ``annotation`` point of kind ``baseline``
    (Grafana shows it on the panels), so nobody wonders why an alert went quiet."""
    since = datetime.fromtimestamp(drift.since, UTC)
    at = datetime.fromtimestamp(drift.at, UTC)
    why = "persisted" if drift.reason == "persisted" else "confirmed by an operator"
    text = f"{name}: the change since {since:%Y-%m-%d %H:%M} UTC is the new baseline ({why})"
    return Annotation(at, domain, site, asset, sensor, "baseline", at, text)  # type: ignore[arg-type]
