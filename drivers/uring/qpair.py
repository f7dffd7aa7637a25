"""The io_uring engine of ``file:`` devices: one ring per queue pair.

What it does, and why (issue 3; io_uring(7)):

* the device's file descriptor is registered with the ring (``IORING_REGISTER_FILES``) and
  SQEs use ``IOSQE_FIXED_FILE`` — no per-I/O file lookup;
* buffers from ``dev.alloc_buffer`` are registered (``IORING_REGISTER_BUFFERS``) and reads and
  writes into them use ``READ_FIXED``/``WRITE_FIXED`` — no per-I/O page pinning.  A buffer
  allocated after the last registration is registered at the next idle moment of the ring;
  until then its I/O uses plain ``READ``/``WRITE``;
* requests made inside ``with qp.batch():`` are published with one ``io_uring_enter``;
  outside a batch each request is submitted at once (as PipeANN's ``send_io`` does);
* ``poll()`` reaps ready CQEs straight from the shared ring, without a system call, and never
  blocks; ``wait()`` blocks in ``io_uring_enter(GETEVENTS)``;
* ``sqpoll=1`` creates the ring with ``IORING_SETUP_SQPOLL``: a kernel thread polls the SQ and
  submission needs no system call while it is awake;
* flush is ``IORING_OP_FSYNC`` with ``IORING_FSYNC_DATASYNC``; FUA writes carry ``RWF_DSYNC``;
  trim and write-zeroes are ``IORING_OP_FALLOCATE(PUNCH_HOLE|KEEP_SIZE)``, falling back to
  writing zeros where the file system cannot punch holes — the same data semantics as the
  thread engine and the emulated NVMe drive.

Errors complete the one command they belong to (a :class:`DeviceError` whose status is the
errno name, or ``LBA_OUT_OF_RANGE``); the ring keeps working.
"""

from __future__ import annotations

import collections
import errno
import os
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from labrig.drivers.block import IoKind, IoRequest
from labrig.drivers.filedev._device import (
    DIRECT_ALIGN,
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    STATUS_LBA_OUT_OF_RANGE,
    QPairChecks,
)
from labrig.drivers.uring._ring import load_ring
from labrig.errors import BackendError, BackendUnavailable, DeviceError, UsageError

if TYPE_CHECKING:
    from labrig.drivers.filedev._device import FileBlockDevice

__all__ = ["SQPOLL_IDLE_MS", "UringQPair"]

#: How long the SQPOLL kernel thread spins before sleeping (io_uring_setup(2) sq_thread_idle).
SQPOLL_IDLE_MS = 50
#: The kernel's limit on registered buffers per ring (IORING_MAX_REG_BUFFERS).
MAX_REGISTERED_BUFFERS = 16384
#: Entries of the buffer-address cache before dead ones are swept.
ADDR_CACHE_LIMIT = 4096
_PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
_NO_HOLES = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _ring_entries(depth: int) -> int:
    """Smallest power of two >= depth (the kernel rounds up too; we size our arrays by it)."""
    n = 1
    while n < depth:
        n <<= 1
    return n


