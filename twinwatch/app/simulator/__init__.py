"""The built-in city simulator: sensor streams with labelled incidents, deterministic per seed.

    sim_start(config, now) -> start           local midnight, so that the span ends before ``now``
    generate(config, start) -> Iterator[Message]   every sensor's messages, in time order
    incident_labels(config, start) -> [dict]       the ground truth of the injected incidents
    publish_mqtt(messages, mqtt=config.services.mqtt, speed=...) -> SimStats

Determinism: every random stream is a numpy ``Generator`` seeded from ``simulation.seed`` and a
name (the sensor's ``site/asset/sensor`` path plus a purpose), so adding a sensor or an incident
never changes another sensor's values, and values outside an incident are the same with or without
it. Nothing reads the clock: time is passed in. The city weather (ambient temperature, cloud
cover, wind) is a sum of seeded sinusoids, a pure function of time, so every sensor of a site sees
the same weather and a PV inverter sees exactly the irradiance of its own pyranometer.

Memory: one generator per sensor computes its readings one hour at a time with numpy and yields
them; ``heapq.merge`` interleaves the sensors in time order (a few KiB per sensor).

Each sensor's ``sim`` block names a model (``MODELS``: model -> its parameters, documented in
``signals``); incident ``params`` are all optional, names and defaults in ``INCIDENT_PARAMS``. An
unknown model, incident kind or parameter name raises SimulationError (a typo never silently
defaults).

Readings come every ``interval_s`` on a grid shared by an asset's sensors (one data logger per
asset, at a seeded whole-second phase); ``simulation.missing_rate`` drops single readings. Log
and firewall events are Poisson (their ``interval_s`` is not used); their formats and addresses
are described in ``events``.

Modules:

    common       SimulationError, Message, time constants, seeded random generators
    weather      smooth random processes, daily curves, city weather, the sun
    signals      the reading models of one chunk of samples (``MODELS``)
    incidents    incident kinds and parameters, their validation and their effect on readings
    scenarios    named one-incident scenarios (``twinwatch simulate --scenario``), seeded
    events       sshd log lines and firewall events (Poisson), with their incidents
    sensors      one sensor's message stream (readings or events)
    generation   sim_start, generate, incident_labels
    files        JSON Lines files: write_labels, write_replay, read_replay
    publish      publish_mqtt, SimStats, print_progress, utcnow
    security_logs  labelled security-log scenarios: a normal background of five log formats and
                 one scenario per attack kind (issue #13; benchmarks/logs_attacks.py)
"""

from twinwatch.app.simulator.common import Message, SimulationError
from twinwatch.app.simulator.files import read_replay, write_labels, write_replay
from twinwatch.app.simulator.generation import generate, incident_labels, sim_start
from twinwatch.app.simulator.incidents import INCIDENT_KINDS, INCIDENT_PARAMS, LEGIT_KINDS
from twinwatch.app.simulator.publish import SimStats, print_progress, publish_mqtt, utcnow
from twinwatch.app.simulator.scenarios import SCENARIOS, Scenario, scenario_config
from twinwatch.app.simulator.signals import MODELS

__all__ = [
    "INCIDENT_KINDS",
    "INCIDENT_PARAMS",
    "LEGIT_KINDS",
    "SCENARIOS",
    "Scenario",
    "scenario_config",
    "MODELS",
    "Message",
    "SimStats",
    "SimulationError",
    "sim_start",
    "generate",
    "incident_labels",
    "write_labels",
    "write_replay",
    "read_replay",
    "publish_mqtt",
    "print_progress",
    "utcnow",
]
