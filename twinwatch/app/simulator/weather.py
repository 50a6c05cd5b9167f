"""City weather and the sun, as pure functions of time: smooth seeded random processes, daily
curves (bumps and plateaus in local hours), ambient temperature, clouds, wind, clear-sky
irradiance."""

from __future__ import annotations

import math

import numpy as np

from twinwatch.app.simulator.common import _rng


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
        daily = np.where(
            rising, -np.cos(np.pi * (hour - 5) / 10), np.cos(np.pi * ((hour - 15) % 24) / 14)
        )
        return mean + 5.0 * daily + 2.0 * self.drift(t)

    def _site(self, site: str) -> tuple[_Smooth, _Smooth, _Smooth]:
        if site not in self._sites:
            self._sites[site] = (
                _Smooth(_rng(self.seed, "weather", "clouds", site), 8, 1.5, 72),
                _Smooth(_rng(self.seed, "weather", "cloudlets", site), 6, 0.3, 1.5),
                _Smooth(_rng(self.seed, "weather", "wind", site), 8, 0.5, 48),
            )
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
    lam = (
        np.radians((280.460 + 0.9856474 * n) % 360)
        + np.radians(1.915) * np.sin(g)
        + np.radians(0.020) * np.sin(2 * g)
    )
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
