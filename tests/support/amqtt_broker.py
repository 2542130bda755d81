"""A second MQTT broker implementation for tests: amqtt (PyPI), with the API of `Broker`.

amqtt is a pure-Python asyncio broker, so the same outage scenario also runs against a broker
that shares no code with mosquitto. It speaks MQTT 3.1.1 only (it refuses an MQTT 5 CONNECT),
so tests watch it with `Probe311`. Its quirk worth knowing: it delivers a QoS 0 publish with
the subscriber's QoS (1) instead of min(publisher, subscriber) as the standard says.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.support import tiers
from tests.support.broker import HOST, free_port, stop_process, wait_listening
from tests.support.mqtt_probe import Probe

CONFIG = """\
listeners:
  default:
    type: tcp
    bind: {host}:{port}
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
"""


class AmqttBroker:
    """amqtt on 127.0.0.1:`port`, in memory only (a restart forgets everything), restartable.

    `extra_config` is YAML appended to the generated configuration.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        extra_config: str = "",
        start_timeout: float = 15.0,
    ) -> None:
        if importlib.util.find_spec("amqtt") is None:
            raise AssertionError("amqtt is not installed: run ./install.sh --dev")
        self.host = HOST
        self.port = port if port is not None else free_port()
        self.workdir = workdir
        self.config_path = workdir / "amqtt.yaml"
        self.log_path = workdir / "amqtt.log"
        self.extra_config = extra_config
        self.start_timeout = start_timeout  # it imports a few libraries: about 1 s here
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start amqtt and return once its port accepts TCP connections."""
        tiers.require("integration", "starts an amqtt broker")
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = CONFIG.format(host=self.host, port=self.port) + self.extra_config
        self.config_path.write_text(config)
        command = [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(self.config_path)]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self._wait_until_listening()

    def stop(self) -> None:
        """Stop amqtt (SIGTERM, then SIGKILL after 5 s); idempotent."""
        process, self._process = self._process, None
        stop_process(process)

    def logs(self) -> str:
        """Everything amqtt logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> AmqttBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_until_listening(self) -> None:
        wait_listening(self, "amqtt")


class Probe311(Probe):
    """`Probe` speaking MQTT 3.1.1, for brokers without MQTT 5 (amqtt).

    Without retain-as-published, `retain` is set only on a retained message delivered on
    subscribe; a live message always arrives with `retain` False.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str = "#",
        *,
        client_id: str = "",
        timeout: float = 5.0,
    ) -> None:
        super().__init__(host, port, topic_filter, client_id=client_id, timeout=timeout)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        # The callbacks run on paho's network thread, as in Probe.
        client.on_connect = self._on_connect_311
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

    def _on_connect_311(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # Every (re)connect: a restarted broker forgets us.
        if not reason_code.is_failure:
            client.subscribe(self.topic_filter, qos=1)
