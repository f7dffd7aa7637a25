"""``labrig bench cxl``: load/store latency and bandwidth, local DRAM vs CXL (virtual time),
flush costs, and the emulator's own speed in cache-line operations per wall-second.

Target for the emulator: >= 1,000,000 line operations per wall-second per core for streaming
numpy-sized accesses (multi-line loads/stores are vectorized over line arrays).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from labrig.drivers.cxl.emu import HPA_BASE, open_emu
from labrig.tools.bench import bench
from labrig.tools.experiments.cxl_fidelity import (PUBLISHED, flush_costs, make_pod,
                                                   pointer_chase_ns, region_hpa, stream_bw)
from labrig.tools.results import ExperimentResult, Headline, RunContext

__all__ = ["emulator_line_ops_per_s", "run"]

NAME = "cxl"
TARGET_LINE_OPS = 1_000_000


def emulator_line_ops_per_s(chunk: int, ws_bytes: int, seconds: float,
                            eviction: str = "random", cache_lines: int = (32 << 20) // 64
                            ) -> float:
    """Wall-clock speed of streaming stores+loads of ``chunk`` bytes over ``ws_bytes`` of
    non-coherent CXL memory on the default pod (8 hosts)."""
    mem = open_emu(hosts=8, eviction=eviction, cache_lines=cache_lines)
    port = mem.pod.port(0)
    base = HPA_BASE + mem.coherent_size
    data = np.arange(chunk, dtype=np.uint8)
    ops0 = port.stats["line_ops"]
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        for off in range(0, ws_bytes, chunk):
            port.store(base + off, data)
            port.load(base + off, chunk)
    wall = time.perf_counter() - t0
    return (port.stats["line_ops"] - ops0) / wall


def _store_latency(port: Any, base: int, n: int = 2000) -> float:
    t0 = port.now_ns
    for i in range(n):
        port.store(base + ((i * 7919) % 4096) * 64 * 16, b"\1" * 8)
    return (port.now_ns - t0) / n


@bench(NAME, title="CXL pod: local vs CXL latency/bandwidth (virtual), flush costs, emulator "
                   "speed", options={"chunk": ("bytes per streaming access", "65536")})
def run(ctx: RunContext) -> ExperimentResult:
    """Run the CXL bench; ``ctx.options['chunk']`` sets the emulator-speed access size."""
    w0 = time.perf_counter()
    chunk = int(ctx.options.get("chunk", "65536"))
    mem = make_pod(ctx.seed)
    port = mem.pod.port(0)
    rng = np.random.default_rng(ctx.seed)
    ws = 4 << 20
    rows: list[dict[str, Any]] = []
    lat, bw, st = {}, {}, {}
    for where in ("local", "cxl"):
        base = region_hpa(mem, where)
        lat[where] = pointer_chase_ns(port, base, ws, 3000 if ctx.quick else 30000, rng)
        bw[where] = stream_bw(port, base, ws, 1 << 20)
        st[where] = _store_latency(port, base)
        rows.append({"memory": where, "load_ns": lat[where], "store_miss_ns": st[where],
                     "stream_gb_per_s": bw[where]})
    fl = flush_costs(port, region_hpa(mem, "cxl"))
    rows.append({"memory": "cxl", **fl})
    secs = 1.0 if ctx.quick else 5.0
    speed = {}
    for label, ch, ws_e, ev in (("stream 64 KiB, fits cache", chunk, 16 << 20, "random"),
                                ("stream 64 KiB, evicting", chunk, 48 << 20, "random"),
                                ("single lines", 64, 1 << 20, "random")):
        speed[label] = emulator_line_ops_per_s(ch, ws_e, secs, ev)
        rows.append({"emulator": label, "line_ops_per_wall_s": speed[label]})
    # headline: the slower streaming case (every access also evicts and writes back)
    best = min(speed["stream 64 KiB, fits cache"], speed["stream 64 KiB, evicting"])
    res = ExperimentResult("cxl", ctx.quick, ctx.seed, {"cxl": "emu:cxl"}, rows=rows)
    res.headline += [
        Headline("cxl_over_local_latency", lat["cxl"] / lat["local"], "ratio",
                 PUBLISHED["latency_ratio"].text, "closer", PUBLISHED["latency_ratio"].source),
        Headline("cxl_over_local_bandwidth", bw["cxl"] / bw["local"], "ratio",
                 PUBLISHED["bandwidth_ratio"].text, "closer",
                 PUBLISHED["bandwidth_ratio"].source),
        Headline("emulator_line_ops_per_wall_s", best, "line-ops/s", f">= {TARGET_LINE_OPS:,}",
                 "higher", "issue #6 target", f"{chunk}-byte streaming stores+loads with evictions, one core"),
    ]
    res.wall_s = time.perf_counter() - w0
    return res
