"""The RDMA NIC device: BAR0 (initialization segment, UAR doorbell pages), the command
queue, the resource tables and the port on a wire.

Drivers reach it only through ``bar0``, host memory and ``on_interrupt`` (DESIGN.md device
contract); register layouts are in :mod:`labrig.hw.fabric.nic.regs`.  BAR0 writes below
``UAR_BASE`` go to :meth:`NicDevice._write_reg` (a ``match`` over :class:`~regs.Reg`), writes in
a UAR page to :meth:`NicDevice._ring_doorbell` (STYLE.md section 1, after QEMU's
``nvme_mmio_write``).  Commands run as platform events ``timing.cmd_ns`` after their
doorbell; the data path lives in :mod:`labrig.hw.fabric.nic._engine`.

A NIC sits on a *wire*: anything with ``transfer(src, dst, nbytes, on_done, *, on_fail=None)``
-- a :class:`~labrig.hw.fabric.nic.cable.Cable` or a
:class:`~labrig.hw.fabric.flows.FlowNetwork` -- or on none (loopback only).  NICs on one wire
form a subnet: each port gets a LID (``NicConfig.lid`` or the next free one, as an IB subnet
manager assigns them) that a QP names as its destination.
"""

from __future__ import annotations

import logging
import struct
import weakref
from typing import Any

from labrig.errors import ConfigError
from labrig.hw._device import PciDevice
from labrig.hw._platform import Platform
from labrig.hw.fabric.nic import regs
from labrig.hw.fabric.nic._cmd import execute_entry
from labrig.hw.fabric.nic._engine import Engine
from labrig.hw.fabric.nic._objects import Cq, MKey, Qp
from labrig.hw.fabric.nic.config import NicConfig
from labrig.hw.fabric.nic.regs import Reg, UarReg

__all__ = ["NicDevice"]

log = logging.getLogger("labrig.hw.fabric.nic")

DWORD = 4
QWORD = 8
_INIT_SEG_BYTES = regs.UAR_BASE
_CMDQ_ENTRIES = 1 << regs.LOG_CMDQ_SIZE
_MAX_LID = 0xBFFF

#: LID -> NIC of every wire; a wire object is the subnet's identity
_SUBNETS: weakref.WeakKeyDictionary[Any, dict[int, NicDevice]] = weakref.WeakKeyDictionary()


