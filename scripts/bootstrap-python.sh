#!/usr/bin/env bash
# Make sure the given Python (default python3) is 3.11 or 3.12 and can create venvs; on a fresh
# Debian/Ubuntu, python3-venv is a separate package and is installed here when missing.
set -euo pipefail
py=${1:-python3}
if ! command -v "$py" >/dev/null; then
  echo "twinwatch needs Python 3.11 or 3.12 ($py not found): apt-get install python3" >&2; exit 2
fi
if ! "$py" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))'; then
  echo "twinwatch needs Python 3.11 or 3.12 (bytewax 0.21.1 has no wheels for others);" \
       "found $("$py" --version). Run: make PYTHON=python3.11 ..." >&2; exit 2
fi
if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "python${ver}-venv"
fi
