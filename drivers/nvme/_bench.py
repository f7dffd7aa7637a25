"""Wall-clock throughput of the whole emulated path: driver -> registers -> model -> completion.

``python -m labrig.drivers.nvme._bench [--seconds 3] [--qd 32] [--profile]`` runs 4 KiB random
reads at a fixed queue depth on ``emu:nvme`` and prints commands per wall-second (the speed
target shared with the device model) and the virtual IOPS the emulated SSD delivered.  With
``--profile`` it prints the cProfile functions with the most internal time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

import numpy as np

from labrig.drivers.block import IoRequest, open_block_device

__all__ = ["bench_random_read", "main"]


def bench_random_read(uri: str = "emu:nvme?capacity=256M", qd: int = 32, seconds: float = 3.0,
                      seed: int = 0, precondition: bool = True) -> dict[str, Any]:
    """Keep ``qd`` 4 KiB random reads in flight for ``seconds`` of wall time.

    With ``precondition`` the whole device is written first (largest transfers, then a
    flush), so reads go to written blocks rather than deallocated ones.

    Returns
    -------
    dict
        ``commands``, ``wall_s``, ``commands_per_wall_s``, ``cpu_s``, ``commands_per_cpu_s``
        (one core's worth of work, robust to other load), ``virtual_iops``,
        ``mean_latency_us`` (virtual).
    """
    with open_block_device(uri) as dev:
        qp = dev.qpair(qd)
        if precondition:
            chunk = dev.max_transfer_blocks
            big = dev.alloc_buffer(chunk * dev.block_size)
            for lba in range(0, dev.num_blocks, chunk):
                qp.write(big, lba, min(chunk, dev.num_blocks - lba))
            qp.wait()
            qp.wait(qp.flush())
        bufs = [dev.alloc_buffer(dev.block_size) for _ in range(qd)]
        lbas = np.random.default_rng(seed).integers(0, dev.num_blocks, 1 << 20).tolist()
        state = {"i": 0, "done": 0, "lat": 0, "run": True}

        def on_done(req: IoRequest) -> None:
            state["done"] += 1
            state["lat"] += req.latency_ns
            if state["run"]:
                i = state["i"] = (state["i"] + 1) & ((1 << 20) - 1)
                qp.read(bufs[req.context], lbas[i], 1, callback=on_done, context=req.context)

        t0_virtual = dev.clock()
        for k in range(qd):
            state["i"] = k
            qp.read(bufs[k], lbas[k], 1, callback=on_done, context=k)
        start = time.perf_counter()
        cpu0 = time.process_time()
        end = start + seconds
        poll = qp.poll
        while True:
            for _ in range(256):
                poll()
            if time.perf_counter() >= end:
                break
        state["run"] = False
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        virtual_ns = dev.clock() - t0_virtual
        qp.wait()
        n = state["done"]
        return {"commands": n, "wall_s": wall, "commands_per_wall_s": n / wall,
                "cpu_s": cpu, "commands_per_cpu_s": n / cpu if cpu > 0 else 0.0,
                "virtual_iops": n / (virtual_ns / 1e9) if virtual_ns else 0.0,
                "mean_latency_us": state["lat"] / max(n, 1) / 1e3}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the throughput (and optionally a profile)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--uri", default="emu:nvme?capacity=256M")
    ap.add_argument("--no-precondition", action="store_true")
    ap.add_argument("--qd", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    if args.profile:
        prof = cProfile.Profile()
        result = prof.runcall(bench_random_read, args.uri, args.qd, args.seconds, 0,
                              not args.no_precondition)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    else:
        result = bench_random_read(args.uri, args.qd, args.seconds, 0, not args.no_precondition)
    print(f"{result['commands']} commands in {result['wall_s']:.2f} s wall: "
          f"{result['commands_per_wall_s']:,.0f} commands/wall-s "
          f"({result['commands_per_cpu_s']:,.0f} per CPU-s); emulated device "
          f"{result['virtual_iops']:,.0f} IOPS, mean latency {result['mean_latency_us']:.1f} us "
          "(virtual)")


if __name__ == "__main__":
    main()
