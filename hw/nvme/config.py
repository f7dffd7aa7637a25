"""Configuration of the NVMe SSD model: controller limits, namespaces and NAND timing.

Every config is a frozen dataclass validated at construction (after QEMU's
``nvme_check_params`` / ``nvme_ns_check_constraints``): a bad value raises
:class:`labrig.errors.ConfigError` naming owner, field, value and the allowed range.  Reprs are
eval-able, so a shrunk hypothesis failure pastes into a regression test.

The default drive is the Micron 9200 (shared/research/nvme_pipeann.md section 3.5): the NAND
geometry and latencies in :class:`NandTiming` are chosen so that the model's QD1 4 KiB random
read latency and its saturation IOPS land on the datasheet figures in :data:`MICRON_9200`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labrig.errors import ConfigError

__all__ = ["MICRON_9200", "NamespaceConfig", "NandTiming", "NvmeConfig", "PublishedDrive"]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

#: LBA data sizes the model formats namespaces with (NVM Command Set spec 1.0, LBA Format).
LBA_SIZES = (512, 4096)
#: Default namespace: 1 TiB (sparse, so it costs nothing until written) of 4 KiB blocks -- a
#: realistic small datacenter drive that still fits any experiment's index files.
DEFAULT_CAPACITY_BYTES = 1 * TIB


def _check_int(owner: str, name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(owner, name, value, f"must be in {lo}..{hi}")


@dataclass(frozen=True)
class PublishedDrive:
    """Datasheet figures of a real drive the model's defaults are fitted to.

    Attributes
    ----------
    name : str
        Product name.
    source : str
        Where the figures come from (URL / citation).
    qd1_read_latency_us : float
        Typical 4 KiB random read latency at queue depth 1, microseconds.
    rand_read_iops : int
        Peak 4 KiB random read IOPS.
    qd1_write_latency_us : float
        Typical 4 KiB write latency at queue depth 1, microseconds.
    """

    name: str
    source: str
    qd1_read_latency_us: float
    rand_read_iops: int
    qd1_write_latency_us: float


#: Micron 9200 NVMe SSD datasheet (shared/research/nvme_pipeann.md section 3.5): "random 4 KB
#: read up to 840K IOPS", "Latency ... typical (QD = 1) READ: 92-150us, WRITE: 21us"; PCIe 3.0 x4.
MICRON_9200 = PublishedDrive(
    name="Micron 9200",
    source="Micron 9200 NVMe SSD product brief/datasheet, "
           "https://vdocument.in/9200-nvme-ssds-2-steady-state-as-defined-by-snia-solid-state-"
           "storage-performance.html",
    qd1_read_latency_us=92.0,
    rand_read_iops=840_000,
    qd1_write_latency_us=21.0,
)


@dataclass(frozen=True)
class NandTiming:
    """NAND back end and link timing, NVMeVirt/FEMU style ("compute at fetch, then hold").

    Defaults fit the Micron 9200 (:data:`MICRON_9200`); derivation in the Notes.

    Attributes
    ----------
    channels : int
        NAND channels, 16 (NVMeVirt's 970 PRO preset and MQSim use 8 for client drives; a
        datacenter controller has more).
    luns_per_channel : int
        LUNs (dies) per channel, each with one busy-until time (FEMU BBSSD granularity).
        16 x 8 = 128 LUNs, about the die count of a 3.84 TB drive of 256 Gb TLC dies.
    page_bytes : int
        Mapping unit: an LBA range is split into pages of this size, each hashed to one LUN.
    read_ns : int
        NAND read of one page (tR), 70 us (derived so that QD1 = 92 us, see Notes; FEMU's flat
        default is 40 us, MQSim's 75 us).
    program_ns : int
        NAND program of one page as seen per 4 KiB (multi-plane TLC program amortised),
        474 us = 128 LUNs / 270K IOPS, the order of the 9200's steady-state random write rate
        (an estimate; the datasheet figure varies by capacity).
    fw_read_ns : int
        Controller firmware time per read command, 16 us (NVMeVirt 970 PRO preset:
        FW_4KB_READ_LATENCY 21.5 us; we take 16 us to meet the 92 us datasheet latency).
    fw_write_ns : int
        Firmware time per write command until the data sits in the write cache, 19.8 us, so a
        QD1 4 KiB write completes in 21 us with the PCIe transfer (datasheet WRITE 21 us).
    fw_admin_ns : int
        Execution time of an admin command (an assumption; admin latency is not published).
    channel_mb_s : int
        NAND channel bandwidth, 800 MB/s (NVMeVirt preset "NAND channel 800 MB/s").
    pcie_mb_s : int
        Host link bandwidth, 3500 MB/s (PCIe 3.0 x4; datasheet sequential read 3.5 GB/s).

    Notes
    -----
    QD1 4 KiB read = fw 16 + tR 70 + channel 4096 B / 800 MB/s (5.1) + PCIe 4096 B / 3.5 GB/s
    (1.2) = 92.3 us.  Saturation: each read holds a LUN for tR + channel = 75.1 us; with
    random placement over 128 LUNs, 128 commands in flight keep enough LUNs busy that the PCIe
    link (4096 B / 3.5 GB/s, 855K IOPS) becomes the limit: measured 842K IOPS at QD128 (research
    notes 3.5 suggested 64 LUNs, which saturates at only ~615K at QD128 because of collisions).
    The program time is charged per 4 KiB page on the LUN, so writes slow reads that share it.
    """

    channels: int = 16
    luns_per_channel: int = 8
    page_bytes: int = 4096
    read_ns: int = 70_000
    program_ns: int = 474_000
    fw_read_ns: int = 16_000
    fw_write_ns: int = 19_800
    fw_admin_ns: int = 5_000
    channel_mb_s: int = 800
    pcie_mb_s: int = 3_500

    def __post_init__(self) -> None:
        _check_int("NandTiming", "channels", self.channels, 1, 1024)
        _check_int("NandTiming", "luns_per_channel", self.luns_per_channel, 1, 1024)
        if self.page_bytes not in (4096, 8192, 16384):
            raise ConfigError("NandTiming", "page_bytes", self.page_bytes,
                              "must be one of 4096, 8192, 16384")
        for name in ("read_ns", "program_ns", "fw_read_ns", "fw_write_ns", "fw_admin_ns"):
            _check_int("NandTiming", name, getattr(self, name), 0, 10**12)
        for name in ("channel_mb_s", "pcie_mb_s"):
            _check_int("NandTiming", name, getattr(self, name), 1, 10**7)

    @property
    def luns(self) -> int:
        """Total number of LUNs."""
        return self.channels * self.luns_per_channel


@dataclass(frozen=True)
class NamespaceConfig:
    """One namespace (NVM Command Set spec 1.0 section 4, "Identify Namespace").

    Attributes
    ----------
    capacity_bytes : int
        Size; a whole number of LBAs.  Default 1 TiB, sparse: memory is used only for blocks
        written.
    lba_bytes : int
        LBA data size, 512 or 4096.
    backing_file : str or None
        Keep the data in this file (created sparse if missing) instead of in memory.
    """

    capacity_bytes: int = DEFAULT_CAPACITY_BYTES
    lba_bytes: int = 4096
    backing_file: str | None = None

    def __post_init__(self) -> None:
        if self.lba_bytes not in LBA_SIZES:
            raise ConfigError("NamespaceConfig", "lba_bytes", self.lba_bytes,
                              "must be one of 512, 4096")
        _check_int("NamespaceConfig", "capacity_bytes", self.capacity_bytes,
                   self.lba_bytes, 1 << 60)
        if self.capacity_bytes % self.lba_bytes:
            raise ConfigError("NamespaceConfig", "capacity_bytes", self.capacity_bytes,
                              f"must be a multiple of lba_bytes={self.lba_bytes}")
        if self.backing_file is not None and not isinstance(self.backing_file, str):
            raise ConfigError("NamespaceConfig", "backing_file", self.backing_file,
                              "must be a path string or None")

    @property
    def nlbas(self) -> int:
        """Namespace size in logical blocks (Identify Namespace NSZE)."""
        return self.capacity_bytes // self.lba_bytes


@dataclass(frozen=True)
class NvmeConfig:
    """An NVMe controller (NVM Express Base Specification 2.0).

    Attributes
    ----------
    namespaces : tuple of NamespaceConfig
        Active namespaces, NSIDs 1..len.
    max_queue_entries : int
        Largest queue, CAP.MQES + 1 (2..65536).
    max_io_queues : int
        I/O SQ/CQ pairs the controller can allocate (Number of Queues feature); the Micron
        9200 has 128.
    doorbell_stride_log2 : int
        CAP.DSTRD: doorbells are 4 << DSTRD bytes apart.
    mdts_log2 : int
        Maximum Data Transfer Size, 2^n minimum-size pages (Identify MDTS); 0 = no limit.
    mps_min_log2, mps_max_log2 : int
        CAP.MPSMIN / CAP.MPSMAX: host memory page sizes 2^(12+n).
    msix_vectors : int
        Interrupt vectors; Create I/O CQ rejects IV >= this.
    timeout_500ms : int
        CAP.TO, worst-case enable/disable time in 500 ms units.
    enable_delay_ns, disable_delay_ns, shutdown_delay_ns : int
        Virtual time before CSTS reflects CC.EN 0->1, CC.EN 1->0, CC.SHN.
    abort_limit : int
        Concurrent Abort commands (Identify ACL + 1).
    aer_limit : int
        Outstanding Asynchronous Event Requests (Identify AERL + 1).
    error_log_entries : int
        Entries in the Error Information log ring (Identify ELPE + 1).
    write_cache_bytes : int
        Volatile write cache: writes complete once here and stall when it is full.
    wrr_supported : bool
        CAP.AMS bit for weighted round robin with urgent priority class.
    timing : NandTiming
        Back-end timing.
    serial, model, firmware : str
        Identify Controller SN / MN / FR.
    """

    namespaces: tuple[NamespaceConfig, ...] = field(default=(NamespaceConfig(),))
    max_queue_entries: int = 1024
    max_io_queues: int = 128
    doorbell_stride_log2: int = 0
    mdts_log2: int = 5
    mps_min_log2: int = 0
    mps_max_log2: int = 4
    msix_vectors: int = 129
    timeout_500ms: int = 20
    enable_delay_ns: int = 1_000_000
    disable_delay_ns: int = 100_000
    shutdown_delay_ns: int = 1_000_000
    abort_limit: int = 4
    aer_limit: int = 4
    error_log_entries: int = 64
    write_cache_bytes: int = 64 * MIB
    wrr_supported: bool = True
    timing: NandTiming = field(default=NandTiming())
    serial: str = "LABRIG0001"
    model: str = "labrig emulated NVMe, Micron 9200 timing"
    firmware: str = "1.0"

    def __post_init__(self) -> None:
        own = "NvmeConfig"
        if not isinstance(self.namespaces, tuple) or not self.namespaces or not all(
                isinstance(ns, NamespaceConfig) for ns in self.namespaces):
            raise ConfigError(own, "namespaces", self.namespaces,
                              "must be a non-empty tuple of NamespaceConfig")
        if len(self.namespaces) > 1024:
            raise ConfigError(own, "namespaces", len(self.namespaces), "must be in 1..1024")
        _check_int(own, "max_queue_entries", self.max_queue_entries, 2, 65536)
        _check_int(own, "max_io_queues", self.max_io_queues, 1, 65535)
        _check_int(own, "doorbell_stride_log2", self.doorbell_stride_log2, 0, 15)
        _check_int(own, "mdts_log2", self.mdts_log2, 0, 15)
        _check_int(own, "mps_min_log2", self.mps_min_log2, 0, 15)
        _check_int(own, "mps_max_log2", self.mps_max_log2, self.mps_min_log2, 15)
        _check_int(own, "msix_vectors", self.msix_vectors, 1, 2048)
        _check_int(own, "timeout_500ms", self.timeout_500ms, 1, 255)
        for name in ("enable_delay_ns", "disable_delay_ns", "shutdown_delay_ns"):
            _check_int(own, name, getattr(self, name), 0, 10**12)
        if self.enable_delay_ns > self.timeout_500ms * 500_000_000:
            raise ConfigError(own, "enable_delay_ns", self.enable_delay_ns,
                              "must not exceed CAP.TO (timeout_500ms * 500 ms)")
        _check_int(own, "abort_limit", self.abort_limit, 1, 256)
        _check_int(own, "aer_limit", self.aer_limit, 1, 256)
        _check_int(own, "error_log_entries", self.error_log_entries, 1, 256)
        _check_int(own, "write_cache_bytes", self.write_cache_bytes, 4096, 1 << 40)
        if not isinstance(self.wrr_supported, bool):
            raise ConfigError(own, "wrr_supported", self.wrr_supported, "must be a bool")
        if not isinstance(self.timing, NandTiming):
            raise ConfigError(own, "timing", self.timing, "must be a NandTiming")
        for name, limit in (("serial", 20), ("model", 40), ("firmware", 8)):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.isascii() or len(v) > limit:
                raise ConfigError(own, name, v, f"must be ASCII, at most {limit} characters")

    @property
    def mdts_bytes(self) -> int:
        """Largest transfer in bytes, or 0 when unlimited."""
        return (4096 << self.mps_min_log2) << self.mdts_log2 if self.mdts_log2 else 0
