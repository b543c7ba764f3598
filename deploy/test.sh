#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian / Raspberry Pi OS machine and run them:
# system packages (mosquitto for the broker tests, systemd for unit checks), the dev venv
# (.venv: device + training + dev tools), the Pi-constraints venv (.venv-pi: numpy<2,
# OpenCV 4.11, both TFLite runtimes), then lint, type checks and pytest in both.
# Extra arguments go to the main pytest run (e.g. -k mqtt).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)  # tests/test_push.py: SSH "hosts" on loopback
# tests/pg.py: a real PostgreSQL for the analyst side (initdb/pg_ctl, run unprivileged).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need+=(postgresql)
# tests/test_report_html.py, tests/test_e2e*: the HTML report in a real headless browser.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "== apt: installing ${need[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

venv() {  # venv DIR PIP-ARGS...: create once, then (re)install the project into it
  local dir=$1; shift
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip
  "$dir/bin/python" -m pip install -q "$@"
}

echo "== dev venv (.venv)"
venv .venv -e ".[train,dev,litert,analyst]"
echo "== Pi-constraints venv (.venv-pi: numpy<2, OpenCV 4.11, ai-edge-litert + tflite-runtime)"
venv .venv-pi -c deploy/constraints-pi.txt -e ".[litert,tflite]" pytest pytest-timeout \
  scikit-image jsonschema
.venv-pi/bin/python -c 'import numpy, cv2; print("   numpy", numpy.__version__, "opencv", cv2.__version__)'

echo "== ruff"
.venv/bin/ruff check device training analyst tests deploy
echo "== mypy"
.venv/bin/mypy device training analyst tests deploy/*.py

echo "== pytest (dev venv)"
.venv/bin/python -m pytest -p no:cacheprovider "$@"
echo "== pytest (Pi-constraints venv: device tests only)"
# The 2-minute soak runs once, in the dev venv (deploy/soak.py runs it for longer).
# The analyst side (analyst/, extra `analyst`) is not installed in the Pi venv.
analyst_tests=(--ignore-glob='tests/test_db*' --ignore-glob='tests/test_collect*'
  --ignore-glob='tests/test_grafana*' --ignore-glob='tests/test_report*'
  --ignore-glob='tests/test_nowplaying*' --ignore-glob='tests/test_e2e*'
  --ignore=tests/test_soak.py)
.venv-pi/bin/python -m pytest -p no:cacheprovider --ignore-glob='tests/test_training_*' \
  "${analyst_tests[@]}" tests
echo "== emulated Pi (aarch64 root under qemu: install.sh + smoke run, compared with x86)"
as_root bash deploy/pi-emulated.sh
