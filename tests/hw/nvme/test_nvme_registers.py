"""BAR0 registers, enable/disable/shutdown edges and the enable-time guards (Base spec 2.0
section 3.1 and 3.5.1)."""

from __future__ import annotations

import pytest
from nvme_host import RawHost

from labrig.hw.nvme import EnableFault, NvmeConfig, NamespaceConfig, regs
from labrig.hw.nvme.regs import Reg
from labrig.hw.nvme.spec import AdminOpcode, Cns

SMALL = NvmeConfig(namespaces=(NamespaceConfig(capacity_bytes=1 << 20),))


def test_cap_and_vs() -> None:
    h = RawHost(SMALL, enable=False)
    cap = h.ctrl.bar0.read64(Reg.CAP)
    assert regs.cap_mqes(cap) == 1023
    assert cap & regs.CAP_CQR
    assert regs.field_get(regs.CAP_CSS, cap) & regs.CAP_CSS_NVM
    assert regs.cap_dstrd(cap) == 0
    assert (regs.cap_mpsmin(cap), regs.cap_mpsmax(cap)) == (0, 4)
    assert regs.cap_to_ms(cap) == 10_000
    assert h.ctrl.bar0.read32(Reg.VS) == 0x0001_0400
    assert h.ctrl.bar0.read32(Reg.CAP) == cap & 0xFFFF_FFFF


def test_read_only_registers_ignore_writes() -> None:
    h = RawHost(SMALL, enable=False)
    bar = h.ctrl.bar0
    cap, vs = bar.read64(Reg.CAP), bar.read32(Reg.VS)
    bar.write64(Reg.CAP, 0)
    bar.write32(Reg.VS, 0)
    bar.write32(Reg.CSTS, 0xFFFF_FFFF)
    assert (bar.read64(Reg.CAP), bar.read32(Reg.VS), bar.read32(Reg.CSTS)) == (cap, vs, 0)


def test_enable_takes_the_configured_delay_then_ready() -> None:
    h = RawHost(SMALL, enable=False)
    bar = h.ctrl.bar0
    a = h.admin
    bar.write32(Reg.AQA, 31 | 31 << 16)
    bar.write64(Reg.ASQ, a.sq.addr)
    bar.write64(Reg.ACQ, a.cq.addr)
    bar.write32(Reg.CC, h.cc_value())
    assert bar.read32(Reg.CSTS) & regs.CSTS_RDY == 0
    h.plat.run_for(SMALL.enable_delay_ns - 1)
    assert bar.read32(Reg.CSTS) & regs.CSTS_RDY == 0
    h.plat.run_for(1)
    assert bar.read32(Reg.CSTS) == regs.CSTS_RDY


@pytest.mark.parametrize(("setup", "fault"), [
    ({"cc": {"css": 1}}, EnableFault.CSS_UNSUPPORTED),
    ({"cc": {"mps": 5}}, EnableFault.MPS_UNSUPPORTED),
    ({"cc": {"ams": 7}}, EnableFault.AMS_UNSUPPORTED),
    ({"cc": {"iosqes": 7}}, EnableFault.IOSQES_INVALID),
    ({"cc": {"iocqes": 3}}, EnableFault.IOCQES_INVALID),
    ({"asq": 0}, EnableFault.ASQ_ZERO),
    ({"acq": 0}, EnableFault.ACQ_ZERO),
    ({"asq_off": 64}, EnableFault.ASQ_MISALIGNED),
    ({"acq_off": 16}, EnableFault.ACQ_MISALIGNED),
    ({"cc": {"mps": 1}}, EnableFault.ASQ_MISALIGNED),   # 4 KiB aligned but not 8 KiB
    ({"aqa": 0 | 5 << 16}, EnableFault.ASQS_INVALID),
    ({"aqa": 5}, EnableFault.ACQS_INVALID),
    ({"asq": 0x10_0000}, EnableFault.ASQ_UNMAPPED),
    ({"acq": 0x10_0000}, EnableFault.ACQ_UNMAPPED),
])
def test_enable_guards_set_cfs_not_rdy(setup: dict, fault: EnableFault) -> None:
    h = RawHost(SMALL, enable=False)
    bar = h.ctrl.bar0
    a = h.admin
    # make ASQ 4 KiB but not 8 KiB aligned for the MPS case
    asq = a.sq.addr if a.sq.addr & 0x1000 else h.plat.memory.alloc(4096, align=4096).addr
    if not asq & 0x1000:
        asq = h.plat.memory.alloc(8192, align=8192).addr + 4096
    bar.write32(Reg.AQA, setup.get("aqa", 31 | 31 << 16))
    bar.write64(Reg.ASQ, setup.get("asq", asq + setup.get("asq_off", 0)))
    bar.write64(Reg.ACQ, setup.get("acq", a.cq.addr + setup.get("acq_off", 0)))
    bar.write32(Reg.CC, h.cc_value(**setup.get("cc", {})))
    h.plat.run_until_idle()
    assert bar.read32(Reg.CSTS) & (regs.CSTS_RDY | regs.CSTS_CFS) == regs.CSTS_CFS
    assert h.ctrl.last_enable_fault is fault


