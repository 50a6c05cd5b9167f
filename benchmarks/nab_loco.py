"""Benchmark: NAB with leave-one-corpus-out (LOCO) selection of parameters and threshold.

    python -m benchmarks.nab_loco [--data ../shared/data/nab] [--processes 2] [--cache DIR]

Runs every configuration of the fixed search space (twinwatch.app.nab.loco.SEARCH_SPACE, 24
configurations) over every file, then for each NAB profile:

1. **selection**: for each corpus, the configuration and the NAB threshold with the best score on
   the other four corpora, scored on it (normalised within the corpus; a corpus without labelled
   windows reports its false positives). The mean over held-out corpora, the *pooled* held-out
   score (every file scored by choices made without its corpus, normalised over all files) and
   the all-files (in-sample) score beside them;
2. **fixed configurations**: for the best configurations (by held-out mean, standard profile),
   their all-files score, held-out mean and pooled score with only the threshold chosen on the
   other corpora. The configuration with the best held-out mean is the default NAB detector.

Same parameters for every file. Scores are cached per configuration (``--cache``), so a second
run only re-scores.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from twinwatch.app.bench import DEFAULT_DATA
from twinwatch.app.nab import scorer
from twinwatch.app.nab.corpus import load_corpus
from twinwatch.app.nab.loco import SEARCH_SPACE, LocoResult, held_out, loco, run_configs


def _fold_cell(score: float, counts: dict) -> str:
    return f"{score:6.1f}" if not math.isnan(score) else f"fp {counts['fp']:>3}"


def selection_table(res: LocoResult) -> str:
    lines = [
        f"\n== {res.profile}: configuration and threshold chosen on the other corpora",
        f"{'held-out corpus':24} {'chosen configuration':24} {'thresh':>7} {'train':>6} "
        f"{'held-out':>8}  tp/fn/fp",
    ]
    for f in res.folds:
        c = f.counts
        lines.append(
            f"{f.corpus:24} {f.config:24} {f.threshold:7.4f} {f.train:6.1f} "
            f"{_fold_cell(f.score, c):>8}  {c['tp']}/{c['fn']}/{c['fp']}"
        )
    lines.append(
        f"LOCO mean {res.mean:.1f} (corpora with windows)   pooled held-out {res.pooled:.1f}   "
        f"all-files (in-sample) {res.in_sample:.1f} [{res.in_sample_config}]"
    )
    return "\n".join(lines)


def fixed_table(rows: list[tuple[str, dict[str, LocoResult]]], profiles) -> str:
    head = f"{'configuration':24}" + "".join(
        f" | {p.name[:13]:>13} all  mean  pool" for p in profiles
    )
    lines = ["\n== fixed configurations: only the threshold chosen on the other corpora", head]
    for name, by_profile in rows:
        cells = "".join(
            f" | {'':13} {r.in_sample:4.1f} {r.mean:5.1f} {r.pooled:5.1f}"
            for r in (by_profile[p.name] for p in profiles)
        )
        lines.append(f"{name:24}{cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB-layout folder")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--cache", type=Path, help="folder caching each configuration's scores")
    ap.add_argument("--top", type=int, default=8, help="fixed configurations listed")
    ap.add_argument("--only", help="only configurations whose name contains this")
    args = ap.parse_args(argv)
    files = load_corpus(args.data)
    space = {k: v for k, v in SEARCH_SPACE.items() if not args.only or args.only in k}
    if not space:
        print(f"no configuration matches {args.only!r}", file=sys.stderr)
        return 2
    n = sum(len(f.values) for f in files)
    print(f"{len(space)} configurations x {len(files)} files ({n:,} readings each) ...")
    t0 = time.perf_counter()
    scores = run_configs(space, files, processes=args.processes, cache=args.cache)
    print(f"scored in {time.perf_counter() - t0:.0f} s")
    for profile in scorer.PROFILES:
        print(selection_table(loco(scores, files, profile)))
    fixed = {
        name: {p.name: held_out(s, files, p) for p in scorer.PROFILES} for name, s in scores.items()
    }
    ranked = sorted(fixed.items(), key=lambda kv: -kv[1]["standard"].mean)
    print(fixed_table(ranked[: args.top], scorer.PROFILES))
    best = ranked[0]
    print(
        f"\nbest held out (standard): {best[0]}: held-out mean {best[1]['standard'].mean:.1f}, "
        f"pooled {best[1]['standard'].pooled:.1f}, all files {best[1]['standard'].in_sample:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
