"""The NIC's resource tables: protection domains, memory keys, completion queues, queue pairs.

Each object is plain state created by a command (:mod:`labrig.hw.fabric.nic._cmd`) and used by
the data path (:mod:`labrig.hw.fabric.nic._engine`).  Rings live in host memory; an object
keeps numpy views of them plus the counters the hardware keeps (mlx5 ``qpc``/``cqc``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from labrig.hw.fabric.nic import regs
from labrig.hw.fabric.nic.regs import QpState

if TYPE_CHECKING:
    import numpy as np

    from labrig.hw.fabric.nic._engine import Engine
    from numpy.typing import NDArray

__all__ = ["Cq", "MKey", "Message", "Qp"]


class MKey:
    """One memory-key table entry: a registered region ``[start, start + length)``.

    Checks follow IB spec 1.4 section 10.6.3 (memory region access): the key's variant byte
    must match, the region's PD must be the QP's, the range must lie inside the region and the
    access flags must allow the operation.
    """

    __slots__ = ("access", "end", "index", "key", "length", "mkey", "pd", "start")

    def __init__(self, index: int, key: int, pd: int, access: int, start: int,
                 length: int) -> None:
        self.index = index
        self.key = key
        self.mkey = regs.mkey_encode(index, key)
        self.pd = pd
        self.access = access
        self.start = start
        self.length = length
        self.end = start + length


class Cq:
    """A completion queue: a ring of 64-byte CQEs plus a doorbell record in host memory.

    ``pi`` counts CQEs written; the owner bit of entry ``pi`` is ``(pi >> log_size) & 1``
    (mlx5: software initialises every entry's ``op_own`` to 0xF1, invalid/owner 1, so the
    first pass is recognised by owner 0).
    """

    __slots__ = ("armed", "buf", "cqn", "dbrec", "log_size", "mask", "overflowed", "pi",
                 "qps", "size", "uar", "vector")

    def __init__(self, cqn: int, buf: NDArray[np.uint8], dbrec: NDArray[np.uint8],
                 log_size: int, uar: int, vector: int) -> None:
        self.cqn = cqn
        self.buf = buf
        self.dbrec = dbrec.view("<u4")
        self.log_size = log_size
        self.size = 1 << log_size
        self.mask = self.size - 1
        self.uar = uar
        self.vector = vector
        self.pi = 0
        self.armed: int | None = None
        self.overflowed = False
        self.qps: set[int] = set()


class Message:
    """One send WQE in flight between requester and responder (one PSN per message: a
    simplification of per-packet PSNs that loses nothing without packet loss)."""

    __slots__ = ("byte_len", "data", "eng", "executed", "gen", "imm", "local", "opcode", "psn",
                 "qp", "raddr", "result", "retries", "rkey", "rnr_retries", "signaled",
                 "solicited", "status", "wqe_counter", "wire_bytes")

    def __init__(self, eng: Engine, qp: Qp, wqe_counter: int, opcode: int, signaled: bool,
                 solicited: bool, imm: int, raddr: int, rkey: int,
                 local: list[tuple[int, int]], byte_len: int) -> None:
        self.eng = eng                # the requester NIC's engine
        self.qp = qp
        self.gen = qp.gen
        self.wqe_counter = wqe_counter
        self.opcode = opcode
        self.signaled = signaled
        self.solicited = solicited
        self.imm = imm
        self.raddr = raddr
        self.rkey = rkey
        self.local = local            # (bus address, length) of each checked local SGE
        self.byte_len = byte_len
        self.data: bytes | None = None
        self.psn = 0
        self.retries = qp.retry_cnt
        self.rnr_retries = qp.rnr_retry
        self.executed = False         # the responder ran it (success or not)
        self.status = 0               # 0 or an error syndrome, once known
        self.result: bytes | None = None   # RDMA READ response data
        self.wire_bytes = 0


class Qp:
    """A reliable-connected queue pair: send and receive rings in host memory, the state of
    IB spec 1.4 section 10.3 and the transport attributes set by the modify commands."""

    __slots__ = ("access", "busy", "dlid", "gen", "inflight", "log_rq_size", "log_sq_size",
                 "max_rd_atomic", "min_rnr_timer", "path_mtu", "pd", "port", "qpn", "rcq",
                 "remote_qpn", "retry_cnt", "retrying", "rnr_retry", "rq_buf", "rq_ci",
                 "rq_mask", "rq_pi", "rq_psn", "scq", "sq_buf", "sq_ci", "sq_mask", "sq_pi",
                 "sq_psn", "sq_scheduled", "state", "timeout", "uar", "sq_done")

    def __init__(self, qpn: int, pd: int, uar: int, scq: Cq, rcq: Cq,
                 sq_buf: NDArray[np.uint8], log_sq_size: int,
                 rq_buf: NDArray[np.uint8], log_rq_size: int) -> None:
        self.qpn = qpn
        self.pd = pd
        self.uar = uar
        self.scq = scq
        self.rcq = rcq
        self.sq_buf = sq_buf
        self.rq_buf = rq_buf
        self.log_sq_size = log_sq_size
        self.log_rq_size = log_rq_size
        self.sq_mask = (1 << log_sq_size) - 1
        self.rq_mask = (1 << log_rq_size) - 1
        self.gen = 0
        self.reset()

    def reset(self) -> None:
        """Back to RESET: counters and attributes cleared (IB spec 10.3.1: "Reset")."""
        self.state = QpState.RESET
        self.gen += 1
        self.sq_pi = 0            # WQEs the driver announced (full counter)
        self.sq_ci = 0            # next WQE to fetch
        self.sq_done = 0          # WQEs completed or flushed
        self.rq_pi = 0
        self.rq_ci = 0
        self.inflight: deque[Message] = deque()
        self.busy = False         # a message of this QP is on the wire
        self.retrying = 0         # messages waiting for a retransmission
        self.sq_scheduled = False
        self.access = 0
        self.port = 1
        self.remote_qpn = 0
        self.dlid = 0
        self.path_mtu = 4096
        self.min_rnr_timer = 0
        self.rq_psn = 0
        self.sq_psn = 0
        self.timeout = 14
        self.retry_cnt = 7
        self.rnr_retry = 7
        self.max_rd_atomic = 1
