"""The real `satellite` command as a subprocess: config errors exit 78, schema, version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from satellite import __version__
from satellite.mqtt.schemas import SCHEMA_MODELS
from tests.support.satellite_proc import HATS_DIR

REPO = Path(__file__).resolve().parent.parent
GOOD = """\
room_id = "salon"
[mqtt]
host = "127.0.0.1"
port = 1883
[audio]
device = "fifomic"
[wake]
models = ["hey_jarvis"]
threshold = 0.5
"""


def satellite(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SATELLITE_", "MQTT_"))}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "satellite", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_config_error(result: subprocess.CompletedProcess[str], *names: str) -> str:
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("satellite: config error:")
    for name in names:
        assert name in line
    return line


def run_with(tmp_path: Path, body: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    path = tmp_path / "salon.toml"
    path.write_text(body, encoding="utf-8")
    return path, satellite("run", "--config", str(path), home=tmp_path)


def test_unknown_key_exits_78_in_one_line(tmp_path: Path) -> None:
    path, result = run_with(tmp_path, GOOD.replace("[mqtt]", "[mqtt]\nhostname = 'x'"))
    line = assert_config_error(result, str(path), "mqtt.hostname")
    assert "unknown key" in line


def test_unknown_top_level_key_exits_78(tmp_path: Path) -> None:
    path, result = run_with(tmp_path, "colour = 'red'\n" + GOOD)
    assert_config_error(result, str(path), "colour", "unknown key")


def test_wrong_type_exits_78_in_one_line(tmp_path: Path) -> None:
    path, result = run_with(tmp_path, GOOD.replace("port = 1883", 'port = "x"'))
    assert_config_error(result, str(path), "mqtt.port", "integer")


def test_missing_room_id_exits_78_in_one_line(tmp_path: Path) -> None:
    path, result = run_with(tmp_path, GOOD.replace('room_id = "salon"\n', ""))
    assert_config_error(result, str(path), "room_id", "missing")


@pytest.mark.parametrize("room_id", ["salon/kitchen", "salon#"])
def test_room_id_not_one_level_exits_78_in_one_line(tmp_path: Path, room_id: str) -> None:
    path, result = run_with(tmp_path, GOOD.replace('"salon"', f'"{room_id}"'))
    assert_config_error(result, str(path), "room_id", "must not contain")


def test_missing_file_exits_78_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    result = satellite("run", "--config", str(path), home=tmp_path)
    assert_config_error(result, str(path), "not found")


def test_invalid_toml_exits_78_in_one_line(tmp_path: Path) -> None:
    path, result = run_with(tmp_path, "room_id = \n")
    assert_config_error(result, str(path), "invalid TOML")


def test_simulate_checks_config_first(tmp_path: Path) -> None:
    config = tmp_path / "salon.toml"
    config.write_text(GOOD.replace("threshold = 0.5", "threshold = 1.5"), encoding="utf-8")
    result = satellite(
        "simulate", "--config", str(config), str(tmp_path / "none.wav"), home=tmp_path
    )
    assert_config_error(result, str(config), "wake.threshold")


def test_schema_writes_every_schema(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    result = satellite("schema", "--out", str(out), home=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = {f"{name}.schema.json" for name in SCHEMA_MODELS}
    assert {p.name for p in out.iterdir()} == expected
    for path in out.iterdir():
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["type"] == "object"
        assert "properties" in schema
    assert {Path(line).name for line in result.stdout.splitlines()} == expected


def test_version(tmp_path: Path) -> None:
    result = satellite("--version", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"satellite {__version__}"


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = satellite(home=tmp_path)
    assert result.returncode == 2
    assert "usage: satellite" in result.stderr
    assert "Traceback" not in result.stderr


def test_led_test_cycles_every_pattern_on_mock_gpio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from satellite.leds import PATTERNS

    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    config = tmp_path / "salon.toml"
    config.write_text(
        f'room_id = "salon"\n[leds]\nhat = "respeaker-2mic"\nhats_dir = "{HATS_DIR}"\n'
    )
    result = satellite("led-test", "--config", str(config), "--seconds", "0.01", home=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = [line.removeprefix("showing ") for line in result.stdout.splitlines()[:-1]]
    assert shown == list(PATTERNS)


def test_led_test_without_gpio_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    config = tmp_path / "salon.toml"
    config.write_text(f'room_id = "salon"\n[leds]\nhat = "gpio-led"\nhats_dir = "{HATS_DIR}"\n')
    result = satellite("led-test", "--config", str(config), "--seconds", "0.01", home=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "leds" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_means_the_same_before_or_after_the_command(tmp_path: Path, where: str) -> None:
    args = ["schema", "--out", str(tmp_path / "schemas")]
    args = ["-q", *args] if where == "before" else [*args, "-q"]
    result = satellite(*args, home=tmp_path)
    assert result.returncode == 0 and result.stdout == ""
    assert (tmp_path / "schemas" / "state.schema.json").is_file()


@pytest.mark.integration  # the real models (installed by install.sh --dev, else downloaded)
def test_models_install_quiet_prints_nothing_when_installed(tmp_path: Path) -> None:
    from tests.support.satellite_proc import models_dir

    result = satellite("models", "install", "--dir", str(models_dir()), "-q", home=tmp_path)
    assert result.returncode == 0 and result.stdout == ""
    loud = satellite("models", "install", "--dir", str(models_dir()), "-v", home=tmp_path)
    assert "already installed" in loud.stdout


ENGINES = {"numpy", "paho", "onnxruntime", "vosk", "openwakeword", "gpiozero", "soxr", "pyaudio"}
_IMPORTED = """
import json, sys
from satellite.commands.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
names = {name.split(".")[0] for name in sys.modules} | {n for n in sys.modules if "satellite." in n}
print(json.dumps({"code": code, "imported": sorted(names)}), file=sys.stderr)
"""


def imported_by(*args: str, home: Path) -> tuple[int, set[str]]:
    """The top-level packages and satellite modules `satellite ARGS` has imported by its end."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTED, *args],
        cwd=REPO,
        env={**os.environ, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(done.stderr.splitlines()[-1])
    return report["code"], set(report["imported"])


def test_help_imports_no_engine_nor_pydantic(tmp_path: Path) -> None:
    code, imported = imported_by("--help", home=tmp_path)
    assert code == 0
    assert imported & (ENGINES | {"pydantic", "rich", "satellite.config"}) == set()


def test_config_show_and_check_help_import_no_engine(tmp_path: Path) -> None:
    config = tmp_path / "salon.toml"
    config.write_text(GOOD, encoding="utf-8")
    code, imported = imported_by("-q", "config", "--show", "--config", str(config), home=tmp_path)
    assert code == 0
    assert "pydantic" in imported  # it did load the config
    assert imported & ENGINES == set()
    code, imported = imported_by("check", "--help", home=tmp_path)
    assert code == 0 and imported & ENGINES == set()


def test_a_tools_options_are_known_after_global_flags(tmp_path: Path) -> None:
    config = tmp_path / "salon.toml"
    config.write_text(GOOD, encoding="utf-8")
    result = satellite("-q", "config", "--show", "--config", str(config), home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'room_id = "salon"' in result.stdout


def test_the_cli_exits_78_like_the_config_module_says() -> None:
    from satellite import config
    from satellite.commands import cli

    assert cli.EX_CONFIG == config.EX_CONFIG
