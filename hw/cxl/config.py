"""Configuration of the CXL pod model: geometry, host caches and timing, with sourced defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from labrig.errors import ConfigError
from labrig.hw.cxl.regs import CAPACITY_UNIT_BYTES, LINE_BYTES

__all__ = ["CxlPodConfig", "CxlTiming", "EVICTION_POLICIES"]

#: ``never``: a line stays cached until flushed (maximal staleness, the adversarial default for
#: tests); ``random``: when full, evict a random batch of lines (varies write-back timing).
EVICTION_POLICIES = ("never", "random")


@dataclass(frozen=True)
class CxlTiming:
    """Per-access costs in virtual ns.  All sweepable; the sources name where defaults come from.

    Attributes
    ----------
    local_latency_ns : int
        Idle load-to-use latency of local DRAM.  ~100 ns: "sub-100 nanosecond" DDR round trip
        (nextplatform.com, 2022-12-05, "Just how bad is CXL memory latency").
    cxl_latency_ns : int
        Same for CXL memory.  220 ns = 2.2x local: CXL-DMSim measures CXL-ASIC at 2.18x local
        DDR latency (arXiv 2411.02282); Pond reports +70-90 ns, "essentially doubling".
    local_bw_bytes_per_ns : float
        Streaming bandwidth from one host to local DRAM, 38.4 GB/s (one DDR5-4800 channel).
    cxl_bw_ratio : float
        CXL bandwidth / local bandwidth, 0.82 (CXL-DMSim: 82-83 % of local DDR for an ASIC).
    hit_ns : int
        A hit in the host's cache (LLC-class latency; an assumption, not a quoted figure).
    flush_issue_ns : int
        Issuing one clflush/clflushopt/clwb (the write-back itself is charged at the fence).
    fence_ns : int
        An sfence/mfence with nothing outstanding; with outstanding write-backs the fence also
        waits one memory latency plus their transfer time.
    atomic_ns : int
        Extra cost of a coherent 8-byte atomic over a plain CXL load (device-side RMW).
    mailbox_ns : int
        Mailbox command execution time (doorbell set to doorbell clear).
    """

    local_latency_ns: int = 100
    cxl_latency_ns: int = 220
    local_bw_bytes_per_ns: float = 38.4
    cxl_bw_ratio: float = 0.82
    hit_ns: int = 15
    flush_issue_ns: int = 5
    fence_ns: int = 10
    atomic_ns: int = 30
    mailbox_ns: int = 2_000

    def __post_init__(self) -> None:
        for name in ("local_latency_ns", "cxl_latency_ns", "hit_ns", "flush_issue_ns",
                     "fence_ns", "atomic_ns", "mailbox_ns"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ConfigError("CxlTiming", name, v, "must be an int >= 0")
        if not self.local_bw_bytes_per_ns > 0:
            raise ConfigError("CxlTiming", "local_bw_bytes_per_ns", self.local_bw_bytes_per_ns,
                              "must be > 0")
        if not 0 < self.cxl_bw_ratio <= 4:
            raise ConfigError("CxlTiming", "cxl_bw_ratio", self.cxl_bw_ratio, "must be in (0, 4]")

    @property
    def cxl_bw_bytes_per_ns(self) -> float:
        """CXL streaming bandwidth in bytes per ns (= GB/s)."""
        return self.local_bw_bytes_per_ns * self.cxl_bw_ratio


@dataclass(frozen=True)
class CxlPodConfig:
    """A pod: ``hosts`` hosts on one multi-headed Type-3 device.

    Attributes
    ----------
    hosts : int
        Number of hosts (heads), 1..16; Pond pools across 8-16 sockets, Tigon runs 8.
    capacity_bytes : int
        Device capacity, a multiple of 256 MiB (the Identify unit).  Backing memory is
        allocated lazily, so untouched capacity costs nothing.
    coherent_bytes : int
        Size of the hardware-coherent window at DPA 0 (a multiple of 64 B, < capacity).  Tigon
        sweeps 10-200 MB; the default is small, as the snoop-filter limit makes it.
    local_dram_bytes : int
        Each host's private DRAM, mapped at host physical address 0 of its load/store port.
    cache_lines : int
        Capacity of each host's write-back cache, in 64-B lines (per backing: local / CXL).
    eviction : str
        One of :data:`EVICTION_POLICIES`.
    timing : CxlTiming
        Access costs.
    """

    hosts: int = 8
    capacity_bytes: int = CAPACITY_UNIT_BYTES
    coherent_bytes: int = 4 << 20
    local_dram_bytes: int = 64 << 20
    cache_lines: int = (32 << 20) // LINE_BYTES
    eviction: str = "random"
    timing: CxlTiming = field(default_factory=CxlTiming)

    def __post_init__(self) -> None:
        if not 1 <= self.hosts <= 16:
            raise ConfigError("CxlPodConfig", "hosts", self.hosts, "must be in 1..16")
        if self.capacity_bytes <= 0 or self.capacity_bytes % CAPACITY_UNIT_BYTES:
            raise ConfigError("CxlPodConfig", "capacity_bytes", self.capacity_bytes,
                              "must be a positive multiple of 256 MiB")
        if (self.coherent_bytes < LINE_BYTES or self.coherent_bytes % LINE_BYTES
                or self.coherent_bytes >= self.capacity_bytes):
            raise ConfigError("CxlPodConfig", "coherent_bytes", self.coherent_bytes,
                              "must be a multiple of 64 B, >= 64 and < capacity_bytes")
        if self.local_dram_bytes < LINE_BYTES or self.local_dram_bytes % LINE_BYTES:
            raise ConfigError("CxlPodConfig", "local_dram_bytes", self.local_dram_bytes,
                              "must be a multiple of 64 B, >= 64")
        if self.cache_lines < 1:
            raise ConfigError("CxlPodConfig", "cache_lines", self.cache_lines, "must be >= 1")
        if self.eviction not in EVICTION_POLICIES:
            raise ConfigError("CxlPodConfig", "eviction", self.eviction,
                              f"must be one of {EVICTION_POLICIES}")
