"""LED patterns and the Indicator: state -> pattern, timeouts back to idle, muted/offline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from satellite.config import PATTERN_NAMES, LedSettings
from satellite.leds.patterns import (
    DEFAULT_STATE_PATTERNS,
    DEFAULT_TIMEOUTS_S,
    FALLBACK_TIMEOUT_S,
    INBOUND_MAY_SHOW,
    PATTERNS,
    Indicator,
    Pattern,
)

SESSION_STATES = [state for state in DEFAULT_STATE_PATTERNS if state != "idle"]
LEDS = LedSettings()  # the room defaults


def make_indicator(now: Callable[[], float] = time.monotonic, **keywords: Any) -> Indicator:
    """An Indicator with the room's default ceiling and default pattern, `keywords` over them."""
    defaults: dict[str, Any] = {"ceiling_s": LEDS.timeout_s, "default": LEDS.default_pattern}
    return Indicator(now=now, **{**defaults, **keywords})


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def indicator(clock: FakeClock) -> Indicator:
    return make_indicator(clock)


def test_patterns_cover_every_state_of_the_issue() -> None:
    wanted = {"idle", "wake_detected", "listening", "processing", "responding", "muted"}
    wanted |= {"error", "offline", "attentive", "unknown"}
    assert set(PATTERNS) == wanted
    assert all(pattern.name == name for name, pattern in PATTERNS.items())


def test_the_settings_name_exactly_the_patterns_drawn_in_their_order() -> None:
    # The room file is validated against PATTERN_NAMES (config imports nothing from leds).
    assert tuple(PATTERNS) == PATTERN_NAMES


@pytest.mark.parametrize("name", list(PATTERNS))
def test_pattern_renders_count_pixels_within_range(name: str) -> None:
    for count in (1, 3, 12):
        for t in (0.0, 0.1, 0.7, 5.3):
            pixels = PATTERNS[name].render(t, count)
            assert len(pixels) == count
            assert all(0.0 <= channel <= 1.0 for pixel in pixels for channel in pixel)


def test_pattern_idle_is_dark() -> None:
    assert PATTERNS["idle"].render(3.0, 12) == ((0.0, 0.0, 0.0),) * 12
    assert not PATTERNS["idle"].animated


def test_pattern_static_ones_do_not_change_over_time() -> None:
    for pattern in PATTERNS.values():
        if not pattern.animated:
            assert pattern.render(0.0, 3) == pattern.render(12.34, 3)


def test_pattern_pulse_breathes_but_never_goes_dark() -> None:
    listening = PATTERNS["listening"]
    levels = [max(listening.render(i * 0.05, 1)[0]) for i in range(80)]
    assert max(levels) == pytest.approx(1.0)
    assert 0.0 < min(levels) < 0.5


def test_pattern_blink_is_on_then_off() -> None:
    error = PATTERNS["error"]
    assert error.render(0.1, 2) == ((1.0, 0.0, 0.0),) * 2
    assert error.render(0.6, 2) == ((0.0, 0.0, 0.0),) * 2


def test_pattern_spin_moves_its_brightest_pixel_round() -> None:
    processing = PATTERNS["processing"]
    brightest = [
        max(range(12), key=lambda i: processing.render(t, 12)[i][2]) for t in (0.0, 0.25, 0.5)
    ]
    assert brightest == [0, 3, 6]


def test_pattern_custom_solid() -> None:
    from satellite.leds.patterns import Effect

    pattern = Pattern("x", Effect.SOLID, (0.2, 0.4, 0.6))
    assert pattern.render(1.0, 2) == ((0.2, 0.4, 0.6), (0.2, 0.4, 0.6))


def test_indicator_starts_idle(indicator: Indicator) -> None:
    assert indicator.tick() == "idle"
    assert indicator.current == "idle"


@pytest.mark.parametrize("state", SESSION_STATES)
def test_indicator_known_states_map_to_their_pattern(indicator: Indicator, state: str) -> None:
    indicator.show(state)
    assert indicator.tick() == state


