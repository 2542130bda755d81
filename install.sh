#!/usr/bin/env bash
# Installs the satellite. Idempotent: a second run with the same options changes nothing.
#
#   sudo ./install.sh --room ROOM [--broker URL] [--hat NAME]   a Pi: everything, then started
#   sudo ./install.sh --root DIR --room ROOM [--hat NAME]       the file tree only, into an image
#   sudo ./install.sh --uninstall [--purge] [--root DIR]        remove what the manifest lists
#   ./install.sh --dev                                          a workstation / CI: packages, .venv, models
# A 64-bit OS is needed (arm64 on a Pi 3, 4, 5, Zero 2 W; amd64 for --dev): no 32-bit ARM.
#
#   --room ROOM    the room id: one MQTT topic level of letters, digits, '_', '.', '-'; it names
#                  /etc/satellite/ROOM.toml and satellite@ROOM.service
#   --broker URL   mqtt[s]://[user@]host[:port]; without it a local mosquitto is installed and used
#   --hat NAME     respeaker-2mic, respeaker-4mic, gpio-led or none (default: the room config's,
#                  else none), from firmware-config/hats/: its asound.conf and config.txt lines
#   --update-config  an existing room config is never replaced; with this flag the keys that
#                  --hat and --broker set (and only those) are rewritten in it, the rest kept.
#                  Without it install.sh lists the keys that differ
#   --root DIR     install into DIR (an image or a test root): no packages, no venv, no models, no
#                  systemctl against the host; the user and permissions are applied at first boot
#   --uninstall    disable the unit, remove the unit, venv, models, HAT files and the `satellite`
#                  command; keep the config (and mosquitto and the apt packages, always)
#   --purge        with --uninstall: also remove /etc/satellite, /var/lib/satellite, the user and
#                  the groups install.sh created
# What each file is for: firmware-config/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fw=$here/firmware-config
mode=""
room=""
broker=""
hat=none
hat_given=0
broker_given=0
update_config=0
root=""
offline=0
purge=0
python=${PYTHON:-python3}
# openWakeWord is installed without its declared dependencies: it declares tflite-runtime on
# Linux, which has no wheels past Python 3.11 and breaks under numpy 2; we use its ONNX path.
# What it needs at run time is in pyproject.toml (satellite/audio/oww.py keeps its training-only
# imports, scipy and scikit-learn, out of the daemon: they are dev-only, for the benchmarks).
openwakeword_pin="openwakeword==0.6.0"
speex_pin="speexdsp-ns==0.1.2"
# gpiozero's pin factory, lgpio (/dev/gpiochip*: PWM, and the only one that knows the Pi 5),
# and spidev for the APA102 LEDs' hardware SPI. PyPI has lgpio 0.2.2.0 wheels for CPython
# 3.9-3.12 (manylinux_2_34 aarch64 and x86_64, armv7l) but none for 3.13 (Debian 13, Raspberry
# Pi OS trixie): there its sdist is built with PYPI=1, which compiles the lg C library into the
# module. That keeps the venv self-contained: Debian 12 has no python3-lgpio/liblgpio at all,
# and an OS package is built for the OS's one Python. Pinned, because where no 0.2.2.0 wheel
# fits, plain "lgpio" resolves to 0.0.0.2, an empty placeholder that imports without error.
lgpio_pin="lgpio==0.2.2.0"
spidev_pin="spidev==3.8"   # an sdist: gcc and python3-dev build it (apt_packages)

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
hats_dir=/usr/share/satellite/hats   # the default of leds.hats_dir (satellite/config/leds.py)
bin_link=/usr/local/bin/satellite    # on every user's PATH
manifest_path=$state_dir/install-manifest
block_begin="# >>> satellite: added by install.sh, removed by install.sh --uninstall >>>"
block_end="# <<< satellite <<<"

