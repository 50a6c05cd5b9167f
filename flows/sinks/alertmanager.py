"""The Bytewax sink of alert state changes: hands them to the delivery queue, nothing more.

    AlertmanagerSink(cfg, flow_id, release=())    items: Alert records or lists of them
    alert_sink(cfg, flow_id, release) -> AlertmanagerSink | None   the one place flows build it
    resume_states(cfg, flow_id) -> {(series, rule): Alert}  what on-call was last told
    unowned(config, plan, states, security) -> [Alert]      firing alerts no step can own

Each partition (one per worker) owns a ``twinwatch.alerting.delivery.Delivery`` on the flow's
delivery store (``services.alertmanager.state_path``; the log flow, ``twinwatch logs``, keeps its
own next to it, ``<name>.twinwatch-logs.sqlite``): ``write_batch`` queues the batch's alerts
in their order (one SQLite transaction) and returns; the delivery's own thread posts them,
re-sends, retries and holds (see alerting/delivery.py). An unreachable Alertmanager therefore
never slows the flow. ``close`` (end of input, or a graceful stop: twinwatch.flows.graceful)
drains what is ready and stops the thread; the rest waits in the store for the next start.

After a restart the engine takes its alert lifecycle back from ``resume_states`` (the newest
state per alert in the store), so an alert that fired just before a crash is neither paged again
nor left firing: the restored engine owns it and resolves it when the condition clears.
``release`` are firing alerts nothing in the flow can own any more (their sensor or rule left
the config): worker 0 resolves them at start.

Only a non-Alert item (a wiring bug) raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from twinwatch.alerting.delivery import Delivery
from twinwatch.alerting.notifiers import Notifier, notifiers_from_config
from twinwatch.alerting.rules import check_links
from twinwatch.alerting.store import DeliveryStore, last_states
from twinwatch.config import AlertmanagerService, Config, ConfigError
from twinwatch.engine.liveness import RULE as STALE
from twinwatch.engine.plan import Plan
from twinwatch.schema import Alert, series_key

__all__ = ["AlertmanagerSink", "alert_sink", "resume_states", "unowned", "store_path"]
MAIN_FLOW = "twinwatch"


def store_path(cfg: AlertmanagerService, flow_id: str = MAIN_FLOW) -> str | None:
    """The delivery store of flow ``flow_id``: ``state_path`` for the main flow, a sibling
    named after the flow for the others (flows never share a queue)."""
    if cfg.state_path is None or flow_id == MAIN_FLOW:
        return cfg.state_path
    p = Path(cfg.state_path)
    return str(p.with_name(f"{p.stem}.{flow_id}{p.suffix}"))


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _alerts(items: Iterable[Any]) -> list[Alert]:
    out = []
    for item in items:
        for a in item if isinstance(item, (list, tuple)) else (item,):
            if type(a) is not Alert:
                raise TypeError(f"AlertmanagerSink takes Alert records, got {type(a).__name__}")
            out.append(a)
    return out


class _AlertPartition(StatelessSinkPartition[Any]):
    def __init__(self, delivery: Delivery):
        self.delivery = delivery

    def write_batch(self, items: list[Any]) -> None:
        self.delivery.enqueue(_alerts(items))

    def close(self) -> None:
        self.delivery.close()


class AlertmanagerSink(DynamicSink[Any]):
    """Queues Alert records (or lists of them) for delivery; one Delivery per worker.

    ``notifiers(cfg)`` and ``clock`` are injectable for tests; ``background=False`` leaves
    delivery to explicit ``partition.delivery.run_once()`` calls.
    """

    def __init__(
        self,
        cfg: AlertmanagerService,
        flow_id: str = MAIN_FLOW,
        *,
        release: Sequence[Alert] = (),
        notifiers: Callable[[AlertmanagerService], list[Notifier]] = notifiers_from_config,
        clock: Callable[[], datetime] = _utcnow,
        background: bool = True,
    ):
        if not cfg.url and not cfg.webhook_url:
            raise ConfigError(
                "neither alertmanager.url nor alertmanager.webhook_url is set; "
                "do not build an AlertmanagerSink"
            )
        check_links(cfg)
        self.cfg = cfg
        self.path = store_path(cfg, flow_id)
        self.release = list(release)
        self._notifiers = notifiers
        self._clock = clock
        self._background = background

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlertPartition:
        delivery = Delivery(
            self.cfg,
            self._notifiers(self.cfg),
            DeliveryStore(self.path),
            owner=(worker_index, worker_count),
            clock=self._clock,
            background=self._background,
        )
        if worker_index == 0 and self.release:
            delivery.release(self.release)
        return _AlertPartition(delivery)


def alert_sink(
    cfg: AlertmanagerService, flow_id: str = MAIN_FLOW, release: Sequence[Alert] = ()
) -> AlertmanagerSink | None:
    """The alert sink for the configured receivers (Alertmanager and/or the signed webhook), or
    None when neither is configured (alerts then only go to InfluxDB)."""
    if not cfg.url and not cfg.webhook_url:
        return None
    return AlertmanagerSink(cfg, flow_id, release=release)


def resume_states(
    cfg: AlertmanagerService, flow_id: str = MAIN_FLOW
) -> dict[tuple[str, str], Alert]:
    """(series key, rule) -> the newest state of that alert in the flow's delivery store: what
    the engine's restored state must agree with. Empty without receivers or a stored queue."""
    if not cfg.url and not cfg.webhook_url:
        return {}
    return {
        (series_key(a.domain, a.site, a.asset, a.sensor), a.rule): a
        for a in last_states(store_path(cfg, flow_id))
    }


def unowned(
    config: Config, plan: Plan, states: Mapping[tuple[str, str], Alert], security: bool
) -> list[Alert]:
    """The firing alerts among ``states`` that no step of the flow can resolve: their sensor or
    rule left the config (or ``security`` detection is off)."""
    sec_rules = {**config.security.severities, **config.security.device_events}
    out = []
    for (key, rule), a in states.items():
        if a.status != "firing":
            continue
        if a.domain == "security" and rule in sec_rules:
            owned = security
        elif rule == STALE:
            owned = key in plan
        elif key in plan.groups:  # an asset group's alert (issue #12)
            owned = rule in plan.groups[key].policies
        else:
            owned = key in plan and rule in plan[key].policies
        if not owned:
            out.append(a)
    return out
