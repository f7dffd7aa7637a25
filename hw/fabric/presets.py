"""Ready-made topologies: DGX-like servers (GPUs, NICs, PCIe switches, NVSwitch) on a
rail-optimized or single-switch network.

Sources for the structure and the default figures:

- NVIDIA DGX A100 System Architecture (technical white paper, 2020) and DGX A100 User Guide:
  8x A100 SXM4 joined by 6 NVSwitches (NVLink 3, 600 GB/s per GPU, both directions together);
  8 single-port ConnectX-6 HDR 200 Gb/s compute NICs; 4 PCIe Gen4 switches, each serving
  2 GPUs and 2 compute NICs (``nvidia-smi topo -m`` on a DGX A100 shows each GPU "PXB" to two
  NICs); 2 AMD EPYC 7742 CPUs.
- NVIDIA DGX H100 User Guide / datasheet: 8x H100 SXM5, 4 NVSwitches (NVLink 4, 900 GB/s per
  GPU), 8 ConnectX-7 400 Gb/s compute NICs, PCIe Gen5; each GPU shares a PCIe switch with one
  NIC ("PIX" in ``nvidia-smi topo -m``).
- NVIDIA DGX SuperPOD reference architecture: compute NIC ``i`` of every server connects to leaf
  (rail) switch ``i``; leaves connect to spines, non-blocking.
- NVIDIA Quantum HDR (QM8700) switch datasheet: 130 ns port-to-port latency.

Modelling simplifications (documented, deliberate): the NVSwitches of a server are one node
``s<k>.nvsw`` whose link to each GPU carries the GPU's full NVLink bandwidth; the two CPU
sockets are one node ``s<k>.cpu`` (root complex + host memory); per-hop latencies of PCIe and
NVLink are order-of-magnitude assumptions (marked below), since the datasheets give none.
"""

from __future__ import annotations

from dataclasses import dataclass

from labrig.errors import ConfigError
from labrig.hw.fabric.gpu import A100_SXM4_80GB, H100_SXM5_80GB, GpuSpec
from labrig.hw.fabric.topology import NodeKind, Topology, TopologyBuilder

__all__ = ["NETWORKS", "HopLatencies", "dgx_a100", "dgx_h100", "dgx_like"]

#: Network shapes :func:`dgx_like` can build.
NETWORKS = ("rail", "single")

#: Bytes per second in one Gb/s of line rate.
BYTES_PER_GBIT = 1e9 / 8


