#!/usr/bin/env bash
# Install (or upgrade, or remove) moodcam on a Raspberry Pi. Run as root; re-running
# upgrades and changes nothing that is already right. See docs/operators.md.
#
#   sudo deploy/install.sh                        install / upgrade, start the service
#   sudo deploy/install.sh --detector-file F.onnx offline: YuNet from a file, not the web
#   sudo deploy/install.sh --allow-haar           no YuNet (offline): the Haar cascade instead
#   sudo deploy/install.sh --uninstall            remove all but config and spool
#   sudo deploy/install.sh --uninstall --purge    remove everything
#
# --root PREFIX puts every path under PREFIX (and skips apt, the user and systemd), so
# the whole install runs for real in a temporary directory; there the config written
# names the paths under PREFIX so `moodcam run --config PREFIX/etc/moodcam/moodcam.toml`
# works as is. Python packages come from deploy/requirements-pi.txt (every one pinned with
# its sha256: pip --require-hashes; deploy/lock-requirements.py regenerates it). pip honours
# PIP_* variables and --pip-args, e.g. for a local wheelhouse (same hashes):
#   --pip-args "--no-index --find-links /media/usb/wheels"
set -euo pipefail

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --root PREFIX        install under PREFIX (tests, images); no apt, user or systemd
  --source DIR         moodcam source tree to install (default: this script's project)
  --no-apt             do not run apt-get (packages are already there, or no network)
  --tflite-runtime     also install tflite-runtime (ai-edge-litert is always installed)
  --detector-file F    YuNet face_detection_yunet_2023mar.onnx to use instead of fetching it
  --yunet-url URL      where to fetch YuNet from (a mirror; the sha256 is checked all the same)
  --allow-haar         if YuNet cannot be fetched or its sha256 is wrong, use the Haar cascade
                       (less accurate) instead of failing
  --device-id ID       device id for a new config (default: the host name)
  --python PY          interpreter the venv is made from (default: python3)
  --pip-args ARGS      extra pip arguments (e.g. an offline wheelhouse)
  --uninstall          remove moodcam, keeping /etc/moodcam and the spool
  --purge              with --uninstall: remove the config, spool and user too
EOF
}

# Pinned to the commit that added this file (opencv_zoo #151), not a moving branch.
YUNET_URL=https://github.com/opencv/opencv_zoo/raw/f12e12798e8314f7c074a6656816c048dcc95b7a/models/face_detection_yunet/face_detection_yunet_2023mar.onnx
YUNET_SHA256=8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4
YUNET_NAME=face_detection_yunet_2023mar.onnx

ROOT= SRC= APT=1 TFLITE=0 DETECTOR_FILE= DEVICE_ID= PY=python3 PIP_ARGS= MODE=install PURGE=0
ALLOW_HAAR=0
while [ $# -gt 0 ]; do
  case $1 in
    --root) ROOT=${2:?--root needs a directory}; shift ;;
    --source) SRC=${2:?--source needs a directory}; shift ;;
    --no-apt) APT=0 ;;
    --tflite-runtime) TFLITE=1 ;;
    --detector-file) DETECTOR_FILE=${2:?--detector-file needs a file}; shift ;;
    --yunet-url) YUNET_URL=${2:?--yunet-url needs a URL}; shift ;;
    --allow-haar) ALLOW_HAAR=1 ;;
    --device-id) DEVICE_ID=${2:?--device-id needs a value}; shift ;;
    --python) PY=${2:?--python needs an interpreter}; shift ;;
    --pip-args) PIP_ARGS=${2?--pip-args needs a value}; shift ;;
    --uninstall) MODE=uninstall ;;
    --purge) PURGE=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || ROOT=
