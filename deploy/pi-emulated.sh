#!/usr/bin/env bash
# The Pi install, for real, on an emulated Raspberry Pi (CI runs this; needs root).
#
# A Debian bookworm arm64 root (what Raspberry Pi OS 64-bit is built on: Python 3.11) is
# made with debootstrap and run under qemu-user-static through binfmt_misc. Inside it the
# project's installer builds the Pi venv from the package index (aarch64 wheels of numpy<2,
# OpenCV 4.11, ai-edge-litert, tflite-runtime), then a smoke run (version, check-config,
# classify with both runtimes, a short replay) must give the same labels as x86 does with
# the same runtime. The emulated CPU is the Pi 4's (Cortex-A72, also in /proc/cpuinfo).
# Last, the installed daemon runs traced (QEMU_STRACE) through its fault paths (camera lost,
# SIGHUP reload, spool disk full, broker crash: deploy/pi_faults.py) and its aarch64 system
# calls are checked against systemd/moodcam.service's SystemCallFilter (tests/seccomp.py
# --check-trace).
#
# The base root is cached (keyed by a hash of the debootstrap parameters) and never
# modified: each run installs into a throwaway overlay on top of it, so every run does
# the install from scratch; only pip's download cache is kept between runs.
#
# Usage: deploy/pi-emulated.sh [--rebuild] [--keep] [--bench]   run (build the root if needed)
#        deploy/pi-emulated.sh --clean                  drop the cache and exit
#   --rebuild  drop the cached root (and pip cache) first: a cold run
#   --keep     keep this run's overlay and logs (path printed at the end)
#   --bench    then `moodcam bench` (old, old on onnxruntime, new; both runtimes) in the root and on
#              x86 on the same frames: a relative check only (qemu's timing is not a Pi's);
#              (it takes tens of minutes under qemu). MOODCAM_PI_BENCH_MODEL=DIR, with or
#              without --bench: that model's invoke cost a face against the shipped one's,
#              on both machines (e.g. the previous model, from git history)
# Environment: MOODCAM_PI_CACHE (default /var/cache/moodcam-pi), MOODCAM_PI_MIRROR (default:
# the Debian mirror of the host's apt sources), MOODCAM_SHARED (default ../shared),
# MOODCAM_HOST_PYTHON, MOODCAM_HOST_PYTHON_TFLITE (the x86 references: deploy/test.sh's
# .venv for ai-edge-litert and .venv-pi for tflite-runtime, which has no numpy 2 build).
set -Eeuo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${MOODCAM_PI_CACHE:-/var/cache/moodcam-pi}
shared=${MOODCAM_SHARED:-$repo/../shared}
host_py=${MOODCAM_HOST_PYTHON:-$repo/.venv/bin/python}
host_py_tflite=${MOODCAM_HOST_PYTHON_TFLITE:-$repo/.venv-pi/bin/python}

SUITE=bookworm ARCH=arm64 VARIANT=minbase
INCLUDE=python3,python3-venv,python3-pip,ca-certificates
RECIPE=1  # bump when build_root (deploy/pi-root.sh) changes what goes into the root
# qemu's default "max" CPU made XNNPACK return wrong int8 outputs: emulate the Pi 4's core.
export QEMU_CPU=cortex-a72
YUNET_SHA256=8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4
CACHE_TAG=.moodcam-pi-cache  # only a directory holding this is ever deleted by --clean

clean=0 rebuild=0 keep=0 bench=0
for a in "$@"; do
  case $a in
    --clean) clean=1 ;;
    --bench) bench=1 ;;
    --rebuild) rebuild=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,/^set -E/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "pi-emulated: unknown argument $a (try --help)" >&2; exit 2 ;;
  esac
done

