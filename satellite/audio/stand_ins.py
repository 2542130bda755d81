"""Importing a library without modules it imports at module level but the satellite never calls."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from satellite.errors import SatelliteError

# Modules the engines import only to download models or draw progress bars (vosk and
# openwakeword both import them at module level; ~15 MiB resident together).
DOWNLOADS: dict[str, tuple[str, ...]] = {"requests": ("get",), "tqdm": ("tqdm",)}


class NotLoadedError(SatelliteError):
    """Raised by a stand-in: the satellite does not load what this library call needs."""


def import_with_stand_ins(name: str, stand_ins: Mapping[str, tuple[str, ...]]) -> Any:
    """Import `name` while each module of `stand_ins` not yet imported is a stand-in.

    `stand_ins` maps a module to the attributes the importing code takes from it; calling one
    raises NotLoadedError. Afterwards the stand-ins leave sys.modules, so a later import of
    the real module still works; only the modules imported meanwhile keep them.
    """
    with _stand_ins(stand_ins):
        return importlib.import_module(name)


@contextmanager
def _stand_ins(stand_ins: Mapping[str, tuple[str, ...]]) -> Iterator[None]:
    added = [name for name in stand_ins if name not in sys.modules]
    for name in added:
        sys.modules[name] = _stand_in(name, stand_ins[name])
    try:
        yield
    finally:
        for name in added:
            del sys.modules[name]


def _stand_in(name: str, attributes: tuple[str, ...]) -> types.ModuleType:
    module = types.ModuleType(name, f"stand-in for {name}, which the satellite does not load")
    for attribute in attributes:
        setattr(module, attribute, _unavailable(f"{name}.{attribute}"))
    return module


def _unavailable(what: str) -> Callable[..., Any]:
    def call(*args: object, **kwargs: object) -> Any:
        raise NotLoadedError(f"{what} is not loaded in the satellite (model downloads/training)")

    return call
