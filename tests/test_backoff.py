"""Backoff: the one exponential backoff of the MQTT link, the takeover, the microphone and LEDs."""

from __future__ import annotations

import random

import pytest

from satellite.core.backoff import Backoff


def test_delay_doubles_from_min_to_max_with_20_percent_jitter() -> None:
    backoff = Backoff(0.5, 5.0, jitter=0.2, rng=random.Random(7))
    for failures, step in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (60, 5.0)]:
        delays = [backoff.delay(failures) for _ in range(200)]
        assert all(0.8 * step <= d <= 1.2 * step for d in delays), (failures, delays)
        assert max(delays) - min(delays) > 0.2 * step, "no jitter"


def test_without_jitter_the_waits_are_exact_and_draw_no_random_numbers() -> None:
    rng = random.Random(7)
    backoff = Backoff(0.5, 30.0, rng=rng)
    assert [backoff.next() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert rng.random() == random.Random(7).random(), "a local retry drew from the rng"


def test_next_counts_failures_and_reset_starts_again() -> None:
    backoff = Backoff(1.0, 60.0)
    assert [backoff.next(), backoff.next(), backoff.next()] == [1.0, 2.0, 4.0]
    assert backoff.failures == 3
    backoff.reset()
    assert (backoff.failures, backoff.next()) == (0, 1.0)


def test_a_huge_failure_count_stays_at_the_cap() -> None:
    assert Backoff(0.1, 600.0).delay(10**6) == 600.0


def test_the_same_seed_gives_the_same_waits() -> None:
    def waits(seed: int) -> list[float]:
        backoff = Backoff(1.0, 30.0, jitter=0.2, rng=random.Random(seed))
        return [backoff.next() for _ in range(10)]

    assert waits(3) == waits(3)
    assert waits(3) != waits(4)


@pytest.mark.parametrize(
    ("first_s", "max_s", "jitter"), [(0.0, 1.0, 0.0), (2.0, 1.0, 0.0), (1.0, 2.0, 1.0)]
)
def test_nonsense_figures_are_refused(first_s: float, max_s: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(first_s, max_s, jitter=jitter)
