"""The config model: the shipped example parses, env overrides, secrets, clear errors."""

import pytest
import yaml

from twinwatch.config import EXAMPLE_CONFIG, ConfigError, Secret, load_config, parse_config
from twinwatch.engine.plan import Plan


def raw():
    return yaml.safe_load(EXAMPLE_CONFIG.read_text())


def test_example_city_covers_every_domain_and_the_required_sensors():
    c = load_config(environ={})
    quantities = {(r.domain, r.sensor.quantity) for r in c.catalog.values()}
    for need in [
        ("structures", "strain"),
        ("structures", "acceleration_rms"),
        ("structures", "tilt"),
        ("structures", "crack_width"),
        ("structures", "temperature"),
        ("water", "turbidity"),
        ("water", "free_chlorine"),
        ("water", "ph"),
        ("water", "conductivity"),
        ("water", "pressure"),
        ("water", "flow"),
        ("water", "reservoir_level"),
        ("energy", "irradiance"),
        ("energy", "active_power"),
        ("energy", "vibration_velocity"),
        ("security", "auth_event"),
        ("security", "firewall_event"),
    ]:
        assert need in quantities
    assert sum(1 for s in c.sites if s.domain == "structures") >= 2
    # Korean drinking-water standard limits, with their source named
    chlorine = c.catalog[("water", "sejong-wtp", "clearwell", "chlorine")].sensor.limits
    assert (chlorine.low, chlorine.high) == (0.1, 4.0) and "먹는물" in chlorine.source
    turbidity = c.catalog[("water", "sejong-wtp", "filter-outlet", "turbidity")].sensor.limits
    assert turbidity.high == 0.5
    ph = c.catalog[("water", "sejong-wtp", "filter-outlet", "ph")].sensor.limits
    assert (ph.low, ph.high) == (5.8, 8.5)


def test_env_overrides_nested_keys_with_yaml_typed_values():
    c = load_config(
        environ={
            "TWINWATCH__SERVICES__INFLUXDB__URL": "http://127.0.0.1:18086",
            "TWINWATCH__SERVICES__MQTT__PORT": "11883",
            "TWINWATCH__FLOW__SHARDS": "4",
        }
    )
    assert c.services.influxdb.url == "http://127.0.0.1:18086"
    assert c.services.mqtt.port == 11883 and c.flow.shards == 4


def test_secrets_come_from_env_or_file_and_never_show(tmp_path, monkeypatch):
    r = raw()
    r["services"]["influxdb"]["token"] = {"env": "TW_TEST_TOKEN"}
    token_file = tmp_path / "pw"
    token_file.write_text("s3cr3t-file\n")
    r["services"]["mqtt"]["password"] = {"file": str(token_file)}
    c = parse_config(r, environ={})
    monkeypatch.setenv("TW_TEST_TOKEN", "s3cr3t-env")
    assert c.services.influxdb.token.reveal() == "s3cr3t-env"
    assert c.services.mqtt.password.reveal() == "s3cr3t-file"
    assert "s3cr3t" not in repr(c)
    monkeypatch.delenv("TW_TEST_TOKEN")
    with pytest.raises(ConfigError, match="TW_TEST_TOKEN is not set"):
        c.services.influxdb.token.reveal()


def test_a_secret_cannot_be_written_inline():
    r = raw()
    r["services"]["influxdb"]["token"] = "inline-token"
    with pytest.raises(ConfigError, match="token"):
        parse_config(r, environ={})
    with pytest.raises(ValueError):
        Secret()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r["detectors"].__setitem__("bogus", {"type": "nope"}), "unknown detector type"),
        (lambda r: r["domain_detectors"]["water"].append("undefined"), "not defined"),
        (
            lambda r: r["sites"][0]["assets"][0]["sensors"][0].__setitem__("interval_s", -1),
            "interval_s",
        ),
        (lambda r: r["sites"][0].__setitem__("domain", "weather"), "domain"),
        (
            lambda r: r["sites"][0]["assets"][0]["sensors"][0].__setitem__(
                "limits", {"low": 5, "high": 1}
            ),
            "low 5",
        ),
        (lambda r: r["simulation"]["incidents"][0].__setitem__("targets", ["a/b/c"]), "no sensor"),
        (lambda r: r["services"]["mqtt"].__setitem__("prot", 1), "prot"),
        # issue #15: these passed `twinwatch config`, then crashed the flow at the first
        # reading or alert; a bad time zone crashed `logs` at start
        (lambda r: r["detectors"]["robust_z"]["params"].__setitem__("window", -1), "window"),
        (
            lambda r: r["detectors"]["robust_z"]["params"].__setitem__("bogus", 1),
            "unexpected keyword argument 'bogus'",
        ),
        (lambda r: r["alert_rules"][0].__setitem__("summary", "{nope} on {site}"), "nope"),
        (lambda r: r["city"].__setitem__("timezone", "Mars/Olympus"), "city.timezone"),
    ],
)
def test_invalid_configs_fail_with_the_key_named(mutate, message):
    r = raw()
    mutate(r)
    with pytest.raises(ConfigError, match=message):
        Plan(parse_config(r, environ={}))  # the whole validation: config, then the engine's plan


def test_missing_file_and_bad_yaml_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("city: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})


def test_unreadable_config_files_are_one_line_errors(tmp_path):
    """Issue #15: a non-UTF-8 file and a 50 MB YAML were tracebacks."""
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("city: {name: Séjong}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8") as e:
        load_config(latin, environ={})
    assert "\n" not in str(e.value)
    big = tmp_path / "big.yaml"
    with big.open("w") as f:
        f.write("city: {name: x}\npad:\n")
        for i in range(50 * 2**20 // 32):
            f.write(f"  - {i:028d}\n")
    with pytest.raises(ConfigError, match="larger than 16 MiB"):
        load_config(big, environ={})


def test_twinwatch_config_builds_the_plan(tmp_path, capsys):
    """`twinwatch config` fails (status 2, one line) on what would fail at the first reading."""
    from twinwatch.app.cli import main

    r = raw()
    r["detectors"]["robust_z"]["params"]["window"] = -1
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(r, allow_unicode=True))
    assert main(["config", "-c", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "detectors.robust_z.params" in err
