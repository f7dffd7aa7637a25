"""I/O through ``emu:nvme``: the driver against the emulated controller, registers only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.block import IoRequest, open_block_device
from labrig.drivers.nvme import NvmeCommandError, QPair
from labrig.drivers.nvme.emu import EmuNvmeDevice, emu_available
from labrig.errors import UsageError
from labrig.hw.nvme import regs
from labrig.hw.nvme.regs import Reg

URI = "emu:nvme?capacity=16M&lba=4096"
_reason = emu_available()
pytestmark = pytest.mark.skipif(_reason is not None, reason=str(_reason))


@pytest.fixture
def dev() -> Iterator[EmuNvmeDevice]:
    d = open_block_device(URI)
    assert isinstance(d, EmuNvmeDevice)
    with d:
        yield d


def pattern(nbytes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)


def test_block_device_facts(dev: EmuNvmeDevice) -> None:
    assert dev.uri == URI
    assert dev.block_size == 4096
    assert dev.num_blocks == (16 << 20) // 4096
    assert 1 <= dev.max_transfer_blocks <= 1 << 16
    assert dev.max_queue_depth >= 1
    buf = dev.alloc_buffer(100)
    assert buf.nbytes == 4096 and buf.addr % 4096 == 0
    assert dev.platform.now_ns == dev.clock() > 0     # init took virtual time
    assert dev.controller is not None


@settings(max_examples=15)
@given(lba=st.integers(0, 4000), nblocks=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       fua=st.booleans())
def test_read_after_write_returns_the_data(lba: int, nblocks: int, seed: int, fua: bool) -> None:
    with open_block_device(URI) as d:
        nblocks = min(nblocks, d.max_transfer_blocks)
        qp = d.qpair(8)
        wbuf = d.alloc_buffer(nblocks * d.block_size)
        wbuf.view[:] = pattern(wbuf.nbytes, seed)
        w = qp.write(wbuf, lba, nblocks, fua=fua)
        qp.wait(w)
        w.result()
        rbuf = d.alloc_buffer(nblocks * d.block_size)
        r = qp.read(rbuf, lba, nblocks)
        qp.wait()
        assert r.result() is r and r.latency_ns > 0
        assert np.array_equal(rbuf.view, wbuf.view)


def test_unaligned_buffer_offset_and_prp_list_transfer() -> None:
    with open_block_device("emu:nvme?capacity=8M&lba=512") as d:
        qp = d.qpair()
        nblocks = min(200, d.max_transfer_blocks)          # ~100 KiB: a PRP list
        n = nblocks * 512
        wbuf = d.alloc_buffer(n + 512)
        wbuf.view[512:512 + n] = pattern(n, 1)
        qp.wait(qp.write(wbuf, 7, nblocks, buf_offset=512))
        rbuf = d.alloc_buffer(n + 4096)
        r = qp.read(rbuf, 7, nblocks, buf_offset=1024)
        qp.wait(r)
        r.result()
        assert np.array_equal(rbuf.view[1024:1024 + n], wbuf.view[512:512 + n])


def test_lba_out_of_range_is_a_typed_error_with_the_spec_name(dev: EmuNvmeDevice) -> None:
    qp = dev.qpair(4)
    buf = dev.alloc_buffer(4096)
    seen: list[IoRequest] = []
    req = qp.read(buf, dev.num_blocks, 1, callback=seen.append)
    qp.wait(req)
    assert seen == [req] and req.done and not req.ok
    with pytest.raises(NvmeCommandError, match="LBA_OUT_OF_RANGE") as info:
        req.result()
    err = info.value
    assert err.status.name == "LBA_OUT_OF_RANGE"
    assert err.retryable == (not err.status.dnr)
    assert f"lba={dev.num_blocks}" in str(err)
    # the qpair still works afterwards
    qp.wait(ok := qp.read(buf, 0, 1))
    ok.result()


def test_bad_arguments_raise_usage_errors(dev: EmuNvmeDevice) -> None:
    qp = dev.qpair(4)
    buf = dev.alloc_buffer(4096)
    with pytest.raises(UsageError, match="nblocks"):
        qp.read(buf, 0, dev.max_transfer_blocks + 1)
    with pytest.raises(UsageError, match="buf_offset"):
        qp.read(buf, 0, 2)
    with pytest.raises(UsageError, match="lba"):
        qp.write(buf, -1, 1)
    with pytest.raises(UsageError, match="not a DMA buffer"):
        qp.read(bytearray(4096), 0, 1)
    with pytest.raises(UsageError, match="depth"):
        dev.qpair(dev.max_queue_depth + 1)


def test_full_queue_keeps_requests_in_software_queue(dev: EmuNvmeDevice) -> None:
    qp = dev.qpair(4)
    bufs = [dev.alloc_buffer(4096) for _ in range(20)]
    for i, b in enumerate(bufs):
        b.view[:] = i
    reqs = [qp.write(b, i, 1) for i, b in enumerate(bufs)]
    assert qp.outstanding == 20 and qp.queued == 16
    qp.wait()
    assert all(r.ok for r in reqs) and qp.outstanding == 0
    rbuf = dev.alloc_buffer(20 * 4096)
    qp.wait(qp.read(rbuf, 0, 20))
    assert [int(rbuf.view[i * 4096]) for i in range(20)] == list(range(20))


class CountingBar:
    """Wraps a BAR and counts writes per offset."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.writes: dict[int, int] = {}

    def write32(self, off: int, value: int) -> None:
        self.writes[off] = self.writes.get(off, 0) + 1
        self.bar.write32(off, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bar, name)


