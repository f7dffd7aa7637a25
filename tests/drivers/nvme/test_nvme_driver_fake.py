"""Driver paths against the register-level test double (``nvme_fake_ctrl``): retries decided
by DNR, lost commands, controller fatal status, asynchronous events, admin queueing."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nvme_fake_ctrl import FakeNvme

from labrig.drivers.nvme import (
    InitState,
    NvmeCommandError,
    NvmeControllerError,
    NvmeCtrlr,
    QPair,
)
from labrig.drivers.nvme import commands as c
from labrig.errors import UsageError
from labrig.hw import Platform
from labrig.hw.nvme import regs
from labrig.hw.nvme.regs import Reg
from labrig.hw.nvme.spec import AsyncEventType, Cns, GenericSc, IoOpcode, NvmeStatus


def setup(**kw: object) -> tuple[Platform, FakeNvme, NvmeCtrlr]:
    plat = Platform(0)
    fake = FakeNvme(plat, **kw)  # type: ignore[arg-type]
    ctrlr = NvmeCtrlr(plat, fake)
    ctrlr.init()
    return plat, fake, ctrlr


def test_init_reads_identify_and_grants() -> None:
    _, fake, ctrlr = setup()
    assert ctrlr.state == InitState.READY
    assert ctrlr.identify.mn == "fake"
    ns = ctrlr.namespaces[1]
    assert (ns.num_blocks, ns.lba_bytes) == (1024, 4096)
    assert ctrlr.num_io_queues == 4
    assert ctrlr.max_transfer_bytes == 32 * 4096           # MDTS=5, MPSMIN=0
    fake.plat.run_until_idle()
    assert len(fake.aers) == 4                             # AERL=3 -> 4 posted
    ctrlr.close()
    assert ctrlr.shutdown_complete
    ctrlr.close()


@pytest.mark.parametrize("nblocks", [1, 2, 3, 32])
@pytest.mark.parametrize("offset", [0, 512, 4092])
def test_read_after_write_across_prp_shapes(nblocks: int, offset: int) -> None:
    plat, fake, ctrlr = setup()
    qp: QPair = ctrlr.create_io_qpair(8)
    n = nblocks * 4096
    wbuf = plat.memory.alloc(n + offset)
    wbuf.view[offset:] = np.random.default_rng(nblocks).integers(0, 256, n, dtype=np.uint8)
    qp.wait(qp.write(wbuf, 10, nblocks, buf_offset=offset))
    rbuf = plat.memory.alloc(n)
    r = qp.read(rbuf, 10, nblocks)
    qp.wait(r)
    r.result()
    assert np.array_equal(rbuf.view, wbuf.view[offset:])
    assert bytes(fake.data[10 * 4096:10 * 4096 + n]) == rbuf.view.tobytes()
    assert ctrlr.prp_pool.pages_free == ctrlr.prp_pool.pages_total
    ctrlr.close()


def test_error_with_dnr_clear_is_retried() -> None:
    plat, fake, ctrlr = setup()
    qp = ctrlr.create_io_qpair(4)
    buf = plat.memory.alloc(4096)
    busy = NvmeStatus(sc=GenericSc.NAMESPACE_NOT_READY)
    fake.inject[IoOpcode.READ] = deque([busy, busy])
    r = qp.read(buf, 0, 1)
    qp.wait(r)
    assert r.ok and r.retries == 2
    fake.inject[IoOpcode.READ] = deque([busy] * 5)
    r = qp.read(buf, 0, 1)
    qp.wait(r)
    assert r.retries == 4 and isinstance(r.error, NvmeCommandError)
    assert r.error.retryable and r.error.status.name == "NAMESPACE_NOT_READY"
    fake.inject[IoOpcode.READ] = deque([NvmeStatus(sc=GenericSc.INTERNAL_ERROR, dnr=True)])
    r = qp.read(buf, 0, 1)
    qp.wait(r)
    assert r.retries == 0 and not r.error.retryable  # type: ignore[union-attr]
    assert "INTERNAL_ERROR" in str(r.error) and "dnr" in str(r.error)
    ctrlr.close()


def test_lost_commands_are_reported_not_waited_for_forever() -> None:
    plat, fake, ctrlr = setup()
    qp = ctrlr.create_io_qpair(4)
    fake.process = False
    qp.read(plat.memory.alloc(4096), 0, 1)
    with pytest.raises(NvmeControllerError, match="no pending work"):
        qp.wait()


def test_fatal_status_during_io_is_named() -> None:
    plat, fake, ctrlr = setup()
    qp = ctrlr.create_io_qpair(4)
    fake.process = False
    qp.read(plat.memory.alloc(4096), 0, 1)
    fake.regs[Reg.CSTS] |= regs.CSTS_CFS
    with pytest.raises(NvmeControllerError, match=r"CFS=1 \(controller fatal status\)"):
        qp.wait()
    ctrlr.close()          # does not hang on the dead controller


def test_timeout_names_the_qpair() -> None:
    plat, fake, ctrlr = setup()
    qp = ctrlr.create_io_qpair(4)
    fake.process = False
    qp.read(plat.memory.alloc(4096), 0, 1)
    plat.schedule(10**12, lambda: None)          # the device looks busy, but never answers
    with pytest.raises(TimeoutError, match=f"qpair {qp.qid}"):
        qp.wait(timeout_ns=1_000_000)


def test_async_event_is_recorded_and_reposted() -> None:
    plat, fake, ctrlr = setup()
    plat.run_until_idle()
    fake.fire_aer(AsyncEventType.SMART_HEALTH | 0x02 << 8 | 0x02 << 16)
    plat.run_until_idle()
    assert ctrlr.process_admin_completions() == 1
    assert [(e.type, e.info, e.log_page) for e in ctrlr.async_events] == [(1, 2, 2)]
    plat.run_until_idle()
    assert len(fake.aers) == 4
    ctrlr.close()


def test_admin_commands_beyond_the_admin_queue_wait_in_software() -> None:
    plat, fake, ctrlr = setup()
    done: list[int] = []
    buf = plat.memory.alloc(4096)
    for i in range(40):
        ctrlr.submit_admin(c.identify(Cns.CONTROLLER, prp1=buf.addr),
                           lambda st, dw0, i=i: done.append(i))
    ctrlr.admin_command(c.identify(Cns.CONTROLLER, prp1=buf.addr))
    assert done == list(range(40))
    with pytest.raises(NvmeCommandError, match="INVALID_OPCODE"):
        ctrlr.admin_command(c.get_log_page(2, 128, prp1=buf.addr))
    ctrlr.close()


@settings(max_examples=25)
@given(depth=st.integers(1, 8),
       writes=st.dictionaries(st.integers(0, 200), st.integers(0, 255), min_size=1, max_size=40),
       batch_every=st.integers(1, 8))
def test_random_writes_then_reads_match_a_dict_model(depth: int, writes: dict[int, int],
                                                     batch_every: int) -> None:
    plat, fake, ctrlr = setup(num_blocks=256)
    qp = ctrlr.create_io_qpair(depth)
    bufs = {}
    items = sorted(writes.items())
    for start in range(0, len(items), batch_every):
        with qp.batch():
            for lba, value in items[start:start + batch_every]:
                bufs[lba] = b = plat.memory.alloc(4096)
                b.view[:] = value
                qp.write(b, lba, 1)
    qp.wait()
    rbufs = {lba: plat.memory.alloc(4096) for lba in writes}
    reqs = [qp.read(rbufs[lba], lba, 1) for lba in writes]
    assert qp.outstanding == len(reqs)
    qp.wait()
    assert all(r.ok for r in reqs)
    assert {lba: int(b.view[0]) for lba, b in rbufs.items()} == writes
    assert all(int(b.view.min()) == int(b.view.max()) for b in rbufs.values())
    ctrlr.close()


def test_interrupt_mode_polls_once_per_interrupt() -> None:
    plat, fake, ctrlr = setup()
    qp = ctrlr.create_io_qpair(8, interrupts=True)
    assert fake.cq_vectors == {qp.qid: qp.qid}
    buf = plat.memory.alloc(4 * 4096)
    reqs = [qp.read(buf, i, 1, buf_offset=4096 * i) for i in range(4)]
    assert qp.poll() == 4                 # slept until the vector fired, then reaped
    assert all(r.ok for r in reqs) and qp.interrupts >= 1
    qp.close()
    assert fake._irq_handlers.get(qp.qid) is None
    ctrlr.close()


def test_numpy_integers_are_accepted_bools_are_not() -> None:
    plat, fake, ctrlr = setup()
    qp = ctrlr.create_io_qpair(4)
    buf = plat.memory.alloc(4096)
    r = qp.read(buf, np.int64(3), np.uint16(1))
    qp.wait(r)
    assert r.ok and r.lba == 3
    with pytest.raises(UsageError, match="lba"):
        qp.read(buf, True, 1)
    with pytest.raises(UsageError, match="nblocks"):
        qp.trim(0, 1.5)  # type: ignore[arg-type]
    ctrlr.close()
