# Sourced by deploy/pi-emulated.sh, not run: its functions for mounts and deletion, the
# host's Debian mirror and the cached base root. They read the caller's settings ($cache,
# $base, $key, $SUITE, ... , $qemu_fixed) and its step/die.
# shellcheck shell=bash disable=SC2154  # the caller defines what these read

# --- mounts and deletion: never delete through a mount -----------------------------------
umount_under() {  # every mount at or below $1, deepest first
  local m
  awk -v p="$1" '$2 == p || index($2, p "/") == 1 {print $2}' /proc/mounts | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
}
kill_inside() {  # SIGKILL the processes chrooted at or below $1 (ours), by pid
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    case $r in "$1" | "$1"/*) kill -9 "${p#/proc/}" 2>/dev/null || true ;; esac
  done
}
safe_rm() {
  [ -e "$1" ] || return 0
  kill_inside "$1"
  umount_under "$1"
  if awk -v p="$1" '$2 == p || index($2, p "/") == 1 {f = 1} END {exit !f}' /proc/mounts; then
    die "still mounted under $1; not deleting it"
  fi
  rm -rf --one-file-system "$1"
}
drop_cache() {
  [ -e "$cache" ] || return 0
  [ -e "$cache/$CACHE_TAG" ] || die "$cache is not a moodcam-pi cache (no $CACHE_TAG); not deleting"
  safe_rm "$cache"
}

# --- the host's Debian mirror --------------------------------------------------------------
# The first enabled source carrying $SUITE (deb822 .sources, then one-line .list files).
host_uri() {  # host_uri SUITE
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$1" 'BEGIN {RS = ""} {
        uris = ""; ok = 0; deb = 0
        n = split($0, L, "\n")
        for (i = 1; i <= n; i++) {
          if (L[i] ~ /^URIs:/) uris = L[i]
          if (L[i] ~ /^Types:.*(^|[ \t])deb([ \t]|$)/) deb = 1
          if (L[i] ~ /^Suites:/) { m = split(L[i], S, /[ \t]+/); for (j = 2; j <= m; j++) if (S[j] == s) ok = 1 }
          if (L[i] ~ /^Enabled:[ \t]*no/) deb = 0
        }
        if (ok && deb) { split(uris, U, /[ \t]+/); print U[2]; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$1" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while (i <= NF && $i !~ /\]$/) i++
        if ($2 ~ /^\[/) i++; if ($(i + 1) == s) { print $i; exit } }' "$f"
  done
}

# qemu-user shows the host's x86 /proc/cpuinfo. With /sys mounted, XNNPACK's cpuinfo reads
# it and ai-edge-litert segfaults; without /sys it silently skips XNNPACK. What a Pi 4
# (BCM2711, 4x Cortex-A72 r0p3) shows, one entry per CPU sysfs lists, makes XNNPACK run as
# on the Pi.
pi_cpuinfo() {
  local c range
  for range in $(tr ',' ' ' </sys/devices/system/cpu/present); do
    for c in $(seq "${range%-*}" "${range#*-}"); do
      printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$c"
      printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n'
      printf 'CPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done
  done
  printf 'Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n'
}
chroot_mounts() {  # what a chroot needs; the EXIT trap (umount_under) takes them down
  local r=$1
  mount -t proc proc "$r/proc"
  pi_cpuinfo >"$cache/cpuinfo-pi4"
  mount --bind "$cache/cpuinfo-pi4" "$r/proc/cpuinfo"
  mount --rbind /sys "$r/sys" && mount --make-rslave "$r/sys"
  mount --rbind /dev "$r/dev" && mount --make-rslave "$r/dev"
}
inroot() {  # inroot ROOT CMD...: a clean environment, as a root shell on the Pi would have
  local r=$1; shift
  # In the background and waited for, so a signal ends this script at once (the EXIT
  # trap then kills what still runs in the root); stdin passed on explicitly.
  chroot "$r" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb QEMU_CPU="$QEMU_CPU" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive "$@" <&0 &
  wait $!
}
host_files() {  # what lets the root reach Debian and PyPI the way the host does
  local r=$1
  cp --remove-destination /etc/resolv.conf "$r/etc/resolv.conf"
  mkdir -p "$r/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
  if [ -d /usr/local/share/ca-certificates ]; then
    mkdir -p "$r/usr/local/share/ca-certificates"
    cp -r /usr/local/share/ca-certificates/. "$r/usr/local/share/ca-certificates/"
  fi
  if [ $qemu_fixed = 0 ]; then
    mkdir -p "$r$(dirname "$qemu_interp")"
    cp /usr/bin/qemu-aarch64-static "$r$qemu_interp"
  fi
}

building=
abort_build() {  # EXIT trap while building: stop what runs there, unmount; the next run
  set +e         # finds the .partial root and starts over
  [ -z "$child" ] || kill "$child" 2>/dev/null
  kill_inside "$building"
  umount_under "$building"
}
build_root() {
  local part=$base.partial
  [ ! -e "$part" ] || echo "   removing a half-built root (an interrupted build)"
  safe_rm "$part"
  # Roots of older recipes or mirrors.
  for d in "$cache"/root-*; do [ -e "$d" ] && [ "$d" != "$base" ] && safe_rm "$d"; done
  mkdir -p "$part"
  building=$part
  trap abort_build EXIT
  echo "   debootstrap --foreign (downloads and unpacks on the host)"
  debootstrap --arch=$ARCH --variant=$VARIANT --include=$INCLUDE --foreign \
    $SUITE "$part" "$mirror" >"$cache/debootstrap.log" 2>&1 &
  child=$!
  wait $child ||
    { tail -20 "$cache/debootstrap.log"; die "debootstrap (first stage) failed"; }
  child=
  host_files "$part"
  echo "   debootstrap --second-stage (dpkg under qemu-aarch64)"
  chroot "$part" /debootstrap/debootstrap --second-stage >>"$cache/debootstrap.log" 2>&1 &
  wait $! ||
    { tail -20 "$cache/debootstrap.log"; die "debootstrap (second stage) failed"; }
  umount_under "$part"
  cat >"$part/etc/apt/sources.list" <<EOF
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
deb $security $SUITE-security main
EOF
  # Keep the host's apt settings for reaching its mirror (e.g. snapshots past Valid-Until).
  apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy) ' \
    >"$part/etc/apt/apt.conf.d/99moodcam-host" || true
  echo "   apt-get update inside the root"
  chroot_mounts "$part"
  host_files "$part"
  inroot "$part" apt-get update -qq >>"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log"; die "apt-get update in the root failed"; }
  umount_under "$part"
  trap - EXIT
  rm -rf "$part/var/cache/apt/archives/"*.deb
  echo "$key $(date -u +%FT%TZ)" >"$part/$marker"
  mv "$part" "$base"
}
