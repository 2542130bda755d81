"""When the retained status goes out: a flood of changes or counted messages is coalesced."""

from __future__ import annotations

import math
from collections.abc import Callable

# The retained status goes out at most this often: a flood of inbound states changes the LEDs
# at once, but the broker (and every dashboard) gets the latest view, not every step.
STATUS_INTERVAL_S = 0.5
# A change of the counters alone waits this long, so that the status is not re-published
# for every invalid message counted.
COUNTERS_INTERVAL_S = 1.0


class StatusPacer:
    """Decides whether a view of the room is due for publication (control thread only)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._published: object = None
        self._published_at = -math.inf
        self._counters_changed_at: float | None = None

    def counters_changed(self) -> None:
        """A counter moved: the status goes out within COUNTERS_INTERVAL_S even if the view
        stays the same."""
        if self._counters_changed_at is None:
            self._counters_changed_at = self._now()

    def forget(self) -> None:
        """Publish the next view whether it changed or not (new topics after a reload)."""
        self._published = None

    def due(self, view: object) -> bool:
        """Whether `view` (or the counters) should go out now."""
        now = self._now()
        if now - self._published_at < STATUS_INTERVAL_S:
            return False
        changed_at = self._counters_changed_at
        counters_due = changed_at is not None and now - changed_at >= COUNTERS_INTERVAL_S
        return view != self._published or counters_due

    def sent(self, view: object, *, birth: bool = False) -> None:
        """`view` went out; `birth`: the first status, which holds the next one back not at all."""
        self._published, self._published_at = view, -math.inf if birth else self._now()
        self._counters_changed_at = None