fi
[ -n "$ROOT" ] || [ "$(id -u)" = 0 ] || die "run as root (sudo $0 $*), or use --root PREFIX"
[ "$PURGE" = 0 ] || [ "$MODE" = uninstall ] || die "--purge goes with --uninstall"
SRC=$(cd "${SRC:-$(dirname "$0")/..}" && pwd)
[ -f "$SRC/pyproject.toml" ] && [ -d "$SRC/device" ] || die "$SRC is not a moodcam source tree (--source)"
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
if [ -n "$DETECTOR_FILE" ] && [ "$MODE" = install ]; then  # checked before anything changes
  [ -f "$DETECTOR_FILE" ] || die "--detector-file $DETECTOR_FILE: no such file"
  [ "$(sha_of "$DETECTOR_FILE")" = "$YUNET_SHA256" ] \
    || die "--detector-file $DETECTOR_FILE: sha256 is not YuNet 2023mar's ($YUNET_SHA256)"
fi

OPT=$ROOT/opt/moodcam
VENV=$OPT/venv
ETC=$ROOT/etc/moodcam
CONF=$ETC/moodcam.toml
STATE=$ROOT/var/lib/moodcam
STORE=$STATE/models
DETECTOR=$STATE/detector/$YUNET_NAME
UNITDIR=$ROOT/etc/systemd/system
UNIT=$UNITDIR/moodcam.service
WANTS=$UNITDIR/multi-user.target.wants/moodcam.service

