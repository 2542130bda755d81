#!/usr/bin/env bash
# Installs the satellite. Idempotent: a second run with the same options changes nothing.
#
#   sudo ./install.sh --room ROOM [--broker URL] [--hat NAME]   a Pi: everything, then started
#   sudo ./install.sh --root DIR --room ROOM [--hat NAME]       the file tree only, into an image
#   sudo ./install.sh --uninstall [--purge] [--root DIR]        remove what the manifest lists
#   ./install.sh --dev                                          a workstation / CI: packages, .venv, models
#
#   --room ROOM    the room id: one MQTT topic level of letters, digits, '_', '.', '-'; it names
#                  /etc/satellite/ROOM.toml and satellite@ROOM.service
#   --broker URL   mqtt[s]://[user@]host[:port]; without it a local mosquitto is installed and used
#   --hat NAME     respeaker-2mic, respeaker-4mic, gpio-led or none (default), from
#                  firmware-config/hats/: its asound.conf and /boot/firmware/config.txt lines
#   --root DIR     install into DIR (an image or a test root): no packages, no venv, no models, no
#                  systemctl against the host; the user and permissions are applied at first boot
#   --uninstall    disable the unit, remove the unit, venv, models and HAT files; keep the config
#   --purge        with --uninstall: also remove /etc/satellite, /var/lib/satellite and the user
# What each file is for: firmware-config/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fw=$here/firmware-config
mode=""
room=""
broker=""
hat=none
root=""
offline=0
purge=0
python=${PYTHON:-python3}
# openWakeWord is installed without its declared dependencies: it declares tflite-runtime on
# Linux, which has no wheels past Python 3.11 and breaks under numpy 2; we use its ONNX path.
# The packages it really imports are in pyproject.toml.
openwakeword_pin="openwakeword==0.6.0"
speex_pin="speexdsp-ns==0.1.2"

apt_packages=(
  python3 python3-venv python3-dev gcc pkg-config
  portaudio19-dev libasound2-plugins alsa-utils libsystemd-dev procps
)
# systemd: systemctl --root, systemd-sysusers, systemd-tmpfiles and systemd-analyze in the tests;
# debootstrap and zstd: the throw-away Debian root the system tests boot systemd in.
dev_packages=(mosquitto mosquitto-clients espeak-ng sox shellcheck systemd debootstrap zstd)

# Where things go on the target (prefixed by --root). The manifest lists what this script put
# there, so --uninstall removes exactly that; it lives in the state directory.
venv_dir=/opt/satellite
state_dir=/var/lib/satellite
models_dir=$state_dir/models
conf_dir=/etc/satellite
unit_path=/etc/systemd/system/satellite@.service
sysusers_path=/etc/sysusers.d/satellite.conf
tmpfiles_path=/etc/tmpfiles.d/satellite.conf
alsa_path=/etc/alsa/conf.d/60-satellite.conf
hats_dir=/usr/share/satellite/hats   # satellite.leds.hats.SYSTEM_HATS_DIR
manifest_path=$state_dir/install-manifest
block_begin="# >>> satellite: added by install.sh, removed by install.sh --uninstall >>>"
block_end="# <<< satellite <<<"

manifest=()
changed_boot=0
replaced=0
unit_replaced=0

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit "${1:-0}"
}

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
bad_usage() { printf 'install.sh: error: %s (see --help)\n' "$*" >&2; exit 2; }

# The path on this machine of a target path.
at() { printf '%s%s\n' "$root" "$1"; }

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --dev) mode=dev ;;
      --uninstall) mode=uninstall ;;
      --purge) purge=1 ;;
      --room|--broker|--hat|--root)
        [ $# -ge 2 ] || bad_usage "$1 needs a value"
        case "$1" in
          --room) room=$2 ;;
          --broker) broker=$2 ;;
          --hat) hat=$2 ;;
          --root) set_root "$2" ;;
        esac
        shift ;;
      -h|--help) usage 0 ;;
      *) bad_usage "unknown option $1" ;;
    esac
    shift
  done
  if [ -z "$mode" ]; then
    [ -n "$room" ] || bad_usage "give --room ROOM (a Pi), --dev or --uninstall"
    mode=pi
  fi
  [ "$purge" -eq 0 ] || [ "$mode" = uninstall ] || bad_usage "--purge goes with --uninstall"
  if [ "$mode" = pi ]; then
    check_room
    check_hat
    [ -z "$broker" ] || parse_broker
  fi
}