@dataclass(frozen=True)
class HopLatencies:
    """Per-link latencies in ns.

    Attributes
    ----------
    pcie_ns : int
        A PCIe hop through a switch or the root complex.  110 ns: order of the port-to-port
        latency PCIe Gen4/5 switch vendors quote (Broadcom PEX88000 class); an assumption.
    nvlink_ns : int
        A GPU <-> NVSwitch hop.  100 ns, an assumption (no datasheet figure).
    network_ns : int
        NIC <-> switch or switch <-> switch: 130 ns switch port-to-port (Quantum QM8700
        datasheet) plus ~15 ns for 3 m of cable at ~5 ns/m.
    """

    pcie_ns: int = 110
    nvlink_ns: int = 100
    network_ns: int = 145

    def __post_init__(self) -> None:
        for name in ("pcie_ns", "nvlink_ns", "network_ns"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError("HopLatencies", name, v, "must be an int >= 0")


def dgx_like(n_servers: int = 2, gpus: int = 8, nics: int = 8, nic_gbps: float = 200, *,
             gpu: GpuSpec = A100_SXM4_80GB, gpus_per_pcie_switch: int = 2,
             network: str = "rail", spines: int = 1,
             latencies: HopLatencies | None = None, nic_model: str = "ConnectX-6") -> Topology:
    """Servers of ``gpus`` GPUs and ``nics`` NICs on a network of ToR (and spine) switches.

    Per server ``k``: ``s<k>.gpu<i>``, ``s<k>.nic<j>``, ``s<k>.pcie<p>`` (PCIe switches, each
    serving ``gpus_per_pcie_switch`` consecutive GPUs and ``nics / n_switches`` consecutive
    NICs), ``s<k>.cpu`` (uplink of every PCIe switch), ``s<k>.nvsw`` (NVLink to every GPU).
    GPU and PCIe-switch uplinks run at the GPU's PCIe rate; NIC links at the lower of the NIC
    line rate and the PCIe rate on the host side and at the line rate on the network side.

    Parameters
    ----------
    n_servers, gpus, nics : int
        Geometry; ``gpus`` must be a multiple of ``gpus_per_pcie_switch`` and ``nics`` of the
        resulting number of switches.
    nic_gbps : float
        NIC line rate in Gb/s (200 for ConnectX-6 HDR, 400 for ConnectX-7 NDR).
    gpu : GpuSpec
        Supplies the NVLink and PCIe bandwidths (see :mod:`labrig.hw.fabric.gpu`).
    network : {"rail", "single"}
        ``"rail"``: ToR ``tor<j>`` joins NIC ``j`` of every server, ``spines`` spine switches
        join every ToR with non-blocking uplinks.  ``"single"``: one ``tor0`` for all NICs.
    spines : int
        Spine count for ``"rail"`` (0 allowed: cross-rail traffic then has no network path).
    latencies : HopLatencies, optional

    Returns
    -------
    Topology

    Examples
    --------
    >>> topo = dgx_like(n_servers=2)
    >>> topo.path("s0.gpu0", "s0.nic0")
    ('s0.gpu0->s0.pcie0', 's0.pcie0->s0.nic0')
    """
    lat = latencies or HopLatencies()
    for name, v, lo in (("n_servers", n_servers, 1), ("gpus", gpus, 1), ("nics", nics, 1),
                        ("gpus_per_pcie_switch", gpus_per_pcie_switch, 1), ("spines", spines, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError("dgx_like", name, v, f"must be an int >= {lo}")
    if not nic_gbps > 0:
        raise ConfigError("dgx_like", "nic_gbps", nic_gbps, "must be > 0")
    if network not in NETWORKS:
        raise ConfigError("dgx_like", "network", network, f"must be one of {NETWORKS}")
    if gpus % gpus_per_pcie_switch:
        raise ConfigError("dgx_like", "gpus_per_pcie_switch", gpus_per_pcie_switch,
                          f"must divide gpus={gpus}")
    n_sw = gpus // gpus_per_pcie_switch
    if nics % n_sw:
        raise ConfigError("dgx_like", "nics", nics,
                          f"must be a multiple of the {n_sw} PCIe switches")
    nics_per_sw = nics // n_sw
    nic_Bps = nic_gbps * BYTES_PER_GBIT
    pcie_Bps = gpu.pcie_Bps

    b = TopologyBuilder()
    for k in range(n_servers):
        s = f"s{k}"
        b.add_node(f"{s}.cpu", NodeKind.CPU, server=k)
        b.add_node(f"{s}.nvsw", NodeKind.NVSWITCH, server=k, model="NVSwitch")
        for p in range(n_sw):
            b.add_node(f"{s}.pcie{p}", NodeKind.PCIE_SWITCH, server=k)
            b.connect(f"{s}.pcie{p}", f"{s}.cpu", bandwidth_Bps=pcie_Bps, latency_ns=lat.pcie_ns)
        for i in range(gpus):
            g = f"{s}.gpu{i}"
            b.add_node(g, NodeKind.GPU, server=k, model=gpu.name)
            b.connect(g, f"{s}.pcie{i // gpus_per_pcie_switch}", bandwidth_Bps=pcie_Bps,
                      latency_ns=lat.pcie_ns)
            b.connect(g, f"{s}.nvsw", bandwidth_Bps=gpu.nvlink_Bps, latency_ns=lat.nvlink_ns)
        for j in range(nics):
            n = f"{s}.nic{j}"
            b.add_node(n, NodeKind.NIC, server=k, model=nic_model)
            b.connect(n, f"{s}.pcie{j // nics_per_sw}", bandwidth_Bps=min(nic_Bps, pcie_Bps),
                      latency_ns=lat.pcie_ns)
    if network == "single":
        b.add_node("tor0", NodeKind.SWITCH)
        for k in range(n_servers):
            for j in range(nics):
                b.connect(f"s{k}.nic{j}", "tor0", bandwidth_Bps=nic_Bps, latency_ns=lat.network_ns)
        return b.build()
    for j in range(nics):
        b.add_node(f"tor{j}", NodeKind.SWITCH)
        for k in range(n_servers):
            b.connect(f"s{k}.nic{j}", f"tor{j}", bandwidth_Bps=nic_Bps, latency_ns=lat.network_ns)
    if spines:
        uplink_Bps = n_servers * nic_Bps / spines      # non-blocking: uplinks = downlinks
        for sp in range(spines):
            b.add_node(f"spine{sp}", NodeKind.SWITCH)
            for j in range(nics):
                b.connect(f"tor{j}", f"spine{sp}", bandwidth_Bps=uplink_Bps,
                          latency_ns=lat.network_ns)
    return b.build()


def dgx_a100(n_servers: int = 2, **kw: object) -> Topology:
    """DGX A100 servers: 8 A100s, 8 x ConnectX-6 200 Gb/s, 2 GPUs + 2 NICs per PCIe Gen4
    switch (see the module docstring for sources); ``kw`` goes to :func:`dgx_like`."""
    args: dict[str, object] = dict(gpus=8, nics=8, nic_gbps=200, gpu=A100_SXM4_80GB,
                                   gpus_per_pcie_switch=2, nic_model="ConnectX-6")
    args.update(kw)
    return dgx_like(n_servers, **args)  # type: ignore[arg-type]


def dgx_h100(n_servers: int = 2, **kw: object) -> Topology:
    """DGX H100 servers: 8 H100s, 8 x ConnectX-7 400 Gb/s, one GPU + one NIC per PCIe Gen5
    switch (see the module docstring for sources); ``kw`` goes to :func:`dgx_like`."""
    args: dict[str, object] = dict(gpus=8, nics=8, nic_gbps=400, gpu=H100_SXM5_80GB,
                                   gpus_per_pcie_switch=1, nic_model="ConnectX-7")
    args.update(kw)
    return dgx_like(n_servers, **args)  # type: ignore[arg-type]
