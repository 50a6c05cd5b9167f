"""``twinwatch bench nab``: run the NAB-compatible benchmark in ``benchmarks/nab``.

The harness lives in the source checkout (``benchmarks/`` is not installed with the package), so
this module puts the checkout on ``sys.path`` and says so clearly when it is not there.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twinwatch.config import ConfigError

__all__ = ["run_nab"]

ROOT = Path(__file__).resolve().parents[1]


def run_nab(data: str | None, results: str | None, detectors: list[str] | None,
            only: str | None = None) -> int:
    """Run, score and print; user errors (missing folder, unknown detector) -> ConfigError."""
    if not (ROOT / "benchmarks" / "nab" / "run.py").is_file():
        raise ConfigError("the NAB harness (benchmarks/nab) is only in a source checkout of "
                          "twinwatch; run this command from one")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.nab import run
    from benchmarks.nab.corpus import NabLayoutError

    data_dir = Path(data) if data else ROOT.parent / "shared" / "data" / "nab"
    if not data_dir.is_dir():
        raise ConfigError(f"NAB data folder {data_dir} not found; pass --data DIR (a folder with "
                          "data/<corpus>/<file>.csv and labels/combined_windows.json)")
    names = detectors or list(run.DEFAULT_DETECTORS)
    try:
        res = run.bench(data_dir, Path(results or "results"), names, only,
                        run._progress if sys.stderr.isatty() else None)
    except (NabLayoutError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(run.format_tables(res))
    return 0