def test_batch_rings_the_sq_doorbell_once(dev: EmuNvmeDevice) -> None:
    counting = CountingBar(dev.ctrlr.bar0)
    dev.ctrlr.bar0 = counting
    qp = dev.qpair(16)
    sq_db = regs.sq_tdbl_offset(qp.qid, dev.ctrlr.dstrd)
    buf = dev.alloc_buffer(8 * 4096)
    before = counting.writes.get(sq_db, 0)
    with qp.batch():
        reqs = [qp.read(buf, i, 1, buf_offset=i * 4096) for i in range(8)]
        assert counting.writes.get(sq_db, 0) == before
    assert counting.writes[sq_db] == before + 1
    qp.wait()
    assert all(r.ok for r in reqs)
    qp.read(buf, 0, 1)
    assert counting.writes[sq_db] == before + 2          # outside a batch: one per command


def test_callbacks_may_submit(dev: EmuNvmeDevice) -> None:
    qp = dev.qpair(2)
    buf = dev.alloc_buffer(4096)
    done: list[int] = []

    def chain(req: IoRequest) -> None:
        req.result()
        done.append(req.lba)
        if req.lba < 9:
            qp.read(buf, req.lba + 1, 1, callback=chain)

    qp.read(buf, 0, 1, callback=chain)
    qp.wait()
    assert done == list(range(10))


def test_close_from_callback_takes_effect_when_poll_returns(dev: EmuNvmeDevice) -> None:
    qp = dev.qpair(4)
    buf = dev.alloc_buffer(4096)
    reqs = [qp.read(buf, i, 1) for i in range(3)]

    def closer(req: IoRequest) -> None:
        qp.close()
        assert not qp.closed                 # deferred while inside poll
        with pytest.raises(UsageError, match="closed"):
            qp.read(buf, 0, 1)

    last = qp.read(buf, 5, 1, callback=closer)
    while not qp.closed:
        qp.poll()
    assert all(r.ok for r in [*reqs, last])
    with pytest.raises(UsageError, match="closed"):
        qp.poll()
    qp.close()                               # idempotent
    assert qp not in dev.ctrlr.qpairs


def test_flush_write_zeroes_trim(dev: EmuNvmeDevice) -> None:
    qp = dev.qpair(8)
    buf = dev.alloc_buffer(4 * 4096)
    buf.view[:] = 0xAB
    qp.wait(qp.write(buf, 100, 4))
    qp.wait(f := qp.flush())
    f.result()
    qp.wait(z := qp.write_zeroes(100, 2))
    z.result()
    qp.wait(t := qp.trim(102, 2))
    t.result()
    buf.view[:] = 0xFF
    qp.wait(qp.read(buf, 100, 4))
    assert not buf.view.any()


def test_queue_ids_are_reused_after_close() -> None:
    with EmuNvmeDevice(queues=2) as d:
        a, b = d.qpair(2), d.qpair(2)
        assert {a.qid, b.qid} == {1, 2}
        with pytest.raises(UsageError, match="in use"):
            d.qpair(2)
        a.close()
        c = d.qpair(2)
        assert c.qid == a.qid


def test_close_shuts_down_children_first() -> None:
    d = EmuNvmeDevice()
    qp: QPair = d.qpair(4)
    buf = d.alloc_buffer(4096)
    req = qp.read(buf, 0, 1)
    d.close()
    assert req.ok and qp.closed
    assert d.ctrlr.shutdown_complete
    csts = d.controller.bar0.read32(Reg.CSTS)
    assert regs.field_get(regs.CSTS_SHST, csts) == regs.SHST_COMPLETE
    d.close()
    with pytest.raises(UsageError, match="closed"):
        d.qpair()


@pytest.mark.parametrize(("uri", "word"), [
    ("emu:nvme?bogus=1", "bogus"),
    ("emu:nvme?lba=1000", "lba"),
    ("emu:nvme?capacity=lots", "capacity"),
    ("emu:nvme?qd=0", "qd"),
    ("emu:nvme?qd=100000", "qd"),
    ("emu:ssd", "ssd"),
])
def test_device_string_errors_name_the_option(uri: str, word: str) -> None:
    with pytest.raises(UsageError, match=word):
        open_block_device(uri)


def test_same_seed_same_virtual_time() -> None:
    def run() -> list[int]:
        with open_block_device("emu:nvme?capacity=16M&seed=3") as d:
            qp = d.qpair(8)
            buf = d.alloc_buffer(4096)
            rng = np.random.default_rng(0)
            reqs = [qp.read(buf, int(x), 1) for x in rng.integers(0, d.num_blocks, 32)]
            qp.wait()
            return [r.latency_ns for r in reqs]
    assert run() == run()
