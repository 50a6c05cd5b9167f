"""Project conventions that keep the layout honest (docs/architecture.md, ../shared/STYLE.md).

- one installed package, ``twinwatch``: no bare ``import flows|detectors|alerting|dashboards``
  anywhere, and pyproject lists every package folder;
- layers point one way: kernel <- detectors <- engine <- alerting <- flows <- app (dashboards
  sit beside flows and use only the kernel); nothing imports upwards or sideways;
- Bytewax is imported only by the flows and the application shell;
- detectors are pure: no I/O or messaging libraries;
- benchmarks do not edit ``sys.path``;
- every public module declares ``__all__``.
"""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "twinwatch": "twinwatch",
    "flows": "twinwatch.flows",
    "detectors": "twinwatch.detectors",
    "alerting": "twinwatch.alerting",
    "dashboards": "twinwatch.dashboards",
}  # repository folder -> installed package
BARE = {"flows", "detectors", "alerting", "dashboards", "benchmarks"}

# Layer of a module (longest matching prefix) and the layers it may import.
LAYER_OF = {
    "twinwatch": "kernel",  # the modules directly in twinwatch/
    "twinwatch.detectors": "detectors",
    "twinwatch.engine": "engine",
    "twinwatch.alerting": "alerting",
    "twinwatch.flows": "flows",
    "twinwatch.dashboards": "dashboards",
    "twinwatch.app": "app",
}
MAY_IMPORT = {
    "kernel": {"kernel"},
    "detectors": {"detectors"},
    "engine": {"kernel", "detectors", "engine"},
    "alerting": {"kernel", "engine", "alerting"},
    "flows": {"kernel", "detectors", "engine", "alerting", "flows"},
    "dashboards": {"kernel", "dashboards"},
    "app": set(LAYER_OF.values()),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    parts[0] = FOLDERS[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    best = max((p for p in LAYER_OF if module == p or module.startswith(p + ".")), key=len)
    return LAYER_OF[best]


def imports(path: Path) -> set[str]:
    """Absolute module names imported by ``path`` (``from a import b`` counts as a.b and a)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def project_modules() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def python_files() -> list[Path]:
    return (
        project_modules()
        + sorted((ROOT / "tests").rglob("*.py"))
        + sorted((ROOT / "benchmarks").rglob("*.py"))
    )


def test_pyproject_installs_one_package_with_every_folder():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["package-dir"] == {v: k for k, v in FOLDERS.items()}
    folders = {module_name(p) for folder in FOLDERS for p in (ROOT / folder).rglob("__init__.py")}
    assert set(tool["packages"]) == folders
    assert {p.split(".")[0] for p in tool["packages"]} == {"twinwatch"}


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_bare_top_level_imports(path):
    bare = {n for n in imports(path) if n.split(".")[0] in BARE}
    if path.is_relative_to(ROOT / "benchmarks"):
        bare = {n for n in bare if not n.startswith("benchmarks")}  # run as python -m benchmarks.x
    assert not bare, f"import twinwatch.<package>, not {sorted(bare)}"


@pytest.mark.parametrize("path", project_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_layers_point_one_way(path):
    mine = layer(module_name(path))
    wrong = sorted(
        n
        for n in imports(path)
        if n.split(".")[0] == "twinwatch"
        and n != "twinwatch"
        and layer(_module_of(n)) not in MAY_IMPORT[mine]
    )
    assert not wrong, f"{mine} module imports {wrong}; allowed layers: {MAY_IMPORT[mine]}"


def _module_of(name: str) -> str:
    """``twinwatch.engine.plan.Plan`` -> ``twinwatch.engine.plan`` (the importable prefix)."""
    parts = name.split(".")
    while len(parts) > 1:
        candidate = ".".join(parts)
        if _exists(candidate):
            return candidate
        parts.pop()
    return name


def _exists(module: str) -> bool:
    parts = module.split(".")
    inv = {v: k for k, v in FOLDERS.items()}
    for n in range(len(parts), 0, -1):
        head = ".".join(parts[:n])
        if head in inv:
            base = ROOT / inv[head] / Path(*parts[n:]) if parts[n:] else ROOT / inv[head]
            return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()
    return False


@pytest.mark.parametrize("path", project_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_bytewax_only_in_flows_and_app(path):
    if layer(module_name(path)) not in ("flows", "app"):
        assert not {n for n in imports(path) if n.split(".")[0] == "bytewax"}


@pytest.mark.parametrize("path", sorted((ROOT / "detectors").rglob("*.py")), ids=str)
def test_detectors_are_pure(path):
    allowed = {
        "__future__",
        "math",
        "numbers",
        "bisect",
        "collections",
        "typing",
        "pickle",
        "dataclasses",
        "functools",
        "itertools",
        "numpy",
        "river",
        "twinwatch",
        "heapq",
        "abc",
        "copy",
        "random",
        "statistics",
        "inspect",
        "re",
    }
    allowed |= {"drain3"}  # log-template mining (detectors/logtemplates.py)
    allowed |= {"sklearn"}  # IsolationForest (detectors/multivariate.py)
    # local time of day from the t passed in (time zone rules, never the clock): the schedule,
    # night-flow and dosing detectors (detectors/group.py LocalClock)
    allowed |= {"datetime", "zoneinfo"}
    tops = {n.split(".")[0] for n in imports(path)}
    assert tops <= allowed, tops - allowed


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").rglob("*.py")), ids=str)
def test_benchmarks_do_not_edit_sys_path(path):
    assert "sys.path" not in path.read_text()


@pytest.mark.parametrize(
    "path",
    [p for p in project_modules() if p.name != "__init__.py" and "simulator" not in p.parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_public_modules_declare_all(path):
    assert "__all__" in path.read_text(), f"{path.relative_to(ROOT)} has no __all__"
    mod = importlib.import_module(module_name(path))
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"__all__ names what the module lacks: {missing}"
