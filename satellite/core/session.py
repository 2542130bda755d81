"""The session state machine: frames in, typed events out. Imports no I/O library."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np

from satellite.core.frames import FRAME_S, Frame, frames_for, rms_dbfs
from satellite.core.ids import new_id
from satellite.core.requests import Abandon, Listen, SessionRequest, SetFault, SetMuted
from satellite.core.utterance import (
    Preroll,
    TimedWord,
    UtteranceTuning,
    pause_awaited,
    recogniser_preroll,
)

# The wake word's level is its loudest frame in this much audio up to the detection, which
# openWakeWord makes anywhere from inside "jarvis" to 0.4 s after it.
LEVEL_WINDOW_S = 1.0
# No microphone hears a room quieter than this; a floor of digital silence (a microphone whose
# DSP gates its output, the test microphone's idle FIFO) would otherwise win every claim.
QUIETEST_FLOOR_DBFS = -80.0


@dataclass(frozen=True)
class Detection:
    """A wake word crossed its threshold on the frame just processed."""

    wake_word: str
    score: float


@dataclass(frozen=True)
class Transcript:
    """The text of an ended utterance."""

    text: str
    confidence: float
    words: tuple[TimedWord, ...] = ()


@dataclass(frozen=True)
class SttUpdate:
    """What the recogniser made of one frame: the current partial text, and a final if it ended."""

    partial: str
    final: Transcript | None = None


class WakeDetector(Protocol):
    """Scores frames for wake words (see satellite.audio.wake)."""

    def process(self, frame: Frame) -> Detection | None: ...

    def reset(self) -> None: ...


class VoiceTracker(Protocol):
    """How long the audio has been silent, and where it paused (see core.utterance.VoiceEnd)."""

    silence_s: float
    tuning: UtteranceTuning  # how long to wait for the pause after the wake word, among others

    @property
    def floor_dbfs(self) -> float: ...

    def update(self, frame: Frame) -> float: ...

    def pause_in(self, audio: Frame, detected_at: int) -> int | None: ...


class Transcriber(Protocol):
    """Streaming speech-to-text for one utterance at a time (see satellite.audio.speech)."""

    def start(self, preroll: Preroll) -> None: ...

    def feed(self, frame: Frame) -> SttUpdate: ...

    def finish(self) -> Transcript | None: ...


@dataclass(frozen=True)
class SessionTiming:
    """End-of-utterance and re-arm rules, in seconds (the settings: stt.*, wake.refractory_s)."""

    preroll_s: float
    trailing_silence_s: float
    max_utterance_s: float
    no_speech_timeout_s: float
    refractory_s: float


# Events the machine emits; the MQTT and LED sides observe them.


@dataclass(frozen=True)
class WakeDetected:
    """A wake word opened a new session; `level_db`: how loud it was (`speech_level_db`)."""

    session_id: str
    wake_word: str
    score: float
    level_db: float = 0.0


@dataclass(frozen=True)
class Listening:
    """An utterance started: audio now goes to the recogniser."""

    session_id: str
    utt_id: str


@dataclass(frozen=True)
class Interim:
    """The partial transcript changed."""

    session_id: str
    utt_id: str
    text: str
    sequence: int


@dataclass(frozen=True)
class Final:
    """The utterance ended with text."""

    session_id: str
    utt_id: str
    transcript: Transcript


class EndReason(Enum):
    """Why a session went back to idle."""

    FINAL = "final"
    NO_SPEECH = "no_speech"
    MUTED = "muted"
    FAULT = "fault"
    LOST = "lost"  # another satellite answers this wake word (satellite.mqtt.arbitration)


@dataclass(frozen=True)
class Idle:
    """The session ended; the satellite listens for the wake word again."""

    session_id: str
    reason: EndReason


@dataclass(frozen=True)
class MuteChanged:
    """Wake detection and STT stopped (muted) or resumed; announced under a fresh session id."""

    session_id: str
    muted: bool


@dataclass(frozen=True)
class FaultChanged:
    """The microphone failed (`reason`) or works again (None); under a fresh session id."""

    session_id: str
    reason: str | None


Event = WakeDetected | Listening | Interim | Final | Idle | MuteChanged | FaultChanged


@dataclass
class _Utterance:
    session_id: str
    utt_id: str
    no_speech_timeout_s: float
    # The audio the recogniser has not had yet (the pre-roll, then the frames heard while it
    # waits for the pause after the wake word); None once it has started.
    pending: Frame | None
    detected_at: int | None  # the detection's sample in `pending`; None: no wake word
    frames: int = 0
    sequence: int = 0
    partial: str = ""
    quiet_frames: int = 0


@dataclass
class SessionMachine:
    """idle -> wake_detected -> listening -> final -> idle, one frame at a time."""

    detector: WakeDetector
    transcriber: Transcriber
    timing: SessionTiming
    new_id: Callable[[], str] = new_id
    voice: VoiceTracker | None = None  # ends utterances on silence; None: on the partial only

    def __post_init__(self) -> None:
        self._preroll_frames = frames_for(self.timing.preroll_s)
        level_frames = frames_for(LEVEL_WINDOW_S)
        self._preroll: deque[Frame] = deque(maxlen=max(self._preroll_frames, level_frames))
        self._utterance: _Utterance | None = None
        self._refractory_left = 0
        self.muted = False

    @property
    def listening(self) -> bool:
        """Whether an utterance is in progress."""
        return self._utterance is not None

    def hand_over(self, to: SessionMachine) -> SessionMachine:
        """Have `to` hear on from where this idle machine stopped (a reload's swap): its recent
        frames (the pre-roll and level window), the refractory period left and the mute.

        The detector's and the voice tracker's own history go with them: give `to` the same
        ones and a wake word that began here still wakes there. Returns `to`.
        """
        if self._utterance is not None:
            raise RuntimeError("an utterance is in progress: it finishes on this machine")
        to._preroll.extend(self._preroll)
        to._refractory_left = self._refractory_left
        to.muted = self.muted
        return to

    def process(self, frame: Frame) -> list[Event]:
        """Advance by one 80 ms frame and return what happened."""
        if self.muted:
            return []
        if self.voice is not None:
            self.voice.update(frame)
        if self._utterance is not None:
            return self._listen(self._utterance, frame)
        self._preroll.append(frame)
        detection = self.detector.process(frame)
        if self._refractory_left > 0:
            self._refractory_left -= 1
            return []
        if detection is None:
            return []
        return self._open(detection)

    def apply(self, request: SessionRequest) -> list[Event]:
        """Carry out what another thread asked for (the pipeline calls it between frames)."""
        match request:
            case SetMuted(muted):
                return self.set_muted(muted)
            case SetFault(reason):
                return self.set_fault(reason)
            case Listen(session_id, timeout_s):
                return self.listen(session_id, timeout_s)
            case Abandon(session_id):
                return self.abandon(session_id)

    def set_muted(self, muted: bool) -> list[Event]:
        """Stop (or resume) consuming audio; an utterance in progress is dropped, not finalised."""
        if muted == self.muted:
            return []
        events: list[Event] = []
        if muted and self._utterance is not None:
            events.append(self._end(self._utterance, EndReason.MUTED))
        self.muted = muted
        self._preroll.clear()
        self.detector.reset()
        return [*events, MuteChanged(self.new_id(), muted)]

    def set_fault(self, reason: str | None) -> list[Event]:
        """The microphone failed or recovered; an utterance in progress ends without a final."""
        events: list[Event] = []
        if reason is not None and self._utterance is not None:
            events.append(self._end(self._utterance, EndReason.FAULT))
        self._preroll.clear()
        self.detector.reset()
        return [*events, FaultChanged(self.new_id(), reason)]

    def abandon(self, session_id: str) -> list[Event]:
        """Another satellite answers the wake word of `session_id`: its utterance ends here
        without a final (nothing if it already ended)."""
        utterance = self._utterance
        if utterance is None or utterance.session_id != session_id:
            return []
        return [self._end(utterance, EndReason.LOST)]

    def listen(
        self, session_id: str | None = None, no_speech_timeout_s: float | None = None
    ) -> list[Event]:
        """Open an utterance without the wake word: a new session, or a follow-up in one."""
        if self.muted or self._utterance is not None:
            return []
        timeout = no_speech_timeout_s or self.timing.no_speech_timeout_s
        return [self._start(session_id or self.new_id(), np.zeros(0, np.int16), timeout)]

    def _open(self, detection: Detection) -> list[Event]:
        session_id = self.new_id()
        heard = list(self._preroll)
        level = self._level_db(heard)
        preroll = np.concatenate(heard[-self._preroll_frames :])
        self._preroll.clear()
        listening = self._start(session_id, preroll, self.timing.no_speech_timeout_s, len(preroll))
        wake = WakeDetected(session_id, detection.wake_word, detection.score, level)
        return [wake, listening]

    def _level_db(self, heard: list[Frame]) -> float:
        recent = heard[-frames_for(LEVEL_WINDOW_S) :]
        # Without a voice tracker (tests, simulations), the quietest frame kept is the floor.
        floor = min(map(rms_dbfs, heard)) if self.voice is None else self.voice.floor_dbfs
        return speech_level_db(recent, floor)

    def _start(
        self,
        session_id: str,
        preroll: Frame,
        no_speech_timeout_s: float,
        detected_at: int | None = None,
    ) -> Listening:
        # The recogniser starts (decoding the pre-roll, ~0.1-0.4 s of CPU) with a later frame,
        # so wake_detected goes out now instead of after it.
        utterance = _Utterance(session_id, self.new_id(), no_speech_timeout_s, preroll, detected_at)
        self._utterance = utterance
        return Listening(session_id, utterance.utt_id)

    def _listen(self, utt: _Utterance, frame: Frame) -> list[Event]:
        utt.frames += 1
        if utt.pending is not None and not self._begin(utt, utt.pending, frame):
            return []
        update = self.transcriber.feed(frame)
        events: list[Event] = []
        if update.partial != utt.partial:
            utt.partial, utt.quiet_frames = update.partial, 0
            if update.partial:
                utt.sequence += 1
                events.append(Interim(utt.session_id, utt.utt_id, update.partial, utt.sequence))
        else:
            utt.quiet_frames += 1
        if update.final is not None:
            return [*events, *self._close(utt, update.final)]
        if self._should_end(utt):
            return [*events, *self._close(utt, self.transcriber.finish())]
        return events

    def _begin(self, utt: _Utterance, pending: Frame, frame: Frame) -> bool:
        """Start the recogniser (see `recogniser_preroll`), or hold `frame` back while waiting
        for the pause after the wake word; whether it started (and `frame` is still to be fed)."""
        at, pause = utt.detected_at, None
        if at is not None and self.voice is not None:
            if pause_awaited(pending, at, self.voice.tuning):
                utt.pending = np.concatenate([pending, frame])
                return False
            pause = self.voice.pause_in(pending, at)
        self.transcriber.start(recogniser_preroll(pending, at, pause))
        utt.pending = None
        return True

    def _should_end(self, utt: _Utterance) -> bool:
        t = self.timing
        if utt.frames * FRAME_S >= t.max_utterance_s:
            return True
        if utt.sequence == 0:
            return utt.frames * FRAME_S >= utt.no_speech_timeout_s
        # To the nearest frame: the final then comes within half a frame of the silence.
        if self.voice is not None and self.voice.silence_s >= t.trailing_silence_s - FRAME_S / 2:
            return True
        # Vosk's partial lags speech by about a second, so this rule alone ends late; it
        # still ends utterances in a room too noisy to hear the voice stop.
        return utt.quiet_frames * FRAME_S >= t.trailing_silence_s

    def _close(self, utt: _Utterance, transcript: Transcript | None) -> list[Event]:
        if transcript is None or not transcript.text:
            return [self._end(utt, EndReason.NO_SPEECH)]
        idle = self._end(utt, EndReason.FINAL)
        return [Final(utt.session_id, utt.utt_id, transcript), idle]

    def _end(self, utt: _Utterance, reason: EndReason) -> Idle:
        self._utterance = None
        self.detector.reset()
        self._refractory_left = round(self.timing.refractory_s / FRAME_S)
        return Idle(utt.session_id, reason)


def speech_level_db(frames: Sequence[Frame], floor_dbfs: float) -> float:
    """How loud a wake word was: its loudest 80 ms frame's RMS over the room's noise floor
    (at least QUIETEST_FLOOR_DBFS), dB.

    Over the floor rather than in dBFS, so a microphone's gain does not count, only how well
    it heard the voice; what satellites compare to pick the one that answers.
    """
    return max(rms_dbfs(frame) for frame in frames) - max(floor_dbfs, QUIETEST_FLOOR_DBFS)
