"""``twinwatch query``, ``twinwatch report`` and ``twinwatch backtest``: arguments and runners.

Only argparse is imported here; polars, matplotlib and scikit-learn load when a command runs.
Errors the user can fix (unreachable server, bad credentials, bad time range) are
``AnalysisError``s, which ``twinwatch.app.cli`` prints as one line (status 2). An empty result is
an answer, not an error: it says so on stderr and exits 0 (``--fail-empty``: 1, for scripts that
treat "no data" as a failure).

Times are printed in the city's time zone (``city.timezone``) with the zone marked; ``--utc``
prints UTC. CSV carries the offset in every timestamp; Parquet keeps UTC instants.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

__all__ = [
    "QUERIES",
    "add_query_args",
    "add_report_args",
    "add_backtest_args",
    "run_query",
    "run_report",
    "run_backtest",
]

QUERIES = (
    "readings",
    "events",
    "history",
    "rollup",
    "scores",
    "alerts",
    "mtta",
    "noisy",
    "dead-letters",
    "influxql",
)


def _range_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument(
        "--start",
        required=required,
        help="ISO 8601 with offset "
        "(2026-11-20T00:00:00Z), now, or relative (now-6h, or --start=-6h)"
        + ("" if required else "; not used by `query influxql` (the statement has its own)"),
    )
    p.add_argument("--end", default="now", help="as --start (default: now)")
    p.add_argument("--chunk", default="6h", help="read long ranges in chunks of this (default 6h)")


def _series_args(p: argparse.ArgumentParser) -> None:
    for name in ("domain", "site", "asset", "sensor"):
        p.add_argument(f"--{name}", help=f"only this {name}")


def add_query_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=QUERIES, help="which question to ask")
    p.add_argument("influxql", nargs="?", help="the statement, for `query influxql`")
    _range_args(p, required=False)
    _series_args(p)
    p.add_argument("--every", default="1h", help="rollup bucket (default 1h)")
    p.add_argument("--format", choices=("table", "csv", "parquet"), default="table")
    p.add_argument("-o", "--out", help="output file (required for parquet; default stdout)")
    p.add_argument("--fail-empty", action="store_true", help="exit 1 when there is nothing to show")


def add_report_args(p: argparse.ArgumentParser) -> None:
    _range_args(p)
    p.add_argument("--domain", help="only this domain")
    p.add_argument("--site", help="only this site")
    p.add_argument("-o", "--out", default="var/report", help="output folder (default var/report)")
    p.add_argument("--max-incidents", type=int, default=12, help="incidents to plot (default 12)")


def add_backtest_args(p: argparse.ArgumentParser) -> None:
    _range_args(p)
    p.add_argument(
        "--parquet",
        help="history saved by `twinwatch query history --format parquet` (default: read InfluxDB)",
    )
    p.add_argument("--labels", help="incident labels (default: simulation.labels_path)")
    p.add_argument(
        "--grace",
        type=float,
        default=1800.0,
        help="seconds after an incident's end an alert still counts (default 1800)",
    )
    p.add_argument("--format", choices=("table", "csv", "parquet"), default="table")
    p.add_argument("-o", "--out", help="write the per-incident results to this file")


def _range(args):
    from twinwatch.app.analysis.query import (
        BadTimeRange,
        check_range,
        parse_duration,
        parse_time,
    )

    if args.start is None:
        what = " ".join(filter(None, (args.command, getattr(args, "what", None))))
        raise BadTimeRange(f"`{what}` needs --start, e.g. --start=-6h")
    now = datetime.now(UTC)
    start, end = check_range(parse_time(args.start, now), parse_time(args.end, now))
    return start, end, parse_duration(args.chunk)


def _zone(config, args):
    from twinwatch.localtime import zone

    return zone(config, getattr(args, "utc", False))


def _progress(desc: str):
    """A tqdm bar on stderr (only on a terminal), as a progress(done, total) callback."""
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def _emit(df, fmt: str, out: str | None, tz) -> None:
    """Write a frame; times shown in ``tz`` (table, CSV: with the offset), Parquet as stored."""
    import polars as pl

    if fmt != "parquet":
        df = df.with_columns(pl.col(pl.Datetime).dt.convert_time_zone(str(tz)))
    if fmt == "parquet":
        if not out:
            from twinwatch.app.analysis.query import AnalysisError

            raise AnalysisError("--format parquet needs --out FILE")
        df.write_parquet(out)
    elif fmt == "csv":
        df = df.with_columns(pl.col(pl.Categorical).cast(pl.String))
        if out:
            df.write_csv(out)
        else:
            sys.stdout.write(df.write_csv())
    else:
        with pl.Config(tbl_rows=50, tbl_cols=30, fmt_str_lengths=60, tbl_width_chars=10_000):
            text = str(df)
        if out:
            with open(out, "w") as f:
                f.write(text + "\n")
        else:
            print(text)
    if out:
        print(f"wrote {df.height} rows to {out}", file=sys.stderr)


def run_query(config, args) -> int:
    from twinwatch.app.analysis import helpers as h
    from twinwatch.app.analysis.query import AnalysisError, Influx
    from twinwatch.localtime import show

    tz = _zone(config, args)
    w = args.what
    if w == "influxql":
        if not args.influxql:
            raise AnalysisError(
                "`query influxql` needs the statement, e.g. "
                '"SELECT * FROM reading WHERE time > now() - 1h"'
            )
        with Influx(config.services.influxdb) as db:
            df = db.select(args.influxql)
        what = f"rows for {args.influxql!r} (database {db.database})"
        return _answer(df, what, args, tz)
    start, end, chunk = _range(args)
    series = {k: getattr(args, k) for k in h.SERIES}
    bar = _progress(w)
    with Influx(config.services.influxdb) as db:
        if w == "readings":
            df = h.readings(db, start, end, **series, chunk=chunk, progress=bar)
        elif w == "events":
            df = h.events(
                db,
                start,
                end,
                site=args.site,
                asset=args.asset,
                sensor=args.sensor,
                chunk=chunk,
                progress=bar,
            )
        elif w == "history":
            df = h.history(db, start, end, chunk=chunk, progress=bar)
        elif w == "rollup":
            df = h.rollup(db, start, end, args.every, **series, chunk=chunk, progress=bar)
        elif w == "scores":
            df = h.scores_with_readings(db, start, end, **series, chunk=chunk)
        elif w in ("alerts", "mtta", "noisy"):
            df = h.alert_history(db, start, end, **series, chunk=chunk)
            if w == "mtta":
                df = h.mtta_mttr(df)
            elif w == "noisy":
                df = h.noisy_sensors(db, start, end, episodes=df)
        else:
            df = h.dead_letter_stats(db, start, end, chunk=chunk)
    scope = " ".join(f"{k}={v}" for k, v in series.items() if v)
    what = (
        f"{w.replace('-', ' ')} from {show(start, tz, seconds=False)} to "
        f"{show(end, tz, seconds=False)}"
        + (f" for {scope}" if scope else "")
        + f" (database {db.database})"
    )
    return _answer(df, what, args, tz)


def _answer(df, what: str, args, tz) -> int:
    """Emit a frame; an empty one is an answer too: say so, exit 0 (1 with --fail-empty)."""
    if not df.height:
        print(f"twinwatch: no {what}", file=sys.stderr)
        return 1 if args.fail_empty else 0
    _emit(df, args.format, args.out, tz)
    return 0


def run_report(config, args) -> int:
    from twinwatch.app.analysis.query import Influx
    from twinwatch.app.analysis.report import build_report

    start, end, _ = _range(args)
    with Influx(config.services.influxdb) as db:
        path = build_report(
            db,
            config,
            start,
            end,
            args.out,
            domain=args.domain,
            site=args.site,
            max_incidents=args.max_incidents,
            tz=_zone(config, args),
        )
    print(f"report: {path}  (figures in {path.parent / 'figures'})")
    return 0


def run_backtest(config, args) -> int:
    from twinwatch.app.analysis.backtest import backtest, live_alerts, load_history, read_labels
    from twinwatch.app.analysis.query import Influx
    from twinwatch.app.evaluate import match_incidents, unmatched_alerts

    start, end, chunk = _range(args)
    labels = [
        lb
        for lb in read_labels(args.labels or config.simulation.labels_path)
        if start <= datetime.fromisoformat(lb["start"]) < end
    ]
    live = None
    if args.parquet:
        history = load_history(parquet=args.parquet, start=start, end=end)
    else:
        with Influx(config.services.influxdb) as db:
            history = load_history(db=db, start=start, end=end, progress=_progress("reading"))
            live = live_alerts(db, start, end)
    result = backtest(config, history, labels, grace_s=args.grace, progress=_progress("backtest"))
    s = result.summary()
    print(f"backtest of {s['samples']:,} readings/events, {len(labels)} labelled incidents:")
    print(
        f"  alerts fired {s['alerts_fired']}  incidents detected {s['detected']}/"
        f"{s['incidents']} (recall {s['recall']:.2f})  false alarms {s['false_alarms']}"
    )
    print(
        f"  sample level: precision {s['sample_precision']:.3f}  recall "
        f"{s['sample_recall']:.3f}  F1 {s['sample_f1']:.3f}  confusion {result.confusion}"
    )
    print("  alerts by rule: " + ", ".join(f"{k} {n}" for k, n in result.by_rule.most_common()))
    if live is not None:
        detected = sum(r.detected for r in match_incidents(labels, live, args.grace))
        print(
            f"  live flow (stored alerts): alerts fired {len(live)}  incidents detected "
            f"{detected}/{len(labels)}  false alarms "
            f"{len(unmatched_alerts(labels, live, args.grace))}"
        )
    _emit(result.incident_frame(), args.format, args.out, _zone(config, args))
    return 0
