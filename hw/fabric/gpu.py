"""GPU model: device memory (HBM) that NICs reach by bus address, roofline compute, copies.

HBM is allocated from the platform's host memory space (:class:`labrig.hw.HostMemory`), so a
GPU buffer has a bus address like any DMA buffer and a NIC model reads and writes it with the
same DMA calls it uses for host memory -- GPUDirect RDMA, where the NIC targets GPU memory
through a PCIe BAR (NVIDIA, "GPUDirect RDMA" developer documentation).  :func:`locate` tells a
device which GPU (topology node) owns an address, so it can route the DMA's bytes over the
right links of the :class:`~labrig.hw.fabric.flows.FlowNetwork`; an address no GPU owns is
host memory of the accessing device's server (node ``s<k>.cpu``).

Timing:

- :meth:`Gpu.copy` moves bytes between HBM and host memory or another GPU of the same server
  as a flow over NVLink/PCIe (the copy engines), sharing links max-min fairly with NIC traffic;
  a copy inside one GPU's HBM reads and writes HBM, ``2 * nbytes / hbm_Bps``.
- :meth:`Gpu.compute` charges a kernel its roofline time, ``max(flops / peak, bytes / hbm)``
  (Williams, Waterman, Patterson, "Roofline", CACM 2009), in order on one stream.

Not modelled: HBM bandwidth contention between kernels, copies and NIC DMA; multiple streams.
"""

from __future__ import annotations

import bisect
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labrig.errors import ConfigError, UsageError
from labrig.hw._memory import DmaBuffer
from labrig.hw.fabric.flows import Flow, FlowNetwork
from labrig.hw.fabric.topology import NodeKind

if TYPE_CHECKING:
    from labrig.hw._platform import Platform

__all__ = ["A100_SXM4_80GB", "GPU_SPECS", "H100_SXM5_80GB", "Gpu", "GpuOp", "GpuSpec",
           "GpuTiming", "locate", "make_gpus"]

#: Alignment of GPU allocations: 64 KiB, the GPU page size GPUDirect RDMA pins
#: (NVIDIA GPUDirect RDMA documentation, "GPU page size").
GPU_PAGE_BYTES = 64 << 10


@dataclass(frozen=True)
class GpuSpec:
    """Datasheet figures of one GPU model (rates per direction, dense math, no sparsity).

    Attributes
    ----------
    name : str
    hbm_bytes : int
    hbm_Bps : float
        Peak HBM bandwidth, bytes/s.
    flops : tuple of (dtype, FLOP/s)
        Peak dense throughput per data type (tensor cores where the datasheet gives them).
    nvlink_Bps : float
        NVLink bandwidth of one GPU in one direction (half the datasheet's bidirectional sum).
    pcie_Bps : float
        PCIe bandwidth in one direction (half the datasheet's bidirectional figure).
    source : str
    """

    name: str
    hbm_bytes: int
    hbm_Bps: float
    flops: tuple[tuple[str, float], ...]
    nvlink_Bps: float
    pcie_Bps: float
    source: str

    def peak_flops(self, dtype: str) -> float:
        """Peak FLOP/s for ``dtype`` (UsageError naming the supported types otherwise)."""
        for name, v in self.flops:
            if name == dtype:
                return v
        known = ", ".join(n for n, _ in self.flops)
        raise UsageError(f"{self.name}: dtype {dtype!r} not supported (known: {known})")


#: NVIDIA A100 Tensor Core GPU datasheet (2021, A100 80GB SXM column): FP64 tensor 19.5 TF,
#: FP32 19.5 TF, TF32 156 TF, BF16/FP16 312 TF, INT8 624 TOPS; HBM2e 80 GB at 2,039 GB/s;
#: NVLink 600 GB/s; PCIe Gen4 64 GB/s (both directions).
A100_SXM4_80GB = GpuSpec(
    name="A100-SXM4-80GB", hbm_bytes=80 << 30, hbm_Bps=2039e9,
    flops=(("fp64", 19.5e12), ("fp32", 19.5e12), ("tf32", 156e12), ("bf16", 312e12),
           ("fp16", 312e12), ("int8", 624e12)),
    nvlink_Bps=300e9, pcie_Bps=32e9,
    source="NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM")

