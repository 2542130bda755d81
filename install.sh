#!/usr/bin/env bash
# Installs the satellite. Idempotent: running it twice changes nothing the second time.
#
#   sudo ./install.sh --room salon [--broker mqtt://host:1883]   a Pi: packages, user, venv, models, unit
#   ./install.sh --dev                                            a workstation / CI: packages, .venv, models
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=""
room=""
broker=""
python=${PYTHON:-python3}
# openWakeWord is installed without its declared dependencies: it declares tflite-runtime on
# Linux, which has no wheels past Python 3.11 and breaks under numpy 2; we use its ONNX path.
# The packages it really imports are in pyproject.toml.
openwakeword_pin="openwakeword==0.6.0"

apt_packages=(
  python3 python3-venv python3-dev gcc pkg-config
  portaudio19-dev libasound2-plugins alsa-utils libsystemd-dev
)
dev_packages=(mosquitto mosquitto-clients espeak-ng sox)

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --dev) mode=dev ;;
      --room) room=${2:?--room needs a value}; mode=${mode:-pi}; shift ;;
      --broker) broker=${2:?--broker needs a value}; shift ;;
      -h|--help) usage 0 ;;
      *) printf 'install.sh: unknown option %s\n' "$1" >&2; usage 2 ;;
    esac
    shift
  done
  [ -n "$mode" ] || { printf 'install.sh: give --room ROOM (a Pi) or --dev\n' >&2; usage 2; }
  if [ "$mode" = pi ]; then
    case "$room" in
      ""|*/*|*+*|*"#"*) die "--room must be one MQTT topic level (no '/', '+', '#')" ;;
    esac
  fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && { say "system packages present"; return; }
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}: run as root or install them first"
  say "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

make_venv() {
  local venv=$1
  shift
  [ -x "$venv/bin/python" ] || { say "creating virtualenv $venv"; "$python" -m venv "$venv"; }
  say "installing Python packages into $venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
  # Last, so pip's resolver never sees openWakeWord's unmet tflite-runtime requirement.
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$openwakeword_pin"
}

install_dev() {
  apt_install "${apt_packages[@]}" "${dev_packages[@]}"
  make_venv "$here/.venv" -e "${here}[dev]"
  "$here/.venv/bin/satellite" models install --dir "${SATELLITE_MODELS_DIR:-$here/.cache/models}"
}

broker_host_port() {
  local rest=${broker#*://}
  rest=${rest%%/*}
  case "$rest" in
    *:*) printf '%s %s\n' "${rest%:*}" "${rest##*:}" ;;
    *) printf '%s %s\n' "$rest" "$([ "${broker%%://*}" = mqtts ] && echo 8883 || echo 1883)" ;;
  esac
}

write_config() {
  local conf=/etc/satellite/$room.toml host=127.0.0.1 port=1883 tls=false
  [ -e "$conf" ] && { say "keeping existing $conf"; return; }
  if [ -n "$broker" ]; then
    read -r host port < <(broker_host_port)
    [ "${broker%%://*}" = mqtts ] && tls=true
  fi
  install -d -m 0755 /etc/satellite
  sed -e "s/@ROOM@/$room/" -e "s/@HOST@/$host/" -e "s/@PORT@/$port/" -e "s/@TLS@/$tls/" \
    "$here/firmware-config/room.toml.in" > "$conf"
  chmod 0640 "$conf"
  chgrp satellite "$conf"
  say "wrote $conf"
}

install_pi() {
  local packages=("${apt_packages[@]}")
  [ -n "$broker" ] || packages+=(mosquitto)
  apt_install "${packages[@]}"
  id satellite >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin satellite
  for group in audio gpio spi; do
    getent group "$group" >/dev/null && usermod -a -G "$group" satellite
  done
  make_venv /opt/satellite "$here"
  install -d -o satellite -g satellite /var/lib/satellite /var/lib/satellite/models
  /opt/satellite/bin/satellite models install --dir /var/lib/satellite/models
  write_config
  install -m 0644 "$here/systemd/satellite@.service" /etc/systemd/system/satellite@.service
  systemctl daemon-reload
  systemctl enable --now "satellite@$room.service"
  say "satellite@$room is running: journalctl -u satellite@$room -f"
}

main() {
  parse_args "$@"
  if [ "$mode" = dev ]; then install_dev; else install_pi; fi
}

main "$@"
