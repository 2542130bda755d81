#!/usr/bin/env bash
# arm64 (a Raspberry Pi's CPU) checked on an x86-64 Debian machine, on demand: builds a Debian 12
# arm64 root with debootstrap, runs it under qemu-user emulation, copies this repository in, runs
# `./install.sh --dev` there as a new user would, then `satellite simulate` on spoken audio
# ("hey jarvis, turn on the kitchen lights", made here with espeak-ng and sox) and checks the
# transcript, and asks gpiozero in the installed venv which pin factory it would take.
#
#   sudo tests/arm64/run.sh              # ~10 min on 2 cores (~7 once the root is cached)
#   sudo tests/arm64/run.sh --root-only  # only build (and cache) the arm64 root
#
# Environment:
#   SATELLITE_ARM64_DIR           work dir (default .cache/arm64): the cached root tarball, the
#                                 unpacked root of the run (removed after it), run.log
#   SATELLITE_ARM64_CPU           the CPU qemu emulates (default cortex-a72, a Pi 4's)
#   SATELLITE_ARM64_KEEP=1        keep the unpacked root after the run, for a look inside
#   SATELLITE_TEST_DEBIAN_MIRROR  the Debian mirror (default: the one apt uses here)
# Its last line is `arm64: PASS ...` or `arm64: FAIL ...`; the exit status says the same.
# Everything it mounts is in its own mount namespace and unmounted on exit, whatever happens.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${SATELLITE_ARM64_DIR:-$repo/.cache/arm64}
cpu=${SATELLITE_ARM64_CPU:-cortex-a72}
suite=bookworm
# ca-certificates: pip and the model download need TLS before install.sh has run.
root_packages=ca-certificates
host_packages=(qemu-user-static binfmt-support debootstrap espeak-ng sox zstd)
command="turn on the kitchen lights"
started=$(date +%s)

say() { printf 'arm64: %s\n' "$*"; }
fail() { say "FAIL after $(elapsed): $*"; exit 1; }
elapsed() { local s=$(($(date +%s) - started)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# --- on the host ----------------------------------------------------------------------------

host_setup() {
  local missing=() pkg
  [ "$(id -u)" -eq 0 ] || fail "run as root: debootstrap, chroot and mounts need it"
  [ "$(uname -m)" = x86_64 ] || say "note: this machine is $(uname -m), not x86_64"
  for pkg in "${host_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # binfmt_misc lets the kernel hand arm64 binaries to qemu; Debian registers qemu-aarch64
  # with the F flag, so the chroot needs no copy of qemu.
  [ -e /proc/sys/fs/binfmt_misc/register ] ||
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
  grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
    fail "qemu-aarch64 is registered without the F flag: the chroot would not find qemu"
}

mirror() {
  if [ -n "${SATELLITE_TEST_DEBIAN_MIRROR:-}" ]; then
    printf '%s\n' "$SATELLITE_TEST_DEBIAN_MIRROR"
    return
  fi
  awk -v suite="$suite" '
    /^URIs:/ { uri = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) found = uri }
    END { print found ? found : "http://deb.debian.org/debian" }' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null
}

# The spoken request, made here: 16 kHz mono with 0.5 s of silence at both ends, the voice and
# speed of tests/support/speech.py.
make_speech() {
  espeak-ng -v en-us+m7 -s 170 -w "$work/espeak.wav" "hey jarvis, $command"
  sox -R "$work/espeak.wav" -r 16000 -c 1 -b 16 -e signed-integer "$work/speech.wav" pad 0.5 0.5
}

# --- in our own mount namespace ---------------------------------------------------------------

tarball() { printf '%s/debian-%s-arm64-%s.tar.zst\n' "$work" "$suite" "$root_packages"; }

mounted=()

mount_at() {
  mount "$@"
  mounted+=("${*: -1}")
}

unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount -l "${mounted[i]}" 2>/dev/null || true
  done
  mounted=()
}

