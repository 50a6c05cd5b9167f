"""The incident report from the short simulated run (tests/analysis_run.py) on real InfluxDB:
built, then rendered by headless Chromium and looked at as an image."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from twinwatch.app.analysis import helpers as h
from twinwatch.app.analysis.query import Influx
from twinwatch.app.analysis.report import SECTIONS, build_report, incidents

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def built(analysis_run, tmp_path_factory):
    run = analysis_run
    out = tmp_path_factory.mktemp("report")
    with Influx(run.config.services.influxdb) as db:
        path = build_report(db, run.config, run.start, run.end, out, max_incidents=4)
        episodes = h.alert_history(db, run.start, run.end)
    return run, path, episodes


def test_report_has_every_section_and_the_plots(built):
    run, path, episodes = built
    page = path.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    incs = incidents(episodes, run.end)
    assert len(incs) > 4  # so max_incidents cut some
    assert f"{len(incs) - 4} less severe incidents not plotted" in page
    imgs = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert [alt for alt, _ in imgs] == ["alerts per hour"] + [f"incident {i}" for i in (1, 2, 3, 4)]
    figures = sorted(p.name for p in (path.parent / "figures").iterdir())
    assert figures == ["alerts.png"] + [f"incident-{i:02d}.png" for i in (1, 2, 3, 4)]
    for (_, data), name in zip(imgs, figures):  # the embedded PNG is the saved one
        assert base64.b64decode(data) == (path.parent / "figures" / name).read_bytes()
        assert Image.open(io.BytesIO(base64.b64decode(data))).size[0] > 600
    # the alerts table lists every fired episode; the MTTA table counts the two acks
    assert page.count("<tr>") >= episodes.height
    mtta = page.split('id="mtta-mttr"')[1].split("</section>")[0]
    assert (
        sum(int(n) for n in re.findall(r"<tr><td>\w+</td><td>\w+</td><td>\d+</td><td>(\d+)", mtta))
        == 2
    )
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing to fetch


def test_most_severe_incident_comes_first(built):
    run, _, episodes = built
    incs = incidents(episodes, run.end)
    ranks = ["attention", "caution", "alert", "severe"]
    assert [ranks.index(i["severity"]) for i in incs] == sorted(
        (ranks.index(i["severity"]) for i in incs), reverse=True
    )
    assert sum(len(i["episodes"]) for i in incs) == episodes.height


def test_rendered_report_looks_like_a_report(built, tmp_path):
    """Headless Chromium renders the HTML to a PNG; the picture must show the figures."""
    _, path, _ = built
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        msg = "chromium is not installed (run scripts/install-services.sh chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {msg}", pytrace=False)
        pytest.skip(msg)
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2400",
            path.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 2400)
    px = np.asarray(img).astype(int)
    non_white = (px.sum(axis=2) < 720).mean()
    assert non_white > 0.15, non_white  # text, tables and plots, not a blank page
    # the severity colours of the plots (bars and alert spans) are on the page
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    orange = int(((r > 200) & (g > 120) & (g < 200) & (b < 120)).sum())
    assert orange > 500, orange
