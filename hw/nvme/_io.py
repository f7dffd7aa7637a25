"""NVM command set I/O handlers (NVM Command Set spec 1.0 section 3), one per opcode.

Data moves at fetch time and the completion is held until the time the timing model computes
(FEMU "compute, then hold").  Writes go into the store at once, and an undo snapshot is kept
until the write is durable, so :meth:`NvmeController.power_loss` can drop exactly the writes
still in the volatile cache, block by block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from labrig.hw.nvme._prp import map_prps
from labrig.hw.nvme._queues import Request
from labrig.hw.nvme.spec import (
    CDW10_DSM_NR,
    CDW11_DSM_AD,
    CDW12_FUA,
    DSM_RANGE_STRUCT,
    NSID_BROADCAST,
    SQE_FUSE_MASK,
    SQE_PSDT_MASK,
    GenericSc,
    IoOpcode,
    NvmeStatus,
    status,
)

if TYPE_CHECKING:
    from labrig.hw.nvme._controller import NvmeController
    from labrig.hw.nvme._namespace import Namespace

__all__ = ["IO_HANDLERS"]

OK = NvmeStatus()
ST_INVALID_FIELD = status(GenericSc.INVALID_FIELD, dnr=True)
ST_INVALID_NS = status(GenericSc.INVALID_NAMESPACE, dnr=True)
ST_LBA_RANGE = status(GenericSc.LBA_OUT_OF_RANGE, dnr=True)

# SQE tuple indices (SQE_STRUCT field order)
I_FLAGS, I_PRP1, I_PRP2, I_CDW10, I_CDW11, I_CDW12 = 1, 7, 8, 9, 10, 11
NLB_MASK = 0xFFFF
FLAGS_UNSUPPORTED = SQE_FUSE_MASK | SQE_PSDT_MASK     # no fused commands, PRPs only

Handler = Callable[["NvmeController", Request], NvmeStatus]


def _rw_common(ctrl: NvmeController, req: Request) -> tuple[Namespace, int, int] | NvmeStatus:
    """Namespace, byte offset and length of a Read/Write, or the status that rejects it."""
    cmd = req.cmd
    ns = ctrl.namespaces.get(req.nsid)
    if ns is None:
        return ST_INVALID_NS
    if cmd[I_FLAGS] & FLAGS_UNSUPPORTED:
        return ST_INVALID_FIELD
    slba = cmd[I_CDW10] | cmd[I_CDW11] << 32
    nlb = (cmd[I_CDW12] & NLB_MASK) + 1
    req.lba = slba
    if slba + nlb > ns.nlbas:
        return ST_LBA_RANGE
    nbytes = nlb << ns.lba_shift
    mdts = ctrl.mdts_bytes
    if mdts and nbytes > mdts:
        return ST_INVALID_FIELD
    return ns, slba << ns.lba_shift, nbytes


def io_read(ctrl: NvmeController, req: Request) -> NvmeStatus:
    r = _rw_common(ctrl, req)
    if r.__class__ is NvmeStatus:
        return r  # type: ignore[return-value]
    ns, off, nbytes = r  # type: ignore[misc]
    cmd = req.cmd
    views = map_prps(ctrl.plat.memory, cmd[I_PRP1], cmd[I_PRP2], nbytes, ctrl.page_bytes)
    if views.__class__ is NvmeStatus:
        return views  # type: ignore[return-value]
    store = ns.store
    if len(views) == 1:  # type: ignore[arg-type]
        store.read_into(off, views[0])  # type: ignore[index]
    else:
        pos = off
        for v in views:  # type: ignore[union-attr]
            store.read_into(pos, v)
            pos += len(v)
    c = ctrl.counters
    c.read_commands += 1
    c.bytes_read += nbytes
    req.done_ns = ctrl.timing.read(req.done_ns, ns.nsid, off, nbytes, store.allocated_test)
    return OK


def io_write(ctrl: NvmeController, req: Request) -> NvmeStatus:
    r = _rw_common(ctrl, req)
    if isinstance(r, NvmeStatus):
        return r
    ns, off, nbytes = r
    cmd = req.cmd
    views = map_prps(ctrl.plat.memory, cmd[I_PRP1], cmd[I_PRP2], nbytes, ctrl.page_bytes)
    if isinstance(views, NvmeStatus):
        return views          # nothing was written
    data = views[0] if len(views) == 1 else np.concatenate(views)
    now = req.done_ns
    done, durable = ctrl.timing.write(now, ns.nsid, off, nbytes,
                                      ctrl.vwc_enabled and not cmd[I_CDW12] & CDW12_FUA)
    store = ns.store
    if durable > now:
        ctrl._record_undo(durable, ns, store.snapshot(off, nbytes))
    store.write(off, data)
    c = ctrl.counters
    c.write_commands += 1
    c.bytes_written += nbytes
    req.done_ns = done
    return OK


def io_flush(ctrl: NvmeController, req: Request) -> NvmeStatus:
    if req.nsid != NSID_BROADCAST and req.nsid not in ctrl.namespaces:
        return ST_INVALID_NS
    req.done_ns = ctrl.timing.flush(req.done_ns)
    return OK


def _deallocate(ctrl: NvmeController, ns: Namespace, slba: int, nlb: int, now: int) -> int:
    off, nbytes = slba << ns.lba_shift, nlb << ns.lba_shift
    durable = ctrl.timing.metadata_update(now)
    if durable > now:
        ctrl._record_undo(durable, ns, ns.store.snapshot(off, nbytes))
    ns.store.deallocate(off, nbytes)
    return durable


def io_write_zeroes(ctrl: NvmeController, req: Request) -> NvmeStatus:
    """Write Zeroes (3.3.6): with or without DEAC (CDW12 bit 25) the blocks read back as zeros
    (DLFEAT 001b), so both deallocate; DEAC only documents the host's intent."""
    ns = ctrl.namespaces.get(req.nsid)
    if ns is None:
        return ST_INVALID_NS
    cmd = req.cmd
    slba = cmd[I_CDW10] | cmd[I_CDW11] << 32
    nlb = (cmd[I_CDW12] & NLB_MASK) + 1
    req.lba = slba
    if slba + nlb > ns.nlbas:
        return ST_LBA_RANGE
    now = req.done_ns
    durable = _deallocate(ctrl, ns, slba, nlb, now)
    fw = now + ctrl.cfg.timing.fw_write_ns
    req.done_ns = max(fw, durable) if cmd[I_CDW12] & CDW12_FUA else fw
    ctrl.counters.write_commands += 1
    return OK