manifest=()
changed_boot=0
replaced=0
unit_replaced=0
config_changed=0

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
      --update-config) update_config=1 ;;
      --room|--broker|--hat|--root)
        [ $# -ge 2 ] || bad_usage "$1 needs a value"
        case "$1" in
          --room) room=$2 ;;
          --broker) broker=$2; broker_given=1 ;;
          --hat) hat=$2; hat_given=1 ;;
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
  [ "$update_config" -eq 0 ] || [ "$mode" = pi ] || bad_usage "--update-config goes with --room"
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
    note_new_dirs "$2"
    install -D -m "$3" "$src" "$dest"
    replaced=1
    say "installed $2"
  fi
  record file "$2"
}

make_dir() {
  [ -d "$(at "$1")" ] && return
  note_new_dirs "$1/."
  install -d -m "$2" "$(at "$1")"
}

# Records, as `rmdir`, the directories that creating the target path PATH creates, so that
# --uninstall removes them once empty (e.g. /usr/share/satellite/hats); existing ones are not ours.
note_new_dirs() {
  local dir
  dir=$(dirname "$1")
  while [ "$dir" != / ] && [ ! -d "$(at "$dir")" ]; do
    record rmdir "$dir"
    dir=$(dirname "$dir")
  done
}

# `satellite` on every user's PATH: a link to the venv's entry point (in an image made with
# --root it points nowhere until install.sh has run on the Pi). Someone else's file is left alone.
link_command() {
  local link target=$venv_dir/bin/satellite
  link=$(at "$bin_link")
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ]; then
    record link "$bin_link"
  elif [ -e "$link" ] || [ -L "$link" ]; then
    say "warning: $bin_link exists and is not install.sh's: left alone (the command is $target)"
  else
    note_new_dirs "$bin_link"
    mkdir -p "$(dirname "$link")"
    ln -s "$target" "$link"
    record link "$bin_link"
    say "installed $bin_link -> $target"
  fi
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
  text=${text//@SMALL_BOARD@/"$(small_board_stt)"}
  printf '%s\n' "$text"
}

# --- the small-board profile ---------------------------------------------------------------------
# A Pi Zero 2 W (512 MB) or Pi 3 (1 GB): four Cortex-A53 cores. Read from the target's
# /proc/device-tree/model (under --root DIR: DIR/proc/device-tree/model, which tests fake).
# What each setting costs and saves: README.md, "Small boards".
small_board() {
  local model
  model=$(tr -d '\0' < "$(at /proc/device-tree/model)" 2>/dev/null) || return 1
  case "$model" in
    *"Raspberry Pi Zero 2"* | *"Raspberry Pi 3"*) printf '%s\n' "$model" ;;
    *) return 1 ;;
  esac
}

small_board_stt() {
  local model
  model=$(small_board) || return 0
  printf '%s\n' "# Small-board profile (install.sh saw \"$model\"): see README.md, \"Small boards\"." \
    'preroll_s = 1.0                   # Vosk decodes less of the wake word when no pause follows it' \
    'max_utterance_s = 10.0            # bounds the Vosk CPU of one session' \
    '# phrases = ["turn on the lights", "turn off the lights"]   # a command-only room: Vosk ~11x' \
    '#   cheaper and ~50 MB less resident; finals are exactly one of these'
}

install_config() {
  local conf=$conf_dir/$room.toml tmp
  record config "$conf"
  if [ -e "$(at "$conf")" ]; then
    existing_config "$conf"
    return
  fi
  tmp=$(mktemp)
  render_config > "$tmp"
  note_new_dirs "$conf"
  install -D -m 0640 "$tmp" "$(at "$conf")"
  rm -f "$tmp"
  say "wrote $conf"
}

# --- an existing room config -------------------------------------------------------------------
# Never replaced. The keys the given options would set are compared with it; the differences
# are listed, or with --update-config rewritten in place (only those lines; comments and the
# rest of the file stay).

# The keys the given options set: --hat the LEDs and the microphone, --broker the MQTT link.
option_keys() {
  [ "$hat_given" -eq 0 ] || printf '%s\n' leds.hat audio.device
  [ "$broker_given" -eq 0 ] || printf '%s\n' mqtt.host mqtt.port mqtt.tls mqtt.username mqtt.password_file
}

