"""Hostile input on every subscribed topic, against one running `satellite run` (issue 5, item 6).

hypothesis draws the payloads (invalid by construction). Round one publishes four oversized
valid messages (three of 10 MB), the drawn payloads once, then a flood of 10,000 with four valid
messages inside; round two repeats the oversized ones and the flood, so a leak would show twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe, Received
from tests.support.satellite_proc import SatelliteProcess, room_config
from tests.support.speech import speak

pytestmark = pytest.mark.integration

ROOM = "v1/voice_assistant/room/salon"
STATUS = f"{ROOM}/satellite/sat1/status"
COMMAND = f"{ROOM}/satellite/sat1/command"
LIMIT = 65536  # [mqtt] max_payload_bytes, set explicitly in the config below
BIG = 10 * 1024 * 1024  # mosquitto's default message_size_limit (0) lets it through
FLOOD = 10_000
EXAMPLES = 500
UTTERANCE = "hey jarvis, turn on the kitchen lights"


def state_topic(session: str) -> str:
    return f"{ROOM}/session/{session}/state"


def hint_topic(session: str) -> str:
    return f"{ROOM}/session/{session}/overlay_hint"


# --- payloads the contract must reject, by construction --------------------------------------


def not_a_json_object(payload: bytes) -> bool:
    try:
        return not isinstance(json.loads(payload), dict)
    except (ValueError, RecursionError):
        return True


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


# mosquitto refuses control characters in topics, so session ids are letters and digits (any
# script); they are still one topic level each.
sessions = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12)
any_topic = sessions.map(state_topic) | sessions.map(hint_topic) | st.just(COMMAND)

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=25,
)
not_text = st.none() | st.booleans() | st.integers() | st.floats() | st.lists(json_values)
not_int = st.lists(json_values, min_size=1) | st.dictionaries(st.text(max_size=8), json_values)
BOOL_WORDS = {"0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"}
not_bool = (
    st.none()
    | st.integers().filter(lambda i: i not in (0, 1))
    | st.text(max_size=20).filter(lambda s: s.strip().lower() not in BOOL_WORDS)
    | st.lists(json_values)
)
deep = st.integers(1_000, 32_000)  # within LIMIT: these reach the JSON parser
huge_digits = st.integers(4_301, 60_000).map(lambda n: b"9" * n)  # past int("...")'s limit
bad_utf8 = st.sampled_from([b"\xff", b"\xc3\x28", b"\xc0\x80", b"\xf8\x88\x80\x80\x80"])

anywhere = st.one_of(
    st.binary(max_size=4096).filter(not_a_json_object),
    st.tuples(st.binary(max_size=200), bad_utf8, st.binary(max_size=200)).map(
        lambda t: b'{"state": "' + t[0] + t[1] + t[2] + b'"}'
    ),
    st.text(max_size=300).map(str.encode).filter(not_a_json_object),
    json_values.filter(lambda v: not isinstance(v, dict)).map(dumps),
    deep.map(lambda n: b"[" * n + b"]" * n),
    deep.map(lambda n: b'{"state": ' + b"[" * n + b"]" * n + b"}"),
    st.integers(1_000, 13_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.just(b"[" * 100_000 + b"]" * 100_000),  # 200 kB: rejected on size alone
    huge_digits,
    huge_digits.map(lambda d: b'{"state": ' + d + b', "command": ' + d + b"}"),
    st.sampled_from([b"-1e400", b"1e999999", b"", b"{", b"\x00"]),
)
bad_states = st.one_of(
    st.fixed_dictionaries({"state": not_text | st.text(min_size=65, max_size=200) | st.just("")}),
    st.dictionaries(st.text(max_size=8).filter(lambda k: k != "state"), json_values),
    st.fixed_dictionaries({"state": st.just("processing"), "timestamp": not_int}),
    st.fixed_dictionaries({"state": st.just("processing"), "source": not_int | st.integers()}),
).map(dumps)
bad_states |= st.sampled_from([b'{"state": 1e999999}', b'{"state": -1e400}'])
bad_hints = st.fixed_dictionaries({"keep_open": not_bool}).map(dumps) | st.just(
    b'{"keep_open": 1e309}'
)
bad_commands = st.one_of(
    st.fixed_dictionaries(
        {"command": not_text | st.text().filter(lambda s: s not in {"mute", "unmute", "listen"})}
    ),
    st.dictionaries(st.text(max_size=8).filter(lambda k: k != "command"), json_values),
).map(dumps)
hostile_messages = st.one_of(
    st.tuples(any_topic, anywhere),
    st.tuples(sessions.map(state_topic), bad_states),
    st.tuples(sessions.map(hint_topic), bad_hints),
    st.tuples(st.just(COMMAND), bad_commands),
)


def generate(count: int) -> list[tuple[str, bytes]]:
    """`count` hostile messages, as hypothesis draws them (no shrinking: nothing fails here)."""
    drawn: list[tuple[str, bytes]] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_messages)
    def collect(message: tuple[str, bytes]) -> None:
        drawn.append(message)

    collect()
    return drawn


def flood_of(
    hostile: list[tuple[str, bytes]], valid: dict[int, tuple[str, bytes]]
) -> list[tuple[str, bytes]]:
    """FLOOD messages: `valid` at their positions, else hostile ones in turn, one in 100 of
    them from those over 4 kB (a flood of 64-200 kB payloads would measure loopback, not us)."""
    large = [m for m in hostile if len(m[1]) > 4096]
    small = [m for m in hostile if len(m[1]) <= 4096]
    return [
        valid.get(i) or (large[i // 100 % len(large)] if i % 100 == 50 else small[i % len(small)])
        for i in range(FLOOD)
    ]


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON with a `pad` field that makes it exactly `size` bytes."""
    bare = len(dumps({**body, "pad": ""}))
    payload = dumps({**body, "pad": "x" * (size - bare)})
    assert len(payload) == size
    return payload


