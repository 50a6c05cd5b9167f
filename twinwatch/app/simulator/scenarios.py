"""Named scenarios: one labelled incident (or legitimate change) each, on the example city, that
run on their own (``twinwatch simulate --scenario NAME``), deterministic per seed.

    scenario_config(config, name, seed) -> Config    the config with that scenario's simulation
    SCENARIOS                                        name -> Scenario

A scenario spans ``days`` simulated days from a local midnight. Its incident starts on a day and
at an hour drawn from the seed (never in the first two days: the detectors' references need a
fault-free start), so no detector can be tuned to one timing. Each incident names the detector
kinds meant to catch it (``expect``, carried into the labels); a legitimate change expects none,
and any alert in its window is a false alarm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from twinwatch.app.simulator.common import SimulationError, _rng
from twinwatch.app.simulator.incidents import INCIDENT_KINDS, LEGIT_KINDS
from twinwatch.config import Config, Incident

__all__ = ["Scenario", "SCENARIOS", "scenario_config"]

SPAN = "sejong-bridge/span-2"


@dataclass(frozen=True)
class Scenario:
    kind: str  # an INCIDENT_KINDS entry
    targets: tuple[str, ...]
    expect: tuple[str, ...]  # detector kinds meant to catch it; () for a legitimate change
    duration_h: float
    days: float = 7.0
    first_day: int = 2  # the incident starts on a day in [first_day, last_day]
    last_day: int = 4
    at_midnight: bool = False  # starts at local midnight (a holiday), else at a drawn hour
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def legit(self) -> bool:
        return self.kind in LEGIT_KINDS


SCENARIOS: dict[str, Scenario] = {
    # incidents, each with the detector kind meant for it
    "gauge_debond": Scenario("gauge_debond", (f"{SPAN}/strain-2",), ("sensor_fault",), 24),
    "stiffness_growth": Scenario(
        "stiffness_growth", (f"{SPAN}/strain-1", f"{SPAN}/strain-2"), ("structural",), 48
    ),
    # a leak runs until it is found and repaired: days, not hours
    "night_leak": Scenario("night_leak", ("sejong-dma-1/inlet/flow",), ("leak",), 72),
    "pv_underperformance": Scenario(
        "pv_underperformance", ("sejong-pv/inverter-1/power",), ("underperformance",), 48
    ),
    "sensor_drift": Scenario("sensor_drift", (f"{SPAN}/strain-1",), ("sensor_fault",), 48),
    "chlorine_decline": Scenario(
        "chlorine_decline", ("sejong-wtp/clearwell/chlorine",), ("dosing",), 24
    ),
    # legitimate changes that must stay quiet
    "rain_turbidity": Scenario("rain_turbidity", ("sejong-wtp/filter-outlet/turbidity",), (), 8),
    # a holiday the city calendar does not list: what follows the weekend rhythm does so
    "holiday": Scenario(
        "holiday",
        (
            "sejong-building/main-meter/load",
            f"{SPAN}/strain-1",
            f"{SPAN}/strain-2",
            f"{SPAN}/accel-rms",
            "sejong-dma-1/inlet/flow",
            "sejong-dma-1/inlet/pressure",
            "sejong-dma-1/inlet/chlorine",
            "sejong-wtp/clearwell/chlorine",
        ),
        (),
        24,
        at_midnight=True,
    ),
    "sharp_schedule": Scenario(
        "sharp_schedule", ("sejong-building/main-meter/load",), (), 5 * 24, first_day=0, last_day=0
    ),
    "sensor_replacement": Scenario("sensor_replacement", (f"{SPAN}/strain-2",), (), 2),
}
assert all(s.kind in INCIDENT_KINDS for s in SCENARIOS.values())


def scenario_config(
    config: Config,
    name: str,
    seed: int | None = None,
    *,
    days: float | None = None,
    params: dict[str, Any] | None = None,
    targets: tuple[str, ...] | None = None,
) -> Config:
    """``config`` with its simulation replaced by scenario ``name``: the span, the seed, the one
    incident at a seeded day and hour (``params``/``targets`` override the scenario's, for
    variants). Raises SimulationError for an unknown scenario."""
    sc = SCENARIOS.get(name)
    if sc is None:
        raise SimulationError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    seed = config.simulation.seed if seed is None else seed
    rng = _rng(int(seed), "scenario", name)
    day = int(rng.integers(sc.first_day, sc.last_day + 1))
    hour = 0.0 if sc.at_midnight or sc.first_day == sc.last_day == 0 else float(rng.uniform(0, 24))
    span = days or sc.days
    incident = Incident(
        kind=sc.kind,
        targets=list(targets or sc.targets),
        at_h=24.0 * day + hour,
        duration_h=min(sc.duration_h, 24.0 * span - 24.0 * day - hour),
        params={**sc.params, **(params or {})},
        expect=list(sc.expect),
    )
    sim = msgspec.structs.replace(
        config.simulation, seed=int(seed), duration_h=24.0 * span, incidents=[incident]
    )
    return msgspec.structs.replace(config, simulation=sim)