existing_config() {
  local conf=$1 keys new out updated status=0
  mapfile -t keys < <(option_keys)
  if [ ${#keys[@]} -eq 0 ]; then
    say "keeping $conf"
    return
  fi
  new=$(mktemp)
  updated=$(mktemp)
  render_config > "$new"
  if [ "$update_config" -eq 1 ]; then
    out=$(toml_keys update "$(at "$conf")" "$new" "$updated" "${keys[@]}") || status=$?
  else
    out=$(toml_keys diff "$(at "$conf")" "$new" "${keys[@]}") || status=$?
  fi
  if [ "$status" -ne 0 ]; then
    say "keeping $conf; not compared with the options: $out"
  elif [ -z "$out" ]; then
    say "keeping $conf: it already has what $(given_options) would set"
  elif [ "$update_config" -eq 1 ]; then
    cat "$updated" > "$(at "$conf")"   # keeps its owner and mode
    config_changed=1
    say "updated $conf (only these keys; the rest of the file is kept):"
    printf '%s\n' "$out" | sed 's/^/    /'
  else
    say "keeping $conf; these keys differ from what $(given_options) would write:"
    printf '%s\n' "$out" | sed 's/^/    /'
    say "to apply them: add --update-config (rewrites only these keys), or edit the file"
  fi
  rm -f "$new" "$updated"
}

given_options() {
  local words=()
  [ "$hat_given" -eq 0 ] || words+=("--hat $hat")
  [ "$broker_given" -eq 0 ] || words+=("--broker $broker")
  printf '%s\n' "${words[*]}"
}

# When --hat is not given, an existing config's [leds] hat is kept: a re-run to update the code
# must not take the HAT's ALSA and config.txt lines away.
hat_from_config() {
  local conf found
  conf=$(at "$conf_dir/$room.toml")
  [ "$hat_given" -eq 0 ] && [ -f "$conf" ] || return 0
  found=$(toml_keys get "$conf" leds.hat 2>/dev/null) || return 0
  [ -n "$found" ] && [ "$found" != none ] || return 0
  if [[ $'\n'$(known_hats)$'\n' == *$'\n'"$found"$'\n'* ]]; then
    hat=$found
    say "HAT $hat, from $conf_dir/$room.toml"
  fi
}

# toml_keys get FILE KEY | diff OLD NEW KEY... | update OLD NEW OUT KEY...
# diff and update print `key: old -> new` per differing key; update writes OLD with those keys
# set to NEW's values (or their lines removed) to OUT, line by line, and checks the result.
toml_keys() {
  "$python" - "$@" <<'PY'
import json, re, sys, tomllib

def load(path):
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        sys.exit(f"{path}: {exc}")

def get(data, key):
    *tables, name = key.split(".")
    for table in tables:
        data = data.get(table, {})
    return data.get(name) if isinstance(data, dict) else None

def show(value):
    return "(unset)" if value is None else json.dumps(value)

def set_line(lines, key, value):
    table, name = key.rsplit(".", 1)
    header = re.compile(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$")
    assign = re.compile(r'(\s*' + re.escape(name) + r'\s*=\s*)("(?:[^"\\]|\\.)*"|[^#\s]+)(.*)$')
    start = next((i for i, l in enumerate(lines) if (m := header.match(l)) and m[1] == table), None)
    if start is None:
        if value is not None:
            lines += ["", f"[{table}]", f"{name} = {show(value)}"]
        return
    end = next((i for i in range(start + 1, len(lines)) if header.match(lines[i])), len(lines))
    for i in range(start + 1, end):
        if match := assign.match(lines[i]):
            if value is None:
                del lines[i]
            else:
                lines[i] = match[1] + show(value) + match[3]
            return
    if value is None:
        return
    commented = re.compile(r"\s*#\s*" + re.escape(name) + r"\s*=")
    for i in range(start + 1, end):
        if commented.match(lines[i]):  # the template's example line becomes the setting
            lines[i] = f"{name} = {show(value)}"
            return
    settings = [i for i in range(start + 1, end) if re.match(r"\s*[A-Za-z0-9_-]+\s*=", lines[i])]
    lines.insert(max(settings, default=start) + 1, f"{name} = {show(value)}")  # after the last

command, old_path, *rest = sys.argv[1:]
old = load(old_path)
if command == "get":
    print(get(old, rest[0]) or "")
    sys.exit()
new_path, *rest = rest
out_path, keys = (rest[0], rest[1:]) if command == "update" else (None, rest)
new = load(new_path)
changed = [k for k in keys if get(old, k) != get(new, k)]
for key in changed:
    print(f"{key}: {show(get(old, key))} -> {show(get(new, key))}")
if out_path and changed:
    with open(old_path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    for key in changed:
        set_line(lines, key, get(new, key))
    text = "\n".join(lines) + "\n"
    result = tomllib.loads(text)
    if any(get(result, k) != get(new, k) for k in keys):
        sys.exit("could not rewrite these keys line by line: edit the file")
    with open(out_path, "w", encoding="utf-8") as handle:
        handle.write(text)
PY
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
  record_new_groups
  hat_from_config
  install_config
  install_hat_files
  put "$here/systemd/satellite@.service" "$unit_path" 0644
  unit_replaced=$replaced
  put "$here/README.md" "$venv_dir/README.md" 0644   # the unit's Documentation=
  record dir "$venv_dir"
  link_command
}

# The groups the sysusers.d file will create (now on a Pi, at first boot in an image): recorded
# before they exist, so --purge removes those and never a group the system had.
record_new_groups() {
  local group
  for group in audio gpio spi; do
    if [ "$offline" -eq 0 ]; then
      getent group "$group" >/dev/null || record group "$group"
    else
      grep -q "^$group:" "$(at /etc/group)" 2>/dev/null || record group "$group"
    fi
  done
}

# --- the live system -------------------------------------------------------------------------

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    is_installed "$pkg" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && { say "system packages present"; return; }
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}: run as root or install them first"
  say "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  for pkg in "${missing[@]}"; do record package "$pkg"; done   # listed, never removed
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
  install_gpio_backend "$venv"
}

# lgpio and spidev (see lgpio_pin). Never fatal: without them gpiozero falls back (no PWM, no
# Pi 5, software SPI), the satellite still listens and `satellite check` names the fallback.
install_gpio_backend() {
  local venv=$1 log missing=() had_swig=0
  log=$(mktemp)
  if ! pip_quiet "$venv" "$log" --only-binary lgpio "$lgpio_pin"; then
    say "no $lgpio_pin wheel for this Python/CPU: building it from its source (needs swig)"
    ! is_installed swig || had_swig=1
    # In a subshell: apt_install's "run as root" must not end a --dev install.
    : > "$log"
    if (apt_install swig) && PYPI=1 pip_quiet "$venv" "$log" --no-binary lgpio "$lgpio_pin"; then
      [ "$had_swig" -eq 1 ] || record package swig
    else
      missing+=("lgpio ($(last_error_line "$log" || echo "no swig"))")
    fi
  fi
  pip_quiet "$venv" "$log" "$spidev_pin" || missing+=("spidev ($(last_error_line "$log"))")
  rm -f "$log"
  [ ${#missing[@]} -eq 0 ] || say "warning: not in $venv: $(printf '%s; ' "${missing[@]}")the" \
    "LEDs and button will fall back (no PWM, no Pi 5, software SPI); on a non-Pi that is fine"
}

last_error_line() {
  grep -i 'error' "$1" | tail -n 1 | grep .
}

# pip install, its output in LOG (kept for the one line a failure reports).
pip_quiet() {
  local venv=$1 log=$2
  shift 2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" > "$log" 2>&1
}

install_dev() {
  apt_install "${apt_packages[@]}" "${dev_packages[@]}"
  make_venv "$here/.venv" -e "${here}[dev]"
  "$here/.venv/bin/satellite" models install --dir "${SATELLITE_MODELS_DIR:-$here/.cache/models}"
}

# Users and groups from the sysusers.d file (the groups it creates were recorded before).
apply_sysusers() {
  systemd-sysusers "$sysusers_path"
  systemd-tmpfiles --create "$tmpfiles_path"
}

# The venv with the satellite and its GPIO backend, then the models.
install_software() {
  make_venv "$venv_dir" "$here"
  "$venv_dir/bin/satellite" models install --dir "$models_dir"
}

install_pi() {
  local packages=("${apt_packages[@]}") unit=satellite@$room.service before changed=0
  [ "$(id -u)" -eq 0 ] || die "run as root (sudo), or give --root DIR"
  [ -n "$broker" ] || packages+=(mosquitto)
  apt_install "${packages[@]}"
  [ -n "$broker" ] || systemctl enable --now mosquitto.service
  install_tree
  # Recorded before the slow steps, so an interrupted install can still be uninstalled.
  record unit "$unit"
  write_manifest "$(read_manifest)" "${manifest[@]}"
  apply_sysusers
  before=$(venv_fingerprint)
  install_software
  write_manifest "$(read_manifest)" "${manifest[@]}"   # what the slow steps added (swig)
  if [ "$unit_replaced" -eq 1 ] || [ "$config_changed" -eq 1 ] ||
    [ "$before" != "$(venv_fingerprint)" ]; then
    changed=1
  fi
  systemctl daemon-reload
  start_service "$unit" "$changed"
  report
  service_summary "$unit" "$conf_dir/$room.toml"
}

# One start on a first install; on a re-run a restart only when the unit, the venv's code or
# the config changed. systemctl's own "Job ... failed" is not shown: service_summary says why.
start_service() {
  local unit=$1 changed=$2
  systemctl enable --quiet "$unit" || say "warning: could not enable $unit: it will not start at boot"
  if ! systemctl is-active --quiet "$unit"; then
    say "starting $unit (it loads the models first)"
    systemctl start "$unit" 2>/dev/null || true
  elif [ "$changed" -eq 1 ]; then
    say "restarting $unit: new code, unit or config"
    systemctl restart "$unit" 2>/dev/null || true
  else
    say "$unit is running and nothing changed: not restarted"
  fi
}

# The install's last line, whatever the service did: listening, or what is wrong and what to run.
# Type=notify: start/restart returned once the daemon said READY=1 (or failed).
service_summary() {
  local unit=$1 conf=$2 state status
  state=$(systemctl show -p ActiveState --value "$unit" 2>/dev/null) || state=unknown
  status=$(systemctl show -p StatusText --value "$unit" 2>/dev/null) || status=""
  if [ "$state" = active ] && [[ $status != *FAULT* ]]; then
    say "${unit%.service} is listening${status:+: $status}"
    return 0
  fi
  if [ "$state" = active ]; then
    say "${unit%.service} runs but is not listening: $status; run: satellite check --config $conf"
  else
    say "${unit%.service} failed: $(last_error "$unit" "$state"); run: satellite check --config $conf"
  fi
  return 1
}

# The daemon's own last line in the journal, from its last run (usually the error it died of).
last_error() {
  local id match line
  id=$(systemctl show -p InvocationID --value "$1" 2>/dev/null) || id=""
  match=${id:+_SYSTEMD_INVOCATION_ID=$id}
  journalctl --sync 2>/dev/null || true
  line=$(journalctl --no-pager -q -o cat -n 1 "${match:-_SYSTEMD_UNIT=$1}" 2>/dev/null) || line=""
  printf '%s\n' "${line:-it is $2 and logged nothing}"
}

install_root() {
  local out
  install_tree
  note_new_dirs /etc/systemd/system/multi-user.target.wants/satellite@.service
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
      link) [ ! -L "$(at "$path")" ] || rm -f "$(at "$path")" ;;
      dir) rm -rf "$(at "$path")" ;;
      block) remove_block "$path" ;;
      config|purge-dir|user|group|package|rmdir) keep+=("$kind $path") ;;
    esac
  done <<< "$entries"
  [ "$offline" -eq 1 ] || systemctl daemon-reload
  if [ "$purge" -eq 1 ]; then
    purge_entries "${keep[@]}"
    remove_empty_dirs "${keep[@]}" > /dev/null
    say "uninstalled and purged"
  else
    mapfile -t keep < <(remove_empty_dirs "${keep[@]}")
    write_manifest "${keep[@]}"
    say "uninstalled; kept $conf_dir and $state_dir (--uninstall --purge removes them)"
  fi
  say_kept "${keep[@]}"
}

