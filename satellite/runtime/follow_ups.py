"""Follow-up listening: which keep_open hints open the microphone again, and how often."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from satellite.config import FollowupSettings
from satellite.core.requests import Listen

log = logging.getLogger(__name__)

_OWN_SESSIONS = 16  # sessions remembered for follow-ups (a keep_open comes seconds after)


@dataclass
class _OwnSession:
    """A session this satellite opened: how many follow-ups it had."""

    follow_ups: int = 0
    cap_logged: bool = False


class FollowUps:
    """The sessions this satellite opened lately, and the follow-up a keep_open hint opens.

    Only the control thread uses it.
    """

    def __init__(self, settings: FollowupSettings) -> None:
        self.settings = settings
        self._own: dict[str, _OwnSession] = {}  # the last _OWN_SESSIONS, oldest first

    def utterance(self, session_id: str) -> bool:
        """Note an utterance of ours; whether it opened a new session (not a follow-up)."""
        own = self._own.get(session_id)
        if own is not None:
            own.follow_ups += 1
            return False
        self._own[session_id] = _OwnSession()
        if len(self._own) > _OWN_SESSIONS:
            del self._own[next(iter(self._own))]
        return True

    def request(self, session_id: str) -> Listen | None:
        """The follow-up a keep_open in `session_id` opens; None when follow-ups are off, the
        session is not one of ours, or it had its share."""
        own = self._own.get(session_id)
        if not self.settings.enabled or own is None:
            return None
        if own.follow_ups >= self.settings.max_per_session:
            self._log_cap(session_id, own)
            return None
        return Listen(session_id, self.settings.no_speech_timeout_s)

    @staticmethod
    def _log_cap(session_id: str, own: _OwnSession) -> None:
        if own.cap_logged:
            return
        own.cap_logged = True
        log.info(
            "session %s had %d follow-ups (followup.max_per_session): keep_open no longer "
            "opens the microphone in it",
            session_id,
            own.follow_ups,
        )
