"""Controller init state machine against a register-only test double: the step order of Base
spec 2.0 section 3.5.1, and failures that name the state and the cause."""

from __future__ import annotations

import pytest

from nvme_fake_ctrl import MS, FakeNvme, make_cap

from labrig.drivers.nvme import InitState, NvmeCtrlr, NvmeInitError
from labrig.hw import Platform
from labrig.hw._bits import field_get
from labrig.hw.nvme import regs
from labrig.hw.nvme.regs import Reg

def test_never_ready_times_out_after_cap_to_naming_the_step() -> None:
    plat = Platform(0)
    ctrlr = NvmeCtrlr(plat, FakeNvme(plat, make_cap(to=2), rdy=False))
    with pytest.raises(NvmeInitError, match=r"^ENABLE_WAIT_FOR_READY_1: timeout after 1000 ms: "
                                            r"CSTS.RDY still 0 after CC.EN=1") as info:
        ctrlr.init()
    assert info.value.state == "ENABLE_WAIT_FOR_READY_1"
    assert 1000 * MS <= plat.now_ns <= 1001 * MS
    assert ctrlr.state == InitState.ERROR
    with pytest.raises(NvmeInitError):        # re-entrant: the error sticks
        ctrlr.process_init()


def test_fatal_status_on_enable() -> None:
    plat = Platform(0)
    ctrlr = NvmeCtrlr(plat, FakeNvme(plat, make_cap(), cfs=True))
    with pytest.raises(NvmeInitError) as info:
        ctrlr.init()
    assert str(info.value) == ("ENABLE_WAIT_FOR_READY_1: CSTS.CFS=1 (controller fatal status) "
                               "after CC.EN=1")


def test_page_size_below_mpsmin_is_refused_before_enable() -> None:
    plat = Platform(0)
    dev = FakeNvme(plat, make_cap(mpsmin=1))
    ctrlr = NvmeCtrlr(plat, dev)
    with pytest.raises(NvmeInitError, match=r"^ENABLE: host page size 4096 \(MPS=0\) outside "
                                            r"CAP.MPSMIN=1"):
        ctrlr.init()
    assert all(not (off == Reg.CC and v & regs.CC_EN) for off, v in dev.writes)


def test_step_order_and_register_programming() -> None:
    plat = Platform(0)
    dev = FakeNvme(plat, make_cap(), enabled=True, process=False)
    ctrlr = NvmeCtrlr(plat, dev)
    seen = []
    with pytest.raises(NvmeInitError, match=r"^WAIT_FOR_IDENTIFY: timeout after 60000 ms "
                                            r"waiting for Identify Controller"):
        while True:
            before = ctrlr.state
            seen.append(ctrlr.process_init())
            if seen[-1] == before:
                ctrlr._wait_for_device(ctrlr._deadline_ns)
    order = list(dict.fromkeys(seen))
    assert order == [InitState.CHECK_EN, InitState.SET_EN_0, InitState.DISABLE_WAIT_FOR_READY_0,
                     InitState.SET_ADMINQ, InitState.ENABLE, InitState.ENABLE_WAIT_FOR_READY_1,
                     InitState.IDENTIFY, InitState.WAIT_FOR_IDENTIFY]
    offs = [off for off, _ in dev.writes]
    # disable first, then AQA/ASQ/ACQ, then CC.EN=1, then the admin SQ doorbell
    assert offs[:5] == [Reg.CC, Reg.AQA, Reg.ASQ, Reg.ACQ, Reg.CC]
    assert offs[5] == regs.sq_tdbl_offset(0, 0)
    assert not dev.writes[0][1] & regs.CC_EN
    cc = dev.writes[4][1]
    assert cc & regs.CC_EN
    assert field_get(regs.CC_IOSQES, cc) == 6 and field_get(regs.CC_IOCQES, cc) == 4
    assert field_get(regs.CC_MPS, cc) == 0 and field_get(regs.CC_CSS, cc) == 0
    assert field_get(regs.CC_AMS, cc) == regs.AMS_RR
    aqa = dev.writes[1][1]
    assert field_get(regs.AQA_ASQS, aqa) == 31 and field_get(regs.AQA_ACQS, aqa) == 31
    assert dev.writes[2][1] % 4096 == 0 and dev.writes[3][1] % 4096 == 0


def test_device_gone_reads_all_ones() -> None:
    plat = Platform(0)
    dev = FakeNvme(plat, make_cap())
    dev.regs[Reg.CAP] = (1 << 64) - 1
    with pytest.raises(NvmeInitError, match="^INIT: CAP reads all ones"):
        NvmeCtrlr(plat, dev).init()