# The directories install.sh created, deepest first, where they are empty now; prints the
# entries to keep (the rest, for a later --purge).
remove_empty_dirs() {
  local entry kind path
  for entry in "$@"; do
    read -r kind path <<< "$entry"
    [ "$kind" = rmdir ] || printf '%s\n' "$entry"
  done
  printf '%s\n' "$@" | sed -n 's/^rmdir //p' | LC_ALL=C sort -r | while read -r path; do
    rmdir "$(at "$path")" 2>/dev/null || [ ! -d "$(at "$path")" ] || printf 'rmdir %s\n' "$path"
  done
}

# What an uninstall leaves on purpose, so nobody has to guess.
say_kept() {
  local entry kind path packages=()
  for entry in "$@"; do
    read -r kind path <<< "$entry"
    [ "$kind" != package ] || packages+=("$path")
  done
  say "kept on purpose: mosquitto (the broker; other satellites and the gateway may use it) and the apt packages install.sh needed${packages[*]:+ (it installed: ${packages[*]})}; remove them with apt-get if nothing else needs them"
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
  # The user first: a group cannot go while it is a user's primary group.
  for entry in "$@"; do
    read -r kind path <<< "$entry"
    [ "$kind" != user ] || remove_user "$path"
  done
  for entry in "$@"; do
    read -r kind path <<< "$entry"
    [ "$kind" != group ] || remove_group "$path"
  done
}

