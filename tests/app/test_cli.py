"""The ``twinwatch`` command's own behaviour (each subcommand's features are tested with its
module)."""

from __future__ import annotations

import yaml

from twinwatch.app.cli import main
from twinwatch.config import EXAMPLE_CONFIG


def test_config_check_builds_every_detector(tmp_path, capsys):
    """`twinwatch config` runs the whole validation: a detector parameter the plan cannot build
    fails there (status 2, the key named), not at the first reading of a running flow."""
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    raw["detectors"]["robust_z"]["params"]["window"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    assert main(["config", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "detectors.robust_z.params" in err and "window" in err
    assert main(["config", "-c", str(EXAMPLE_CONFIG)]) == 0
