"""Tests of the built-in city simulator (twinwatch.app.simulator)."""

from __future__ import annotations

import collections
import hashlib
import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from itertools import islice

import msgspec
import numpy as np
import pytest
import yaml

from twinwatch.app import simulator as sim
from twinwatch.config import EXAMPLE_CONFIG, Config, MqttService, load_config
from twinwatch.schema import FirewallPayload, LogPayload, SensorPayload

UTC = UTC
NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # 12:00 KST, Tuesday 24 November 2026
START = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)  # 00:00 KST, Monday 23 November
DECODERS = {
    "reading": msgspec.json.Decoder(SensorPayload),
    "log": msgspec.json.Decoder(LogPayload),
    "firewall": msgspec.json.Decoder(FirewallPayload),
}
# how long an incident's effect outlasts its labelled window
# (damage stays; chlorine and bearing recover)
TAIL_H = {
    "crack_growth": 1e9,
    "stiffness_loss": 1e9,
    "chlorine_dosing_failure": 1.0,
    "bearing_overheating": 2.5,
}


def raw_config() -> dict:
    return yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))


def make_config(raw: dict | None = None, *, security: bool = True, **simulation) -> Config:
    """The example config, optionally changed. Built with msgspec only: the simulator needs no
    detector registry (Config.validate checks the detectors, not the simulation)."""
    raw = raw or raw_config()
    raw["simulation"].update(simulation)
    if not security:
        raw["sites"] = [s for s in raw["sites"] if s["domain"] != "security"]
        raw["simulation"]["incidents"] = [
            i
            for i in raw["simulation"]["incidents"]
            if not i["targets"][0].startswith("sejong-soc/")
        ]
    return msgspec.convert(raw, Config, strict=False)


def topics(config: Config) -> dict[str, tuple]:
    prefix = config.services.mqtt.topic_prefix
    return {
        f"{prefix}/{r.domain}/{r.site}/{r.asset}/{r.sensor.id}": r for r in config.catalog.values()
    }


