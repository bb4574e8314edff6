#!/usr/bin/env bash
# Install streamd as a systemd service: a virtual environment under /opt/streamd, the
# default model, an example config under /etc/streamd and the unit. Safe to run again
# (upgrades the package and model, never overwrites your config).
#
#   sudo deploy/install.sh                 install or upgrade
#   sudo deploy/install.sh --uninstall     remove the unit, venv and model (config and
#                                          state stay; add --purge to remove them too)
#   deploy/install.sh --root DIR           everything under DIR, paths pointing there,
#                                          no systemctl (try it out, or test it)
#   --system-site-packages                 let the venv use packages already installed
#                                          (boxes without PyPI access)
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=""
ACTION=install
PURGE=0
VENV_ARGS=()
PYTHON=${PYTHON:-python3}
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$(realpath -m "$2"); shift 2 ;;
    --uninstall) ACTION=uninstall; shift ;;
    --purge) PURGE=1; shift ;;
    --system-site-packages) VENV_ARGS+=(--system-site-packages); shift ;;
    -h|--help) usage 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

PREFIX="$ROOT/opt/streamd"
ETC="$ROOT/etc/streamd"
UNITDIR="$ROOT/etc/systemd/system"
STATE="$ROOT/var/lib/streamd"
UNIT="$UNITDIR/streamd.service"

have_systemd() { [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or use --root DIR to install into a scratch tree)" >&2
  exit 1
fi

if [ "$ACTION" = uninstall ]; then
  if have_systemd; then
    systemctl disable --now streamd.service 2>/dev/null || true
  fi
  rm -f "$UNIT"
  rm -rf "$PREFIX/venv" "$PREFIX/models"
  rmdir "$PREFIX" 2>/dev/null || true
  if [ "$PURGE" = 1 ]; then
    rm -rf "$ETC" "$STATE"
  fi
  have_systemd && systemctl daemon-reload
  echo "streamd removed$([ "$PURGE" = 1 ] && echo ", with its config and state" || echo "; config in $ETC kept")"
  exit 0
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install.sh: streamd needs Python >= 3.11 ($PYTHON is $("$PYTHON" -V 2>&1))" >&2; exit 1; }

echo "== virtual environment $PREFIX/venv"
mkdir -p "$PREFIX/models"
[ -x "$PREFIX/venv/bin/python" ] || "$PYTHON" -m venv "${VENV_ARGS[@]}" "$PREFIX/venv"
"$PREFIX/venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade "$SRC"

echo "== model $PREFIX/models/default.onnx"
install -m 0644 "$SRC/models/default.onnx" "$PREFIX/models/default.onnx"

echo "== config $ETC"
install -d -m 0755 "$ETC"
sed -e "s#/opt/streamd#$PREFIX#g" -e "s#/etc/streamd#$ETC#g" "$SRC/deploy/streamd.toml" \
  > "$ETC/streamd.toml.example"
chmod 0644 "$ETC/streamd.toml.example"
if [ ! -e "$ETC/streamd.toml" ]; then
  cp "$ETC/streamd.toml.example" "$ETC/streamd.toml"
else
  echo "   kept your $ETC/streamd.toml (the new example is streamd.toml.example)"
fi
if [ ! -e "$ETC/mqtt-password" ]; then
  install -m 0600 /dev/null "$ETC/mqtt-password"
fi

echo "== unit $UNIT"
install -d -m 0755 "$UNITDIR"
sed -e "s#/opt/streamd#$PREFIX#g" -e "s#/etc/streamd#$ETC#g" \
  "$SRC/deploy/systemd/streamd.service" > "$UNIT"
chmod 0644 "$UNIT"

"$PREFIX/venv/bin/streamd" run --config "$ETC/streamd.toml" --check-config

if have_systemd; then
  systemctl daemon-reload
  echo "installed. Start it with: systemctl enable --now streamd"
  echo "then: systemctl status streamd; journalctl -u streamd -f"
else
  echo "installed under ${ROOT:-/} (systemd not used)"
fi
