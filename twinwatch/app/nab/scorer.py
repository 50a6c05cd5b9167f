"""NAB scoring, following Numenta's ``nab/sweeper.py`` (NAB v1.1) rule for rule.

Per data file, every row gets a *sweep score* (:func:`sweep_rows`):

* rows in the probationary period -- the first ``min(floor(0.15 * n), 750)`` rows -- are not
  scored at all;
* a row inside a labelled window at index ``i`` (window ``[a, b]``, width ``w = b - a + 1``) is
  worth ``tp * S(-(b - i + 1) / w) / S(-1)``: 1.0·tp at the window's first row, falling along
  the scaled sigmoid ``S(x) = 2 / (1 + exp(5x)) - 1`` (``S(x) = -1`` for ``x >= 3``);
* a row outside any window costs ``fp * S(|i - b_prev| / (w_prev - 1))`` after a window (a
  detection just after a window costs little), ``-fp`` before the first window.

A detector's rows are *detections* where ``anomaly_score >= threshold``. A window's contribution
is ``-fn`` if nothing in it is detected, else the best (= earliest) detection's sweep score, so one
window counts once; every detected row outside windows adds its (negative) sweep score.

:func:`optimise_threshold` sweeps every distinct score over the whole corpus at once (like NAB's
``Sweeper.calcScoreByThreshold``) and keeps the best threshold per profile; :func:`normalise`
maps a raw total to ``100 * (raw - null) / (perfect - null)``, with the null detector (never
fires: ``-fn`` per window) and the perfect detector (fires on each window's first row: ``tp`` per
window) scored by the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "PROFILES",
    "Profile",
    "Row",
    "file_score",
    "normalise",
    "null_and_perfect",
    "optimise_threshold",
    "probation_length",
    "scaled_sigmoid",
    "sweep_rows",
]

PROBATION = -1  # window id of a probationary row (never scored)


@dataclass(frozen=True)
class Profile:
    """An application profile's cost matrix (NAB's ``config/profiles.json``)."""

    name: str
    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0


PROFILES = (
    Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    Profile("reward_low_FP", tp=1.0, fp=0.22, fn=1.0),
    Profile("reward_low_FN", tp=1.0, fp=0.11, fn=2.0),
)


@dataclass(frozen=True)
class Row:
    """One scorable row: its detector score, sweep score and window (``None``: outside)."""

    score: float
    sweep: float
    window: tuple | None


def probation_length(n: int, percent: float = 0.15) -> float:
    """Rows ``i < probation_length(n)`` are the probationary period (NAB caps it at 750 rows)."""
    return min(math.floor(percent * n), percent * 5000)


def scaled_sigmoid(x: float) -> float:
    """NAB's scaled sigmoid: 0.98661 at -1 (window start), 0 at the window end, -1 from 3 on."""
    if x >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def sweep_rows(
    key: str,
    scores: Sequence[float],
    windows: Sequence[tuple[int, int]],
    profile: Profile,
    probation_percent: float = 0.15,
) -> list[Row]:
    """The scorable rows of one file (probationary rows dropped), as in ``calcSweepScore``.

    ``windows`` are inclusive ``(first_row, last_row)`` index pairs, sorted and disjoint; a
    window is identified as ``(key, first_row)`` so windows of different files never merge.
    """
    n = len(scores)
    probation = probation_length(n, probation_percent)
    max_tp = scaled_sigmoid(-1.0)
    pending = list(windows)
    rows: list[Row] = []
    cur = None  # (first, last, width) of the window we are in
    prev_end: int | None = None  # last index and width of the window we left
    prev_width = 0.0
    for i, s in enumerate(scores):
        if cur is None and pending and i == pending[0][0]:
            a, b = pending.pop(0)
            cur = (a, b, float(b - a + 1))
        if cur is not None:
            sweep = scaled_sigmoid(-(cur[1] - i + 1) / cur[2]) * profile.tp / max_tp
            window = (key, cur[0])
        else:
            if prev_end is None or prev_width is None or prev_width <= 1.0:
                pos = 3.0
            else:
                pos = abs(prev_end - i) / (prev_width - 1.0)
            sweep = scaled_sigmoid(pos) * profile.fp
            window = None
        if i >= probation:
            rows.append(Row(float(s), sweep, window))
        if cur is not None and i == cur[1]:
            prev_end, prev_width, cur = cur[1], cur[2], None
    return rows


def file_score(rows: Sequence[Row], threshold: float, profile: Profile) -> tuple[float, dict]:
    """Raw score of one file's rows at ``threshold``, and its ``tp/fp/fn`` window/row counts."""
    best: dict = {r.window: -profile.fn for r in rows if r.window is not None}
    fp_score = 0.0
    fp = 0
    for r in rows:
        if r.score >= threshold:
            if r.window is None:
                fp_score += r.sweep
                fp += 1
            elif r.sweep > best[r.window]:
                best[r.window] = r.sweep
    detected = sum(1 for v in best.values() if v != -profile.fn)
    counts = {"tp": detected, "fn": len(best) - detected, "fp": fp}
    return fp_score + sum(best.values()), counts


def optimise_threshold(rows: Sequence[Row], profile: Profile) -> tuple[float, float]:
    """``(threshold, raw corpus score)`` maximising the score over all rows of a corpus.

    Lowers the threshold through every distinct score (highest first), updating the score
    incrementally: a window's part moves from ``-fn`` to its best detection's sweep score; a row
    outside windows adds its sweep score. Ties keep the higher threshold, as NAB does (its list
    is sorted by score, stable, and the first maximum wins).
    """
    best: dict = {r.window: -profile.fn for r in rows if r.window is not None}
    total = sum(best.values())
    threshold, best_threshold, best_total = 1.1, 1.1, total
    for r in sorted(rows, key=lambda r: r.score, reverse=True):
        if r.score != threshold:
            if total > best_total:
                best_threshold, best_total = threshold, total
            threshold = r.score
        if r.window is None:
            total += r.sweep
        elif r.sweep > best[r.window]:
            total += r.sweep - best[r.window]
            best[r.window] = r.sweep
    if total > best_total:
        best_threshold, best_total = threshold, total
    return best_threshold, best_total


def null_and_perfect(rows: Sequence[Row], profile: Profile) -> tuple[float, float]:
    """Raw corpus scores of the null detector (never fires) and the perfect one."""
    windows: dict = {}
    for r in rows:
        if r.window is not None:
            windows[r.window] = max(windows.get(r.window, -math.inf), r.sweep)
    return -profile.fn * len(windows), sum(windows.values())


def normalise(raw: float, null: float, perfect: float) -> float:
    """NAB's normalised score: 0 = null detector, 100 = perfect detector."""
    return 100.0 * (raw - null) / (perfect - null)
