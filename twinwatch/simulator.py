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

``sim`` parameters per model (defaults in brackets; ``noise`` is a standard deviation in the
sensor's unit, ``decimals`` [4] the reported resolution):

    temperature   offset [0]                          ambient + offset
    strain        base, temp_coeff, traffic           base + temp_coeff (T - 15) + traffic load
    accel_rms     base, traffic                       base + traffic-driven response
    tilt          base, temp_coeff
    crack         base, temp_coeff                    width shrinks a little when warm
    turbidity     base                                lognormal around base, higher with demand
    chlorine      base, demand_coeff                  base - demand_coeff * demand
    ph            base;  conductivity  base
    pressure      base, demand_coeff                  base - demand_coeff * demand**2 (head loss)
    flow          base, daily [0.4]                   base * (1 +- daily), morning/evening peaks
    level         base, daily [0.5]                   reservoir: full at dawn, lowest at dusk
    irradiance    peak [1000]                         clear sky (sun elevation at the site) x clouds
    pv_power      capacity, efficiency [0.95]         capacity * irradiance / 1000 * efficiency
    load          base, daily [0.5], weekend [0.4]    office occupancy + heating/cooling
    bearing_temp  base, load_coeff                    base + 0.5 (T - 15) + load_coeff (wind - 0.5)
    vibration     base                                base * (0.5 + wind)
    ev_power      rated, sessions_per_h               DC fast-charging sessions with a taper
    constant      base, noise                         (fallback for a sensor without a model)
    sshd          logins_per_h, failure_rate          syslog sshd lines
    firewall      events_per_min, deny_rate           allow/deny events

Incident ``params`` are all optional; names and defaults in ``INCIDENT_PARAMS``. An unknown
model, incident kind or parameter name raises SimulationError (a typo never silently defaults).

Readings come every ``interval_s`` on a grid shared by an asset's sensors (one data logger per
asset, at a seeded whole-second phase); ``simulation.missing_rate`` drops single readings. Log
and firewall events are Poisson (their ``interval_s`` is not used). sshd lines are syslog lines
stamped in the city's local time (the payload's ``time`` is authoritative, UTC), in the formats
of the OpenSSH sample of loghub (Zhu et al., "Loghub: A Large Collection of System Log Datasets
for AI-driven Log Analytics", ISSRE 2023): ``Accepted password|publickey for``, ``Failed
password for [invalid user]``, ``Invalid user``, ``Received disconnect``, ``pam_unix`` session
lines. Security events use reserved addresses: attackers from the RFC 5737 TEST-NETs, internet
background noise from 198.18.0.0/15, inside hosts from 10.20.0.0/16.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import time as _time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import msgspec
import numpy as np

from twinwatch.config import MqttService
from twinwatch.mqtt import make_client
from twinwatch.schema import FirewallPayload, LogPayload, SensorPayload, utc

__all__ = [
    "INCIDENT_KINDS", "INCIDENT_PARAMS", "MODELS", "Message", "SimStats", "SimulationError",
    "sim_start", "generate", "incident_labels", "write_labels", "write_replay", "read_replay",
    "publish_mqtt",
]

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
}

INCIDENT_PARAMS: dict[str, dict[str, Any]] = {
    "crack_growth": {"growth": 0.3},
    "stiffness_loss": {"factor": 1.8},
    "chlorine_dosing_failure": {"floor": 0.03, "tau_min": 20.0, "recovery_min": 5.0},
    "stuck_sensor": {},
    "inverter_fault": {"residual": 0.0},
    "turbidity_spike": {"peak": 1.2},
    "sensor_offline": {},
    "pipe_burst": {"pressure_drop": 0.4, "flow_rise": 0.6},
    "bearing_overheating": {"rise": 50.0, "vibration_factor": 2.5, "ramp_frac": 0.6,
                            "cooldown_min": 15.0},
    "ssh_brute_force": {"rate_per_min": 30.0, "src_ip": None},
    "port_scan": {"rate_per_min": 500.0, "src_ip": None},
}
_EVENT_KINDS = {"ssh_brute_force": "log", "port_scan": "firewall"}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = 1_000_000
_CHUNK_S = 3600
_ENC = msgspec.json.Encoder()


class SimulationError(ValueError):
    """The simulation part of the config cannot be simulated (unknown model, kind or param)."""


class Message(NamedTuple):
    topic: str
    payload: bytes
    time: datetime  # simulated time (UTC)


# --- seeded randomness ------------------------------------------------------------------------