# --- the running satellite -------------------------------------------------------------------


class Flooder:
    """A raw paho client that publishes as fast as paho can write."""

    def __init__(self, broker: Broker) -> None:
        self._connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzzer")
        # on_connect runs on paho's network thread and only sets the Event.
        self._client.on_connect = lambda *args: self._connected.set()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert self._connected.wait(5.0), "fuzzer: no CONNACK"

    def send(self, messages: list[tuple[str, bytes]], *, qos: int, timeout: float) -> float:
        """Publish every message in order; seconds until the last was written (QoS 0) or acked."""
        started = time.monotonic()
        infos = [self._client.publish(topic, payload, qos=qos) for topic, payload in messages]
        assert all(info.rc == mqtt.MQTT_ERR_SUCCESS for info in infos)
        infos[-1].wait_for_publish(timeout)
        assert infos[-1].is_published(), f"flood not written within {timeout} s"
        return time.monotonic() - started

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """mosquitto without its per-client queue limit (1000 by default): on a loaded machine it
    otherwise drops part of the flood before the satellite ever sees it, and the exact
    invalid-message count would measure the broker, not the satellite."""
    with Broker(tmp_path / "broker", extra_config="max_queued_messages 0\n") as started:
        yield started


@pytest.fixture
def flooder(broker: Broker) -> Iterator[Flooder]:
    client = Flooder(broker)
    try:
        yield client
    finally:
        client.close()


def status_of(message: Received) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(message.payload)
    return data


def invalid_count(message: Received) -> int:
    counted: int = status_of(message).get("counters", {}).get("invalid_messages", 0)
    return counted


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def leds_over_time(messages: list[Received]) -> list[str]:
    """The status `led` values in order, repeats collapsed."""
    leds: list[str] = []
    for message in messages:
        led = status_of(message).get("led")
        if led is not None and (not leds or leds[-1] != led):
            leds.append(led)
    return leds


class Attack:
    """Sends rounds of hostile traffic to the satellite and waits until it has counted them."""

    def __init__(self, flooder: Flooder, status: Probe) -> None:
        self.flooder = flooder
        self.status = status
        self.invalid_sent = 0

    def round(self, careful: list[tuple[str, bytes]], flood: list[tuple[str, bytes]]) -> None:
        """`careful` at QoS 1, then `flood` at QoS 0 as fast as paho writes; until drained."""
        self.invalid_sent += sum(counts_as_invalid(m) for m in careful + flood)
        self.flooder.send(careful, qos=1, timeout=30)
        flood_s = self.flooder.send(flood, qos=0, timeout=60)
        flood_end = time.monotonic()
        drained = self.status.wait_for(lambda m: invalid_count(m) >= self.invalid_sent, 20)
        print(
            f"fuzz: {len(careful)} + flood of {len(flood)} in {flood_s:.2f} s "
            f"({len(flood) / flood_s:.0f} msg/s); all counted on the status "
            f"{drained.at - flood_end:.2f} s later (counter updates go out at most 1/s)"
        )
        assert invalid_count(drained) == self.invalid_sent


VALID = {  # flood position -> message: the LED changes the test expects, and only those
    1_000: (state_topic("gw-1"), b'{"state": "processing", "source": "gateway"}'),
    4_000: (hint_topic("gw-1"), b'{"keep_open": true}'),
    7_000: (state_topic("gw-2"), padded({"state": "responding"}, LIMIT)),  # at the limit
    9_500: (state_topic("gw-2"), b'{"state": "idle"}'),
}


def oversized() -> list[tuple[str, bytes]]:
    """Valid contract messages, too big: reading them would change the LEDs or mute."""
    return [
        (state_topic("gw-1"), padded({"state": "processing"}, BIG)),
        (hint_topic("gw-1"), padded({"keep_open": True}, BIG)),
        (COMMAND, padded({"command": "mute"}, BIG)),
        (state_topic("gw-1"), padded({"state": "processing"}, LIMIT + 1)),
    ]


