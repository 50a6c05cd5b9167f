#!/usr/bin/env bash
# Install the Debian packages whose binaries twinwatch/app/services.py runs.
#
#   scripts/install-services.sh [influxdb|mosquitto|alertmanager|victoriametrics|prometheus|chromium ...]
#
# Default: all the services (chromium, for the report test, only when named). Only missing packages are installed (apt-get update runs once, and
# only if something is missing). Needs root or sudo.
#
# The packages' maintainer scripts may try to start their daemons via invoke-rc.d. That is
# harmless: twinwatch never uses those daemons (it runs its own instances on free loopback
# ports with project-local data dirs) and never stops them.
set -euo pipefail

ALL=(influxdb mosquitto alertmanager victoriametrics prometheus)

package_of() {
    case "$1" in
        influxdb) echo "influxdb /usr/bin/influxd" ;;
        mosquitto) echo "mosquitto /usr/sbin/mosquitto" ;;
        alertmanager) echo "prometheus-alertmanager /usr/bin/prometheus-alertmanager" ;;
        victoriametrics) echo "victoria-metrics /usr/bin/victoria-metrics" ;;
        prometheus) echo "prometheus /usr/bin/prometheus" ;;
        # not a service: mosquitto_sub runs the compose broker's healthcheck in tests/e2e
        mosquitto-clients) echo "mosquitto-clients /usr/bin/mosquitto_sub" ;;
        # not a service: headless Chromium renders the incident report in tests/test_analysis_report.py
        chromium) echo "chromium /usr/bin/chromium" ;;
        *) echo "install-services.sh: unknown name '$1' (known: ${ALL[*]} mosquitto-clients chromium)" >&2; return 1 ;;
    esac
}

if [ "$#" -eq 0 ]; then
    set -- "${ALL[@]}"
fi

missing=()
for svc in "$@"; do
    read -r pkg bin < <(package_of "$svc") || exit 2
    if command -v "$bin" >/dev/null 2>&1; then
        echo "install-services.sh: $svc: $bin present"
    else
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-services.sh: nothing to install"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install-services.sh: need root or sudo to install: ${missing[*]}" >&2
    exit 1
fi

echo "install-services.sh: installing ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

# Verify.
status=0
for svc in "$@"; do
    read -r pkg bin < <(package_of "$svc")
    if ! command -v "$bin" >/dev/null 2>&1; then
        echo "install-services.sh: $svc: $bin still missing after installing $pkg" >&2
        status=1
    fi
done
exit "$status"
