"""Project conventions that keep the layout honest (see ../shared/STYLE.md, docs/architecture.md).

- detectors/ is pure: it imports nothing of the project and nothing that does I/O or messaging;
- alerting/ knows nothing about Bytewax or the flows;
- every public module of the top-level packages declares __all__.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"twinwatch", "flows", "detectors", "alerting", "dashboards"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules("detectors"), ids=str)
def test_detectors_are_pure(path):
    allowed = {"__future__", "math", "numbers", "bisect", "collections", "typing", "pickle",
               "dataclasses", "functools", "itertools", "numpy", "river", "detectors", "heapq",
               "abc", "copy", "random", "statistics"}
    allowed |= {"drain3"}  # log-template mining (detectors/logtemplates.py, issue #6)
    allowed |= {"sklearn"}  # IsolationForest (detectors/multivariate.py)
    assert imports(path) <= allowed, imports(path) - allowed


@pytest.mark.parametrize("path", modules("alerting"), ids=str)
def test_alerting_knows_nothing_of_bytewax_or_flows(path):
    assert not imports(path) & {"bytewax", "flows"}


@pytest.mark.parametrize("path", [p for pkg in PROJECT for p in modules(pkg)
                                  if p.name != "__init__.py" and "simulator" not in p.parts],
                         ids=str)
def test_public_modules_declare_all(path):
    assert "__all__" in path.read_text(), f"{path.relative_to(ROOT)} has no __all__"
