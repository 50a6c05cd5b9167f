"""The signal models: one sensor's readings for one chunk of sample times.

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
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from twinwatch.app.simulator.common import _US, _p
from twinwatch.app.simulator.weather import _bump, _clear_sky, _plateau, _sin_sun_elevation

if TYPE_CHECKING:
    from twinwatch.app.simulator.sensors import _SensorSim


class _Chunk:
    """Times of one chunk of one sensor, with lazily computed shared features."""

    def __init__(self, sensor: _SensorSim, t_us: np.ndarray):
        self.s = sensor
        self.n = len(t_us)
        self.t = t_us / _US
        off = sensor.world.utcoffset(self.t)
        local = self.t + off
        self.hour = (local % 86400) / 3600
        day = np.floor(local / 86400)
        self.weekend = ((day + 3) % 7) >= 5  # 1970-01-01 was a Thursday
        if len(sensor.world.holidays):  # the city calendar: public holidays follow the weekend
            self.weekend |= np.isin(day, sensor.world.holidays)
        for inc in sensor.incs:  # an (uncalendared) holiday on these sensors only
            if inc.kind == "holiday":
                self.weekend |= (self.t >= inc.t0) & (self.t < inc.t1)

    @cached_property
    def ambient(self):
        return self.s.world.weather.ambient(self.t, self.hour)

    @cached_property
    def traffic(self):
        """Road traffic in [0, 1]: rush hours on weekdays, a broad afternoon hump at weekends."""
        h = self.hour
        wk = (
            0.05
            + 0.85 * _bump(h, 8.0, 1.0)
            + 0.75 * _bump(h, 18.5, 1.3)
            + 0.35 * _plateau(h, 7, 21)
        )
        we = 0.05 + 0.5 * _bump(h, 14.0, 3.5) + 0.15 * _plateau(h, 9, 22)
        return np.minimum(np.where(self.weekend, we, wk), 1.0)

    @cached_property
    def demand(self):
        """Water demand relative to the daily mean, ~0.55 (night) .. ~1.45 (morning peak)."""
        h = self.hour
        wk = (
            0.55 + 0.85 * _bump(h, 7.5, 1.2) + 0.6 * _bump(h, 20.0, 1.8) + 0.35 * _plateau(h, 9, 18)
        )
        we = (
            0.55 + 0.6 * _bump(h, 9.5, 1.8) + 0.55 * _bump(h, 19.5, 2.0) + 0.3 * _plateau(h, 11, 17)
        )
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
        return (
            self.s.rng.standard_normal((k, self.n)) if k > 1 else self.s.rng.standard_normal(self.n)
        )


def _m_temperature(c: _Chunk, p):
    return c.ambient + _p(p, "offset", 0) + _p(p, "noise", 0.1) * c.normal()


def _m_strain(c: _Chunk, p):
    z = c.normal(2)
    traffic = _p(p, "traffic", 0) * c.traffic * (1 + 0.25 * z[0])
    return (
        _p(p, "base")
        + _p(p, "temp_coeff", 0) * (c.ambient - 15)
        + traffic
        + _p(p, "noise", 1) * z[1]
    )


def _m_accel_rms(c: _Chunk, p):
    z = c.normal(2)
    return (
        _p(p, "base")
        + _p(p, "traffic", 0) * c.traffic * (1 + 0.2 * z[0])
        + _p(p, "noise", 0.1) * z[1]
    )


def _m_tilt(c: _Chunk, p):
    noise = _p(p, "noise", 0.01)
    return (
        _p(p, "base", 0)
        + _p(p, "temp_coeff", 0) * (c.ambient - 15)
        + 2 * noise * c.drift
        + noise * c.normal()
    )


def _m_crack(c: _Chunk, p):
    return (
        _p(p, "base")
        + _p(p, "temp_coeff", 0) * (c.ambient - 15)
        + _p(p, "noise", 0.002) * c.normal()
    )


def _m_turbidity(c: _Chunk, p):
    base = _p(p, "base")
    sigma = _p(p, "noise", 0.1 * base) / base
    return base * (1 + 0.15 * (c.demand - 1)) * np.exp(sigma * c.normal() + 0.5 * sigma * c.drift)


def _m_chlorine(c: _Chunk, p):
    v = (
        _p(p, "base")
        - _p(p, "demand_coeff", 0) * c.demand
        + 0.01 * c.drift
        + _p(p, "noise", 0.01) * c.normal()
    )
    return np.maximum(v, 0.0)


def _m_ph(c: _Chunk, p):
    return (
        _p(p, "base")
        + 0.05 * c.drift
        + 0.03 * np.sin(2 * np.pi * (c.hour - 9) / 24)
        + _p(p, "noise", 0.02) * c.normal()
    )


def _m_conductivity(c: _Chunk, p):
    base = _p(p, "base")
    return base * (1 + 0.03 * c.drift) + _p(p, "noise", 0.01 * base) * c.normal()


def _m_pressure(c: _Chunk, p):
    return (
        _p(p, "base")
        - _p(p, "demand_coeff", 0) * c.demand**2
        + 1.5 * c.drift
        + _p(p, "noise", 1) * c.normal()
    )


def _m_flow(c: _Chunk, p):
    base = _p(p, "base")
    shape = (c.demand - 1) / 0.45  # ~[-1, 1]
    v = (
        base * (1 + _p(p, "daily", 0.4) * shape) * (1 + 0.03 * c.drift)
        + _p(p, "noise", 0.01 * base) * c.normal()
    )
    return np.maximum(v, 0.0)


def _m_level(c: _Chunk, p):
    return (
        _p(p, "base")
        + _p(p, "daily", 0.5) * np.cos(2 * np.pi * (c.hour - 6) / 24)
        + 0.05 * c.drift
        + _p(p, "noise", 0.01) * c.normal()
    )


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
    slope: np.ndarray | float = 1.5  # on/off over ~1.5 h; a sharp_schedule switches in minutes
    for inc in c.s.incs:
        if inc.kind == "sharp_schedule":
            slope = np.where((c.t >= inc.t0) & (c.t < inc.t1), inc.params["slope_per_h"], slope)
    occupancy = _plateau(c.hour, 8, 19, slope) * np.where(c.weekend, _p(p, "weekend", 0.4), 1.0)
    hvac = 0.008 * base * np.abs(c.ambient - 18)
    return (
        base * (1 - daily + 2 * daily * occupancy) * (1 + 0.02 * c.drift)
        + hvac
        + _p(p, "noise", 0.01 * base) * c.normal()
    )


def _m_bearing_temp(c: _Chunk, p):
    return (
        _p(p, "base")
        + 0.5 * (c.ambient - 15)
        + _p(p, "load_coeff", 10) * (c.wind - 0.5)
        + _p(p, "noise", 0.2) * c.normal()
    )


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
    "temperature": _m_temperature,
    "strain": _m_strain,
    "accel_rms": _m_accel_rms,
    "tilt": _m_tilt,
    "crack": _m_crack,
    "turbidity": _m_turbidity,
    "chlorine": _m_chlorine,
    "ph": _m_ph,
    "conductivity": _m_conductivity,
    "pressure": _m_pressure,
    "flow": _m_flow,
    "level": _m_level,
    "irradiance": _m_irradiance,
    "pv_power": _m_pv_power,
    "load": _m_load,
    "bearing_temp": _m_bearing_temp,
    "vibration": _m_vibration,
    "ev_power": _m_ev_power,
    "constant": _m_constant,
}
# model -> its `sim` parameters (besides `model`; every reading model also takes noise, decimals)
MODELS: dict[str, tuple[str, ...]] = {
    "temperature": ("offset",),
    "strain": ("base", "temp_coeff", "traffic"),
    "accel_rms": ("base", "traffic"),
    "tilt": ("base", "temp_coeff"),
    "crack": ("base", "temp_coeff"),
    "turbidity": ("base",),
    "chlorine": ("base", "demand_coeff"),
    "ph": ("base",),
    "conductivity": ("base",),
    "pressure": ("base", "demand_coeff"),
    "flow": ("base", "daily"),
    "level": ("base", "daily"),
    "irradiance": ("peak",),
    "pv_power": ("capacity", "efficiency"),
    "load": ("base", "daily", "weekend"),
    "bearing_temp": ("base", "load_coeff"),
    "vibration": ("base",),
    "ev_power": ("rated", "sessions_per_h"),
    "constant": ("base",),
    "sshd": ("logins_per_h", "failure_rate"),
    "firewall": ("events_per_min", "deny_rate"),
}
_EVENT_MODELS = {"log": "sshd", "firewall": "firewall"}  # sensor kind -> its (only) model
