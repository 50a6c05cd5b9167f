#!/usr/bin/env bash
# Install the Debian packages the tests need besides the services: headless Chromium, which
# renders the incident report to a PNG (tests/test_analysis_report.py).
#
#   scripts/install-test-tools.sh
#
# Only missing packages are installed (apt-get update runs only then). Needs root or sudo.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "install-test-tools.sh: chromium present"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install-test-tools.sh: need root or sudo to install: chromium" >&2
    exit 1
fi
echo "install-test-tools.sh: installing chromium"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
command -v chromium >/dev/null 2>&1 || { echo "install-test-tools.sh: chromium still missing" >&2; exit 1; }
