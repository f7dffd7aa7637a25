"""Measure the model's 4 KiB random-read QD1 latency and peak IOPS (QD 1..128) against the
published Micron 9200 figures, through the raw register-level host.  Not a test: run
``python tests/hw/nvme/measure_timing.py``."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from nvme_host import RawHost  # noqa: E402

from labrig.hw.nvme import MICRON_9200, NamespaceConfig, NvmeConfig  # noqa: E402
from labrig.hw.nvme.spec import IoOpcode  # noqa: E402

SPAN_LBAS = 1 << 16          # 1 GiB of preconditioned 4 KiB blocks


def run(qd: int, n: int, seed: int = 1) -> tuple[float, float, float]:
    cfg = NvmeConfig(namespaces=(NamespaceConfig(capacity_bytes=SPAN_LBAS * 4096),))
    h = RawHost(cfg)
    h.set_queues(1)
    h.create_pair(1, size=256)
    ns = h.ctrl.namespace(1)
    import numpy as np
    blk = np.ones(4096, dtype=np.uint8)
    for lba in range(SPAN_LBAS):                 # precondition: every block holds data (NAND time is charged)
        ns.store.write(lba * 4096, blk)
    rng = random.Random(seed)
    bufs = [h.plat.memory.alloc(4096) for _ in range(qd)]
    start = {}
    lat = []
    free = list(range(qd))
    t0 = h.plat.now_ns
    w0 = time.perf_counter()
    issued = 0
    while len(lat) < n:
        while free and issued < n:
            i = free.pop()
            cid = h.submit(1, IoOpcode.READ, nsid=1, prp1=bufs[i].addr,
                           cdw10=rng.randrange(SPAN_LBAS), cid=i, ring=False)
            start[cid] = h.plat.now_ns
            issued += 1
        h.sq_doorbell(1, h.queues[1].tail)
        got = h.reap(1)
        while not got:
            h.plat.step()
            got = h.reap(1)
        for c in got:
            assert c.status.ok
            lat.append(h.plat.now_ns - start[c.cid])
            free.append(c.cid)
    wall = time.perf_counter() - w0
    virt = h.plat.now_ns - t0
    return sum(lat) / len(lat) / 1000, n / (virt / 1e9), n / wall


if __name__ == "__main__":
    pub = MICRON_9200
    best = 0.0
    for qd in (1, 2, 4, 8, 16, 32, 64, 128):
        lat_us, iops, cps = run(qd, 4000 if qd < 8 else 20000)
        best = max(best, iops)
        print(f"QD{qd:4d}: mean {lat_us:7.1f} us  {iops/1e3:7.1f}K IOPS  ({cps:,.0f} cmds/wall-s)")
    qd1 = run(1, 4000)[0]
    print(f"QD1 latency {qd1:.1f} us vs published {pub.qd1_read_latency_us} "
          f"({(qd1 / pub.qd1_read_latency_us - 1) * 100:+.1f}%)")
    print(f"peak IOPS {best/1e3:.0f}K vs published {pub.rand_read_iops/1e3:.0f}K "
          f"({(best / pub.rand_read_iops - 1) * 100:+.1f}%)")
