"""Building blocks of the settings: the frozen section every boundary's settings extend."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """One `[section]` of the room file: unknown keys are errors, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)