# systemctl only where systemd really runs this machine: not under --root, not in a
# chroot or a container without systemd (the emulated-Pi build runs us in a chroot).
# MOODCAM_INSTALL_SYSTEMD=DIR (tests only; CI containers have no systemd) runs DIR's
# systemctl and journalctl instead, under --root too, to prove what a failed start does.
SYSTEMD_BIN=${MOODCAM_INSTALL_SYSTEMD:-}
systemctl() { if [ -n "$SYSTEMD_BIN" ]; then "$SYSTEMD_BIN/systemctl" "$@"; else command systemctl "$@"; fi; }
journalctl() { if [ -n "$SYSTEMD_BIN" ]; then "$SYSTEMD_BIN/journalctl" "$@"; else command journalctl "$@"; fi; }
in_chroot() {  # a chroot may see the host's /run/systemd through a bind mount
  if command -v systemd-detect-virt >/dev/null; then systemd-detect-virt -q --chroot 2>/dev/null; return; fi
  [ -r /proc/1/root ] && [ "$(stat -c %d:%i /)" != "$(stat -Lc %d:%i /proc/1/root 2>/dev/null)" ]
}
systemd_running() {
  [ -n "$SYSTEMD_BIN" ] && return 0
  [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null && ! in_chroot
}
no_systemd_reason() {
  if [ -n "$ROOT" ]; then echo "--root given"
  elif in_chroot; then echo "running in a chroot"
  else echo "systemd is not running here (container?)"; fi
}

# -- uninstall ---------------------------------------------------------------------------
if [ "$MODE" = uninstall ]; then
  say "removing moodcam${ROOT:+ from $ROOT}"
  if systemd_running; then
    systemctl disable --now moodcam 2>/dev/null || true
  else
    note "not stopping a service: $(no_systemd_reason)"
  fi
  rm -f "$WANTS" "$UNIT"
  rm -rf "$UNITDIR/moodcam.service.d"
  if systemd_running; then systemctl daemon-reload; fi
  rm -rf "$OPT" "$STORE" "$STATE/detector"
  if [ "$PURGE" = 1 ]; then
    rm -rf "$ETC" "$STATE"
    if [ -z "$ROOT" ] && getent passwd moodcam >/dev/null; then userdel moodcam || true; fi
    note "purged: config, spool, models and the moodcam user are gone"
  else
    note "kept: $ETC (config) and $STATE (spool); --uninstall --purge removes them too"
  fi
  exit 0
fi

# -- packages ----------------------------------------------------------------------------
if [ -n "$ROOT" ] && [ "$APT" = 1 ]; then
  note "--root: skipping apt (it would change this machine, not $ROOT)"
  APT=0
fi
if [ "$APT" = 1 ]; then
  command -v apt-get >/dev/null || die "apt-get not found: install python3-venv yourself and pass --no-apt"
  say "apt: python3-venv, python3-picamera2"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  pkgs=(python3-venv ca-certificates)
  # picamera2 is Raspberry Pi OS only (not in Debian): without it moodcam still runs
  # with USB/V4L2 cameras, video files and streams.
  if apt-cache show python3-picamera2 >/dev/null 2>&1; then
    pkgs+=(python3-picamera2)
  else
    note "python3-picamera2 is not in the apt index: no Pi camera package (not Raspberry Pi OS?);"
    note "USB cameras, video files and streams still work"
  fi
  # --no-install-recommends: on Lite, picamera2's recommends pull in a desktop's worth.
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi

# -- user ---------------------------------------------------------------------------------
if [ -z "$ROOT" ]; then
  getent group video >/dev/null || groupadd --system video
  if ! getent passwd moodcam >/dev/null; then
    useradd --system --user-group --groups video --home-dir /var/lib/moodcam \
      --no-create-home --shell /usr/sbin/nologin moodcam
    say "created system user moodcam (group video)"
  else
    usermod -aG video moodcam
  fi
fi

# -- venv ---------------------------------------------------------------------------------
extras=litert
[ "$TFLITE" = 0 ] || extras=litert,tflite
say "venv $VENV (--system-site-packages), moodcam[$extras] from deploy/requirements-pi*.txt (hashes)"
mkdir -p "$OPT"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv --system-site-packages "$VENV" \
    || die "cannot create a venv with $PY (apt-get install python3-venv)"
fi
reqs=(-r "$SRC/deploy/requirements-pi.txt")
[ "$TFLITE" = 0 ] || reqs+=(-r "$SRC/deploy/requirements-pi-tflite.txt")
# Every dependency pinned and hash-checked; then moodcam itself from the source tree,
# built with the hashed setuptools (no unhashed build environment from the index).
# shellcheck disable=SC2086  # PIP_ARGS is a list of arguments on purpose
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
  --only-binary=:all: $PIP_ARGS "${reqs[@]}" \
  || die "pip could not install the pinned dependencies (deploy/requirements-pi.txt) into $VENV (network? a wheel whose sha256 changed? try --pip-args with a wheelhouse)"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
  --no-build-isolation $PIP_ARGS "$SRC" \
  || die "pip could not install moodcam from $SRC into $VENV"
cp "$SRC/README.md" "$OPT/README.md" 2>/dev/null || true
note "chosen: $("$VENV/bin/moodcam" version)"
"$VENV/bin/python" -c 'import picamera2' 2>/dev/null \
  && note "picamera2: available (from apt)" \
  || note "picamera2: not available (no Pi camera support; USB/V4L2, files and streams work)"

# -- face detector --------------------------------------------------------------------------
# The state directory belongs to the daemon's user: root writes the detector through a
# descriptor of a root-owned directory (device/safefs.py), never through a path there.
place_detector() {  # FILE: already sha256-checked
  "$VENV/bin/python" -m device.safefs install-file "$1" "$(dirname "$DETECTOR")" "$YUNET_NAME" \
    || die "cannot place the detector in $(dirname "$DETECTOR")"
}
mkdir -p "$STATE"
group=()  # what root's directories in the state directory let read: the daemon's group
[ -n "$ROOT" ] || group=(--group moodcam)
detdir=$(dirname "$DETECTOR")
if [ -d "$detdir" ] && [ ! -L "$detdir" ] && [ "$(stat -c %u "$detdir")" != 0 ] && [ "$(id -u)" = 0 ]; then
  "$VENV/bin/python" -m device.safefs secure-tree "$detdir" "${group[@]}" \
    || die "cannot take over $detdir from the daemon's user"
fi
if [ -n "$DETECTOR_FILE" ]; then
  place_detector "$DETECTOR_FILE"
  say "detector: YuNet from $DETECTOR_FILE (sha256 verified)"
elif [ -f "$DETECTOR" ] && [ "$(sha_of "$DETECTOR")" = "$YUNET_SHA256" ]; then
  say "detector: YuNet already in place (sha256 verified)"
else
  say "detector: fetching YuNet from $YUNET_URL"
  dl=$(mktemp -d "${TMPDIR:-/tmp}/moodcam-yunet.XXXXXX")
  if "$VENV/bin/python" - "$YUNET_URL" "$dl/$YUNET_NAME" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], "wb") as f:
    f.write(r.read(16 << 20))