class Run:
    """A generated run, decoded per topic: times (epoch s) and values or decoded events."""

    def __init__(self, config: Config, start: datetime = START):
        self.config, self.start = config, start
        self.by_topic = topics(config)
        self.messages: dict[str, list[sim.Message]] = collections.defaultdict(list)
        t0 = time.perf_counter()
        self.count = 0
        for m in sim.generate(config, start):
            self.messages[m.topic].append(m)
            self.count += 1
        self.seconds = time.perf_counter() - t0

    def decoded(self, topic: str) -> list:
        dec = DECODERS[self.by_topic[topic].sensor.kind]
        return [dec.decode(m.payload) for m in self.messages[topic]]

    def series(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        topic = self.topic(path)
        ps = self.decoded(topic)
        return np.array([p.time.timestamp() for p in ps]), np.array([p.value for p in ps])

    def topic(self, path: str) -> str:
        return next(t for t in self.by_topic if t.endswith("/" + path))

    def hours(self, h: float) -> float:
        return self.start.timestamp() + 3600 * h


@pytest.fixture(scope="module")
def example() -> Config:
    return make_config()


@pytest.fixture(scope="module")
def run(example) -> Run:
    return Run(example)


@pytest.fixture(scope="module")
def baseline() -> Run:
    """The same city and seed without incidents."""
    return Run(make_config(incidents=[]))


def incident(config: Config, kind: str):
    return next(i for i in config.simulation.incidents if i.kind == kind)


def window(run: Run, kind: str) -> tuple[float, float, list[str]]:
    inc = incident(run.config, kind)
    return run.hours(inc.at_h), run.hours(inc.at_h + inc.duration_h), inc.targets


# --- stream properties ------------------------------------------------------------------------


def test_speed_and_volume(run):
    per_domain = collections.Counter(t.split("/")[1] for t, ms in run.messages.items() for _ in ms)
    print(
        f"\n24 h example city: {run.count} messages {dict(per_domain)}, "
        f"{run.count / run.seconds:,.0f} messages/s"
    )
    assert 150_000 < run.count < 200_000
    assert run.count / run.seconds > 20_000  # needs > 5,000/s; ~100,000/s on a laptop


def test_time_order_and_span(example):
    prev = None
    last_per_topic: dict[str, datetime] = {}
    n = 0
    for m in sim.generate(example, START, duration_h=3):
        assert m.time.tzinfo is not None and m.time.utcoffset() == timedelta(0)
        assert START <= m.time < START + timedelta(hours=3)
        assert prev is None or m.time >= prev
        assert m.time >= last_per_topic.get(m.topic, m.time)
        prev = last_per_topic[m.topic] = m.time
        n += 1
    assert n > 10_000


def test_topics_and_payloads_match_the_catalog(run):
    assert set(run.messages) == set(run.by_topic)  # every sensor publishes, nothing else does
    for topic, ref in run.by_topic.items():
        assert topic == f"city/{ref.domain}/{ref.site}/{ref.asset}/{ref.sensor.id}"
        for m, p in zip(run.messages[topic], run.decoded(topic)):
            assert p.time == m.time
            if ref.sensor.kind == "reading":
                assert p.unit == ref.sensor.unit and np.isfinite(p.value)
            elif ref.sensor.kind == "log":
                assert re.match(
                    r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d gw-1 sshd\[\d+\]: \S", p.line
                ), p.line
            else:
                assert (
                    p.action in ("allow", "deny") and p.protocol == "tcp" and 0 < p.dst_port < 65536
                )
    payload = json.loads(run.messages[run.topic("sejong-wtp/clearwell/chlorine")][0].payload)
    assert set(payload) == {"time", "value", "unit"} and payload["time"].endswith("Z")


def test_readings_follow_the_interval(run):
    for topic, ref in run.by_topic.items():
        if ref.sensor.kind != "reading":
            continue
        t = np.array([m.time.timestamp() for m in run.messages[topic]])
        steps = np.diff(t) / ref.sensor.interval_s
        assert np.allclose(steps, np.round(steps)) and steps.min() >= 1, topic


def digest(messages) -> str:
    h = hashlib.sha256()
    for m in messages:
        h.update(m.topic.encode() + b"\0" + m.payload + b"\0" + m.time.isoformat().encode())
    return h.hexdigest()


def test_deterministic_per_seed(example):
    a = digest(sim.generate(example, START, duration_h=2))
    assert a == digest(sim.generate(example, START, duration_h=2))
    other = make_config(seed=43)
    assert a != digest(sim.generate(other, START, duration_h=2))


def test_adding_a_sensor_changes_no_other_sensor():
    raw = raw_config()
    raw["sites"][0]["assets"][0]["sensors"].insert(
        0,
        {
            "id": "temp-2",
            "quantity": "temperature",
            "unit": "degC",
            "interval_s": 10,
            "sim": {"model": "temperature", "offset": 0.5},
        },
    )
    more = make_config(raw)
    a = [m for m in sim.generate(make_config(), START, duration_h=2)]
    b = [m for m in sim.generate(more, START, duration_h=2) if not m.topic.endswith("/temp-2")]
    assert a == b


def test_incidents_change_only_their_targets(run, baseline):
    """Outside each incident's window (plus recovery), every message is the same as without it."""
    spans = collections.defaultdict(list)
    for inc in run.config.simulation.incidents:
        for target in inc.targets:
            spans[target].append(
                (
                    run.hours(inc.at_h),
                    run.hours(inc.at_h + inc.duration_h + TAIL_H.get(inc.kind, 0)),
                )
            )
    for topic in run.by_topic:
        path = topic.split("/", 2)[2]

        def outside(ms, path=path):  # bound now, not at call time
            return [
                m
                for m in ms
                if not any(a <= m.time.timestamp() < b for a, b in spans.get(path, ()))
            ]

        got, want = outside(run.messages[topic]), outside(baseline.messages[topic])
        assert got == want, topic
        if path in spans:
            assert run.messages[topic] != baseline.messages[topic], (
                f"{path}: incident had no effect"
            )


def limit_breaches(run: Run, skip: dict[str, list] | None = None) -> list[str]:
    bad = []
    for topic, ref in run.by_topic.items():
        lim = ref.sensor.limits
        if ref.sensor.kind != "reading" or lim is None:
            continue
        path = topic.split("/", 2)[2]
        for p in run.decoded(topic):
            t = p.time.timestamp()
            if any(a <= t < b for a, b in (skip or {}).get(path, [])):
                continue
            if (lim.low is not None and p.value < lim.low) or (
                lim.high is not None and p.value > lim.high
            ):
                bad.append(f"{path} {p.time} {p.value}")
    return bad


def test_normal_values_stay_within_limits(run):
    skip = collections.defaultdict(list)
    for inc in run.config.simulation.incidents:
        for target in inc.targets:
            skip[target].append(
                (
                    run.hours(inc.at_h),
                    run.hours(inc.at_h + inc.duration_h + TAIL_H.get(inc.kind, 0)),
                )
            )
    assert limit_breaches(run, skip) == []


@pytest.mark.parametrize(
    "start",
    [
        datetime(2026, 1, 24, 15, 0, tzinfo=UTC),  # Sunday in January
        datetime(2026, 8, 6, 15, 0, tzinfo=UTC),
    ],
)  # Friday in August
def test_normal_values_stay_within_limits_all_year(start):
    assert limit_breaches(Run(make_config(incidents=[], security=False), start)) == []


def test_missing_samples_at_missing_rate():
    config = make_config(incidents=[], security=False, missing_rate=0.05, duration_h=6)
    received = missing = 0
    by_topic = topics(config)
    times = collections.defaultdict(list)
    for m in sim.generate(config, START):
        times[m.topic].append(m.time.timestamp())
    for topic, ts in times.items():
        steps = np.round(np.diff(ts) / by_topic[topic].sensor.interval_s)
        received += len(ts)
        missing += int(np.sum(steps - 1))
    assert 0.04 < missing / (missing + received) < 0.06


def test_no_missing_samples_at_rate_zero():
    config = make_config(incidents=[], security=False, missing_rate=0.0, duration_h=2)
    by_topic = topics(config)
    counts = collections.Counter(m.topic for m in sim.generate(config, START))
    for topic, ref in by_topic.items():
        assert abs(counts[topic] - 7200 / ref.sensor.interval_s) <= 1, topic


# --- physics ----------------------------------------------------------------------------------


def local_hour(t: np.ndarray) -> np.ndarray:
    return ((t + 9 * 3600) % 86400) / 3600  # KST, no DST


def test_daily_cycles(baseline):
    t, temp = baseline.series("sejong-bridge/span-2/temp")
    hourly = [temp[local_hour(t).astype(int) == h].mean() for h in range(24)]
    assert 2 <= int(np.argmin(hourly)) <= 8 and 12 <= int(np.argmax(hourly)) <= 17
    t, flow = baseline.series("sejong-dma-1/inlet/flow")
    h = local_hour(t)
    assert flow[(h >= 7) & (h < 9)].mean() > 1.5 * flow[(h >= 2) & (h < 4)].mean()
    t, accel = baseline.series("sejong-bridge/span-2/accel-rms")  # morning rush hour
    h = local_hour(t)
    assert accel[(h >= 7.5) & (h < 8.5)].mean() > accel[(h >= 2) & (h < 4)].mean() + 2
    t, irr = baseline.series("sejong-pv/inverter-1/irradiance")
    h = local_hour(t)
    assert irr[(h < 6) | (h > 18.5)].max() < 5 and irr[(h > 11) & (h < 13)].mean() > 150


def test_pv_power_matches_its_pyranometer(baseline):
    t1, irr = baseline.series("sejong-pv/inverter-1/irradiance")
    t2, pv = baseline.series("sejong-pv/inverter-1/power")
    _, i1, i2 = np.intersect1d(t1, t2, return_indices=True)
    irr, pv = irr[i1], pv[i2]
    day = irr > 200
    assert day.sum() > 60
    ratio = pv[day] / (100 * irr[day] / 1000 * 0.95)
    assert 0.97 < np.median(ratio) < 1.03 and np.quantile(np.abs(ratio - 1), 0.95) < 0.12


# --- incidents --------------------------------------------------------------------------------


def during(t, a, b):
    return (t >= a) & (t < b)


def test_crack_growth(run):
    a, b, (target,) = window(run, "crack_growth")
    t, v = run.series(target)
    assert v[t < a].max() < 0.4 < v[t >= b].min()  # crosses the 0.4 mm limit and stays open


def test_crack_growth_magnitude(run, baseline):
    a, b, (target,) = window(run, "crack_growth")
    t, v = run.series(target)
    bt, bv = baseline.series(target)
    common, i, j = np.intersect1d(t, bt, return_indices=True)
    added = v[i] - bv[j]
    assert abs(added[common >= b].mean() - 0.3) < 0.005
    assert np.all(np.diff(added[during(common, a, b)]) > -0.01)  # grows, within rounding


def test_stiffness_loss(run, baseline):
    a, b, (target,) = window(run, "stiffness_loss")
    t, v = run.series(target)
    bt, bv = baseline.series(target)
    common, i, j = np.intersect1d(t, bt, return_indices=True)
    ratio = v[i] / bv[j]
    assert np.allclose(ratio[common >= a], 1.8, atol=0.01) and np.allclose(ratio[common < a], 1.0)


def test_chlorine_dosing_failure(run):
    a, b, (target,) = window(run, "chlorine_dosing_failure")
    t, v = run.series(target)
    assert v[t < a].min() > 0.5
    assert v[during(t, a + 3600, b)].max() < 0.1 and v[during(t, a, b)].min() > 0.02
    assert v[during(t, b + 1800, b + 7200)].min() > 0.5  # recovered


def test_stuck_sensor(run):
    a, b, (target,) = window(run, "stuck_sensor")
    t, v = run.series(target)
    stuck = v[during(t, a, b)]
    assert len(stuck) > 0.95 * 3 * 3600 / 30
    assert np.all(stuck == stuck[0]) and stuck[0] == v[t < a][-1]
    assert len(np.unique(v[during(t, b, b + 3600)])) > 50


def test_inverter_fault(run, baseline):
    a, b, targets = window(run, "inverter_fault")
    t, pv = run.series(targets[0])
    bt, bpv = baseline.series(targets[0])
    assert pv[during(t, a, b)].max() < 0.1
    assert bpv[during(bt, a, b)].mean() > 10  # the sun was up: the fault is visible
    irr = run.messages[run.topic("sejong-pv/inverter-1/irradiance")]
    assert irr == baseline.messages[run.topic("sejong-pv/inverter-1/irradiance")]


def test_turbidity_spike(run):
    a, b, (target,) = window(run, "turbidity_spike")
    t, v = run.series(target)
    inside = during(t, a, b)
    assert 1.1 < v[inside].max() < 1.35
    assert (v[inside] > 0.5).sum() >= 15  # minutes above the 0.5 NTU limit
    peak_t = t[inside][np.argmax(v[inside])]
    assert abs(peak_t - (a + b) / 2) < 600
    assert v[~inside].max() < 0.5


def test_sensor_offline(run):
    a, b, (target,) = window(run, "sensor_offline")
    t, _ = run.series(target)
    assert not during(t, a, b).any()
    assert during(t, a - 300, a).any() and during(t, b, b + 300).any()


def test_pipe_burst(run, baseline):
    a, b, targets = window(run, "pipe_burst")
    for target, factor in zip(targets, (0.6, 1.6)):
        t, v = run.series(target)
        bt, bv = baseline.series(target)
        common, i, j = np.intersect1d(t, bt, return_indices=True)
        inside = during(common, a, b)
        assert np.allclose(v[i][inside] / bv[j][inside], factor, rtol=0.002), target


def test_bearing_overheating(run, baseline):
    a, b, (temp, vib) = window(run, "bearing_overheating")
    t, v = run.series(temp)
    assert v[t < a].max() < 80 and v[during(t, a, b)].max() > 90
    assert v[during(t, b + 3600, b + 7200)].max() < 80  # cooled down after the repair
    t, v = run.series(vib)
    bt, bv = baseline.series(vib)
    common, i, j = np.intersect1d(t, bt, return_indices=True)
    ratio = v[i][during(common, a, b)] / bv[j][during(common, a, b)]
    assert 2.3 < ratio.max() < 2.7


def failed_logins(run: Run) -> list[tuple[float, str]]:
    topic = run.topic("sejong-soc/gw-1/sshd")
    out = []
    for p in run.decoded(topic):
        m = re.search(
            r"Failed password for (?:invalid user )?\S+ from (\S+) port \d+ ssh2$", p.line
        )
        if m:
            out.append((p.time.timestamp(), m.group(1)))
    return out


def max_per_window(times: np.ndarray, width: float) -> int:
    times = np.sort(times)
    return (
        int((np.searchsorted(times, times + width) - np.arange(len(times))).max())
        if len(times)
        else 0
    )


def test_ssh_brute_force(run):
    a, b, _ = window(run, "ssh_brute_force")
    fails = failed_logins(run)
    inside = [ip for t, ip in fails if a <= t < b and not ip.startswith("10.")]  # not staff typos
    assert 0.85 * 900 < len(inside) < 1.15 * 900  # ~30 a minute for 30 minutes
    assert len(set(inside)) == 1
    outside = np.array([t for t, _ in fails if not a <= t < b])
    assert max_per_window(outside, 300) < 20  # the auth_failures rule (20 in 5 min) stays quiet
    lines = [p.line for p in run.decoded(run.topic("sejong-soc/gw-1/sshd"))]
    assert any("Accepted password for" in line for line in lines)
    assert any("Invalid user" in line and inside[0] in line for line in lines)


def test_port_scan(run):
    a, b, (target,) = window(run, "port_scan")
    events = run.decoded(run.topic(target))
    deny = [(p.time.timestamp(), p.src_ip, p.dst_port) for p in events if p.action == "deny"]
    by_ip = collections.Counter(ip for t, ip, _ in deny if a <= t < b)
    scanner, n = by_ip.most_common(1)[0]
    assert 0.9 * 7500 < n < 1.1 * 7500  # ~500 a minute for 15 minutes
    assert sum(by_ip.values()) - n < 100  # the background denies
    assert len({port for t, ip, port in deny if ip == scanner}) > 5000
    assert not any(ip == scanner for t, ip, _ in deny if not a <= t < b)
    outside = np.array([t for t, _, _ in deny if not a <= t < b])
    assert max_per_window(outside, 60) < 100  # the firewall_denies rule stays quiet
    allow = [p for p in events if p.action == "allow"]
    assert len(allow) > 5 * len(outside)


# --- labels, start, files ---------------------------------------------------------------------


def test_incident_kinds_cover_the_example(example):
    assert {i.kind for i in example.simulation.incidents} <= set(sim.INCIDENT_KINDS)
    assert set(sim.INCIDENT_KINDS) == set(sim.INCIDENT_PARAMS)


def test_labels_match_the_config(example, tmp_path):
    labels = sim.incident_labels(example, START)
    assert len(labels) == len(example.simulation.incidents) == 11
    for n, (label, inc) in enumerate(zip(labels, example.simulation.incidents), 1):
        site, asset, _ = inc.targets[0].split("/")
        assert label["id"] == f"inc-{n:02d}" and label["kind"] == inc.kind
        assert (label["site"], label["asset"]) == (site, asset)
        assert label["targets"] == inc.targets and label["sensors"] == [
            t.split("/")[2] for t in inc.targets
        ]
        assert label["domain"] == next(s.domain for s in example.sites if s.id == site)
        start = datetime.fromisoformat(label["start"])
        assert start == START + timedelta(hours=inc.at_h) and label["start"].endswith("Z")
        assert datetime.fromisoformat(label["end"]) == start + timedelta(hours=inc.duration_h)
        assert label["description"]
    path = tmp_path / "deep" / "labels.jsonl"
    sim.write_labels(path, labels)
    assert [json.loads(line) for line in path.read_text().splitlines()] == labels


def test_sim_start_is_local_midnight_before_now(example):
    start = sim.sim_start(example, NOW)
    assert start == START and start.tzinfo is not None
    kst = timezone(timedelta(hours=9))
    assert start.astimezone(kst).hour == 0 and start + timedelta(hours=24) <= NOW
    # the span may end exactly now; a microsecond earlier the previous midnight is the latest
    edge = START + timedelta(hours=24)
    assert sim.sim_start(example, edge) == START
    assert sim.sim_start(example, edge - timedelta(microseconds=1)) == START - timedelta(days=1)
    assert sim.sim_start(make_config(duration_h=30), NOW) == START  # ends 06:00 KST today
    assert sim.sim_start(make_config(duration_h=40), NOW) == START - timedelta(days=1)
    with pytest.raises(ValueError):
        sim.sim_start(example, NOW.replace(tzinfo=None))


def test_sim_start_in_a_dst_zone():
    raw = raw_config()
    raw["city"]["timezone"] = "Europe/Berlin"
    config = make_config(raw)
    now = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)  # the day after the switch to CEST
    start = sim.sim_start(config, now)
    assert start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 00:00 CET on 29 March
    assert start + timedelta(hours=24) <= now