LEDS_PER_ROUND = ["processing", "attentive", "responding", "idle"]


def is_valid(message: tuple[str, bytes]) -> bool:
    return message in VALID.values()


def counts_as_invalid(message: tuple[str, bytes]) -> bool:
    """Whether the satellite counts it: an empty payload clears a retained message, no error."""
    return not is_valid(message) and message[1] != b""


def is_subsequence(seen: list[str], expected: list[str]) -> bool:
    """Whether `seen` is `expected` with some entries left out, in order."""
    remaining = iter(expected)
    return all(item in remaining for item in seen)


def print_memory(what: str, before: dict[str, int], after: dict[str, int]) -> int:
    """Print VmRSS and VmHWM before and after; the growth of VmRSS, KiB."""
    rss, hwm = (f"{before[k] / 1024:.1f} -> {after[k] / 1024:.1f} MiB" for k in ("VmRSS", "VmHWM"))
    print(f"fuzz: {what}: VmRSS {rss}, VmHWM {hwm}")
    return after["VmRSS"] - before["VmRSS"]


def leaked_kib(before: dict[str, int], after: dict[str, int]) -> int:
    """What a repeated round kept, KiB: memory it leaked raises both the resident set and its
    peak (the round's transient peak comes on top of it); memory the allocator merely has not
    handed back to the kernel yet raises only the resident set, not past the earlier peak."""
    grown = {k: after[k] - before[k] for k in ("VmRSS", "VmHWM")}
    return min(grown.values())


def test_hostile_input_on_every_topic_changes_nothing_and_costs_nothing(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, flooder: Flooder, speech_cache: Path
) -> None:
    hostile, big = generate(EXAMPLES), oversized()
    flood = flood_of(hostile, VALID)
    config = room_config(
        tmp_path / "salon.toml",
        port=broker.port,
        leds={"hat": "respeaker-2mic"},
        mqtt={"max_payload_bytes": LIMIT},
    )
    env = {**fifo_mic.env, "GPIOZERO_PIN_FACTORY": "mock"}
    with (
        Probe(broker.host, broker.port, STATUS) as status,
        Probe(broker.host, broker.port, f"{ROOM}/session/+/transcript/final") as finals,
        SatelliteProcess(
            ["run", "--config", str(config)], env=env, log_path=tmp_path / "log"
        ) as sat,
    ):
        online = status.wait_for(lambda m: status_of(m).get("led") == "idle", 30)
        start = status.received().index(online)
        attack = Attack(flooder, status)
        memory = [memory_kib(sat.proc.pid)]
        attack.round(big + hostile, flood)
        memory.append(memory_kib(sat.proc.pid))
        attack.round(big, flood)  # the same again: a leak would grow by as much
        memory.append(memory_kib(sat.proc.pid))
        assert sat.proc.poll() is None

        fifo_mic.feed(speak(UTTERANCE, cache_dir=speech_cache))
        final = finals.wait_for(lambda m: True, 20)
        assert json.loads(final.payload)["text"] == "turn on the kitchen lights"
        settled = status.wait_for(
            lambda m: status_of(m)["counters"]["sessions"] == 1 and status_of(m)["led"] == "idle",
            10,
        )
        assert status_of(settled)["counters"]["dropped_frames"] == 0
        assert invalid_count(settled) == attack.invalid_sent
        assert print_memory("first round", memory[0], memory[1]) < 50 * 1024
        print_memory("second round", memory[1], memory[2])
        assert leaked_kib(memory[1], memory[2]) < 20 * 1024
        statuses = status.received()[start:]
        expected = ["idle", *LEDS_PER_ROUND, *LEDS_PER_ROUND, "wake_detected", "listening", "idle"]
        # The status is published at most twice a second: LED steps closer together than that
        # may be left out of it, never reordered or invented.
        leds = leds_over_time(statuses)
        print(f"fuzz: LED patterns on the status: {leds}")
        assert is_subsequence(leds, expected) and leds[-2:] == ["listening", "idle"], leds
        assert not any(status_of(m).get("muted") for m in statuses)
        with Probe(broker.host, broker.port, STATUS) as late:  # the retained status still works
            retained = late.wait_for(lambda m: True, 5)
            assert retained.retain and status_of(retained)["online"] is True
            assert invalid_count(retained) == attack.invalid_sent
        assert sat.stop() == 0
    log = sat.log()
    assert "Traceback" not in log
    for topic, _ in big[:3]:
        assert f"dropped a message on {topic}: payload of {BIG} bytes exceeds {LIMIT}" in log
    assert f"payload of {LIMIT + 1} bytes exceeds {LIMIT}" in log
    assert "Outgoing messages are being dropped" not in broker.logs()
