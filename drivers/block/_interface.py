"""The backend-neutral block-device interface runtimes are written against.

Shaped after SPDK's qpair model (STYLE.md section 2): a runtime receives a :class:`BlockDevice`
from its caller, opens one :class:`BlockQPair` per worker, submits asynchronous reads/writes,
and reaps completions with ``poll()``.  The same code runs on the emulated NVMe SSD (virtual
time) and on real files and devices (wall time): latency is always measured with
``dev.clock()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from labrig.errors import DeviceError

__all__ = ["BlockDevice", "BlockQPair", "IoBuffer", "IoKind", "IoRequest"]


class IoKind:
    """Names of the request kinds, used in stats and error messages."""

    READ = "read"
    WRITE = "write"
    FLUSH = "flush"
    TRIM = "trim"
    WRITE_ZEROES = "write_zeroes"


@runtime_checkable
class IoBuffer(Protocol):
    """DMA-able (or O_DIRECT-aligned) memory from ``BlockDevice.alloc_buffer``."""

    nbytes: int
    view: NDArray[np.uint8]

    def free(self) -> None: ...


class IoRequest:
    """One submitted command, usable as a future.

    Attributes
    ----------
    kind : str
        One of :class:`IoKind`.
    lba, nblocks : int
        Range addressed (0 for flush).
    error : DeviceError or None
        Set when the command completed with an error status.
    submit_ns, complete_ns : int
        ``dev.clock()`` at submission and at reaping; ``latency_ns`` is their difference.
    """

    __slots__ = ("_callback", "complete_ns", "context", "done", "error", "kind", "lba",
                 "nblocks", "status", "submit_ns")

    def __init__(self, kind: str, lba: int, nblocks: int,
                 callback: Callable[[IoRequest], Any] | None = None,
                 context: Any = None) -> None:
        self.kind = kind
        self.lba = lba
        self.nblocks = nblocks
        self._callback = callback
        self.context = context
        self.done = False
        self.error: DeviceError | None = None
        self.status: object = None
        self.submit_ns = 0
        self.complete_ns = 0

    @property
    def latency_ns(self) -> int:
        return self.complete_ns - self.submit_ns

    @property
    def ok(self) -> bool:
        return self.done and self.error is None

    def result(self) -> IoRequest:
        """Return self if the command succeeded; raise its :class:`DeviceError` otherwise.

        Raises
        ------
        RuntimeError
            The request has not completed yet (poll the qpair first).
        """
        if not self.done:
            raise RuntimeError(f"{self.kind} lba={self.lba} has not completed; poll() first")
        if self.error is not None:
            raise self.error
        return self

    def _complete(self, now_ns: int, status: object, error: DeviceError | None) -> None:
        """Called by backends exactly once per request."""
        self.done = True
        self.complete_ns = now_ns
        self.status = status
        self.error = error
        if self._callback is not None:
            self._callback(self)

    def __repr__(self) -> str:
        state = "pending" if not self.done else ("ok" if self.error is None else str(self.error))
        return f"IoRequest({self.kind}, lba={self.lba}, nblocks={self.nblocks}, {state})"


class BlockQPair(Protocol):
    """An I/O queue pair: the unit of I/O, owned by one worker (not thread-safe).

    Submission never raises because the device queue is full: the request waits in a software
    queue and is submitted when a slot frees up (SPDK ``queued_req``).  Requests made inside
    ``with qp.batch():`` are announced to the device with one doorbell at the end.
    Buffers must come from :meth:`BlockDevice.alloc_buffer`; ``buf_offset`` is in bytes and must
    keep the transfer inside the buffer.
    """

    depth: int

    @property
    def outstanding(self) -> int: ...

    def read(self, buf: IoBuffer, lba: int, nblocks: int, *, buf_offset: int = 0,
             callback: Callable[[IoRequest], Any] | None = None,
             context: Any = None) -> IoRequest: ...

    def write(self, buf: IoBuffer, lba: int, nblocks: int, *, buf_offset: int = 0,
              fua: bool = False, callback: Callable[[IoRequest], Any] | None = None,
              context: Any = None) -> IoRequest: ...

    def flush(self, *, callback: Callable[[IoRequest], Any] | None = None,
              context: Any = None) -> IoRequest: ...

    def trim(self, lba: int, nblocks: int, *,
             callback: Callable[[IoRequest], Any] | None = None,
             context: Any = None) -> IoRequest: ...

    def write_zeroes(self, lba: int, nblocks: int, *,
                     callback: Callable[[IoRequest], Any] | None = None,
                     context: Any = None) -> IoRequest: ...

    def batch(self) -> AbstractContextManager[None]: ...

    def poll(self, max_completions: int = 0, *, wait: bool = True) -> int:
        """Reap up to ``max_completions`` completions (0: all ready) and run their callbacks.

        When nothing is ready and requests are outstanding, ``poll`` waits for the device: an
        emulated backend advances virtual time to its next event (which may or may not complete
        a request, so 0 can still come back), a real backend sleeps until at least one request
        completes.  With ``wait=False`` it returns 0 at once instead: runtimes that interleave
        their own work with polling (PipeANN) peek this way.
        """
        ...

    def wait(self, reqs: IoRequest | list[IoRequest] | None = None,
             timeout_ns: int | None = None) -> None:
        """Poll until ``reqs`` (default: everything outstanding) complete; raises
        ``TimeoutError`` after ``timeout_ns`` of ``clock()`` time."""
        ...

    def close(self) -> None: ...


class BlockDevice(Protocol):
    """A block device: fixed-size blocks, asynchronous I/O through queue pairs.

    Attributes
    ----------
    uri : str
        The device string it was opened with (``emu:nvme``, ``file:/path`` ...).
    block_size : int
        Bytes per logical block (512 or 4096).
    num_blocks : int
        Capacity in blocks.
    max_transfer_blocks : int
        Largest single read/write in blocks.
    max_queue_depth : int
        Largest ``depth`` a queue pair can have.
    """

    uri: str
    block_size: int
    num_blocks: int
    max_transfer_blocks: int
    max_queue_depth: int

    def clock(self) -> int:
        """Nanoseconds: virtual time on the emulator, monotonic wall time on real hardware."""
        ...

    def spend(self, ns: int) -> None:
        """Account ``ns`` of host-side work done between I/Os (a runtime's compute-time model).

        In emulation the host's own computation takes no virtual time, so a runtime that wants
        its compute to show in ``clock()`` latency (PipeANN overlapping distance computations
        with reads) declares it here: the emulated backend advances virtual time by ``ns`` while
        its devices keep working.  A real backend returns at once: the work already took real
        time.
        """
        ...

    def alloc_buffer(self, nbytes: int) -> IoBuffer:
        """Zeroed I/O buffer of ``nbytes`` (rounded up to ``block_size``), suitably aligned."""
        ...

    def qpair(self, depth: int | None = None) -> BlockQPair:
        """Open a new I/O queue pair (default depth: the backend's default)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> BlockDevice: ...

    def __exit__(self, *exc: object) -> None: ...


def iter_lbas(lba: int, nblocks: int, max_blocks: int) -> Iterator[tuple[int, int]]:
    """Split ``[lba, lba + nblocks)`` into chunks of at most ``max_blocks``."""
    end = lba + nblocks
    while lba < end:
        n = min(max_blocks, end - lba)
        yield lba, n
        lba += n