def test_replay_round_trip(example, tmp_path):
    messages = list(sim.generate(example, START, duration_h=0.5))
    path = tmp_path / "replay" / "city.jsonl"
    assert sim.write_replay(path, iter(messages)) == len(messages)
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"topic", "payload"} and isinstance(first["payload"], dict)
    assert list(sim.read_replay(path)) == messages


def test_config_errors():
    raw = raw_config()
    raw["simulation"]["incidents"] = [
        {"kind": "meteor", "targets": ["sejong-soc/gw-1/sshd"], "at_h": 1}
    ]
    with pytest.raises(sim.SimulationError, match="meteor"):
        sim.incident_labels(make_config(raw), START)
    raw = raw_config()
    raw["simulation"]["incidents"] = [
        {"kind": "port_scan", "targets": ["sejong-pv/inverter-1/power"], "at_h": 1}
    ]
    with pytest.raises(sim.SimulationError, match="firewall"):
        next(sim.generate(make_config(raw), START))
    raw = raw_config()
    raw["simulation"]["incidents"] = [
        {
            "kind": "pipe_burst",
            "targets": ["sejong-dma-1/inlet/flow"],
            "at_h": 1,
            "params": {"flow_rize": 0.5},
        }
    ]
    with pytest.raises(sim.SimulationError, match="flow_rize"):
        next(sim.generate(make_config(raw), START))
    raw = raw_config()
    raw["sites"][0]["assets"][0]["sensors"][0]["sim"]["model"] = "tempreature"
    with pytest.raises(sim.SimulationError, match="tempreature"):
        next(sim.generate(make_config(raw), START))


