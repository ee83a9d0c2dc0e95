#!/usr/bin/env bash
# The real services the tests use: Mosquitto (the MQTT bridge's broker).
# Installed from Debian packages when missing and this runs as root;
# otherwise the tests that need it say so and are skipped.
set -euo pipefail
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
else
  echo "edgefc: mosquitto is not installed (apt-get install mosquitto); the MQTT tests will be skipped" >&2
fi
