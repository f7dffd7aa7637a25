"""A tiny virtual-time block backend with exact latencies, for the CLI and bench tests.

``fakeblk:x`` completes every read after exactly ``READ_NS`` and every write after ``WRITE_NS``
of virtual time on one of ``CHANNELS`` independent channels (LBA modulo ``CHANNELS``), so the
bench's arithmetic can be checked against known answers without depending on the NVMe model.
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

from labrig.drivers.block import IoRequest

READ_NS = 90_000
WRITE_NS = 20_000
CHANNELS = 8


class _Buffer:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.view = np.zeros(nbytes, np.uint8)

    def free(self) -> None:
        pass


class _QPair:
    def __init__(self, dev: FakeBlockDevice, depth: int) -> None:
        self.dev = dev
        self.depth = depth
        self._heap: list[tuple[int, int, IoRequest]] = []
        self._seq = 0

    @property
    def outstanding(self) -> int:
        return len(self._heap)

    def _submit(self, kind: str, lba: int, nblocks: int, callback: Any, context: Any,
                cost_ns: int) -> IoRequest:
        req = IoRequest(kind, lba, nblocks, callback, context)
        req.submit_ns = self.dev.now
        ch = lba % CHANNELS
        start = max(self.dev.now, self.dev.busy_until[ch])
        self.dev.busy_until[ch] = start + cost_ns
        self._seq += 1
        heapq.heappush(self._heap, (start + cost_ns, self._seq, req))
        return req

    def read(self, buf: Any, lba: int, nblocks: int, *, buf_offset: int = 0,
             callback: Any = None, context: Any = None) -> IoRequest:
        return self._submit("read", lba, nblocks, callback, context, READ_NS)

    def write(self, buf: Any, lba: int, nblocks: int, *, buf_offset: int = 0, fua: bool = False,
              callback: Any = None, context: Any = None) -> IoRequest:
        return self._submit("write", lba, nblocks, callback, context, WRITE_NS)

    def flush(self, *, callback: Any = None, context: Any = None) -> IoRequest:
        return self._submit("flush", 0, 0, callback, context, 0)

    def poll(self, max_completions: int = 0, *, wait: bool = True) -> int:
        if not self._heap or (not wait and self._heap[0][0] > self.dev.now):
            return 0
        t, _, req = heapq.heappop(self._heap)
        self.dev.now = max(self.dev.now, t)
        req._complete(self.dev.now, 0, None)
        return 1

    def wait(self, reqs: Any = None, timeout_ns: int | None = None) -> None:
        if reqs is None:
            while self._heap:
                self.poll()
            return
        todo = reqs if isinstance(reqs, list) else [reqs]
        while not all(r.done for r in todo):
            self.poll()

    def close(self) -> None:
        self.wait()


class FakeBlockDevice:
    """Minimal :class:`~labrig.drivers.block.BlockDevice` in virtual time."""

    block_size = 4096
    num_blocks = 1 << 16
    max_transfer_blocks = 64
    max_queue_depth = 1024

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.now = 0
        self.busy_until = [0] * CHANNELS

    def clock(self) -> int:
        return self.now

    def spend(self, ns: int) -> None:
        self.now += max(0, int(ns))

    def alloc_buffer(self, nbytes: int) -> _Buffer:
        return _Buffer(nbytes)

    def qpair(self, depth: int | None = None) -> _QPair:
        return _QPair(self, depth or 32)

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeBlockDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