EOF
  then got=$(sha_of "$dl/$YUNET_NAME"); else got="(download failed)"; fi
  if [ "$got" = "$YUNET_SHA256" ]; then
    place_detector "$dl/$YUNET_NAME"
    rm -rf "$dl"
    note "sha256 verified"
  elif [ "$ALLOW_HAAR" = 1 ]; then
    rm -rf "$dl"
    note "YuNet not installed: sha256 $got is not $YUNET_SHA256; --allow-haar: the Haar"
    note "cascade is used (less accurate); later: install.sh --detector-file $YUNET_NAME"
  else
    rm -rf "$dl"
    die "YuNet from $YUNET_URL: sha256 $got is not $YUNET_SHA256 (wrong file, proxy or mirror). Offline: --detector-file $YUNET_NAME; or --allow-haar for the less accurate Haar cascade"
  fi
fi

# -- config -------------------------------------------------------------------------------
mkdir -p "$ETC" "$STATE"
if [ -e "$CONF" ]; then
  say "config: keeping $CONF"
else
  # The host name made a valid topic level by the daemon's own rule.
  [ -n "$DEVICE_ID" ] || DEVICE_ID=$("$VENV/bin/python" -c \
    'from device.assemble import hostname_device_id; print(hostname_device_id())')
  "$VENV/bin/python" - "$SRC/deploy/moodcam.example.toml" "$CONF.part" "$DEVICE_ID" "$ROOT" <<'EOF'
import re, sys
src, out, device_id, root = sys.argv[1:]
text = open(src).read()
text = re.sub(r'(?m)^device_id = ".*"$', f'device_id = "{device_id}"', text, count=1)
if root:  # point the file's paths into the prefix, and the model at the store there
    text = re.sub(r'"(/var/lib/moodcam|/etc/moodcam)/', lambda m: f'"{root}{m[1]}/', text)
    text = re.sub(r'(?m)^# (dir = ".*")$', r"\1", text, count=1)
open(out, "w").write(text)
EOF
  chmod 0640 "$CONF.part" && mv -f "$CONF.part" "$CONF"
  say "config: wrote $CONF (device_id = \"$DEVICE_ID\"); edit [mqtt] to point at your broker"
fi
"$VENV/bin/moodcam" check-config "$CONF" || die "$CONF is invalid (see above); fix it and re-run"

# -- ownership ----------------------------------------------------------------------------
# The daemon's user owns the state directory (its spool) and nothing root writes in it:
# the model store and the detector are root's (group moodcam, read-only to the daemon).
if [ -z "$ROOT" ]; then
  chown moodcam:moodcam "$STATE"
  chmod 0750 "$STATE"
  chown root:moodcam "$ETC" "$CONF"
  chmod 0750 "$ETC"
fi
if [ -d "$STORE" ] && [ ! -L "$STORE" ] && [ "$(stat -c %u "$STORE")" != 0 ] && [ "$(id -u)" = 0 ]; then
  say "model store: taking $STORE over from the daemon's user (root-owned from now on)"
  "$VENV/bin/python" -m device.safefs secure-tree "$STORE" "${group[@]}" \
    || die "cannot take over $STORE"
fi

