"""Wires the boundaries together: microphone -> session machine -> MQTT."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from satellite import __version__
from satellite.assemble import build_machine, build_outbox, client_id
from satellite.audio import Capture, FrameAssembler
from satellite.config import Settings
from satellite.contracts import StatusMessage, now_ms
from satellite.frames import Frame
from satellite.mqtt import MqttLink
from satellite.outbox import Outbox, Outgoing
from satellite.session import Event, Final, SessionMachine, WakeDetected
from satellite.topics import SatelliteTopic

log = logging.getLogger(__name__)


def status_payload(settings: Settings, *, online: bool) -> bytes:
    """The retained status message: `online: true` on connect, `online: false` as last will."""
    return StatusMessage(
        online=online,
        room_id=settings.room_id,
        satellite_id=settings.satellite_id,
        timestamp=now_ms(),
        version=__version__,
    ).to_json()


def log_event(event: Event) -> None:
    """One lifecycle line per session event (never per frame)."""
    if isinstance(event, WakeDetected):
        log.info(
            "wake word %s (score %.2f): session %s", event.wake_word, event.score, event.session_id
        )
    elif isinstance(event, Final):
        log.info(
            "final transcript: %d words, confidence %.2f",
            len(event.transcript.words),
            event.transcript.confidence,
        )
        log.debug("final text: %s", event.transcript.text)
    else:
        log.debug("event %s", event)


class Pipeline:
    """The pipeline thread: capture queue -> frames -> session machine -> sinks."""

    def __init__(
        self,
        *,
        capture: Capture,
        machine: SessionMachine,
        outbox: Outbox,
        send: Callable[[Outgoing], None],
    ) -> None:
        self.capture = capture
        self.machine = machine
        self.outbox = outbox
        self.send = send
        self.frames_processed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    def start(self) -> None:
        """Start consuming the capture queue."""
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to stop and wait (bounded) for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        assembler = FrameAssembler(
            rate=self.capture.rate,
            channels=self.capture.settings.channels,
            channel=self.capture.settings.channel,
        )
        while not self._stop.is_set():
            chunk = self.capture.read(timeout=0.25)
            if chunk is None:
                continue
            for frame in assembler.push(chunk):
                self._process(frame)

    def _process(self, frame: Frame) -> None:
        try:
            events = self.machine.process(frame)
        except Exception:
            log.exception("processing a frame failed; continuing")
            return
        self.frames_processed += 1
        for event in events:
            log_event(event)
            for outgoing in self.outbox.messages(event):
                self.send(outgoing)


class Satellite:
    """The running daemon: owns the MQTT link, the microphone and the pipeline thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.outbox = build_outbox(settings)
        status_topics = self.outbox.topics.satellite(SatelliteTopic.STATUS)
        # MQTT allows one will: it goes to the primary tree (v1 when dual publishing).
        self.link = MqttLink(
            settings.mqtt,
            client_id=client_id(settings),
            will=(status_topics[0], status_payload(settings, online=False)),
        )
        self.machine = build_machine(settings)
        self.capture = Capture(settings.audio)
        self.pipeline: Pipeline | None = None

    def start(self) -> None:
        """Open the microphone, start processing, connect (in the background)."""
        self.capture.open()
        self.pipeline = Pipeline(
            capture=self.capture, machine=self.machine, outbox=self.outbox, send=self._send
        )
        self.pipeline.start()
        # `online: true` is only announced once the microphone is open and models are loaded.
        for topic in self.outbox.topics.satellite(SatelliteTopic.STATUS):
            self.link.set_birth(topic, status_payload(self.settings, online=True))
        self.link.start()
        log.info(
            "satellite %s listening in room %s", self.settings.satellite_id, self.settings.room_id
        )

    def _send(self, outgoing: Outgoing) -> None:
        self.link.publish(outgoing.topic, outgoing.message.to_json(), qos=outgoing.qos)

    def close(self) -> None:
        """Stop processing, say goodbye on the status topic, release everything."""
        if self.pipeline is not None:
            self.pipeline.stop()
        self.capture.close()
        if self.link.connected:
            for topic in self.outbox.topics.satellite(SatelliteTopic.STATUS):
                self.link.publish_wait(
                    topic,
                    status_payload(self.settings, online=False),
                    qos=1,
                    retain=True,
                    timeout=1.0,
                )
        self.link.close()


def run(settings: Settings, stop: threading.Event) -> None:
    """Run until `stop` is set (by a signal handler at the entry point)."""
    satellite = Satellite(settings)
    try:
        satellite.start()
        stop.wait()
        log.info("stopping")
    finally:
        satellite.close()
