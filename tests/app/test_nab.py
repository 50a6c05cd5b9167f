"""The NAB harness: scorer rules against hand-computed cases, the corpus I/O, the CLI.

Hand-computed numbers below use NAB's scaled sigmoid S(x) = 2 / (1 + exp(5x)) - 1:
S(-1) = 0.98661429815, S(-0.6) = 0.90514825364, S(0.5) = -0.84828363995.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from paths import SHARED_DATA

from twinwatch.app.cli import main as cli_main
from twinwatch.app.nab import loco, scorer
from twinwatch.app.nab.corpus import DataFile, NabLayoutError, load_corpus, write_results
from twinwatch.app.nab.run import DETECTORS, bench
from twinwatch.detectors import build

NAB = SHARED_DATA / "nab"
REPO = Path(__file__).resolve().parents[2]
STANDARD, LOW_FP, LOW_FN = scorer.PROFILES
S_M06 = 0.90514825364  # S(-0.6)
S_M1 = 0.98661429815  # S(-1)
S_05 = -0.84828363995  # S(0.5)


def need_nab() -> Path:
    if not (NAB / "labels" / "combined_windows.json").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"NAB data missing at {NAB} (CI=true)")
        pytest.skip(f"NAB data not found at {NAB}")
    return NAB


# --------------------------------------------------------------------------- scorer rules


def test_probation_is_15_percent_capped_at_750_rows():
    assert scorer.probation_length(20) == 3
    assert scorer.probation_length(4032) == 604
    assert scorer.probation_length(22695) == 750


def test_scaled_sigmoid_fixed_points():
    assert scorer.scaled_sigmoid(-1.0) == pytest.approx(S_M1, abs=1e-11)
    assert scorer.scaled_sigmoid(0.0) == 0.0
    assert scorer.scaled_sigmoid(0.5) == pytest.approx(S_05, abs=1e-11)
    assert scorer.scaled_sigmoid(3.0) == -1.0


# 20 rows -> rows 0..2 probationary; one window, rows 10..14 (width 5)
WINDOWS = [(10, 14)]


def scores_at(rows: dict[int, float], n: int = 20) -> list[float]:
    return [rows.get(i, 0.0) for i in range(n)]


def test_file_score_hand_computed():
    # FP at 5 (before any window): -0.11; detections at 12 and 13: only the earliest counts,
    # S(-(14-12+1)/5) / S(-1); FP at 16: 0.11 * S(|16-14| / (5-1)); row 1 is probationary.
    rows = scorer.sweep_rows(
        "f", scores_at({1: 1.0, 5: 1.0, 12: 1.0, 13: 1.0, 16: 1.0}), WINDOWS, STANDARD
    )
    assert len(rows) == 17
    score, counts = scorer.file_score(rows, 0.5, STANDARD)
    assert score == pytest.approx(-0.11 + S_M06 / S_M1 + 0.11 * S_05, abs=1e-9)
    assert counts == {"tp": 1, "fn": 0, "fp": 2}


def test_earliest_row_of_window_is_worth_exactly_tp():
    rows = scorer.sweep_rows("f", scores_at({10: 1.0}), WINDOWS, LOW_FN)
    assert scorer.file_score(rows, 0.5, LOW_FN)[0] == pytest.approx(1.0)


def test_missed_window_costs_fn_and_profiles_weigh_differently():
    rows = {
        p.name: scorer.sweep_rows("f", scores_at({5: 1.0}), WINDOWS, p) for p in scorer.PROFILES
    }
    assert scorer.file_score(rows["standard"], 0.5, STANDARD)[0] == pytest.approx(-1.11)
    assert scorer.file_score(rows["reward_low_FP"], 0.5, LOW_FP)[0] == pytest.approx(-1.22)
    assert scorer.file_score(rows["reward_low_FN"], 0.5, LOW_FN)[0] == pytest.approx(-2.11)


def test_optimise_threshold_sweeps_every_score():
    # thresholds: 1.1 -> -1 (miss); 0.9 -> TP at 12; 0.8 -> + FP at 5; 0.3 -> + FP at 16;
    # 0.0 -> every row fires (many FPs). The best is 0.9.
    rows = scorer.sweep_rows("f", scores_at({12: 0.9, 5: 0.8, 16: 0.3}), WINDOWS, STANDARD)
    threshold, raw = scorer.optimise_threshold(rows, STANDARD)
    assert threshold == 0.9
    assert raw == pytest.approx(S_M06 / S_M1, abs=1e-9)
    null, perfect = scorer.null_and_perfect(rows, STANDARD)
    assert (null, perfect) == (-1.0, pytest.approx(1.0))
    assert scorer.normalise(raw, null, perfect) == pytest.approx(50 * (1 + S_M06 / S_M1))


def test_optimised_threshold_is_one_for_the_whole_corpus():
    # file a rewards a threshold of 0.6 (its TP scores 0.6); file b punishes it (FP at 0.7),
    # and b's FP costs less than a's TP gains, so the corpus optimum is 0.6 for both.
    a = scorer.sweep_rows("a", scores_at({11: 0.6}), WINDOWS, STANDARD)
    b = scorer.sweep_rows("b", scores_at({5: 0.7}), WINDOWS, STANDARD)
    threshold, raw = scorer.optimise_threshold(a + b, STANDARD)
    assert threshold == 0.6
    expected = scorer.file_score(a, 0.6, STANDARD)[0] + scorer.file_score(b, 0.6, STANDARD)[0]
    assert raw == pytest.approx(expected)
    assert raw == pytest.approx(scorer.scaled_sigmoid(-0.8) / S_M1 - 0.11 - 1.0)


def test_windows_of_different_files_never_merge():
    a = scorer.sweep_rows("a", scores_at({10: 1.0}), WINDOWS, STANDARD)
    b = scorer.sweep_rows("b", scores_at({}), WINDOWS, STANDARD)
    assert scorer.null_and_perfect(a + b, STANDARD) == (-2.0, pytest.approx(2.0))
    assert scorer.optimise_threshold(a + b, STANDARD)[1] == pytest.approx(0.0)


# --------------------------------------------------------------------------- corpus I/O


def make_nab(root: Path, n: int = 200, spike_at: int = 150) -> Path:
    (root / "data" / "toy").mkdir(parents=True)
    (root / "labels").mkdir()
    with (root / "data" / "toy" / "spike.csv").open("w") as f:
        f.write("timestamp,value\n")
        for i in range(n):
            v = 100.0 if i == spike_at else float(i % 7)
            f.write(f"2020-01-01 {i // 60:02d}:{i % 60:02d}:00,{v}\n")
    windows = {"toy/spike.csv": [["2020-01-01 02:20:00.000000", "2020-01-01 02:40:00.000000"]]}
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    return root


def test_load_corpus_maps_windows_to_rows_and_writes_nab_results(tmp_path):
    files = load_corpus(make_nab(tmp_path / "nab"))
    (f,) = files
    assert f.key == "toy/spike.csv" and f.corpus == "toy"
    assert f.windows == ((140, 160),)
    scores = [0.0] * len(f.values)
    scores[150] = 1.0
    out = write_results(tmp_path / "results", "det", f, scores)
    assert out == tmp_path / "results" / "det" / "toy" / "det_spike.csv"
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "label"]
    assert rows[150]["anomaly_score"] == "1.0" and rows[150]["value"] == "100.0"
    assert sum(int(r["label"]) for r in rows) == 21


def test_bad_layout_is_a_clear_error(tmp_path):
    with pytest.raises(NabLayoutError, match="not a NAB-layout folder"):
        load_corpus(tmp_path)
    root = make_nab(tmp_path / "nab")
    (root / "labels" / "combined_windows.json").write_text("{}")
    with pytest.raises(NabLayoutError, match="no entry"):
        load_corpus(root)
    make_nab(tmp_path / "nab2")
    (tmp_path / "nab2" / "data" / "toy" / "spike.csv").write_text("time,v\n1,2\n")
    with pytest.raises(NabLayoutError, match="header"):
        load_corpus(tmp_path / "nab2")


def test_cli_bench_nab_on_a_toy_folder(tmp_path, capsys):
    root = make_nab(tmp_path / "nab")
    rc = cli_main(
        [
            "bench",
            "nab",
            "--data",
            str(root),
            "--results",
            str(tmp_path / "res"),
            "--detector",
            "gaussian",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "NAB standard" in out and "reward_low_FP" in out and "reward_low_FN" in out
    assert "events/s" in out
    # the lone spike (row 150 of window 140..160) is the only detection at the best threshold
    line = next(ln for ln in out.splitlines() if ln.startswith("gaussian"))
    expected = 100 * (1 + scorer.scaled_sigmoid(-11 / 21) / S_M1) / 2
    assert float(line.split()[1]) == pytest.approx(expected, abs=0.05)
    assert line.split()[3] == "1/0/0"
    assert (tmp_path / "res" / "gaussian" / "toy" / "gaussian_spike.csv").is_file()


def test_cli_bench_nab_missing_folder_and_unknown_detector(tmp_path, capsys):
    assert cli_main(["bench", "nab", "--data", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    root = make_nab(tmp_path / "nab")
    assert cli_main(["bench", "nab", "--data", str(root), "--detector", "nope"]) == 2
    assert "unknown benchmark detector" in capsys.readouterr().err


# --------------------------------------------------------------------------- real NAB data


def test_detectors_are_online_no_look_ahead():
    """Scores on a prefix of a file equal the first scores on the whole file."""
    (f,) = load_corpus(need_nab(), "art_daily_jumpsup")
    half = len(f.values) // 2
    for name in ("gaussian", "robust_z", "seasonal"):
        det = DETECTORS[name]()
        full = [det.update(t, x) for t, x in zip(f.times, f.values)]
        det = DETECTORS[name]()
        prefix = [det.update(t, x) for t, x in zip(f.times[:half], f.values[:half])]
        assert prefix == full[:half], name


def test_real_corpus_null_and_perfect_normalise_to_0_and_100():
    files = load_corpus(need_nab(), "realKnownCause")
    rows = []
    for f in files:
        perfect = [0.0] * len(f.values)
        for a, _ in f.windows:
            perfect[a] = 1.0
        rows += scorer.sweep_rows(f.key, perfect, f.windows, STANDARD)
    null, best = scorer.null_and_perfect(rows, STANDARD)
    assert null == -sum(len(f.windows) for f in files)
    threshold, raw = scorer.optimise_threshold(rows, STANDARD)
    assert threshold == 1.0
    assert scorer.normalise(raw, null, best) == pytest.approx(100.0)
    zeros = [
        r
        for f in files
        for r in scorer.sweep_rows(f.key, [0.0] * len(f.values), f.windows, STANDARD)
    ]
    assert scorer.normalise(scorer.optimise_threshold(zeros, STANDARD)[1], null, best) == 0.0


def test_gaussian_on_two_real_files_beats_null(tmp_path):
    res = bench(need_nab(), tmp_path, ["gaussian"], only="art_daily_j")
    (r,) = res
    assert r.events == 2 * 4032 and r.events_per_s > 0
    threshold, score, by_corpus, counts = r.table["standard"]
    assert score > 0.0 and counts["tp"] >= 1
    assert set(by_corpus) == {"artificialWithAnomaly"}
    written = sorted(p.name for p in (tmp_path / "gaussian" / "artificialWithAnomaly").iterdir())
    assert written == ["gaussian_art_daily_jumpsdown.csv", "gaussian_art_daily_jumpsup.csv"]


# --------------------------------------------------------------------------- leave one corpus out


def toy_file(corpus: str, name: str, windows=((100, 119),), n: int = 200) -> DataFile:
    times = tuple(float(60 * i) for i in range(n))
    return DataFile(f"{corpus}/{name}.csv", tuple(map(str, times)), times, (0.0,) * n, windows)


def hit_at(n: int, rows: list[int], value: float = 0.9) -> list[float]:
    return [value if i in rows else 0.0 for i in range(n)]


def test_loco_chooses_configuration_and_threshold_without_the_held_out_corpus():
    """Config `early` catches the windows of corpora a and b, `late` only those of c: with c held
    out the choice is `early` (and c then scores as a miss), whatever c's own labels say."""
    files = [toy_file("a", "1"), toy_file("b", "1"), toy_file("c", "1")]
    scores = {
        "early": {f.key: hit_at(200, [100] if f.corpus != "c" else []) for f in files},
        "late": {f.key: hit_at(200, [100] if f.corpus == "c" else []) for f in files},
    }
    res = loco.loco(scores, files, STANDARD)
    fold = {f.corpus: f for f in res.folds}
    assert fold["c"].config == "early" and fold["c"].score == pytest.approx(0.0)
    assert fold["c"].counts == {"tp": 0, "fn": 1, "fp": 0}
    assert fold["a"].config == "early" and fold["a"].score == pytest.approx(100.0)
    assert res.mean == pytest.approx(200.0 / 3)
    assert res.in_sample_config == "early" and res.in_sample == pytest.approx(100 * 2 / 3 * 2 / 2)
    # c's labels are not looked at when c is held out: moving its window changes nothing chosen
    moved = [files[0], files[1], toy_file("c", "1", windows=((40, 59),))]
    again = {f.corpus: f for f in loco.loco(scores, moved, STANDARD).folds}
    assert (again["c"].config, again["c"].threshold) == (fold["c"].config, fold["c"].threshold)


