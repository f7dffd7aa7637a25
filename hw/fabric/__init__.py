"""Multi-NIC GPU-server fabric (issue #8): topology, max-min fair flow network, GPUs.

- :mod:`~labrig.hw.fabric.topology`: nodes and directed links with bandwidth and latency,
  deterministic routes (:class:`Topology`, :class:`TopologyBuilder`).
- :mod:`~labrig.hw.fabric.presets`: DGX-like servers on rail-optimized networks, sources named.
- :mod:`~labrig.hw.fabric.flows`: :class:`FlowNetwork`, flow-level max-min fair sharing in
  virtual time, link failures.
- :mod:`~labrig.hw.fabric.congestion`: :class:`QueueNetwork`, the same interface with per-link
  queues, ECN marking, PFC pause and DCQCN (ns-3 parameter names, :class:`QueueConfig`).
- :mod:`~labrig.hw.fabric.gpu`: :class:`Gpu` with HBM that NICs reach by bus address
  (GPUDirect RDMA), roofline compute, copies over NVLink/PCIe.
"""

from labrig.hw.fabric.congestion import QueueConfig, QueueNetwork
from labrig.hw.fabric.flows import FabricModel, Flow, FlowNetwork, FlowState
from labrig.hw.fabric.gpu import (A100_SXM4_80GB, GPU_SPECS, H100_SXM5_80GB, Gpu, GpuOp,
                                  GpuSpec, GpuTiming, locate, make_gpus)
from labrig.hw.fabric.presets import NETWORKS, HopLatencies, dgx_a100, dgx_h100, dgx_like
from labrig.hw.fabric.topology import Link, Node, NodeKind, Topology, TopologyBuilder, link_name

__all__ = [
    "A100_SXM4_80GB", "GPU_SPECS", "H100_SXM5_80GB", "NETWORKS", "FabricModel", "Flow",
    "FlowNetwork", "QueueConfig", "QueueNetwork",
    "FlowState", "Gpu", "GpuOp", "GpuSpec", "GpuTiming", "HopLatencies", "Link", "Node",
    "NodeKind", "Topology", "TopologyBuilder", "dgx_a100", "dgx_h100", "dgx_like", "link_name",
    "locate", "make_gpus",
]
