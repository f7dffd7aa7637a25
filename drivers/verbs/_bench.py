"""Wall-clock speed of the emulated verbs path: driver -> UAR doorbell -> NIC model -> wire
-> CQE -> poll.

``python -m labrig.drivers.verbs._bench [--ops 20000] [--wire cable|loopback] [--profile]``
posts a signaled 64-byte RDMA WRITE and polls its completion, in a loop (issue #8 target:
>= 20,000 verbs operations per wall-second per core), and prints operations per wall- and
per CPU-second plus the virtual latency of one operation.  Wall figures depend on the machine
and its load; the CPU-second figure is one core's worth of work.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

from labrig.drivers.verbs import (
    CQ,
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE_WRITE,
    IBV_WC_SUCCESS,
    IBV_WR_RDMA_WRITE,
    MR,
    PD,
    QP,
    SGE,
    Context,
    QPCap,
    QPInitAttr,
    SendWR,
    connect_qps,
)
from labrig.errors import UsageError
from labrig.hw import Platform
from labrig.hw.fabric.nic import Cable, NicConfig, NicDevice

__all__ = ["main", "verbs_ops_per_second"]

WIRES = ("cable", "loopback")


def verbs_ops_per_second(ops: int = 20_000, wire: str = "cable", size: int = 64,
                         seed: int = 0) -> dict[str, Any]:
    """Run ``ops`` post_send(RDMA_WRITE ``size`` B) + poll round trips.

    ``wire``: ``"cable"`` (two NICs back to back) or ``"loopback"`` (two QPs on one NIC).

    Returns
    -------
    dict
        ``ops``, ``wall_s``, ``ops_per_wall_s``, ``cpu_s``, ``ops_per_cpu_s``,
        ``virtual_latency_us`` (mean, doorbell to CQE), ``wire``, ``size``.
    """
    if wire not in WIRES:
        raise UsageError(f"verbs bench wire={wire!r}: must be one of {WIRES}")
    if wire == "cable":
        plat = Platform(seed=seed)
        cable = Cable(plat, "nicA", "nicB")
        ca = Context(device=NicDevice(plat, NicConfig(node="nicA"), cable))
        cb = Context(device=NicDevice(plat, NicConfig(node="nicB"), cable))
    else:
        ca = cb = Context(device=NicDevice(Platform(seed=seed), NicConfig(node="nic0")))
    acc = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE
    pa = PD(ca)
    pb = pa if cb is ca else PD(cb)
    cqa, cqb = CQ(ca, 64), CQ(cb, 64)
    qa = QP(pa, QPInitAttr(scq=cqa, rcq=cqa, cap=QPCap(max_send_wr=32, max_recv_wr=32)))
    qb = QP(pb, QPInitAttr(scq=cqb, rcq=cqb, cap=QPCap(max_send_wr=32, max_recv_wr=32)))
    connect_qps(qa, qb)
    src, dst = MR(pa, max(size, 64), acc), MR(pb, max(size, 64), acc)
    wr = SendWR(wr_id=1, opcode=IBV_WR_RDMA_WRITE, num_sge=1, sg=[SGE(src.buf, size, src.lkey)])
    wr.set_wr_rdma(dst.rkey, dst.buf)
    poll = cqa.poll
    post = qa.post_send
    v0 = ca.clock()
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(ops):
        post(wr)
        n, wcs = poll(1)
        while not n:
            n, wcs = poll(1)
        if wcs[0].status != IBV_WC_SUCCESS:
            raise RuntimeError(f"verbs bench: completion failed: {wcs[0]}")
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"wire": wire, "size": size, "ops": ops, "wall_s": wall, "ops_per_wall_s": ops / wall,
            "cpu_s": cpu, "ops_per_cpu_s": ops / cpu if cpu else float("inf"),
            "virtual_latency_us": (ca.clock() - v0) / ops / 1e3}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=20_000)
    ap.add_argument("--wire", choices=WIRES, default="cable")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
    r = verbs_ops_per_second(args.ops, args.wire, args.size)
    if args.profile:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    print(f"{r['ops']} x RDMA WRITE {r['size']} B over {r['wire']}: "
          f"{r['ops_per_wall_s']:,.0f} ops/wall-s, {r['ops_per_cpu_s']:,.0f} ops/cpu-s, "
          f"virtual latency {r['virtual_latency_us']:.2f} us")


if __name__ == "__main__":
    main()
