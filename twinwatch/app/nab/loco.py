"""Leave-one-corpus-out (LOCO) evaluation of NAB detector configurations.

NAB's own score optimises one threshold per detector on the very files it is scored on, and a
detector's parameters are usually tuned on them too: an in-sample figure. Here every choice is
made on four corpora and scored on the fifth, for each profile:

* **fixed configuration** (:func:`held_out`): the NAB threshold is chosen on the other corpora,
  the held-out corpus is scored at it (normalised within that corpus);
* **selection** (:func:`loco`): the configuration *and* the threshold are chosen on the other
  corpora (best normalised score there), then scored on the held-out corpus. This is the honest
  estimate of "tune on what you have, run on what you have not".

Reported per held-out corpus, their mean (corpora with labelled windows; a corpus without windows
has no normalised score and reports its false positives instead), and *pooled*: every file scored
with the choices made without its corpus, normalised over all files, which is comparable with
the all-files (in-sample) score beside it.

Running the detectors (:func:`run_configs`) is the expensive part and is spread over processes,
one task per (configuration, file); the scores are kept in memory (and can be cached as JSON).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twinwatch.app.nab import scorer
from twinwatch.app.nab.corpus import DataFile

__all__ = ["Config", "Fold", "LocoResult", "SEARCH_SPACE", "held_out", "loco", "run_configs"]

#: A configuration: registry name and constructor arguments of a detector scoring in [0, 1].
Config = tuple[str, dict[str, Any]]


def _space() -> dict[str, Config]:
    members: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "S": [("seasonal", {"alpha": 0.02})],
        "SG": [("seasonal", {"alpha": 0.02}), ("gaussian", {"window": 2000})],
    }
    learn: dict[str, Any] = {"always": "always", "gated": {"mode": "gated", "drift_s": 14400.0}}
    out: dict[str, Config] = {}
    for m, inner in members.items():
        for window in (1000, 2000, 4000):
            for rest in (120, 240):
                for lname, policy in learn.items():
                    lh: list[tuple[str, dict[str, Any]]] = [
                        ("likelihood", {"detector": d, "detector_params": p, "window": window})
                        for d, p in inner
                    ]
                    common = {"threshold": 0.2, "rest_period": rest, "learn": policy}
                    out[f"{m}-w{window}-r{rest}-{lname}"] = (
                        ("likelihood", {**lh[0][1], **common})
                        if len(lh) == 1
                        else ("ensemble", {"members": [list(m) for m in lh], **common})
                    )
    return out


#: The fixed search space of the LOCO benchmark (24 configurations), named
#: ``<members>-w<window>-r<rest>-<learn>``:
#:
#: - members: ``S`` = the anomaly likelihood of the seasonal baseline (hour of day, alpha 0.02);
#:   ``SG`` = the higher of that and the likelihood of the windowed Gaussian (window 2000);
#: - window: the likelihood's window of averaged raw scores, 1000 / 2000 / 4000 readings
#:   (3.5 / 7 / 14 days at NAB's usual 5 minutes);
#: - rest: readings of silence after a hit (one alarm per event), 120 / 240;
#: - learn: ``always`` (every reading, as published) or ``gated`` (the detectors' default policy,
#:   a change accepted after 4 h).
#:
#: The likelihood's short average (10) and warm-up (300) and the reporting threshold 0.2 are
#: fixed. Chosen from the ideas of the detectors, not from scores on these files.
SEARCH_SPACE: dict[str, Config] = _space()


def _run_file(args: tuple[str, dict, tuple[float, ...], tuple[float, ...]]) -> list[float]:
    from twinwatch.detectors import build

    name, params, times, values = args
    det = build(name, **params)
    update = det.update
    return [update(t, x) for t, x in zip(times, values)]


def run_configs(
    configs: dict[str, Config],
    files: Sequence[DataFile],
    processes: int | None = None,
    cache: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Scores of every configuration on every file: ``{config: {file key: scores}}``.

    ``cache``: a folder of ``<config>.json`` files; a configuration whose cached parameters match
    is not run again.
    """
    out: dict[str, dict[str, list[float]]] = {}
    todo = []
    for cname, (det, params) in configs.items():
        path = None if cache is None else Path(cache) / f"{cname}.json"
        if path is not None and path.is_file():
            saved = json.loads(path.read_text())
            if saved["config"] == [det, params] and set(saved["scores"]) >= {f.key for f in files}:
                out[cname] = {f.key: saved["scores"][f.key] for f in files}
                continue
        todo.append(cname)
    tasks = [
        (cname, f.key, (configs[cname][0], configs[cname][1], f.times, f.values))
        for cname in todo
        for f in sorted(files, key=lambda f: -len(f.values))  # longest first: even load
    ]
    workers = processes or min(len(tasks), os.cpu_count() or 1) or 1
    results: dict[str, dict[str, list[float]]] = defaultdict(dict)
    if tasks:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for k, ((cname, key, _), scores) in enumerate(
                zip(tasks, pool.map(_run_file, [t[2] for t in tasks], chunksize=1))
            ):
                bad = next((s for s in scores if not 0.0 <= s <= 1.0), None)
                if bad is not None:
                    raise ValueError(f"{cname} scored {bad!r} on {key}: NAB scores are in [0, 1]")
                results[cname][key] = scores
                if progress:
                    progress(f"{k + 1}/{len(tasks)} {cname} {key}")
    for cname in todo:
        out[cname] = results[cname]
        if cache is not None:
            Path(cache).mkdir(parents=True, exist_ok=True)
            (Path(cache) / f"{cname}.json").write_text(
                json.dumps({"config": list(configs[cname]), "scores": results[cname]})
            )
    return out