def test_indicator_unknown_states_map_to_the_default(clock: FakeClock) -> None:
    indicator = make_indicator(clock)
    indicator.show("thinking_hard")
    assert indicator.tick() == "unknown"
    custom = make_indicator(clock, default="processing")
    custom.show("thinking_hard")
    assert custom.tick() == "processing"


def test_indicator_overrides_replace_and_add_mappings(clock: FakeClock) -> None:
    indicator = make_indicator(
        clock, overrides={"processing": "listening", "thinking": "processing"}
    )
    indicator.show("processing")
    assert indicator.tick() == "listening"
    indicator.show("thinking")
    assert indicator.tick() == "processing"
    indicator.show("responding")
    assert indicator.tick() == "responding"


def test_indicator_rejects_unknown_pattern_names() -> None:
    with pytest.raises(ValueError, match="unknown LED pattern 'rainbow'"):
        make_indicator(overrides={"processing": "rainbow"})
    with pytest.raises(ValueError, match="known: idle"):
        make_indicator(timeouts_s={"rainbow": 3.0})
    with pytest.raises(ValueError):
        make_indicator(default="rainbow")


@pytest.mark.parametrize("state", [*SESSION_STATES, "some_gateway_state"])
def test_indicator_every_non_idle_pattern_returns_to_idle_after_its_timeout(
    indicator: Indicator, clock: FakeClock, state: str
) -> None:
    indicator.show(state)
    pattern = indicator.tick()
    assert pattern != "idle"
    timeout = DEFAULT_TIMEOUTS_S.get(pattern, FALLBACK_TIMEOUT_S)
    assert indicator.timeout_for(pattern) == timeout
    clock.advance(timeout - 0.01)
    assert indicator.tick() == pattern
    clock.advance(0.01)
    assert indicator.tick() == "idle"


def test_indicator_timeouts_are_configurable_per_pattern(clock: FakeClock) -> None:
    indicator = make_indicator(clock, timeouts_s={"processing": 2.0})
    indicator.show("processing")
    clock.advance(1.9)
    assert indicator.tick() == "processing"
    clock.advance(0.1)
    assert indicator.tick() == "idle"


def test_indicator_ceiling_caps_every_timeout(clock: FakeClock) -> None:
    indicator = make_indicator(clock, timeouts_s={"responding": 500.0}, ceiling_s=1.0)
    for state in ("responding", "error", "processing"):
        indicator.show(state)
        clock.advance(0.99)
        assert indicator.tick() == state
        clock.advance(0.01)
        assert indicator.tick() == "idle"


def test_indicator_a_new_state_restarts_the_timeout(indicator: Indicator, clock: FakeClock) -> None:
    indicator.show("processing")
    clock.advance(20)
    indicator.show("processing")
    clock.advance(20)
    assert indicator.tick() == "processing"
    clock.advance(10)
    assert indicator.tick() == "idle"


def test_indicator_idle_state_ends_the_session_pattern(indicator: Indicator) -> None:
    indicator.show("responding")
    indicator.show("idle")
    assert indicator.tick() == "idle"


def test_indicator_error_has_its_own_timeout(indicator: Indicator, clock: FakeClock) -> None:
    indicator.show("error")
    clock.advance(DEFAULT_TIMEOUTS_S["error"])
    assert indicator.tick() == "idle"


def test_indicator_muted_lasts_while_muted(indicator: Indicator, clock: FakeClock) -> None:
    indicator.set_muted(True)
    clock.advance(10_000)
    assert indicator.tick() == "muted"
    indicator.set_muted(False)
    assert indicator.tick() == "idle"


def test_indicator_offline_lasts_while_offline(indicator: Indicator, clock: FakeClock) -> None:
    indicator.set_offline(True)
    clock.advance(10_000)
    assert indicator.tick() == "offline"
    indicator.set_offline(False)
    assert indicator.tick() == "idle"


def test_indicator_muted_beats_offline_beats_session(
    indicator: Indicator, clock: FakeClock
) -> None:
    indicator.show("processing")
    indicator.set_offline(True)
    assert indicator.tick() == "offline"
    indicator.set_muted(True)
    assert indicator.tick() == "muted"
    indicator.show("responding")
    assert indicator.tick() == "muted"
    indicator.set_muted(False)
    assert indicator.tick() == "offline"
    indicator.set_offline(False)
    assert indicator.tick() == "responding"
    clock.advance(DEFAULT_TIMEOUTS_S["responding"])
    assert indicator.tick() == "idle"


