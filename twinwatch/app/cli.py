"""The ``twinwatch`` command.

    twinwatch run        run the dataflow (MQTT or replay files) until stopped or idle
    twinwatch simulate   generate the simulated city: publish to MQTT or write a replay file
    twinwatch demo       services + simulator + flow for a bounded time, then a summary
    twinwatch services   up | down | status of the local InfluxDB, Mosquitto, Alertmanager, ...
    twinwatch config     check a config file and print what it describes
    twinwatch query      InfluxDB -> table, CSV or Parquet (docs/analysts.md)
    twinwatch report     incident report: HTML with plots
    twinwatch backtest   detectors over stored history vs incident labels

Errors the user can fix (bad config, unreachable service, missing binary) print one clear line
and exit with status 2; they are not tracebacks. Every subcommand's ``--help`` starts with what
it does. Times are printed in the city's time zone (``city.timezone``) with the zone marked;
``--utc`` prints UTC.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from twinwatch.config import ConfigError, load_config
from twinwatch.mqtt import MqttError

__all__ = ["main"]

DEFAULT_VAR = Path("var")
SERVICE_NAMES = ("influxdb", "mosquitto", "alertmanager", "victoriametrics", "prometheus")


class _Subcommands(argparse._SubParsersAction):
    """Subcommands whose ``--help`` opens with their one-line help as the description."""

    def add_parser(self, name, **kwargs):
        if "help" in kwargs and "description" not in kwargs:
            help_ = kwargs["help"]
            kwargs["description"] = help_[0].upper() + help_[1:] + "."
        return super().add_parser(name, **kwargs)


class _Parser(argparse.ArgumentParser):
    """The twinwatch parser; its subcommands (and theirs) get descriptions (``_Subcommands``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Subcommands)


def _utc_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--utc",
        action="store_true",
        help="print times in UTC (default: the city's time zone, city.timezone)",
    )


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        help="YAML config (default: $TWINWATCH_CONFIG or the shipped example city)",
    )


def _no_create_db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-create-db",
        action="store_true",
        help="do not create the InfluxDB database (v1) or check the bucket (v2) at start "
        "(also: services.influxdb.create_database: false)",
    )


def _recovery(args):
    """Bytewax recovery in ``--recovery-dir``: snapshots of every stateful step, so a restarted
    flow resumes detector, alert and offset state. Process 0 creates the directory's one
    recovery partition on first use; the other processes of a cluster use what their directory
    holds (the same directory on one host; on other hosts an empty one is fine: Bytewax finds
    the partition on process 0's host). See docs/scale-out.md."""
    if not args.recovery_dir:
        return None
    from bytewax.recovery import RecoveryConfig, init_db_dir

    path = Path(args.recovery_dir)
    path.mkdir(parents=True, exist_ok=True)
    if not args.process_id and not any(path.glob("part-*.sqlite3")):
        init_db_dir(path, 1)
    return RecoveryConfig(str(path))


def _epoch(args):
    from datetime import timedelta

    return timedelta(seconds=args.epoch_s) if getattr(args, "epoch_s", None) else None


