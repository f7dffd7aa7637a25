"""io_uring against the kernel ABI (cffi, no liburing): the engine of ``file:`` devices.

:class:`~.qpair.UringQPair` is the queue pair; :func:`~.qpair.uring_unavailable_reason` says
why io_uring cannot run on this machine (old kernel, seccomp, ``kernel.io_uring_disabled``),
or ``None``.
"""

from labrig.drivers.uring.qpair import UringQPair, uring_unavailable_reason

__all__ = ["UringQPair", "uring_unavailable_reason"]