def test_incident_params_override_magnitudes():
    raw = raw_config()
    raw["simulation"]["incidents"] = [
        {
            "kind": "turbidity_spike",
            "targets": ["sejong-wtp/filter-outlet/turbidity"],
            "at_h": 1,
            "params": {"peak": 2.0},
        },
        {
            "kind": "ssh_brute_force",
            "targets": ["sejong-soc/gw-1/sshd"],
            "at_h": 1,
            "duration_h": 0.5,
            "params": {"src_ip": "192.0.2.66", "rate_per_min": 60},
        },
    ]
    r = Run(make_config(raw, duration_h=3))
    _, v = r.series("sejong-wtp/filter-outlet/turbidity")
    assert 1.9 < v.max() < 2.1
    ips = [ip for t, ip in failed_logins(r) if r.hours(1) <= t < r.hours(1.5)]
    assert set(ips) == {"192.0.2.66"} and 0.85 * 1800 < len(ips) < 1.15 * 1800


# --- MQTT -------------------------------------------------------------------------------------


def subscribe(host: str, port: int, topic: str):
    import paho.mqtt.client as mqtt

    got: list[tuple[str, bytes]] = []
    ready = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{time.monotonic_ns()}")
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    sub.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
    sub.on_message = lambda c, u, msg: got.append((msg.topic, msg.payload))
    sub.connect(host, port)
    sub.loop_start()
    assert ready.wait(10), "subscription not acknowledged"
    return sub, got


