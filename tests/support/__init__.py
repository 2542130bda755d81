"""Test support: real mosquitto, the FIFO-fed ALSA microphone, espeak-ng speech."""
