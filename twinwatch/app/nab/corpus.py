"""Reading a NAB-layout folder and writing results in NAB's own format.

Layout: ``<root>/data/<corpus>/<file>.csv`` (``timestamp,value``) and
``<root>/labels/combined_windows.json`` (``{"<corpus>/<file>.csv": [[start, end], ...]}``).
Results: ``<results>/<detector>/<corpus>/<detector>_<file>.csv`` with
``timestamp,value,anomaly_score,label``, which NAB's own scorer reads.
"""

from __future__ import annotations

import csv
import json
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["DataFile", "NabLayoutError", "load_corpus", "write_results"]


class NabLayoutError(ValueError):
    """The folder is not in NAB's layout, or a file or label in it is malformed."""


@dataclass(frozen=True)
class DataFile:
    key: str  # "<corpus>/<file>.csv", as in the labels
    timestamps: tuple[str, ...]  # as written in the file
    times: tuple[float, ...]  # epoch seconds, UTC
    values: tuple[float, ...]
    windows: tuple[tuple[int, int], ...]  # inclusive row index ranges

    @property
    def corpus(self) -> str:
        return self.key.split("/")[0]

    def labels(self) -> list[int]:
        out = [0] * len(self.values)
        for a, b in self.windows:
            out[a : b + 1] = [1] * (b - a + 1)
        return out


def _epoch(text: str, where: str) -> float:
    try:
        return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise NabLayoutError(f"{where}: bad timestamp {text!r}") from None


def _read(path: Path, key: str, limits: list) -> DataFile:
    stamps, times, values = [], [], []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise NabLayoutError(f"{path}: expected a 'timestamp,value' header, got {header}")
        for lineno, row in enumerate(reader, start=2):
            if len(row) < 2:
                raise NabLayoutError(f"{path}:{lineno}: expected timestamp,value")
            stamps.append(row[0])
            times.append(_epoch(row[0], f"{path}:{lineno}"))
            try:
                values.append(float(row[1]))
            except ValueError:
                raise NabLayoutError(f"{path}:{lineno}: bad value {row[1]!r}") from None
    windows = []
    for start, end in limits:
        a = bisect_left(times, _epoch(start, f"label of {key}"))
        b = bisect_right(times, _epoch(end, f"label of {key}")) - 1
        if a > b:
            raise NabLayoutError(f"label window {start} .. {end} of {key} holds no rows")
        windows.append((a, b))
    return DataFile(key, tuple(stamps), tuple(times), tuple(values), tuple(sorted(windows)))


def load_corpus(root: Path, only: str | None = None) -> list[DataFile]:
    """Every data file under ``root`` (optionally only keys containing ``only``), sorted."""
    root = Path(root)
    labels_path = root / "labels" / "combined_windows.json"
    if not (root / "data").is_dir() or not labels_path.is_file():
        raise NabLayoutError(
            f"{root} is not a NAB-layout folder: need data/<corpus>/<file>.csv and "
            "labels/combined_windows.json"
        )
    try:
        labels = json.loads(labels_path.read_text())
    except json.JSONDecodeError as exc:
        raise NabLayoutError(f"{labels_path}: {exc}") from None
    files = []
    for path in sorted((root / "data").glob("*/*.csv")):
        key = f"{path.parent.name}/{path.name}"
        if only and only not in key:
            continue
        if key not in labels:
            raise NabLayoutError(f"{key} has no entry in {labels_path}")
        files.append(_read(path, key, labels[key]))
    if not files:
        match = f" matching {only!r}" if only else ""
        raise NabLayoutError(f"no data files under {root / 'data'}{match}")
    return files


def write_results(results: Path, detector: str, data: DataFile, scores: list[float]) -> Path:
    corpus, name = data.key.split("/")
    out = Path(results) / detector / corpus / f"{detector}_{name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value", "anomaly_score", "label"])
        for row in zip(data.timestamps, data.values, scores, data.labels()):
            w.writerow(row)
    return out
