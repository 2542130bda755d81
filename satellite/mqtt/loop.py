"""The link's network thread: connect, serve until the connection ends, wait our backoff, again."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from satellite.core.backoff import Backoff

_SELECT_S = 1.0  # the longest wait in select(): keepalive and a stop are checked this often


def _loop_thread_writes(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Nothing to do: the loop thread's select() already watches the socket (see NetworkLoop)."""


class NetworkLoop:
    """All network traffic of one paho client, on our own thread, reconnecting on our backoff.

    paho's own thread (`loop_start`) would reconnect by itself, on a timer we could only steer
    through undocumented behaviour. This thread calls `reconnect()` (the first time at once,
    then after each wait of `backoff`, or of `wait_long`), then paho's `loop()` until that
    connection ends. So every paho callback of the client runs on this thread.

    A publish from another thread only queues its packet and wakes this thread's select()
    through paho's socket pair, as with `loop_start`: paho writes on the caller's thread only
    when it knows of no loop thread and no `on_socket_register_write` callback, so one that does
    nothing is set here, and only this thread ever touches the socket.
    """

    def __init__(
        self,
        client: mqtt.Client,
        backoff: Backoff,
        *,
        on_failure: Callable[[OSError], None],
        log: logging.Logger,
        name: str,
    ) -> None:
        self._client = client
        self._backoff = backoff
        self._on_failure = on_failure  # the attempt's reason (DNS, refused, TLS, ...)
        self._log = log
        self._long_wait: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        client.on_socket_register_write = _loop_thread_writes

    def start(self) -> None:
        """Start connecting in the background."""
        self._thread.start()

    def accepted(self) -> None:
        """The broker accepted a connection: after it, the shortest wait again."""
        self._backoff.reset()

    def wait_long(self, seconds: float) -> None:
        """Wait `seconds` before the next attempt instead of the backoff's next step."""
        self._long_wait = seconds

    def stop(self) -> None:
        """Disconnect cleanly (the broker sends no will), end the thread, release the sockets."""
        self._stop.set()
        if self._thread.ident is not None:
            self._client.disconnect()  # queued: this thread wakes up and sends it
            self._thread.join()
        # loop() made a wake-up socket pair that paho closes only in __del__, which the
        # reference cycle with the link's callbacks delays until the garbage collector runs:
        # a reload that replaces the link would hold two more descriptors until then.
        self._client._reset_sockets()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._attempt()
                except Exception:  # a bug in a callback must not end the link for good
                    self._log.exception("MQTT network loop failed; reconnecting")
                self._stop.wait(self._next_wait())
        finally:
            self._end_session()

    def _attempt(self) -> None:
        """Connect, then serve that connection until it ends (paho tells the link how)."""
        try:
            self._client.reconnect()
        except OSError as exc:
            self._on_failure(exc)
            return
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and not self._stop.is_set():
            rc = self._client.loop(_SELECT_S)

    def _next_wait(self) -> float:
        wait = self._backoff.next()
        if self._long_wait is not None:
            wait, self._long_wait = self._long_wait, None
        return wait

    def _end_session(self) -> None:
        # Stopped while connecting or between two loop() calls: end that session cleanly too.
        if self._client.socket() is not None:
            self._client.disconnect()
            self._client.loop_write()