def cmd_run(args) -> int:
    from twinwatch.app import startup
    from twinwatch.flows import graceful
    from twinwatch.flows.dataflow import build_flow
    from twinwatch.flows.sources.mqtt import MqttSource
    from twinwatch.flows.sources.replay import ReplaySource
    from twinwatch.metrics import serve

    config = load_config(args.config)
    source: ReplaySource | MqttSource
    if args.replay:
        missing = [f for f in args.replay if not Path(f).is_file()]
        if missing:
            raise ConfigError(f"run --replay: no such file: {', '.join(missing)}")
        source = ReplaySource(args.replay, config.flow.batch_size, args.speed)
    else:
        source = MqttSource(
            config,
            config.flow.batch_size,
            args.idle_timeout,
            config.flow.max_queued,
            clean_session=args.clean_session,
        )
    addresses = args.addresses.split(",") if args.addresses else None
    processes = len(addresses) if addresses else 1
    # builds the plan (every detector and template checked); the source ends on SIGTERM/SIGINT
    flow = build_flow(config, graceful.stoppable(source), process=(args.process_id or 0, processes))
    # one process creates the database and applies retention (issue #5)
    startup.prepare(
        config, mqtt=not args.replay, create_db=not args.no_create_db, first=not args.process_id
    )
    m = config.services.metrics
    port = m.port if args.metrics_port is None else args.metrics_port
    serve(m.host, port)
    logging.getLogger("twinwatch").info(
        "process %d of %d: %d source partitions (flow.partitions) shared among %d worker(s); "
        "/metrics %s",
        args.process_id or 0,
        processes,
        config.flow.partitions if not args.replay else len(args.replay),
        processes * args.workers,
        f"on {m.host}:{port} (--metrics-port)" if port else "off",
    )
    try:
        graceful.run(  # SIGTERM/SIGINT: drain the flow and close the sinks
            flow,
            workers_per_process=args.workers,
            process_id=args.process_id,
            addresses=addresses,
            epoch_interval=_epoch(args),
            recovery_config=_recovery(args),
        )
    except BaseException as e:  # Bytewax raises a Rust panic when a peer process goes away
        if processes < 2 or type(e).__name__ != "PanicException":
            raise
        print(
            f"twinwatch: process {args.process_id or 0} stops: another process of the cluster "
            f"({args.addresses}) stopped or became unreachable. A Bytewax cluster runs as a "
            "whole: restart every process; they resume from --recovery-dir and their MQTT "
            "sessions (docs/scale-out.md)",
            file=sys.stderr,
        )
        return 1
    return startup.finish()


def cmd_simulate(args) -> int:
    import msgspec

    from twinwatch.app import simulator

    config = load_config(args.config)
    if args.list_scenarios:
        for name, sc in simulator.SCENARIOS.items():
            what = (
                "legitimate change, must stay quiet" if sc.legit else f"for {', '.join(sc.expect)}"
            )
            print(f"{name:20} {sc.days:g} days; {simulator.INCIDENT_KINDS[sc.kind]} ({what})")
        return 0
    if args.scenario:
        try:
            config = simulator.scenario_config(config, args.scenario, args.seed)
        except simulator.SimulationError as e:
            raise ConfigError(str(e)) from None
    elif args.seed is not None:
        config = msgspec.structs.replace(
            config, simulation=msgspec.structs.replace(config.simulation, seed=args.seed)
        )
    if args.end is None:  # the latest whole local days before now
        start = simulator.sim_start(config, simulator.utcnow())
    else:  # the span that ends then, incidents at their time of day (as the demo)
        from twinwatch.app.demo import demo_span, parse_end

        start, config, early = demo_span(config, parse_end(args.end, simulator.utcnow()))
        if early:
            print(
                f"{early} incident(s) fall in the first hour of the span (the detectors' warm-up)"
                " and are left out"
            )
    labels = simulator.incident_labels(config, start)
    labels_path = Path(args.labels or config.simulation.labels_path)
    simulator.write_labels(labels_path, labels)
    messages = simulator.generate(config, start)
    if args.out:
        n = simulator.write_replay(args.out, messages)
        print(f"wrote {n} messages to {args.out}; {len(labels)} incident labels to {labels_path}")
        return 0
    mq = config.services.mqtt
    speed = config.simulation.speed if args.speed is None else args.speed
    stats = simulator.publish_mqtt(
        messages, mqtt=mq, speed=speed, progress=simulator.print_progress
    )
    print(
        f"\npublished {stats.messages} messages to {mq.host}:{mq.port}; "
        f"{len(labels)} incident labels in {labels_path}"
    )
    return 0