def test_held_out_threshold_comes_from_the_other_corpora():
    files = [toy_file("a", "1"), toy_file("b", "1")]
    scores = {"a/1.csv": hit_at(200, [100], 0.9), "b/1.csv": hit_at(200, [100], 0.5)}
    res = loco.held_out(scores, files, STANDARD)
    fold = {f.corpus: f for f in res.folds}
    assert fold["a"].threshold == 0.5  # b's best: a is detected at it too
    assert fold["b"].threshold == 0.9  # a's best: b's 0.5 is below it, b is missed
    assert fold["a"].score == pytest.approx(100.0) and fold["b"].score == pytest.approx(0.0)
    assert res.pooled == pytest.approx(50.0)
    assert res.in_sample == pytest.approx(100.0)


def test_a_held_out_corpus_without_windows_reports_its_false_positives():
    files = [toy_file("a", "1"), toy_file("quiet", "1", windows=())]
    scores = {"a/1.csv": hit_at(200, [100]), "quiet/1.csv": hit_at(200, [50, 150])}
    res = loco.held_out(scores, files, STANDARD)
    fold = {f.corpus: f for f in res.folds}
    assert math.isnan(fold["quiet"].score) and fold["quiet"].counts["fp"] == 2
    assert res.mean == pytest.approx(fold["a"].score)  # the mean skips it