def _rng(seed: int, *names: str) -> np.random.Generator:
    words = [seed % 2**32, (seed // 2**32) % 2**32]
    for name in names:
        digest = hashlib.sha256(name.encode()).digest()
        words += [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence(words))


class _Smooth:
    """A smooth random process ~N(0, 1): seeded sinusoids with log-uniform periods (hours)."""

    def __init__(self, rng: np.random.Generator, n: int, min_h: float, max_h: float):
        self.omega = 2 * np.pi / (3600 * np.exp(rng.uniform(np.log(min_h), np.log(max_h), n)))
        self.phase = rng.uniform(0, 2 * np.pi, n)
        w = rng.uniform(0.5, 1.5, n)
        self.amp = w * np.sqrt(2 / np.sum(w**2))

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return self.amp @ np.sin(np.outer(self.omega, t) + self.phase[:, None])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _bump(h, mu, sigma):
    d = (h - mu + 12) % 24 - 12  # circular distance in hours
    return np.exp(-0.5 * (d / sigma) ** 2)


def _plateau(h, a, b, slope=2.0):
    return _sigmoid((h - a) * slope) * _sigmoid((b - h) * slope)


class _Weather:
    """City weather shared by every sensor: ambient temperature, per-site clouds and wind."""

    def __init__(self, seed: int):
        self.seed = seed
        self.drift = _Smooth(_rng(seed, "weather", "temperature"), 8, 6, 120)
        self._sites: dict[str, tuple[_Smooth, _Smooth, _Smooth]] = {}

    def ambient(self, t: np.ndarray, hour: np.ndarray) -> np.ndarray:
        # Climatology of central Korea (annual mean ~12.9 degC, Jan ~-1 / Aug ~26 degC) with a
        # daily cycle that is coldest at 05:00 and warmest at 15:00 local time.
        year = ((t / 86400 - 10957.5) / 365.2422) % 1.0
        mean = 12.9 - 14.0 * np.cos(2 * np.pi * (year - 0.04))
        rising = (hour >= 5) & (hour < 15)
        daily = np.where(rising, -np.cos(np.pi * (hour - 5) / 10),
                         np.cos(np.pi * ((hour - 15) % 24) / 14))
        return mean + 5.0 * daily + 2.0 * self.drift(t)

    def _site(self, site: str) -> tuple[_Smooth, _Smooth, _Smooth]:
        if site not in self._sites:
            self._sites[site] = (_Smooth(_rng(self.seed, "weather", "clouds", site), 8, 1.5, 72),
                                 _Smooth(_rng(self.seed, "weather", "cloudlets", site), 6, 0.3, 1.5),
                                 _Smooth(_rng(self.seed, "weather", "wind", site), 8, 0.5, 48))
        return self._sites[site]

    def cloud_transmission(self, site: str, t: np.ndarray) -> np.ndarray:
        slow, fast, _ = self._site(site)
        cover = _sigmoid(2.5 * (slow(t) + 0.3 * fast(t) - 0.6))
        return 1.0 - 0.65 * cover

    def wind(self, site: str, t: np.ndarray) -> np.ndarray:
        """Wind turbine load in [0, 1]."""
        return _sigmoid(1.5 * self._site(site)[2](t))


def _sin_sun_elevation(t: np.ndarray, lat: float, lon: float) -> np.ndarray:
    """sin(solar elevation), low-precision almanac formulas (~0.01 deg)."""
    n = (t - 946728000.0) / 86400  # days since J2000.0
    g = np.radians((357.528 + 0.9856003 * n) % 360)
    lam = np.radians((280.460 + 0.9856474 * n) % 360) + np.radians(1.915) * np.sin(g) \
        + np.radians(0.020) * np.sin(2 * g)
    eps = np.radians(23.439 - 4e-7 * n)
    ra = np.arctan2(np.cos(eps) * np.sin(lam), np.cos(lam))
    dec = np.arcsin(np.sin(eps) * np.sin(lam))
    ha = np.radians(((18.697374558 + 24.06570982441908 * n) % 24) * 15 + lon) - ra
    phi = np.radians(lat)
    return np.sin(phi) * np.sin(dec) + np.cos(phi) * np.cos(dec) * np.cos(ha)


def _clear_sky(sin_el: np.ndarray) -> np.ndarray:
    """Haurwitz clear-sky global irradiance, normalised to 1 with the sun at the zenith."""
    s = np.maximum(sin_el, 1e-3)
    return np.where(sin_el > 0, s * np.exp(-0.057 / s) / math.exp(-0.057), 0.0)


# --- per-chunk context and the signal models --------------------------------------------------

class _Chunk:
    """Times of one chunk of one sensor, with lazily computed shared features."""

    def __init__(self, sensor: _SensorSim, t_us: np.ndarray):
        self.s = sensor
        self.n = len(t_us)
        self.t = t_us / _US
        off = sensor.world.utcoffset(self.t)
        local = self.t + off
        self.hour = (local % 86400) / 3600
        self.weekend = ((np.floor(local / 86400) + 3) % 7) >= 5  # 1970-01-01 was a Thursday

    @cached_property
    def ambient(self):
        return self.s.world.weather.ambient(self.t, self.hour)

    @cached_property
    def traffic(self):
        """Road traffic in [0, 1]: rush hours on weekdays, a broad afternoon hump at weekends."""
        h = self.hour
        wk = 0.05 + 0.85 * _bump(h, 8.0, 1.0) + 0.75 * _bump(h, 18.5, 1.3) + 0.35 * _plateau(h, 7, 21)
        we = 0.05 + 0.5 * _bump(h, 14.0, 3.5) + 0.15 * _plateau(h, 9, 22)
        return np.minimum(np.where(self.weekend, we, wk), 1.0)

    @cached_property
    def demand(self):
        """Water demand relative to the daily mean, ~0.55 (night) .. ~1.45 (morning peak)."""
        h = self.hour
        wk = 0.55 + 0.85 * _bump(h, 7.5, 1.2) + 0.6 * _bump(h, 20.0, 1.8) + 0.35 * _plateau(h, 9, 18)
        we = 0.55 + 0.6 * _bump(h, 9.5, 1.8) + 0.55 * _bump(h, 19.5, 2.0) + 0.3 * _plateau(h, 11, 17)
        return np.minimum(np.where(self.weekend, we, wk), 1.45)

    @cached_property
    def drift(self):
        """The sensor's own slow variation (process and calibration drift), ~N(0, 1)."""
        return self.s.drift(self.t)

    @cached_property
    def wind(self):
        return self.s.world.weather.wind(self.s.site.id, self.t)

    def irradiance_true(self, peak: float) -> np.ndarray:
        site = self.s.site
        clear = _clear_sky(_sin_sun_elevation(self.t, site.lat, site.lon))
        return peak * clear * self.s.world.weather.cloud_transmission(site.id, self.t)

    def normal(self, k: int = 1) -> np.ndarray:
        return self.s.rng.standard_normal((k, self.n)) if k > 1 else self.s.rng.standard_normal(self.n)


def _p(p: dict, name: str, default: float | None = None) -> float:
    v = p.get(name, default)
    if v is None:
        raise SimulationError(f"sim parameter {name!r} is required")
    return float(v)


def _m_temperature(c: _Chunk, p):
    return c.ambient + _p(p, "offset", 0) + _p(p, "noise", 0.1) * c.normal()


def _m_strain(c: _Chunk, p):
    z = c.normal(2)
    traffic = _p(p, "traffic", 0) * c.traffic * (1 + 0.25 * z[0])
    return (_p(p, "base") + _p(p, "temp_coeff", 0) * (c.ambient - 15) + traffic
            + _p(p, "noise", 1) * z[1])


def _m_accel_rms(c: _Chunk, p):
    z = c.normal(2)
    return (_p(p, "base") + _p(p, "traffic", 0) * c.traffic * (1 + 0.2 * z[0])
            + _p(p, "noise", 0.1) * z[1])


def _m_tilt(c: _Chunk, p):
    noise = _p(p, "noise", 0.01)
    return (_p(p, "base", 0) + _p(p, "temp_coeff", 0) * (c.ambient - 15) + 2 * noise * c.drift
            + noise * c.normal())


def _m_crack(c: _Chunk, p):
    return _p(p, "base") + _p(p, "temp_coeff", 0) * (c.ambient - 15) + _p(p, "noise", 0.002) * c.normal()


def _m_turbidity(c: _Chunk, p):
    base = _p(p, "base")
    sigma = _p(p, "noise", 0.1 * base) / base
    return base * (1 + 0.15 * (c.demand - 1)) * np.exp(sigma * c.normal() + 0.5 * sigma * c.drift)


def _m_chlorine(c: _Chunk, p):
    v = (_p(p, "base") - _p(p, "demand_coeff", 0) * c.demand + 0.01 * c.drift
         + _p(p, "noise", 0.01) * c.normal())
    return np.maximum(v, 0.0)


def _m_ph(c: _Chunk, p):
    return (_p(p, "base") + 0.05 * c.drift + 0.03 * np.sin(2 * np.pi * (c.hour - 9) / 24)
            + _p(p, "noise", 0.02) * c.normal())


def _m_conductivity(c: _Chunk, p):
    base = _p(p, "base")
    return base * (1 + 0.03 * c.drift) + _p(p, "noise", 0.01 * base) * c.normal()


def _m_pressure(c: _Chunk, p):
    return (_p(p, "base") - _p(p, "demand_coeff", 0) * c.demand**2 + 1.5 * c.drift
            + _p(p, "noise", 1) * c.normal())


def _m_flow(c: _Chunk, p):
    base = _p(p, "base")
    shape = (c.demand - 1) / 0.45  # ~[-1, 1]
    v = (base * (1 + _p(p, "daily", 0.4) * shape) * (1 + 0.03 * c.drift)
         + _p(p, "noise", 0.01 * base) * c.normal())
    return np.maximum(v, 0.0)


def _m_level(c: _Chunk, p):
    return (_p(p, "base") + _p(p, "daily", 0.5) * np.cos(2 * np.pi * (c.hour - 6) / 24)
            + 0.05 * c.drift + _p(p, "noise", 0.01) * c.normal())


def _m_irradiance(c: _Chunk, p):
    true = c.irradiance_true(_p(p, "peak", 1000))
    z = c.normal(2)
    noise = _p(p, "noise", 5) * np.minimum(true / 100, 1.0)
    # at night a thermopile pyranometer reads a small offset: never an exactly repeated 0
    return np.maximum(true + noise * z[0], 0.0) + 0.3 * np.abs(z[1])


def _m_pv_power(c: _Chunk, p):
    cap = _p(p, "capacity")
    ac = cap * c.irradiance_true(c.s.irradiance_peak) / 1000 * _p(p, "efficiency", 0.95)
    z = c.normal(2)
    noise = _p(p, "noise", 0.005 * cap) * np.minimum(ac / (0.05 * cap), 1.0)
    return np.clip(ac + noise * z[0], 0.0, cap) + 0.01 * np.abs(z[1])  # meter noise floor


def _m_load(c: _Chunk, p):
    base, daily = _p(p, "base"), _p(p, "daily", 0.5)
    occupancy = _plateau(c.hour, 8, 19, 1.5) * np.where(c.weekend, _p(p, "weekend", 0.4), 1.0)
    hvac = 0.008 * base * np.abs(c.ambient - 18)
    return (base * (1 - daily + 2 * daily * occupancy) * (1 + 0.02 * c.drift) + hvac
            + _p(p, "noise", 0.01 * base) * c.normal())


def _m_bearing_temp(c: _Chunk, p):
    return (_p(p, "base") + 0.5 * (c.ambient - 15) + _p(p, "load_coeff", 10) * (c.wind - 0.5)
            + _p(p, "noise", 0.2) * c.normal())


def _m_vibration(c: _Chunk, p):
    return _p(p, "base") * (0.5 + c.wind) + _p(p, "noise", 0.05) * c.normal()


def _m_ev_power(c: _Chunk, p):
    v = np.zeros(c.n)
    z = c.normal()
    for t0, t1, level in c.s.sessions:
        if t1 <= c.t[0] or t0 > c.t[-1]:
            continue
        m = (c.t >= t0) & (c.t < t1)
        u = (c.t[m] - t0) / (t1 - t0)
        # ramp up in ~1 %, constant current, then taper to ~25 % (battery near full)
        shape = np.minimum(u / 0.01, 1.0) * np.where(u < 0.7, 1.0, 1.0 - 2.5 * (u - 0.7))
        v[m] = level * shape * (1 + 0.003 * z[m])
    return np.clip(v, 0.0, _p(p, "rated"))


def _m_constant(c: _Chunk, p):
    return _p(p, "base", 0) + _p(p, "noise", 0.1) * c.normal()


_READING_MODELS: dict[str, Callable[[_Chunk, dict], np.ndarray]] = {
    "temperature": _m_temperature, "strain": _m_strain, "accel_rms": _m_accel_rms, "tilt": _m_tilt,
    "crack": _m_crack, "turbidity": _m_turbidity, "chlorine": _m_chlorine, "ph": _m_ph,
    "conductivity": _m_conductivity, "pressure": _m_pressure, "flow": _m_flow, "level": _m_level,
    "irradiance": _m_irradiance, "pv_power": _m_pv_power, "load": _m_load,
    "bearing_temp": _m_bearing_temp, "vibration": _m_vibration, "ev_power": _m_ev_power,
    "constant": _m_constant,
}
# model -> its `sim` parameters (besides `model`; every reading model also takes noise, decimals)
MODELS: dict[str, tuple[str, ...]] = {
    "temperature": ("offset",), "strain": ("base", "temp_coeff", "traffic"),
    "accel_rms": ("base", "traffic"), "tilt": ("base", "temp_coeff"), "crack": ("base", "temp_coeff"),
    "turbidity": ("base",), "chlorine": ("base", "demand_coeff"), "ph": ("base",),
    "conductivity": ("base",), "pressure": ("base", "demand_coeff"), "flow": ("base", "daily"),
    "level": ("base", "daily"), "irradiance": ("peak",), "pv_power": ("capacity", "efficiency"),
    "load": ("base", "daily", "weekend"), "bearing_temp": ("base", "load_coeff"),
    "vibration": ("base",), "ev_power": ("rated", "sessions_per_h"), "constant": ("base",),
    "sshd": ("logins_per_h", "failure_rate"), "firewall": ("events_per_min", "deny_rate"),
}
_EVENT_MODELS = {"log": "sshd", "firewall": "firewall"}  # sensor kind -> its (only) model


# --- incidents on readings ----------------------------------------------------------------------

@dataclass
class _Inc:
    index: int
    kind: str
    t0: float  # epoch seconds
    t1: float
    params: dict
    stuck: float | None = None


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
    return keep


# --- sensors ------------------------------------------------------------------------------------

class _World:
    def __init__(self, config):
        self.config = config
        self.seed = int(config.simulation.seed)
        self.tz = ZoneInfo(config.city.timezone)
        self.weather = _Weather(self.seed)
        self._offsets: dict[int, float] = {}

    def utcoffset(self, t: np.ndarray) -> np.ndarray | float:
        """Local UTC offset in seconds (per hour, so DST changes land on the hour)."""
        hours = np.floor(t / 3600).astype(np.int64)
        lo, hi = int(hours[0]), int(hours[-1])
        for h in (lo, hi):
            if h not in self._offsets:
                dt = datetime.fromtimestamp(h * 3600, timezone.utc).astimezone(self.tz)
                self._offsets[h] = dt.utcoffset().total_seconds()
        if self._offsets[lo] == self._offsets[hi]:
            return self._offsets[lo]
        return np.array([datetime.fromtimestamp(h * 3600, timezone.utc).astimezone(self.tz)
                         .utcoffset().total_seconds() for h in hours.tolist()])


class _SensorSim:
    def __init__(self, world: _World, site, asset, sensor, index: int, incs: list[_Inc],
                 start_us: int, end_us: int):
        self.world, self.site, self.asset, self.sensor, self.index = world, site, asset, sensor, index
        self.path = f"{site.id}/{asset.id}/{sensor.id}"
        prefix = world.config.services.mqtt.topic_prefix
        self.topic = f"{prefix}/{site.domain}/{self.path}"
        sim = dict(sensor.sim)
        self.model = sim.pop("model", _EVENT_MODELS.get(sensor.kind, "constant"))
        where = f"sites.{site.id}.{asset.id}.{sensor.id}.sim"
        if self.model not in MODELS:
            raise SimulationError(f"{where}: unknown model {self.model!r}; "
                                  f"known: {', '.join(sorted(MODELS))}")
        if _EVENT_MODELS.get(sensor.kind, "reading") != (
                self.model if self.model in _EVENT_MODELS.values() else "reading"):
            raise SimulationError(f"{where}: model {self.model!r} does not fit a {sensor.kind} sensor")
        unknown = set(sim) - set(MODELS[self.model]) - {"noise", "decimals"}
        if unknown:
            raise SimulationError(f"{where}: unknown parameters {sorted(unknown)} for model "
                                  f"{self.model}; known: {', '.join(MODELS[self.model])}, noise, decimals")
        if self.model == "constant" and "base" not in sim:  # the middle of the normal range
            lo, hi = (sensor.limits.low, sensor.limits.high) if sensor.limits else (None, None)
            if lo is not None and hi is not None:
                sim["base"], scale = (lo + hi) / 2, hi - lo
            elif lo is not None or hi is not None:
                limit = lo if lo is not None else hi
                scale = max(1.0, abs(limit))
                sim["base"] = limit + scale if lo is not None else limit - scale / 2
            else:
                sim["base"], scale = 0.0, 1.0
            sim.setdefault("noise", 0.005 * scale)
        self.params = sim
        self._state: dict[str, Any] = {}  # event models' state across chunks
        self.decimals = int(sim.get("decimals", 4))
        self.incs = incs
        self.start_us, self.end_us = start_us, end_us
        seed = world.seed
        self.rng = _rng(seed, self.path, "values")
        self.drift = _Smooth(_rng(seed, self.path, "drift"), 6, 2, 48)
        self.irradiance_peak = 1000.0
        for s in asset.sensors:
            if s.sim.get("model") == "irradiance":
                self.irradiance_peak = float(s.sim.get("peak", 1000))
                break
        self.sessions = self._ev_sessions() if self.model == "ev_power" else []

    def _ev_sessions(self) -> list[tuple[float, float, float]]:
        rng = _rng(self.world.seed, self.path, "sessions")
        rate = _p(self.params, "sessions_per_h", 1.0) / 3600
        rated = _p(self.params, "rated")
        t, end, out = self.start_us / _US, self.end_us / _US, []
        while True:
            t += rng.exponential(1 / (1.5 * rate))
            if t >= end:
                return out
            # thinning: few cars at night, most from late morning to evening (mean rate `rate`)
            hour = (t + self.world.utcoffset(np.array([t]))) % 86400 / 3600
            if rng.random() >= float(0.15 + 1.3 * np.mean(_plateau(hour, 7.5, 21.5, 1.0))) / 1.5:
                continue
            dur = rng.uniform(12, 45) * 60
            out.append((t, t + dur, rated * rng.uniform(0.85, 1.0)))
            t += dur + 60  # the next car plugs in after this one has left

    # -- readings --
    def readings(self) -> Iterator[tuple[int, int, Message]]:
        interval_us = int(round(self.sensor.interval_s * _US))
        # one data logger per asset: its sensors with the same interval sample together
        phase_rng = _rng(self.world.seed, f"{self.site.id}/{self.asset.id}", "phase", str(interval_us))
        phase_us = int(phase_rng.integers(0, max(1, interval_us // _US))) * _US
        first = self.start_us + phase_us
        total = max(0, -(-(self.end_us - first) // interval_us))
        chunk_n = max(1, _CHUNK_S * _US // interval_us)
        missing_rng = _rng(self.world.seed, self.path, "missing")
        inc_rng = _rng(self.world.seed, self.path, "incidents")
        missing_rate = float(self.world.config.simulation.missing_rate)
        model, p, incs = _READING_MODELS[self.model], self.params, self.incs
        topic, unit, idx, dec = self.topic, self.sensor.unit, self.index, self.decimals
        enc, Payload, E, td = _ENC.encode, SensorPayload, _EPOCH, timedelta
        last = None
        for k in range(0, total, chunk_n):
            t_us = first + np.arange(k, min(k + chunk_n, total), dtype=np.int64) * interval_us
            c = _Chunk(self, t_us)
            try:
                v = np.asarray(model(c, p), dtype=float)
            except SimulationError as e:
                raise SimulationError(f"{self.path}: {e}") from None
            keep = missing_rng.random(c.n) >= missing_rate
            if incs:
                active = [i for i in incs if i.t0 <= c.t[-1]]  # effects may outlast the incident
                if active:
                    base = float(p.get("base", np.median(v)))
                    keep &= _apply_incidents(c, v, self.model, active, inc_rng, last, base)
            last = float(v[-1])
            v = np.round(v, dec)
            for tu, val in zip(t_us[keep].tolist(), v[keep].tolist()):
                dt = E + td(microseconds=tu)
                yield tu, idx, Message(topic, enc(Payload(dt, val, unit)), dt)

    def messages(self) -> Iterator[tuple[int, int, Message]]:
        if self.model == "sshd":
            return self._events(self._sshd_chunk)
        if self.model == "firewall":
            return self._events(self._firewall_chunk)
        return self.readings()

    # -- events (Poisson) --
    def _events(self, chunk_fn) -> Iterator[tuple[int, int, Message]]:
        rng = _rng(self.world.seed, self.path, "events")
        inc_rng = _rng(self.world.seed, self.path, "incident-events")  # incidents change nothing else
        offline = [(i.t0, i.t1) for i in self.incs if i.kind == "sensor_offline"]
        pending: list[tuple[int, int, Any]] = []  # (t_us, seq, payload-args), may lie in later chunks
        seq = 0
        topic, idx, E, td, enc = self.topic, self.index, _EPOCH, timedelta, _ENC.encode
        for c0 in range(self.start_us, self.end_us, _CHUNK_S * _US):
            c1 = min(c0 + _CHUNK_S * _US, self.end_us)
            for t_us, item in chunk_fn(rng, inc_rng, c0, c1):
                heapq.heappush(pending, (t_us, seq, item))
                seq += 1
            while pending and pending[0][0] < c1:
                t_us, _, item = heapq.heappop(pending)
                if any(a <= t_us / _US < b for a, b in offline):
                    continue
                dt = E + td(microseconds=t_us)
                if isinstance(item, str):
                    payload = LogPayload(dt, item)
                else:
                    payload = FirewallPayload(dt, *item)
                yield t_us, idx, Message(topic, enc(payload), dt)

    @staticmethod
    def _poisson_times(rng, rate_per_s: float, a_us: int, b_us: int) -> list[int]:
        if b_us <= a_us or rate_per_s <= 0:
            return []
        n = rng.poisson(rate_per_s * (b_us - a_us) / _US)
        t = np.sort(rng.integers(a_us // 1000, b_us // 1000, n)) * 1000  # millisecond resolution
        return t.tolist()

    def _windows(self, kind: str, c0: int, c1: int):
        for inc in self.incs:
            if inc.kind == kind:
                a, b = max(c0, int(inc.t0 * _US)), min(c1, int(inc.t1 * _US))
                if a < b:
                    yield inc, a, b

    # sshd: syslog lines as in loghub's OpenSSH sample, e.g.
    # "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for invalid user webmaster from
    #  173.234.31.186 port 38926 ssh2"
    _MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    _HUMANS = ("kimjh", "parksy", "leehs", "choimk", "jungyw")
    _SERVICES = ("ops", "deploy", "backup", "monitor")
    _GUESSES = ("root", "admin", "test", "user", "oracle", "ubuntu", "pi", "guest", "postgres", "git",
                "ftpuser", "support", "webmaster", "nagios", "hadoop", "mysql", "administrator",
                "ec2-user", "vagrant", "minecraft", "ops", "deploy", "test1", "info", "www")

    def _syslog(self, t_us: int, pid: int, msg: str) -> str:
        local = (_EPOCH + timedelta(microseconds=t_us)).astimezone(self.world.tz)
        return (f"{self._MONTHS[local.month - 1]} {local.day:2d} {local:%H:%M:%S} "
                f"{self.asset.id} sshd[{pid}]: {msg}")

    _B64 = list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")

    def _sshd_chunk(self, rng, inc_rng, c0: int, c1: int):
        st, out = self._state, []

        def add(t: int, pid: int, msg: str) -> None:
            out.append((t, self._syslog(t, pid, msg)))

        if not st:
            st["pid"] = int(rng.integers(2000, 30000))
            st["attack_pid"] = st["pid"] + 997
            st["hosts"] = {u: f"10.20.1.{int(rng.integers(10, 250))}" for u in self._HUMANS}
            st["hosts"].update({u: f"10.20.0.{int(rng.integers(2, 60))}" for u in self._SERVICES})
            st["key"] = {u: "".join(rng.choice(self._B64, 43)) for u in self._SERVICES}
        rate = _p(self.params, "logins_per_h", 20) / 3600
        fail = _p(self.params, "failure_rate", 0.05)
        times = self._poisson_times(rng, 1.7 * rate, c0, c1)  # thinned to office hours below
        ta = np.asarray(times, dtype=float) / _US
        hours = ((ta + self.world.utcoffset(ta)) % 86400 / 3600).tolist() if times else []
        for t, h in zip(times, hours):
            # people log in during office hours, service accounts around the clock
            if rng.random() >= (0.3 + 1.4 * float(_plateau(h, 8.5, 18.5))) / 1.7:
                continue
            st["pid"] += int(rng.integers(1, 40))
            pid, human = st["pid"], rng.random() < 0.7
            user = str(rng.choice(self._HUMANS if human else self._SERVICES))
            ip, port = st["hosts"][user], int(rng.integers(32768, 61000))
            if human and rng.random() < fail:  # a typo, then the right password
                add(t, pid, f"Failed password for {user} from {ip} port {port} ssh2")
                t += int(rng.integers(3, 20)) * _US
            if human:
                add(t, pid, f"Accepted password for {user} from {ip} port {port} ssh2")
            else:
                add(t, pid, f"Accepted publickey for {user} from {ip} port {port} ssh2: "
                            f"ED25519 SHA256:{st['key'][user]}")
            add(t + 20_000, pid, f"pam_unix(sshd:session): session opened for user {user} by (uid=0)")
            t_end = t + int(rng.lognormal(np.log(600), 1.0) * _US)  # sessions of ~10 minutes
            add(t_end, pid, f"Received disconnect from {ip} port {port}:11: disconnected by user")
            add(t_end + 3000, pid, f"pam_unix(sshd:session): session closed for user {user}")
        existing = {*self._HUMANS, *self._SERVICES, "root"}
        for inc, a, b in self._windows("ssh_brute_force", c0, c1):
            ip = inc.params["src_ip"]
            for t in self._poisson_times(inc_rng, inc.params["rate_per_min"] / 60, a, b):
                st["attack_pid"] += int(inc_rng.integers(1, 4))
                pid, port = st["attack_pid"], int(inc_rng.integers(32768, 61000))
                user = str(inc_rng.choice(self._GUESSES))
                if user in existing:
                    add(t, pid, f"Failed password for {user} from {ip} port {port} ssh2")
                else:
                    add(t, pid, f"Invalid user {user} from {ip}")
                    t += int(inc_rng.integers(100, 1500)) * 1000
                    add(t, pid, f"Failed password for invalid user {user} from {ip} port {port} ssh2")
        return out

    _ALLOW_PORTS = (1883, 8883, 443, 123, 53, 22)
    _ALLOW_W = (0.5, 0.2, 0.15, 0.05, 0.05, 0.05)
    _DENY_PORTS = (23, 22, 445, 3389, 80, 8080, 5900, 1433, 3306, 6379, 2323, 37215, 52869, 8443)

    def _firewall_chunk(self, rng, inc_rng, c0: int, c1: int):
        p = self.params
        times = self._poisson_times(rng, _p(p, "events_per_min", 10) / 60, c0, c1)
        n = len(times)
        out = []
        if n:
            deny = rng.random(n) < _p(p, "deny_rate", 0.1)
            inside = rng.integers(2, 80, n)
            outside = rng.integers(1, 255, (3, n))
            aport = rng.choice(self._ALLOW_PORTS, n, p=self._ALLOW_W)
            dport = rng.choice(self._DENY_PORTS, n)
            for i, t in enumerate(times):
                if deny[i]:
                    # internet noise from the RFC 2544 benchmark range 198.18.0.0/15
                    src = f"198.{18 + outside[0, i] % 2}.{outside[1, i]}.{outside[2, i]}"
                    out.append((t, ("deny", src, int(dport[i]), "tcp")))
                else:
                    src = f"10.20.{2 + inside[i] % 4}.{inside[i]}"  # the city's IoT devices
                    out.append((t, ("allow", src, int(aport[i]), "tcp")))
        for inc, a, b in self._windows("port_scan", c0, c1):
            st = self._state.setdefault(f"scan{inc.index}", {"ports": None, "i": 0})
            if st["ports"] is None:
                st["ports"] = inc_rng.permutation(np.arange(1, 65536)).tolist()
            ip = inc.params["src_ip"]
            for t in self._poisson_times(inc_rng, inc.params["rate_per_min"] / 60, a, b):
                port = st["ports"][st["i"] % 65535]
                st["i"] += 1
                out.append((t, ("allow" if port in (22, 443, 1883, 8883) else "deny", ip, port, "tcp")))
        return out


# --- planning -----------------------------------------------------------------------------------

def _micros(t: datetime) -> int:
    """Epoch microseconds of an aware datetime, exactly."""
    return (utc(t) - _EPOCH) // timedelta(microseconds=1)


def _plan(config, start: datetime) -> tuple[_World, list[_Inc], dict[str, list[_Inc]]]:
    paths = {f"{site.id}/{a.id}/{s.id}": s for site in config.sites for a in site.assets for s in a.sensors}
    start_us = _micros(start)
    incs, by_path = [], {}
    for i, inc in enumerate(config.simulation.incidents):
        where = f"simulation.incidents[{i}]"
        if inc.kind not in INCIDENT_KINDS:
            raise SimulationError(f"{where}.kind: unknown incident kind {inc.kind!r}; "
                                  f"known: {', '.join(INCIDENT_KINDS)}")
        unknown = set(inc.params) - set(INCIDENT_PARAMS[inc.kind])
        if unknown:
            raise SimulationError(f"{where}.params: unknown {sorted(unknown)} for {inc.kind}; "
                                  f"known: {sorted(INCIDENT_PARAMS[inc.kind]) or 'none'}")
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
                raise SimulationError(f"{where}: {inc.kind} needs a {need or 'reading'} sensor, "
                                      f"{target} is a {sensor.kind} sensor")
            by_path.setdefault(target, []).append(
                _Inc(i, inc.kind, item.t0, item.t1, dict(params)))  # own copy: stuck keeps state
        incs.append(item)
    return _World(config), incs, by_path


def sim_start(config, now: datetime) -> datetime:
    """Start of the simulated span: the latest local midnight with ``start + duration_h <= now``
    (in ``config.city.timezone``), returned in UTC."""
    latest = utc(now) - timedelta(hours=config.simulation.duration_h)
    tz = ZoneInfo(config.city.timezone)
    day = latest.astimezone(tz).date()
    while True:
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(timezone.utc)
        if midnight <= latest:
            return midnight
        day -= timedelta(days=1)


def generate(config, start: datetime, *, duration_h: float | None = None) -> Iterator[Message]:
    """Every sensor's messages over ``[start, start + duration_h)``, in time order (streaming)."""
    world, _, by_path = _plan(config, start)
    start_us = _micros(start)
    span_h = config.simulation.duration_h if duration_h is None else duration_h
    end_us = start_us + int(round(span_h * 3600 * _US))
    sims = []
    for site in config.sites:
        for asset in site.assets:
            for sensor in asset.sensors:
                path = f"{site.id}/{asset.id}/{sensor.id}"
                sims.append(_SensorSim(world, site, asset, sensor, len(sims), by_path.get(path, []),
                                       start_us, end_us))
    for _, _, msg in heapq.merge(*(s.messages() for s in sims)):
        yield msg


def _iso(t: datetime | float) -> str:
    if not isinstance(t, datetime):
        t = datetime.fromtimestamp(t, timezone.utc)
    return _ENC.encode(utc(t)).decode()[1:-1]


def incident_labels(config, start: datetime) -> list[dict]:
    """One label per configured incident (the ground truth for scoring the detectors)."""
    _, incs, _ = _plan(config, start)
    domains = {site.id: site.domain for site in config.sites}
    labels = []
    for inc, spec in zip(incs, config.simulation.incidents):
        site, asset, _ = spec.targets[0].split("/")
        extra = f" ({', '.join(f'{k}={v}' for k, v in spec.params.items())})" if spec.params else ""
        labels.append({
            "id": f"inc-{inc.index + 1:02d}", "kind": inc.kind, "domain": domains[site],
            "site": site, "asset": asset, "sensors": [t.split("/")[2] for t in spec.targets],
            "targets": list(spec.targets), "start": _iso(inc.t0), "end": _iso(inc.t1),
            "description": f"{INCIDENT_KINDS[inc.kind]}{extra} on {', '.join(spec.targets)}",
        })
    return labels


def write_labels(path, labels: Iterable[dict]) -> None:
    """Write the labels as JSON Lines (creates parent directories)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for label in labels:
            f.write(_ENC.encode(label) + b"\n")


def write_replay(path, messages: Iterable[Message]) -> int:
    """Write ``{"topic": ..., "payload": {...}}`` JSON Lines; return the number of messages."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "wb") as f:
        for m in messages:
            f.write(b'{"topic":' + _ENC.encode(m.topic) + b',"payload":' + m.payload + b"}\n")
            n += 1
    return n


class _ReplayLine(msgspec.Struct):
    topic: str
    payload: msgspec.Raw


class _TimeOnly(msgspec.Struct):
    time: datetime


def read_replay(path) -> Iterator[Message]:
    """Read back a file written by ``write_replay`` (payload bytes as they were generated)."""
    line_dec, time_dec = msgspec.json.Decoder(_ReplayLine), msgspec.json.Decoder(_TimeOnly)
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                r = line_dec.decode(line)
                payload = bytes(r.payload)
                yield Message(r.topic, payload, utc(time_dec.decode(payload).time))


# --- MQTT publishing ----------------------------------------------------------------------------

@dataclass
class SimStats:
    """Progress of a publishing run (passed to ``progress`` and returned at the end)."""
    messages: int = 0  # published (all acknowledged when publish_mqtt returns)
    per_domain: dict[str, int] = field(default_factory=dict)
    first_time: datetime | None = None  # sim time of the first / last message
    last_time: datetime | None = None
    wall_s: float = 0.0
    acked: int = 0

    @property
    def rate(self) -> float:
        return self.messages / self.wall_s if self.wall_s > 0 else 0.0


def publish_mqtt(messages: Iterable[Message], *, mqtt: MqttService, speed: float,
                 client_id: str = "twinwatch-sim",
                 progress: Callable[[SimStats], None] | None = None,
                 max_inflight: int = 1000, timeout: float = 30.0) -> SimStats:
    """Publish ``messages`` so that sim time advances ``speed`` sim-seconds per wall second
    (``speed`` 0 or inf: as fast as the broker acknowledges) and return when every QoS 1 message
    is acknowledged, so nothing is lost once it returns.

    Host, port, QoS, credentials and TLS come from the config's ``services.mqtt`` (the same
    client factory as the flow's source). ``progress(stats)`` is called about once a
    second and at the end. Raises ConnectionError if the broker is unreachable or refuses the
    connection, TimeoutError if it stops acknowledging for ``timeout`` seconds.

    The paho network loop runs in this thread (``client.loop``), not in paho's background
    thread: one thread and no locks is ~4x faster (~15-20k messages/s against a local Mosquitto).
    A lost connection is re-established and paho re-sends the unacknowledged messages.
    """
    import paho.mqtt.client as paho

    host, port, qos = mqtt.host, mqtt.port, mqtt.qos
    client = make_client(mqtt, client_id, clean_session=True)
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)

    st = {"acked": 0, "connected": False, "refused": None, "last_ack": _time.monotonic()}

    def on_connect(_c, _u, _flags, reason, _props):
        if reason.is_failure:
            st["refused"] = str(reason)
        else:
            st["connected"] = True

    def on_disconnect(_c, _u, _flags, _reason, _props):
        st["connected"] = False

    def on_publish(_c, _u, _mid, _reason, _props):
        st["acked"] += 1
        st["last_ack"] = _time.monotonic()

    client.on_connect, client.on_disconnect, client.on_publish = on_connect, on_disconnect, on_publish
    where = f"MQTT broker {host}:{port}"
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ValueError) as e:
        raise ConnectionError(f"{where} is unreachable: {e}") from None

    def pump(wait: float) -> None:
        """Run the network loop once; reconnect if the connection was lost."""
        if client.loop(wait) == paho.MQTT_ERR_SUCCESS:
            return
        _time.sleep(min(wait, 0.5) or 0.05)
        try:
            client.reconnect()
        except OSError:
            pass  # keep trying until the stall timeout
        if _time.monotonic() - st["last_ack"] > timeout:
            raise TimeoutError(f"{where}: connection lost, not back for {timeout}s")

    stats = SimStats()
    paced = bool(speed) and math.isfinite(speed) and speed > 0
    try:
        deadline = _time.monotonic() + timeout
        while not (st["connected"] or st["refused"]):
            if _time.monotonic() > deadline:
                raise ConnectionError(f"{where}: no CONNACK within {timeout}s")
            client.loop(0.1)
        if st["refused"]:
            raise ConnectionError(f"{where} refused the connection: {st['refused']}")
        wall0 = _time.monotonic()
        next_progress, sim0, sent, since_loop = wall0 + 1.0, None, 0, 0
        per_domain = stats.per_domain
        for m in messages:
            if sim0 is None:
                sim0, stats.first_time = m.time, m.time
            if paced:
                target = wall0 + (m.time - sim0).total_seconds() / speed
                while (now := _time.monotonic()) < target:
                    pump(min(target - now, 0.1))
                    since_loop = 0
                    if progress and _time.monotonic() >= next_progress:
                        next_progress = _report(stats, st, wall0, progress)
            if qos > 0 and sent - st["acked"] >= max_inflight:  # backpressure
                waiting = _time.monotonic()
                while sent - st["acked"] >= max_inflight:
                    pump(0.05)
                    if _time.monotonic() - max(st["last_ack"], waiting) > timeout:
                        raise TimeoutError(f"{where} stopped acknowledging ({sent - st['acked']} "
                                           f"messages unacknowledged for {timeout}s)")
                    if progress and _time.monotonic() >= next_progress:
                        next_progress = _report(stats, st, wall0, progress)
                since_loop = 0
            info = client.publish(m.topic, m.payload, qos=qos)
            if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):  # NO_CONN: queued
                raise ConnectionError(f"{where}: publish failed: {paho.error_string(info.rc)}")
            sent += 1 if qos > 0 else 0
            stats.messages += 1
            domain = m.topic.split("/", 2)[1]
            per_domain[domain] = per_domain.get(domain, 0) + 1
            stats.last_time = m.time
            since_loop += 1
            if since_loop >= 100:  # read acknowledgements, keep the connection alive
                pump(0)
                since_loop = 0
                if progress and _time.monotonic() >= next_progress:
                    next_progress = _report(stats, st, wall0, progress)
        st["last_ack"] = _time.monotonic()
        while st["acked"] < sent:  # wait for every acknowledgement, as long as they keep coming
            pump(0.05)
            if _time.monotonic() - st["last_ack"] > timeout:
                raise TimeoutError(f"{where}: {sent - st['acked']} messages not acknowledged "
                                   f"after {timeout}s")
        stats.acked = st["acked"] if qos > 0 else stats.messages
        stats.wall_s = _time.monotonic() - wall0
        if progress:
            progress(stats)
        return stats
    finally:
        try:
            client.disconnect()  # sends DISCONNECT and closes the socket
        except OSError:
            pass


def utcnow() -> datetime:
    """The wall clock, for callers that place the simulated span (never used by generators)."""
    return datetime.now(timezone.utc)


def print_progress(stats: SimStats) -> None:
    """One self-overwriting status line: messages, simulated time reached, rate."""
    reached = stats.last_time.strftime("%Y-%m-%d %H:%M") if stats.last_time else "-"
    print(f"\r  published {stats.messages:>9,}  simulated time {reached} UTC  "
          f"{stats.rate:>7,.0f} msg/s", end="", flush=True)


def _report(stats: SimStats, st: dict, wall0: float, progress) -> float:
    now = _time.monotonic()
    stats.wall_s, stats.acked = now - wall0, st["acked"]
    progress(stats)
    return now + 1.0
