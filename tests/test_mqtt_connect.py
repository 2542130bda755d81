"""Connection failures in words that name the setting to check (no network needed)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from satellite.config import MqttSettings
from satellite.mqtt.connect import connect_failure, tls_context

TLS = MqttSettings(host="broker.lan", port=8883, tls=True, ca_file=Path("/etc/satellite/ca.pem"))


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    error.verify_code, error.verify_message = code, message
    return error


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            verify_error(20, "unable to get local issuer certificate"),
            "TLS handshake failed: certificate verify failed: unable to get local issuer "
            "certificate (check mqtt.ca_file /etc/satellite/ca.pem: it must hold the CA of the "
            "broker's certificate)",
        ),
        (
            verify_error(62, "Hostname mismatch, certificate is not valid for 'broker.lan'."),
            "TLS handshake failed: certificate verify failed: Hostname mismatch, certificate is "
            "not valid for 'broker.lan' (the broker's certificate does not name broker.lan: "
            "check mqtt.host)",
        ),
        (
            verify_error(10, "certificate has expired"),
            "certificate has expired (check the dates of the broker's certificate and this "
            "machine's clock)",
        ),
        (
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
            "TLS handshake failed: [SSL: WRONG_VERSION_NUMBER] wrong version number (is "
            "mqtt.port a TLS listener? check mqtt.tls and mqtt.port)",
        ),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            "TLS handshake failed: Connection reset by peer (is mqtt.port a TLS listener?",
        ),
        (
            socket.gaierror(-2, "Name or service not known"),
            "unreachable: 'broker.lan' not found (Name or service not known; check mqtt.host)",
        ),
        (ConnectionRefusedError(111, "Connection refused"), "unreachable: Connection refused"),
        (TimeoutError(), "unreachable: TimeoutError"),
        (None, "unreachable"),
    ],
)
def test_connect_failure_names_the_reason_and_the_setting(
    exc: BaseException | None, expected: str
) -> None:
    assert expected in connect_failure(exc, TLS)


def test_without_a_ca_file_the_system_cas_are_named() -> None:
    settings = MqttSettings(tls=True)
    reason = connect_failure(verify_error(19, "self-signed certificate in chain"), settings)
    assert reason.endswith("(check mqtt.ca_file: unset, so only the system CAs are trusted)")


def test_a_reset_without_tls_is_only_unreachable() -> None:
    reset = ConnectionResetError(104, "Connection reset by peer")
    assert connect_failure(reset, MqttSettings()) == "unreachable: Connection reset by peer"


def test_tls_context_verifies_certificate_and_host_name() -> None:
    context = tls_context(None)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