class NicDevice(PciDevice):
    """A single-port RDMA NIC with RC queue pairs (default timing: ConnectX-6 HDR).

    Parameters
    ----------
    plat : Platform
    cfg : NicConfig, optional
    wire : Cable or FlowNetwork, optional
        Carries messages between NICs; without one the NIC reaches only itself.

    Notes
    -----
    Inspection and fault API for tests (drivers never call these): :attr:`qps`, :attr:`cqs`,
    :attr:`mkeys`, :attr:`engine` (its ``stats``), :meth:`set_port_up` (take the NIC down),
    :attr:`counters`.

    Examples
    --------
    >>> from labrig.hw import Platform
    >>> plat = Platform(seed=0)
    >>> nic = NicDevice(plat, NicConfig(node="nic0"))
    >>> plat.run_until_idle() >= 0, nic.bar0.read32(Reg.INITIALIZING) == 0
    (True, True)
    >>> nic.bar0.read32(Reg.PORT_LID)
    1
    """

    def __init__(self, plat: Platform, cfg: NicConfig | None = None, wire: Any = None) -> None:
        cfg = NicConfig() if cfg is None else cfg
        if not isinstance(cfg, NicConfig):
            raise ConfigError("NicDevice", "cfg", cfg, "must be a NicConfig")
        self.cfg = cfg
        self.BAR0_SIZE = regs.bar0_size(cfg.num_uars)
        super().__init__(plat, cfg.node)
        self.node = cfg.node
        self.wire = wire
        if wire is not None and not callable(getattr(wire, "transfer", None)):
            raise ConfigError("NicDevice", "wire", wire, "must have a transfer() method")
        self._check_node(wire, cfg.node)
        if wire is None:
            self.subnet: dict[int, NicDevice] = {}
        else:
            self.subnet = _SUBNETS.setdefault(wire, {})
        lid = cfg.lid
        if lid is None:
            lid = next(i for i in range(1, _MAX_LID + 1) if i not in self.subnet)
        elif lid in self.subnet:
            raise ConfigError("NicConfig", "lid", lid,
                              f"already taken by {self.subnet[lid].node!r} on this wire")
        self.lid = lid
        self.subnet[lid] = self
        self._regs = bytearray(_INIT_SEG_BYTES)
        self._set(Reg.FW_REV, regs.FW_REV_VALUE)
        self._set(Reg.CMDIF_REV, regs.CMDIF_REV_VALUE)
        self._set(Reg.CMDQ_ADDR_LO, regs.field_prep(regs.CMDQ_LOG_SIZE, regs.LOG_CMDQ_SIZE)
                  | regs.field_prep(regs.CMDQ_LOG_STRIDE, regs.LOG_CMDQ_STRIDE))
        self._set(Reg.CAP_LOG_MAX_QP, cfg.log_max_qp)
        self._set(Reg.CAP_LOG_MAX_CQ, cfg.log_max_cq)
        self._set(Reg.CAP_LOG_MAX_MKEY, cfg.log_max_mkey)
        self._set(Reg.CAP_LOG_MAX_PD, cfg.log_max_pd)
        self._set(Reg.CAP_LOG_MAX_QP_SZ, cfg.log_max_qp_sz)
        self._set(Reg.CAP_LOG_MAX_CQ_SZ, cfg.log_max_cq_sz)
        self._set(Reg.CAP_MAX_SGE, regs.field_prep(regs.CAP_MAX_SEND_SGE, regs.MAX_SEND_SGE)
                  | regs.field_prep(regs.CAP_MAX_RECV_SGE, regs.MAX_RECV_SGE))
        self._set(Reg.CAP_NUM_UARS, cfg.num_uars)
        self._set(Reg.PORT_LID, lid)
        self._set(Reg.PORT_MTU, cfg.mtu)
        self.port_up = True
        self._set(Reg.PORT_STATE, regs.PORT_STATE_ACTIVE)
        self.engine = Engine(self)
        self.teardown()
        self._initializing(True)
        plat.schedule(cfg.timing.init_ns, self._initializing, False)

    # -- construction helpers ---------------------------------------------------------------
    @staticmethod
    def _check_node(wire: Any, node: str) -> None:
        ports = getattr(wire, "ports", None)
        topo = getattr(wire, "topology", None)
        if ports is not None and node not in ports:
            raise ConfigError("NicConfig", "node", node, f"must be one of the wire's ports {ports}")
        if topo is not None:
            try:
                topo.node(node)
            except Exception as exc:
                raise ConfigError("NicConfig", "node", node,
                                  f"must be a node of the wire's topology ({exc})") from exc

    def _set(self, off: int, value: int) -> None:
        struct.pack_into("<I", self._regs, off, value & 0xFFFF_FFFF)

    def _get(self, off: int) -> int:
        return int(struct.unpack_from("<I", self._regs, off)[0])

    def _initializing(self, on: bool) -> None:
        self._set(Reg.INITIALIZING, regs.INITIALIZING_BIT if on else 0)

    def teardown(self) -> None:
        """TEARDOWN_HCA / power-on state: no PDs, keys, CQs or QPs; commands other than
        INIT_HCA answer BAD_SYS_STATE until the driver runs INIT_HCA."""
        for qp in getattr(self, "qps", {}).values():
            qp.reset()
        self.hca_ready = False
        self.pds: dict[int, None] = {}
        self.mkeys: dict[int, MKey] = {}
        self.cqs: dict[int, Cq] = {}
        self.qps: dict[int, Qp] = {}
        self.engine.held.clear()

    # -- BAR0 -------------------------------------------------------------------------------
    def _mmio_read(self, off: int, width: int) -> int:
        if off >= _INIT_SEG_BYTES:
            return 0                     # UAR doorbells are write-only
        return int.from_bytes(self._regs[off:off + width], "little")

    def _mmio_write(self, off: int, width: int, value: int) -> None:
        if off >= _INIT_SEG_BYTES:
            if width != QWORD:
                self._count(Reg.CNT_BAD_DOORBELL)
                return
            rel = off - regs.UAR_BASE
            self._ring_doorbell(rel // regs.UAR_BYTES, rel % regs.UAR_BYTES, value)
            return
        if width == QWORD:
            self._write_reg(off, value & 0xFFFF_FFFF)
            self._write_reg(off + DWORD, value >> 32)
        else:
            self._write_reg(off, value)

    def _write_reg(self, off: int, value: int) -> None:
        """One dword write to the initialization segment; read-only registers ignore it."""
        match off:
            case Reg.CMDQ_ADDR_HI:
                self._set(Reg.CMDQ_ADDR_HI, value)
            case Reg.CMDQ_ADDR_LO:
                self._set(Reg.CMDQ_ADDR_LO, (value & regs.CMDQ_ADDR_LO_ADDR)
                          | regs.field_prep(regs.CMDQ_LOG_SIZE, regs.LOG_CMDQ_SIZE)
                          | regs.field_prep(regs.CMDQ_LOG_STRIDE, regs.LOG_CMDQ_STRIDE))
            case Reg.CMD_DBELL:
                self._cmd_doorbell(value)
            case _:
                pass

    @property
    def cmdq_addr(self) -> int:
        """Bus address of the command queue as last programmed."""
        return (self._get(Reg.CMDQ_ADDR_HI) << 32) | (self._get(Reg.CMDQ_ADDR_LO)
                                                     & regs.CMDQ_ADDR_LO_ADDR)

    def _cmd_doorbell(self, vector: int) -> None:
        """Execute the entries whose bits are set, ``timing.cmd_ns`` from now."""
        if self._get(Reg.INITIALIZING) & regs.INITIALIZING_BIT:
            self._count(Reg.CNT_BAD_DOORBELL)     # firmware not up yet: ignored
            return
        for i in range(_CMDQ_ENTRIES):
            if vector >> i & 1:
                self.plat.schedule(self.cfg.timing.cmd_ns, self._run_cmd, i)

    def _run_cmd(self, slot: int) -> None:
        entry = self.plat.memory.dma_view(self.cmdq_addr + slot * regs.CMD_ENTRY_BYTES,
                                          regs.CMD_ENTRY_BYTES)
        if entry is None:
            self._count(Reg.CNT_BAD_DOORBELL)     # no command queue there: nowhere to answer
            return
        try:
            execute_entry(self, entry)
        except Exception:
            self._internal_error("command entry")
            return
        self.raise_interrupt(regs.CMD_VECTOR)

    def _ring_doorbell(self, uar: int, reg: int, value: int) -> None:
        """SQ / RQ / CQ doorbell in UAR page ``uar``; anything malformed is dropped."""
        eng = self.engine
        if reg == UarReg.SQ_DB or reg == UarReg.RQ_DB:
            qp = self.qps.get(regs.field_get(regs.WQ_DB_QPN, value))
            if qp is None or qp.uar != uar:
                self._count(Reg.CNT_BAD_DOORBELL)
                return
            pi = value & regs.WQ_DB_PI
            ok = eng.sq_doorbell(qp, pi) if reg == UarReg.SQ_DB else eng.rq_doorbell(qp, pi)
            if not ok:
                self._count(Reg.CNT_BAD_DOORBELL)
        elif reg == UarReg.CQ_DB:
            cq = self.cqs.get(regs.field_get(regs.CQ_DB_CQN, value))
            if cq is None or cq.uar != uar:
                self._count(Reg.CNT_BAD_DOORBELL)
                return
            eng.cq_arm(cq, regs.field_get(regs.CQ_DB_CI, value),
                       regs.field_get(regs.CQ_DB_CMD, value))
        else:
            self._count(Reg.CNT_BAD_DOORBELL)

    # -- counters, faults -------------------------------------------------------------------
    def _count(self, reg: Reg) -> None:
        self._set(reg, self._get(reg) + 1)

    def _internal_error(self, where: str) -> None:
        log.exception("nic %s: internal error in %s", self.node, where)
        self._count(Reg.CNT_INTERNAL_ERR)

    @property
    def counters(self) -> dict[str, int]:
        """Error counters (same values as the ``CNT_*`` registers)."""
        return {"bad_doorbell": self._get(Reg.CNT_BAD_DOORBELL),
                "cq_overflow": self._get(Reg.CNT_CQ_OVERFLOW),
                "internal_errors": self._get(Reg.CNT_INTERNAL_ERR)}

    def set_port_up(self, up: bool) -> None:
        """Take the port down (``False``) or bring it back: while down, nothing it sends
        arrives and nothing sent to it is accepted, so its peers' QPs retry and then complete
        with RETRY_EXC_ERR (IB PortInfo.PortState DOWN)."""
        self.port_up = bool(up)
        self._set(Reg.PORT_STATE, regs.PORT_STATE_ACTIVE if up else regs.PORT_STATE_DOWN)

    def __repr__(self) -> str:
        return f"NicDevice(node={self.node!r}, lid={self.lid}, qps={len(self.qps)})"
