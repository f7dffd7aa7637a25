"""``struct nvme_uring_cmd`` as the kernel defines it, checked through cffi at build time.

The passthrough engine packs the command with :data:`URING_CMD` (a ``struct`` format); this
module compiles the kernel's own definition (``<linux/nvme_ioctl.h>``) and reads its size, every
field's offset and the ``NVME_URING_CMD_IO``/``NVME_URING_CMD_ADMIN`` ioctl numbers from it, so
a layout disagreement is caught before any command reaches a device (:func:`check_layout`).
"""

from __future__ import annotations

import struct
from types import ModuleType

from labrig.cbuild import build_module
from labrig.errors import BackendUnavailable

__all__ = ["FIELDS", "URING_CMD", "check_layout", "load_abi"]

#: (name, struct code) of ``struct nvme_uring_cmd`` in order (nvme_ioctl.h, Linux >= 5.19).
FIELDS = (("opcode", "B"), ("flags", "B"), ("rsvd1", "H"), ("nsid", "I"), ("cdw2", "I"),
          ("cdw3", "I"), ("metadata", "Q"), ("addr", "Q"), ("metadata_len", "I"),
          ("data_len", "I"), ("cdw10", "I"), ("cdw11", "I"), ("cdw12", "I"), ("cdw13", "I"),
          ("cdw14", "I"), ("cdw15", "I"), ("timeout_ms", "I"), ("rsvd2", "I"))
URING_CMD = struct.Struct("<" + "".join(code for _, code in FIELDS))

_CDEF = """
struct nvme_uring_cmd {
    uint8_t opcode; uint8_t flags; uint16_t rsvd1; uint32_t nsid; uint32_t cdw2; uint32_t cdw3;
    uint64_t metadata; uint64_t addr; uint32_t metadata_len; uint32_t data_len;
    uint32_t cdw10; uint32_t cdw11; uint32_t cdw12; uint32_t cdw13; uint32_t cdw14;
    uint32_t cdw15; uint32_t timeout_ms; uint32_t rsvd2;
    ...;
};
static const unsigned int NVME_URING_CMD_IO, NVME_URING_CMD_ADMIN;
static const unsigned long NVME_IOCTL_ID;
"""

_SRC = """
#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/nvme_ioctl.h>
"""


def load_abi() -> ModuleType:
    """The compiled header module; raises BackendUnavailable without a compiler or header."""
    return build_module("nvmept", "_labrig_nvmept", _CDEF, _SRC, backend="nvme-passthrough")


def check_layout() -> dict[str, int]:
    """Compare :data:`URING_CMD` with the kernel header; return the ioctl numbers.

    Raises
    ------
    BackendUnavailable
        The header disagrees with the packed layout (a field moved), or cannot be compiled.
    """
    ffi = load_abi().ffi
    off = 0
    for name, code in FIELDS:
        theirs = ffi.offsetof("struct nvme_uring_cmd", name)
        if theirs != off:
            raise BackendUnavailable("nvme-passthrough", f"struct nvme_uring_cmd.{name} is at "
                                     f"offset {theirs} in the kernel header, {off} here")
        off += struct.calcsize("<" + code)
    if ffi.sizeof("struct nvme_uring_cmd") != URING_CMD.size:
        raise BackendUnavailable("nvme-passthrough", "sizeof(struct nvme_uring_cmd) = "
                                 f"{ffi.sizeof('struct nvme_uring_cmd')}, packed {URING_CMD.size}")
    lib = load_abi().lib
    return {"io": int(lib.NVME_URING_CMD_IO), "admin": int(lib.NVME_URING_CMD_ADMIN),
            "ioctl_id": int(lib.NVME_IOCTL_ID)}
