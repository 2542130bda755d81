"""install.sh lays down the real file tree into a root, idempotently, and removes it again."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from satellite.config import LedSettings, default_satellite_id, load_settings
from satellite.leds.hats import load_hat
from tests.support import tiers
from tests.support.broker import Broker
from tests.support.systemd_container import DebianRoot, SystemdContainer, unavailable_reason
from tests.support.unit_install import (
    add_user,
    install_standin,
    install_unit,
    write_room_config,
)

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "install.sh"
FIRMWARE = ROOT / "firmware-config"
STOCK_CONFIG_TXT = "# stock Raspberry Pi OS lines\n[pi4]\narm_boost=1\n"
# The names --hat accepts: the profiles, and none.
HATS = sorted({path.stem for path in (FIRMWARE / "hats").glob("*.toml")} | {"none"})


def run_install(*args: str | Path) -> subprocess.CompletedProcess[str]:
    tiers.require("install", "runs install.sh")
    return subprocess.run(
        [str(INSTALL), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )


def install_ok(*args: str | Path) -> str:
    done = run_install(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A root with the one file install.sh edits rather than owns: config.txt."""
    root = tmp_path / "image"
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text(STOCK_CONFIG_TXT)
    return root


@pytest.fixture
def salon(image: Path) -> Path:
    install_ok("--root", image, "--room", "salon", "--hat", "respeaker-2mic")
    return image


def files_in(root: Path) -> set[str]:
    """Every file and symlink under root, relative; empty directories are not listed."""
    return {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() or path.is_symlink()
    }


