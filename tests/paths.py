"""Where things are, for tests: the repository root and the read-only ../shared data."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ROOT", "SHARED_DATA"]

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"  # NAB and loghub samples, never copied in