def cmd_services(args) -> int:
    from twinwatch.app import services
    from twinwatch.app.demo import ports_from_config

    base = Path(args.var)
    unknown = set(args.names) - set(SERVICE_NAMES)
    if unknown:
        raise ConfigError(
            f"unknown service {', '.join(sorted(unknown))}; known: {', '.join(SERVICE_NAMES)}"
        )
    if args.action == "down":
        stopped = services.down(base, args.names)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if args.action == "status":
        print(_status_table(services.status(base, args.names)))
        return 0
    config = load_config(args.config)
    started = services.up(
        args.names or ["influxdb", "mosquitto", "alertmanager"], base, ports_from_config(config)
    )
    for name, svc in started.items():
        print(f"{name:16} {svc.url}  (pid {svc.pid}, data in {svc.data_dir})")
    influx = config.services.influxdb
    if "influxdb" in started and influx.create_database and not args.no_create_db:
        from twinwatch.influx import prepare_database

        if prepare_database(influx):
            print(f"{'':16} database {influx.database!r} ready at {influx.url}")
    return 0


def _status_table(status: dict[str, dict]) -> str:
    """One line per service: name, running or stopped, URL, PID and where its data is."""
    lines = []
    for name, st in status.items():
        if st["running"]:
            state = f"running  {st['url']:24}  pid {st['pid']:<7}  data {st['data_dir']}"
        elif st["url"]:
            state = (
                f"stopped  (an earlier run's pid file for {st['url']}; `services down` clears it)"
            )
        else:
            state = "stopped"
        lines.append(f"{name:16} {state}")
    return "\n".join(lines)


def cmd_demo(args) -> int:
    from twinwatch.app.demo import run_demo

    return run_demo(
        load_config(args.config),
        Path(args.var),
        config_path=args.config,
        sim_hours=args.sim_hours,
        speed=args.speed,
        end=args.end,
        utc=args.utc,
    )


def cmd_dashboards(args) -> int:
    from twinwatch.dashboards.build import main as dashboards_main
    from twinwatch.engine.plan import Plan

    config = load_config(args.config)
    return dashboards_main(args, config, Plan(config).thresholds())


def cmd_bench(args) -> int:
    from twinwatch.app.bench import run_nab

    return run_nab(args.data, args.results, args.detector, args.only)


def cmd_logs(args) -> int:
    """The log flow (issues #6, #13): syslog receiver or log files -> security detection ->
    sinks; ``--check`` reports how a file parses, ``--learn`` pre-trains the template miners."""
    config = load_config(args.config)
    from twinwatch.engine.logparse import LogParser

    LogParser(config)  # the declared sources' formats and time zones, checked before anything
    if args.check:
        from twinwatch.engine.logparse import check_file

        worst = 1.0
        for path in args.check:
            report = check_file(config, path, show=args.show)
            print(report.text())
            worst = min(worst, report.rate)
        return 0 if worst > 0 else 1
    if args.learn:
        return _learn(config, args.learn)
    from twinwatch.app import startup
    from twinwatch.flows import graceful
    from twinwatch.flows.security import build_log_flow
    from twinwatch.flows.sources.syslog import SyslogSource
    from twinwatch.flows.sources.tail import TailSource
    from twinwatch.metrics import serve

    if bool(args.syslog is not None) == bool(args.tail):
        raise ConfigError("logs: give either --syslog PORT or --tail FILE ... (or --check/--learn)")
    startup.prepare(config, mqtt=False, create_db=not args.no_create_db)
    m = config.services.metrics
    serve(m.host, m.port)
    source: SyslogSource | TailSource
    if args.syslog is not None:
        source = SyslogSource(
            args.host,
            args.syslog,
            config.flow.batch_size,
            args.idle_timeout,
            config.security.max_line_bytes,
            config.security.listener,
        )
    else:
        parser = LogParser(config)
        source = TailSource(
            args.tail,
            config.flow.batch_size,
            follow=not args.once,
            idle_timeout_s=args.idle_timeout,
            framing={str(Path(p)): parser.source_for(f"file:{p}").framing for p in args.tail},
        )
    flow = build_log_flow(config, graceful.stoppable(source))
    graceful.run(flow, workers_per_process=1, recovery_config=_recovery(args))
    return startup.finish()