# Signals become an exit, so the EXIT traps below always unmount what they mounted.
trap 'exit 130' INT
trap 'exit 143' TERM
t0=$(date +%s)
nstep=0
child=  # a host process (debootstrap) to end if this script is interrupted
step() {
  nstep=$((nstep + 1))
  local t=$(($(date +%s) - t0))
  printf '== [%02d:%02d] %d. %s\n' $((t / 60)) $((t % 60)) "$nstep" "$*"
}
die() { echo "pi-emulated: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts): sudo $0 $*"

# Functions (mounts, deletion, the Debian mirror, the base root): deploy/pi-root.sh.
# shellcheck source=deploy/pi-root.sh
. "$repo/deploy/pi-root.sh"

if [ $clean = 1 ]; then
  if [ -e "$cache/.lock" ]; then exec 9<"$cache/.lock"; flock -w 7200 9; fi
  drop_cache
  echo "pi-emulated: cache $cache removed"
  exit 0
fi

# One run at a time per cache (CI jobs on the same machine share it).
mkdir -p "$cache"
touch "$cache/$CACHE_TAG"
exec 9>"$cache/.lock"
flock -w 7200 9 || die "another run holds $cache/.lock"
if [ $rebuild = 1 ]; then
  step "--rebuild: dropping the cached root and pip cache"
  for e in "$cache"/*; do safe_rm "$e"; done  # not the dotfiles: the lock we hold
fi
# Runs killed with SIGKILL leave their overlay (and maybe mounts) behind.
for d in "$cache"/run.*; do [ -e "$d" ] && safe_rm "$d"; done

# --- 1. host tools ------------------------------------------------------------------------
step "host: debootstrap, qemu-user-static, binfmt_misc"
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
if [ ${#need[@]} -gt 0 ]; then
  echo "   apt: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
    >/dev/null
fi
binfmt=/proc/sys/fs/binfmt_misc
if ! mountpoint -q $binfmt; then
  echo "   mounting binfmt_misc at $binfmt"
  mount -t binfmt_misc binfmt_misc $binfmt
fi
if ! head -1 $binfmt/qemu-aarch64 2>/dev/null | grep -qx enabled; then
  echo "   registering qemu-aarch64 with binfmt_misc"
  update-binfmts --enable qemu-aarch64
fi
head -1 $binfmt/qemu-aarch64 | grep -qx enabled || die "qemu-aarch64 is not enabled in $binfmt"
qemu_interp=$(awk '$1 == "interpreter" {print $2}' $binfmt/qemu-aarch64)
qemu_fixed=0  # flag F: the kernel opened the interpreter already, no copy needed in the root
awk '$1 == "flags:" && $2 ~ /F/ {f = 1} END {exit !f}' $binfmt/qemu-aarch64 && qemu_fixed=1
echo "   $(/usr/bin/qemu-aarch64-static --version | head -1); interpreter $qemu_interp" \
  "(flags $(awk '$1 == "flags:" {print $2}' $binfmt/qemu-aarch64)); QEMU_CPU=$QEMU_CPU"

# The host's Debian mirror, so the root is built from what the host already reaches.
mirror=${MOODCAM_PI_MIRROR:-$(host_uri $SUITE | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}
security=$(host_uri $SUITE-security | head -1)
security=${security:-http://deb.debian.org/debian-security}
mirror=${mirror%/} security=${security%/}
echo "   Debian mirror: $mirror (security: $security)"

# --- 2. the cached base root ---------------------------------------------------------------
key=$(printf '%s\n' "$RECIPE" "$SUITE" "$ARCH" "$VARIANT" "$INCLUDE" "$mirror" "$security" \
  "$(dpkg-query -W -f '${Version}' debootstrap)" | sha256sum | cut -c1-16)
base=$cache/root-$SUITE-$ARCH-$key
marker=.moodcam-pi-complete

if [ -f "$base/$marker" ]; then
  step "base root: cached at $base"
else
  step "base root: building $SUITE $ARCH ($VARIANT + $INCLUDE) at $base"
  [ -e "$base" ] && { echo "   half-built root found (no $marker): rebuilding"; safe_rm "$base"; }
  build_root
fi
echo "   $(du -sh --one-file-system "$base" | cut -f1), built $(cut -d' ' -f2 "$base/$marker")"

# --- 3. this run's overlay -----------------------------------------------------------------
run=$cache/run.$$
root=$run/root
cleanup() {
  local rc=$?
  set +e
  kill_inside "$run"
  umount_under "$run"
  if [ $keep = 1 ] && [ -e "$run" ]; then
    mv "$run" "$cache/kept.$$" && echo "pi-emulated: kept in $cache/kept.$$ (delete by hand)"
  else
    safe_rm "$run"
  fi
  exit $rc
}
trap cleanup EXIT
step "overlay root for this run, project and smoke inputs"
mkdir -p "$run"/{upper,ovl,root} "$cache/pip"
mount -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/ovl" "$root"
chroot_mounts "$root"
host_files "$root"
mkdir -p "$root/root/.cache/pip"
mount --bind "$cache/pip" "$root/root/.cache/pip"

# The project as the working tree has it (what the x86 reference's editable .venv runs):
# tracked and untracked files, not what .gitignore ignores.
src=/root/moodcam
mkdir -p "$root$src"
git -C "$repo" ls-files -z -c -o --exclude-standard --deduplicate | tar -C "$repo" --null -T - --ignore-failed-read -cf - 2>/dev/null |
  tar -C "$root$src" -xf -
echo "   project: $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD ||
  echo ' + local changes'), $(find "$root$src" -type f | wc -l) files -> $src"

# Smoke inputs, made on the host: the YuNet model, real face images, configs.
yunet=$shared/models/yunet/face_detection_yunet_2023mar.onnx
fer=$shared/data/fer2013.zip
[ -f "$yunet" ] || die "no $yunet (../shared is needed: the YuNet model)"
[ -f "$fer" ] || die "no $fer (../shared is needed: FER-2013 test images)"
echo "$YUNET_SHA256  $yunet" | sha256sum -c --quiet - || die "$yunet: wrong sha256"
for py in "$host_py" "$host_py_tflite"; do
  [ -x "$py" ] || die "no x86 reference venv at $py (deploy/test.sh makes it)"
done
host=$run/host
mkdir -p "$host"/{images,frames,out}
"$host_py" "$repo/deploy/pi_emulated.py" images "$host" "$fer" || die "cannot make the smoke images"
smoke=/root/smoke
mkdir -p "$root$smoke/out"
cp -r "$host/images" "$host/frames" "$root$smoke/"
cp "$yunet" "$root$smoke/yunet.onnx"
config() {  # config RUNTIME YUNET: the documented example with a device id, YuNet, no broker
  sed -e 's/^device_id = .*/device_id = "pi-emulated"/' -e "s|^yunet_model = .*|yunet_model = \"$2\"|" \
    -e 's/^kind = "auto"/kind = "yunet"/' -e "s/^runtime = .*/runtime = \"$1\"/" \
    -e '/^\[mqtt\]/,/^\[/ s/^enabled = true/enabled = false/' "$repo/deploy/moodcam.example.toml"
}
for rt in ai-edge-litert tflite-runtime; do
  config $rt $smoke/yunet.onnx >"$root$smoke/$rt.toml"
  config $rt "$yunet" >"$host/$rt.toml"
done
echo "   $(find "$host/images" -name '*.png' | wc -l) images, $(find "$host/frames" -name '*.png' |
  wc -l) replay frames, YuNet (sha256 ok), configs for both runtimes"

