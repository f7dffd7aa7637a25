"""Admin command set (Base spec 2.0 section 5): statuses for every invalid field, DNR bits."""

from __future__ import annotations

import struct

import pytest
from nvme_host import RawHost

from labrig.hw.nvme import NamespaceConfig, NvmeConfig
from labrig.hw.nvme.spec import (
    ERROR_LOG_STRUCT,
    AdminOpcode,
    AsyncErrorInfo,
    Cns,
    CommandSpecificSc,
    FeatureId,
    GenericSc,
    IdCtrl,
    IdNs,
    IoOpcode,
    LogPageId,
    SmartOffset,
    status,
)

A = AdminOpcode
TWO_NS = NvmeConfig(namespaces=(NamespaceConfig(capacity_bytes=1 << 30),
                                NamespaceConfig(capacity_bytes=1 << 20, lba_bytes=512)))


def st(sc, dnr=True):  # noqa: ANN001, ANN201
    return status(sc, dnr=dnr)


def test_identify_controller_namespace_and_list() -> None:
    h = RawHost(TWO_NS)
    buf = h.plat.memory.alloc(4096)
    assert h.admin_cmd(A.IDENTIFY, prp1=buf.addr, cdw10=Cns.CONTROLLER).status.ok
    v = buf.view
    assert v[IdCtrl.MDTS] == 5
    assert v[IdCtrl.SQES] == 0x66 and v[IdCtrl.CQES] == 0x44
    assert struct.unpack_from("<I", v, IdCtrl.NN)[0] == 2
    assert h.admin_cmd(A.IDENTIFY, nsid=2, prp1=buf.addr, cdw10=Cns.NAMESPACE).status.ok
    assert struct.unpack_from("<Q", v, IdNs.NSZE)[0] == (1 << 20) // 512
    assert v[IdNs.LBAF0 + 2] == 9
    assert h.admin_cmd(A.IDENTIFY, prp1=buf.addr, cdw10=Cns.ACTIVE_NS_LIST).status.ok
    assert struct.unpack_from("<3I", v, 0) == (1, 2, 0)
    assert h.admin_cmd(A.IDENTIFY, nsid=1, prp1=buf.addr, cdw10=Cns.ACTIVE_NS_LIST).status.ok
    assert struct.unpack_from("<2I", v, 0) == (2, 0)
    assert h.admin_cmd(A.IDENTIFY, nsid=3, prp1=buf.addr,
                       cdw10=Cns.NAMESPACE).status == st(GenericSc.INVALID_NAMESPACE)
    assert h.admin_cmd(A.IDENTIFY, prp1=buf.addr, cdw10=0x77).status == st(GenericSc.INVALID_FIELD)


def test_unknown_admin_opcode() -> None:
    h = RawHost()
    assert h.admin_cmd(0x7F).status == st(GenericSc.INVALID_OPCODE)


def test_number_of_queues_feature() -> None:
    h = RawHost(NvmeConfig(namespaces=(NamespaceConfig(capacity_bytes=1 << 20),), max_io_queues=8))
    c = h.set_queues(16)
    assert c.status.ok and c.dw0 == 7 | 7 << 16
    c = h.set_queues(2)
    assert c.dw0 == 1 | 1 << 16
    g = h.admin_cmd(A.GET_FEATURES, cdw10=FeatureId.NUMBER_OF_QUEUES)
    assert g.status.ok and g.dw0 == 1 | 1 << 16
    bad = h.admin_cmd(A.SET_FEATURES, cdw10=FeatureId.NUMBER_OF_QUEUES, cdw11=0xFFFF)
    assert bad.status == st(GenericSc.INVALID_FIELD)
    assert h.admin_cmd(A.GET_FEATURES, cdw10=0x55).status == st(GenericSc.INVALID_FIELD)
    # qid beyond the allocated count
    q = h.plat.memory.alloc(4096)
    c = h.admin_cmd(A.CREATE_IO_CQ, prp1=q.addr, cdw10=3 | 15 << 16, cdw11=1)
    assert c.status == st(CommandSpecificSc.INVALID_QID)


