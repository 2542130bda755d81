"""`satellite listen` in a real terminal (tmux) on the FIFO microphone and the real models."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from satellite.commands.listen import _keys_not_echoed
from satellite.commands.listen_view import ListenView, frame_level
from satellite.core.session import (
    EndReason,
    Event,
    Final,
    Idle,
    Listening,
    Transcript,
    WakeDetected,
)
from satellite.mqtt.contracts import PeerClaim, PeerResult
from satellite.mqtt.inbound import ClaimReceived, ResultReceived
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe
from tests.support.satellite_proc import ROOT, room_config
from tests.support.speech import speak

COMMAND = "turn on the kitchen lights"
PEAK = re.compile(r"peak\s+(-inf|-?\d+\.\d) dBFS")
WAKE = re.compile(r"hey_jarvis\s.*?peak (\d\.\d\d)\s+threshold 0\.40")


class Tmux:
    """A private tmux server: its own socket directory and name, no user config, panes kept
    after their process exits (remain-on-exit) so the exit status can be read."""

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "tmux.conf"
        self.conf.write_text("set -g remain-on-exit on\n")
        self.env = {**env, "TMUX_TMPDIR": str(workdir)}

    def __call__(self, *args: str) -> str:
        command = ["tmux", "-u", "-L", "listen-test", "-f", str(self.conf), *args]
        result = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=10, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {result.stderr.strip()}")
        return result.stdout

    def screen(self, *, history: bool = False) -> str:
        """What the pane shows (with its scrollback when `history`)."""
        return self("capture-pane", "-p", "-t", "listen", *(["-S", "-"] if history else []))

    def pane(self, fmt: str) -> str:
        """A tmux format evaluated for the pane, e.g. `#{pane_dead}`."""
        return self("display-message", "-p", "-t", "listen", fmt).strip()

    def kill(self) -> None:
        """Stop the server and everything in it; quiet when it is already gone."""
        subprocess.run(
            ["tmux", "-L", "listen-test", "kill-server"],
            env=self.env,
            capture_output=True,
            timeout=10,
            check=False,
        )


@pytest.fixture
def tmux(tmp_path: Path, fifo_mic: FifoMic) -> Iterator[Tmux]:
    """A private tmux server whose panes see the FIFO microphone; killed after the test."""
    server = Tmux(tmp_path / "tmux", fifo_mic.env)
    try:
        yield server
    finally:
        server.kill()


def wait_screen(tmux: Tmux, seen: Callable[[str], bool], what: str, timeout: float) -> str:
    """Poll the pane until `seen(screen)`; AssertionError with the screen after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux.screen()
        if seen(screen):
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not shown within {timeout} s; the pane:\n{screen}")
        time.sleep(0.05)  # a polling interval, not a synchronisation


def peak_dbfs(screen: str) -> float:
    found = PEAK.search(screen)
    return -np.inf if found is None or found[1] == "-inf" else float(found[1])


def wake_peak(screen: str) -> float:
    found = WAKE.search(screen)
    return 0.0 if found is None else float(found[1])


# bash records what is left once `satellite listen` exits: its status (tmux 3.3's
# #{pane_dead_status} stayed empty now and then, the process left unreaped; bash dies with
# its child if Ctrl-C killed it, leaving no file) and the terminal's modes.
WRAPPER = '"$1" -m satellite listen --config "$2"; s=$?; stty -a >"$3/stty"; echo $s >"$3/status"'


def start_listen(tmux: Tmux, config: Path, records: Path) -> None:
    """`satellite listen` in a 120x40 pane; every byte it writes is also kept in records/raw."""
    records.mkdir()
    argv = ["bash", "-c", WRAPPER, "listen", sys.executable, str(config), str(records)]
    size = ["-x", "120", "-y", "40"]
    # pipe-pane in the same tmux command: queued before the new process can write a byte.
    pipe = ["pipe-pane", "-t", "listen", f"cat >>{records / 'raw'}"]
    tmux("new-session", "-d", "-s", "listen", *size, "-c", str(ROOT), *argv, ";", *pipe)


def read_record(records: Path, name: str) -> str:
    path = records / name
    return path.read_text(errors="replace") if path.exists() else f"<no {name}>"


CLAIM_TOPIC = "v1/voice_assistant/household/home/wake/claim"
RESULT_TOPIC = "v1/voice_assistant/household/home/wake/result"
A_CLAIM = (
    b'{"claim_id":"c1","satellite_id":"sat-k","room_id":"kitchen","group":"home",'
    b'"wake_word":"hey_jarvis","score":0.82,"level_db":31.2,"detected_at":1700000000000}'
)
A_RESULT = (
    b'{"claim_id":"c1","satellite_id":"sat-k","room_id":"kitchen","group":"home",'
    b'"outcome":"won","winner":"sat-k","claims":["c1","c2","c3"],"detected_at":1700000000000}'
)


