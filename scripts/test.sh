#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it all:
# lint, format check, type check, and pytest (real Mosquitto and a real NATS cluster, real
# ONNX files, systemd's and Prometheus' own checkers).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need_apt+=(nats-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
echo "== installing streamd with the train and test extras"
# torch first, pinned: this exact version is the CPU build; anything else pulls CUDA.
$PY -m pip install -q --disable-pip-version-check torch==2.13.0
$PY -m pip install -q --disable-pip-version-check -e '.[train,test]'

echo "== ruff"
$PY -m ruff check streamd training tests bench
$PY -m ruff format --check streamd training tests bench
echo "== mypy (streamd/)"
$PY -m mypy streamd
echo "== the CLI from a built wheel on CPython 3.10 and 3.13"
bash scripts/smoke.sh
echo "== pytest"
$PY -m pytest -q "$@"
