"""Least privilege on the broker (issue 5, item 7): password file, TLS, the documented ACL.

mosquitto runs with `allow_anonymous false`, a password file made by `mosquitto_passwd`, a TLS
listener whose certificate a test-made CA signed, and `firmware-config/mosquitto/acl.example`
as it is (its users and room are the ones this test uses, so nothing is substituted).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from satellite.config import MqttSettings, load_settings, warn_insecure_files
from satellite.mqtt.link import MqttLink
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Received
from tests.support.satellite_proc import ROOT, SatelliteProcess, room_config, write_config
from tests.support.speech import speak
from tests.support.tls import (
    LoginProbe,
    TlsFiles,
    add_mosquitto_user,
    make_server_certificate,
    mosquitto_tls_lines,
)
from tests.test_e2e import check_session

ACL_EXAMPLE = ROOT / "firmware-config/mosquitto/acl.example"
ROOM = "v1/voice_assistant/room/salon"
STATUS = f"{ROOM}/satellite/sat1/status"
COMMAND = f"{ROOM}/satellite/sat1/command"
SATELLITE_USER = "satellite-salon"  # the users acl.example names
GATEWAY_USER = "gateway"
CLIENT_ID = "satellite-salon-sat1"  # satellite.runtime.engines.client_id for room salon, sat1
SPOKEN = "turn on the kitchen lights"


# --- warn_insecure_files --------------------------------------------------------------------


def room_with_password(tmp_path: Path, config_mode: int, password_mode: int | None) -> Path:
    mqtt: dict[str, Any] = {"username": SATELLITE_USER}
    if password_mode is not None:
        password_file = tmp_path / "salon.password"
        password_file.write_text("s3cret\n")
        password_file.chmod(password_mode)
        mqtt["password_file"] = str(password_file)
    config = write_config(tmp_path / "salon.toml", {"mqtt": mqtt}, room_id="salon")
    config.chmod(config_mode)
    return config


def warnings_for(config: Path) -> list[str]:
    return warn_insecure_files(load_settings(config), config)


def test_private_config_and_password_files_draw_no_warning(tmp_path: Path) -> None:
    assert warnings_for(room_with_password(tmp_path, 0o640, 0o600)) == []


def test_a_world_readable_password_file_draws_a_warning(tmp_path: Path) -> None:
    config = room_with_password(tmp_path, 0o600, 0o644)
    [warning] = warnings_for(config)
    assert warning.startswith(f"mqtt.password_file {tmp_path / 'salon.password'} is world-")
    assert "world-readable (mode 0644)" in warning and "chmod o-rwx" in warning
    assert "s3cret" not in warning


def test_a_world_writable_config_file_draws_a_warning(tmp_path: Path) -> None:
    config = room_with_password(tmp_path, 0o666, None)
    assert warnings_for(config) == [
        f"config file {config} is world-readable and world-writable (mode 0666): any user of "
        f"this host can read and change it; chmod o-rwx {config}"
    ]


def test_a_missing_password_file_is_left_to_the_reader(tmp_path: Path) -> None:
    config = room_with_password(tmp_path, 0o600, 0o600)
    (tmp_path / "salon.password").unlink()
    assert warnings_for(config) == []


# --- the secured broker ---------------------------------------------------------------------


@dataclass(frozen=True)
class SecureBroker:
    """mosquitto with passwords, TLS and acl.example; the passwords it knows."""

    broker: Broker
    tls: TlsFiles
    passwords: dict[str, str]

    def probe(self, topic_filter: str, user: str = GATEWAY_USER) -> LoginProbe:
        broker = self.broker
        return LoginProbe(
            broker.host,
            broker.port,
            topic_filter,
            username=user,
            password=self.passwords[user],
            ca_file=self.tls.ca,
        )


@contextmanager
def secure_broker(workdir: Path) -> Iterator[SecureBroker]:
    tls = make_server_certificate(workdir / "tls")
    passwords = {user: secrets.token_urlsafe(18) for user in (SATELLITE_USER, GATEWAY_USER)}
    password_file = workdir / "mosquitto.passwd"
    for user, password in passwords.items():
        add_mosquitto_user(password_file, user, password)
    extra = (
        f"allow_anonymous false\npassword_file {password_file}\nacl_file {ACL_EXAMPLE}\n"
        + mosquitto_tls_lines(tls)
    )
    with Broker(workdir / "broker", extra_config=extra) as broker:
        yield SecureBroker(broker, tls, passwords)


def satellite_config(tmp_path: Path, secured: SecureBroker, password: str, mode: int) -> Path:
    """The room config (0600) with its password file (`mode`) for the secured broker."""
    password_file = tmp_path / "salon.password"
    password_file.write_text(password + "\n")
    password_file.chmod(mode)
    mqtt = {
        "username": SATELLITE_USER,
        "password_file": str(password_file),
        "tls": True,
        "ca_file": str(secured.tls.ca),
    }
    config = room_config(tmp_path / "salon.toml", port=secured.broker.port, mqtt=mqtt)
    config.chmod(0o600)
    return config


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)  # polling a log file, bounded by the deadline above


def status_of(message: Received) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(message.payload)
    return data


def is_status(**expected: Any) -> Callable[[Received], bool]:
    def check(message: Received) -> bool:
        status = status_of(message) if message.topic == STATUS else {}
        return bool(status) and all(status.get(k) == v for k, v in expected.items())

    return check


def is_session_idle(message: Received) -> bool:
    return (
        "/session/" in message.topic
        and message.topic.endswith("/state")
        and (status_of(message)["state"] == "idle")
    )


def process_bytes(pid: int) -> bytes:
    """The process's argv and initial environment as the kernel holds them."""
    return b"\0".join(Path(f"/proc/{pid}/{name}").read_bytes() for name in ("cmdline", "environ"))