# Both debootstrap stages; the result is cached as a tarball (the slow part: ~15 min).
build_root() {
  local target=$work/build
  [ -f "$(tarball)" ] && return
  rm -rf "$target"
  say "debootstrap $suite arm64, first stage"
  debootstrap --arch=arm64 --foreign --variant=minbase --include="$root_packages" \
    "$suite" "$target" "$(mirror)" > "$work/debootstrap.log" 2>&1 ||
    fail "debootstrap first stage: $(tail -n 3 "$work/debootstrap.log")"
  say "debootstrap second stage under qemu-aarch64"
  # It mounts /proc and /sys in the root itself; --one-file-system keeps them out of the tarball
  # should one stay mounted.
  chroot "$target" /debootstrap/debootstrap --second-stage >> "$work/debootstrap.log" 2>&1 ||
    fail "debootstrap second stage: $(tail -n 3 "$work/debootstrap.log")"
  tar -C "$target" --one-file-system --exclude=./var/cache/apt/archives/*.deb --exclude='./dev/*' \
    -cf - . |
    zstd -q -T0 -o "$(tarball).part"
  mv "$(tarball).part" "$(tarball)"
  rm -rf "$target"
}

# What onnxruntime's cpuinfo and gpiozero read: a Raspberry Pi 4's /proc/cpuinfo (Cortex-A72).
pi4_cpuinfo() {
  local n
  for ((n = 0; n < $(nproc); n++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$n"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n'
    printf 'CPU part\t: 0xd08\nCPU revision\t: 3\n\n'
  done
  printf 'Hardware\t: BCM2835\nRevision\t: c03111\nSerial\t\t: 10000000deadbeef\n'
  printf 'Model\t\t: Raspberry Pi 4 Model B Rev 1.1\n'
}

prepare_root() {
  local root=$1
  rm -rf "$root"
  mkdir -p "$root"
  zstd -q -d -c "$(tarball)" | tar -C "$root" -xf -
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # A TLS-intercepting proxy's CA, where this machine has one: pip must trust what we trust.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi
  mount_at -t proc proc "$root/proc"
  pi4_cpuinfo > "$work/cpuinfo"
  mount_at --bind "$work/cpuinfo" "$root/proc/cpuinfo"
  mount_at -t sysfs sysfs "$root/sys"
  mount_at --bind /dev "$root/dev"
  mount_at --bind /dev/pts "$root/dev/pts"
  mount_at -t tmpfs tmpfs "$root/dev/shm"
  # The repository as a user would have it: the tracked and new files, no venv, no caches.
  mkdir -p "$root/src/satellite"
  git -C "$repo" ls-files -z --cached --others --exclude-standard |
    tar -C "$repo" --null -T - --ignore-failed-read -cf - 2>/dev/null |
    tar -C "$root/src/satellite" -xf -
  cp "$work/speech.wav" "$root/src/speech.wav"
  cat > "$root/src/arm64.toml" <<EOF
room_id = "arm64"
satellite_id = "arm64-check"
state_dir = "/src/state"
[mqtt]
host = "127.0.0.1"
port = 1
[audio]
device = "default"
[wake]
models = ["hey_jarvis"]
[models]
dir = "/src/satellite/.cache/models"
EOF
}

in_root() {
  chroot "$1" /usr/bin/env -i HOME=/root LANG=C.UTF-8 QEMU_CPU="$cpu" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    "${@:2}"
}

check_install() {
  local root=$1 t0
  t0=$(date +%s)
  say "./install.sh --dev in the arm64 root (log: $work/install.log)"
  in_root "$root" sh -c 'cd /src/satellite && ./install.sh --dev' > "$work/install.log" 2>&1 ||
    fail "install.sh --dev: $(tail -n 5 "$work/install.log")"
  say "install.sh --dev passed in $(($(date +%s) - t0)) s; what it said:"
  grep '^install.sh:' "$work/install.log" | sed 's/^/    /'
}

check_simulate() {
  local root=$1 t0 text
  t0=$(date +%s)
  in_root "$root" /src/satellite/.venv/bin/satellite -q simulate --config /src/arm64.toml \
    /src/speech.wav > "$work/simulate.out" 2> "$work/simulate.err" ||
    fail "satellite simulate: $(tail -n 5 "$work/simulate.err")"
  text=$(in_root "$root" /src/satellite/.venv/bin/python -c '
import json, sys
finals = [e["payload"]["text"] for e in map(json.loads, sys.stdin) if e["topic_type"] == "transcript/final"]
print("|".join(finals))' < "$work/simulate.out")
  say "simulate took $(($(date +%s) - t0)) s: $(grep -o '"simulate".*' "$work/simulate.err" || true)"
  [ "$text" = "$command" ] || fail "transcript/final was '$text', expected '$command'"
  say "transcript/final: '$text'"
}

check_gpio() {
  local root=$1 report
  report=$(in_root "$root" /src/satellite/.venv/bin/python /src/satellite/tests/support/gpio_probe.py) ||
    fail "gpio probe: $report"
  say "gpiozero in the venv: $report"
  # No /dev/gpiochip0 under emulation: lgpio must be tried first and fail only at the chip.
  printf '%s\n' "$report" | in_root "$root" /src/satellite/.venv/bin/python -c '
import json, sys
r = json.load(sys.stdin)
ok = r["lgpio"].get("real") and r["spidev"]["ok"]
sys.exit(not (ok and "can not open gpiochip" in r["fallbacks"][0]))' ||
    fail "gpiozero does not try a working lgpio first (with spidev beside it)"
}

inside() {
  local root=$work/root
  trap unmount_all EXIT
  build_root
  if [ "$root_only" = 1 ]; then
    say "the root is in $(tarball) ($(elapsed))"
    return
  fi
  prepare_root "$root"
  say "root ready after $(elapsed); emulated CPU: $cpu"
  check_install "$root"
  check_simulate "$root"
  check_gpio "$root"
  unmount_all
  [ "${SATELLITE_ARM64_KEEP:-0}" = 1 ] || rm -rf "$root"
  say "PASS in $(elapsed) on $(date -u +%Y-%m-%d): Debian 12 arm64 ($cpu, qemu-user)," \
    "install.sh --dev, wake word + transcript, gpiozero tries lgpio first"
}

main() {
  if [ "${1:-}" = --inside ]; then
    started=$2
    root_only=$3
    inside
    return
  fi
  case "${1:-}" in
    --root-only) root_only=1 ;;
    "") root_only=0 ;;
    *) say "usage: $0 [--root-only]"; exit 2 ;;
  esac
  host_setup
  mkdir -p "$work"
  make_speech
  # Private mounts: nothing we mount is seen by, or left behind on, the host.
  unshare --mount --propagation private -- "$0" --inside "$started" "$root_only" 2>&1 | tee "$work/run.log"
  exit "${PIPESTATUS[0]}"
}

main "$@"