@pytest.mark.services
def test_publish_mqtt_delivers_everything(mosquitto, example):
    messages = list(sim.generate(example, START, duration_h=1))
    sub, got = subscribe(mosquitto.host, mosquitto.port, "city/#")
    seen = []
    try:
        stats = sim.publish_mqtt(
            iter(messages),
            mqtt=MqttService(host=mosquitto.host, port=mosquitto.port),
            speed=0,
            client_id="test-sim",
            progress=seen.append,
            max_inflight=200,
        )
        deadline = time.monotonic() + 20
        while len(got) < len(messages) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert stats.messages == stats.acked == len(messages) == len(got)
    assert sorted(got) == sorted((m.topic, m.payload) for m in messages)
    assert sum(stats.per_domain.values()) == len(messages) and set(stats.per_domain) == {
        "structures",
        "water",
        "energy",
        "security",
    }
    assert stats.first_time == messages[0].time and stats.last_time == messages[-1].time
    assert seen and seen[-1] is stats


@pytest.mark.services
def test_publish_mqtt_paces_sim_time(mosquitto, example):
    messages = list(islice(sim.generate(example, START, duration_h=0.25), 2000))
    span = (messages[-1].time - messages[0].time).total_seconds()
    stats = sim.publish_mqtt(
        messages,
        mqtt=MqttService(host=mosquitto.host, port=mosquitto.port),
        speed=span / 1.0,
        client_id="test-sim-paced",
    )
    assert stats.messages == len(messages)
    assert 0.9 < stats.wall_s < 3.0


