"""Incidents: the kinds (``INCIDENT_KINDS``) and their parameters (``INCIDENT_PARAMS``), their
validation and placement in time, and their effect on a chunk of readings. (The event incidents,
ssh_brute_force and port_scan, add events: see ``events``.)

``LEGIT_KINDS`` are legitimate changes, labelled like incidents so that an alert inside their
window counts as a false alarm: rain-driven turbidity under its limit, a holiday, a building
switching sharply on its schedule, a sensor replaced and re-zeroed under a maintenance
annotation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from twinwatch.app.simulator.common import _US, SimulationError, _micros, _rng
from twinwatch.app.simulator.signals import _Chunk

INCIDENT_KINDS: dict[str, str] = {
    "crack_growth": "crack width grows steadily (~0.3 mm) past its limit and stays open",
    "stiffness_loss": "step rise of the acceleration response (loss of stiffness), permanent",
    "chlorine_dosing_failure": "chlorine dosing stops: free chlorine decays towards ~0.03 mg/L",
    "stuck_sensor": "the sensor repeats its last value exactly",
    "inverter_fault": "PV inverter trips: output ~0 while irradiance stays normal",
    "turbidity_spike": "turbidity rises to ~1.2 NTU and falls back (filter breakthrough)",
    "sensor_offline": "the sensor sends nothing",
    "pipe_burst": "main burst: pressure drops ~40 %, inflow rises ~60 %",
    "bearing_overheating": "bearing temperature climbs ~50 degC, vibration 2-3x",
    "ssh_brute_force": "SSH password guessing, ~30 failed logins a minute from one address",
    "port_scan": "port scan, ~500 denied connections a minute from one address",
    # issue #12: asset-level incidents ...
    "gauge_debond": "a strain gauge debonds: loses half its response and offsets ~30 units, "
    "permanent",
    "stiffness_growth": "stiffness loss: the response to traffic grows steadily (+35 % by the "
    "end), permanent",
    "night_leak": "a leak in the DMA: inflow ~20 m3/h higher day and night until repaired",
    "pv_underperformance": "a PV string lost: output ~12 % low until repaired",
    "sensor_drift": "after a recalibration the sensor drifts steadily (rate_per_h), until "
    "recalibrated again",
    "chlorine_decline": "dosing slowly weakens: free chlorine ~0.3 mg/L lower by the end, then "
    "recovers",
    # ... and legitimate changes that must stay quiet
    "rain_turbidity": "rain runoff: turbidity rises to ~0.3 NTU and recedes, under its limit",
    "holiday": "a public holiday on a working day: the targets follow their weekend profile",
    "sharp_schedule": "the building's controls switch on at 08:00 and off at 19:00 within minutes",
    "sensor_replacement": "the sensor is replaced: offline for a while, then re-zeroed, under a "
    "maintenance annotation",
}
#: Legitimate changes: labelled, but any alert in their window is a false alarm.
LEGIT_KINDS = frozenset({"rain_turbidity", "holiday", "sharp_schedule", "sensor_replacement"})

INCIDENT_PARAMS: dict[str, dict[str, Any]] = {
    "crack_growth": {"growth": 0.3},
    "stiffness_loss": {"factor": 1.8},
    "chlorine_dosing_failure": {"floor": 0.03, "tau_min": 20.0, "recovery_min": 5.0},
    "stuck_sensor": {},
    "inverter_fault": {"residual": 0.0},
    "turbidity_spike": {"peak": 1.2},
    "sensor_offline": {},
    "pipe_burst": {"pressure_drop": 0.4, "flow_rise": 0.6},
    "bearing_overheating": {
        "rise": 50.0,
        "vibration_factor": 2.5,
        "ramp_frac": 0.6,
        "cooldown_min": 15.0,
    },
    "ssh_brute_force": {"rate_per_min": 30.0, "src_ip": None},
    "port_scan": {"rate_per_min": 500.0, "src_ip": None},
    "gauge_debond": {"offset": 30.0, "response_loss": 0.5, "ramp_min": 60.0},
    "stiffness_growth": {"growth": 0.35},
    "night_leak": {"leak": 20.0},
    "pv_underperformance": {"loss": 0.12},
    "sensor_drift": {"rate_per_h": 1.5},
    "chlorine_decline": {"drop": 0.3, "recovery_min": 30.0},
    "rain_turbidity": {"peak": 0.3},
    "holiday": {},
    "sharp_schedule": {"slope_per_h": 12.0},
    "sensor_replacement": {"offline_min": 30.0, "annotated": True},
}
_EVENT_KINDS = {"ssh_brute_force": "log", "port_scan": "firewall"}


@dataclass
class _Inc:
    index: int
    kind: str
    t0: float  # epoch seconds
    t1: float
    params: dict
    stuck: float | None = None  # stuck_sensor: the value; sensor_replacement: the new zero


def _decay(dt: np.ndarray, tau: float) -> np.ndarray:
    """Exponential recovery, cut off after 8 time constants (then exactly back to normal)."""
    return np.where(dt < 8 * tau, np.exp(-np.maximum(dt, 0) / tau), 0.0)


def _apply_incidents(c: _Chunk, v: np.ndarray, model: str, incs: list[_Inc], rng, last, base):
    """Apply the value incidents of one chunk in place; return the keep mask (offline)."""
    t = c.t
    keep = np.ones(c.n, dtype=bool)
    for inc in incs:
        p, t0, t1, dur = inc.params, inc.t0, inc.t1, inc.t1 - inc.t0
        during = (t >= t0) & (t < t1)
        after = t >= t1
        if inc.kind == "crack_growth":
            ramp = np.clip((t - t0) / dur, 0, 1) ** 1.5  # accelerating, then stays open
            v += p["growth"] * ramp
        elif inc.kind == "stiffness_loss":
            v *= np.where(t >= t0, p["factor"], 1.0)
        elif inc.kind == "chlorine_dosing_failure":
            floor, tau, rec = p["floor"], 60 * p["tau_min"], 60 * p["recovery_min"]
            gone = 1 - np.exp(-np.clip(t - t0, 0, dur) / tau)  # fraction of the residual lost
            gone = np.where(after, gone * _decay(t - t1, rec), gone)
            v[:] = np.where(t >= t0, v - (v - floor) * gone, v)
        elif inc.kind == "turbidity_spike":
            bell = np.sin(np.pi * np.clip((t - t0) / dur, 0, 1)) ** 2
            v += np.where(during, (p["peak"] - base) * bell, 0.0)
        elif inc.kind == "inverter_fault":
            v[during] = p["residual"] * v[during] + 0.01 * np.abs(rng.standard_normal(during.sum()))
        elif inc.kind == "pipe_burst":
            factor = 1 - p["pressure_drop"] if model == "pressure" else 1 + p["flow_rise"]
            v[during] *= factor
        elif inc.kind == "bearing_overheating":
            ramp = np.clip((t - t0) / (p["ramp_frac"] * dur), 0, 1)
            ramp = np.where(after, _decay(t - t1, 60 * p["cooldown_min"]), ramp)
            ramp = np.where(t >= t0, ramp, 0.0)
            if model == "vibration":
                v *= 1 + (p["vibration_factor"] - 1) * ramp
            else:
                v += p["rise"] * ramp
        elif inc.kind == "stuck_sensor":
            idx = np.flatnonzero(during)
            if len(idx):
                if inc.stuck is None:  # the last value before the incident
                    i = idx[0]
                    inc.stuck = float(v[i - 1]) if i > 0 else float(v[i]) if last is None else last
                v[idx] = inc.stuck
        elif inc.kind == "sensor_offline":
            keep &= ~during
        elif inc.kind == "gauge_debond":
            ramp = np.where(t >= t0, np.clip((t - t0) / (60 * p["ramp_min"]), 0, 1), 0.0)
            level = float(c.s.params.get("base", base))  # the gauge's unloaded reading
            v[:] = v - p["response_loss"] * ramp * (v - level) + p["offset"] * ramp
        elif inc.kind == "stiffness_growth":
            gain = p["growth"] * np.clip((t - t0) / dur, 0, 1)
            v += gain * float(c.s.params.get("traffic", 0.0)) * c.traffic
        elif inc.kind == "night_leak":
            v += np.where(during, p["leak"], 0.0)
        elif inc.kind == "pv_underperformance":
            v *= np.where(during, 1 - p["loss"], 1.0)
        elif inc.kind == "sensor_drift":
            v += np.where(during, p["rate_per_h"] * (t - t0) / 3600, 0.0)
        elif inc.kind == "chlorine_decline":
            drop = p["drop"] * np.clip((t - t0) / dur, 0, 1)
            drop = np.where(after, p["drop"] * _decay(t - t1, 60 * p["recovery_min"]), drop)
            v[:] = np.maximum(v - np.where(t >= t0, drop, 0.0), 0.0)
        elif inc.kind == "rain_turbidity":
            x = np.clip((t - t0) / dur, 0, 1) / 0.25  # runoff peaks a quarter into the window
            hydrograph = np.where(during, x * x * np.exp(2 * (1 - x)), 0.0)
            v += (p["peak"] - base) * hydrograph
        elif inc.kind == "sensor_replacement":
            off_until = t0 + 60 * p["offline_min"]
            keep &= ~((t >= t0) & (t < off_until))
            idx = np.flatnonzero(t >= off_until)
            if len(idx):
                if inc.stuck is None:  # the new gauge reads zero when it is installed
                    inc.stuck = float(v[idx[0]])
                v[idx] -= inc.stuck
    return keep


def _plan_incidents(config, start: datetime) -> tuple[list[_Inc], dict[str, list[_Inc]]]:
    """Validate the configured incidents; return them, and per target sensor path its own copies."""
    paths = {
        f"{site.id}/{a.id}/{s.id}": s
        for site in config.sites
        for a in site.assets
        for s in a.sensors
    }
    start_us = _micros(start)
    incs: list[_Inc] = []
    by_path: dict[str, list[_Inc]] = {}
    for i, inc in enumerate(config.simulation.incidents):
        where = f"simulation.incidents[{i}]"
        if inc.kind not in INCIDENT_KINDS:
            raise SimulationError(
                f"{where}.kind: unknown incident kind {inc.kind!r}; "
                f"known: {', '.join(INCIDENT_KINDS)}"
            )
        unknown = set(inc.params) - set(INCIDENT_PARAMS[inc.kind])
        if unknown:
            raise SimulationError(
                f"{where}.params: unknown {sorted(unknown)} for {inc.kind}; "
                f"known: {sorted(INCIDENT_PARAMS[inc.kind]) or 'none'}"
            )
        if (
            inc.kind == "sensor_replacement"
            and 60 * inc.params.get("offline_min", INCIDENT_PARAMS[inc.kind]["offline_min"])
            >= 3600 * inc.duration_h
        ):
            raise SimulationError(f"{where}: the replacement must end within duration_h")
        params = {**INCIDENT_PARAMS[inc.kind], **inc.params}
        rng = _rng(int(config.simulation.seed), "incident", str(i))
        if inc.kind == "ssh_brute_force" and params["src_ip"] is None:
            params["src_ip"] = f"203.0.113.{int(rng.integers(2, 254))}"
        if inc.kind == "port_scan" and params["src_ip"] is None:
            params["src_ip"] = f"198.51.100.{int(rng.integers(2, 254))}"
        t0_us = start_us + round(inc.at_h * 3600 * _US)  # same float as a sample at that time
        t1_us = t0_us + round(inc.duration_h * 3600 * _US)
        item = _Inc(i, inc.kind, t0_us / _US, t1_us / _US, params)
        for target in inc.targets:
            sensor = paths.get(target)
            if sensor is None:
                raise SimulationError(f"{where}.targets: no sensor {target!r}")
            need = _EVENT_KINDS.get(inc.kind)
            if inc.kind != "sensor_offline" and (need or "reading") != sensor.kind:
                raise SimulationError(
                    f"{where}: {inc.kind} needs a {need or 'reading'} sensor, "
                    f"{target} is a {sensor.kind} sensor"
                )
            by_path.setdefault(target, []).append(
                _Inc(i, inc.kind, item.t0, item.t1, dict(params))
            )  # own copy: stuck keeps state
        incs.append(item)
    return incs, by_path