def _learn(config, paths: list[str]) -> int:
    """Parse archives, learn their templates and baselines per asset, save them to
    ``security.templates.state_path`` (the log flow loads them for assets it has no state of)."""
    from datetime import UTC, datetime

    from twinwatch.engine.logparse import LogParser, iter_records
    from twinwatch.engine.security import learn, load_learned, save_learned

    target = config.security.templates.state_path
    if not target:
        raise ConfigError("logs --learn: set security.templates.state_path (where to save)")
    parser = LogParser(config)
    counts = {"lines": 0, "dead": 0}

    def batches():
        received = datetime.now(UTC)
        for path in paths:
            origin = f"file:{path}"
            framing = parser.source_for(origin).framing
            with open(path, "rb") as fh:
                batch = []
                for raw in iter_records(fh, framing):
                    batch.append((origin, raw))
                    if len(batch) == 1000:
                        yield _parsed(parser, batch, received, counts)
                        batch = []
                if batch:
                    yield _parsed(parser, batch, received, counts)

    learned = load_learned(target)
    new = learn(config, batches())
    learned.update(new)
    save_learned(target, learned)
    n_templates = sum(len(a["templates"]) for a in new.values())
    print(
        f"learned {n_templates} templates of {len(new)} assets from {counts['lines']} lines "
        f"({counts['dead']} not parsed) into {target}"
    )
    return 0 if counts["lines"] > counts["dead"] else 1


def _parsed(parser, batch, received, counts):
    events, dead = parser.split(batch, received)
    counts["lines"] += len(batch)
    counts["dead"] += len(dead)
    return sorted(events, key=lambda e: e.time)


def cmd_config(args) -> int:
    from twinwatch.engine.plan import Plan

    config = load_config(args.config)
    Plan(config)  # the rest of validation: every detector built, every summary template formatted
    by_domain: dict[str, int] = {}
    for ref in config.catalog.values():
        by_domain[ref.domain] = by_domain.get(ref.domain, 0) + 1
    print(
        f"{config.city.name}: {len(config.sites)} sites, {len(config.catalog)} sensors "
        f"({', '.join(f'{d} {n}' for d, n in sorted(by_domain.items()))}), "
        f"{len(config.detectors)} detectors, {len(config.alert_rules)} alert rules, "
        f"{len(config.simulation.incidents)} simulated incidents"
    )
    used = {n for ref in config.catalog.values() for n in config.detectors_for(ref)}
    silent = sorted(
        n
        for n in used
        if all(config.rule_for(ref.domain, n) is None for ref in config.catalog.values())
    )
    if silent:
        print(
            f"note: no alert rule for {', '.join(silent)}: their hits are recorded as "
            "anomalies but never alert"
        )
    return 0


