"""Fixtures for the NVMe model tests (the raw host lives in :mod:`nvme_host`)."""

from __future__ import annotations

import pytest
from nvme_host import RawHost


@pytest.fixture
def host() -> RawHost:
    """An enabled controller with a 1 GiB, 4 KiB-LBA namespace and I/O queue pair 1."""
    h = RawHost()
    h.set_queues(4)
    h.create_pair(1)
    return h