def test_vwc_and_arbitration_features_round_trip() -> None:
    h = RawHost()
    assert h.admin_cmd(A.SET_FEATURES, cdw10=FeatureId.VOLATILE_WRITE_CACHE, cdw11=0).status.ok
    assert h.admin_cmd(A.GET_FEATURES, cdw10=FeatureId.VOLATILE_WRITE_CACHE).dw0 == 0
    assert h.admin_cmd(A.SET_FEATURES, cdw10=FeatureId.ARBITRATION, cdw11=0x03020103).status.ok
    assert h.admin_cmd(A.GET_FEATURES, cdw10=FeatureId.ARBITRATION).dw0 == 0x03020103
    c = h.admin_cmd(A.SET_FEATURES, cdw10=FeatureId.ARBITRATION | 1 << 31, cdw11=0)
    assert c.status == st(CommandSpecificSc.FEATURE_NOT_SAVEABLE)


@pytest.mark.parametrize(("cdw10", "cdw11", "prp_ok", "expect"), [
    (0 | 15 << 16, 1, True, st(CommandSpecificSc.INVALID_QID)),
    (1 | 0 << 16, 1, True, st(CommandSpecificSc.INVALID_QSIZE)),
    (1 | 1024 << 16, 1, True, st(CommandSpecificSc.INVALID_QSIZE)),
    (1 | 15 << 16, 0, True, st(GenericSc.INVALID_FIELD)),
    (1 | 15 << 16, 1 | 500 << 16, True, st(CommandSpecificSc.INVALID_INTERRUPT_VECTOR)),
    (1 | 15 << 16, 1, False, st(GenericSc.INVALID_PRP_OFFSET)),
])
def test_create_cq_invalid_fields(cdw10: int, cdw11: int, prp_ok: bool, expect: object) -> None:
    h = RawHost()
    q = h.plat.memory.alloc(1 << 16)
    c = h.admin_cmd(A.CREATE_IO_CQ, prp1=q.addr + (0 if prp_ok else 512), cdw10=cdw10,
                    cdw11=cdw11)
    assert c.status == expect


def test_create_sq_and_delete_rules() -> None:
    h = RawHost()
    q = h.plat.memory.alloc(1 << 16)
    # SQ before its CQ
    c = h.admin_cmd(A.CREATE_IO_SQ, prp1=q.addr, cdw10=1 | 15 << 16, cdw11=1 | 1 << 16)
    assert c.status == st(CommandSpecificSc.INVALID_CQ)
    c = h.admin_cmd(A.CREATE_IO_SQ, prp1=q.addr, cdw10=1 | 15 << 16, cdw11=1 | 0 << 16)
    assert c.status == st(CommandSpecificSc.INVALID_CQ)
    h.create_pair(1, 16)
    c = h.admin_cmd(A.CREATE_IO_CQ, prp1=q.addr, cdw10=1 | 15 << 16, cdw11=1)
    assert c.status == st(CommandSpecificSc.INVALID_QID)          # exists
    c = h.admin_cmd(A.DELETE_IO_CQ, cdw10=1)
    assert c.status == st(CommandSpecificSc.INVALID_QUEUE_DELETION)
    assert h.admin_cmd(A.DELETE_IO_SQ, cdw10=2).status == st(CommandSpecificSc.INVALID_QID)
    assert h.admin_cmd(A.DELETE_IO_SQ, cdw10=0).status == st(CommandSpecificSc.INVALID_QID)
    assert h.admin_cmd(A.DELETE_IO_SQ, cdw10=1).status.ok
    assert h.admin_cmd(A.DELETE_IO_CQ, cdw10=1).status.ok
    assert h.admin_cmd(A.DELETE_IO_CQ, cdw10=1).status == st(CommandSpecificSc.INVALID_QID)


