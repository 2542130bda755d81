"""One line of the `satellite check` report: a Result and its three constructors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Result:
    """One line of the report: `ok` True (✓), False (✗) or None (neutral, –)."""

    name: str
    ok: bool | None
    detail: str
    fix: str | None = None
    data: Mapping[str, Any] | None = field(default=None, compare=False)


def passed(name: str, detail: str, **data: Any) -> Result:
    """A ✓ line."""
    return Result(name, True, detail, None, data or None)


def failed(name: str, detail: str, fix: str, **data: Any) -> Result:
    """A ✗ line and how to fix it."""
    return Result(name, False, detail, fix, data or None)


def neutral(name: str, detail: str) -> Result:
    """A line that is neither good nor bad news (nothing to check here)."""
    return Result(name, None, detail)
