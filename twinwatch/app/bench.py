"""``twinwatch bench nab``: run the NAB-compatible benchmark (``twinwatch.app.nab``)."""

from __future__ import annotations

import sys
from pathlib import Path

from twinwatch.app.nab import run
from twinwatch.app.nab.corpus import NabLayoutError
from twinwatch.config import ConfigError

__all__ = ["run_nab", "DEFAULT_DATA"]

#: The shared data folder beside a source checkout (../shared/data/nab).
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"


def run_nab(
    data: str | None, results: str | None, detectors: list[str] | None, only: str | None = None
) -> int:
    """Run, score and print; user errors (missing folder, unknown detector) -> ConfigError."""
    data_dir = Path(data) if data else DEFAULT_DATA
    if not data_dir.is_dir():
        raise ConfigError(
            f"NAB data folder {data_dir} not found; pass --data DIR (a folder with "
            "data/<corpus>/<file>.csv and labels/combined_windows.json)"
        )
    names = detectors or list(run.DEFAULT_DETECTORS)
    try:
        res = run.bench(
            data_dir,
            Path(results or "results"),
            names,
            only,
            run._progress if sys.stderr.isatty() else None,
        )
    except (NabLayoutError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(run.format_tables(res))
    return 0
