"""What other threads ask of the session machine: plain values, applied between frames.

The control thread (mute, listen, follow-ups), the microphone (faults) and the wake-word
arbitration (a lost claim) never touch the machine; they send one of these to the pipeline,
which hands it to `SessionMachine.apply`. Being data, a request can be compared in a test.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SetMuted:
    """Stop (True) or resume (False) consuming audio."""

    muted: bool


@dataclass(frozen=True)
class SetFault:
    """The microphone failed (`reason`) or works again (None)."""

    reason: str | None


@dataclass(frozen=True)
class Listen:
    """Open an utterance without the wake word.

    `session_id`: a follow-up in that session; None: a new session.
    `no_speech_timeout_s`: None: the machine's own (`SessionTiming.no_speech_timeout_s`).
    """

    session_id: str | None
    no_speech_timeout_s: float | None


@dataclass(frozen=True)
class Abandon:
    """Another satellite answers the wake word of `session_id`: end its utterance here."""

    session_id: str


SessionRequest = SetMuted | SetFault | Listen | Abandon
