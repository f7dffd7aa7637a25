"""``labrig bench fabric``: the speed of the fabric's flow model (max-min fair sharing) in
events per wall-second, the queue model (ECN/PFC/DCQCN) in steps per wall-second on an incast,
emulated verbs operations per wall-second, and a virtual-time check of one GPU-to-GPU transfer
against the NIC line rate.

An *event* of the flow model is a flow arrival or departure, each of which recomputes every
sending flow's max-min rate (labrig.hw.fabric.flows).  Issue #8's brief targets a few 10k flows
per wall-second on small topologies.  Wall-clock figures depend on the machine and its load.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np

from labrig.hw import Platform
from labrig.hw.fabric import FlowNetwork, QueueConfig, QueueNetwork, Topology, dgx_a100, dgx_like
from labrig.tools.bench import bench
from labrig.tools.results import ExperimentResult, Headline, RunContext

__all__ = ["flow_events_per_s", "queue_incast", "run"]

NAME = "fabric"
#: Mean gap between flow arrivals in the Poisson workload (virtual ns).
MEAN_GAP_NS = 2_000


def _gpu_routes(topo: Topology) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every inter-server GPU pair, routed through each GPU's nearest NIC."""
    bind = {}
    for s in topo.servers:
        bind.update(topo.pair_nearest(s, "gpu", "nic"))
    gpus = topo.nodes_of("gpu")
    return [(a, b, topo.route([a, bind[a], bind[b], b])) for a in gpus for b in gpus
            if topo.node(a).server != topo.node(b).server]