def _os_user() -> str:
    """Who runs the command (for acks and silences): the login name, else the uid."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return f"uid-{os.getuid()}"


def cmd_alerts(args) -> int:
    from twinwatch.alerting.ops import run

    return run(args, load_config(args.config))


def cmd_analysis(args) -> int:
    from twinwatch.app.analysis import commands

    run = {
        "query": commands.run_query,
        "report": commands.run_report,
        "backtest": commands.run_backtest,
    }[args.command]
    return run(load_config(args.config), args)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="twinwatch", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser(
        "run", help="run the dataflow: MQTT or replay files -> detectors -> InfluxDB, Alertmanager"
    )
    _config_arg(r)
    r.add_argument(
        "--replay",
        nargs="+",
        metavar="FILE",
        help="replay JSONL/CSV files instead of subscribing to MQTT",
    )
    r.add_argument("--speed", type=float, help="replay pacing (simulated s per wall s)")
    r.add_argument(
        "--idle-timeout",
        type=float,
        metavar="S",
        help="stop after S seconds without MQTT messages (default: run forever)",
    )
    r.add_argument("-w", "--workers", type=int, default=1, help="worker threads per process")
    r.add_argument("-i", "--process-id", type=int, help="this process' index (multi-process)")
    r.add_argument("-a", "--addresses", help="comma-separated host:port of every process")
    r.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics on this port (default: services.metrics.port; 0: off). Several "
        "processes on one host need one port each",
    )
    r.add_argument(
        "--clean-session",
        action="store_true",
        help="start every MQTT session of this process' partitions clean: drops what the "
        "broker queued for them and any subscription an earlier run left (then persistent)",
    )
    r.add_argument("--recovery-dir", help="Bytewax recovery directory (resume after restart)")
    r.add_argument(
        "--epoch-s", type=float, help="seconds between snapshots (default: Bytewax's 10)"
    )
    _no_create_db_arg(r)
    r.set_defaults(func=cmd_run)

    s = sub.add_parser(
        "simulate",
        help="simulate the city with labelled incidents: publish to MQTT or write a file",
    )
    _config_arg(s)
    s.add_argument("--out", help="write a JSONL replay file instead of publishing to MQTT")
    s.add_argument(
        "--speed",
        type=float,
        help="simulated seconds per wall second "
        "(default: simulation.speed; 0 = as fast as possible)",
    )
    s.add_argument("--labels", help="incident labels file (default: simulation.labels_path)")
    s.add_argument(
        "--scenario",
        help="run one labelled scenario instead of the config's incidents (see --list-scenarios)",
    )
    s.add_argument("--seed", type=int, help="random seed (default: simulation.seed)")
    s.add_argument("--list-scenarios", action="store_true", help="list the scenarios and exit")
    s.add_argument(
        "--end",
        help="end of the simulated span: ISO 8601 with offset, or now (default: the latest "
        "whole local days before now, which Grafana's last-6-hours range does not show)",
    )
    s.set_defaults(func=cmd_simulate)

    d = sub.add_parser(
        "demo",
        help="start local services, simulate the city's last hours, detect, summarise",
    )
    _config_arg(d)
    _utc_arg(d)
    d.add_argument("--var", default=str(DEFAULT_VAR), help="folder for service data and logs")
    d.add_argument(
        "--sim-hours", type=float, help="simulated hours (default: simulation.duration_h)"
    )
    d.add_argument(
        "--speed", type=float, help="simulated seconds per wall second (default: simulation.speed)"
    )
    d.add_argument(
        "--end",
        help="end of the simulated span, ISO 8601 with offset (default: now, so Grafana's "
        "default range shows data); the same seed and end give the same data",
    )
    d.set_defaults(func=cmd_demo)

    v = sub.add_parser(
        "services",
        help="start, stop or list the local InfluxDB, Mosquitto, Alertmanager, ... (by PID file)",
    )
    _config_arg(v)
    v.add_argument("action", choices=("up", "down", "status"))
    v.add_argument(
        "names",
        nargs="*",
        metavar="NAME",  # no choices=: argparse rejects an empty list
        help=f"any of {', '.join(SERVICE_NAMES)} (default for up: influxdb mosquitto alertmanager)",
    )
    v.add_argument("--var", default=str(DEFAULT_VAR), help="folder for service data and logs")
    _no_create_db_arg(v)
    v.set_defaults(func=cmd_services)

    c = sub.add_parser("config", help="validate a config file and print what it describes")
    _config_arg(c)
    c.set_defaults(func=cmd_config)

    lg = sub.add_parser("logs", help="security log flow: syslog receiver or log files")
    _config_arg(lg)
    lg.add_argument("--syslog", type=int, metavar="PORT", help="receive syslog (UDP and TCP)")
    lg.add_argument(
        "--host",
        default="127.0.0.1",
        help="syslog bind address (default loopback; any other address logs a warning)",
    )
    lg.add_argument(
        "--check",
        nargs="+",
        metavar="FILE",
        help="report the parse rate and the first unparsed lines of files; write nothing",
    )
    lg.add_argument("--show", type=int, default=5, help="--check: unparsed lines shown (5)")
    lg.add_argument(
        "--learn",
        nargs="+",
        metavar="FILE",
        help="pre-train the template miners from archives into security.templates.state_path",
    )
    lg.add_argument("--tail", nargs="+", metavar="FILE", help="follow log files (rotation-safe)")
    lg.add_argument("--once", action="store_true", help="read the files to their end and stop")
    lg.add_argument("--idle-timeout", type=float, metavar="S", help="stop after S idle seconds")
    lg.add_argument("--recovery-dir", help="Bytewax recovery directory (resume file offsets)")
    _no_create_db_arg(lg)
    lg.set_defaults(func=cmd_logs)

    b = sub.add_parser("bench", help="benchmarks: nab (score detectors on a NAB-layout folder)")
    b.add_argument("suite", choices=("nab",))
    b.add_argument("--data", help="NAB-layout folder (default: ../shared/data/nab)")
    b.add_argument("--results", help="where to write NAB result files (default: results)")
    b.add_argument("--detector", action="append", help="benchmark detector (repeatable)")
    b.add_argument("--only", help="only data files whose '<corpus>/<file>' contains this")
    b.set_defaults(func=cmd_bench)

    g = sub.add_parser(
        "dashboards",
        help="Grafana dashboards: build (write JSON + provisioning) "
        "| check (exit 1 if the committed files are out of date)",
    )
    _config_arg(g)
    g.add_argument("action", choices=("build", "check"))
    g.add_argument("--out", default="dashboards", help="folder for generated/ and provisioning/")
    g.set_defaults(func=cmd_dashboards)

    al = sub.add_parser(
        "alerts",
        help="on-call: list | ack | silence | silences | expire; config prints alertmanager.yml",
        description="Work with the alerts Alertmanager holds (docs/alerting.md).",
    )
    _config_arg(al)
    _utc_arg(al)
    al.add_argument("--alertmanager-url", help="override services.alertmanager.url")
    alsub = al.add_subparsers(dest="action", required=True)
    alsub.add_parser("list", help="active alerts, with who acknowledged them")
    ack = alsub.add_parser(
        "ack",
        help="acknowledge an alert: recorded in InfluxDB (alert_ack), silenced until resolved",
    )
    ack.add_argument("fingerprint", help="fingerprint or its first characters (see list)")
    ack.add_argument(
        "--for",
        dest="for_",
        default="24h",
        metavar="DURATION",
        help="longest silence if the alert never resolves, e.g. 8h, 2d (default 24h)",
    )
    sil = alsub.add_parser("silence", help="silence matching alerts for a maintenance window")
    sil.add_argument("matchers", nargs="+", help="label=value, label!=value, label=~regex ...")
    sil.add_argument("--duration", default="2h", help="e.g. 30m, 2h, 1d, 1w (default 2h)")
    for a in (ack, sil):
        a.add_argument(
            "--by",
            default=_os_user(),
            help="who (default: the OS user, %(default)s)",
        )
        a.add_argument("--comment", default="", help="why")
    sils = alsub.add_parser("silences", help="list silences (active and pending)")
    sils.add_argument("--all", action="store_true", help="also the expired ones")
    exp = alsub.add_parser("expire", help="end a silence now")
    exp.add_argument("id", help="silence id or its first 8+ characters (see silences)")
    alsub.add_parser("config", help="print the Alertmanager config generated from ours")
    al.set_defaults(func=cmd_alerts)

    from twinwatch.app.analysis import commands as analysis  # argparse only; polars loads on use

    for name, help_, add in (
        (
            "query",
            "InfluxDB -> table, CSV or Parquet (readings, rollup, alerts, ...)",
            analysis.add_query_args,
        ),
        ("report", "incident report: HTML with plots", analysis.add_report_args),
        (
            "backtest",
            "run the detectors over stored history, score against incident labels",
            analysis.add_backtest_args,
        ),
    ):
        an = sub.add_parser(name, help=help_)
        _config_arg(an)
        _utc_arg(an)
        add(an)
        an.set_defaults(func=cmd_analysis)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # one line per HTTP request, or per template miner started, is noise
        for name in ("httpx", "drain3"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (ConfigError, MqttError) as e:
        print(f"twinwatch: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `twinwatch query ... | head`: the reader has all it wanted
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