def io_dsm(ctrl: NvmeController, req: Request) -> NvmeStatus:
    """Dataset Management (3.3.3): with AD, deallocate up to 256 ranges read from the host."""
    ns = ctrl.namespaces.get(req.nsid)
    if ns is None:
        return ST_INVALID_NS
    cmd = req.cmd
    nr = (cmd[I_CDW10] & CDW10_DSM_NR) + 1
    views = map_prps(ctrl.plat.memory, cmd[I_PRP1], cmd[I_PRP2], nr * DSM_RANGE_STRUCT.size,
                     ctrl.page_bytes)
    if isinstance(views, NvmeStatus):
        return views
    raw = b"".join(v.tobytes() for v in views)
    ranges = [DSM_RANGE_STRUCT.unpack_from(raw, i * DSM_RANGE_STRUCT.size) for i in range(nr)]
    for _attr, nlb, slba in ranges:
        if slba + nlb > ns.nlbas:
            req.lba = slba
            return ST_LBA_RANGE
    now = req.done_ns
    if cmd[I_CDW11] & CDW11_DSM_AD:
        for _attr, nlb, slba in ranges:
            if nlb:
                _deallocate(ctrl, ns, slba, nlb, now)
    req.done_ns = now + ctrl.cfg.timing.fw_write_ns
    return OK


IO_HANDLERS: dict[int, Handler] = {
    IoOpcode.FLUSH: io_flush,
    IoOpcode.WRITE: io_write,
    IoOpcode.READ: io_read,
    IoOpcode.WRITE_ZEROES: io_write_zeroes,
    IoOpcode.DATASET_MANAGEMENT: io_dsm,
}

