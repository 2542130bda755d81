"""What LED patterns render and LED drivers draw: one RGB colour per pixel."""

from __future__ import annotations

RGB = tuple[float, float, float]
"""One pixel's colour: red, green, blue, each 0..1."""

Pixels = tuple[RGB, ...]
"""The colours of a strip or ring, first pixel first."""

BLACK: RGB = (0.0, 0.0, 0.0)
