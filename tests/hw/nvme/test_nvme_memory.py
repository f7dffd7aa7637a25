"""Memory target: a 1 TiB namespace with 1 GiB written stays under 1.5 GiB resident."""

from __future__ import annotations

import psutil
import pytest
from nvme_host import RawHost

from labrig.hw.nvme import NvmeConfig
from labrig.hw.nvme.spec import IoOpcode


@pytest.mark.slow
def test_one_gib_written_into_one_tib_namespace_stays_small() -> None:
    proc = psutil.Process()
    before = proc.memory_info().rss
    h = RawHost(NvmeConfig())
    h.create_pair(1, size=256)
    chunk = 128 * 1024
    buf = h.plat.memory.alloc(chunk)
    buf.view[:] = 1
    p1, p2 = h.prps(buf.addr, chunk)
    stride = (1 << 40) // 4096 // 8192              # spread the writes over the whole terabyte
    for i in range(8192):
        h.submit(1, IoOpcode.WRITE, nsid=1, prp1=p1, prp2=p2, cdw10=i * stride, cdw12=31)
        if i % 128 == 127:
            h.wait(1, 128)
    h.plat.run_until_idle()
    assert h.ctrl.namespace(1).store.allocated_bytes == 1 << 30
    assert proc.memory_info().rss - before < 1.5 * (1 << 30)
