#!/usr/bin/env bash
# The real services the tests use: Mosquitto (the MQTT bridge's broker) and
# Chromium (the status page is checked in a real headless browser).
# Installed from Debian packages when missing and this runs as root;
# otherwise the tests that need them say so and are skipped.
set -euo pipefail
missing=()
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  missing+=(mosquitto mosquitto-clients)
fi
if ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "edgefc: not installed: ${missing[*]} (apt-get install ${missing[*]}); the tests that need them will be skipped" >&2
fi
