#!/usr/bin/env bash
# Run moodcam on this machine: set up .venv (device side only, no TensorFlow) and start the
# daemon with built-in defaults. No camera -> a sample source built from a real face photo;
# no broker -> windows are printed and spooled, then flushed once a broker is reachable.
# Arguments go to `moodcam run` (e.g. --config FILE, --duration 120).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[litert,sample]"
exec .venv/bin/moodcam run "$@"