@pytest.mark.integration
def test_listen_shows_level_wake_and_final_and_quits_on_ctrl_c(
    tmp_path: Path, fifo_mic: FifoMic, tmux: Tmux, speech_cache: Path, broker: Broker
) -> None:
    utterance = speak(f"hey jarvis, {COMMAND}", cache_dir=speech_cache)
    records = tmp_path / "records"
    started = time.monotonic()
    start_listen(tmux, room_config(tmp_path / "salon.toml", port=broker.port), records)

    quiet = wait_screen(tmux, lambda s: "frames" in s and "fifomic" in s, "the view", 20)
    assert peak_dbfs(quiet) < -50, quiet
    fifo_mic.feed(utterance)
    loud = wait_screen(tmux, lambda s: peak_dbfs(s) > -30, "the level rising", 10)
    woke = wait_screen(tmux, lambda s: wake_peak(s) >= 0.4, "hey_jarvis over 0.40", 10)
    heard = wait_screen(tmux, lambda s: bool(re.search(rf"final .*{COMMAND}", s)), "the final", 15)
    shown = time.monotonic() - started
    assert "dB over the floor" in heard, heard

    # The group's claims and results, from the broker (listen itself publishes none).
    wait_screen(tmux, lambda s: "group home on 127.0.0.1" in s and "claims and results" in s,
                "the group connected", 10)  # fmt: skip
    with Probe(broker.host, broker.port, "v1/voice_assistant/household/#") as probe:
        probe.publish(CLAIM_TOPIC, A_CLAIM)
        probe.publish(RESULT_TOPIC, A_RESULT)
        group = wait_screen(tmux, lambda s: "winner sat-k" in s, "the claim and result", 10)
        assert [m.topic for m in probe.received()] == [CLAIM_TOPIC, RESULT_TOPIC]
    assert "claim   kitchen/sat-k  hey_jarvis 0.82  31.2 dB" in group, group

    tmux("send-keys", "-t", "listen", "C-c")
    wait_screen(tmux, lambda _: tmux.pane("#{pane_dead}") == "1", "the exit", 5)
    everything = tmux.screen(history=True)
    status, raw = read_record(records, "status").strip(), read_record(records, "raw")
    print(f"\nlisten: level {peak_dbfs(loud):.1f} dBFS, hey_jarvis {wake_peak(woke):.2f},")
    print(f"final {shown:.1f} s after start; exit {status}; the pane:\n{heard}")
    assert "Traceback" not in everything, everything
    assert status == "0", everything
    assert "echo" in read_record(records, "stty").split(), "echo was left off"
    hidden, shown_again = raw.rfind("\x1b[?25l"), raw.rfind("\x1b[?25h")
    assert 0 <= hidden < shown_again, "the cursor was left hidden"
    assert everything.count("╭─ satellite listen") == 1, "the view was drawn twice (echo?)"
    assert everything.count("frames") == 1, "a line per frame scrolled by"


def test_listen_view_shows_level_scores_against_threshold_and_finals() -> None:
    view = ListenView(title="t", models=["hey_jarvis"], threshold=0.5)
    half_scale = np.full(1280, 16384, np.int16)
    view.observe(frame_level(half_scale), {"hey_jarvis": 0.91}, [])
    events: list[Event] = [
        WakeDetected("s", "hey_jarvis", 0.91),
        Listening("s", "u"),
        Final("s", "u", Transcript(COMMAND, 0.9)),
        Idle("s", EndReason.FINAL),
    ]
    view.observe(frame_level(half_scale), None, events)
    console = Console(width=120, file=io.StringIO(), record=True)
    console.print(view)
    text = console.export_text()
    assert "peak   -6.0 dBFS  rms   -6.0 dBFS" in text, text
    assert "0.91  peak 0.91  threshold 0.50  WAKE" in text, text
    assert "last wake hey_jarvis 0.91" in text and "last end: final" in text, text
    assert re.search(rf"final +\d\d:\d\d:\d\d  {COMMAND}  \(0\.90\)", text), text


def test_listen_view_shows_the_groups_claims_and_results() -> None:
    view = ListenView(title="t", models=["hey_jarvis"], threshold=0.5)
    view.set_household("group home on 127.0.0.1:1883: claims and results")
    view.heard_household(ClaimReceived(PeerClaim.model_validate_json(A_CLAIM)))
    view.heard_household(ResultReceived(PeerResult.model_validate_json(A_RESULT)))
    view.observe(frame_level(np.zeros(1280, np.int16)), None, [WakeDetected("s", "x", 0.5, 12.34)])
    console = Console(width=120, file=io.StringIO(), record=True)
    console.print(view)
    text = console.export_text()
    assert "group    group home on 127.0.0.1:1883: claims and results" in text, text
    assert re.search(
        r"\d\d:\d\d:\d\d\.\d{3}  claim   kitchen/sat-k  hey_jarvis 0.82  31.2 dB", text
    )
    assert "result  kitchen/sat-k  won  winner sat-k  (3 claims)" in text, text
    assert "12.3 dB over the floor" in text, text


def test_listen_keys_not_echoed_while_shown_and_echo_restored() -> None:
    master, follower = os.openpty()
    try:
        with os.fdopen(follower, "r", closefd=False) as terminal:
            with _keys_not_echoed(terminal):
                assert not termios.tcgetattr(follower)[3] & termios.ECHO
                assert termios.tcgetattr(follower)[3] & termios.ISIG
            assert termios.tcgetattr(follower)[3] & termios.ECHO
    finally:
        os.close(master)
        os.close(follower)