# --- 4. what the emulated CPU is -----------------------------------------------------------
step "emulated CPU: aarch64, $QEMU_CPU features (no SVE, no dot product)"
inroot "$root" python3 - <<'EOF' || die "the emulated CPU is not a Cortex-A72 (is QEMU_CPU passed?)"
import ctypes, platform, sys
hw = ctypes.CDLL(None).getauxval(16)  # AT_HWCAP
names = {1 << 1: "asimd", 1 << 3: "aes", 1 << 7: "crc32", 1 << 8: "atomics",
         1 << 20: "asimddp", 1 << 22: "sve"}
have = [n for b, n in names.items() if hw & b]
print(f"   {platform.machine()}, python {platform.python_version()}, hwcaps: {' '.join(have)}")
sys.exit(platform.machine() != "aarch64" or any(n in have for n in ("atomics", "asimddp", "sve")))
EOF

# --- 5. the install ------------------------------------------------------------------------
venv=/opt/moodcam/venv
log=$run/install.log
step "install: deploy/install.sh --tflite-runtime inside the root (apt, user, venv, detector, config, model)"
[ -f "$root$src/deploy/install.sh" ] || die "no deploy/install.sh in the project"
inroot "$root" bash $src/deploy/install.sh --source $src --detector-file $smoke/yunet.onnx \
  --tflite-runtime --device-id pi-emulated >"$log" 2>&1 ||
  { tail -30 "$log"; die "deploy/install.sh failed in the emulated Pi"; }
# dpkg's progress and debconf's chatter are noise here; the rest is what an operator sees.
grep -vE '^\(Reading database|^debconf: |^(Preparing to unpack|Unpacking|Selecting previously)' \
  "$log" | sed 's/^/   | /'
grep -qF 'from deploy/requirements-pi*.txt (hashes)' "$log" ||
  die "the installer did not install from the hashed requirements (pip --require-hashes)"
grep -q "no Pi camera package" "$log" ||
  die "the installer did not say \"no Pi camera package\" (picamera2 is not in Debian)"
inroot "$root" $venv/bin/python -m pip freeze --all 2>/dev/null |
  grep -iE '^(numpy|opencv-python-headless|ai-edge-litert|tflite-runtime|moodcam)[=@ ]' |
  sed 's/^/   chosen: /'
