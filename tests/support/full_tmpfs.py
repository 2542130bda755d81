"""A really full disk without root: a 16 KiB tmpfs in a private user and mount namespace.

`on_a_full_tmpfs(directory)` wraps a command line: the command runs (exec'd, same pid) where
`directory` is a fresh tmpfs holding `{"muted": false}` in `salon.mute.json` and a `fill` file
that took every free block, so the next write of data fails with ENOSPC. Only that process
sees the mount; the test reads it through `/proc/<pid>/root`.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

_SCRIPT = (
    'mount -t tmpfs -o size=16k tmpfs "$0" && printf \'{"muted": false}\' > "$0/salon.mute.json" '
    '&& { head -c 1M /dev/zero > "$0/fill" 2>/dev/null; exec "$@"; }'
)
_NAMESPACE = ["unshare", "--user", "--map-root-user", "--mount"]


@functools.cache
def namespaces_work() -> bool:
    """Whether this kernel lets us make a user and mount namespace (some disable it)."""
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run([*_NAMESPACE, "true"], capture_output=True, timeout=10, check=False)
    return done.returncode == 0


needs_namespaces = pytest.mark.skipif(
    not namespaces_work(), reason="unprivileged user and mount namespaces are not available"
)


def on_a_full_tmpfs(directory: Path) -> Callable[[list[str]], list[str]]:
    """Wraps argv so that it runs where `directory` is a full tmpfs (see the module doc)."""
    directory.mkdir(parents=True, exist_ok=True)

    def wrap(argv: list[str]) -> list[str]:
        return [*_NAMESPACE, "sh", "-c", _SCRIPT, str(directory), *argv]

    return wrap


def seen_by(pid: int, path: Path) -> Path:
    """`path` as process `pid` sees it, in its own mount namespace."""
    return Path(f"/proc/{pid}/root") / path.relative_to("/")