def test_error_log_records_failures(host: RawHost) -> None:
    h = host
    c = h.cmd(1, IoOpcode.READ, nsid=9)
    assert c.status == st(GenericSc.INVALID_NAMESPACE)
    buf = h.plat.memory.alloc(4096)
    c = h.cmd(1, IoOpcode.READ, nsid=1, prp1=buf.addr, cdw10=(1 << 30) // 4096)
    assert c.status == st(GenericSc.LBA_OUT_OF_RANGE)
    log = h.plat.memory.alloc(4096)
    g = h.admin_cmd(A.GET_LOG_PAGE, prp1=log.addr,
                    cdw10=LogPageId.ERROR_INFORMATION | (2 * 64 // 4 - 1) << 16)
    assert g.status.ok
    newest = ERROR_LOG_STRUCT.unpack_from(log.view, 0)
    older = ERROR_LOG_STRUCT.unpack_from(log.view, 64)
    assert newest[0] == 2 and older[0] == 1
    assert newest[1] == 1 and newest[2] == c.cid
    assert newest[3] == st(GenericSc.LBA_OUT_OF_RANGE).encode()
    assert newest[5] == (1 << 30) // 4096 and newest[6] == 1
    assert older[6] == 9


def test_smart_log_counts_and_partial_reads(host: RawHost) -> None:
    h = host
    buf = h.plat.memory.alloc(4096)
    for lba in range(3):
        assert h.cmd(1, IoOpcode.WRITE, nsid=1, prp1=buf.addr, cdw10=lba).status.ok
    assert h.cmd(1, IoOpcode.READ, nsid=1, prp1=buf.addr).status.ok
    log = h.plat.memory.alloc(4096)
    assert h.admin_cmd(A.GET_LOG_PAGE, prp1=log.addr,
                       cdw10=LogPageId.SMART_HEALTH | (512 // 4 - 1) << 16).status.ok
    u = lambda off: int.from_bytes(log.view[off:off + 16].tobytes(), "little")  # noqa: E731
    assert u(SmartOffset.DATA_UNITS_WRITTEN) == 1       # 12 KiB rounds up to one unit
    assert u(SmartOffset.DATA_UNITS_READ) == 1
    assert u(SmartOffset.HOST_WRITE_COMMANDS) == 3
    assert u(SmartOffset.HOST_READ_COMMANDS) == 1
    assert u(SmartOffset.POWER_CYCLES) == 1
    # partial read at an offset: 16 bytes from DATA_UNITS_WRITTEN
    log.view[:] = 0xAA
    assert h.admin_cmd(A.GET_LOG_PAGE, prp1=log.addr,
                       cdw10=LogPageId.SMART_HEALTH | 3 << 16,
                       cdw12=SmartOffset.HOST_WRITE_COMMANDS).status.ok
    assert int.from_bytes(log.view[:16].tobytes(), "little") == 3
    assert log.view[16] == 0xAA
    assert h.admin_cmd(A.GET_LOG_PAGE, prp1=log.addr, cdw10=0x33 | 3 << 16).status == st(
        CommandSpecificSc.INVALID_LOG_PAGE)
    assert h.admin_cmd(A.GET_LOG_PAGE, prp1=log.addr, cdw10=LogPageId.SMART_HEALTH | 3 << 16,
                       cdw12=2).status == st(GenericSc.INVALID_FIELD)


def test_aer_reports_invalid_doorbells_and_limit(host: RawHost) -> None:
    h = host
    host.sq_doorbell(1, 999)                      # value >= queue size: queued event
    aer = h.submit(0, A.ASYNC_EVENT_REQUEST)
    got = h.wait(0)
    assert got[0].cid == aer and got[0].status.ok
    assert got[0].dw0 == 0 | AsyncErrorInfo.INVALID_DOORBELL_VALUE << 8 | LogPageId.ERROR_INFORMATION << 16
    # the error type is masked until the log is read
    h.submit(0, A.ASYNC_EVENT_REQUEST)
    h.plat.run_for(100_000)
    h.sq_doorbell(9, 1)                           # nonexistent queue
    h.plat.run_for(100_000)
    assert h.reap(0) == []
    log = h.plat.memory.alloc(4096)
    cid = h.submit(0, A.GET_LOG_PAGE, prp1=log.addr, cdw10=LogPageId.ERROR_INFORMATION | 15 << 16)
    got = {c.cid: c for c in h.wait(0, 2)}
    assert got.pop(cid).status.ok
    (event,) = got.values()
    assert event.dw0 & 0xFF00 == AsyncErrorInfo.INVALID_DOORBELL_REGISTER << 8
    for _ in range(5):                             # AERL + 1 = 4 may be outstanding
        h.submit(0, A.ASYNC_EVENT_REQUEST)
    got = h.wait(0)
    assert got[0].status == st(CommandSpecificSc.AER_LIMIT_EXCEEDED)


def test_abort_command_still_in_sq(host: RawHost) -> None:
    h = host
    buf = h.plat.memory.alloc(4096)
    victim = h.queues[1].next_cid
    # Both doorbells ring at the same instant; the admin SQ was rung first, so the Abort runs
    # while the read is submitted but not yet fetched.
    h.submit(0, A.ABORT, cdw10=1 | victim << 16)
    h.submit(1, IoOpcode.READ, nsid=1, prp1=buf.addr)
    c = h.wait(0)[0]
    assert c.status.ok and c.dw0 & 1 == 0
    got = h.wait(1)
    assert got[0].cid == victim and got[0].status == status(GenericSc.ABORT_REQUESTED)
    # nothing to abort: dw0 bit 0 set
    c = h.admin_cmd(A.ABORT, cdw10=1 | 0x1234 << 16)
    assert c.status.ok and c.dw0 & 1 == 1


def test_abort_command_held_in_model(host: RawHost) -> None:
    h = host
    buf = h.plat.memory.alloc(4096)
    assert h.cmd(1, IoOpcode.WRITE, nsid=1, prp1=buf.addr).status.ok
    victim = h.submit(1, IoOpcode.READ, nsid=1, prp1=buf.addr)
    h.plat.run_for(10)
    c = h.admin_cmd(A.ABORT, cdw10=1 | victim << 16)
    assert c.dw0 & 1 == 0
    got = h.wait(1)
    assert got[0].status == status(GenericSc.ABORT_REQUESTED)


def test_abort_limit_exceeded() -> None:
    h = RawHost()
    for _ in range(5):                              # ACL + 1 = 4 Aborts may be in flight
        h.submit(0, A.ABORT, cdw10=1 | 7 << 16)
    got = h.wait(0, 5)
    assert [c.status for c in got].count(st(CommandSpecificSc.ABORT_LIMIT_EXCEEDED)) == 1


def test_doorbell_stride_and_off_slot_write_reports_invalid_register() -> None:
    cfg = NvmeConfig(namespaces=(NamespaceConfig(capacity_bytes=1 << 20),),
                     doorbell_stride_log2=1)
    h = RawHost(cfg)
    h.create_pair(1, 16)
    buf = h.plat.memory.alloc(4096)
    assert h.cmd(1, IoOpcode.READ, nsid=1, prp1=buf.addr).status.ok   # 8-byte stride works
    h.submit(0, A.ASYNC_EVENT_REQUEST)
    h.ctrl.bar0.write32(0x1004, 1)                # between two doorbell slots
    got = h.wait(0)
    assert got[0].dw0 == AsyncErrorInfo.INVALID_DOORBELL_REGISTER << 8 | LogPageId.ERROR_INFORMATION << 16
    assert h.cmd(1, IoOpcode.READ, nsid=1, prp1=buf.addr).status.ok   # still serving


def test_delete_sq_in_same_pass_as_its_commands() -> None:
    h = RawHost()
    h.create_pair(1, 16)
    buf = h.plat.memory.alloc(4096)
    h.submit(0, A.DELETE_IO_SQ, cdw10=1)
    for _ in range(3):
        h.submit(1, IoOpcode.READ, nsid=1, prp1=buf.addr)
    assert h.wait(0)[0].status.ok
    h.plat.run_until_idle()
    assert 1 not in h.ctrl.sqs
    assert h.admin_cmd(A.DELETE_IO_CQ, cdw10=1).status.ok


def test_delete_sq_aborts_commands_held_in_model() -> None:
    h = RawHost()
    h.create_pair(1, 16)
    buf = h.plat.memory.alloc(4096)
    assert h.cmd(1, IoOpcode.WRITE, nsid=1, prp1=buf.addr).status.ok
    cid = h.submit(1, IoOpcode.READ, nsid=1, prp1=buf.addr)
    h.plat.run_for(10)                              # fetched; completion held (LUN busy)
    assert h.admin_cmd(A.DELETE_IO_SQ, cdw10=1).status.ok
    got = h.reap(1)
    assert [(c.cid, c.status) for c in got] == [(cid, status(GenericSc.ABORTED_SQ_DELETION))]
    h.plat.run_until_idle()
    assert h.reap(1) == []
