"""Opening the broker connection: credentials, TLS, and why an attempt failed, in words."""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from satellite.config import MqttSettings
from satellite.errors import ConfigError, MqttError


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that closes itself when its handshake fails: paho drops it unclosed."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except OSError:
            self.close()
            raise


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """What paho's tls_set() builds (certificate and host name verified), plus the closing."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file is None:
        context.load_default_certs()
    else:
        context.load_verify_locations(cafile=str(ca_file))
    context.sslsocket_class = _ClosingSSLSocket
    return context


def new_client(client_id: str, will: tuple[str, bytes] | None, will_qos: int) -> mqtt.Client:
    """A paho client (MQTT 3.1.1, clean session) with our retained last will, if any."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
    )
    if will is not None:
        try:
            client.will_set(will[0], will[1], qos=will_qos, retain=True)
        except ValueError as exc:
            raise MqttError(f"invalid last will on {will[0]!r}: {exc}") from exc
    return client


def apply_credentials(client: mqtt.Client, settings: MqttSettings) -> None:
    """Username and password (read from its file now): ConfigError if they cannot work."""
    password = settings.read_password()
    if settings.username is None:
        if password is not None:
            raise ConfigError("mqtt.password_file is set but mqtt.username is not")
        return
    client.username_pw_set(settings.username, password)


def apply_tls(client: mqtt.Client, settings: MqttSettings) -> None:
    """TLS with `tls_context`, if configured: ConfigError if the CA file cannot be used."""
    if not settings.tls:
        return
    ca_file = settings.ca_file
    try:
        client.tls_set_context(tls_context(ca_file))
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        where = f"mqtt.ca_file {ca_file}" if ca_file else "the system CA certificates"
        # A ConfigError, not an MqttError: it never heals, so the CLI exits 78.
        raise ConfigError(f"cannot set up TLS with {where}: {exc}") from exc


# OpenSSL's X509_V_ERR_* codes that a setting of ours (or the clock) explains.
_HOST_MISMATCH = (62, 64)  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
_BAD_DATES = (9, 10)  # CERT_NOT_YET_VALID, CERT_HAS_EXPIRED
_NOT_TLS = "is mqtt.port a TLS listener? check mqtt.tls and mqtt.port"


def connect_failure(exc: BaseException | None, settings: MqttSettings) -> str:
    """Why a connection attempt failed, in words that name the setting to check."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message.rstrip(".")
        reason = f"TLS handshake failed: certificate verify failed: {message}"
        return f"{reason} ({_certificate_fix(exc.verify_code, settings)})"
    if isinstance(exc, ssl.SSLError):
        why = getattr(exc, "reason", None) or exc.strerror or str(exc)
        return f"TLS handshake failed: {why} ({_NOT_TLS})"
    if isinstance(exc, ConnectionResetError) and settings.tls:
        return f"TLS handshake failed: {exc.strerror} ({_NOT_TLS})"
    if isinstance(exc, socket.gaierror):
        return f"unreachable: {settings.host!r} not found ({exc.strerror}; check mqtt.host)"
    if isinstance(exc, OSError):
        return f"unreachable: {exc.strerror or exc.__class__.__name__}"
    return "unreachable"


def _certificate_fix(code: int, settings: MqttSettings) -> str:
    if code in _HOST_MISMATCH:
        return f"the broker's certificate does not name {settings.host}: check mqtt.host"
    if code in _BAD_DATES:
        return "check the dates of the broker's certificate and this machine's clock"
    if settings.ca_file is None:
        return "check mqtt.ca_file: unset, so only the system CAs are trusted"
    return f"check mqtt.ca_file {settings.ca_file}: it must hold the CA of the broker's certificate"


class FailedAttempts:
    """The failed connection attempts of one outage: one WARNING for them, not one per retry
    (and one more when the reason changes)."""

    def __init__(self, settings: MqttSettings, log: logging.Logger) -> None:
        self._settings = settings
        self._log = log
        self._count = 0
        self._last: str | None = None

    def failed(self, reason: str) -> None:
        """An attempt failed for `reason` (see `connect_failure`, or a refused CONNACK)."""
        self._count += 1
        if reason == self._last:
            return
        self._last = reason
        settings = self._settings
        self._log.warning(
            "MQTT broker %s:%d %s; retrying in the background (backoff %g-%g s, ±20 %% jitter)",
            settings.host,
            settings.port,
            reason,
            settings.reconnect_min_s,
            settings.reconnect_max_s,
        )

    def over(self) -> str:
        """The broker accepted us: the outage is over; " after N failed attempts", or ""."""
        count, self._count, self._last = self._count, 0, None
        return f" after {count} failed attempts" if count else ""