inroot "$root" $venv/bin/python - <<'EOF' || die "the Pi venv is not what constraints-pi.txt asks for"
import cv2, numpy
ok = numpy.__version__.startswith("1.") and cv2.__version__.startswith("4.11.")
print(f"   numpy {numpy.__version__} (<2: {ok}), opencv {cv2.__version__}")
raise SystemExit(not ok)
EOF

# --- 6. smoke run inside the root ----------------------------------------------------------
step "smoke (aarch64): moodcam version, check-config"
mc=$venv/bin/moodcam
out=$root$smoke/out
version=$(inroot "$root" $mc version) || die "moodcam version failed in the Pi venv"
echo "   $version"
[[ $version == *"runtimes: ai-edge-litert, tflite-runtime"* ]] ||
  die "both TFLite runtimes must import in the Pi venv"
[[ $version == *"onnxruntime 1."* ]] ||
  die "onnxruntime (YuNet's default backend, detector.backend) must be in the Pi venv"
for conf in /etc/moodcam/moodcam.toml $smoke/ai-edge-litert.toml $smoke/tflite-runtime.toml; do
  inroot "$root" $mc check-config "$conf" >"$run/check.out" 2>&1 ||
    { cat "$run/check.out"; die "check-config $conf failed"; }
  sed 's/^/   /' "$run/check.out"
done

mapfile -t names < <(cd "$host/images" && ls)
for rt in ai-edge-litert tflite-runtime; do
  step "smoke (aarch64): classify ${#names[@]} images with $rt, the installed model"
  # The config's runtime is a preference: prove it is the one that actually loads.
  got=$(inroot "$root" $venv/bin/python -c 'import sys
from device.assemble import load_classifier
from device.config import load_config
print(load_classifier(load_config(sys.argv[1])).runtime)' \
    $smoke/$rt.toml 2>"$run/probe-$rt.err") || { tail -5 "$run/probe-$rt.err"; }
  [ "$got" = "$rt" ] || die "config runtime = $rt loaded ${got:-nothing}"
  inroot "$root" $mc classify --json --config $smoke/$rt.toml \
    "${names[@]/#/$smoke/images/}" >"$out/classify-$rt.jsonl" 2>"$run/classify-$rt.err" ||
    { cat "$run/classify-$rt.err"; die "classify with $rt failed"; }
done

step "smoke (aarch64): replay of 18 frames (ai-edge-litert)"
replay_args=(--json --window 10 --start 2026-01-01T00:00:00Z --device-id pi-emulated)
inroot "$root" $mc replay $smoke/frames "${replay_args[@]}" --config $smoke/ai-edge-litert.toml \
  >"$out/replay.jsonl" 2>"$run/replay.err" ||
  { cat "$run/replay.err"; die "replay failed"; }

# --- 7. the x86 reference and the comparison -----------------------------------------------
step "x86 reference: the same classify with each runtime, the same replay"
# The same source as the root got, whatever the venvs have installed (editable or not).
hmc() { local py=$1; shift; PYTHONPATH=$repo "$py" -m device.cli "$@"; }
for rt in ai-edge-litert tflite-runtime; do
  py=$host_py; [ $rt = ai-edge-litert ] || py=$host_py_tflite
  echo "   $rt: $py"
  hmc "$py" classify --json --config "$host/$rt.toml" --model-dir "$repo/models" \
    "${names[@]/#/$host/images/}" >"$host/out/classify-$rt.jsonl" 2>"$run/x86.err" ||
    { cat "$run/x86.err"; die "x86 classify with $rt failed"; }
done
hmc "$host_py" replay "$host/frames" "${replay_args[@]}" --config "$host/ai-edge-litert.toml" \
  --model-dir "$repo/models" >"$host/out/replay.jsonl" 2>>"$run/x86.err" ||
  { cat "$run/x86.err"; die "x86 replay failed"; }

step "compare aarch64 (both runtimes) with x86"
"$host_py" "$repo/deploy/pi_emulated.py" compare "$host/out" "$out" ||
  die "aarch64 and x86 disagree (table above)"

# --- 8. the unit's syscall filter against aarch64's calls ---------------------------------
# qemu-user cannot load a seccomp filter for its guest, so the daemon's aarch64 calls are
# traced (QEMU_STRACE) and checked against systemd/moodcam.service's SystemCallFilter,
# expanded as tests/test_unit_seccomp.py does on x86. aarch64 lacks x86's legacy calls
# (open, poll, select, stat): a filter proven on x86 alone may still kill a Pi's daemon.
step "seccomp (aarch64): the daemon's traced calls, through its faults, against the unit's filter"
command -v systemd-analyze >/dev/null || die "needs systemd-analyze (package systemd) on the host"
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] ||
  die "needs mosquitto on the host (deploy/test.sh installs it): paho's calls are traced too"