def test_indicator_session_times_out_underneath_a_condition(
    indicator: Indicator, clock: FakeClock
) -> None:
    indicator.show("processing")
    indicator.set_muted(True)
    clock.advance(DEFAULT_TIMEOUTS_S["processing"])
    assert indicator.tick() == "muted"
    indicator.set_muted(False)
    assert indicator.tick() == "idle"


def test_indicator_condition_patterns_follow_overrides(clock: FakeClock) -> None:
    indicator = make_indicator(clock, overrides={"muted": "error", "offline": "idle"})
    indicator.set_offline(True)
    assert indicator.tick() == "idle"
    indicator.set_muted(True)
    assert indicator.tick() == "error"


def test_indicator_show_inbound_accepts_a_source(indicator: Indicator) -> None:
    indicator.show_inbound("processing", source="gateway")
    assert indicator.current == "processing"


def test_indicator_inbound_table_covers_every_pattern() -> None:
    assert set(INBOUND_MAY_SHOW) == set(PATTERNS)
    forbidden = {name for name, allowed in INBOUND_MAY_SHOW.items() if not allowed}
    assert forbidden == {"wake_detected", "listening", "muted", "offline"}


@pytest.mark.parametrize("state", ["wake_detected", "listening", "muted", "offline"])
def test_indicator_inbound_states_never_show_this_satellites_own_patterns(
    indicator: Indicator, state: str
) -> None:
    indicator.show_inbound("processing")
    indicator.show_inbound(state)
    assert indicator.tick() == "processing"


def test_indicator_the_rule_applies_to_the_pattern_after_overrides(clock: FakeClock) -> None:
    indicator = make_indicator(clock, overrides={"thinking": "muted", "muted": "error"})
    indicator.show_inbound("thinking")  # maps to the muted pattern: ignored
    assert indicator.tick() == "idle"
    indicator.show_inbound("muted")  # maps to the error pattern, which others may show
    assert indicator.tick() == "error"


@pytest.mark.parametrize(
    "state", [s for s in DEFAULT_STATE_PATTERNS if INBOUND_MAY_SHOW[s]] + ["thinking_hard"]
)
def test_indicator_inbound_states_wait_while_our_own_session_is_open(
    indicator: Indicator, state: str
) -> None:
    indicator.show("wake_detected")
    indicator.show_inbound(state)
    assert indicator.tick() == "wake_detected"
    indicator.show("listening")
    indicator.show_inbound(state)
    assert indicator.tick() == "listening"
    indicator.show("idle")
    assert indicator.tick() == indicator.pattern_for(state)


def test_indicator_a_held_state_times_out_from_its_arrival(
    indicator: Indicator, clock: FakeClock
) -> None:
    indicator.show("listening")
    indicator.show_inbound("processing")
    clock.advance(DEFAULT_TIMEOUTS_S["processing"])
    indicator.show("idle")
    assert indicator.tick() == "idle"


def test_indicator_held_states_do_not_outlive_the_next_session(indicator: Indicator) -> None:
    indicator.show("listening")
    indicator.show_inbound("processing")
    indicator.show("idle")
    indicator.show("wake_detected")
    indicator.show("idle")
    assert indicator.tick() == "idle"


def test_indicator_own_session_stays_open_when_its_pattern_timed_out(
    indicator: Indicator, clock: FakeClock
) -> None:
    indicator.show("listening")
    clock.advance(DEFAULT_TIMEOUTS_S["listening"])
    assert indicator.tick() == "idle"
    indicator.show_inbound("responding")
    assert indicator.tick() == "idle" and indicator.own_session


def test_indicator_microphone_fault_shows_error_until_it_recovers_over_mute() -> None:
    clock = [0.0]
    indicator = make_indicator(lambda: clock[0])
    indicator.set_muted(True)
    indicator.set_fault(True)
    clock[0] = 1000.0
    assert indicator.tick() == "error"
    indicator.set_fault(False)
    assert indicator.tick() == "muted"