def test_publish_mqtt_unreachable_broker():
    from twinwatch.app.services import free_port

    port = free_port()
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        sim.publish_mqtt(iter([]), mqtt=MqttService(host="127.0.0.1", port=port), speed=0)


def test_incidents_after_the_span_are_not_labelled(example):
    """A short run injects only the incidents that start inside it; labels say exactly that."""
    short = msgspec.structs.replace(
        example, simulation=msgspec.structs.replace(example.simulation, duration_h=6.5)
    )
    labels = sim.incident_labels(short, START)
    assert [lb["kind"] for lb in labels] == [
        i.kind for i in example.simulation.incidents if i.at_h < 6.5
    ]
    assert len(labels) < len(example.simulation.incidents)


# --- issue #12: asset incidents, legitimate changes, scenarios ---------------------------------

SPAN = "sejong-bridge/span-2"


def two_day_run(kind: str, targets: list[str], at_h: float = 26.0, duration_h: float = 12.0,
                params: dict | None = None) -> tuple[Run, Run]:  # fmt: skip
    """A 2-day run of the example city with one incident, and the same without it."""
    raw = raw_config()
    raw["sites"] = [s for s in raw["sites"] if s["domain"] != "security"]
    inc = {"kind": kind, "targets": targets, "at_h": at_h, "duration_h": duration_h}
    if params:
        inc["params"] = params
    with_it = make_config(raw, duration_h=48, incidents=[inc])
    without = make_config(yaml.safe_load(yaml.safe_dump(raw)), duration_h=48, incidents=[])
    return Run(with_it), Run(without)


def paired(run: Run, base: Run, path: str):
    t, v = run.series(path)
    bt, bv = base.series(path)
    common, i, j = np.intersect1d(t, bt, return_indices=True)
    return common, v[i], bv[j]


def test_gauge_debond_offsets_one_gauge_and_halves_its_response():
    run, base = two_day_run("gauge_debond", [f"{SPAN}/strain-2"], at_h=26, duration_h=6)
    t, v, bv = paired(run, base, f"{SPAN}/strain-2")
    a = run.hours(26)
    late = t >= a + 3600
    level = 95.0  # the gauge's unloaded reading (its sim base)
    assert np.allclose(v[late], bv[late] - 0.5 * (bv[late] - level) + 30.0, atol=1e-3)
    assert np.array_equal(v[t < a], bv[t < a])
    for other in ("strain-1", "temp", "accel-rms"):  # its siblings do not move
        assert (
            run.messages[run.topic(f"{SPAN}/{other}")]
            == base.messages[run.topic(f"{SPAN}/{other}")]
        )


def test_stiffness_growth_scales_the_traffic_response_of_every_target():
    run, base = two_day_run("stiffness_growth", [f"{SPAN}/strain-1", f"{SPAN}/strain-2"], 6, 24)
    for gauge, coeff in (("strain-1", 35.0), ("strain-2", 30.0)):
        t, v, bv = paired(run, base, f"{SPAN}/{gauge}")
        added = v - bv
        assert np.all(added[t < run.hours(6)] == 0)
        mid = during(t, run.hours(18), run.hours(18.5))  # half-way: half the growth
        assert added[mid].max() < 0.6 * 0.35 * coeff
        end = t >= run.hours(30)  # full growth over Tuesday's rush hours
        assert added[end].max() == pytest.approx(0.35 * coeff, rel=0.05)  # peak traffic ~1
        assert added[end].min() >= 0.35 * coeff * 0.04  # night traffic ~0.05


def test_night_leak_adds_its_flow_until_repaired():
    run, base = two_day_run("night_leak", ["sejong-dma-1/inlet/flow"], 10, 24, {"leak": 20.0})
    t, v, bv = paired(run, base, "sejong-dma-1/inlet/flow")
    inside = during(t, run.hours(10), run.hours(34))
    assert np.allclose((v - bv)[inside], 20.0, atol=1e-3)
    assert np.all((v - bv)[~inside] == 0)