def test_disable_tears_down_queues_and_drops_outstanding(host: RawHost) -> None:
    buf = host.plat.memory.alloc(4096)
    host.submit(1, 0x02, nsid=1, prp1=buf.addr)
    host.plat.run_for(1000)            # fetched, completion held by the timing model
    host.ctrl.bar0.write32(Reg.CC, 0)
    host.plat.run_until_idle()
    assert host.ctrl.bar0.read32(Reg.CSTS) & regs.CSTS_RDY == 0
    assert host.reap(1, ring=False) == []
    assert host.ctrl.sqs == {} and host.ctrl.cqs == {}
    # re-enable: fresh admin queue works, I/O queue 1 is gone
    host.admin.tail = host.admin.head = 0
    host.admin.phase = 1
    host.admin.cq.view[:] = 0
    assert host.enable() == regs.CSTS_RDY
    ident = host.plat.memory.alloc(4096)
    assert host.admin_cmd(AdminOpcode.IDENTIFY, prp1=ident.addr, cdw10=Cns.CONTROLLER).status.ok


def test_shutdown_reports_complete_after_cache_flush(host: RawHost) -> None:
    buf = host.plat.memory.alloc(4096)
    buf.view[:] = 9
    assert host.cmd(1, 0x01, nsid=1, prp1=buf.addr, cdw10=3).status.ok
    durable = host.ctrl.durable_ns()
    assert durable > host.plat.now_ns
    cc = host.ctrl.bar0.read32(Reg.CC)
    host.ctrl.bar0.write32(Reg.CC, cc | regs.field_prep(regs.CC_SHN, regs.SHN_NORMAL))
    assert regs.field_get(regs.CSTS_SHST, host.ctrl.bar0.read32(Reg.CSTS)) == regs.SHST_OCCURRING
    host.wait_csts(regs.CSTS_SHST)
    host.plat.run_until_idle()
    assert regs.field_get(regs.CSTS_SHST, host.ctrl.bar0.read32(Reg.CSTS)) == regs.SHST_COMPLETE
    assert host.plat.now_ns >= durable
    host.ctrl.power_loss()
    assert host.ctrl.namespace(1).read_blocks(3, 1) == bytes([9]) * 4096
    assert host.ctrl.counters.unsafe_shutdowns == 0


def test_interrupt_mask_set_and_clear(host: RawHost) -> None:
    bar = host.ctrl.bar0
    bar.write32(Reg.INTMS, 0b101)
    assert bar.read32(Reg.INTMS) == 0b101
    bar.write32(Reg.INTMC, 0b001)
    assert bar.read32(Reg.INTMS) == 0b100 == bar.read32(Reg.INTMC)


def test_access_outside_or_misaligned_is_dropped(host: RawHost) -> None:
    bar = host.ctrl.bar0
    assert bar.read32(bar.size) == 0xFFFF_FFFF
    bar.write32(Reg.CC + 1, 0)
    assert bar.read32(Reg.CC) & regs.CC_EN
