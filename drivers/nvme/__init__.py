"""The NVMe poll-mode driver: commands, PRPs, controller init, queue pairs, and the
``emu:nvme`` block backend.

Public API:

- :mod:`~labrig.drivers.nvme.commands` -- :class:`NvmeCommand` and its builders (shared with
  NVMe passthrough backends)
- :func:`build_prps`, :class:`PrpListPool` -- PRP entries and chained PRP lists
- :class:`NvmeCtrlr`, :class:`InitState`, :class:`NvmeDriverOptions` -- register-level
  controller init (SPDK-style state machine), admin queue, shutdown
- :class:`QPair` -- poll-mode I/O queue pair (a ``BlockQPair``)
- :class:`NvmeCommandError`, :class:`NvmeInitError`, :class:`NvmeControllerError`

``labrig.drivers.nvme.emu`` registers the ``emu:nvme`` block backend; it is imported lazily by
the block registry, so importing this package does not construct or import the device model.
"""

from labrig.drivers.nvme.commands import NvmeCommand
from labrig.drivers.nvme.controller import (
    AsyncEvent,
    InitState,
    NvmeCtrlr,
    NvmeDriverOptions,
    NvmeNamespace,
)
from labrig.drivers.nvme.errors import NvmeCommandError, NvmeControllerError, NvmeInitError
from labrig.drivers.nvme.prp import PrpListPool, Prps, build_prps
from labrig.drivers.nvme.qpair import NvmeRequest, QPair

__all__ = [
    "AsyncEvent",
    "InitState",
    "NvmeCommand",
    "NvmeCommandError",
    "NvmeControllerError",
    "NvmeCtrlr",
    "NvmeDriverOptions",
    "NvmeInitError",
    "NvmeNamespace",
    "NvmeRequest",
    "PrpListPool",
    "Prps",
    "QPair",
    "build_prps",
]
