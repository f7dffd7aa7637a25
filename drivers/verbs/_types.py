"""Plain verbs data objects, shaped like pyverbs' (``pyverbs/wr.pyx``, ``qp.pyx``, ``addr.pyx``,
``cq.pyx``; constructor arguments as in rdma-core 691953d, shared/research/fabric.md 4.1).

They carry no backend state, so the same objects go to the emulated and the real backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labrig.drivers.verbs.enums import (
    IBV_MTU_1024,
    IBV_QPS_INIT,
    IBV_QPS_RESET,
    IBV_QPT_RC,
    IBV_SEND_SIGNALED,
    IBV_WR_SEND,
    wc_status_str,
)

__all__ = ["AHAttr", "GlobalRoute", "PortAttr", "QPAttr", "QPCap", "QPInitAttr", "RecvWR",
           "SGE", "SendWR", "WC"]


@dataclass
class SGE:
    """Scatter/gather element: ``SGE(addr, length, lkey)``."""

    addr: int
    length: int
    lkey: int


@dataclass
class SendWR:
    """Send work request (``pyverbs.wr.SendWR``); :meth:`set_wr_rdma` adds the remote side."""

    wr_id: int = 0
    opcode: int = IBV_WR_SEND
    num_sge: int = 0
    imm_data: int = 0
    sg: list[SGE] | None = None
    send_flags: int = IBV_SEND_SIGNALED
    next_wr: SendWR | None = None
    rkey: int = 0
    remote_addr: int = 0

    def set_wr_rdma(self, rkey: int, addr: int) -> None:
        """Remote key and address of an RDMA WRITE/READ."""
        self.rkey = int(rkey)
        self.remote_addr = int(addr)


@dataclass
class RecvWR:
    """Receive work request (``pyverbs.wr.RecvWR``)."""

    wr_id: int = 0
    num_sge: int = 0
    sg: list[SGE] | None = None
    next_wr: RecvWR | None = None


@dataclass
class QPCap:
    """Queue sizes asked for at QP creation (``pyverbs.qp.QPCap``)."""

    max_send_wr: int = 1
    max_recv_wr: int = 10
    max_send_sge: int = 1
    max_recv_sge: int = 1
    max_inline_data: int = 0


@dataclass
class QPInitAttr:
    """QP creation attributes (``pyverbs.qp.QPInitAttr``)."""

    qp_type: int = IBV_QPT_RC
    qp_context: Any = None
    scq: Any = None
    rcq: Any = None
    srq: Any = None
    cap: QPCap = field(default_factory=QPCap)
    sq_sig_all: int = 0


@dataclass
class GlobalRoute:
    """GRH routing of an address handle (``pyverbs.addr.GlobalRoute``)."""

    dgid: Any = None
    flow_label: int = 0
    sgid_index: int = 0
    hop_limit: int = 1
    traffic_class: int = 0


@dataclass
class AHAttr:
    """Address handle attributes (``pyverbs.addr.AHAttr``); the emulator routes by ``dlid``."""

    port_num: int = 1
    is_global: int = 0
    gr: GlobalRoute | None = None
    dlid: int = 0
    sl: int = 0
    src_path_bits: int = 0
    static_rate: int = 0


@dataclass
class QPAttr:
    """QP modify attributes (``pyverbs.qp.QPAttr``); defaults follow rdma-core's RC tests
    (``tests/base.py``: MTU 1024, min_rnr_timer 12, timeout 14, retry_cnt 7, rnr_retry 7)."""

    qp_state: int = IBV_QPS_INIT
    cur_qp_state: int = IBV_QPS_RESET
    path_mtu: int = IBV_MTU_1024
    qp_access_flags: int = 0
    pkey_index: int = 0
    port_num: int = 1
    qkey: int = 0
    ah_attr: AHAttr | None = None
    dest_qp_num: int = 0
    rq_psn: int = 0
    sq_psn: int = 0
    max_rd_atomic: int = 1
    max_dest_rd_atomic: int = 1
    min_rnr_timer: int = 12
    timeout: int = 14
    retry_cnt: int = 7
    rnr_retry: int = 7


@dataclass
class PortAttr:
    """Port attributes from ``Context.query_port`` (the fields RC setup needs)."""

    state: int
    lid: int
    active_mtu: int
    max_mtu: int
    gid_tbl_len: int = 1


@dataclass
class WC:
    """One work completion (``pyverbs.cq.WC``)."""

    wr_id: int = 0
    status: int = 0
    opcode: int = 0
    vendor_err: int = 0
    byte_len: int = 0
    qp_num: int = 0
    src_qp: int = 0
    imm_data: int = 0
    wc_flags: int = 0

    def __str__(self) -> str:
        return (f"WC(wr_id={self.wr_id}, status={wc_status_str(self.status)}, "
                f"opcode={self.opcode}, byte_len={self.byte_len}, qp_num={self.qp_num})")
