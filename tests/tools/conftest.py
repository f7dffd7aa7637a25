"""Fixtures for the CLI tests (the fake backend itself is in ``_fakeblk.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _fakeblk import FakeBlockDevice

from labrig.drivers.block import _registry


def _open(ds: _registry.DeviceString) -> FakeBlockDevice:
    return FakeBlockDevice(ds.text)


@pytest.fixture
def fakeblk(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Register the ``fakeblk`` scheme for one test; yields its device string."""
    _registry._load_backends()
    monkeypatch.setitem(_registry._BACKENDS, "fakeblk",
                        _registry.BackendInfo("fakeblk", "test fake", _open, lambda: None))
    yield "fakeblk:x"
