"""Benchmark: the example city's default detectors on the labelled scenarios (issue #12).

    python -m benchmarks.scenarios [--seeds 1-6] [--tuned 1-3] [--inspected 4-6]
                                   [--only NAME ...] [--variants] [--jobs 2] [--full-city]
                                   [--days 7]

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

Then the multivariate protocol of the issue's industrial benchmark, on our own asset incidents
(plus the example city's pipe burst and bearing overheating): PCA T2/Q
(``twinwatch.detectors.multivariate.PcaT2Q``) fitted on the fault-free start (the first two days
of aligned group vectors) and frozen, next to the asset group's own detectors as shipped (their
learning policy on); recall (incidents with a hit) and the share of each incident's observable
ticks flagged (PV: daylight only).
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


def _seed_groups(runs: list[dict], tuned: set[int], inspected: set[int]) -> list:
    """tuned (parameters chosen on them), held-out but inspected while developing, and fresh
    held-out seeds (never looked at before the reported run); empty groups left out."""
    groups = [
        ("tuned", [r for r in runs if r["seed"] in tuned]),
        ("held-out (inspected)", [r for r in runs if r["seed"] in inspected]),
        ("held-out", [r for r in runs if r["seed"] not in tuned | inspected]),
    ]
    return [(label, rs) for label, rs in groups if rs]


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def report(runs: list[dict], tuned: set[int], inspected: set[int] | None = None) -> None:
    inspected = inspected or set()
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
        for label, subset in _seed_groups(group, tuned, inspected):
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

# The multivariate protocol's cases: scenario (or an example-city incident kind, placed on day 3
# at a seeded hour), its asset, the sensors a plain PCA T2/Q judges together, and the asset
# group whose domain detectors are meant for it (None: none is).
SPAN_MEMBERS = ("strain-1", "strain-2", "temp", "accel-rms")
MV_CASES: dict[str, tuple[str, str, tuple[str, ...], str | None, bool]] = {
    # name: (site, asset, PCA members, group id, collective: a sustained, constant fault)
    "gauge_debond": ("sejong-bridge", "span-2", SPAN_MEMBERS, "gauges", True),
    "sensor_drift": ("sejong-bridge", "span-2", SPAN_MEMBERS, "gauges", False),
    "stiffness_growth": ("sejong-bridge", "span-2", SPAN_MEMBERS, "gauges", False),
    "pv_underperformance": ("sejong-pv", "inverter-1", ("power", "irradiance"), "pv", True),
    "night_leak": ("sejong-dma-1", "inlet", ("pressure", "flow"), "night", True),
    "chlorine_decline": ("sejong-wtp", "clearwell", ("chlorine", "level"), "dosing", False),
    "pipe_burst": ("sejong-dma-1", "inlet", ("pressure", "flow"), None, True),
    "bearing_overheating": (
        "busan-wind",
        "turbine-1",
        ("bearing-temp", "vibration"),
        "bearing",
        False,
    ),
}
_EXAMPLE_KINDS = {  # example-city incident kinds used here: targets and duration (h)
    "pipe_burst": (["sejong-dma-1/inlet/pressure", "sejong-dma-1/inlet/flow"], 2.0),
    "bearing_overheating": (
        ["busan-wind/turbine-1/bearing-temp", "busan-wind/turbine-1/vibration"],
        3.0,
    ),
}


def _mv_config(name: str, seed: int, days: float, site: str) -> Config:
    base = load_config(environ={})
    if name in simulator.SCENARIOS:
        config = simulator.scenario_config(base, name, seed, days=days)
    else:
        from twinwatch.app.simulator.common import _rng
        from twinwatch.config import Incident

        targets, hours = _EXAMPLE_KINDS[name]
        at_h = 72.0 + float(_rng(seed, "mv", name).uniform(0, 24))
        inc = Incident(kind=name, targets=targets, at_h=at_h, duration_h=hours)
        sim = msgspec.structs.replace(
            base.simulation, seed=seed, duration_h=24.0 * days, incidents=[inc]
        )
        config = msgspec.structs.replace(base, simulation=sim)
    return only_sites(config, {site})


def run_multivariate(job: tuple) -> dict:
    """One case: PCA T2/Q fitted on the fault-free start and frozen (the industrial
    benchmark's protocol), and the asset group's own detectors as shipped (their learning
    policy on), on the same run; recall and the share of the incident's observable ticks
    flagged."""
    import numpy as np

    from twinwatch.detectors.multivariate import PcaT2Q
    from twinwatch.engine.align import Aligner
    from twinwatch.engine.assets import AssetShard, member_readings
    from twinwatch.engine.plan import Plan
    from twinwatch.schema import AnomalyScore, Reading

    name, seed, days, reference_days = job
    site, asset, members, group, _ = MV_CASES[name]
    config = _mv_config(name, seed, days, site)
    label = simulator.incident_labels(config, START)[0]
    t_start = datetime.fromisoformat(label["start"]).timestamp()
    t_end = datetime.fromisoformat(label["end"]).timestamp()
    parser = TrustingParser(config)
    plan = Plan(config)
    shard = AssetShard(plan)
    index = {f"{site}/{asset}/{m}": i for i, m in enumerate(members)}
    interval = max(
        s.interval_s
        for st in config.sites
        for a in st.assets
        for s in a.sensors
        if f"{st.id}/{a.id}/{s.id}" in index
    )
    aligner = Aligner(max(interval, 60.0), [2.5 * interval] * len(members), interval / 2)
    ticks = []
    group_hits: dict[float, bool] = {}
    batch: list = []

    def run(batch: list) -> None:
        recs, _ = parser.split(batch)
        for rec in recs:
            i = index.get(f"{rec.site}/{rec.asset}/{rec.sensor}") if type(rec) is Reading else None
            if i is not None:
                ticks.extend(aligner.push(rec.time.timestamp(), i, rec.value))
        for out in shard.process(member_readings(recs, plan)):
            if type(out) is AnomalyScore and out.sensor == group:
                group_hits[out.time.timestamp()] = bool(out.hits)

    for m in simulator.generate(config, START):
        batch.append((m.topic, m.payload))
        if len(batch) >= 1000:
            run(batch)
            batch = []
    run(batch)
    t0 = ticks[0][0]
    ref_end = t0 + reference_days * 86400
    n_ref = sum(1 for t, _ in ticks if t < ref_end)
    # the reference is the fault-free start, fitted as a whole (alpha ~ 1 / its length)
    det = PcaT2Q(n=len(members), alpha=1.0 / n_ref, warmup=min(300, n_ref))
    pca = {"flagged": 0, "seen": 0}
    daylight: set[float] = set()
    for t, vec in ticks:
        x = np.asarray(vec, dtype=float)
        if not np.isfinite(x).all():
            continue
        if t < ref_end:
            det.update(t, x)  # the fault-free start: learn it
            continue
        if not t_start <= t < t_end:
            det.score_one(t, x)
            continue
        # PV is observable in daylight only: at night both sensors read 0
        if name == "pv_underperformance" and vec[1] < 200:
            continue
        daylight.add(t)
        pca["seen"] += 1
        pca["flagged"] += det.score_one(t, x) >= det.threshold  # frozen: never learned
    inside = [
        hit
        for t, hit in group_hits.items()
        if t_start <= t < t_end and (name != "pv_underperformance" or t in daylight)
    ]
    return {
        "name": name,
        "seed": seed,
        "pca_recall": pca["flagged"] > 0,
        "pca_flagged": pca["flagged"] / pca["seen"] if pca["seen"] else float("nan"),
        "group_recall": any(inside) if group else None,
        "group_flagged": sum(inside) / len(inside) if group and inside else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1-6")
    ap.add_argument("--tuned", default="1-3", help="seeds the defaults were chosen on")
    ap.add_argument(
        "--inspected", default="", help="held-out seeds looked at while developing (reported apart)"
    )
    ap.add_argument("--only", nargs="*", help="scenario or variant names (default: all)")
    ap.add_argument("--variants", action="store_true", help="add the held-out variants")
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--full-city", action="store_true")
    ap.add_argument("--no-quiet", action="store_true", help="skip the quiet city weeks")
    ap.add_argument("--no-multivariate", action="store_true")
    args = ap.parse_args()
    all_seeds, tuned = seeds(args.seeds), set(seeds(args.tuned))
    inspected = set(seeds(args.inspected)) if args.inspected else set()
    names = args.only or list(simulator.SCENARIOS) + (list(VARIANTS) if args.variants else [])
    runnable = [n for n in names if n in simulator.SCENARIOS or n in VARIANTS]
    jobs = [(n, s, args.days, args.full_city) for n in runnable for s in all_seeds]
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
    report(runs, tuned, inspected)
    if not args.no_multivariate:
        mv_jobs = [
            (n, s, args.days, 2.0)
            for n in MV_CASES
            if not args.only or n in args.only
            for s in all_seeds
        ]
        with ProcessPoolExecutor(args.jobs) as pool:
            mv = list(pool.map(run_multivariate, mv_jobs))
        print("\n## Multivariate: share of each incident flagged (2-day fault-free start)\n")
        print(
            "| incident | collective | seeds | PCA T2/Q frozen: recall | flagged (median, min) "
            "| the asset's own detectors: recall | flagged (median, min) |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, (_, _, _, group, collective) in MV_CASES.items():
            rows = [m for m in mv if m["name"] == name]
            if not rows:
                continue
            pca = [m["pca_flagged"] for m in rows]
            own = [m["group_flagged"] for m in rows]
            own_txt = (
                f"{sum(m['group_recall'] for m in rows)}/{len(rows)} | "
                f"{statistics.median(own):.2f}, {min(own):.2f}"
                if group
                else "(none meant for it) | -"
            )
            print(
                f"| {name} | {'yes' if collective else 'gradual'} | {len(rows)} | "
                f"{sum(m['pca_recall'] for m in rows)}/{len(rows)} | "
                f"{statistics.median(pca):.2f}, {min(pca):.2f} | {own_txt} |"
            )
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