def test_pv_underperformance_and_sensor_drift():
    run, base = two_day_run("pv_underperformance", ["sejong-pv/inverter-1/power"], 30, 10)
    t, v, bv = paired(run, base, "sejong-pv/inverter-1/power")
    inside = during(t, run.hours(30), run.hours(40)) & (bv > 5)
    assert np.allclose(v[inside] / bv[inside], 0.88, atol=0.002)
    run, base = two_day_run("sensor_drift", [f"{SPAN}/strain-1"], 24, 12, {"rate_per_h": 2.0})
    t, v, bv = paired(run, base, f"{SPAN}/strain-1")
    inside = during(t, run.hours(24), run.hours(36))
    assert np.allclose((v - bv)[inside], 2.0 * (t[inside] - run.hours(24)) / 3600, atol=1e-3)
    assert np.all((v - bv)[t >= run.hours(36)] == 0)  # recalibrated


def test_chlorine_decline_stays_above_its_limit_and_recovers():
    run, base = two_day_run("chlorine_decline", ["sejong-wtp/clearwell/chlorine"], 24, 18)
    t, v, bv = paired(run, base, "sejong-wtp/clearwell/chlorine")
    drop = bv - v
    end = during(t, run.hours(41.5), run.hours(42))
    assert drop[end].mean() == pytest.approx(0.3, abs=0.01)
    assert v.min() > 0.1  # a slow decline, not a limit breach
    assert np.all(np.abs(drop[t >= run.hours(42) + 8 * 1800]) < 1e-9)


def test_rain_turbidity_rises_and_recedes_under_its_limit():
    run, base = two_day_run("rain_turbidity", ["sejong-wtp/filter-outlet/turbidity"], 20, 8)
    t, v, bv = paired(run, base, "sejong-wtp/filter-outlet/turbidity")
    inside = during(t, run.hours(20), run.hours(28))
    assert 0.25 < v[inside].max() < 0.5  # up to ~0.3 NTU, never the 0.5 NTU limit
    peak_t = t[inside][np.argmax(v[inside])]
    assert run.hours(21) < peak_t < run.hours(23)  # peaks a quarter into the rain
    assert np.all(v[~inside] == bv[~inside])


def test_holiday_gives_a_working_day_its_weekend_profile():
    config = make_config(duration_h=72)
    raw = raw_config()
    tue = 24.0  # START is a Monday: day 1 is a Tuesday
    raw["simulation"]["incidents"] = [
        {"kind": "holiday", "targets": ["sejong-building/main-meter/load"], "at_h": tue,
         "duration_h": 24}
    ]  # fmt: skip
    run, base = Run(make_config(raw, duration_h=72)), Run(config)
    t, v, bv = paired(run, base, "sejong-building/main-meter/load")
    noon = during(t, run.hours(tue + 12), run.hours(tue + 13))
    assert v[noon].mean() < 0.7 * bv[noon].mean()  # occupancy at its weekend level
    assert np.all(v[t >= run.hours(tue + 24)] == bv[t >= run.hours(tue + 24)])


def test_city_calendar_holidays_reach_every_sensor():
    raw = raw_config()
    raw["city"]["holidays"] = ["2026-11-24"]  # the Tuesday
    run, base = Run(make_config(raw, duration_h=72)), Run(make_config(duration_h=72))
    for path in ("sejong-building/main-meter/load", "sejong-dma-1/inlet/flow", f"{SPAN}/strain-1"):
        t, v, bv = paired(run, base, path)
        tue = during(t, run.hours(24), run.hours(48))
        assert not np.array_equal(v[tue], bv[tue]), path
        assert np.array_equal(v[~tue], bv[~tue]), path


def test_sharp_schedule_switches_within_minutes():
    raw = raw_config()
    raw["simulation"]["incidents"] = [
        {"kind": "sharp_schedule", "targets": ["sejong-building/main-meter/load"], "at_h": 0,
         "duration_h": 24}
    ]  # fmt: skip
    run = Run(make_config(raw, duration_h=24))
    t, v = run.series("sejong-building/main-meter/load")
    before = v[during(t, run.hours(7.7), run.hours(7.8))].mean()
    after = v[during(t, run.hours(8.2), run.hours(8.3))].mean()
    assert after - before > 0.8 * 380  # the whole working-day step in half an hour


def test_sensor_replacement_goes_offline_then_reads_rezeroed_with_an_annotation():
    run, base = two_day_run("sensor_replacement", [f"{SPAN}/strain-2"], 30, 2)
    topic = run.topic(f"{SPAN}/strain-2")
    notes = run.messages.get(topic + "/annotation") or [
        m for ms in run.messages.values() for m in ms if m.topic == topic + "/annotation"
    ]
    assert len(notes) == 1
    note = msgspec.json.decode(notes[0].payload)
    assert note["kind"] == "maintenance" and "replaced" in note["text"]
    t, v, bv = paired(run, base, f"{SPAN}/strain-2")
    a, back = run.hours(30), run.hours(30.5)
    assert not np.any(during(run.series(f"{SPAN}/strain-2")[0], a, back))  # offline
    after = t >= back
    assert abs(v[after][0]) < 1e-6  # the new gauge reads zero when installed
    assert np.allclose(bv[after] - v[after], bv[after][0], atol=1e-3)  # same response, new zero
    assert datetime.fromisoformat(note["until"]).timestamp() == pytest.approx(back + 30, abs=1)


