"""The package's one exception root and its boundary-specific children."""


class SatelliteError(Exception):
    """Root of every error the satellite raises on purpose."""


class ConfigError(SatelliteError):
    """The configuration file or environment is invalid; the process exits 78."""


class ModelError(SatelliteError):
    """A model is missing, corrupt, or cannot be fetched or loaded."""


class AudioError(SatelliteError):
    """The microphone cannot be opened or read."""


class MqttError(SatelliteError):
    """The broker configuration is unusable (not raised for transient outages)."""


class AccessoryError(SatelliteError):
    """LEDs or the button cannot be opened now (no HAT, no GPIO or SPI access): not fatal."""
