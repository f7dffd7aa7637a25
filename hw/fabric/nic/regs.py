"""Registers, command layouts, work-queue and completion entries of the emulated RDMA NIC.

Pure data shared by the model (:mod:`labrig.hw.fabric.nic`), the verbs driver
(:mod:`labrig.drivers.verbs`) and the tests.  The structure follows the NVIDIA/Mellanox mlx5
Programmer's Reference Manual ("PRM", as mirrored by Linux ``include/linux/mlx5/device.h``,
``mlx5_ifc.h``, ``drivers/net/ethernet/mellanox/mlx5/core/cmd.c`` and rdma-core
``providers/mlx5``):

* **Initialization segment** at BAR0 offset 0 (PRM "Initialization Segment"): firmware
  revision, command-interface revision, the command queue address (whose low bits report
  ``log_cmdq_size``/``log_cmdq_stride``), the command doorbell vector and the
  ``initializing`` bit.  Capabilities, the port LID/state and error counters, which mlx5
  reports through QUERY_HCA_CAP / QUERY_VPORT commands, are plain read-only registers here
  (labrig additions, ``CAP_*``/``PORT_*``/``CNT_*``).
* **Command interface** (PRM "Command Interface"): a ring of 64-byte command entries in host
  memory.  The driver fills an entry (16 inline input bytes, longer input in a buffer at
  ``in_ptr``), hands it to the device by setting the ownership bit and writing the entry's bit
  to ``CMD_DBELL``; the device executes it, writes the 16 inline output bytes (``status``,
  ``syndrome``, result), clears ownership and raises MSI-X vector ``CMD_VECTOR``.  Opcodes and
  status codes are the PRM's (CREATE_CQ 0x400, CREATE_QP 0x500, RST2INIT_QP 0x502, ...).
* **UAR pages** (PRM "User Access Region"): BAR0 pages from ``UAR_BASE``; each holds the
  send-queue doorbell (the BlueFlame register offset 0x800 in mlx5: the first 8 bytes of the
  last WQE's control segment), a receive-queue doorbell (labrig addition; mlx5 uses a doorbell
  record in host memory instead, as bnxt_re/hns doorbell their RQs) and the CQ arm doorbell
  (``MLX5_CQ_DOORBELL`` 0x20).  A QP or CQ is bound to one UAR page at creation; a doorbell
  for it on another page is dropped and counted.
* **Work-queue entries** are built from 16-byte segments (``mlx5_wqe_ctrl_seg``,
  ``mlx5_wqe_raddr_seg``, ``mlx5_wqe_data_seg``); a receive WQE is a list of data segments
  ended by the invalid lkey ``INVALID_LKEY`` (0x100).  **Completion entries** are 64 bytes
  laid out like ``mlx5_cqe64`` / ``mlx5_err_cqe`` with the owner bit in ``op_own``.

Deliberate simplifications: every field is little-endian (mlx5 is big-endian); a send WQE has a
fixed 128-byte stride with the remote-address segment always present; command input beyond
the inline bytes is one contiguous buffer rather than chained 512-byte mailboxes.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final

import numpy as np

from labrig.hw._bits import bit, field_get, field_prep, genmask

__all__ = [
    "ACCESS_ALL", "ACCESS_LOCAL_WRITE", "ACCESS_REMOTE_ATOMIC", "ACCESS_REMOTE_READ",
    "ACCESS_REMOTE_WRITE", "ACK_TIMEOUT_UNIT_NS", "BAR0_SIZE", "CAP_MAX_RECV_SGE",
    "CAP_MAX_SEND_SGE", "CMDIF_REV_VALUE", "CMDQ_ADDR_LO_ADDR", "CMDQ_LOG_SIZE", "CMDQ_LOG_STRIDE",
    "CMD_DELIVERY", "CMD_ENTRY", "CMD_ENTRY_BYTES", "CMD_INLINE_BYTES", "CMD_IN_HDR", "CMD_OUT",
    "CMD_OWN_HW", "CMD_TYPE_PCIE", "CMD_VECTOR", "CQE", "CQE_BYTES", "CQE_FLAG_IMM", "CQE_OPCODE",
    "CQE_OWNER", "CQE_QPN", "CQ_CI_MASK", "CQ_DBREC", "CQ_DBREC_BYTES", "CQ_DB_CI", "CQ_DB_CMD",
    "CQ_DB_CQN", "CREATE_CQ_IN", "CREATE_MKEY_IN", "CREATE_QP_IN", "CTRL_CE_SIGNALED", "CTRL_DS",
    "CTRL_OPCODE", "CTRL_QPN", "CTRL_SEG", "CTRL_SOLICITED", "CTRL_WQE_INDEX", "CmdOpcode",
    "CmdStatus", "CqArm", "CqeOpcode", "DATA_SEG", "DeliveryStatus", "FW_REV_VALUE", "INIT2RTR_IN",
    "INITIALIZING_BIT", "INVALID_LKEY", "IN_LAYOUTS", "LOG_CMDQ_SIZE", "LOG_CMDQ_STRIDE",
    "MAX_RECV_SGE", "MAX_SEND_SGE", "MKEY_INDEX", "MKEY_KEY", "MTU_BYTES", "OBJ_IN",
    "PORT_STATE_ACTIVE", "PORT_STATE_DOWN", "QP_ST_RC", "QpState", "RADDR_SEG", "RECV_WQE",
    "RECV_WQE_BYTES", "RNR_RETRY_INFINITE", "RNR_TIMER_NS", "RST2INIT_IN", "RTR2RTS_IN", "Reg",
    "SEG_BYTES", "SEND_WQE", "SEND_WQE_BYTES", "Syndrome", "UAR_BASE", "UAR_BYTES", "UarReg",
    "WQE_COUNTER_MASK", "WQ_DB_PI", "WQ_DB_QPN", "WqeOpcode", "ack_timeout_ns", "bar0_size",
    "cq_db_encode", "field_get", "field_prep", "mkey_encode", "struct_of", "uar_offset",
    "wq_db_encode",
]


# ---------------------------------------------------------------------------------------------
# layout helper: one numpy dtype per structure, and the equivalent struct.Struct for hot paths
# ---------------------------------------------------------------------------------------------
_CODES = {"u1": "B", "u2": "H", "u4": "I", "u8": "Q", "i4": "i", "i8": "q"}


def struct_of(dtype: np.dtype) -> struct.Struct:
    """A little-endian :class:`struct.Struct` with the same layout as ``dtype``.

    Fields named ``rsvd*`` become pad bytes; sub-array fields expand to repeated codes;
    nested structured fields expand in place.  The model and driver pack hot-path entries with
    the struct (about 10x faster than numpy item access) and document them with the dtype;
    ``tests/hw/fabric/test_fabric_nic_regs.py`` checks both agree.
    """
    parts: list[str] = []

    def walk(dt: np.dtype) -> None:
        for name in dt.names:
            sub, _off = dt.fields[name][:2]
            base, shape = (sub.subdtype if sub.subdtype else (sub, ()))
            count = int(np.prod(shape)) if shape else 1
            if base.names:
                for _ in range(count):
                    walk(base)
            elif name.startswith("rsvd"):
                parts.append(f"{base.itemsize * count}x")
            else:
                parts.append(_CODES[base.str.lstrip("<>|=")] * count)

    walk(np.dtype(dtype))
    s = struct.Struct("<" + "".join(parts))
    assert s.size == np.dtype(dtype).itemsize, (s.format, np.dtype(dtype).itemsize)
    return s


# ---------------------------------------------------------------------------------------------
# BAR0: initialization segment (PRM "Initialization Segment"; Linux mlx5_init_seg)
# ---------------------------------------------------------------------------------------------
class Reg(IntEnum):
    """Initialization-segment register offsets in BAR0 (32-bit registers)."""

    FW_REV = 0x000            # fw_rev_minor (31:16) | fw_rev_major (15:0)
    CMDIF_REV = 0x004         # cmd_interface_rev (31:16) | fw_rev_subminor (15:0)
    CMDQ_ADDR_HI = 0x010      # command queue bus address, bits 63:32
    CMDQ_ADDR_LO = 0x014      # bits 31:12; bits 7:4 log_cmdq_size, 3:0 log_cmdq_stride (RO)
    CMD_DBELL = 0x018         # command doorbell vector: bit i executes entry i
    INITIALIZING = 0x1FC      # bit 31: firmware still initializing (mlx5 "initializing")
    # labrig additions (mlx5: QUERY_HCA_CAP / QUERY_VPORT / health counters), read-only
    CAP_LOG_MAX_QP = 0x100    # log2 of the number of QPs
    CAP_LOG_MAX_CQ = 0x104
    CAP_LOG_MAX_MKEY = 0x108
    CAP_LOG_MAX_PD = 0x10C
    CAP_LOG_MAX_QP_SZ = 0x110  # log2 of the largest work queue (WQEs)
    CAP_LOG_MAX_CQ_SZ = 0x114  # log2 of the largest CQ (CQEs)
    CAP_MAX_SGE = 0x118       # send SGEs (15:0) | receive SGEs (31:16) per WQE
    CAP_NUM_UARS = 0x11C
    PORT_LID = 0x140          # LID the subnet assigned to the port (IB: PortInfo.LID)
    PORT_STATE = 0x144        # IB PortInfo.PortState: 1 DOWN, 4 ACTIVE
    PORT_MTU = 0x148          # active MTU in bytes
    CNT_BAD_DOORBELL = 0x180  # doorbells dropped (unknown object, wrong UAR, bad index)
    CNT_CQ_OVERFLOW = 0x184   # completions lost to a full CQ (CQ in error)
    CNT_INTERNAL_ERR = 0x188  # model bugs caught (tests assert it stays 0)


FW_REV_VALUE: Final = 0x0001_0001          # 1.1 (labrig model)
CMDIF_REV_VALUE: Final = 5 << 16           # mlx5 command interface revision 5
CMDQ_ADDR_LO_ADDR: Final = genmask(31, 12)
CMDQ_LOG_SIZE: Final = genmask(7, 4)
CMDQ_LOG_STRIDE: Final = genmask(3, 0)
LOG_CMDQ_SIZE: Final = 5                   # 32 entries, as mlx5 firmware reports
LOG_CMDQ_STRIDE: Final = 6                 # 64-byte entries
INITIALIZING_BIT: Final = bit(31)
CAP_MAX_SEND_SGE: Final = genmask(15, 0)
CAP_MAX_RECV_SGE: Final = genmask(31, 16)
PORT_STATE_DOWN: Final = 1                 # IB spec 14.2.5.6 PortInfo.PortState
PORT_STATE_ACTIVE: Final = 4

# ---------------------------------------------------------------------------------------------
# UAR pages
# ---------------------------------------------------------------------------------------------
UAR_BASE: Final = 0x1000
UAR_BYTES: Final = 0x1000


class UarReg(IntEnum):
    """Doorbell registers inside one UAR page (64-bit writes)."""

    CQ_DB = 0x020     # MLX5_CQ_DOORBELL: arm a CQ
    SQ_DB = 0x800     # MLX5_BF_OFFSET: send-queue doorbell
    RQ_DB = 0x808     # receive-queue doorbell (labrig addition, see module docstring)


# SQ/RQ doorbell value: producer counter and QP number (mlx5 writes ctrl seg dwords 0..1,
# whose wqe_index field is the producer counter and whose qpn_ds carries the QPN)
WQ_DB_PI: Final = genmask(15, 0)
WQ_DB_QPN: Final = genmask(55, 32)
# CQ doorbell value (mlx5_cq_arm: sn | cmd | ci in the upper dword, cqn in the lower)
CQ_DB_CQN: Final = genmask(23, 0)
CQ_DB_CI: Final = genmask(55, 32)
CQ_DB_CMD: Final = genmask(57, 56)


class CqArm(IntEnum):
    """CQ doorbell command (mlx5 MLX5_CQ_DB_REQ_NOT / _SOL)."""

    NEXT = 0          # interrupt on the next completion
    SOLICITED = 1     # interrupt on the next solicited (or error) completion


def uar_offset(uar: int, reg: UarReg) -> int:
    """BAR0 offset of ``reg`` in UAR page ``uar``."""
    return UAR_BASE + uar * UAR_BYTES + int(reg)


def wq_db_encode(qpn: int, pi: int) -> int:
    """SQ/RQ doorbell value for QP ``qpn`` with producer counter ``pi``."""
    return field_prep(WQ_DB_QPN, qpn) | field_prep(WQ_DB_PI, pi)


def cq_db_encode(cqn: int, ci: int, cmd: int = CqArm.NEXT) -> int:
    """CQ arm doorbell value."""
    return field_prep(CQ_DB_CQN, cqn) | field_prep(CQ_DB_CI, ci) | field_prep(CQ_DB_CMD, cmd)


def bar0_size(num_uars: int) -> int:
    """BAR0 bytes for the init segment plus ``num_uars`` UAR pages."""
    return UAR_BASE + num_uars * UAR_BYTES


BAR0_SIZE: Final = bar0_size(16)

# ---------------------------------------------------------------------------------------------
# command interface (PRM "Command Interface"; Linux mlx5_cmd_layout and cmd.c)
# ---------------------------------------------------------------------------------------------
CMD_TYPE_PCIE: Final = 0x7        # mlx5 CMD_IF type "PCIe"
CMD_VECTOR: Final = 0             # MSI-X vector of command completions (mlx5 cmd EQ)
CMD_INLINE_BYTES: Final = 16
CMD_OWN_HW: Final = bit(0)        # status_own bit 0: entry owned by hardware
CMD_DELIVERY: Final = genmask(7, 1)

CMD_ENTRY = np.dtype([
    ("type", "u1"), ("rsvd0", "u1", 3), ("inlen", "<u4"), ("in_ptr", "<u8"),
    ("in_inline", "u1", CMD_INLINE_BYTES), ("out_inline", "u1", CMD_INLINE_BYTES),
    ("out_ptr", "<u8"), ("outlen", "<u4"), ("token", "u1"), ("signature", "u1"),
    ("rsvd1", "u1"), ("status_own", "u1")])
CMD_ENTRY_BYTES: Final = CMD_ENTRY.itemsize          # 64
CMD_IN_HDR = np.dtype([("opcode", "<u2"), ("uid", "<u2"), ("rsvd0", "<u2"), ("op_mod", "<u2")])
#: 16 inline output bytes: status, syndrome, and two result dwords (object number, state)
CMD_OUT = np.dtype([("status", "u1"), ("rsvd0", "u1", 3), ("syndrome", "<u4"),
                    ("result0", "<u4"), ("result1", "<u4")])


class CmdOpcode(IntEnum):
    """Command opcodes (PRM; Linux ``MLX5_CMD_OP_*``)."""

    INIT_HCA = 0x102
    TEARDOWN_HCA = 0x103
    CREATE_MKEY = 0x200
    DESTROY_MKEY = 0x202
    CREATE_CQ = 0x400
    DESTROY_CQ = 0x401
    CREATE_QP = 0x500
    DESTROY_QP = 0x501
    RST2INIT_QP = 0x502
    INIT2RTR_QP = 0x503
    RTR2RTS_QP = 0x504
    QP_2ERR = 0x507
    QP_2RST = 0x50A
    QUERY_QP = 0x50B
    ALLOC_PD = 0x800
    DEALLOC_PD = 0x801


class CmdStatus(IntEnum):
    """Command completion status (Linux ``MLX5_CMD_STAT_*``)."""

    OK = 0x0
    INT_ERR = 0x1
    BAD_OP_ERR = 0x2
    BAD_PARAM_ERR = 0x3
    BAD_SYS_STATE_ERR = 0x4
    BAD_RES_ERR = 0x5
    RES_BUSY = 0x6
    LIM_ERR = 0x8
    BAD_RES_STATE_ERR = 0x9
    IX_ERR = 0xA
    NO_RES_ERR = 0xF
    BAD_QP_STATE_ERR = 0x10
    BAD_INP_LEN_ERR = 0x50
    BAD_OUTP_LEN_ERR = 0x51


class DeliveryStatus(IntEnum):
    """Command delivery status in ``status_own`` bits 7:1 (Linux ``MLX5_CMD_DELIVERY_STAT_*``)."""

    OK = 0x0
    SIGNAT_ERR = 0x1
    TOK_ERR = 0x2
    BAD_BLK_NUM_ERR = 0x3
    OUT_PTR_ALIGN_ERR = 0x4
    IN_PTR_ALIGN_ERR = 0x5
    FW_ERR = 0x6
    IN_LENGTH_ERR = 0x7
    OUT_LENGTH_ERR = 0x8
    RES_FLD_NOT_CLR_ERR = 0x9
    CMD_IF_VER_ERR = 0xF


def _hdr(*fields: tuple) -> np.dtype:
    return np.dtype([("hdr", CMD_IN_HDR), *fields])


#: DEALLOC_PD / DESTROY_* / 2ERR / 2RST / QUERY_QP: one object number
OBJ_IN = _hdr(("obj", "<u4"), ("rsvd1", "<u4"))
CREATE_MKEY_IN = _hdr(("pd", "<u4"), ("access", "<u4"), ("start_addr", "<u8"),
                      ("length", "<u8"), ("mkey_7_0", "u1"), ("rsvd1", "u1", 7))
CREATE_CQ_IN = _hdr(("log_cq_size", "u1"), ("uar", "u1"), ("rsvd1", "u1", 2),
                    ("c_eqn", "<u4"), ("cq_addr", "<u8"), ("dbrec_addr", "<u8"))
CREATE_QP_IN = _hdr(("pd", "<u4"), ("st", "u1"), ("uar", "u1"), ("log_sq_size", "u1"),
                    ("log_rq_size", "u1"), ("cqn_snd", "<u4"), ("cqn_rcv", "<u4"),
                    ("sq_addr", "<u8"), ("rq_addr", "<u8"))
RST2INIT_IN = _hdr(("obj", "<u4"), ("access", "<u4"), ("port", "u1"), ("rsvd1", "u1", 7))
INIT2RTR_IN = _hdr(("obj", "<u4"), ("remote_qpn", "<u4"), ("dlid", "<u2"), ("path_mtu", "u1"),
                   ("min_rnr_timer", "u1"), ("rq_psn", "<u4"), ("max_dest_rd_atomic", "u1"),
                   ("rsvd1", "u1", 7))
RTR2RTS_IN = _hdr(("obj", "<u4"), ("sq_psn", "<u4"), ("timeout", "u1"), ("retry_cnt", "u1"),
                  ("rnr_retry", "u1"), ("max_rd_atomic", "u1"), ("rsvd1", "u1", 4))

#: input layout of each command (its ``inlen`` must cover the layout)
IN_LAYOUTS: Final = {
    CmdOpcode.INIT_HCA: OBJ_IN, CmdOpcode.TEARDOWN_HCA: OBJ_IN,
    CmdOpcode.CREATE_MKEY: CREATE_MKEY_IN, CmdOpcode.DESTROY_MKEY: OBJ_IN,
    CmdOpcode.CREATE_CQ: CREATE_CQ_IN, CmdOpcode.DESTROY_CQ: OBJ_IN,
    CmdOpcode.CREATE_QP: CREATE_QP_IN, CmdOpcode.DESTROY_QP: OBJ_IN,
    CmdOpcode.RST2INIT_QP: RST2INIT_IN, CmdOpcode.INIT2RTR_QP: INIT2RTR_IN,
    CmdOpcode.RTR2RTS_QP: RTR2RTS_IN, CmdOpcode.QP_2ERR: OBJ_IN, CmdOpcode.QP_2RST: OBJ_IN,
    CmdOpcode.QUERY_QP: OBJ_IN, CmdOpcode.ALLOC_PD: OBJ_IN, CmdOpcode.DEALLOC_PD: OBJ_IN,
}

#: QP service type in CREATE_QP (PRM qpc.st): only reliable connected is modelled
QP_ST_RC: Final = 0x0

# ---------------------------------------------------------------------------------------------
# memory keys (PRM "Memory Key"; mkey = index << 8 | variant byte)
# ---------------------------------------------------------------------------------------------
MKEY_INDEX: Final = genmask(31, 8)
MKEY_KEY: Final = genmask(7, 0)
#: access flags: values of libibverbs ``enum ibv_access_flags`` (the PRM's lw/rw/rr/a bits)
ACCESS_LOCAL_WRITE: Final = bit(0)
ACCESS_REMOTE_WRITE: Final = bit(1)
ACCESS_REMOTE_READ: Final = bit(2)
ACCESS_REMOTE_ATOMIC: Final = bit(3)
ACCESS_ALL: Final = genmask(3, 0)


def mkey_encode(index: int, key: int) -> int:
    """Memory key (lkey = rkey) of table entry ``index`` with variant byte ``key``."""
    return field_prep(MKEY_INDEX, index) | field_prep(MKEY_KEY, key)


# ---------------------------------------------------------------------------------------------
# QP states (IB spec 1.4 section 10.3.1; values of ``enum ibv_qp_state``)
# ---------------------------------------------------------------------------------------------
class QpState(IntEnum):
    RESET = 0
    INIT = 1
    RTR = 2
    RTS = 3
    SQD = 4
    SQE = 5
    ERR = 6


# ---------------------------------------------------------------------------------------------
# work-queue entries (rdma-core providers/mlx5/mlx5dv.h segments)
# ---------------------------------------------------------------------------------------------
class WqeOpcode(IntEnum):
    """Send WQE opcodes (``MLX5_OPCODE_*``)."""

    NOP = 0x00
    RDMA_WRITE = 0x08
    RDMA_WRITE_IMM = 0x09
    SEND = 0x0A
    SEND_IMM = 0x0B
    RDMA_READ = 0x10


MAX_SEND_SGE: Final = 6
MAX_RECV_SGE: Final = 4
#: lkey that ends a receive WQE's scatter list (``MLX5_INVALID_LKEY``)
INVALID_LKEY: Final = 0x100
CTRL_CE_SIGNALED: Final = bit(3)     # fm_ce_se: CQ update (MLX5_WQE_CTRL_CQ_UPDATE)
CTRL_SOLICITED: Final = bit(1)       # fm_ce_se: solicited event (MLX5_WQE_CTRL_SOLICITED)
CTRL_OPCODE: Final = genmask(7, 0)
CTRL_WQE_INDEX: Final = genmask(23, 8)
CTRL_QPN: Final = genmask(31, 8)
CTRL_DS: Final = genmask(5, 0)       # WQE size in 16-byte units
#: WQE counters (CQE wqe_counter, doorbell producer index) are 16 bits wide
WQE_COUNTER_MASK: Final = genmask(15, 0)

CTRL_SEG = np.dtype([("opmod_idx_opcode", "<u4"), ("qpn_ds", "<u4"), ("signature", "u1"),
                     ("rsvd0", "u1", 2), ("fm_ce_se", "u1"), ("imm", "<u4")])
RADDR_SEG = np.dtype([("raddr", "<u8"), ("rkey", "<u4"), ("rsvd0", "<u4")])
DATA_SEG = np.dtype([("byte_count", "<u4"), ("lkey", "<u4"), ("addr", "<u8")])
SEND_WQE = np.dtype([("ctrl", CTRL_SEG), ("raddr", RADDR_SEG),
                     ("data", DATA_SEG, (MAX_SEND_SGE,))])
SEND_WQE_BYTES: Final = SEND_WQE.itemsize            # 128
RECV_WQE = np.dtype([("data", DATA_SEG, (MAX_RECV_SGE,))])
RECV_WQE_BYTES: Final = RECV_WQE.itemsize            # 64
SEG_BYTES: Final = 16

# ---------------------------------------------------------------------------------------------
# completion entries (mlx5_cqe64 / mlx5_err_cqe)
# ---------------------------------------------------------------------------------------------
CQE = np.dtype([("rsvd0", "u1", 36), ("imm_inval_pkey", "<u4"), ("flags_rqpn", "<u4"),
                ("byte_cnt", "<u4"), ("timestamp", "<u4"), ("rsvd1", "u1", 2),
                ("vendor_err_synd", "u1"), ("syndrome", "u1"), ("sop_drop_qpn", "<u4"),
                ("wqe_counter", "<u2"), ("signature", "u1"), ("op_own", "u1")])
CQE_BYTES: Final = CQE.itemsize                      # 64
CQE_OWNER: Final = bit(0)
CQE_OPCODE: Final = genmask(7, 4)
CQE_QPN: Final = genmask(23, 0)
#: flags_rqpn bit 0 (labrig): the completion carries immediate data (mlx5 encodes this in the
#: CQE opcode; kept separately so RESP_WR_IMM and SEND_IMM need no second lookup)
CQE_FLAG_IMM: Final = bit(0)
#: CQ doorbell record in host memory: dword 0 consumer index (mlx5 ``dbrec[MLX5_CQ_SET_CI]``)
CQ_DBREC = np.dtype([("ci", "<u4"), ("arm", "<u4")])
CQ_DBREC_BYTES: Final = CQ_DBREC.itemsize
CQ_CI_MASK: Final = genmask(23, 0)


class CqeOpcode(IntEnum):
    """CQE opcode in ``op_own`` bits 7:4 (``MLX5_CQE_*``)."""

    REQ = 0x0
    RESP_WR_IMM = 0x1
    RESP_SEND = 0x2
    RESP_SEND_IMM = 0x3
    REQ_ERR = 0xD
    RESP_ERR = 0xE
    INVALID = 0xF


class Syndrome(IntEnum):
    """Error CQE syndromes (``MLX5_CQE_SYNDROME_*``); the driver maps them to IBV_WC status
    as rdma-core ``mlx5_handle_error_cqe`` does."""

    LOCAL_LENGTH_ERR = 0x01
    LOCAL_QP_OP_ERR = 0x02
    LOCAL_PROT_ERR = 0x04
    WR_FLUSH_ERR = 0x05
    MW_BIND_ERR = 0x06
    BAD_RESP_ERR = 0x10
    LOCAL_ACCESS_ERR = 0x11
    REMOTE_INVAL_REQ_ERR = 0x12
    REMOTE_ACCESS_ERR = 0x13
    REMOTE_OP_ERR = 0x14
    TRANSPORT_RETRY_EXC_ERR = 0x15
    RNR_RETRY_EXC_ERR = 0x16
    REMOTE_ABORTED_ERR = 0x22


# ---------------------------------------------------------------------------------------------
# transport timers (IB spec 1.4 section 9.7.5.2.8 Table 45 "RNR NAK timer field encoding";
# section 11.2.4.2 "Local ACK Timeout": 4.096 us * 2^timeout)
# ---------------------------------------------------------------------------------------------
RNR_TIMER_NS: Final = tuple(int(ms * 1_000_000) for ms in (
    655.36, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24, 0.32, 0.48, 0.64, 0.96,
    1.28, 1.92, 2.56, 3.84, 5.12, 7.68, 10.24, 15.36, 20.48, 30.72, 40.96, 61.44, 81.92,
    122.88, 163.84, 245.76, 327.68, 491.52))
ACK_TIMEOUT_UNIT_NS: Final = 4096
#: rnr_retry = 7 means retry for ever (IB spec 9.7.5.2.8)
RNR_RETRY_INFINITE: Final = 7


def ack_timeout_ns(timeout: int) -> int:
    """Local ACK timeout for the 5-bit ``timeout`` attribute; 0 means infinite (here: 2^31 ns
    so a dead path still ends in an error rather than a hang)."""
    timeout &= 0x1F
    if timeout == 0:
        return 1 << 31
    return ACK_TIMEOUT_UNIT_NS << timeout


#: IB MTU enumeration (``enum ibv_mtu``: 1 -> 256 ... 5 -> 4096)
MTU_BYTES: Final = {1: 256, 2: 512, 3: 1024, 4: 2048, 5: 4096}
