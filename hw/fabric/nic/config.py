"""Configuration of the RDMA NIC model: limits and timing, with the source of each default.

Timing sources (the defaults model a ConnectX-6 HDR 200 Gb/s adapter on PCIe Gen4 x16):

- NVIDIA ConnectX-6 VPI adapter product brief: 200 Gb/s, "up to 215 million messages per
  second", sub-microsecond latency.  Published ``ib_write_lat`` results for ConnectX-6 HDR
  back-to-back are about 1 us for small messages (perftest; NVIDIA performance reports), which
  the defaults below reproduce: doorbell -> WQE fetch -> wire -> remote DMA ~= 0.8 us one way.
- PCIe DMA read round trips of several hundred ns and posted writes of ~100-200 ns (Neugebauer
  et al., "Understanding PCIe performance for end host networking", SIGCOMM 2018).
- RoCEv2 per-packet headers: Ethernet 14 + IPv4 20 + UDP 8 + BTH 12 + ICRC 4 = 58 bytes
  (IBTA RoCEv2 annex A17); extension headers (RETH 16 B, once per message) are ignored.
- Command (control-path) latency: verbs control calls such as create_qp / reg_mr take tens of
  microseconds on ConnectX firmware; 10 us is an order-of-magnitude assumption.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labrig.errors import ConfigError

__all__ = ["NicConfig", "NicTiming"]


def _check(owner: str, name: str, value: object, lo: float, hi: float, kind: type = int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) \
            or not lo <= value <= hi:
        raise ConfigError(owner, name, value, f"must be in {lo}..{hi}")


@dataclass(frozen=True)
class NicTiming:
    """Per-operation latencies (ns) and rates of the NIC.

    Attributes
    ----------
    wqe_fetch_ns : int
        Doorbell to WQE in the NIC: one PCIe DMA read round trip (SIGCOMM'18, ~300 ns).
    tx_proc_ns : int
        Requester pipeline per WQE before the first byte leaves (100 ns, assumption fitted to
        the ~1 us ``ib_write_lat`` of ConnectX-6).
    rx_proc_ns : int
        Responder pipeline per packet train before placement (100 ns, same fit).
    dma_write_ns : int
        Posted PCIe write of data or a CQE into host memory (150 ns, SIGCOMM'18 order).
    msg_occupancy_ns : int
        Time one WQE occupies the NIC's send engine: 1 / 215 Mmsg/s ~= 5 ns (product brief).
    pcie_Bps : float
        DMA bandwidth between the NIC and memory, bytes/s (PCIe Gen4 x16, ~24 GB/s usable).
    header_bytes : int
        Wire overhead per MTU packet (RoCEv2, 58 B).
    cmd_ns : int
        Firmware command execution time (10 us, assumption).
    init_ns : int
        Reset to ``INITIALIZING`` clear (1 ms; mlx5 drivers wait up to seconds, FW_INIT_TIMEOUT).
    """

    wqe_fetch_ns: int = 300
    tx_proc_ns: int = 100
    rx_proc_ns: int = 100
    dma_write_ns: int = 150
    msg_occupancy_ns: int = 5
    pcie_Bps: float = 24e9
    header_bytes: int = 58
    cmd_ns: int = 10_000
    init_ns: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("wqe_fetch_ns", "tx_proc_ns", "rx_proc_ns", "dma_write_ns",
                     "msg_occupancy_ns", "header_bytes", "cmd_ns", "init_ns"):
            _check("NicTiming", name, getattr(self, name), 0, 10**12)
        _check("NicTiming", "pcie_Bps", self.pcie_Bps, 1.0, 1e15, float)


@dataclass(frozen=True)
class NicConfig:
    """Limits and timing of one single-port NIC.

    Attributes
    ----------
    node : str
        The port's name on the wire (a topology node such as ``"s0.nic2"``, or a cable port).
    lid : int or None
        Port LID; ``None`` lets the wire's subnet assign the next free one (as an IB subnet
        manager does).
    log_max_qp, log_max_cq, log_max_mkey, log_max_pd : int
        Table sizes (log2).  ConnectX-6 reports 2^24 QPs; the defaults are smaller, which
        costs nothing and keeps handles short.
    log_max_qp_sz, log_max_cq_sz : int
        Largest work queue / CQ (log2 entries); ConnectX-6: 2^15 WQEs, 2^22 CQEs.
    num_uars : int
        UAR (doorbell) pages in BAR0.
    mtu : int
        Port MTU in bytes (4096, the RoCE/IB maximum).
    timing : NicTiming
    """

    node: str = "nic0"
    lid: int | None = None
    log_max_qp: int = 12
    log_max_cq: int = 12
    log_max_mkey: int = 16
    log_max_pd: int = 10
    log_max_qp_sz: int = 15
    log_max_cq_sz: int = 22
    num_uars: int = 16
    mtu: int = 4096
    timing: NicTiming = field(default_factory=NicTiming)

    def __post_init__(self) -> None:
        if not isinstance(self.node, str) or not self.node:
            raise ConfigError("NicConfig", "node", self.node, "must be a non-empty string")
        if self.lid is not None:
            _check("NicConfig", "lid", self.lid, 1, 0xBFFF)   # unicast LIDs (IB spec 4.1.3)
        for name, hi in (("log_max_qp", 23), ("log_max_cq", 23), ("log_max_mkey", 23),
                         ("log_max_pd", 23), ("log_max_qp_sz", 16), ("log_max_cq_sz", 23)):
            _check("NicConfig", name, getattr(self, name), 1, hi)
        _check("NicConfig", "num_uars", self.num_uars, 1, 256)
        if self.mtu not in (256, 512, 1024, 2048, 4096):
            raise ConfigError("NicConfig", "mtu", self.mtu, "must be 256, 512, 1024, 2048 or 4096")
        if not isinstance(self.timing, NicTiming):
            raise ConfigError("NicConfig", "timing", self.timing, "must be a NicTiming")