def test_labels_carry_the_expected_detector_kind_and_legit_changes():
    config = sim.scenario_config(make_config(), "night_leak", 3)
    (label,) = sim.incident_labels(config, START)
    assert label["expect"] == ["leak"] and label["legit"] is False
    config = sim.scenario_config(make_config(), "rain_turbidity", 3)
    (label,) = sim.incident_labels(config, START)
    assert label["expect"] == [] and label["legit"] is True


@pytest.mark.parametrize("name", sorted(sim.SCENARIOS))
def test_scenarios_are_seeded_and_stand_alone(name):
    a = sim.scenario_config(make_config(), name, 4)
    b = sim.scenario_config(make_config(), name, 4)
    c = sim.scenario_config(make_config(), name, 5)
    sc = sim.SCENARIOS[name]
    (inc,) = a.simulation.incidents
    assert a.simulation == b.simulation and a.simulation.seed == 4
    assert inc.kind == sc.kind and inc.targets == list(sc.targets)
    assert a.simulation.duration_h == 24 * sc.days
    assert 24 * sc.first_day <= inc.at_h < 24 * (sc.last_day + 1)
    assert inc.at_h + inc.duration_h <= a.simulation.duration_h
    if sc.first_day != sc.last_day:  # the start is drawn from the seed, not fixed
        starts = {sim.scenario_config(make_config(), name, s).simulation.incidents[0].at_h
                  for s in range(1, 9)}  # fmt: skip
        assert len(starts) > 1
    assert c.simulation.seed == 5


def test_unknown_scenario_is_a_clear_error():
    with pytest.raises(sim.SimulationError, match="unknown scenario 'nope'; known: gauge_debond"):
        sim.scenario_config(make_config(), "nope", 1)


def test_cli_simulates_one_scenario_to_a_replay_file(tmp_path):
    from twinwatch.app.cli import main

    out, labels = tmp_path / "run.jsonl", tmp_path / "labels.jsonl"
    args = ["simulate", "--scenario", "pv_underperformance", "--seed", "2", "--out", str(out)]
    assert main([*args, "--labels", str(labels)]) == 0
    (label,) = [json.loads(x) for x in labels.read_text().splitlines()]
    assert label["kind"] == "pv_underperformance" and label["expect"] == ["underperformance"]
    first = json.loads(out.open().readline())
    last_time = datetime.fromisoformat(
        json.loads(out.read_text().splitlines()[-1])["payload"]["time"]
    )
    span = last_time - datetime.fromisoformat(first["payload"]["time"])
    assert timedelta(days=6, hours=23) < span <= timedelta(days=7)
    assert main(["simulate", "--scenario", "nope", "--out", str(out)]) == 2


def test_cli_simulates_the_span_that_ends_at_end(tmp_path):
    """`simulate --end T` (issue #16's leftover): the span [T - duration_h, T), the config's
    incidents at their time of day within it, as the demo lays it out; `--end now` ends now."""
    from twinwatch.app.cli import main
    from twinwatch.app.demo import demo_span

    config = tmp_path / "city.yaml"
    text = EXAMPLE_CONFIG.read_text()
    assert text.count("duration_h: 24 ") == 1
    config.write_text(text.replace("duration_h: 24 ", "duration_h: 6 "))
    out, labels = tmp_path / "run.jsonl", tmp_path / "labels.jsonl"
    end = "2026-11-20T09:00:00+09:00"
    args = ["simulate", "-c", str(config), "--out", str(out), "--labels", str(labels)]
    assert main([*args, "--end", end]) == 0
    times = [
        datetime.fromisoformat(json.loads(x)["payload"]["time"])
        for x in out.read_text().splitlines()
        if "time" in json.loads(x).get("payload", {})
    ]
    t_end = datetime.fromisoformat(end)
    assert t_end - timedelta(hours=6) <= min(times) < t_end - timedelta(hours=5, minutes=59)
    assert t_end - timedelta(minutes=5) < max(times) < t_end
    start, shifted, _ = demo_span(load_config(config), t_end.astimezone(UTC))
    inside = [i.kind for i in shifted.simulation.incidents if i.at_h < 6]
    got = [json.loads(x) for x in labels.read_text().splitlines()]
    assert inside and sorted(label["kind"] for label in got) == sorted(inside)
    for label in got:
        assert start <= datetime.fromisoformat(label["start"]) < t_end
    assert main([*args, "--end", "yesterday"]) == 2  # a clear error, not a traceback
