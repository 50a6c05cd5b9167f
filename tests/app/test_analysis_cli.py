"""`twinwatch query | report | backtest` on the short simulated run in real InfluxDB 1.6.7
(tests/analysis_run.py), and their errors: unreachable server, bad credentials (a second
InfluxDB with auth enabled), empty result, bad time range."""

from __future__ import annotations

import io
import json
from zoneinfo import ZoneInfo

import httpx
import polars as pl
import pytest

from twinwatch.app import services
from twinwatch.app.analysis import helpers as h
from twinwatch.app.analysis.query import Influx
from twinwatch.app.cli import main

pytestmark = pytest.mark.services
KST = ZoneInfo("Asia/Seoul")  # the example city's time zone


@pytest.fixture(scope="module")
def run(analysis_run):
    return analysis_run


@pytest.fixture
def env(run, monkeypatch, tmp_path):
    cfg = run.config.services.influxdb
    monkeypatch.setenv("TWINWATCH__SERVICES__INFLUXDB__URL", cfg.url)
    monkeypatch.setenv("TWINWATCH__SERVICES__INFLUXDB__DATABASE", cfg.database)
    labels = tmp_path / "incidents.jsonl"
    labels.write_text("".join(json.dumps(lb) + "\n" for lb in run.labels))
    monkeypatch.setenv("TWINWATCH__SIMULATION__LABELS_PATH", str(labels))
    return run


def span(run) -> list[str]:
    return ["--start", run.start.isoformat(), "--end", run.end.isoformat()]


def test_query_csv_and_parquet_equal_the_api(env, capsys, tmp_path):
    run = env
    assert main(["query", "readings", *span(run), "--site", "sejong-wtp", "--format", "csv"]) == 0
    csv = pl.read_csv(io.StringIO(capsys.readouterr().out))
    with Influx(run.config.services.influxdb) as db:
        api = h.readings(db, run.start, run.end, site="sejong-wtp")
        rollup = h.rollup(db, run.start, run.end, "30m")
    assert csv.height == api.height > 0
    assert csv["value"].to_list() == api["value"].to_list()
    assert set(csv["site"]) == {"sejong-wtp"}
    out = tmp_path / "rollup.parquet"
    assert (
        main(
            ["query", "rollup", *span(run), "--every", "30m", "--format", "parquet", "-o", str(out)]
        )
        == 0
    )
    assert pl.read_parquet(out).equals(rollup)  # dtypes too: Categorical tags, UTC times
    assert main(["query", "alerts", *span(run)]) == 0
    table = capsys.readouterr().out
    assert "fingerprint" in table and "time_to_resolve_s" in table


def test_report_and_backtest_commands(env, capsys, tmp_path):
    run = env
    assert main(["report", *span(run), "--domain", "water", "-o", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert "(domain=water)" in page and "busan-wind" not in page.split('id="dead-letters"')[0]
    assert main(["backtest", *span(run), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    n = len(run.labels)
    live = [line for line in out.splitlines() if line.startswith("  live flow")][0]
    detected = out.split("incidents detected ")[1].split(" ")[0]
    assert detected.endswith(f"/{n}") and f"incidents detected {detected}" in live
    assert pl.read_csv(io.StringIO(out[out.index("id,kind,") :])).height == n


def test_unreachable_server(run, monkeypatch, capsys):
    monkeypatch.setenv(
        "TWINWATCH__SERVICES__INFLUXDB__URL", f"http://127.0.0.1:{services.free_port()}"
    )
    assert main(["query", "readings", *span(run)]) == 2
    err = capsys.readouterr().err
    assert "cannot reach InfluxDB at http://127.0.0.1:" in err and "Traceback" not in err


def test_bad_credentials(run, service_factory, monkeypatch, capsys):
    secured = service_factory(services.InfluxDB, auth=True)
    httpx.post(
        secured.url + "/query",
        data={"q": "CREATE USER admin WITH PASSWORD 'right-one' WITH ALL PRIVILEGES"},
    ).raise_for_status()
    monkeypatch.setenv("TWINWATCH__SERVICES__INFLUXDB__URL", secured.url)
    monkeypatch.setenv("TWINWATCH__SERVICES__INFLUXDB__USERNAME", "admin")
    monkeypatch.setenv("TWINWATCH__SERVICES__INFLUXDB__PASSWORD", "{env: TW_TEST_INFLUX_PW}")
    monkeypatch.setenv("TW_TEST_INFLUX_PW", "wrong-one")
    assert main(["query", "readings", *span(run)]) == 2
    err = capsys.readouterr().err
    assert "refused the credentials (HTTP 401" in err and "wrong-one" not in err


def test_empty_result_is_an_answer_and_bad_ranges_are_errors(env, capsys):
    empty = [
        "query",
        "readings",
        "--start",
        "2020-01-01T00:00:00Z",
        "--end",
        "2020-01-02T00:00:00Z",
    ]
    assert main(empty) == 0  # nothing there is an answer, said on stderr
    out = capsys.readouterr()
    assert out.out == ""
    assert (
        "no readings from 2020-01-01 09:00 KST to 2020-01-02 09:00 KST (database " in out.err
    )  # in the city's time zone, the zone marked
    assert main([*empty, "--fail-empty", "--utc"]) == 1  # for scripts that want a failure
    assert (
        "no readings from 2020-01-01 00:00 UTC to 2020-01-02 00:00 UTC" in capsys.readouterr().err
    )
    assert main(["query", "dead-letters", *empty[2:]]) == 0
    assert "no dead letters from" in capsys.readouterr().err
    assert main(["query", "readings"]) == 2  # --start means something here: it is asked for
    assert "`query readings` needs --start" in capsys.readouterr().err
    assert main(["query", "readings", "--start", "now", "--end=-1h"]) == 2
    assert "not after start" in capsys.readouterr().err
    assert main(["query", "readings", "--start", "2026-11-19T00:00:00"]) == 2
    assert "has no UTC offset" in capsys.readouterr().err
    assert main(["query", "rollup", "--start", "now-1h", "--every", "1fortnight"]) == 2
    assert "bad duration" in capsys.readouterr().err


def test_influxql_needs_no_start_and_tables_show_local_time(env, capsys):
    assert main(["query", "influxql", "SHOW MEASUREMENTS"]) == 0
    names = capsys.readouterr().out
    assert "reading" in names and "alert_state" in names
    run = env
    assert main(["query", "readings", *span(run), "--sensor", "chlorine", "--format", "csv"]) == 0
    first = capsys.readouterr().out.splitlines()[1]
    assert first.startswith(run.start.astimezone(KST).strftime("%Y-%m-%dT%H")), first
    assert "+0900" in first  # the offset is in every timestamp
    assert main(["query", "readings", *span(run), "--sensor", "chlorine", "--utc"]) == 0
    assert "UTC" in capsys.readouterr().out