@pytest.mark.integration
def test_the_whole_scenario_runs_under_password_tls_and_the_documented_acl(
    tmp_path: Path, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    with secure_broker(tmp_path / "broker") as secured:
        password = secured.passwords[SATELLITE_USER]
        config = satellite_config(tmp_path, secured, password, 0o640)
        env = dict(fifo_mic.env)
        args = ["-v", "run", "--config", str(config)]
        with (
            secured.probe(f"{ROOM}/#") as gateway,
            SatelliteProcess(args, env=env, log_path=tmp_path / "sat.log") as sat,
        ):
            gateway.wait_for(is_status(online=True), 30)
            fifo_mic.feed(speak(f"hey jarvis, {SPOKEN}", cache_dir=speech_cache))
            gateway.wait_for(is_session_idle, 30)
            session = [m for m in gateway.received() if "/session/" in m.topic]
            assert check_session(session)["text"] == SPOKEN
            # What the satellite reads passes the ACL too: the gateway's state and a command.
            mark = len(gateway.received())
            gateway.publish(f"{ROOM}/session/gw-1/state", b'{"state": "processing"}')
            gateway.wait_for(is_status(led="processing"), 5, start=mark)
            gateway.publish(COMMAND, b'{"command": "mute"}')
            gateway.wait_for(is_status(muted=True), 5, start=mark)
            assert password.encode() not in process_bytes(sat.proc.pid)
            assert sat.stop() == 0
        seen = gateway.received()
    assert not [v for v in env.values() if password in v]
    last_status = [m for m in seen if m.topic == STATUS][-1]  # a clean stop, through the ACL
    assert last_status.retain and status_of(last_status)["online"] is False
    assert not [m.topic for m in seen if password.encode() in m.payload]
    log = sat.log()
    assert password not in log
    assert "Traceback" not in log and "refused" not in log and "world-" not in log
    # mosquitto 2.0 grants any SUBSCRIBE and applies read rules per message, so the proof that
    # the satellite subscribes only where it may read is the LED and mute change above.
    broker_log = secured.broker.logs()
    assert f" as {CLIENT_ID} (p2, c1, k30, u'{SATELLITE_USER}')" in broker_log
    assert not [line for line in broker_log.splitlines() if "Denied" in line], broker_log[-3000:]
    print(f"security: session and final under TLS + ACL; satellite log {len(log)} chars, clean")


@pytest.mark.integration
def test_a_forbidden_publish_shows_in_the_broker_log(tmp_path: Path) -> None:
    # The counterpart of "no Denied line": the ACL is enforced and mosquitto logs it.
    with (
        secure_broker(tmp_path / "broker") as secured,
        secured.probe(COMMAND, user=SATELLITE_USER) as salon,
    ):
        salon.publish("v1/voice_assistant/room/kitchen/session/s1/state", b"{}", qos=0)
        wait_until(lambda: "Denied PUBLISH" in secured.broker.logs(), 5, "a Denied PUBLISH line")


@pytest.mark.integration
def test_a_wrong_password_is_one_clear_log_line_and_the_satellite_keeps_retrying(
    tmp_path: Path, fifo_mic: FifoMic
) -> None:
    with secure_broker(tmp_path / "broker") as secured:
        wrong = "wrong-" + secrets.token_urlsafe(12)
        config = satellite_config(tmp_path, secured, wrong, 0o644)
        log_path = tmp_path / "sat.log"
        with SatelliteProcess(
            ["run", "--config", str(config)], env=fifo_mic.env, log_path=log_path
        ) as sat:
            # mosquitto names no client id for a refused login; the satellite is the only client.
            refusal = "Client <unknown> disconnected, not authorised."
            wait_until(
                lambda: secured.broker.logs().count(refusal) >= 3, 10, "three refused attempts"
            )
            assert sat.proc.poll() is None
            assert sat.stop() == 0
        log = sat.log()
    refused = [line for line in log.splitlines() if "refused" in line]
    assert len(refused) == 1, log
    assert "WARNING" in refused[0] and "Not authorized" in refused[0] and "retrying" in refused[0]
    assert "Traceback" not in log and wrong not in log
    password_file = tmp_path / "salon.password"
    assert f"mqtt.password_file {password_file} is world-readable (mode 0644)" in log
    print(f"security: wrong password -> {refused[0].split(': ', 1)[1]}")


# --- TLS failures name their reason (issue 12, item 11) -------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("case", "host", "expected"),
    [
        (
            "wrong CA",
            "127.0.0.1",
            "TLS handshake failed: certificate verify failed: unable to get local issuer "
            "certificate (check mqtt.ca_file {ca}: it must hold the CA of the broker's "
            "certificate)",
        ),
        (
            "wrong host name",
            "localhost",
            "TLS handshake failed: certificate verify failed: Hostname mismatch, certificate is "
            "not valid for 'localhost' (the broker's certificate does not name localhost: "
            "check mqtt.host)",
        ),
    ],
)
def test_a_tls_failure_is_logged_once_with_its_reason_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str, host: str, expected: str
) -> None:
    caplog.set_level(logging.INFO, logger="satellite.mqtt.link")
    signed = make_server_certificate(tmp_path / "tls")  # names 127.0.0.1 only
    trusted = make_server_certificate(tmp_path / "other").ca if case == "wrong CA" else signed.ca
    extra = mosquitto_tls_lines(signed)
    with Broker(tmp_path / "broker", extra_config=extra) as broker:
        settings = MqttSettings(
            host=host, port=broker.port, tls=True, ca_file=trusted,
            reconnect_min_s=0.1, reconnect_max_s=0.2,
        )  # fmt: skip
        with MqttLink(settings, client_id=f"sat-tls-{host}") as link:
            link.start()

            # One line with the client's TLS alert per refused handshake: "New connection
            # from" is logged only when the handshake was still pending at accept.
            def attempts() -> int:
                return broker.logs().count(" alert ")

            wait_until(lambda: attempts() >= 4, 30, "four handshakes refused")
            assert not link.connected
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings  # once per outage and reason, not once per attempt
    assert expected.format(ca=trusted) in warnings[0]
    assert warnings[0].startswith(f"MQTT broker {host}:{broker.port} TLS handshake failed")
    assert "retrying" in warnings[0] and "Traceback" not in caplog.text
    print(f"{case}: {warnings[0]}")
