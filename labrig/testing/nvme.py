"""Hypothesis tools for NVMe: raw-input strategies and a controller state machine.

:class:`NvmeStateMachine` drives an emulated controller the way a host does -- through the
driver (reads, writes with and without FUA, flushes, deallocates, write zeroes, queue pairs
created and deleted, several commands in flight) and with raw misuse (unknown opcodes,
out-of-range LBAs, bad queue identifiers) -- and checks every read against
:class:`NamespaceModel`.  Faults are part of the walk: a clean shutdown (CC.SHN) and a power
loss, after which each block must hold a version the NVMe durability rules allow and flushed
data must never be lost (Base spec 2.0 section 5.27.1.4 Volatile Write Cache; section 3.6
shutdown).  Subclass it to run the same walk against your own driver (override
:meth:`NvmeStateMachine.make_driver`).

Examples
--------
>>> from labrig.testing.nvme import NvmeStateMachine
>>> TestMyDrive = NvmeStateMachine.TestCase   # collected by pytest
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from labrig.drivers.nvme import NvmeCommand, NvmeCommandError, NvmeCtrlr
from labrig.hw import Platform
from labrig.hw.nvme import NamespaceConfig, NvmeConfig, NvmeController
from labrig.hw.nvme.regs import CSTS_CFS, Reg
from labrig.hw.nvme.spec import AdminOpcode, CommandSpecificSc, GenericSc, Sct
from labrig.testing._nvme_model import NamespaceModel

__all__ = ["NamespaceModel", "NvmeStateMachine", "bar0_accesses", "raw_sqes",
           "unassigned_admin_opcodes"]

#: blocks in the state machine's namespace: small, so the walk revisits blocks often
NUM_BLOCKS = 64
#: largest single transfer the machine issues, in blocks
MAX_XFER_BLOCKS = 8
#: depth of the queue pairs the machine opens
QUEUE_DEPTH = 8

_ASSIGNED_ADMIN = {int(o) for o in AdminOpcode}


def raw_sqes() -> st.SearchStrategy[bytes]:
    """Arbitrary 64-byte submission queue entries (malformed ones included)."""
    return st.binary(min_size=64, max_size=64)


def bar0_accesses(bar_size: int = 0x2000) -> st.SearchStrategy[tuple[int, int, int]]:
    """``(offset, width_bytes, value)`` register writes anywhere in (and past) BAR0."""
    return st.tuples(st.integers(0, bar_size + 0x100), st.sampled_from([4, 8]),
                     st.integers(0, 2**64 - 1))


def unassigned_admin_opcodes() -> st.SearchStrategy[int]:
    """Admin opcodes the controller does not implement (answer: Invalid Command Opcode).
    Vendor-specific (C0h..FFh) and I/O-command-set-specific ranges are excluded."""
    return st.integers(0x00, 0x7F).filter(lambda o: o not in _ASSIGNED_ADMIN)


def _pattern(tag: int, nbytes: int) -> bytes:
    """Deterministic, block-distinguishable data for a write tagged ``tag``."""
    unit = tag.to_bytes(4, "little") * 2
    return (unit * (nbytes // len(unit) + 1))[:nbytes]


class NvmeStateMachine(RuleBasedStateMachine):
    """Driver-visible walk over an emulated NVMe controller, checked against a reference."""

    qpairs = Bundle("qpairs")

    # -- construction hooks (override to test another driver or configuration) --------------
    def make_controller(self, plat: Platform, lba_bytes: int) -> NvmeController:
        ns = NamespaceConfig(capacity_bytes=NUM_BLOCKS * lba_bytes, lba_bytes=lba_bytes)
        return NvmeController(plat, NvmeConfig(namespaces=(ns,)))

    def make_driver(self, plat: Platform, ctrl: NvmeController) -> NvmeCtrlr:
        drv = NvmeCtrlr(plat, ctrl)
        drv.init()
        return drv

    # -- setup -------------------------------------------------------------------------------
    @initialize(seed=st.integers(0, 2**16), lba_bytes=st.sampled_from([512, 4096]))
    def setup(self, seed: int, lba_bytes: int) -> None:
        self.plat = Platform(seed=seed)
        self.lba_bytes = lba_bytes
        self.ctrl = self.make_controller(self.plat, lba_bytes)
        self.model = NamespaceModel(NUM_BLOCKS, lba_bytes)
        self.buf = self.plat.memory.alloc(MAX_XFER_BLOCKS * lba_bytes, 4096)
        self.tag = 0
        self._connect()

    def _connect(self) -> None:
        self.drv = self.make_driver(self.plat, self.ctrl)
        self.nsid = min(self.drv.namespaces)
        self.qp = self.drv.create_io_qpair(QUEUE_DEPTH, self.nsid)
        self.extra: list[object] = []

    def _read(self, lba: int, nblocks: int) -> bytes:
        req = self.qp.read(self.buf, lba, nblocks)
        self.qp.wait(req)
        req.result()
        return self.buf.view[:nblocks * self.lba_bytes].tobytes()

    # -- I/O through the driver ------------------------------------------------------------
    @rule(lba=st.integers(0, NUM_BLOCKS - 1), nblocks=st.integers(1, MAX_XFER_BLOCKS),
          fua=st.booleans())
    def write(self, lba: int, nblocks: int, fua: bool) -> None:
        nblocks = min(nblocks, NUM_BLOCKS - lba)
        self.tag += 1
        data = _pattern(self.tag, nblocks * self.lba_bytes)
        self.buf.view[:len(data)] = memoryview(data)
        req = self.qp.write(self.buf, lba, nblocks, fua=fua)
        self.qp.wait(req)
        req.result()
        self.model.write(lba, data, fua=fua)

    @rule(lbas=st.lists(st.integers(0, NUM_BLOCKS - 1), min_size=2, max_size=2 * QUEUE_DEPTH,
                        unique=True))
    def write_many_in_flight(self, lbas: list[int]) -> None:
        """Single-block writes to distinct blocks, all submitted before any is reaped (more
        than the queue depth, so the driver's software queue is exercised too)."""
        bufs = []
        reqs = []
        with self.qp.batch():
            for lba in lbas:
                self.tag += 1
                b = self.plat.memory.alloc(self.lba_bytes, 4096)
                data = _pattern(self.tag, self.lba_bytes)
                b.view[:] = memoryview(data)
                bufs.append((b, lba, data))
                reqs.append(self.qp.write(b, lba, 1))
        self.qp.wait(reqs)
        for r in reqs:
            r.result()
        for b, lba, data in bufs:
            self.model.write(lba, data)
            b.free()

    @rule(lba=st.integers(0, NUM_BLOCKS - 1), nblocks=st.integers(1, MAX_XFER_BLOCKS))
    def read(self, lba: int, nblocks: int) -> None:
        nblocks = min(nblocks, NUM_BLOCKS - lba)
        assert self._read(lba, nblocks) == self.model.expected(lba, nblocks)

    @rule()
    def flush(self) -> None:
        req = self.qp.flush()
        self.qp.wait(req)
        req.result()
        self.model.flush()

    @rule(lba=st.integers(0, NUM_BLOCKS - 1), nblocks=st.integers(1, MAX_XFER_BLOCKS),
          zeroes=st.booleans())
    def deallocate(self, lba: int, nblocks: int, zeroes: bool) -> None:
        nblocks = min(nblocks, NUM_BLOCKS - lba)
        req = (self.qp.write_zeroes if zeroes else self.qp.trim)(lba, nblocks)
        self.qp.wait(req)
        req.result()
        self.model.deallocate(lba, nblocks)

    # -- misuse: each gets its spec status and the controller keeps serving ---------------------
    @rule(past=st.integers(0, 4), nblocks=st.integers(1, 4), write=st.booleans())
    def out_of_range(self, past: int, nblocks: int, write: bool) -> None:
        lba = NUM_BLOCKS - nblocks + 1 + past
        op = self.qp.write if write else self.qp.read
        req = op(self.buf, lba, nblocks)
        self.qp.wait(req)
        assert isinstance(req.error, NvmeCommandError), req
        st_ = req.error.status
        assert (st_.sct, st_.sc, st_.dnr) == (Sct.GENERIC, GenericSc.LBA_OUT_OF_RANGE, True)

    @rule(opc=unassigned_admin_opcodes())
    def unknown_admin_opcode(self, opc: int) -> None:
        try:
            self.drv.admin_command(NvmeCommand(opc=opc))
        except NvmeCommandError as exc:
            assert (exc.status.sct, exc.status.sc) == (Sct.GENERIC, GenericSc.INVALID_OPCODE)
            assert exc.status.dnr
        else:
            raise AssertionError(f"admin opcode {opc:#x} succeeded")

    @rule(qid=st.sampled_from([0, 0xFFFF]))
    def delete_bad_queue(self, qid: int) -> None:
        try:
            self.drv.admin_command(NvmeCommand(opc=AdminOpcode.DELETE_IO_SQ, cdw10=qid))
        except NvmeCommandError as exc:
            assert (exc.status.sct, exc.status.sc) == (Sct.COMMAND_SPECIFIC,
                                                       CommandSpecificSc.INVALID_QID)
        else:
            raise AssertionError(f"Delete I/O SQ {qid} succeeded")

    # -- queue pairs come and go ------------------------------------------------------------
    @rule(target=qpairs, depth=st.integers(1, QUEUE_DEPTH))
    def open_qpair(self, depth: int) -> object:
        qp = self.drv.create_io_qpair(depth, self.nsid)
        self.extra.append(qp)
        return qp

    @rule(qp=consumes(qpairs), lba=st.integers(0, NUM_BLOCKS - 1))
    def read_on_other_qpair_then_close(self, qp: object, lba: int) -> None:
        if qp not in self.extra:     # opened before a restart: gone with the old driver
            return
        req = qp.read(self.buf, lba, 1)  # type: ignore[attr-defined]
        qp.wait(req)  # type: ignore[attr-defined]
        req.result()
        assert self.buf.view[:self.lba_bytes].tobytes() == self.model.expected(lba, 1)
        qp.close()  # type: ignore[attr-defined]
        self.extra.remove(qp)

    # -- faults ----------------------------------------------------------------------------
    @rule()
    def shutdown_and_restart(self) -> None:
        """Normal shutdown (CC.SHN) flushes the cache: afterwards everything is durable."""
        self.drv.close()
        assert self.drv.shutdown_complete
        self.model.flush()
        self._connect()

    @precondition(lambda self: bool(self.model.written_lbas()))
    @rule()
    def power_loss(self) -> None:
        """Power cut: unflushed writes may be lost, flushed ones never; no block is torn."""
        self.ctrl.power_loss()
        self._connect()
        bad = self.model.power_loss(lambda lba: self._read(lba, 1))
        assert not bad, f"blocks {bad} hold contents that were never legally theirs"

    @invariant()
    def controller_not_fatal(self) -> None:
        if hasattr(self, "ctrl"):
            assert not self.ctrl.bar0.read32(Reg.CSTS) & CSTS_CFS