#: NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column; the datasheet's tensor figures are
#: with sparsity, halved here for dense): FP64 tensor 67 TF, FP32 67 TF, TF32 494.5 TF,
#: BF16/FP16 989.5 TF, FP8/INT8 1,979 T; HBM3 80 GB at 3.35 TB/s; NVLink 900 GB/s; PCIe Gen5
#: 128 GB/s (both directions).
H100_SXM5_80GB = GpuSpec(
    name="H100-SXM5-80GB", hbm_bytes=80 << 30, hbm_Bps=3.35e12,
    flops=(("fp64", 67e12), ("fp32", 67e12), ("tf32", 494.5e12), ("bf16", 989.5e12),
           ("fp16", 989.5e12), ("fp8", 1979e12), ("int8", 1979e12)),
    nvlink_Bps=450e9, pcie_Bps=64e9,
    source="NVIDIA H100 Tensor Core GPU datasheet, H100 SXM")

#: Known specs by name (topology nodes carry the name in ``Node.model``).
GPU_SPECS = {s.name: s for s in (A100_SXM4_80GB, H100_SXM5_80GB)}


@dataclass(frozen=True)
class GpuTiming:
    """Knobs between datasheet peaks and achieved rates.

    The defaults are the datasheet ceilings (efficiency 1, no launch cost); lower them to model
    measured fractions of peak for a workload.

    Attributes
    ----------
    compute_efficiency : float
        Fraction of peak FLOP/s a kernel reaches, in (0, 1].
    hbm_efficiency : float
        Fraction of peak HBM bandwidth a kernel or local copy reaches, in (0, 1].
    kernel_launch_ns : int
        Fixed cost added to every :meth:`Gpu.compute`.
    """

    compute_efficiency: float = 1.0
    hbm_efficiency: float = 1.0
    kernel_launch_ns: int = 0

    def __post_init__(self) -> None:
        for name in ("compute_efficiency", "hbm_efficiency"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ConfigError("GpuTiming", name, v, "must be in (0, 1]")
        v = self.kernel_launch_ns
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError("GpuTiming", "kernel_launch_ns", v, "must be an int >= 0")


class _HbmMap:
    """Bus-address ranges of every live GPU allocation on one platform."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.entries: list[tuple[DmaBuffer, str]] = []

    def add(self, buf: DmaBuffer, node: str) -> None:
        i = bisect.bisect_left(self.starts, buf.addr)
        self.starts.insert(i, buf.addr)
        self.entries.insert(i, (buf, node))

    def remove(self, buf: DmaBuffer) -> None:
        i = bisect.bisect_left(self.starts, buf.addr)
        if i < len(self.entries) and self.entries[i][0] is buf:
            del self.starts[i]
            del self.entries[i]

    def find(self, addr: int, nbytes: int) -> str | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0:
            return None
        buf, node = self.entries[i]
        if buf.freed:
            self.remove(buf)
            return None
        if addr + nbytes <= buf.end:
            return node
        return None


_HBM: weakref.WeakKeyDictionary[Platform, _HbmMap] = weakref.WeakKeyDictionary()


def _hbm_map(plat: Platform) -> _HbmMap:
    m = _HBM.get(plat)
    if m is None:
        m = _HBM[plat] = _HbmMap()
    return m


def locate(plat: Platform, addr: int, nbytes: int = 1) -> str | None:
    """The GPU node (e.g. ``"s0.gpu3"``) whose HBM holds ``[addr, addr + nbytes)``, or
    ``None`` when no GPU does (host memory, or not allocated at all).  Never raises: devices
    call it with addresses a driver wrote."""
    m = _HBM.get(plat)
    if m is None or nbytes < 0:
        return None
    return m.find(int(addr), int(nbytes))


@dataclass
class GpuOp:
    """Handle of a :meth:`Gpu.copy` or :meth:`Gpu.compute`.

    Attributes
    ----------
    kind : str
        ``"copy"`` or ``"compute"``.
    posted_ns, done_ns : int, int or None
    flow : Flow or None
        The network flow of a copy between two nodes.
    fail_reason : str or None
    """

    kind: str
    posted_ns: int
    done_ns: int | None = None
    flow: Flow | None = None
    fail_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.done_ns is not None or self.fail_reason is not None


class Gpu:
    """One GPU at topology node ``node`` (e.g. ``"s0.gpu3"``).

    Parameters
    ----------
    plat : Platform
    net : FlowNetwork
        Carries copies over the topology's NVLink and PCIe links.
    node : str
        A node of kind ``gpu`` in ``net.topology``.
    spec : GpuSpec, optional
        Default: the spec named by the node's ``model``, else :data:`A100_SXM4_80GB`.
    timing : GpuTiming, optional

    Examples
    --------
    >>> from labrig.hw import Platform
    >>> from labrig.hw.fabric.presets import dgx_like
    >>> plat = Platform(seed=0)
    >>> net = FlowNetwork(plat, dgx_like(n_servers=1))
    >>> g = Gpu(plat, net, "s0.gpu0")
    >>> buf = g.alloc(1 << 20)
    >>> locate(plat, buf.addr)
    's0.gpu0'
    >>> g.compute_time_ns(312e12, 0, "fp16")        # one second of peak FP16 on an A100
    1000000000
    """

    def __init__(self, plat: Platform, net: FlowNetwork, node: str,
                 spec: GpuSpec | None = None, timing: GpuTiming | None = None) -> None:
        n = net.topology.node(node)
        if n.kind is not NodeKind.GPU:
            raise UsageError(f"Gpu node {node!r}: is a {n.kind.value}, not a gpu")
        if n.server is None:
            raise UsageError(f"Gpu node {node!r}: belongs to no server")
        self.plat = plat
        self.net = net
        self.node = node
        self.server = n.server
        self.host_node = f"s{n.server}.cpu"
        self.spec = spec or GPU_SPECS.get(n.model, A100_SXM4_80GB)
        self.timing = timing or GpuTiming()
        self.allocated_bytes = 0
        self._buffers: list[DmaBuffer] = []
        self._stream_free_ns = 0

    # -- memory -----------------------------------------------------------------------------
    def alloc(self, nbytes: int, align: int = GPU_PAGE_BYTES) -> DmaBuffer:
        """Allocate zeroed HBM (like ``cudaMalloc``); its ``addr`` is a bus address NICs can
        DMA to (GPUDirect RDMA) and ``view`` lets tests and runtimes fill it.

        Raises
        ------
        UsageError
            Bad size or alignment, or the GPU's HBM capacity would be exceeded.
        """
        self._reap()
        nbytes = int(nbytes)
        if nbytes > self.spec.hbm_bytes - self.allocated_bytes:
            raise UsageError(f"{self.node}: out of memory allocating {nbytes} bytes "
                             f"({self.allocated_bytes} of {self.spec.hbm_bytes} in use)")
        buf = self.plat.memory.alloc(nbytes, align)
        self.allocated_bytes += buf.nbytes
        self._buffers.append(buf)
        _hbm_map(self.plat).add(buf, self.node)
        return buf

    def free(self, buf: DmaBuffer) -> None:
        """Release a buffer from :meth:`alloc` (idempotent)."""
        if buf in self._buffers:
            self._buffers.remove(buf)
            self.allocated_bytes -= buf.nbytes
            _hbm_map(self.plat).remove(buf)
        buf.free()

    def _reap(self) -> None:
        """Account buffers the caller freed with ``buf.free()`` directly."""
        for buf in [b for b in self._buffers if b.freed]:
            self.free(buf)

    def owns(self, addr: int, nbytes: int = 1) -> bool:
        """Whether ``[addr, addr + nbytes)`` lies in one of this GPU's buffers."""
        return locate(self.plat, addr, nbytes) == self.node

    # -- copies -----------------------------------------------------------------------------
    def copy(self, src_addr: int, dst_addr: int, nbytes: int, on_done: Callable[[int], None],
             *, on_fail: Callable[[str], None] | None = None) -> GpuOp:
        """Copy ``nbytes`` from ``src_addr`` to ``dst_addr`` (like ``cudaMemcpyAsync``).

        Each address is in HBM of a GPU of this GPU's server or in host memory.  Between two
        different nodes the bytes travel as a flow over the route the topology picks (NVLink
        between GPUs, PCIe to host memory); the destination changes when the last byte
        arrives, then ``on_done(now_ns)`` runs.  A link failure on the way calls
        ``on_fail(reason)`` and leaves the destination unchanged.

        Raises
        ------
        UsageError
            ``nbytes`` < 1, a range not inside one allocated buffer, an address on another
            server, or a host-to-host copy (not a GPU operation).
        """
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 1:
            raise UsageError(f"copy nbytes={nbytes!r}: must be an int >= 1")
        mem = self.plat.memory
        for what, addr in (("src", src_addr), ("dst", dst_addr)):
            if mem.find(addr, nbytes) is None:
                raise UsageError(f"copy {what}_addr={addr:#x} nbytes={nbytes}: not inside one "
                                 "allocated buffer")
        src = locate(self.plat, src_addr, nbytes) or self.host_node
        dst = locate(self.plat, dst_addr, nbytes) or self.host_node
        topo = self.net.topology
        for what, node in (("src", src), ("dst", dst)):
            if topo.node(node).server != self.server:
                raise UsageError(f"copy {what} is on {node}, not on server {self.server} of "
                                 f"{self.node}: inter-server transfers go through a NIC")
        if src == dst == self.host_node:
            raise UsageError("copy host memory to host memory: not a GPU operation")
        op = GpuOp("copy", self.plat.now_ns)

        def finish(now: int) -> None:
            view_src = mem.dma_view(src_addr, nbytes)
            view_dst = mem.dma_view(dst_addr, nbytes)
            if view_src is None or view_dst is None:       # freed while the copy ran
                fail("a buffer was freed during the copy")
                return
            view_dst[:] = view_src
            op.done_ns = now
            on_done(now)

        def fail(reason: str) -> None:
            op.fail_reason = reason
            if on_fail is not None:
                on_fail(reason)

        if src == dst:                 # inside one GPU's HBM: read + write at HBM bandwidth
            hbm = self.spec.hbm_Bps * self.timing.hbm_efficiency
            t = math.ceil(2 * nbytes / hbm * 1e9)
            self.plat.schedule(t, lambda: finish(self.plat.now_ns))
        else:
            op.flow = self.net.transfer(src, dst, nbytes, finish, on_fail=fail)
        return op

    # -- compute ----------------------------------------------------------------------------
    def compute_time_ns(self, flops: float, nbytes: float, dtype: str = "fp16") -> int:
        """Roofline time of a kernel doing ``flops`` operations on ``nbytes`` of HBM traffic:
        ``max(flops / peak, nbytes / hbm_bandwidth)`` plus the launch cost, ceil to ns."""
        if not (flops >= 0 and nbytes >= 0) or math.isinf(flops) or math.isinf(nbytes):
            raise UsageError(f"compute flops={flops!r} nbytes={nbytes!r}: must be finite >= 0")
        peak = self.spec.peak_flops(dtype) * self.timing.compute_efficiency
        hbm = self.spec.hbm_Bps * self.timing.hbm_efficiency
        t_s = max(flops / peak, nbytes / hbm)
        return math.ceil(t_s * 1e9) + self.timing.kernel_launch_ns

    def compute(self, flops: float, nbytes: float, on_done: Callable[[int], None], *,
                dtype: str = "fp16") -> GpuOp:
        """Run a kernel of roofline cost (see :meth:`compute_time_ns`) after the kernels
        already queued on this GPU's stream; ``on_done(now_ns)`` when it finishes."""
        t = self.compute_time_ns(flops, nbytes, dtype)
        now = self.plat.now_ns
        start = max(now, self._stream_free_ns)
        end = start + t
        self._stream_free_ns = end
        op = GpuOp("compute", now)

        def finish() -> None:
            op.done_ns = self.plat.now_ns
            on_done(op.done_ns)

        self.plat.schedule_at(end, finish)
        return op

    @property
    def busy_until_ns(self) -> int:
        """When the kernels queued so far finish (the current time if idle)."""
        return max(self.plat.now_ns, self._stream_free_ns)

    def __repr__(self) -> str:
        return f"Gpu({self.node!r}, {self.spec.name})"


def make_gpus(plat: Platform, net: FlowNetwork, timing: GpuTiming | None = None
              ) -> dict[str, Gpu]:
    """A :class:`Gpu` for every GPU node of ``net.topology``, keyed by node name, each with the
    spec its node's ``model`` names."""
    return {node: Gpu(plat, net, node, timing=timing)
            for node in net.topology.nodes_of(NodeKind.GPU)}
