"""One sensor's message stream: the world it shares with the others (config, time zone, weather),
its validated ``sim`` parameters, and its readings chunk by chunk (events: see ``events``)."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from twinwatch.app.simulator.common import (
    _CHUNK_S,
    _ENC,
    _EPOCH,
    _US,
    Message,
    SimulationError,
    _p,
    _rng,
)
from twinwatch.app.simulator.events import _EventSource
from twinwatch.app.simulator.incidents import _apply_incidents, _Inc
from twinwatch.app.simulator.signals import _EVENT_MODELS, _READING_MODELS, MODELS, _Chunk
from twinwatch.app.simulator.weather import _plateau, _Smooth, _Weather
from twinwatch.schema import AnnotationPayload, SensorPayload


def _offset_s(hour: int, tz: ZoneInfo) -> float:
    """UTC offset in seconds of ``tz`` at epoch hour ``hour``."""
    offset = datetime.fromtimestamp(hour * 3600, UTC).astimezone(tz).utcoffset()
    assert offset is not None  # an aware datetime always has one
    return offset.total_seconds()


class _World:
    def __init__(self, config):
        self.config = config
        self.seed = int(config.simulation.seed)
        self.tz = ZoneInfo(config.city.timezone)
        self.weather = _Weather(self.seed)
        self._offsets: dict[int, float] = {}
        # the city's public holidays as local day numbers (days since 1970-01-01)
        epoch = datetime(1970, 1, 1).date().toordinal()
        self.holidays = np.array(
            [
                datetime.strptime(d, "%Y-%m-%d").date().toordinal() - epoch
                for d in config.city.holidays
            ],
            dtype=float,
        )

    def utcoffset(self, t: np.ndarray) -> np.ndarray | float:
        """Local UTC offset in seconds (per hour, so DST changes land on the hour)."""
        hours = np.floor(t / 3600).astype(np.int64)
        lo, hi = int(hours[0]), int(hours[-1])
        for h in (lo, hi):
            if h not in self._offsets:
                self._offsets[h] = _offset_s(h, self.tz)
        if self._offsets[lo] == self._offsets[hi]:
            return self._offsets[lo]
        return np.array([_offset_s(h, self.tz) for h in hours.tolist()])


class _SensorSim(_EventSource):
    def __init__(
        self,
        world: _World,
        site,
        asset,
        sensor,
        index: int,
        incs: list[_Inc],
        start_us: int,
        end_us: int,
    ):
        self.world, self.site, self.asset, self.sensor, self.index = (
            world,
            site,
            asset,
            sensor,
            index,
        )
        self.path = f"{site.id}/{asset.id}/{sensor.id}"
        prefix = world.config.services.mqtt.topic_prefix
        self.topic = f"{prefix}/{site.domain}/{self.path}"
        sim = dict(sensor.sim)
        self.model = sim.pop("model", _EVENT_MODELS.get(sensor.kind, "constant"))
        where = f"sites.{site.id}.{asset.id}.{sensor.id}.sim"
        if self.model not in MODELS:
            raise SimulationError(
                f"{where}: unknown model {self.model!r}; known: {', '.join(sorted(MODELS))}"
            )
        if _EVENT_MODELS.get(sensor.kind, "reading") != (
            self.model if self.model in _EVENT_MODELS.values() else "reading"
        ):
            raise SimulationError(
                f"{where}: model {self.model!r} does not fit a {sensor.kind} sensor"
            )
        unknown = set(sim) - set(MODELS[self.model]) - {"noise", "decimals"}
        if unknown:
            raise SimulationError(
                f"{where}: unknown parameters {sorted(unknown)} for model "
                f"{self.model}; known: {', '.join(MODELS[self.model])}, noise, decimals"
            )
        if self.model == "constant" and "base" not in sim:  # the middle of the normal range
            lo, hi = (sensor.limits.low, sensor.limits.high) if sensor.limits else (None, None)
            if lo is not None and hi is not None:
                sim["base"], scale = (lo + hi) / 2, hi - lo
            elif lo is not None or hi is not None:
                limit = lo if lo is not None else hi
                assert limit is not None
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
        t, end = self.start_us / _US, self.end_us / _US
        out: list[tuple[float, float, float]] = []
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
        phase_rng = _rng(
            self.world.seed, f"{self.site.id}/{self.asset.id}", "phase", str(interval_us)
        )
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

    def annotations(self) -> list[tuple[int, int, Message]]:
        """The maintenance annotations of this sensor's annotated replacements: published when
        the work starts, until the new sensor reports (plus a few readings to settle)."""
        out = []
        for inc in self.incs:
            if inc.kind == "sensor_replacement" and inc.params["annotated"]:
                until = inc.t0 + 60 * inc.params["offline_min"] + 3 * self.sensor.interval_s
                t_us = int(round(inc.t0 * _US))
                dt, end = _EPOCH + timedelta(microseconds=t_us), _EPOCH + timedelta(seconds=until)
                text = f"{self.sensor.id} replaced and re-zeroed (work order {inc.index + 1})"
                payload = _ENC.encode(AnnotationPayload(dt, end, "maintenance", text))
                out.append((t_us, self.index, Message(self.topic + "/annotation", payload, dt)))
        return out

    def messages(self) -> Iterator[tuple[int, int, Message]]:
        if self.model == "sshd":
            return self._events(self._sshd_chunk)
        if self.model == "firewall":
            return self._events(self._firewall_chunk)
        notes = self.annotations()
        return heapq.merge(self.readings(), notes) if notes else self.readings()
