"""Fixtures for the real components: mosquitto, the FIFO microphone, espeak-ng speech."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import tiers
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Let the helpers that start real components check the test's markers (tiers.py)."""
    tiers.enter(item.nodeid, (mark.name for mark in item.iter_markers()))


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    tiers.leave()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A started mosquitto on a free loopback port, stopped after the test."""
    with Broker(tmp_path / "broker") as started:
        yield started


@pytest.fixture
def fifo_mic(tmp_path: Path) -> Iterator[FifoMic]:
    """A writing 16 kHz mono FIFO microphone; run the process under test with `.env`."""
    with FifoMic(tmp_path / "mic") as mic:
        yield mic


@pytest.fixture(scope="session")
def speech_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where speak() caches synthesised speech for the whole session."""
    return tmp_path_factory.mktemp("speech")
