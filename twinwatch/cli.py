"""The ``twinwatch`` command.

    twinwatch run        run the dataflow (MQTT or replay files) until stopped or idle
    twinwatch simulate   generate the simulated city: publish to MQTT or write a replay file
    twinwatch demo       services + simulator + flow for a bounded time, then a summary
    twinwatch services   up | down | status of the local InfluxDB, Mosquitto, Alertmanager, ...
    twinwatch config     check a config file and print what it describes

Errors the user can fix (bad config, unreachable service, missing binary) print one clear line
and exit with status 2; they are not tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from twinwatch.config import ConfigError, load_config

__all__ = ["main"]

DEFAULT_VAR = Path("var")
SERVICE_NAMES = ("influxdb", "mosquitto", "alertmanager", "victoriametrics", "prometheus")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="YAML config (default: $TWINWATCH_CONFIG or the "
                   "shipped example city)")


def _recovery(args):
    """Bytewax recovery in ``--recovery-dir`` (created and initialised on first use): snapshots
    of every stateful step, so a restarted flow resumes detector, alert and offset state."""
    if not args.recovery_dir:
        return None
    from bytewax.recovery import RecoveryConfig, init_db_dir

    path = Path(args.recovery_dir)
    if not any(path.glob("part-*.sqlite3")):
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, 1)
    return RecoveryConfig(str(path))


def _epoch(args):
    from datetime import timedelta

    return timedelta(seconds=args.epoch_s) if getattr(args, "epoch_s", None) else None


def cmd_run(args) -> int:
    from bytewax.run import cli_main

    from flows.dataflow import build_flow
    from flows.sources.mqtt import MqttSource
    from flows.sources.replay import ReplaySource
    from twinwatch.metrics import serve

    config = load_config(args.config)
    m = config.services.metrics
    serve(m.host, m.port + (args.process_id or 0) if m.port else 0)
    if args.replay:
        source = ReplaySource(args.replay, config.flow.batch_size, args.speed)
    else:
        source = MqttSource(config.services.mqtt, config.flow.batch_size, args.idle_timeout)
    flow = build_flow(config, source)
    cli_main(flow, workers_per_process=args.workers, process_id=args.process_id,
             addresses=args.addresses.split(",") if args.addresses else None,
             epoch_interval=_epoch(args), recovery_config=_recovery(args))
    return 0


def cmd_simulate(args) -> int:
    from twinwatch import simulator

    config = load_config(args.config)
    start = simulator.sim_start(config, simulator.utcnow())
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
    stats = simulator.publish_mqtt(messages, mqtt=mq, speed=speed,
                                   progress=simulator.print_progress)
    print(f"\npublished {stats.messages} messages to {mq.host}:{mq.port}; "
          f"{len(labels)} incident labels in {labels_path}")
    return 0


def cmd_services(args) -> int:
    from twinwatch import services
    from twinwatch.demo import ports_from_config

    base = Path(args.var)
    if args.action == "down":
        stopped = services.down(base)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if args.action == "status":
        for name, st in services.status(base).items():
            print(f"{name:16} {st}")
        return 0
    unknown = set(args.names) - set(SERVICE_NAMES)
    if unknown:
        raise ConfigError(f"unknown service {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(SERVICE_NAMES)}")
    config = load_config(args.config)
    started = services.up(args.names or ["influxdb", "mosquitto", "alertmanager"], base,
                          ports_from_config(config))
    for name, svc in started.items():
        print(f"{name:16} {svc.url}  (pid {svc.pid}, data in {svc.data_dir})")
    return 0


def cmd_demo(args) -> int:
    from twinwatch.demo import run_demo

    return run_demo(load_config(args.config), Path(args.var), config_path=args.config,
                    sim_hours=args.sim_hours, speed=args.speed)


def cmd_config(args) -> int:
    config = load_config(args.config)
    by_domain: dict[str, int] = {}
    for ref in config.catalog.values():
        by_domain[ref.domain] = by_domain.get(ref.domain, 0) + 1
    print(f"{config.city.name}: {len(config.sites)} sites, {len(config.catalog)} sensors "
          f"({', '.join(f'{d} {n}' for d, n in sorted(by_domain.items()))}), "
          f"{len(config.detectors)} detectors, {len(config.alert_rules)} alert rules, "
          f"{len(config.simulation.incidents)} simulated incidents")
    used = {n for ref in config.catalog.values() for n in config.detectors_for(ref)}
    silent = sorted(n for n in used if all(config.rule_for(ref.domain, n) is None
                                           for ref in config.catalog.values()))
    if silent:
        print(f"note: no alert rule for {', '.join(silent)}: their hits are recorded as "
              "anomalies but never alert")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="twinwatch", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the dataflow")
    _config_arg(r)
    r.add_argument("--replay", nargs="+", metavar="FILE",
                   help="replay JSONL/CSV files instead of subscribing to MQTT")
    r.add_argument("--speed", type=float, help="replay pacing (simulated s per wall s)")
    r.add_argument("--idle-timeout", type=float, metavar="S",
                   help="stop after S seconds without MQTT messages (default: run forever)")
    r.add_argument("-w", "--workers", type=int, default=1, help="worker threads per process")
    r.add_argument("-i", "--process-id", type=int, help="this process' index (multi-process)")
    r.add_argument("-a", "--addresses", help="comma-separated host:port of every process")
    r.add_argument("--recovery-dir", help="Bytewax recovery directory (resume after restart)")
    r.add_argument("--epoch-s", type=float, help="seconds between snapshots (default: Bytewax's 10)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("simulate", help="simulate the city (MQTT or replay file)")
    _config_arg(s)
    s.add_argument("--out", help="write a JSONL replay file instead of publishing to MQTT")
    s.add_argument("--speed", type=float, help="simulated seconds per wall second "
                   "(default: simulation.speed; 0 = as fast as possible)")
    s.add_argument("--labels", help="incident labels file (default: simulation.labels_path)")
    s.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", help="start services, simulate, detect, summarise")
    _config_arg(d)
    d.add_argument("--var", default=str(DEFAULT_VAR), help="folder for service data and logs")
    d.add_argument("--sim-hours", type=float, help="simulated hours (default: simulation.duration_h)")
    d.add_argument("--speed", type=float, help="simulated seconds per wall second "
                   "(default: simulation.speed)")
    d.set_defaults(func=cmd_demo)

    v = sub.add_parser("services", help="local services: up | down | status")
    _config_arg(v)
    v.add_argument("action", choices=("up", "down", "status"))
    v.add_argument("names", nargs="*", metavar="NAME",  # no choices=: argparse rejects an empty list
                   help=f"any of {', '.join(SERVICE_NAMES)} "
                        "(default for up: influxdb mosquitto alertmanager)")
    v.add_argument("--var", default=str(DEFAULT_VAR), help="folder for service data and logs")
    v.set_defaults(func=cmd_services)

    c = sub.add_parser("config", help="check a config file")
    _config_arg(c)
    c.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # one line per HTTP request is noise, not news
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"twinwatch: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