@dataclass
class _Rows:
    """Sweep rows per file for one configuration and profile."""

    by_file: dict[str, list[scorer.Row]]

    def pooled(self, keys: Sequence[str]) -> list[scorer.Row]:
        return [r for k in keys for r in self.by_file[k]]


def _rows(
    scores: dict[str, list[float]], files: Sequence[DataFile], profile: scorer.Profile
) -> _Rows:
    return _Rows(
        {f.key: scorer.sweep_rows(f.key, scores[f.key], f.windows, profile) for f in files}
    )


@dataclass
class Fold:
    """One held-out corpus under one profile."""

    corpus: str
    config: str  # the configuration chosen on the other corpora
    threshold: float  # the NAB threshold chosen on the other corpora
    train: float  # normalised score on the other corpora
    score: float  # normalised score on the held-out corpus (nan: no labelled windows)
    raw: float  # raw score on the held-out corpus
    counts: dict[str, int]  # tp/fn/fp on the held-out corpus


@dataclass
class LocoResult:
    profile: str
    folds: list[Fold] = field(default_factory=list)
    pooled: float = math.nan  # every file scored by choices made without its corpus
    in_sample: float = math.nan  # the all-files score (config and threshold chosen on all)
    in_sample_config: str = ""
    in_sample_threshold: float = math.nan

    @property
    def mean(self) -> float:
        """Mean held-out score over the corpora that have labelled windows."""
        vals = [f.score for f in self.folds if not math.isnan(f.score)]
        return sum(vals) / len(vals) if vals else math.nan


def _normalise(raw: float, null: float, perfect: float) -> float:
    return scorer.normalise(raw, null, perfect) if perfect != null else math.nan


def _corpora(files: Sequence[DataFile]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for f in files:
        out[f.corpus].append(f.key)
    return dict(sorted(out.items()))


def loco(
    scores: dict[str, dict[str, list[float]]],
    files: Sequence[DataFile],
    profile: scorer.Profile,
) -> LocoResult:
    """Choose configuration and threshold on four corpora, score the fifth; also in-sample.

    Scores that NAB cannot normalise (no labelled windows) are nan; where such a score must
    rank configurations (training corpora without windows), the raw score does.
    """
    corpora = _corpora(files)
    if len(corpora) < 2:
        raise ValueError(f"leave-one-corpus-out needs two corpora or more, got {list(corpora)}")
    rows = {c: _rows(s, files, profile) for c, s in scores.items()}
    all_keys = [f.key for f in files]
    res = LocoResult(profile.name)
    pooled_raw = 0.0
    for corpus, keys in corpora.items():
        train_keys = [k for k in all_keys if k not in set(keys)]
        best: tuple[float, str, float, float] | None = None
        for cname, r in rows.items():
            train = r.pooled(train_keys)
            threshold, raw = scorer.optimise_threshold(train, profile)
            norm = _normalise(raw, *scorer.null_and_perfect(train, profile))
            key = raw if math.isnan(norm) else norm
            if best is None or key > best[0]:
                best = (key, cname, threshold, norm)
        assert best is not None
        _, cname, threshold, train_norm = best
        test = rows[cname].pooled(keys)
        raw, counts = scorer.file_score(test, threshold, profile)
        score = _normalise(raw, *scorer.null_and_perfect(test, profile))
        pooled_raw += raw
        res.folds.append(Fold(corpus, cname, threshold, train_norm, score, raw, counts))
    everything = next(iter(rows.values())).pooled(all_keys)
    null, perfect = scorer.null_and_perfect(everything, profile)
    res.pooled = _normalise(pooled_raw, null, perfect)
    best_all: tuple[float, float, str, float] | None = None
    for cname, r in rows.items():
        threshold, raw = scorer.optimise_threshold(r.pooled(all_keys), profile)
        norm = _normalise(raw, null, perfect)
        key = raw if math.isnan(norm) else norm
        if best_all is None or key > best_all[0]:
            best_all = (key, norm, cname, threshold)
    assert best_all is not None
    _, res.in_sample, res.in_sample_config, res.in_sample_threshold = best_all
    return res


def held_out(
    scores: dict[str, list[float]], files: Sequence[DataFile], profile: scorer.Profile
) -> LocoResult:
    """LOCO for one fixed configuration: only the threshold is chosen on the other corpora."""
    return loco({"config": scores}, files, profile)