set_root() {
  [ -n "$1" ] || bad_usage "--root needs a directory"
  mkdir -p "$1"
  root=$(cd "$1" && pwd)
  [ "$root" != / ] || root=""
  offline=1
}

check_room() {
  # One MQTT topic level (satellite.config.check_topic_level) that is also safe as a file name,
  # a systemd instance name (used verbatim as %i) and a TOML string.
  [[ $room =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] ||
    die "--room '$room': use letters, digits, '_', '.', '-' (one MQTT topic level; it names $conf_dir/ROOM.toml and satellite@ROOM.service)"
}

known_hats() {
  local names=(none) file
  for file in "$fw"/hats/*.toml; do
    [ -e "$file" ] || continue
    file=${file##*/}
    [ "${file%.toml}" = none ] || names+=("${file%.toml}")
  done
  printf '%s\n' "${names[@]}" | sort
}

check_hat() {
  local known
  known=$(known_hats)
  [[ $'\n'$known$'\n' == *$'\n'"$hat"$'\n'* ]] || die "--hat '$hat': unknown; known: ${known//$'\n'/, }"
}

# mqtt[s]://[user@]host[:port] -> mqtt_host, mqtt_port, mqtt_tls, mqtt_user
parse_broker() {
  local rest=${broker#*://} scheme=${broker%%://*}
  local form="--broker '$broker': expected mqtt[s]://[user@]host[:port]"
  [[ $broker == *://* ]] || die "$form"
  case "$scheme" in
    mqtt) mqtt_tls=false; mqtt_port=1883 ;;
    mqtts) mqtt_tls=true; mqtt_port=8883 ;;
    *) die "$form" ;;
  esac
  rest=${rest%/}
  if [[ $rest == *@* ]]; then
    mqtt_user=${rest%@*}
    rest=${rest##*@}
    [[ $mqtt_user != *:* ]] ||
      die "--broker: no password in the URL; install.sh tells you where the password file goes"
    [[ $mqtt_user =~ ^[A-Za-z0-9_.-]+$ ]] || die "$form (user: letters, digits, '_', '.', '-')"
  fi
  if [[ $rest =~ ^\[([0-9A-Fa-f:.]+)\](:([0-9]+))?$ ]] || [[ $rest =~ ^([A-Za-z0-9_.-]+)(:([0-9]+))?$ ]]; then
    mqtt_host=${BASH_REMATCH[1]}
    mqtt_port=${BASH_REMATCH[3]:-$mqtt_port}
  else
    die "$form"
  fi
  if [ "$mqtt_port" -lt 1 ] || [ "$mqtt_port" -gt 65535 ]; then
    die "--broker '$broker': port out of range"
  fi
}

# --- the manifest ----------------------------------------------------------------------------
# One "KIND PATH" per line, target paths. file/dir/unit/block go on --uninstall; config,
# purge-dir, user and group only on --uninstall --purge.

record() { manifest+=("$1 $2"); }

read_manifest() {
  local path
  path=$(at "$manifest_path")
  [ -f "$path" ] && cat "$path"
  return 0
}

# Writes the manifest only when its content changes, so a second run leaves the tree untouched.
write_manifest() {
  local path tmp
  path=$(at "$manifest_path")
  tmp=$(mktemp)
  printf '%s\n' "$@" | sed '/^$/d' | LC_ALL=C sort -u > "$tmp"
  if [ ! -s "$tmp" ]; then
    rm -f "$tmp" "$path"
  elif [ -f "$path" ] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
  else
    install -D -m 0644 "$tmp" "$path"
    rm -f "$tmp"
  fi
}

# --- files -----------------------------------------------------------------------------------

# put SRC TARGET MODE: install SRC unless TARGET already has the same bytes (then not even
# touched); `replaced` says whether it did.
put() {
  local src=$1 dest
  dest=$(at "$2")
  replaced=0
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    chmod "$3" "$dest"
  else
    install -D -m "$3" "$src" "$dest"
    replaced=1
    say "installed $2"
  fi
  record file "$2"
}

make_dir() {
  [ -d "$(at "$1")" ] || install -d -m "$2" "$(at "$1")"
}

# The satellite_id of a new config: what the daemon's default would be
# (satellite.config.default_satellite_id: the host name and 6 hex of a hash of the machine id),
# written out so that it shows and stays. Empty when the target has no machine id yet (an image
# before its first boot, which may be flashed onto several Pis): each Pi then derives its own.
machine_satellite_id() {
  local id="" host="" file
  file=$(at /etc/machine-id)
  [ -r "$file" ] && read -r id < "$file"
  [[ $id =~ ^[0-9a-f]{32}$ ]] || return 0
  if [ -z "$root" ]; then
    host=$(uname -n)
  elif [ -r "$root/etc/hostname" ]; then
    read -r host < "$root/etc/hostname" || true
  fi
  [ -n "$host" ] || return 0
  host=${host//[^A-Za-z0-9_.-]/-}
  printf '%s-%s\n' "$host" "$(printf 'satellite-id:%s' "$id" | sha256sum | cut -c1-6)"
}

render_satellite_id() {
  local id
  id=$(machine_satellite_id)
  if [ -n "$id" ]; then
    printf 'satellite_id = "%s"   # unique per machine: its MQTT client id and status topic\n' "$id"
  else
    printf '# satellite_id = "pi-%s"   # default: the host name and 6 hex of a hash of /etc/machine-id\n' "$room"
  fi
}

render_config() {
  local text auth device=default host=127.0.0.1 port=1883 tls=false
  if [ -n "$broker" ]; then host=$mqtt_host; port=$mqtt_port; tls=$mqtt_tls; fi
  if [ -n "${mqtt_user:-}" ]; then
    auth="username = \"$mqtt_user\"
password_file = \"$conf_dir/$room.password\"   # the password, one line; mode 0640 root:satellite
"
  else
    auth="# username = \"satellite-$room\"
# password_file = \"$conf_dir/$room.password\"   # the password is only ever read from a file
"
  fi
  [ ! -f "$fw/alsa/$hat.conf" ] || device=satellite_mic
  text=$(<"$fw/room.toml.in")
  text=${text//@AUTH@/"$auth"}
  text=${text//@SATELLITE_ID@/"$(render_satellite_id)"}
  text=${text//@ROOM@/"$room"}
  text=${text//@HOST@/"$host"}
  text=${text//@PORT@/"$port"}
  text=${text//@TLS@/"$tls"}
  text=${text//@DEVICE@/"$device"}
  text=${text//@LEDS@/"
[leds]
hat = \"$hat\""}
  printf '%s\n' "$text"
}

install_config() {
  local conf=$conf_dir/$room.toml tmp
  record config "$conf"
  if [ -e "$(at "$conf")" ]; then
    say "keeping $conf (never overwritten: --broker and --hat change only new configs)"
    return
  fi
  tmp=$(mktemp)
  render_config > "$tmp"
  install -D -m 0640 "$tmp" "$(at "$conf")"
  rm -f "$tmp"
  say "wrote $conf"
}

boot_config() {
  local candidate
  for candidate in /boot/firmware/config.txt /boot/config.txt; do
    [ -f "$(at "$candidate")" ] && { printf '%s\n' "$candidate"; return; }
  done
  return 0
}

without_block() {
  awk -v begin="$block_begin" -v end="$block_end" '
    $0 == begin { skip = 1; next }
    skip && $0 == end { skip = 0; next }
    !skip { print }' "$1"
}

# The HAT's config.txt lines go between markers at the end of config.txt (under [all]), replaced
# when the HAT changes and removed by --uninstall; nothing else in the file is touched.
install_boot_lines() {
  local snippet=$fw/boot/$hat.txt config path tmp
  config=$(boot_config)
  if [ -z "$config" ]; then
    if [ -f "$snippet" ]; then
      say "no /boot/firmware/config.txt here: add these lines to it on the Pi, then reboot:"
      grep -v '^#' "$snippet" | sed 's/^/    /'
    fi
    return
  fi
  path=$(at "$config")
  tmp=$(mktemp)
  without_block "$path" > "$tmp"
  if [ -f "$snippet" ]; then
    {
      printf '%s\n[all]\n' "$block_begin"
      cat "$snippet"
      printf '%s\n' "$block_end"
    } >> "$tmp"
    record block "$config"
    check_overlays "$snippet" "${config%/*}/overlays"
  fi
  if cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
  else
    cat "$tmp" > "$path"
    rm -f "$tmp"
    changed_boot=1
    say "updated the satellite lines in $config"
  fi
}

check_overlays() {
  local name
  sed -n 's/^dtoverlay=\([^,]*\).*/\1/p' "$1" | while read -r name; do
    [ -e "$(at "$2/$name.dtbo")" ] ||
      say "warning: $2/$name.dtbo is missing: install it before rebooting (firmware-config/README.md)"
  done
}

install_hat_files() {
  local profile
  # Every profile, so [leds] hat can be changed in the config later without install.sh.
  for profile in "$fw"/hats/*.toml; do
    [ ! -e "$profile" ] || put "$profile" "$hats_dir/${profile##*/}" 0644
  done
  if [ -f "$fw/alsa/$hat.conf" ]; then
    put "$fw/alsa/$hat.conf" "$alsa_path" 0644
  elif [ -e "$(at "$alsa_path")" ] && grep -qxF "file $alsa_path" "$(at "$manifest_path")" 2>/dev/null; then
    rm -f "$(at "$alsa_path")"
    say "removed $alsa_path (the $hat HAT needs none)"
  fi
  install_boot_lines
}

install_tree() {
  make_dir "$conf_dir" 0750
  make_dir "$state_dir" 0750
  make_dir "$models_dir" 0755
  record purge-dir "$conf_dir"
  record purge-dir "$state_dir"
  record dir "$models_dir"
  put "$fw/sysusers.d/satellite.conf" "$sysusers_path" 0644
  put "$fw/tmpfiles.d/satellite.conf" "$tmpfiles_path" 0644
  record user satellite
  install_config
  install_hat_files
  put "$here/systemd/satellite@.service" "$unit_path" 0644
  unit_replaced=$replaced
  put "$here/README.md" "$venv_dir/README.md" 0644   # the unit's Documentation=
}

# --- the live system -------------------------------------------------------------------------

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
  # Optional (wake.noise_suppression): only where PyPI has a wheel, never built here.
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary :all: \
    "$speex_pin" 2>/dev/null ||
    say "no $speex_pin wheel for this Python/CPU: wake.noise_suppression is unavailable"
}

install_dev() {
  apt_install "${apt_packages[@]}" "${dev_packages[@]}"
  make_venv "$here/.venv" -e "${here}[dev]"
  "$here/.venv/bin/satellite" models install --dir "${SATELLITE_MODELS_DIR:-$here/.cache/models}"
}

# Users and groups from the sysusers.d file; groups it creates are recorded for --purge.
apply_sysusers() {
  local group
  for group in audio gpio spi; do
    getent group "$group" >/dev/null || record group "$group"
  done
  systemd-sysusers "$sysusers_path"
  systemd-tmpfiles --create "$tmpfiles_path"
}

install_pi() {
  local packages=("${apt_packages[@]}") unit=satellite@$room.service before
  [ "$(id -u)" -eq 0 ] || die "run as root (sudo), or give --root DIR"
  [ -n "$broker" ] || packages+=(mosquitto)
  apt_install "${packages[@]}"
  [ -n "$broker" ] || systemctl enable --now mosquitto.service
  install_tree
  # Recorded before the slow steps, so an interrupted install can still be uninstalled.
  record dir "$venv_dir"
  record unit "$unit"
  write_manifest "$(read_manifest)" "${manifest[@]}"
  apply_sysusers
  before=$(venv_fingerprint)
  make_venv "$venv_dir" "$here"
  "$venv_dir/bin/satellite" models install --dir "$models_dir"
  systemctl daemon-reload
  systemctl enable --now "$unit"
  if [ "$unit_replaced" -eq 1 ] || [ "$before" != "$(venv_fingerprint)" ]; then
    systemctl restart "$unit"
  fi
  report
  say "$unit is running: journalctl -u $unit -f"
}

# Changes when pip installed other code into the venv (then a running daemon is restarted):
# other distributions, or other bytes in the satellite package (pip reinstalls it every time).
venv_fingerprint() {
  [ -x "$venv_dir/bin/python" ] || return 0
  {
    "$venv_dir/bin/python" -m pip freeze --all --disable-pip-version-check || true
    find "$venv_dir"/lib/python3*/site-packages/satellite -type f -name '*.py' -exec sha256sum {} + |
      LC_ALL=C sort || true
  } 2>/dev/null | sha256sum
}

install_root() {
  local out
  install_tree
  out=$(systemctl --root="${root:-/}" --quiet enable "satellite@$room.service" 2>&1) ||
    die "systemctl --root=${root:-/} enable satellite@$room.service: $out"
  record unit "satellite@$room.service"
  write_manifest "$(read_manifest)" "${manifest[@]}"
  report
  say "the file tree is in ${root:-/}; the image still needs the software, installed on the Pi:"
  say "  sudo ./install.sh --room $room${broker:+ --broker $broker} --hat $hat   (keeps this config)"
}

report() {
  [ "$changed_boot" -eq 0 ] || say "reboot for the new /boot/firmware/config.txt lines to take effect"
  [ -z "${mqtt_user:-}" ] || [ -e "$(at "$conf_dir/$room.password")" ] ||
    say "put the MQTT password in $conf_dir/$room.password (one line), then: systemctl restart satellite@$room"
}

# --- uninstall -------------------------------------------------------------------------------

uninstall() {
  local entries kind path keep=()
  [ "$offline" -eq 1 ] || [ "$(id -u)" -eq 0 ] || die "run as root (sudo), or give --root DIR"
  entries=$(read_manifest)
  [ -n "$entries" ] || { say "nothing to uninstall: no $(at "$manifest_path")"; return; }
  while read -r kind path; do
    case "$kind" in
      unit) disable_unit "$path" ;;
    esac
  done <<< "$entries"
  while read -r kind path; do
    case "$kind" in
      file) rm -f "$(at "$path")" ;;
      dir) rm -rf "$(at "$path")" ;;
      block) remove_block "$path" ;;
      config|purge-dir|user|group) keep+=("$kind $path") ;;
    esac
  done <<< "$entries"
  [ "$offline" -eq 1 ] || systemctl daemon-reload
  if [ "$purge" -eq 1 ]; then
    purge_entries "${keep[@]}"
    say "uninstalled and purged"
  else
    write_manifest "${keep[@]}"
    say "uninstalled; kept $conf_dir and $state_dir (--uninstall --purge removes them)"
  fi
}

disable_unit() {
  if [ "$offline" -eq 1 ]; then
    systemctl --root="${root:-/}" --quiet disable "$1" 2>/dev/null || true
  else
    systemctl disable --now "$1" || true
  fi
}

remove_block() {
  local path tmp
  path=$(at "$1")
  [ -f "$path" ] || return 0
  tmp=$(mktemp)
  without_block "$path" > "$tmp"
  cmp -s "$tmp" "$path" || { cat "$tmp" > "$path"; say "removed the satellite lines from $1"; }
  rm -f "$tmp"
}

purge_entries() {
  local entry kind path
  for entry in "$@"; do
    read -r kind path <<< "$entry"
    case "$kind" in
      config) rm -f "$(at "$path")" ;;
      purge-dir) rm -rf "$(at "$path")" ;;
    esac
  done
  for entry in "$@"; do
    read -r kind path <<< "$entry"
    case "$kind" in
      user) remove_user "$path" ;;
      group) [ "$offline" -eq 1 ] || ! getent group "$path" >/dev/null || groupdel "$path" ;;
    esac
  done
}

remove_user() {
  if [ "$offline" -eq 0 ]; then
    ! id "$1" >/dev/null 2>&1 || userdel "$1"
  elif grep -q "^$1:" "$(at /etc/passwd)" 2>/dev/null; then
    userdel --root "${root:-/}" "$1"
  fi
}

main() {
  parse_args "$@"
  case "$mode" in
    dev) install_dev ;;
    uninstall) uninstall ;;
    pi) if [ "$offline" -eq 1 ]; then install_root; else install_pi; fi ;;
  esac
}

main "$@"
