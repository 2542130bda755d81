"""The audio side: capture, level gate, wake word, speech to text."""
