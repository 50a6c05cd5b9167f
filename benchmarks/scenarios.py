"""Benchmark: the example city's default detectors on the labelled scenarios (issue #12).

    python -m benchmarks.scenarios [--seeds 1-6] [--tuned 1-3] [--only NAME ...] [--variants]
                                   [--jobs 2] [--full-city] [--days 7]

Each scenario (``twinwatch simulate --scenario``) runs ``--days`` simulated days through the flow's
own engine (``twinwatch.app.evaluate.replay``: parse, per-sensor detectors, asset groups, stale,
security; no Bytewax, no services) with the shipped example config, unchanged. By default a
scenario runs on the sites it touches (the others cannot interact with it: every sensor has its
own seeded stream), and one quiet week of the whole city (no incident) per seed measures false
alarms everywhere; ``--full-city`` runs every scenario on the whole city.

Reported, per scenario and per seed group (``--tuned``: the seeds the defaults were chosen on;
the rest are held out): detected, detected first by the detector kind meant for it, detection
delay; false alarms per sensor-day per domain (quiet weeks and scenario runs pooled), alerts on
legitimate changes. ``--variants`` adds scenarios with other targets and magnitudes that were
never used to choose parameters.

Then the multivariate protocol of the issue's industrial benchmark, on our own asset incidents:
PCA T2/Q (``twinwatch.detectors.multivariate.PcaT2Q``) fitted on the fault-free start (the
first two days of aligned group vectors) and frozen; recall (incidents with a hit) and the
share of each incident's observable duration flagged.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime

import msgspec

from twinwatch.app import simulator
from twinwatch.app.evaluate import (
    TrustingParser,
    group_members,
    match_incidents,
    replay,
    unmatched_alerts,
)
from twinwatch.config import Config, load_config

# A fixed start (a Monday, 00:00 KST), so a seed gives the same week whatever today is.
START = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)

# Held-out variants: other targets and magnitudes, never used to choose a parameter.
VARIANTS: dict[str, tuple[str, dict, tuple[str, ...] | None]] = {
    "debond_strain1_small": (
        "gauge_debond",
        {"offset": 20.0, "response_loss": 0.3},
        ("sejong-bridge/span-2/strain-1",),
    ),
    "leak_dma2_small": ("night_leak", {"leak": 12.0}, ("sejong-dma-2/inlet/flow",)),
    "pv_loss_10pct": ("pv_underperformance", {"loss": 0.10}, None),
    "drift_strain2_slow": ("sensor_drift", {"rate_per_h": 1.0}, ("sejong-bridge/span-2/strain-2",)),
    "chlorine_dma1": ("chlorine_decline", {"drop": 0.25}, ("sejong-dma-1/inlet/chlorine",)),
    "stiffness_25pct": ("stiffness_growth", {"growth": 0.25}, None),
    "rain_dma2": ("rain_turbidity", {"peak": 0.4}, ("sejong-dma-2/inlet/turbidity",)),
    "replace_strain1": ("sensor_replacement", {}, ("sejong-bridge/span-2/strain-1",)),
}


def seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def only_sites(config: Config, sites: set[str]) -> Config:
    """The config restricted to ``sites`` (their sensors, groups and rules unchanged)."""
    return msgspec.structs.replace(
        config,
        sites=[s for s in config.sites if s.id in sites],
        asset_groups=[g for g in config.asset_groups if g.site in sites],
    )


def sensor_days(config: Config) -> dict[str, float]:
    days = config.simulation.duration_h / 24
    out: dict[str, float] = defaultdict(float)
    for ref in config.catalog.values():
        out[ref.domain] += days
    return dict(out)


def run_one(job: tuple) -> dict:
    """One (scenario or variant or "quiet", seed) run; returns plain data for the report."""
    name, seed, days, full_city = job
    base = load_config(environ={})
    if name == "quiet":
        sim = msgspec.structs.replace(
            base.simulation, seed=seed, duration_h=24.0 * days, incidents=[]
        )
        config = msgspec.structs.replace(base, simulation=sim)
    else:
        scenario, params, targets = VARIANTS.get(name, (name, {}, None))
        config = simulator.scenario_config(
            base, scenario, seed, days=days, params=params, targets=targets
        )
        if not full_city:
            sites = {t.split("/")[0] for i in config.simulation.incidents for t in i.targets}
            config = only_sites(config, sites)
    t0 = time.perf_counter()
    labels = simulator.incident_labels(config, START)
    messages = simulator.generate(config, START)
    alerts = replay(config, messages)
    groups = group_members(config)
    results = match_incidents(labels, alerts, groups=groups)
    false = unmatched_alerts(labels, alerts, groups=groups)
    return {
        "name": name,
        "seed": seed,
        "seconds": time.perf_counter() - t0,
        "sensor_days": sensor_days(config),
        "false": [(a.domain, a.target, a.rule, a.at.isoformat()) for a in false],
        "incidents": [
            {
                "kind": r.kind,
                "legit": r.legit,
                "detected": r.detected,
                "right_kind": r.right_kind,
                "delay_h": None if r.delay_s is None else r.delay_s / 3600,
                "first": None
                if r.first_alert is None
                else f"{r.first_alert.rule} ({r.first_alert.kind})",
            }
            for r in results
        ],
    }


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def report(runs: list[dict], tuned: set[int]) -> None:
    by_name: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_name[r["name"]].append(r)
    print("\n## Scenarios (default example config)\n")
    print(
        "| scenario | expected kind | seeds | detected | by the right kind | median delay h "
        "(range) | first alert | alerts on legit change |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, group in by_name.items():
        if name == "quiet":
            continue
        for label, subset in (
            ("tuned", [r for r in group if r["seed"] in tuned]),
            ("held-out", [r for r in group if r["seed"] not in tuned]),
        ):
            if not subset:
                continue
            incs = [i for r in subset for i in r["incidents"]]
            sc = simulator.SCENARIOS.get(name) or simulator.SCENARIOS[VARIANTS[name][0]]
            seeds_txt = f"{label} {','.join(str(r['seed']) for r in subset)}"
            if sc.legit:
                n = sum(i["detected"] for i in incs)
                print(f"| {name} | (quiet) | {seeds_txt} | | | | | {n} |")
                continue
            delays = [i["delay_h"] for i in incs if i["delay_h"] is not None]
            firsts = Counter(i["first"] for i in incs if i["first"])
            print(
                f"| {name} | {', '.join(sc.expect)} | {seeds_txt} | "
                f"{sum(i['detected'] for i in incs)}/{len(incs)} | "
                f"{sum(i['right_kind'] for i in incs)}/{len(incs)} | "
                + (
                    f"{statistics.median(delays):.1f} ({min(delays):.1f}-{max(delays):.1f})"
                    if delays
                    else "-"
                )
                + f" | {', '.join(f'{k} x{n}' for k, n in firsts.most_common(2))} | |"
            )
    print("\n## False alarms per sensor-day, by domain\n")
    print("| runs | domain | sensor-days | false alarms | per sensor-day | rules |")
    print("|---|---|---|---|---|---|")
    for label, subset in (
        ("quiet city weeks, tuned seeds", [r for r in by_name["quiet"] if r["seed"] in tuned]),
        (
            "quiet city weeks, held-out seeds",
            [r for r in by_name["quiet"] if r["seed"] not in tuned],
        ),
        ("all runs pooled", runs),
    ):
        days: Counter = Counter()
        false: Counter = Counter()
        rules: dict[str, Counter] = defaultdict(Counter)
        for r in subset:
            days.update(r["sensor_days"])
            for domain, _, rule, _ in r["false"]:
                false[domain] += 1
                rules[domain][rule] += 1
        for domain in sorted(days):
            rate = false[domain] / days[domain]
            top = ", ".join(f"{k} {n}" for k, n in rules[domain].most_common(4))
            n = false[domain]
            print(f"| {label} | {domain} | {days[domain]:.0f} | {n} | {rate:.3f} | {top} |")


# --- the multivariate protocol ----------------------------------------------------------------

MV_CASES = {  # scenario -> the group whose aligned vector PCA judges
    "gauge_debond": ("sejong-bridge", "span-2", ("strain-1", "strain-2", "temp", "accel-rms")),
    "sensor_drift": ("sejong-bridge", "span-2", ("strain-1", "strain-2", "temp", "accel-rms")),
    "stiffness_growth": ("sejong-bridge", "span-2", ("strain-1", "strain-2", "temp", "accel-rms")),
    "pv_underperformance": ("sejong-pv", "inverter-1", ("power", "irradiance")),
    "night_leak": ("sejong-dma-1", "inlet", ("pressure", "flow")),
}


def run_multivariate(job: tuple) -> dict:
    """PCA T2/Q frozen after the fault-free start, on one scenario's aligned group vectors."""
    import numpy as np

    from twinwatch.detectors.multivariate import PcaT2Q
    from twinwatch.engine.align import Aligner
    from twinwatch.schema import Reading

    name, seed, days, reference_days = job
    site, asset, members = MV_CASES[name]
    base = load_config(environ={})
    config = only_sites(simulator.scenario_config(base, name, seed, days=days), {site})
    label = simulator.incident_labels(config, START)[0]
    t_start = datetime.fromisoformat(label["start"]).timestamp()
    t_end = datetime.fromisoformat(label["end"]).timestamp()
    parser = TrustingParser(config)
    index = {f"{site}/{asset}/{m}": i for i, m in enumerate(members)}
    interval = max(
        s.interval_s
        for st in config.sites
        for a in st.assets
        for s in a.sensors
        if f"{st.id}/{a.id}/{s.id}" in index
    )
    aligner = Aligner(interval, [2.5 * interval] * len(members), interval / 2)
    ticks = []
    for m in simulator.generate(config, START):
        rec = parser.parse(m.topic, m.payload)
        if type(rec) is not Reading:
            continue
        i = index.get(f"{rec.site}/{rec.asset}/{rec.sensor}")
        if i is not None:
            ticks += aligner.push(rec.time.timestamp(), i, rec.value)
    t0 = ticks[0][0]
    ref_end = t0 + reference_days * 86400
    n_ref = sum(1 for t, _ in ticks if t < ref_end)
    # the reference is the fault-free start, fitted as a whole (alpha ~ 1 / its length)
    det = PcaT2Q(n=len(members), alpha=1.0 / n_ref, warmup=min(300, n_ref))
    flagged = observable = 0
    hit_any = False
    for t, vec in ticks:
        x = np.asarray(vec, dtype=float)
        if not np.isfinite(x).all():
            continue
        if t < ref_end:
            det.update(t, x)  # the fault-free start: learn it
            continue
        score = det.score_one(t, x)  # frozen: scored, never learned
        if t_start <= t < t_end:
            # PV is observable in daylight only: at night both sensors read 0
            if name == "pv_underperformance" and vec[1] < 200:
                continue
            observable += 1
            hit = score >= det.threshold
            flagged += hit
            hit_any |= hit
    return {
        "name": name,
        "seed": seed,
        "recall": hit_any,
        "flagged": flagged / observable if observable else float("nan"),
        "n": observable,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1-6")
    ap.add_argument("--tuned", default="1-3", help="seeds the defaults were chosen on")
    ap.add_argument("--only", nargs="*", help="scenario or variant names (default: all)")
    ap.add_argument("--variants", action="store_true", help="add the held-out variants")
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--full-city", action="store_true")
    ap.add_argument("--no-quiet", action="store_true", help="skip the quiet city weeks")
    ap.add_argument("--no-multivariate", action="store_true")
    args = ap.parse_args()
    all_seeds, tuned = seeds(args.seeds), set(seeds(args.tuned))
    names = args.only or list(simulator.SCENARIOS) + (list(VARIANTS) if args.variants else [])
    jobs = [(n, s, args.days, args.full_city) for n in names for s in all_seeds]
    if not args.no_quiet and not args.only:
        jobs = [("quiet", s, args.days, True) for s in all_seeds] + jobs
    t0 = time.perf_counter()
    print(f"{len(jobs)} runs of {args.days:g} simulated days on {args.jobs} processes ...")
    runs = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for r in pool.map(run_one, jobs):
            runs.append(r)
            inc = ", ".join(
                f"{i['kind']}: "
                + (
                    ("quiet" if not i["detected"] else f"ALERT {i['first']}")
                    if i["legit"]
                    else f"{i['first']} after {_fmt(i['delay_h'])} h"
                    if i["detected"]
                    else "MISSED"
                )
                for i in r["incidents"]
            )
            print(
                f"  {r['name']:22} seed {r['seed']}: {inc or 'no incident'}; "
                f"{len(r['false'])} false alarms ({r['seconds']:.0f} s)",
                flush=True,
            )
    report(runs, tuned)
    if not args.no_multivariate:
        mv_jobs = [
            (n, s, args.days, 2.0)
            for n in MV_CASES
            if not args.only or n in args.only
            for s in all_seeds
        ]
        print("\n## Multivariate: PCA T2/Q frozen after a fault-free start (2 days)\n")
        print("| scenario | seeds | recall | share of the incident flagged (median, min) |")
        print("|---|---|---|---|")
        with ProcessPoolExecutor(args.jobs) as pool:
            mv = list(pool.map(run_multivariate, mv_jobs))
        for name in MV_CASES:
            rows = [m for m in mv if m["name"] == name]
            if rows:
                shares = [m["flagged"] for m in rows]
                print(
                    f"| {name} | {len(rows)} | {sum(m['recall'] for m in rows)}/{len(rows)} | "
                    f"{statistics.median(shares):.2f}, {min(shares):.2f} |"
                )
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
