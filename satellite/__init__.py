"""Room voice-assistant satellite: microphone -> wake word -> transcript -> MQTT."""

__version__ = "0.1.0"