class UringQPair(QPairChecks):
    """A :class:`~labrig.drivers.block.BlockQPair` on its own io_uring instance."""

    def __init__(self, dev: FileBlockDevice, depth: int, *, sqpoll: bool = False,
                 big_entries: bool = False) -> None:
        self.dev = dev
        self.depth = depth
        mod = load_ring()
        self._ffi, self._lib = mod.ffi, mod.lib
        lib = self._lib
        self._ring = lib.lr_new()
        if self._ring == self._ffi.NULL:
            raise MemoryError("io_uring: cannot allocate the ring descriptor")
        flags = lib.LR_SETUP_SQPOLL if sqpoll else 0
        if big_entries:         # NVMe passthrough: 128-byte SQEs, 32-byte CQEs
            flags |= lib.LR_SETUP_SQE128 | lib.LR_SETUP_CQE32
        self._big = big_entries
        rc = lib.lr_setup(self._ring, _ring_entries(depth), flags, SQPOLL_IDLE_MS)
        if rc < 0:
            lib.lr_free(self._ring)
            self._ring = self._ffi.NULL
            what = "io_uring_setup with SQPOLL" if sqpoll else "io_uring_setup"
            raise BackendError(f"{dev.uri}: {what} failed: {os.strerror(-rc)}", -rc)
        self.sqpoll = sqpoll
        fds = self._ffi.new("int[1]", [dev.fd])
        rc = lib.lr_register_files(self._ring, fds, 1)
        if rc < 0:
            self._teardown()
            raise BackendError(f"{dev.uri}: IORING_REGISTER_FILES failed: {os.strerror(-rc)}",
                               -rc)
        n = _ring_entries(depth) * 2
        self._ud = np.empty(n, np.uint64)
        self._res = np.empty(n, np.int32)
        self._dw0 = np.zeros(n, np.uint64)
        self._p_ud = self._ffi.from_buffer("uint64_t[]", self._ud)
        self._p_res = self._ffi.from_buffer("int32_t[]", self._res)
        self._p_dw0 = self._ffi.from_buffer("uint64_t[]", self._dw0)
        self._reqs: dict[int, tuple[IoRequest, int, tuple[Any, ...]]] = {}
        self._tag = 0
        self._waiting: collections.deque[tuple[IoRequest, tuple[Any, ...]]] = collections.deque()
        self._early: collections.deque[tuple[IoRequest, str, OSError]] = collections.deque()
        self._inflight = 0
        self._outstanding = 0
        self._unsubmitted = 0
        self._batching = 0
        #: id(buffer) -> (weakref, addr, size); weak so that a dropped buffer is really freed
        self._addrs: dict[int, tuple[weakref.ref[Any], int, int]] = {}
        #: id(buffer) -> (weakref, addr, size, buf_index) of registered buffers: the read fast path
        self._fast: dict[int, tuple[weakref.ref[Any], int, int, int]] = {}
        self._bs = dev.block_size
        self._op_read_fixed = self._lib.LR_OP_READ_FIXED
        self._registered: list[weakref.ref[Any]] = []   # buffers in registration order
        self._reg_index: dict[int, int] = {}      # id(buffer) -> buf_index
        self.fixed_buffers_reason: str | None = None
        self._closed = False
        self._in_poll = False
        self._register_buffers()

    # -- buffers ---------------------------------------------------------------------------------
    def _register_buffers(self) -> None:
        """(Re-)register every live buffer of the device; only while nothing is in flight."""
        lib, ffi = self._lib, self._ffi
        live = [b for b in self.dev.live_buffers() if b.nbytes > 0][:MAX_REGISTERED_BUFFERS]
        if self._registered:
            lib.lr_unregister_buffers(self._ring)
        self._registered, self._reg_index = [], {}
        self._fast.clear()
        if not live:
            return
        addrs = ffi.new("uint64_t[]", [b.view.ctypes.data for b in live])
        lens = ffi.new("uint64_t[]", [b.nbytes for b in live])
        rc = lib.lr_register_buffers(self._ring, addrs, lens, len(live))
        if rc < 0:
            self.fixed_buffers_reason = f"IORING_REGISTER_BUFFERS: {os.strerror(-rc)}"
            return
        self.fixed_buffers_reason = None
        self._registered = [weakref.ref(b) for b in live]     # never keep a buffer alive
        self._reg_index = {id(b): i for i, b in enumerate(live)}

    def _buf_index(self, buf: Any) -> int:
        idx = self._reg_index.get(id(buf))
        if idx is not None and self._registered[idx]() is buf and buf.view.size:
            return idx
        if self._inflight == 0 and self._unsubmitted == 0 and self.fixed_buffers_reason is None:
            self._register_buffers()
            idx = self._reg_index.get(id(buf))
            if idx is not None:
                return idx
        return -1

    # -- submission ------------------------------------------------------------------------------
    @property
    def outstanding(self) -> int:
        return self._outstanding

    def _enqueue(self, req: IoRequest, sqe: tuple[Any, ...]) -> IoRequest:
        if self._closed:
            raise UsageError("queue pair is closed")
        req.submit_ns = self.dev.clock()
        self._outstanding += 1
        if self._inflight >= self.depth:
            self._waiting.append((req, sqe))
        else:
            self._prep(req, sqe)
            if not self._batching:
                self._submit()
        return req

    def _prep(self, req: IoRequest, sqe: tuple[Any, ...]) -> None:
        self._tag += 1
        tag = self._tag
        if sqe[0] == self._lib.LR_OP_URING_CMD:      # (op, cmd_op, payload, expect)
            payload = sqe[2]
            rc = self._lib.lr_prep_cmd(self._ring, 0, 1, sqe[1], payload, len(payload), tag)
            expect = sqe[3]
        else:
            opcode, addr, length, off, buf_index, op_flags, expect = sqe
            rc = self._lib.lr_prep(self._ring, opcode, 0, 1, addr, length, off, buf_index,
                                   op_flags, tag)
        if rc < 0:        # cannot happen while inflight <= depth <= SQ entries
            raise BackendError(f"io_uring: SQ full ({os.strerror(-rc)})", -rc)
        self._reqs[tag] = (req, expect, sqe)
        self._inflight += 1
        self._unsubmitted += 1

    def _submit(self, wait_nr: int = 0) -> None:
        rc = self._lib.lr_submit(self._ring, wait_nr)
        if rc < 0 and -rc not in (errno.EAGAIN, errno.EBUSY, errno.EINTR):
            raise BackendError(f"{self.dev.uri}: io_uring_enter failed: {os.strerror(-rc)}", -rc)
        self._unsubmitted = 0

    def _rw(self, kind: str, buf: Any, lba: Any, nblocks: Any, buf_offset: Any, fua: bool,
            callback: Callable[[IoRequest], Any] | None, context: Any) -> IoRequest:
        lba, nblocks, buf_offset = self._check_rw(lba, nblocks, buf_offset)
        bs = self.dev.block_size
        addr = self._addr(buf, buf_offset, nblocks * bs)
        req = IoRequest(kind, lba, nblocks, callback, context)
        if not self._check_range(lba, nblocks):
            return self._fail_early(req, STATUS_LBA_OUT_OF_RANGE,
                                    self._range_error(lba, nblocks))
        lib = self._lib
        idx = self._buf_index(buf)
        if kind == IoKind.READ:
            op = lib.LR_OP_READ_FIXED if idx >= 0 else lib.LR_OP_READ
            flags = 0
        else:             # on a read-only descriptor the kernel answers EBADF, as for pwrite
            op = lib.LR_OP_WRITE_FIXED if idx >= 0 else lib.LR_OP_WRITE
            flags = lib.LR_RWF_DSYNC if fua else 0
        nbytes = nblocks * bs
        return self._enqueue(req, (op, addr, nbytes, lba * bs, max(idx, 0), flags, nbytes))

    def _addr(self, buf: Any, buf_offset: int, nbytes: int) -> int:
        """Bus (virtual) address of ``buf[buf_offset:]`` after the shared buffer checks; the
        buffer's base address is cached, so the hot path does no numpy work."""
        hit = self._addrs.get(id(buf))
        if hit is None or hit[0]() is not buf or buf.nbytes != hit[2] or buf.view.size == 0:
            self._check_buf(buf, buf_offset, nbytes)
            if len(self._addrs) > ADDR_CACHE_LIMIT:
                self._addrs = {k: v for k, v in self._addrs.items() if v[0]() is not None}
            hit = (weakref.ref(buf), buf.view.ctypes.data, buf.nbytes)
            self._addrs[id(buf)] = hit
        elif buf_offset < 0 or buf_offset + nbytes > hit[2] or (
                self.dev.direct and buf_offset % DIRECT_ALIGN):
            self._check_buf(buf, buf_offset, nbytes)       # raises the precise UsageError
        return hit[1] + buf_offset

    def _fail_early(self, req: IoRequest, status: str, exc: OSError) -> IoRequest:
        """A command the kernel never sees; completes at the next poll, like the others."""
        if self._closed:
            raise UsageError("queue pair is closed")
        req.submit_ns = self.dev.clock()
        self._outstanding += 1
        self._early.append((req, status, exc))
        return req

    def read(self, buf: Any, lba: int, nblocks: int, *, buf_offset: int = 0,
             callback: Callable[[IoRequest], Any] | None = None,
             context: Any = None) -> IoRequest:
        """Read ``nblocks`` blocks at ``lba`` into ``buf`` at ``buf_offset`` bytes."""
        hit = self._fast.get(id(buf))
        if (hit is not None and hit[0]() is buf and type(lba) is int and type(nblocks) is int
                and type(buf_offset) is int and self._inflight < self.depth
                and 0 < nblocks <= self.dev.max_transfer_blocks and 0 <= lba
                and lba + nblocks <= self.dev.num_blocks and buf_offset >= 0
                and buf_offset + nblocks * self._bs <= hit[2] and buf.view.size
                and not (buf_offset % DIRECT_ALIGN) and not self._closed):
            # the checks of _rw, for a registered buffer with a free slot: one READ_FIXED SQE
            req = IoRequest(IoKind.READ, lba, nblocks, callback, context)
            req.submit_ns = time.monotonic_ns()
            self._outstanding += 1
            nbytes = nblocks * self._bs
            self._prep(req, (self._op_read_fixed, hit[1] + buf_offset, nbytes, lba * self._bs,
                             hit[3], 0, nbytes))
            if not self._batching:
                self._submit()
            return req
        req = self._rw(IoKind.READ, buf, lba, nblocks, buf_offset, False, callback, context)
        idx = self._reg_index.get(id(buf))
        if idx is not None and self._registered[idx]() is buf and id(buf) in self._addrs:
            self._fast[id(buf)] = (weakref.ref(buf), self._addrs[id(buf)][1], buf.nbytes, idx)
        return req

    def flush(self, *, callback: Callable[[IoRequest], Any] | None = None,
              context: Any = None) -> IoRequest:
        """``IORING_OP_FSYNC`` with ``IORING_FSYNC_DATASYNC``."""
        req = IoRequest(IoKind.FLUSH, 0, 0, callback, context)
        return self._enqueue(req, (self._lib.LR_OP_FSYNC, 0, 0, 0, 0,
                                   self._lib.LR_FSYNC_DATASYNC, 0))

    def _dealloc(self, kind: str, lba: Any, nblocks: Any,
                 callback: Callable[[IoRequest], Any] | None, context: Any) -> IoRequest:
        req = IoRequest(kind, int(lba), int(nblocks), callback, context)
        if not self._check_range(int(lba), int(nblocks)):
            return self._fail_early(req, STATUS_LBA_OUT_OF_RANGE,
                                    self._range_error(int(lba), int(nblocks)))
        bs = self.dev.block_size
        # io_uring fallocate: sqe->off = offset, sqe->addr = length, sqe->len = mode
        return self._enqueue(req, (self._lib.LR_OP_FALLOCATE, int(nblocks) * bs, _PUNCH,
                                   int(lba) * bs, 0, 0, 0))

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Requests inside the block are published with one ``io_uring_enter`` at its end."""
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1
            if not self._batching and self._unsubmitted:
                self._submit()

    # -- completion ------------------------------------------------------------------------------
    def poll(self, max_completions: int = 0, *, wait: bool = True) -> int:
        """Reap ready completions from the shared CQ ring (no system call when some are
        ready), run callbacks, start queued requests.  With ``wait`` and nothing ready while
        requests are in flight, sleep in ``io_uring_enter(GETEVENTS)`` until one completes."""
        if self._in_poll:
            raise UsageError("poll() called from a completion callback of the same qpair")
        if self._closed:
            raise UsageError("queue pair is closed")
        if self._unsubmitted and not self._batching:
            self._submit()
        if wait and self._inflight and not self._early and not self._cq_ready():
            self._submit(wait_nr=1)
        limit = max_completions if max_completions > 0 else len(self._ud)
        n = 0
        self._in_poll = True
        try:
            while self._early and n < limit:
                req, status, exc = self._early.popleft()
                self._outstanding -= 1
                self._complete(req, status, exc)
                n += 1
            if n < limit:
                want = min(limit - n, len(self._ud))
                if self._big:
                    got = self._lib.lr_reap32(self._ring, self._p_ud, self._p_res, self._p_dw0,
                                              want)
                else:
                    got = self._lib.lr_reap(self._ring, self._p_ud, self._p_res, want)
                if got:
                    tags = self._ud[:got].tolist()
                    results = self._res[:got].tolist()
                    dw0s = self._dw0[:got].tolist()
                    now = time.monotonic_ns()
                    reqs = self._reqs
                    for tag, res, dw0 in zip(tags, results, dw0s):
                        entry = reqs.get(tag)
                        if entry is not None and res >= 0 and res == entry[1] and entry[1]:
                            del reqs[tag]               # a clean read/write: complete here
                            self._inflight -= 1
                            self._outstanding -= 1
                            entry[0]._complete(now, "OK", None)
                        else:
                            self._finish(tag, res, dw0)
                    n += got
        finally:
            self._in_poll = False
        if self._waiting:
            while self._waiting and self._inflight < self.depth:
                req, sqe = self._waiting.popleft()
                self._prep(req, sqe)
            if not self._batching:
                self._submit()
        return n

    def _cq_ready(self) -> bool:
        return bool(self._lib.lr_cq_ready(self._ring))

    def _finish(self, tag: int, res: int, dw0: int = 0) -> None:
        req, expect, sqe = self._reqs.pop(tag)
        self._inflight -= 1
        self._outstanding -= 1
        if sqe[0] == self._lib.LR_OP_URING_CMD:
            self._finish_cmd(req, sqe, res, dw0)
            return
        status: str | None = None
        exc: OSError | None = None
        if res < 0:
            if sqe[0] == self._lib.LR_OP_FALLOCATE and -res in _NO_HOLES:
                try:                                  # no holes here: write zeros instead
                    os.pwrite(self.dev.fd, self.dev.zero_block * (sqe[1] // self.dev.block_size),
                              sqe[3])
                except OSError as e:
                    status, exc = errno.errorcode.get(e.errno or 0, "EIO"), e
            else:
                status = errno.errorcode.get(-res, "EIO")
                exc = OSError(-res, os.strerror(-res))
        elif expect and res != expect:
            status = "EIO"
            what = "read" if req.kind == IoKind.READ else "write"
            exc = OSError(errno.EIO, f"short {what}: {res} of {expect} bytes")
        self._complete(req, status, exc)

    def _finish_cmd(self, req: IoRequest, sqe: tuple[Any, ...], res: int, dw0: int) -> None:
        """Completion of a URING_CMD: the passthrough engine decodes NVMe status here; a plain
        file ring never issues one, so reaching this is reported on the command, not raised."""
        self._complete(req, "EIO", OSError(errno.EIO, f"unexpected URING_CMD result {res}"))

    def _complete(self, req: IoRequest, status: str | None, exc: OSError | None) -> None:
        err = None
        if status is not None:
            err = DeviceError(status, f"{req.kind} lba={req.lba} nblocks={req.nblocks} on "
                                      f"{self.dev.uri}: {exc}", retryable=False)
            err.__cause__ = BackendError(str(exc), exc.errno if exc else 0)
        req._complete(self.dev.clock(), status or "OK", err)

    def close(self) -> None:
        """Finish outstanding requests, then tear the ring down.  Idempotent."""
        if self._closed:
            return
        if self._outstanding and not self._in_poll:
            self.wait()
        self._closed = True
        self._teardown()

    def _teardown(self) -> None:
        if self._ring != self._ffi.NULL:
            self._lib.lr_free(self._ring)
            self._ring = self._ffi.NULL



def uring_unavailable_reason() -> str | None:
    """Why the io_uring engine cannot run here, or None when it can."""
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            if f.read().strip() == "2":
                return "io_uring is disabled (sysctl kernel.io_uring_disabled=2)"
    except OSError:
        pass
    try:
        mod = load_ring()
    except BackendUnavailable as exc:
        return exc.reason
    lib = mod.lib
    ring = lib.lr_new()
    try:
        rc = lib.lr_setup(ring, 2, 0, 0)
    finally:
        lib.lr_free(ring)
    if rc < 0:
        if -rc == errno.EPERM and _sysctl("io_uring_disabled") == "1":
            return ("io_uring is restricted (sysctl kernel.io_uring_disabled=1) and this process "
                    f"is not in group kernel.io_uring_group={_sysctl('io_uring_group')}")
        return f"io_uring_setup failed: {os.strerror(-rc)} (old kernel or seccomp)"
    return None


def _sysctl(name: str) -> str | None:
    try:
        with open(f"/proc/sys/kernel/{name}") as f:
            return f.read().strip()
    except OSError:
        return None
