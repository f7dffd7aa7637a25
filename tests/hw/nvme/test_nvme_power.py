"""Volatile write cache and power loss: acknowledged-but-not-durable writes may be lost,
flushed data never, and no block is torn (every block equals one version written to it or
its last durable version)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from nvme_host import RawHost

from labrig.hw.nvme import NamespaceConfig, NvmeConfig, regs
from labrig.hw.nvme.regs import Reg
from labrig.hw.nvme.spec import IoOpcode, SmartOffset

W = IoOpcode.WRITE
CFG = NvmeConfig(namespaces=(NamespaceConfig(capacity_bytes=64 * 4096),),
                 write_cache_bytes=16 * 4096)


def block(tag: int) -> bytes:
    return bytes([tag & 0xFF]) * 4096


def test_unflushed_writes_are_lost_flushed_kept() -> None:
    h = RawHost(CFG)
    h.create_pair(1)
    buf = h.plat.memory.alloc(4096)
    buf.view[:] = 1
    assert h.cmd(1, W, nsid=1, prp1=buf.addr, cdw10=0).status.ok
    assert h.cmd(1, IoOpcode.FLUSH, nsid=1).status.ok
    buf.view[:] = 2
    assert h.cmd(1, W, nsid=1, prp1=buf.addr, cdw10=0).status.ok
    assert h.cmd(1, W, nsid=1, prp1=buf.addr, cdw10=1).status.ok
    h.ctrl.power_loss()
    ns = h.ctrl.namespace(1)
    assert ns.read_blocks(0, 1) == block(1)
    assert ns.read_blocks(1, 1) == bytes(4096)
    assert h.ctrl.bar0.read32(Reg.CSTS) & regs.CSTS_RDY == 0
    assert h.ctrl.sqs == {}
    assert h.ctrl.counters.unsafe_shutdowns == 1 and h.ctrl.counters.power_cycles == 2
    # after power-up the host re-initialises and reads what survived; SMART counts the loss
    h.admin.tail = h.admin.head = 0
    h.admin.phase = 1
    h.admin.cq.view[:] = 0
    assert h.enable() == regs.CSTS_RDY
    log = h.plat.memory.alloc(4096)
    assert h.admin_cmd(0x02, prp1=log.addr, cdw10=0x02 | 127 << 16).status.ok
    assert int.from_bytes(log.view[SmartOffset.UNSAFE_SHUTDOWNS:][:16].tobytes(), "little") == 1


def test_full_write_cache_stalls_writes() -> None:
    h = RawHost(CFG)
    h.create_pair(1, size=64)
    buf = h.plat.memory.alloc(4096)
    times = []
    for lba in range(40):
        t = h.plat.now_ns
        assert h.cmd(1, W, nsid=1, prp1=buf.addr, cdw10=lba).status.ok
        times.append(h.plat.now_ns - t)
    tm = CFG.timing
    assert times[0] < 2 * tm.fw_write_ns
    assert max(times) > 4 * tm.fw_write_ns           # some write waited for the cache to drain



@given(ops=st.lists(st.tuples(st.sampled_from(["w", "f", "run"]), st.integers(0, 7),
                              st.integers(1, 3)), min_size=1, max_size=25),
       cut=st.integers(0, 3_000_000))
def test_power_loss_never_tears_and_keeps_durable(ops, cut) -> None:  # noqa: ANN001
    h = RawHost(CFG)
    h.create_pair(1, size=64)
    versions: dict[int, list[bytes]] = {lba: [bytes(4096)] for lba in range(12)}
    durable: dict[int, bytes] = {lba: bytes(4096) for lba in range(12)}
    last_written: dict[int, bytes] = dict(durable)
    tag = 0
    for op, lba, n in ops:
        if op == "w":
            tag += 1
            buf = h.plat.memory.alloc(4 * 4096)     # the host may not reuse it before completion
            for k in range(n):
                buf.view[k * 4096:(k + 1) * 4096] = np.frombuffer(block(tag * 4 + k), np.uint8)
            p1, p2 = h.prps(buf.addr, n * 4096)
            h.submit(1, W, nsid=1, prp1=p1, prp2=p2, cdw10=lba, cdw12=n - 1)
            for k in range(n):
                versions[lba + k].append(block(tag * 4 + k))
                last_written[lba + k] = block(tag * 4 + k)
        elif op == "f":
            cid = h.submit(1, IoOpcode.FLUSH, nsid=1)
            while cid not in [c.cid for c in h.wait(1)]:
                pass
            durable = dict(last_written)     # every completed-or-not write before the flush
        else:
            h.plat.run_for(lba * 100_000)
        h.reap(1)
    h.plat.run_for(cut)
    h.ctrl.power_loss()
    ns = h.ctrl.namespace(1)
    for lba in range(12):
        got = ns.read_blocks(lba, 1)
        assert got in versions[lba]
        # a flushed version (or a later one) survives
        assert versions[lba].index(got) >= versions[lba].index(durable[lba])
