"""Opening the broker connection: a TLS context, and why an attempt failed, in words."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from satellite.config import MqttSettings


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
