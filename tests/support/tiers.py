"""The test tiers as a rule: a test that starts a real component carries that component's marker.

The fast tier (`pytest -m "not integration"`) must stay fast, offline and rootless, so the helpers
that start mosquitto (or amqtt), the FIFO microphone, the daemon or install.sh call `require()`.
conftest.py records the running test's markers; outside pytest (the benchmarks use these helpers
too) nothing is checked.
"""

from __future__ import annotations

from collections.abc import Iterable

_running: tuple[str, frozenset[str]] | None = None  # (test id, its markers) while a test runs


class TierError(AssertionError):
    """A test uses a real component without the marker that keeps it out of the fast tier."""


def enter(test_id: str, markers: Iterable[str]) -> None:
    """Called by conftest.py as a test's setup begins."""
    global _running  # noqa: PLW0603 - one test runs at a time in a pytest process
    _running = (test_id, frozenset(markers))


def leave() -> None:
    """Called by conftest.py once a test's teardown is over."""
    global _running  # noqa: PLW0603
    _running = None


def require(marker: str, what: str) -> None:
    """Fail the running test if it starts `what` without `@pytest.mark.<marker>`."""
    if _running is not None and marker not in _running[1]:
        test_id, _ = _running
        raise TierError(f"{test_id} {what}: mark it @pytest.mark.{marker} (see pyproject.toml)")