# The installed config and user, as the service runs them, with the replay frames as the
# camera (the built-in sample needs scikit-image, which the Pi venv lacks). The clock stays
# "ntp": its kernel probe is one of the calls checked. deploy/pi_faults.py owns the broker,
# writes the config and makes each fault path happen while the daemon runs (camera loss,
# SIGHUP reload, full spool disk, broker crash): those paths call what a short run never does.
mkdir -p "$root/tmp/moodcam-frames"
cp "$host/frames"/* "$root/tmp/moodcam-frames/"
chmod -R a+rX "$root/tmp/moodcam-frames"
# Only the daemon is traced: setpriv's own calls (setresuid, setgroups) are systemd's part.
# No inroot: the driver signals this very process (chroot, env and setpriv exec the daemon).
PYTHONPATH=$repo "$host_py" "$repo/deploy/pi_faults.py" "$root" "$root/etc/moodcam/moodcam.toml" \
  "$run" -- chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU" \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  setpriv --reuid=moodcam --regid=moodcam --init-groups /usr/bin/env HOME=/var/lib/moodcam \
  QEMU_STRACE=1 $mc run --config /tmp/moodcam-traced.toml ||
  die "the daemon's fault paths failed in the emulated Pi"
echo "   $(grep -acE 'INFO [a-z_.]+: window [^ ]+: ' "$run/strace.log" || true) windows closed"
"$host_py" "$repo/tests/seccomp.py" "$repo/systemd/moodcam.service" --check-trace \
  "$run/strace.log" || die "the daemon's aarch64 calls fall outside the unit's filter"

bench_frames() {  # the same synthetic frames for both machines, made once
  [ -d "$host/bench" ] && return 0
  mkdir -p "$host/bench" "$root$smoke/bench"
  PYTHONPATH=$repo "$host_py" -c 'import sys; from pathlib import Path
from device.bench import make_frames; make_frames(Path(sys.argv[1]))' "$host/bench"
  cp "$host/bench"/*.jpg "$root$smoke/bench/"
}
if [ $bench = 1 ]; then
  step "bench: old vs new defaults on the same frames, aarch64 (emulated) and x86"
  bench_frames
  # "ort": old with YuNet on onnxruntime, to compare the two backends on aarch64 as well.
  bench_args=(bench --json --frames "${MOODCAM_PI_BENCH_FRAMES:-100}" --paced-s 5
    --profile old,ort,new)
  inroot "$root" $mc "${bench_args[@]}" --frame-dir $smoke/bench >"$out/bench.json" ||
    die "moodcam bench failed in the emulated Pi"
  # .venv-pi has both runtimes, as the root does.
  hmc "$host_py_tflite" "${bench_args[@]}" --frame-dir "$host/bench" \
    --model-dir "$repo/models" >"$host/out/bench.json" || die "x86 bench failed"
  "$host_py" "$repo/deploy/pi_emulated.py" bench "$host/out/bench.json" "$out/bench.json"
fi
if [ -n "${MOODCAM_PI_BENCH_MODEL:-}" ]; then
  step "bench: the shipped model against $MOODCAM_PI_BENCH_MODEL, a face's invokes, aarch64 (emulated) and x86"
  bench_frames
  cp -r "$MOODCAM_PI_BENCH_MODEL" "$root$smoke/model2"
  model_args=(bench --json --frames 10 --paced-s 1 --profile new --runtime ai-edge-litert)
  for m in shipped model2; do
    d=$src/models; [ $m = shipped ] || d=$smoke/model2
    inroot "$root" $mc "${model_args[@]}" --frame-dir $smoke/bench --model-dir "$d" \
      >"$out/model-$m.json" || die "moodcam bench ($m) failed in the emulated Pi"
    d=$repo/models; [ $m = shipped ] || d=$MOODCAM_PI_BENCH_MODEL
    hmc "$host_py" "${model_args[@]}" --frame-dir "$host/bench" --model-dir "$d" \
      >"$host/out/model-$m.json" || die "x86 bench ($m) failed"
  done
  "$host_py" "$repo/deploy/pi_emulated.py" models "$host/out" "$out"
fi

t=$(($(date +%s) - t0))
printf '== PASS: the Pi install and smoke run on emulated aarch64 match x86 (%dm%02ds)\n' \
  $((t / 60)) $((t % 60))