def tree_digest(root: Path) -> str:
    """Paths, types, modes, mtimes, contents and link targets: any change shows."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest.update(f"{path.relative_to(root)} {info.st_mode:o} {info.st_mtime_ns}\n".encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def manifest(root: Path) -> list[str]:
    return (root / "var/lib/satellite/install-manifest").read_text().splitlines()


@pytest.mark.install
def test_root_install_lays_down_the_tree(salon: Path) -> None:
    assert files_in(salon) == {
        "boot/firmware/config.txt",
        "etc/alsa/conf.d/60-satellite.conf",
        "etc/satellite/salon.toml",
        "etc/systemd/system/satellite@.service",
        "etc/systemd/system/multi-user.target.wants/satellite@salon.service",
        "etc/sysusers.d/satellite.conf",
        "etc/tmpfiles.d/satellite.conf",
        "opt/satellite/README.md",
        "usr/local/bin/satellite",
        *(f"usr/share/satellite/hats/{hat}.toml" for hat in HATS if hat != "none"),
        "var/lib/satellite/install-manifest",
    }
    assert (salon / "var/lib/satellite/models").is_dir()
    # On every user's PATH, pointing where the Pi install puts the venv.
    assert os.readlink(salon / "usr/local/bin/satellite") == "/opt/satellite/bin/satellite"
    unit = salon / "etc/systemd/system/satellite@.service"
    assert unit.read_bytes() == (ROOT / "systemd/satellite@.service").read_bytes()
    wants = salon / "etc/systemd/system/multi-user.target.wants/satellite@salon.service"
    assert os.readlink(wants) == "/etc/systemd/system/satellite@.service"
    alsa = (salon / "etc/alsa/conf.d/60-satellite.conf").read_bytes()
    assert alsa == (FIRMWARE / "alsa/respeaker-2mic.conf").read_bytes()


@pytest.mark.install
def test_root_install_writes_the_room_config(salon: Path) -> None:
    path = salon / "etc/satellite/salon.toml"
    data = tomllib.loads(path.read_text())
    assert data["room_id"] == "salon"
    assert data["leds"] == {"hat": "respeaker-2mic"}
    assert load_settings(path).leds.hat == "respeaker-2mic"
    assert data["audio"]["device"] == "satellite_mic"
    assert data["mqtt"] == {"host": "127.0.0.1", "port": 1883, "tls": False}
    assert path.stat().st_mode & 0o777 == 0o640
    assert load_settings(path).room_id == "salon"
    # An image before its first boot has no machine id: each Pi derives its own satellite_id.
    assert "satellite_id" not in data
    assert '# satellite_id = "pi-salon"' in path.read_text()


@pytest.mark.install
@pytest.mark.parametrize(
    ("model", "small"),
    [
        ("Raspberry Pi Zero 2 W Rev 1.0", True),
        ("Raspberry Pi 3 Model B Plus Rev 1.3", True),
        ("Raspberry Pi 4 Model B Rev 1.5", False),
        (None, False),  # not a Pi (or an image without /proc)
    ],
)
def test_a_small_board_gets_the_small_board_profile(
    image: Path, model: str | None, small: bool
) -> None:
    if model is not None:  # the device tree's string ends in a NUL
        (image / "proc/device-tree").mkdir(parents=True)
        (image / "proc/device-tree/model").write_bytes(model.encode() + b"\0")
    install_ok("--root", image, "--room", "salon")
    path = image / "etc/satellite/salon.toml"
    stt = load_settings(path).stt
    profile = (stt.preroll_s, stt.max_utterance_s)
    assert profile == ((1.0, 10.0) if small else (1.5, 15.0))
    assert ("Small-board profile" in path.read_text()) is small
    assert stt.phrases == []  # phrases are the room's own: only suggested, commented out


@pytest.mark.install
@pytest.mark.parametrize("machine_id", ["0123456789abcdef" * 2, "fedcba9876543210" * 2])
def test_a_new_config_gets_the_machines_own_satellite_id(tmp_path: Path, machine_id: str) -> None:
    # Two Pis left at the same host name: their configs still name two satellites.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text(machine_id + "\n")
    (tmp_path / "etc/hostname").write_text("raspberrypi\n")
    install_ok("--root", tmp_path, "--room", "salon")
    config = tmp_path / "etc/satellite/salon.toml"
    written = tomllib.loads(config.read_text())["satellite_id"]
    assert written == default_satellite_id("raspberrypi", tmp_path / "etc/machine-id")
    assert written.startswith("raspberrypi-") and machine_id[:6] not in written
    assert load_settings(config).satellite_id == written


@pytest.mark.install
def test_root_install_appends_the_hat_lines_to_config_txt_once(salon: Path) -> None:
    text = (salon / "boot/firmware/config.txt").read_text()
    assert text.startswith(STOCK_CONFIG_TXT)
    block = text[len(STOCK_CONFIG_TXT) :].splitlines()
    assert block[0].startswith("# >>> satellite") and block[-1] == "# <<< satellite <<<"
    assert block[1] == "[all]"
    assert "dtparam=spi=on" in block
    assert "dtoverlay=wm8960-soundcard,alsaname=seeed-2mic-voicecard" in block


@pytest.mark.install
def test_root_install_records_what_it_installed(salon: Path) -> None:
    # The image has no /etc/group: sysusers.d will create all three groups at first boot.
    assert [line for line in manifest(salon) if not line.startswith("rmdir ")] == [
        "block /boot/firmware/config.txt",
        "config /etc/satellite/salon.toml",
        "dir /opt/satellite",
        "dir /var/lib/satellite/models",
        "file /etc/alsa/conf.d/60-satellite.conf",
        "file /etc/systemd/system/satellite@.service",
        "file /etc/sysusers.d/satellite.conf",
        "file /etc/tmpfiles.d/satellite.conf",
        "file /opt/satellite/README.md",
        *(f"file /usr/share/satellite/hats/{hat}.toml" for hat in HATS if hat != "none"),
        "group audio",
        "group gpio",
        "group spi",
        "link /usr/local/bin/satellite",
        "purge-dir /etc/satellite",
        "purge-dir /var/lib/satellite",
        "unit satellite@salon.service",
        "user satellite",
    ]
    # The directories it made; /boot/firmware was there.
    made = {line.split(" ", 1)[1] for line in manifest(salon) if line.startswith("rmdir ")}
    assert {"/usr/share/satellite", "/usr/share/satellite/hats", "/usr/local/bin"} <= made
    assert not {"/boot", "/boot/firmware"} & made


@pytest.mark.install
def test_groups_the_image_has_are_not_recorded(image: Path) -> None:
    (image / "etc").mkdir()
    (image / "etc/group").write_text("root:x:0:\naudio:x:29:\ngpio:x:997:\n")
    install_ok("--root", image, "--room", "salon")
    assert [line for line in manifest(image) if line.startswith("group ")] == ["group spi"]


def _ids(path: Path) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":") for line in path.read_text().splitlines()}


@pytest.mark.install
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-tmpfiles chowns: needs root")
def test_first_boot_creates_the_user_groups_and_permissions(salon: Path) -> None:
    # What systemd-sysusers.service and systemd-tmpfiles-setup.service do at boot, on a
    # plain Debian that has an audio group but no gpio or spi.
    (salon / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (salon / "etc/group").write_text("root:x:0:\naudio:x:29:\n")
    for tool in ("systemd-sysusers", "systemd-tmpfiles --create"):
        done = subprocess.run(
            [*tool.split(), f"--root={salon}"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
    user = _ids(salon / "etc/passwd")["satellite"]
    groups = _ids(salon / "etc/group")
    assert user[6] == "/usr/sbin/nologin" and int(user[2]) < 1000
    for group in ("audio", "gpio", "spi"):
        assert groups[group][3].split(",") == ["satellite"], group
    state = (salon / "var/lib/satellite").stat()
    assert (state.st_uid, state.st_mode & 0o777) == (int(user[2]), 0o750)
    config = (salon / "etc/satellite/salon.toml").stat()
    satellite_gid = int(groups["satellite"][2])
    assert (config.st_uid, config.st_gid, config.st_mode & 0o777) == (0, satellite_gid, 0o640)
    models = (salon / "var/lib/satellite/models").stat()
    assert (models.st_uid, models.st_mode & 0o777) == (0, 0o755)


@pytest.mark.install
def test_second_run_changes_nothing(salon: Path) -> None:
    before = tree_digest(salon)
    install_ok("--root", salon, "--room", "salon", "--hat", "respeaker-2mic")
    assert tree_digest(salon) == before


@pytest.mark.install
def test_existing_config_is_never_overwritten(salon: Path) -> None:
    config = salon / "etc/satellite/salon.toml"
    config.write_text('room_id = "salon"\n# mine\n')
    out = install_ok("--root", salon, "--room", "salon", "--broker", "mqtt://elsewhere")
    assert config.read_text() == 'room_id = "salon"\n# mine\n'
    assert "keeping /etc/satellite/salon.toml" in out


@pytest.mark.install
def test_options_on_an_existing_room_list_the_keys_that_differ(image: Path) -> None:
    install_ok("--root", image, "--room", "salon")
    config = image / "etc/satellite/salon.toml"
    before = config.read_bytes()
    out = install_ok(
        "--root", image, "--room", "salon", "--hat", "respeaker-2mic", "--broker", "mqtt://10.0.0.5"
    )
    assert config.read_bytes() == before
    assert "keeping /etc/satellite/salon.toml; these keys differ" in out
    assert '    leds.hat: "none" -> "respeaker-2mic"\n' in out
    assert '    audio.device: "default" -> "satellite_mic"\n' in out
    assert '    mqtt.host: "127.0.0.1" -> "10.0.0.5"\n' in out
    assert "mqtt.port" not in out and "mqtt.tls" not in out  # the same as before
    assert "--update-config" in out


@pytest.mark.install
def test_update_config_rewrites_only_those_keys(image: Path) -> None:
    install_ok("--root", image, "--room", "salon")
    config = image / "etc/satellite/salon.toml"
    mine = config.read_text().replace("threshold = 0.4", "threshold = 0.55   # mine")
    config.write_text(mine + "# my last line\n")
    out = install_ok(
        "--root",
        image,
        "--room",
        "salon",
        "--hat",
        "respeaker-2mic",
        "--broker",
        "mqtts://satellite-salon@broker.lan",
        "--update-config",
    )
    assert "updated /etc/satellite/salon.toml" in out
    settings = load_settings(config)
    assert (settings.leds.hat, settings.audio.device) == ("respeaker-2mic", "satellite_mic")
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.tls) == ("broker.lan", 8883, True)
    assert settings.mqtt.username == "satellite-salon"
    assert settings.wake.threshold == 0.55
    # Line by line: every other line, comments included, is where it was.
    # (The template's commented-out "# username = ..." lines became the settings.)
    changed = {"hat", "device", "host", "port", "tls", "username", "password_file"}

    def others(text: str) -> list[str]:
        return [
            line for line in text.splitlines() if line.lstrip("# ").split(" = ")[0] not in changed
        ]

    assert others(config.read_text()) == [*others(mine), "# my last line"]
    assert config.stat().st_mode & 0o777 == 0o640
    again = install_ok("--root", image, "--room", "salon", "--hat", "respeaker-2mic")
    assert "it already has what --hat respeaker-2mic would set" in again


@pytest.mark.install
def test_a_rerun_without_hat_keeps_the_configs_hat(salon: Path) -> None:
    before = tree_digest(salon)
    out = install_ok("--root", salon, "--room", "salon")
    assert "HAT respeaker-2mic, from /etc/satellite/salon.toml" in out
    assert tree_digest(salon) == before


@pytest.mark.install
def test_update_config_needs_room(tmp_path: Path) -> None:
    done = run_install("--root", tmp_path, "--uninstall", "--update-config")
    assert done.returncode == 2 and "--update-config goes with --room" in done.stderr


@pytest.mark.install
def test_changing_the_hat_replaces_its_files(salon: Path) -> None:
    install_ok("--root", salon, "--room", "salon", "--hat", "none")
    assert not (salon / "etc/alsa/conf.d/60-satellite.conf").exists()
    assert (salon / "boot/firmware/config.txt").read_text() == STOCK_CONFIG_TXT


@pytest.mark.install
def test_uninstall_removes_what_it_installed_and_keeps_the_config(salon: Path) -> None:
    config = (salon / "etc/satellite/salon.toml").read_bytes()
    install_ok("--root", salon, "--uninstall")
    assert files_in(salon) == {
        "boot/firmware/config.txt",
        "etc/satellite/salon.toml",
        "var/lib/satellite/install-manifest",
    }
    assert (salon / "etc/satellite/salon.toml").read_bytes() == config
    assert (salon / "boot/firmware/config.txt").read_text() == STOCK_CONFIG_TXT
    assert not (salon / "var/lib/satellite/models").exists()
    assert "unit satellite@salon.service" not in manifest(salon)


@pytest.mark.install
def test_uninstall_purge_removes_the_config_too(salon: Path) -> None:
    out = install_ok("--root", salon, "--uninstall", "--purge")
    assert files_in(salon) == {"boot/firmware/config.txt"}
    assert not (salon / "etc/satellite").exists()
    assert not (salon / "var/lib/satellite").exists()
    assert "kept on purpose: mosquitto" in out and "apt packages" in out


@pytest.mark.install
def test_uninstall_purge_leaves_no_directory_either(salon: Path) -> None:
    # Every directory install.sh made goes too (empty /usr/share/satellite/hats/ included);
    # /boot/firmware was the image's.
    install_ok("--root", salon, "--uninstall", "--purge")
    left = {str(path.relative_to(salon)) for path in salon.rglob("*")}
    assert left == {"boot", "boot/firmware", "boot/firmware/config.txt"}


@pytest.mark.install
def test_uninstall_says_what_it_keeps(salon: Path) -> None:
    out = install_ok("--root", salon, "--uninstall")
    assert "kept /etc/satellite and /var/lib/satellite" in out
    assert "kept on purpose: mosquitto" in out and "apt packages" in out
    assert not (salon / "usr/local/bin/satellite").is_symlink()
    assert not (salon / "usr/share/satellite").exists()


@pytest.mark.install
def test_someone_elses_satellite_command_is_left_alone(image: Path) -> None:
    mine = image / "usr/local/bin/satellite"
    mine.parent.mkdir(parents=True)
    mine.write_text("#!/bin/sh\n")
    out = install_ok("--root", image, "--room", "salon")
    assert "/usr/local/bin/satellite exists and is not install.sh's" in out
    install_ok("--root", image, "--uninstall", "--purge")
    assert mine.read_text() == "#!/bin/sh\n"


@pytest.mark.install
def test_purge_after_uninstall_still_finds_the_config(salon: Path) -> None:
    install_ok("--root", salon, "--uninstall")
    install_ok("--root", salon, "--uninstall", "--purge")
    assert files_in(salon) == {"boot/firmware/config.txt"}


@pytest.mark.install
def test_uninstall_then_install_gives_the_same_tree(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    install_ok("--root", first, "--room", "salon", "--hat", "respeaker-4mic")
    install_ok("--root", second, "--room", "salon", "--hat", "respeaker-2mic")
    install_ok("--root", second, "--uninstall", "--purge")
    install_ok("--root", second, "--room", "salon", "--hat", "respeaker-4mic")
    assert files_in(first) == files_in(second)


@pytest.mark.install
@pytest.mark.parametrize("room", ["a/b", "sal+on", "sal#on", "", "-x", "living room"])
def test_bad_room_fails_with_one_line(tmp_path: Path, room: str) -> None:
    done = run_install("--root", tmp_path / "image", "--room", room)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "--room" in done.stderr, done.stderr
    assert files_in(tmp_path / "image") == set()


@pytest.mark.install
def test_unknown_hat_fails_with_one_line(tmp_path: Path) -> None:
    done = run_install("--root", tmp_path / "image", "--room", "salon", "--hat", "respeaker-9mic")
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "--hat 'respeaker-9mic'" in done.stderr
    assert "respeaker-2mic" in done.stderr
    assert files_in(tmp_path / "image") == set()


@pytest.mark.install
@pytest.mark.parametrize(
    "broker",
    ["http://host", "mqtt://", "mqtt://user:secret@host", "mqtt://host:70000", "mqtt://ho st"],
)
def test_bad_broker_fails_with_one_line(tmp_path: Path, broker: str) -> None:
    done = run_install("--root", tmp_path / "image", "--room", "salon", "--broker", broker)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "--broker" in done.stderr, done.stderr
    assert "secret" not in done.stderr


@pytest.mark.install
@pytest.mark.parametrize(
    ("broker", "expected"),
    [
        ("mqtt://10.0.0.5", {"host": "10.0.0.5", "port": 1883, "tls": False}),
        ("mqtt://broker.lan:1884", {"host": "broker.lan", "port": 1884, "tls": False}),
        ("mqtts://[fd00::5]", {"host": "fd00::5", "port": 8883, "tls": True}),
        (
            "mqtts://satellite-salon@broker.lan",
            {
                "host": "broker.lan",
                "port": 8883,
                "tls": True,
                "username": "satellite-salon",
                "password_file": "/etc/satellite/salon.password",
            },
        ),
    ],
)
def test_broker_url_goes_into_the_config(
    tmp_path: Path, broker: str, expected: dict[str, object]
) -> None:
    out = install_ok("--root", tmp_path, "--room", "salon", "--broker", broker)
    config = tmp_path / "etc/satellite/salon.toml"
    assert tomllib.loads(config.read_text())["mqtt"] == expected
    assert load_settings(config).mqtt.host == expected["host"]
    assert ("salon.password" in out) == ("username" in expected)


@pytest.mark.install
@pytest.mark.parametrize("hat", HATS)
def test_every_hat_gives_a_valid_config(tmp_path: Path, hat: str) -> None:
    install_ok("--root", tmp_path, "--room", "salon", "--hat", hat)
    settings = load_settings(tmp_path / "etc/satellite/salon.toml")
    expected = "satellite_mic" if (FIRMWARE / f"alsa/{hat}.conf").exists() else "default"
    assert settings.audio.device == expected
    # The installed package finds the profile where install.sh put it.
    profile = load_hat(settings.leds.hat, tmp_path / "usr/share/satellite/hats")
    assert profile.name == hat


def test_hats_are_the_four_of_the_readme() -> None:
    assert set(HATS) >= {"respeaker-2mic", "respeaker-4mic", "gpio-led", "none"}
    assert str(LedSettings().hats_dir) == "/usr/share/satellite/hats"  # where install.sh puts them
    for name in ("alsa", "boot"):
        stems = {path.stem for path in (FIRMWARE / name).iterdir()}
        assert stems <= set(HATS), f"firmware-config/{name} has files for unknown HATs"


@pytest.mark.parametrize("path", sorted((FIRMWARE / "rooms").glob("*.toml")), ids=lambda p: p.name)
def test_room_example_is_valid(path: Path) -> None:
    settings = load_settings(path)
    hat = settings.leds.hat
    assert load_hat(hat, FIRMWARE / "hats").name == hat
    if (FIRMWARE / f"alsa/{hat}.conf").exists():
        assert settings.audio.device == "satellite_mic"


@pytest.mark.integration
@pytest.mark.parametrize("path", sorted((FIRMWARE / "alsa").glob("*.conf")), ids=lambda p: p.name)
def test_asound_snippet_defines_satellite_mic(tmp_path: Path, path: Path) -> None:
    # alsa-lib parses it as a user's ~/.asoundrc; opening it reaches the HAT's card, absent here.
    shutil.copy(path, tmp_path / ".asoundrc")
    env = {**os.environ, "HOME": str(tmp_path)}
    listed = subprocess.run(
        ["arecord", "-L"], env=env, capture_output=True, text=True, timeout=10, check=False
    )
    assert "ALSA lib" not in listed.stderr, listed.stderr
    assert "satellite_mic\n" in listed.stdout
    opened = subprocess.run(
        ["arecord", "-D", "satellite_mic", "-f", "S16_LE", "-r", "16000", "-c", "1", "-d", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    card = "seeed2micvoicec" if "2mic" in path.name else "seeed4micvoicec"
    assert f"Cannot get card index for {card}" in opened.stderr, opened.stderr


@pytest.mark.parametrize("script", [INSTALL, ROOT / "tests/arm64/run.sh"], ids=lambda p: p.name)
def test_scripts_are_shellcheck_clean(script: Path) -> None:
    done = subprocess.run(
        ["shellcheck", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.install
def test_help_lists_every_option() -> None:
    done = run_install("--help")
    assert done.returncode == 0
    for option in ("--room", "--broker", "--hat", "--root", "--dev", "--uninstall", "--purge"):
        assert option in done.stdout


class _Client:
    """A paho MQTT v5 client on the broker as `username`; records the topics it receives."""

    def __init__(self, broker: Broker, username: str) -> None:
        self._topics: list[str] = []
        self._changed = threading.Condition()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5
        )
        self._client.username_pw_set(username)
        # on_message runs on paho's network thread; it only touches state under _changed.
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()

    def subscribe_all(self) -> None:
        info = self._client.subscribe("v1/voice_assistant/#", qos=1)
        assert info[0] == mqtt.MQTT_ERR_SUCCESS

    def publish(self, topics: list[str], marker: str) -> None:
        """Publish to each topic, then to `marker`, in order, at QoS 1."""
        for topic in [*topics, marker]:
            self._client.publish(topic, b"{}", qos=1).wait_for_publish(timeout=5)

    def received_until(self, marker: str) -> set[str]:
        with self._changed:
            assert self._changed.wait_for(lambda: marker in self._topics, timeout=5)
            return set(self._topics) - {marker}

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self._topics.append(message.topic)
            self._changed.notify_all()


@pytest.fixture
def acl_clients(tmp_path: Path) -> Iterator[tuple[_Client, _Client]]:
    """The gateway and the salon satellite on a mosquitto that uses acl.example."""
    acl = FIRMWARE / "mosquitto/acl.example"
    with Broker(tmp_path / "broker", extra_config=f"acl_file {acl}") as broker:
        gateway = _Client(broker, "gateway")
        salon = _Client(broker, "satellite-salon")
        try:
            gateway.subscribe_all()
            salon.subscribe_all()
            yield gateway, salon
        finally:
            salon.close()
            gateway.close()


SALON = "v1/voice_assistant/room/salon"
KITCHEN = "v1/voice_assistant/room/kitchen"


@pytest.mark.integration
def test_acl_example_lets_the_salon_satellite_publish_only_its_own_topics(
    acl_clients: tuple[_Client, _Client],
) -> None:
    gateway, salon = acl_clients
    allowed = {
        f"{SALON}/session/s1/state",
        f"{SALON}/session/s1/transcript/interim",
        f"{SALON}/session/s1/transcript/final",
    }
    denied = {
        f"{SALON}/session/s1/overlay_hint",
        f"{SALON}/satellite/pi-salon/command",
        f"{KITCHEN}/session/s1/state",
        f"{KITCHEN}/satellite/pi-salon/status",
        "v1/voice_assistant/other",
    }
    marker = f"{SALON}/satellite/pi-salon/status"
    salon.publish(sorted(allowed | denied), marker)
    assert gateway.received_until(marker) == allowed


@pytest.mark.integration
def test_acl_example_lets_the_salon_satellite_read_only_its_room(
    acl_clients: tuple[_Client, _Client],
) -> None:
    gateway, salon = acl_clients
    allowed = {
        f"{SALON}/session/s1/state",
        f"{SALON}/session/s1/overlay_hint",
        f"{SALON}/satellite/pi-salon/status",
    }
    denied = {
        f"{SALON}/session/s1/transcript/final",
        f"{KITCHEN}/session/s1/state",
        f"{KITCHEN}/session/s1/overlay_hint",
        f"{KITCHEN}/satellite/pi-kitchen/command",
    }
    marker = f"{SALON}/satellite/pi-salon/command"
    gateway.publish(sorted(allowed | denied), marker)
    assert salon.received_until(marker) == allowed


# --- a Pi install, with the live system's commands faked ----------------------------------------
# install.sh is sourced and install_pi runs with root= pointing into tmp_path (so every file
# lands there), the slow or host-changing steps replaced by shell functions, and systemctl,
# journalctl and groupdel replaced by scripts that record their calls in $FAKE/calls.

FAKE_SYSTEMCTL = r"""#!/bin/bash
# systemctl for one notify unit: its state in $FAKE/state, its STATUS= in $FAKE/status.
echo "systemctl $*" >> "$FAKE/calls"
case "$1" in
  is-active) [ "$(cat "$FAKE/state" 2>/dev/null)" = active ] ;;
  start|restart)
    if [ -e "$FAKE/start-fails" ]; then
      echo failed > "$FAKE/state"
      echo "Job for $2 failed because the control process exited with error code." >&2
      exit 1
    fi
    echo active > "$FAKE/state" ;;
  show)
    case "$3" in
      ActiveState) cat "$FAKE/state" 2>/dev/null || echo inactive ;;
      StatusText) cat "$FAKE/status" 2>/dev/null || true ;;
      InvocationID) echo 5f0c ;;
    esac ;;
