"""How long to wait before trying again: one exponential backoff for every retry loop."""

from __future__ import annotations

import random

_MAX_DOUBLINGS = 32  # far past any cap in use, and 2.0 ** 32 stays a finite float


class Backoff:
    """Waits that double from `first_s` up to `max_s`, each times 1 ± `jitter`.

    `next()` is the wait after one more failure, `reset()` starts again from `first_s` after a
    success. The jitter (from the injected `rng`) keeps satellites that lost the same broker
    from all knocking at the same instant. Not thread-safe: one retry loop owns it.
    """

    def __init__(
        self,
        first_s: float,
        max_s: float,
        *,
        jitter: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError(f"backoff needs 0 < first_s <= max_s, not {first_s}, {max_s}")
        if not 0 <= jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), not {jitter}")
        self.first_s = first_s
        self.max_s = max_s
        self.jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._failures = 0

    @property
    def failures(self) -> int:
        """Waits handed out since the last `reset()`."""
        return self._failures

    def delay(self, failures: int) -> float:
        """The wait after `failures` earlier waits: first_s doubled that often, up to max_s."""
        step = min(self.max_s, self.first_s * 2.0 ** min(failures, _MAX_DOUBLINGS))
        if not self.jitter:
            return step
        return step * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    def next(self) -> float:
        """The wait before the next try; each call counts one more failure."""
        wait = self.delay(self._failures)
        self._failures += 1
        return wait

    def reset(self) -> None:
        """It worked: the next wait is `first_s` again."""
        self._failures = 0