def flow_events_per_s(workload: str, n_flows: int, seed: int = 0) -> dict[str, Any]:
    """Run ``n_flows`` flows on a 2-server DGX A100 fabric and time the flow model.

    ``workload``: ``"poisson"`` (random inter-server GPU pairs, 4 KiB..1 MiB, Poisson
    arrivals) or ``"all-to-all"`` (every inter-server GPU pair at once, 1 MiB each, in rounds).
    """
    topo = dgx_a100(2)
    plat = Platform(seed=seed)
    net = FlowNetwork(plat, topo)
    routes = _gpu_routes(topo)
    rng = np.random.default_rng(seed)
    done = [0]

    def count(_t: int) -> None:
        done[0] += 1

    if workload == "poisson":
        t = 0
        picks = rng.integers(0, len(routes), n_flows)
        sizes = rng.integers(4 << 10, 1 << 20, n_flows)
        gaps = rng.exponential(MEAN_GAP_NS, n_flows).astype(np.int64)
        for k in range(n_flows):
            t += int(gaps[k])
            src, dst, path = routes[int(picks[k])]
            plat.schedule_at(t, partial(net.transfer, src, dst, int(sizes[k]), count, path=path))
    elif workload == "all-to-all":
        rounds = max(1, n_flows // len(routes))
        t = 0
        for _ in range(rounds):
            for src, dst, path in routes:
                plat.schedule_at(t, partial(net.transfer, src, dst, 1 << 20, count, path=path))
            t += 2_000_000
        n_flows = rounds * len(routes)
    else:
        raise ValueError(f"workload {workload!r}")
    w0 = time.perf_counter()
    plat.run_until_idle()
    wall = time.perf_counter() - w0
    events = net.stats["arrivals"] + net.stats["departures"]
    return {"workload": workload, "flows": n_flows, "delivered": done[0],
            "events": events, "recomputes": net.stats["recomputes"],
            "fill_rounds_per_recompute": net.stats["fill_rounds"] / max(1, net.stats["recomputes"]),
            "wall_s": wall, "events_per_wall_s": events / wall, "flows_per_wall_s": done[0] / wall,
            "virtual_ms": plat.now_ns / 1e6}


def _one_pair_gb_per_s() -> tuple[float, float]:
    """Virtual bandwidth of one 1 GiB GPU-to-GPU transfer across servers (GB/s) and the NIC
    line rate it should reach."""
    topo = dgx_a100(2)
    plat = Platform(seed=0)
    net = FlowNetwork(plat, topo)
    path = topo.route(["s0.gpu0", "s0.nic0", "s1.nic0", "s1.gpu0"])
    n = 1 << 30
    f = net.transfer("s0.gpu0", "s1.gpu0", n, lambda t: None, path=path)
    plat.run_until_idle()
    assert f.done_ns is not None
    return n / f.done_ns, topo.link("s0.nic0->tor0").bandwidth_Bps / 1e9


def queue_incast(senders: int, nbytes: int, cc_mode: int = 1, pfc: bool = True
                 ) -> dict[str, Any]:
    """``senders`` GPUs on different servers write ``nbytes`` each to one GPU through one ToR
    on the queue model (labrig.hw.fabric.congestion): model steps per wall-second, goodput
    at the bottleneck, and what ECN, PFC and DCQCN did."""
    topo = dgx_like(n_servers=senders + 1, network="single")
    plat = Platform(seed=0)
    net = QueueNetwork(plat, topo, QueueConfig(CC_MODE=cc_mode, ENABLE_PFC=pfc))
    flows = [net.transfer(f"s{s}.gpu0", f"s{senders}.gpu0", nbytes, lambda t: None)
             for s in range(senders)]
    w0 = time.perf_counter()
    plat.run_until_idle()
    wall = time.perf_counter() - w0
    end = max(f.done_ns or 0 for f in flows)
    line = topo.link(f"tor0->s{senders}.nic0").bandwidth_Bps
    st = net.stats
    return {"workload": f"queues: {senders}-to-1 incast, {nbytes >> 20} MiB each, "
                        f"CC_MODE {cc_mode}, PFC {'on' if pfc else 'off'}",
            "steps": st["steps"], "wall_s": wall, "steps_per_wall_s": st["steps"] / wall,
            "bottleneck_utilization": senders * nbytes / (end * line / 1e9),
            "cnps": st["cnps"], "pfc_pauses": st["pauses"], "dropped_bytes": st["dropped_bytes"],
            "max_queue_KB": float(net.max_queue_bytes.max() / 1e3), "virtual_ms": end / 1e6}


@bench(NAME, title="GPU fabric: flow-model events and emulated verbs ops per wall-second, "
                   "one-pair bandwidth",
       options={"flows": ("flows per workload (default 3000 quick, 30000 full)", "")})
def run(ctx: RunContext) -> ExperimentResult:
    """Run the fabric bench; ``ctx.options['flows']`` overrides the flow count."""
    w0 = time.perf_counter()
    n = int(ctx.options.get("flows") or (3000 if ctx.quick else 30000))
    rows: list[dict[str, Any]] = []
    for workload in ("poisson", "all-to-all"):
        rows.append(flow_events_per_s(workload, n, ctx.seed))
    gbps, line = _one_pair_gb_per_s()
    rows.append({"workload": "one pair, 1 GiB, s0.gpu0 -> s1.gpu0", "virtual_GB_per_s": gbps,
                 "nic_line_rate_GB_per_s": line})
    from labrig.drivers.verbs._bench import verbs_ops_per_second

    mib = 16 if ctx.quick else 64
    queues = [queue_incast(4, mib << 20, cc, pfc) for cc, pfc in ((1, True), (0, True), (0, False))]
    rows += queues
    verbs = verbs_ops_per_second(5_000 if ctx.quick else 50_000, "cable")
    rows.append({"workload": "verbs: RDMA WRITE 64 B + poll, 2 NICs on a cable", **verbs})
    res = ExperimentResult(NAME, ctx.quick, ctx.seed, {"fabric": "emu:dgx-a100x2"}, rows=rows)
    res.headline += [
        Headline("flow_events_per_wall_s", rows[0]["events_per_wall_s"], "events/s",
                 "a few 10k flows/s", "higher", "issue #8 brief",
                 "arrivals + departures, Poisson GPU-to-GPU traffic, 2 x DGX A100"),
        Headline("verbs_ops_per_wall_s", verbs["ops_per_wall_s"], "ops/s", ">= 20,000",
                 "higher", "issue #8 target", "post_send + poll, emu backend, one core"),
        Headline("queue_model_steps_per_wall_s", queues[0]["steps_per_wall_s"], "steps/s",
                 "-", "higher", "labrig.hw.fabric.congestion",
                 "1 µs steps, 4-to-1 incast with DCQCN and PFC on 5 DGX-like servers"),
        Headline("one_pair_bandwidth", gbps, "GB/s", f"{line:g} (200 Gb/s ConnectX-6)",
                 "closer", "NVIDIA DGX A100 datasheet", "1 GiB, virtual time, incl. latency"),
    ]
    res.wall_s = time.perf_counter() - w0
    return res
