#!/usr/bin/env bash
# The CLI from a built wheel (not the editable checkout), in fresh venvs on the oldest and the
# newest CPython streamd supports, in empty folders: what `pip install streamd` users get.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$PY -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/dist" . >/dev/null
wheel=$(ls "$work"/dist/streamd-*.whl)

find_python() {  # pyenv's python3.X, else one on PATH that runs (not a bare pyenv shim)
  local root exe
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  exe=$(ls -d "$root"/versions/"$1".*/bin/python"$1" 2>/dev/null | sort -V | tail -1)
  [ -z "$exe" ] && exe=$(command -v "python$1" 2>/dev/null || true)
  if [ -n "$exe" ] && "$exe" -c pass 2>/dev/null; then echo "$exe"; fi
}

expect() {  # expect CODE COMMAND...: run it, check its exit code, show its output
  local want=$1; shift
  set +e; out=$("$@" 2>&1); got=$?; set -e
  printf '   $ %s  -> %s\n%s\n' "$*" "$got" "$(printf '%s' "$out" | tail -3 | sed 's/^/     /')"
  if [ "$got" != "$want" ]; then echo "== smoke: expected exit code $want"; exit 1; fi
  if printf '%s' "$out" | grep -q Traceback; then echo "== smoke: a traceback"; exit 1; fi
}

for v in 3.10 3.13; do
  exe=$(find_python "$v")
  if [ -z "$exe" ]; then echo "== smoke: no python$v found (pyenv or PATH)"; exit 1; fi
  echo "== smoke on $("$exe" --version) from $(basename "$wheel")"
  "$exe" -m venv "$work/venv$v"
  "$work/venv$v/bin/pip" install -q --disable-pip-version-check "$wheel" >"$work/pip$v.log" 2>&1 \
    || { cat "$work/pip$v.log"; exit 1; }
  bin="$work/venv$v/bin"
  mkdir "$work/empty$v"
  cd "$work/empty$v"
  expect 0 "$bin/streamd" --version
  expect 0 "$bin/streamd" run --check-config
  "$bin/streamd" config > streamd.toml
  expect 0 "$bin/streamd" run --check-config --config streamd.toml
  expect 2 env STREAMD_MQTT__TOPICS='a/#' "$bin/streamd" run --check-config
  expect 0 "$bin/streamd" inspect "$("$bin/python" -c 'from streamd.config import PACKAGED_MODEL; print(PACKAGED_MODEL)')"
  expect 3 "$bin/streamd" train --data x.csv --out m.onnx --report r
  cd - >/dev/null
done
