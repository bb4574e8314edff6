#!/usr/bin/env bash
# Install streamd (runtime only: no torch) and run the demo: a broker on loopback
# (Mosquitto when installed, else the pure-Python amqtt broker from the 'broker' extra),
# simulated sensors with injected anomalies, the daemon with the default model, alerts
# printed as they arrive, then a summary, a real scrape of /metrics and a picture. About a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras="demo"
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || extras="demo,broker"
$PY -m pip install -q --disable-pip-version-check -e ".[${extras}]"
exec $PY -m streamd.tools.demo "$@"