# -- model --------------------------------------------------------------------------------
key=$("$VENV/bin/python" -c 'import sys; from device.config import load_config
print(load_config(sys.argv[1]).model.public_key_file or "")' "$CONF")
if [ -L "$STORE/current" ] && [ -d "$STORE/current" ]; then
  say "model: keeping the current one ($(readlink "$STORE/current"))"
elif [ -n "$key" ]; then
  say "model: a public key is configured ($key): the unsigned shipped model is not installed"
  note "the daemon runs the model inside the moodcam package until you push a signed bundle"
else
  say "model: installing the shipped model into $STORE"
  bundle=$(mktemp "${TMPDIR:-/tmp}/moodcam-shipped.XXXXXX.tar")
  trap 'rm -f "$bundle"' EXIT
  "$VENV/bin/python" -c 'import sys; from pathlib import Path; from device.bundle import write_bundle
write_bundle(Path(sys.argv[1]), Path(sys.argv[2]))' "$bundle" "$SRC/models"
  # The shipped model comes with the package, not from the fleet: no key configured yet.
  "$VENV/bin/moodcam" model install "$bundle" --config "$CONF" --store "$STORE" \
    --no-reload --allow-unsigned
fi

# -- network allow list -------------------------------------------------------------------
# The unit allows loopback and private networks only; a broker (or DNS server) with a
# public address gets a drop-in, rewritten from the config at every run.
dropin=$UNITDIR/moodcam.service.d/broker.conf
allow=$("$VENV/bin/python" - "$CONF" <<'EOF'
import ipaddress, socket, sys
from device.config import load_config
cfg = load_config(sys.argv[1])
hosts = [cfg.mqtt.host] if cfg.mqtt.enabled else []
try:
    hosts += [ln.split()[1] for ln in open("/etc/resolv.conf") if ln.startswith("nameserver")]
except OSError:
    pass
found = set()
for h in hosts:
    try:
        found |= {ipaddress.ip_address(a[4][0].split("%")[0]) for a in socket.getaddrinfo(h, None)}
    except (OSError, ValueError):
        print(f"   network: cannot resolve {h} here, so no allow-list entry for it (a public"
              " broker or DNS server needs one: re-run install.sh where it resolves)")
print("ALLOW", " ".join(sorted(str(a) for a in found if a.is_global)))
EOF
)
grep -v '^ALLOW' <<<"$allow" || true
allow=$(sed -n 's/^ALLOW *//p' <<<"$allow")
if [ -n "$allow" ]; then
  mkdir -p "$(dirname "$dropin")"
  printf '# Written by deploy/install.sh from mqtt.host and /etc/resolv.conf; re-run it after\n# changing them.\n[Service]\nIPAddressAllow=%s\n' "$allow" > "$dropin"
  say "network: the unit may also reach $allow ($dropin)"
else
  rm -f "$dropin"
fi

# -- service ------------------------------------------------------------------------------
mkdir -p "$(dirname "$WANTS")"
install -m 0644 "$SRC/systemd/moodcam.service" "$UNIT"
ln -sfn /etc/systemd/system/moodcam.service "$WANTS"  # what `systemctl enable` does
if systemd_running; then
  systemctl daemon-reload
  systemctl enable moodcam >/dev/null
  say "starting moodcam"
  if ! systemctl restart moodcam; then
    journalctl -u moodcam -n 30 --no-pager >&2 || true
    die "moodcam failed to start (the journal's last lines are above; fix and re-run, or: journalctl -u moodcam -e)"
  fi
  systemctl --no-pager status moodcam || true
else
  say "service: installed and enabled, not started: $(no_systemd_reason)"
  note "start it with: systemctl start moodcam (or $VENV/bin/moodcam run --config $CONF)"
fi

say "MQTT topics"
"$VENV/bin/python" - "$CONF" <<'EOF'
import sys
from device.config import load_config
from device.topics import Topics
cfg = load_config(sys.argv[1])
t = Topics(cfg.mqtt.topic_prefix, cfg.device_id)
where = f"{cfg.mqtt.host}:{cfg.mqtt.port}" if cfg.mqtt.enabled else "nowhere (mqtt.enabled = false)"
print(f"   broker {where}")
print(f"   {t.availability}  retained: online / offline (last will) / stopped")
print(f"   {t.status}  retained JSON: model sha256, camera, fps, spool")
print(f"   {t.mood}  one JSON window per {cfg.aggregate.window_s} s (QoS 1)")
EOF
say "done"
