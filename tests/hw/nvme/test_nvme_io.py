"""NVM I/O commands, PRPs, queue mechanics, arbitration and timing (NVM Command Set 1.0
section 3; Base spec 2.0 sections 3.3, 4.2, 4.3, 4.13)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from nvme_host import RawHost

from labrig.hw.nvme import NamespaceConfig, NvmeConfig
from labrig.hw.nvme.spec import (
    DSM_RANGE_STRUCT,
    AdminOpcode,
    GenericSc,
    IoOpcode,
    MediaSc,
    status,
)

R, W = IoOpcode.READ, IoOpcode.WRITE


def pattern(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)


@pytest.mark.parametrize("lba_bytes", [512, 4096])
def test_write_read_round_trip(lba_bytes: int) -> None:
    h = RawHost(NvmeConfig(namespaces=(NamespaceConfig(capacity_bytes=1 << 24,
                                                       lba_bytes=lba_bytes),)))
    h.create_pair(1)
    n = 8 * lba_bytes
    src = h.plat.memory.alloc(n)
    dst = h.plat.memory.alloc(n)
    src.view[:] = pattern(n, lba_bytes)
    p1, p2 = h.prps(src.addr, n)
    assert h.cmd(1, W, nsid=1, prp1=p1, prp2=p2, cdw10=5, cdw12=7).status.ok
    p1, p2 = h.prps(dst.addr, n)
    assert h.cmd(1, R, nsid=1, prp1=p1, prp2=p2, cdw10=5, cdw12=7).status.ok
    assert np.array_equal(src.view, dst.view)
    assert h.ctrl.namespace(1).read_blocks(5, 8) == src.view.tobytes()


def test_unwritten_blocks_read_zero_without_nand_time(host: RawHost) -> None:
    h = host
    buf = h.plat.memory.alloc(4096)
    buf.view[:] = 0xEE
    t = h.plat.now_ns
    assert h.cmd(1, R, nsid=1, prp1=buf.addr, cdw10=77).status.ok
    assert not buf.view.any()
    assert h.plat.now_ns - t < h.cfg.timing.read_ns


def test_qd1_read_latency_follows_timing_model(host: RawHost) -> None:
    h = host
    buf = h.plat.memory.alloc(4096)
    h.ctrl.namespace(1).store.write(0, np.ones(4096, dtype=np.uint8))
    t = h.plat.now_ns
    assert h.cmd(1, R, nsid=1, prp1=buf.addr, cdw10=0).status.ok
    tm = h.cfg.timing
    expect = tm.fw_read_ns + tm.read_ns + 4096 * 1000 // tm.channel_mb_s \
        + 4096 * 1000 // tm.pcie_mb_s
    assert h.plat.now_ns - t == expect


def test_prp_list_and_chained_list() -> None:
    h = RawHost(NvmeConfig(namespaces=(NamespaceConfig(capacity_bytes=1 << 28),), mdts_log2=10))
    h.create_pair(1)
    pages = 600                            # > 511 entries: needs a chained PRP list
    data = h.plat.memory.alloc(pages * 4096)
    data.view[:] = pattern(pages * 4096, 1)
    lists = h.plat.memory.alloc(2 * 4096)
    # scatter: data pages in reverse order so no two entries are contiguous
    addrs = [data.addr + (pages - 1 - i) * 4096 for i in range(pages)]
    first = addrs[0]
    rest = addrs[1:]
    l0 = rest[:511] + [lists.addr + 4096]
    l1 = rest[511:]
    struct.pack_into(f"<{len(l0)}Q", lists.view, 0, *l0)
    struct.pack_into(f"<{len(l1)}Q", lists.view, 4096, *l1)
    assert h.cmd(1, W, nsid=1, prp1=first, prp2=lists.addr, cdw12=pages - 1).status.ok
    got = h.ctrl.namespace(1).read_blocks(0, pages)
    expect = b"".join(data.view[a - data.addr:a - data.addr + 4096].tobytes() for a in addrs)
    assert got == expect
    out = h.plat.memory.alloc(pages * 4096)
    olists = h.plat.memory.alloc(2 * 4096)
    oaddrs = [out.addr + i * 4096 for i in range(pages)]
    struct.pack_into("<511Q", olists.view, 0, *(oaddrs[1:512] + [olists.addr + 4096])[:511])
    struct.pack_into("<Q", olists.view, 511 * 8, olists.addr + 4096)
    struct.pack_into(f"<{pages - 512}Q", olists.view, 4096, *oaddrs[512:])
    assert h.cmd(1, R, nsid=1, prp1=out.addr, prp2=olists.addr, cdw12=pages - 1).status.ok
    assert out.view.tobytes() == expect


def test_prp1_offset_and_misaligned_entries(host: RawHost) -> None:
    h = host
    buf = h.plat.memory.alloc(3 * 4096)
    buf.view[:] = pattern(3 * 4096, 2)
    # PRP1 with a dword-aligned offset: 2 blocks span 3 pages -> PRP list
    lst = h.plat.memory.alloc(4096)
    struct.pack_into("<2Q", lst.view, 0, buf.addr + 4096, buf.addr + 8192)
    assert h.cmd(1, W, nsid=1, prp1=buf.addr + 512, prp2=lst.addr, cdw12=1).status.ok
    assert h.ctrl.namespace(1).read_blocks(0, 2) == buf.view[512:512 + 8192].tobytes()
    bad = status(GenericSc.INVALID_PRP_OFFSET, dnr=True)
    assert h.cmd(1, W, nsid=1, prp1=buf.addr + 2).status == bad
    assert h.cmd(1, W, nsid=1, prp1=buf.addr, prp2=buf.addr + 4096 + 8, cdw12=1).status == bad
    struct.pack_into("<2Q", lst.view, 0, buf.addr + 4096, buf.addr + 8192 + 64)
    assert h.cmd(1, W, nsid=1, prp1=buf.addr + 512, prp2=lst.addr, cdw12=1).status == bad


def test_errors_invalid_ns_range_mdts_and_dma(host: RawHost) -> None:
    h = host
    buf = h.plat.memory.alloc(4096)
    assert h.cmd(1, R, nsid=2, prp1=buf.addr).status == status(GenericSc.INVALID_NAMESPACE,
                                                                dnr=True)
    nlbas = (1 << 30) // 4096
    assert h.cmd(1, R, nsid=1, prp1=buf.addr, cdw10=nlbas - 1, cdw12=1).status == status(
        GenericSc.LBA_OUT_OF_RANGE, dnr=True)
    assert h.cmd(1, R, nsid=1, prp1=buf.addr, cdw12=32).status == status(
        GenericSc.INVALID_FIELD, dnr=True)             # 33 blocks > MDTS 128 KiB
    # write from memory that is not host memory: nothing reaches the namespace
    h.ctrl.namespace(1).store.write(0, np.full(4096, 5, dtype=np.uint8))
    c = h.cmd(1, W, nsid=1, prp1=0x10_0000)
    assert c.status == status(GenericSc.DATA_TRANSFER_ERROR) and not c.status.dnr
    assert h.ctrl.namespace(1).read_blocks(0, 1) == bytes([5]) * 4096
    freed = h.plat.memory.alloc(4096)
    freed.free()
    assert h.cmd(1, R, nsid=1, prp1=freed.addr).status == status(GenericSc.DATA_TRANSFER_ERROR)
    assert h.cmd(1, 0x7E, nsid=1).status == status(GenericSc.INVALID_OPCODE, dnr=True)
    # the controller keeps serving
    assert h.cmd(1, R, nsid=1, prp1=buf.addr).status.ok


def test_flush_broadcast_and_fua(host: RawHost) -> None:
    h = host
    buf = h.plat.memory.alloc(4096)
    assert h.cmd(1, W, nsid=1, prp1=buf.addr).status.ok
    assert h.plat.now_ns < h.ctrl.durable_ns()
    assert h.cmd(1, IoOpcode.FLUSH, nsid=0xFFFF_FFFF).status.ok
    assert h.plat.now_ns >= h.ctrl.durable_ns()
    assert h.cmd(1, IoOpcode.FLUSH, nsid=0).status == status(GenericSc.INVALID_NAMESPACE,
                                                              dnr=True)
    assert h.cmd(1, W, nsid=1, prp1=buf.addr, cdw10=1, cdw12=1 << 30).status.ok
    assert h.plat.now_ns >= h.ctrl.durable_ns()


def test_write_zeroes_and_dsm_deallocate(host: RawHost) -> None:
    h = host
    buf = h.plat.memory.alloc(8 * 4096)
    buf.view[:] = 3
    assert h.cmd(1, W, nsid=1, prp1=buf.addr, prp2=0, cdw12=0).status.ok
    for lba in range(1, 8):
        assert h.cmd(1, W, nsid=1, prp1=buf.addr, cdw10=lba).status.ok
    assert h.cmd(1, IoOpcode.WRITE_ZEROES, nsid=1, cdw10=1, cdw12=1 | 1 << 25).status.ok
    ns = h.ctrl.namespace(1)
    assert ns.read_blocks(1, 2) == bytes(8192)
    assert ns.read_blocks(0, 1) == bytes([3]) * 4096
    rng = h.plat.memory.alloc(4096)
    DSM_RANGE_STRUCT.pack_into(rng.view, 0, 0, 2, 4)
    DSM_RANGE_STRUCT.pack_into(rng.view, 16, 0, 1, 7)
    assert h.cmd(1, IoOpcode.DATASET_MANAGEMENT, nsid=1, prp1=rng.addr, cdw10=1,
                 cdw11=1 << 2).status.ok
    assert ns.read_blocks(4, 4) == bytes(8192) + bytes([3]) * 4096 + bytes(4096)
    DSM_RANGE_STRUCT.pack_into(rng.view, 0, 0, 2, 1 << 40)
    assert h.cmd(1, IoOpcode.DATASET_MANAGEMENT, nsid=1, prp1=rng.addr, cdw10=0,
                 cdw11=1 << 2).status == status(GenericSc.LBA_OUT_OF_RANGE, dnr=True)


def test_cq_full_holds_completions_and_phase_wraps() -> None:
    h = RawHost()
    h.create_pair(1, size=4)                      # 3 usable CQ slots
    buf = h.plat.memory.alloc(4096)
    for _ in range(3):
        h.submit(1, R, nsid=1, prp1=buf.addr)
    h.plat.run_until_idle()
    got = h.reap(1, ring=False)
    assert len(got) == 3 and all(c.phase == 1 for c in got)
    for _ in range(3):
        h.submit(1, R, nsid=1, prp1=buf.addr)
    h.plat.run_until_idle()
    assert h.reap(1, ring=False) == []            # CQ full: held in the model
    h.cq_doorbell(1, h.queues[1].head)
    got = h.reap(1)
    assert [c.phase for c in got] == [1, 0, 0]    # wrapped after slot 3
    assert [c.sqhd for c in got][-1] == 2
    assert sorted(c.cid for c in got) == [3, 4, 5]


def test_interrupts_when_ien() -> None:
    h = RawHost()
    seen: list[int] = []
    h.ctrl.on_interrupt(3, seen.append)
    h.create_pair(1, ien=True, iv=3)
    buf = h.plat.memory.alloc(4096)
    h.cmd(1, R, nsid=1, prp1=buf.addr)
    assert seen == [3]


def test_round_robin_across_queues() -> None:
    h = RawHost()
    h.set_queues(3)
    for qid in (1, 2, 3):
        h.create_pair(qid, size=64)
    buf = h.plat.memory.alloc(4096)
    for qid in (1, 2, 3):
        for _ in range(10):
            h.submit(qid, IoOpcode.FLUSH, nsid=1, ring=False)
    for qid in (1, 2, 3):
        h.sq_doorbell(qid, h.queues[qid].tail)
    order = []
    real_execute = h.ctrl._execute

    def spy(sq, now):  # noqa: ANN001, ANN202
        order.append(sq.qid)
        real_execute(sq, now)
    h.ctrl._execute = spy  # type: ignore[method-assign]
    h.plat.run_until_idle()
    assert order[:6] == [1, 2, 3, 1, 2, 3]
    assert sorted(order) == [1] * 10 + [2] * 10 + [3] * 10
    del buf


def test_error_injection_forces_status_then_clears(host: RawHost) -> None:
    h = host
    buf = h.plat.memory.alloc(4096)
    forced = status(MediaSc.UNRECOVERED_READ_ERROR)
    h.ctrl.inject_error(R, forced, count=2)
    assert h.cmd(1, R, nsid=1, prp1=buf.addr).status == forced
    assert h.cmd(1, R, nsid=1, prp1=buf.addr).status == forced
    assert h.cmd(1, R, nsid=1, prp1=buf.addr).status.ok
    assert h.ctrl.counters.media_errors == 2
    h.ctrl.inject_error(AdminOpcode.IDENTIFY, status(GenericSc.INTERNAL_ERROR), admin=True)
    assert h.admin_cmd(AdminOpcode.IDENTIFY, prp1=buf.addr, cdw10=1).status == status(
        GenericSc.INTERNAL_ERROR)


def test_several_namespaces_are_independent() -> None:
    h = RawHost(NvmeConfig(namespaces=(NamespaceConfig(capacity_bytes=1 << 20),
                                       NamespaceConfig(capacity_bytes=1 << 20, lba_bytes=512))))
    h.create_pair(1)
    buf = h.plat.memory.alloc(4096)
    buf.view[:] = 1
    assert h.cmd(1, W, nsid=1, prp1=buf.addr).status.ok
    buf.view[:] = 2
    assert h.cmd(1, W, nsid=2, prp1=buf.addr, cdw12=7).status.ok
    assert h.ctrl.namespace(1).read_blocks(0, 1) == bytes([1]) * 4096
    assert h.ctrl.namespace(2).read_blocks(0, 8) == bytes([2]) * 4096


def test_backing_file_is_sparse_and_persistent(tmp_path) -> None:  # noqa: ANN001
    path = str(tmp_path / "ns.img")
    cfg = NvmeConfig(namespaces=(NamespaceConfig(capacity_bytes=1 << 30, backing_file=path),))
    h = RawHost(cfg)
    h.create_pair(1)
    buf = h.plat.memory.alloc(4096)
    buf.view[:] = 0x5A
    assert h.cmd(1, W, nsid=1, prp1=buf.addr, cdw10=1000).status.ok
    h.ctrl.close()
    import os
    st = os.stat(path)
    assert st.st_size == 1 << 30 and st.st_blocks * 512 < 1 << 20
    h2 = RawHost(cfg)
    assert h2.ctrl.namespace(1).read_blocks(1000, 1) == bytes([0x5A]) * 4096
    h2.create_pair(1)
    buf2 = h2.plat.memory.alloc(4096)
    assert h2.cmd(1, W, nsid=1, prp1=buf2.addr, cdw10=5).status.ok    # fills the cache
    assert h2.cmd(1, IoOpcode.WRITE_ZEROES, nsid=1, cdw10=1000).status.ok
    assert h2.ctrl.namespace(1).read_blocks(1000, 1) == bytes(4096)
    h2.ctrl.power_loss()            # the deallocate drains after the write: not durable yet
    assert h2.ctrl.namespace(1).read_blocks(1000, 1) == bytes([0x5A]) * 4096
    h2.ctrl.close()


def test_sparse_memory_namespace_costs_only_what_is_written() -> None:
    h = RawHost(NvmeConfig())                      # 1 TiB default namespace
    h.create_pair(1)
    buf = h.plat.memory.alloc(4096)
    assert h.cmd(1, W, nsid=1, prp1=buf.addr, cdw10=(1 << 28) - 1).status.ok
    assert h.ctrl.namespace(1).store.allocated_bytes == 4096


def test_arbitration_burst_and_weighted_round_robin() -> None:
    h = RawHost(enable=False)
    h.enable(ams=1)                                # CC.AMS = WRR with urgent class
    h.set_queues(3)
    # AB = 2 (bursts of 4); weights high 2, medium 1 (0-based 1 and 0), low 1
    assert h.admin_cmd(AdminOpcode.SET_FEATURES, cdw10=0x01,
                       cdw11=2 | 0 << 8 | 0 << 16 | 1 << 24).status.ok
    h.create_pair(1, prio=3)                       # low
    h.create_pair(2, prio=1)                       # high
    h.create_pair(3, prio=0)                       # urgent
    for qid in (1, 2, 3):
        for _ in range(12):
            h.submit(qid, IoOpcode.FLUSH, nsid=1, ring=False)
    for qid in (1, 2, 3):
        h.sq_doorbell(qid, h.queues[qid].tail)
    order = []
    real_execute = h.ctrl._execute

    def spy(sq, now):  # noqa: ANN001, ANN202
        order.append(sq.qid)
        real_execute(sq, now)
    h.ctrl._execute = spy  # type: ignore[method-assign]
    h.plat.run_until_idle()
    assert order[:4] == [3] * 4                    # urgent first, one burst
    assert order[4:12] == [2] * 8                  # high: burst x weight 2
    assert order[12:16] == [1] * 4                 # low: burst x weight 1
