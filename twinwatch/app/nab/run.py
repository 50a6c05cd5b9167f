"""Run detectors online over a NAB-layout folder, write NAB result files, score, print tables.

    python -m twinwatch.app.nab.run [--data DIR] [--results DIR] [--detector NAME ...] [--only TEXT]

(the same as ``twinwatch bench nab``). Each detector sees each file one reading at a time,
through ``update(t, x)``, with no access to the file's length, range or future values; its
score must be in ``[0, 1]``. Then, per profile, one threshold per detector is optimised over the
whole corpus (:func:`twinwatch.app.nab.scorer.optimise_threshold`) and applied to every file.
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twinwatch.app.nab import scorer
from twinwatch.app.nab.corpus import DataFile, load_corpus, write_results
from twinwatch.app.nab.loco import SEARCH_SPACE
from twinwatch.detectors import build

__all__ = ["DETECTORS", "DEFAULT_DETECTORS", "Result", "run_detector", "score_detector", "main"]

_LH: dict[str, Any] = {"window": 2000, "short": 10, "min_periods": 300}
_ALWAYS: dict[str, Any] = {"learn": "always"}  # as published: these detectors learn every reading


def _config(name: str) -> Callable:
    det, params = SEARCH_SPACE[name]
    return lambda: build(det, **params)


#: Benchmark name -> factory of a fresh detector whose scores are in [0, 1]. Raw-score detectors
#: are wrapped in the anomaly likelihood; parameters are the same for every file. ``ensemble``
#: is the default NAB detector: the configuration of the LOCO search space with the best
#: held-out score (benchmarks/nab_loco.py, docs/detectors.md); ``seasonal`` is its first member
#: alone.
DETECTORS: dict[str, Callable] = {
    "gaussian": lambda: build("gaussian", **_ALWAYS),  # NAB's windowed-Gaussian reference
    "robust_z": lambda: build("likelihood", detector="robust_z", **_LH, **_ALWAYS),
    "cusum": lambda: build("likelihood", detector="cusum", **_LH, **_ALWAYS),
    "hst": lambda: build("hst", **_ALWAYS),
    "seasonal": _config("S-w4000-r120-always"),
    "ensemble": _config("SG-w4000-r120-always"),
}
#: hst is left out of the default run (~20 k events/s).
DEFAULT_DETECTORS = ("gaussian", "robust_z", "cusum", "seasonal", "ensemble")


@dataclass
class Result:
    detector: str
    scores: dict[str, list[float]] = field(default_factory=dict)  # file key -> scores
    seconds: float = 0.0
    events: int = 0
    # profile name -> (threshold, normalised total, {corpus: normalised}, counts)
    table: dict[str, tuple] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def run_detector(name: str, files: list[DataFile], factory: Callable, progress=None) -> Result:
    """Feed every file through a fresh detector, timing only the ``update`` calls."""
    res = Result(name)
    for k, data in enumerate(files):
        det = factory()
        update = det.update
        t0 = time.perf_counter()
        scores = [update(t, x) for t, x in zip(data.times, data.values)]
        res.seconds += time.perf_counter() - t0
        res.events += len(scores)
        bad = [s for s in scores if not 0.0 <= s <= 1.0]
        if bad:
            raise ValueError(
                f"{name} scored {bad[0]!r} on {data.key}: NAB scores must be in [0, 1]"
            )
        res.scores[data.key] = scores
        if progress:
            progress(f"{name}: {k + 1}/{len(files)} {data.key}")
    return res


def score_detector(res: Result, files: list[DataFile]) -> None:
    """Optimise a threshold per profile over the corpus and fill ``res.table``."""
    for profile in scorer.PROFILES:
        rows = {
            f.key: scorer.sweep_rows(f.key, res.scores[f.key], f.windows, profile) for f in files
        }
        everything = [r for rs in rows.values() for r in rs]
        threshold, raw = scorer.optimise_threshold(everything, profile)
        null, perfect = scorer.null_and_perfect(everything, profile)
        by_corpus: dict[str, list] = defaultdict(lambda: [0.0, 0.0, 0.0])
        counts = {"tp": 0, "fn": 0, "fp": 0}
        for f in files:
            s, c = scorer.file_score(rows[f.key], threshold, profile)
            n, p = scorer.null_and_perfect(rows[f.key], profile)
            acc = by_corpus[f.corpus]
            acc[0] += s
            acc[1] += n
            acc[2] += p
            for k in counts:
                counts[k] += c[k]
        corpus_scores = {
            c: scorer.normalise(*v) if v[2] != v[1] else float("nan")
            for c, v in sorted(by_corpus.items())
        }
        res.table[profile.name] = (
            threshold,
            scorer.normalise(raw, null, perfect),
            corpus_scores,
            counts,
        )


def format_tables(results: list[Result]) -> str:
    lines = []
    for profile in scorer.PROFILES:
        corpora = sorted({c for r in results for c in r.table[profile.name][2]})
        lines.append(f"\n== NAB {profile.name} (tp {profile.tp}, fp {profile.fp}, fn {profile.fn})")
        head = f"{'detector':12} {'score':>6} {'thresh':>7} {'tp/fn/fp':>14}  " + " ".join(
            f"{c[:14]:>14}" for c in corpora
        )
        lines.append(head)
        for r in sorted(results, key=lambda r: -r.table[profile.name][1]):
            thr, total, by_c, cnt = r.table[profile.name]
            tfp = f"{cnt['tp']}/{cnt['fn']}/{cnt['fp']}"
            lines.append(
                f"{r.detector:12} {total:6.1f} {thr:7.4f} {tfp:>14}  "
                + " ".join(f"{by_c.get(c, math.nan):14.1f}" for c in corpora)
            )
        lines.append(
            "(per corpus: normalised within the corpus at the corpus-wide threshold; "
            "nan = no labelled windows there, its false positives count in the total)"
        )
    lines.append(f"\n{'detector':12} {'events/s':>10}  (update() only, one core)")
    for r in results:
        lines.append(f"{r.detector:12} {r.events_per_s:10,.0f}")
    return "\n".join(lines)


def bench(
    data_dir: Path,
    results_dir: Path | None,
    names: list[str],
    only: str | None = None,
    progress=None,
) -> list[Result]:
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise ValueError(
            f"unknown benchmark detector {', '.join(unknown)}; known: {', '.join(DETECTORS)}"
        )
    files = load_corpus(data_dir, only)
    out = []
    for name in names:
        res = run_detector(name, files, DETECTORS[name], progress)
        if results_dir is not None:
            for f in files:
                write_results(results_dir, name, f, res.scores[f.key])
        score_detector(res, files)
        out.append(res)
    return out


def _progress(msg: str) -> None:
    print(f"\r\033[K{msg}", end="", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="bench nab", description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data/nab", help="NAB-layout folder")
    p.add_argument("--results", default="results", help="where to write NAB result files")
    p.add_argument(
        "--detector",
        action="append",
        help=f"any of {', '.join(DETECTORS)} (repeatable; default {' '.join(DEFAULT_DETECTORS)})",
    )
    p.add_argument("--only", help="only data files whose '<corpus>/<file>' contains this")
    args = p.parse_args(argv)
    results = bench(
        Path(args.data),
        Path(args.results),
        args.detector or list(DEFAULT_DETECTORS),
        args.only,
        _progress if sys.stderr.isatty() else None,
    )
    print(format_tables(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
