#!/usr/bin/env bash
# Type-check the installed layout with mypy (settings: pyproject's [tool.mypy]), and the
# benchmarks that run against it. The repository keeps flows/, detectors/, alerting/ and
# dashboards/ at the top level but installs them as twinwatch.* (pyproject's package-dir); mypy
# has no such mapping, so it checks a tree of symlinks with the installed layout, and the paths
# it prints are mapped back to the repository's.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck
rm -rf "$tree"; mkdir -p "$tree/twinwatch"
for entry in twinwatch/*; do ln -s "$PWD/$entry" "$tree/twinwatch/"; done
for pkg in flows detectors alerting dashboards; do ln -s "$PWD/$pkg" "$tree/twinwatch/$pkg"; done
ln -s "$PWD/benchmarks" "$tree/benchmarks"
status=0
"${MYPY:-.venv/bin/mypy}" --cache-dir build/mypy-cache "$tree/twinwatch" "$tree/benchmarks" "$@" \
  > build/mypy.out 2>&1 || status=$?
sed -E "s#^$tree/twinwatch/(flows|detectors|alerting|dashboards)/#\1/#; s#^$tree/##" build/mypy.out
exit $status