def test_run_configs_spreads_files_over_processes_and_caches(tmp_path):
    root = make_nab(tmp_path / "nab")
    files = load_corpus(root)
    configs = {"g": ("gaussian", {"window": 50, "min_periods": 10, "learn": "always"})}
    cache = tmp_path / "cache"
    first = loco.run_configs(configs, files, processes=2, cache=cache)
    direct = [build("gaussian", window=50, min_periods=10, learn="always") for _ in (0,)][0]
    f = files[0]
    assert first["g"][f.key] == [direct.update(t, x) for t, x in zip(f.times, f.values)]
    assert json.loads((cache / "g.json").read_text())["config"][0] == "gaussian"
    assert loco.run_configs(configs, files, processes=1, cache=cache) == first
    changed = {"g": ("gaussian", {"window": 60, "min_periods": 10, "learn": "always"})}
    assert loco.run_configs(changed, files, processes=1, cache=cache) != first  # re-run


def test_search_space_is_small_and_every_configuration_builds():
    assert len(loco.SEARCH_SPACE) == 24
    for det, params in loco.SEARCH_SPACE.values():
        assert 0.0 <= build(det, **params).update(0.0, 1.0) <= 1.0
    det, params = loco.SEARCH_SPACE["SG-w4000-r120-always"]  # the default: best held out
    assert DETECTORS["ensemble"]().params() == build(det, **params).params()


def test_nab_loco_benchmark_prints_every_table(tmp_path):
    root = make_nab(tmp_path / "nab")
    (root / "data" / "toy2").mkdir()  # a second corpus: LOCO needs two
    (root / "data" / "toy2" / "spike.csv").write_text((root / "data/toy/spike.csv").read_text())
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    labels["toy2/spike.csv"] = labels["toy/spike.csv"]
    (root / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    args = ["--data", str(root), "--processes", "1", "--only", "S-w1000-r120", "--top", "2"]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.nab_loco", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for profile in ("standard", "reward_low_FP", "reward_low_FN"):
        assert f"== {profile}: configuration and threshold chosen" in proc.stdout
    assert "fixed configurations" in proc.stdout
    assert "best held out (standard): S-w1000-r120" in proc.stdout
