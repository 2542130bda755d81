"""TLS and logins for tests: a CA and server certificate (openssl CLI), a probe with a password."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.mqtt_probe import Probe

# Extensions of the server certificate: Python's ssl (VERIFY_X509_STRICT since 3.13) wants the
# key identifiers, and the host name check needs the address in subjectAltName.
SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = IP:{host}
"""
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the test CA's certificate, and the server's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def make_server_certificate(workdir: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A fresh CA (valid 2 days) and a certificate it signed for `host` (an IP address)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca_key, ca = workdir / "ca.key", workdir / "ca.pem"
    key, csr, cert = workdir / "server.key", workdir / "server.csr", workdir / "server.pem"
    extensions = workdir / "server.ext"
    extensions.write_text(SERVER_EXTENSIONS.format(host=host))
    _openssl(
        "req", "-x509", *EC_KEY, "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=satellite test CA", "-addext", "keyUsage = critical, keyCertSign, cRLSign",
    )  # fmt: skip
    _openssl("req", *EC_KEY, "-keyout", key, "-out", csr, "-subj", f"/CN={host}")
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", extensions,
    )  # fmt: skip
    return TlsFiles(ca=ca, cert=cert, key=key)


def mosquitto_tls_lines(files: TlsFiles) -> str:
    """mosquitto.conf lines that turn the listener above them into a TLS listener."""
    return f"certfile {files.cert}\nkeyfile {files.key}\n"


def add_mosquitto_user(password_file: Path, username: str, password: str) -> None:
    """Add (or replace) a user in a mosquitto password file, creating the file if needed."""
    create = [] if password_file.exists() else ["-c"]
    command = ["mosquitto_passwd", *create, "-b", str(password_file), username, password]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise AssertionError(f"mosquitto_passwd failed: {done.stdout}{done.stderr}")


class LoginProbe(Probe):
    """A Probe that logs in as `username` over TLS, trusting only `ca_file`."""

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str,
        *,
        username: str,
        password: str,
        ca_file: Path,
    ) -> None:
        super().__init__(host, port, topic_filter)
        self._client.username_pw_set(username, password)
        self._client.tls_set(ca_certs=str(ca_file))


def _openssl(*args: str | Path) -> None:
    command = ["openssl", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed: {done.stderr}")
