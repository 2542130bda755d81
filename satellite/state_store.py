"""Small persistent state (mute) in the state directory, written atomically."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


class MuteStore:
    """Remembers whether the room's satellite is muted, across restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> bool:
        """The saved mute state; False when there is none or it cannot be read."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable mute state %s: %s", self.path, exc)
            return False
        return isinstance(data, dict) and data.get("muted") is True

    def save(self, muted: bool) -> None:
        """Write the state; a failure is logged, never raised (mute itself still works)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".mute-")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"muted": muted}, handle)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot save mute state to %s: %s", self.path, exc)