remove_group() {
  if [ "$offline" -eq 0 ]; then
    ! getent group "$1" >/dev/null || groupdel "$1"
  elif grep -q "^$1:" "$(at /etc/group)" 2>/dev/null; then
    groupdel --root "${root:-/}" "$1"
  fi
}

remove_user() {
  if [ "$offline" -eq 0 ]; then
    ! id "$1" >/dev/null 2>&1 || userdel "$1"
  elif grep -q "^$1:" "$(at /etc/passwd)" 2>/dev/null; then
    userdel --root "${root:-/}" "$1"
  fi
}

# --- the machine ---------------------------------------------------------------------------

# The userland's architecture, not the kernel's: 32-bit Raspberry Pi OS runs an aarch64 kernel
# under an armhf userland on a Pi 4. A function of dpkg and uname, so a test can fake them.
userland_arch() {
  dpkg --print-architecture 2>/dev/null || uname -m
}

# Before any apt or pip: onnxruntime (the wake word) has no wheel for 32-bit ARM.
check_arch() {
  local arch
  arch=$(userland_arch)
  case "$arch" in
    armhf|armel|arm|armv6l|armv7l|i386|i686)
      die "this is a 32-bit OS ($arch): the satellite needs a 64-bit one (Raspberry Pi OS 64-bit or Debian arm64, on a Pi 3, 4, 5 or Zero 2 W); onnxruntime, which runs the wake word, has no 32-bit ARM build" ;;
  esac
}

main() {
  parse_args "$@"
  case "$mode" in
    dev) check_arch; install_dev ;;
    uninstall) uninstall ;;
    pi) if [ "$offline" -eq 1 ]; then install_root; else check_arch; install_pi; fi ;;
  esac
}

# tests/test_install.py sources this file to run single functions against fake commands.
[ "${BASH_SOURCE[0]}" != "$0" ] || main "$@"