esac
"""
FAKE_JOURNALCTL = """#!/bin/bash
echo "journalctl $*" >> "$FAKE/calls"
case "$*" in *_SYSTEMD_INVOCATION_ID=5f0c*) tail -n 1 "$FAKE/journal" 2>/dev/null ;; esac
"""
FAKE_RECORDER = """#!/bin/bash
echo "$(basename "$0") $*" >> "$FAKE/calls"
"""
# The host's own groups are in $FAKE/groups; the "venv" is $FAKE/venv, installed from $FAKE/code.
SOURCED_PI = """
source "$INSTALL"
id() { if [ "$1" = -u ]; then echo 0; else command id "$@"; fi; }
getent() { [ "$1" = group ] && grep -qx "$2" "$FAKE/groups"; }
apt_install() { :; }
apply_sysusers() { printf '%s\\n' gpio spi >> "$FAKE/groups"; }
install_software() { cat "$FAKE/code" > "$FAKE/venv"; }
venv_fingerprint() { cat "$FAKE/venv" 2>/dev/null || true; }
parse_args "$@"
root=$FAKE/root
"""
LISTENING = "room salon; mic 'satellite_mic' at 16000 Hz; broker 127.0.0.1:1883 connected"


class FakePi:
    """A fake live system in a directory: run install.sh functions on it, read their calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.root = path / "root"
        bin_dir = path / "bin"
        bin_dir.mkdir(parents=True)
        for name, text in {
            "systemctl": FAKE_SYSTEMCTL,
            "journalctl": FAKE_JOURNALCTL,
            "groupdel": FAKE_RECORDER,
        }.items():
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE": str(path),
            "INSTALL": str(INSTALL),
        }
        self.write("groups", "root\naudio\n")
        self.write("code", "v1\n")
        self.write("status", LISTENING + "\n")

    def write(self, name: str, text: str) -> None:
        (self.path / name).write_text(text)

    def run(self, call: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Source install.sh with the fakes, parse ARGS, then run `call`; the calls are reset."""
        tiers.require("install", "runs install.sh's functions")
        (self.path / "calls").write_text("")
        return subprocess.run(
            ["bash", "-c", SOURCED_PI + call, "install.sh", *args],
            env=self.env,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def install(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("install_pi", "--room", "salon", "--hat", "respeaker-2mic", *args)

    def calls(self, *words: str) -> list[str]:
        """The recorded calls whose first argument is one of `words`."""
        lines = (self.path / "calls").read_text().splitlines()
        return [line for line in lines if line.split()[1] in words]


@pytest.fixture
def pi(tmp_path: Path) -> FakePi:
    return FakePi(tmp_path / "pi")


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout.splitlines()[-1]


@pytest.mark.install
def test_first_install_starts_the_service_once(pi: FakePi) -> None:
    done = pi.install()
    assert done.returncode == 0, done.stdout + done.stderr
    assert pi.calls("start", "restart") == ["systemctl start satellite@salon.service"]
    assert "systemctl enable --quiet satellite@salon.service" in pi.calls("enable")
    assert last_line(done) == f"install.sh: satellite@salon is listening: {LISTENING}"


@pytest.mark.install
def test_rerun_restarts_only_when_something_changed(pi: FakePi) -> None:
    pi.install()
    same = pi.install()
    assert pi.calls("start", "restart") == []
    assert "nothing changed: not restarted" in same.stdout
    pi.write("code", "v2\n")  # pip put other code into the venv
    pi.install()
    assert pi.calls("start", "restart") == ["systemctl restart satellite@salon.service"]
    pi.install("--broker", "mqtt://10.0.0.5", "--update-config")
    assert pi.calls("start", "restart") == ["systemctl restart satellite@salon.service"]
    pi.install("--broker", "mqtt://10.0.0.5")
    assert pi.calls("start", "restart") == []


@pytest.mark.install
def test_a_failed_start_ends_with_the_error_and_the_check_command(pi: FakePi) -> None:
    pi.write("start-fails", "")
    pi.write("journal", "starting\nconfig error: leds: cannot open the apa102 LEDs: no SPI\n")
    done = pi.install()
    assert done.returncode == 1
    assert last_line(done) == (
        "install.sh: satellite@salon failed: config error: leds: cannot open the apa102 LEDs:"
        " no SPI; run: satellite check --config /etc/satellite/salon.toml"
    )
    assert "Job for" not in done.stdout + done.stderr


@pytest.mark.install
def test_a_fault_in_the_status_is_not_called_listening(pi: FakePi) -> None:
    status = "room salon; mic 'satellite_mic' FAULT (no such device); broker 127.0.0.1:1883"
    pi.write("status", status + "\n")
    done = pi.install()
    assert done.returncode == 1
    assert last_line(done) == (
        f"install.sh: satellite@salon runs but is not listening: {status};"
        " run: satellite check --config /etc/satellite/salon.toml"
    )


@pytest.mark.install
def test_purge_removes_the_groups_it_created_and_nothing_else(pi: FakePi) -> None:
    pi.install()
    recorded = (pi.root / "var/lib/satellite/install-manifest").read_text().splitlines()
    assert [line for line in recorded if line.startswith("group ")] == ["group gpio", "group spi"]
    done = pi.run("uninstall", "--uninstall", "--purge")
    assert done.returncode == 0, done.stderr
    assert pi.calls("gpio", "spi", "audio") == ["groupdel gpio", "groupdel spi"]
    assert "systemctl disable --now satellite@salon.service" in pi.calls("disable")
    assert list(pi.root.rglob("*")) == []  # every file and directory it made is gone
    assert "kept on purpose: mosquitto" in done.stdout


# --- the same functions against a real systemd ------------------------------------------------


@pytest.fixture(scope="module")
def standin_systemd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdContainer]:
    """A booted systemd with the real unit running the sd_notify stand-in, and install.sh."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"cannot boot systemd in namespaces on this machine: {reason}")

    def prepare(container: SystemdContainer) -> None:
        install_unit(container)
        install_standin(container)
        container.copy_in(INSTALL, "/opt/install.sh", mode=0o755)

    parent = tmp_path_factory.getbasetemp()
    with (
        DebianRoot(parent=parent) as root,
        SystemdContainer(root.path, prepare=prepare, parent=parent) as container,
    ):
        add_user(container)
        yield container


def start_and_summarise(container: SystemdContainer, room: str, standin: str) -> list[str]:
    """install.sh's start_service and service_summary on satellite@ROOM; its output lines."""
    write_room_config(container, room, f'room_id = "{room}"\n[standin]\n{standin}\n')
    unit = f"satellite@{room}.service"
    script = (
        f"source /opt/install.sh; start_service {unit} 0;"
        f" service_summary {unit} /etc/satellite/{room}.toml"
    )
    done = container.run("bash", "-c", script, check=False, timeout=60)
    return (done.stdout + done.stderr).splitlines()


@pytest.mark.install
@pytest.mark.network
@pytest.mark.integration
@pytest.mark.root
def test_summary_under_real_systemd_says_listening(standin_systemd: SystemdContainer) -> None:
    lines = start_and_summarise(standin_systemd, "good", "ready_delay_s = 0.5")
    assert lines == [
        "install.sh: starting satellite@good.service (it loads the models first)",
        "install.sh: satellite@good is listening: room good: listening",
    ]


@pytest.mark.install
@pytest.mark.network
@pytest.mark.integration
@pytest.mark.root
def test_summary_under_real_systemd_names_the_error(standin_systemd: SystemdContainer) -> None:
    # The daemon exits 78 before READY=1: systemctl start fails with "Job ... failed".
    lines = start_and_summarise(standin_systemd, "broken", "exit_status = 78")
    assert lines[-1] == (
        "install.sh: satellite@broken failed: standin: /etc/satellite/broken.toml: configuration"
        " error; run: satellite check --config /etc/satellite/broken.toml"
    )
    assert not any("Job for" in line for line in lines)


# --- a 32-bit OS ---------------------------------------------------------------------------------


@pytest.fixture
def lone_install(tmp_path: Path) -> Path:
    """install.sh and firmware-config alone in a directory: no .venv beside it to touch."""
    shutil.copy(INSTALL, tmp_path / "install.sh")
    shutil.copytree(FIRMWARE, tmp_path / "firmware-config")
    return tmp_path / "install.sh"


def fake_machine(tmp_path: Path, dpkg_arch: str | None, uname_m: str) -> dict[str, str]:
    """PATH with dpkg/uname saying this machine's architecture; apt and python only record."""
    tiers.require("install", "runs install.sh")
    bin_dir = tmp_path / "machine-bin"
    bin_dir.mkdir()
    dpkg = f"echo {dpkg_arch}" if dpkg_arch else "exit 1"
    scripts = {
        "dpkg": f'[ "$1" = --print-architecture ] && {dpkg}',
        "uname": f'[ "$1" = -m ] && echo {uname_m}',
        **{name: f'echo "{name} $*" >> "$FAKE/calls"' for name in RECORDED},
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "calls").write_text("")
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE": str(tmp_path)}


RECORDED = ("apt-get", "dpkg-query", "python3", "pip", "systemctl")


@pytest.mark.install
@pytest.mark.parametrize("args", [("--room", "salon"), ("--dev",)], ids=["pi", "dev"])
def test_a_32_bit_os_stops_before_apt_and_pip(
    tmp_path: Path, lone_install: Path, args: tuple[str, ...]
) -> None:
    # Raspberry Pi OS 32-bit on a Pi 4: an aarch64 kernel, an armhf userland.
    env = fake_machine(tmp_path, "armhf", "aarch64")
    done = subprocess.run(
        [str(lone_install), *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert "32-bit OS (armhf)" in done.stderr and "needs a 64-bit one" in done.stderr
    assert (tmp_path / "calls").read_text() == ""


@pytest.mark.install
@pytest.mark.parametrize(
    ("dpkg_arch", "uname_m", "ok"),
    [
        ("arm64", "aarch64", True),
        ("amd64", "x86_64", True),
        ("armhf", "armv7l", False),
        (None, "aarch64", True),  # no dpkg: the kernel's word
        (None, "armv7l", False),
        (None, "armv6l", False),
    ],
)
def test_the_architecture_check(
    tmp_path: Path, dpkg_arch: str | None, uname_m: str, ok: bool
) -> None:
    env = fake_machine(tmp_path, dpkg_arch, uname_m)
    done = subprocess.run(
        ["bash", "-c", f"source {INSTALL}; check_arch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode == 0) == ok, done.stderr
