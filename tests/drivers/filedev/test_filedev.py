"""The ``file:`` backend, io_uring and thread-pool engines: same data as the emulated NVMe drive,
typed errors."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.block import open_block_device
from labrig.drivers.filedev._device import DirectIoFallbackWarning, STATUS_LBA_OUT_OF_RANGE
from labrig.errors import BackendError, DeviceError, UsageError

BLOCKS = 64
BS = 4096


def _fill(buf, tag: int, nblocks: int) -> None:
    buf.view[:nblocks * BS] = np.frombuffer(
        np.full(nblocks * BS // 4, tag, dtype="<u4").tobytes(), dtype=np.uint8)


op = st.one_of(
    st.tuples(st.just("write"), st.integers(0, BLOCKS - 1), st.integers(1, 8), st.integers(1, 9999)),
    st.tuples(st.just("read"), st.integers(0, BLOCKS - 1), st.integers(1, 8), st.just(0)),
    st.tuples(st.just("trim"), st.integers(0, BLOCKS - 1), st.integers(1, 8), st.just(0)),
    st.tuples(st.just("zeroes"), st.integers(0, BLOCKS - 1), st.integers(1, 8), st.just(0)),
    st.tuples(st.just("flush"), st.just(0), st.just(1), st.just(0)),
    st.tuples(st.just("burst"), st.integers(0, BLOCKS - 16), st.integers(2, 16), st.integers(1, 9999)),
)


def _run(uri: str, ops: list[tuple[str, int, int, int]], depth: int) -> list[bytes]:
    """Apply ``ops`` and return what every read saw (plus a final full read)."""
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DirectIoFallbackWarning)
        dev = open_block_device(uri)
    with dev:
        qp = dev.qpair(depth)
        buf = dev.alloc_buffer(16 * BS)
        for kind, lba, n, tag in ops:
            n = min(n, BLOCKS - lba)
            if kind == "write":
                _fill(buf, tag, n)
                qp.wait(qp.write(buf, lba, n))
            elif kind == "read":
                r = qp.read(buf, lba, n)
                qp.wait(r)
                r.result()
                seen.append(buf.view[:n * BS].tobytes())
            elif kind == "trim":
                qp.wait(qp.trim(lba, n))
            elif kind == "zeroes":
                qp.wait(qp.write_zeroes(lba, n))
            elif kind == "flush":
                qp.wait(qp.flush())
            else:   # burst: n single-block writes to distinct blocks, all in flight at once
                bufs = [dev.alloc_buffer(BS) for _ in range(n)]
                reqs = []
                with qp.batch():
                    for i, b in enumerate(bufs):
                        _fill(b, tag + i, 1)
                        reqs.append(qp.write(b, lba + i, 1))
                qp.wait(reqs)
                for r in reqs:
                    r.result()
        final = dev.alloc_buffer(BLOCKS * BS)
        for lba in range(0, BLOCKS, 8):
            r = qp.read(final, lba, 8, buf_offset=lba * BS)
            qp.wait(r)
            r.result()
        seen.append(final.view.tobytes())
    return seen


@settings(max_examples=15, deadline=None)
@given(ops=st.lists(op, max_size=25), depth=st.sampled_from([1, 4, 32]))
def test_same_data_on_emulated_and_file_backends(tmp_path_factory: pytest.TempPathFactory,
                                                 ops: list, depth: int) -> None:
    d = tmp_path_factory.mktemp("fdev")
    size = BLOCKS * BS
    emu = _run(f"emu:nvme?capacity={size}&lba={BS}", ops, depth)
    uring = _run(f"file:{d / 'a.img'}?size={size}&engine=uring&direct=1", ops, depth)
    threads = _run(f"file:{d / 'b.img'}?size={size}&engine=threads", ops, depth)
    buffered = _run(f"file:{d / 'c.img'}?size={size}&engine=threads&direct=0&workers=2", ops,
                    depth)
    assert emu == uring == threads == buffered


@settings(max_examples=5, deadline=None)
@given(ops=st.lists(op, max_size=15))
def test_sqpoll_ring_returns_the_same_data(tmp_path_factory: pytest.TempPathFactory,
                                            ops: list) -> None:
    d = tmp_path_factory.mktemp("sq")
    size = BLOCKS * BS
    assert (_run(f"emu:nvme?capacity={size}&lba={BS}", ops, 8)
            == _run(f"file:{d / 'a.img'}?size={size}&engine=uring&sqpoll=1", ops, 8))


@pytest.mark.parametrize("engine", ["uring", "threads"])
def test_errors_are_typed_and_the_queue_keeps_working(tmp_path: Path, engine: str) -> None:
    path = tmp_path / "x.img"
    with open_block_device(f"file:{path}?size=1M&engine={engine}") as dev:
        assert dev.engine == engine
        qp = dev.qpair(4)
        buf = dev.alloc_buffer(2 * BS)
        r = qp.read(buf, dev.num_blocks - 1, 2)
        qp.wait(r)
        assert isinstance(r.error, DeviceError) and r.status == STATUS_LBA_OUT_OF_RANGE
        with pytest.raises(DeviceError, match="LBA_OUT_OF_RANGE"):
            r.result()
        if dev.direct:
            with pytest.raises(UsageError, match="multiple of 512 bytes under O_DIRECT"):
                qp.read(buf, 0, 1, buf_offset=100)
        with pytest.raises(UsageError, match="outside the"):
            qp.read(buf, 0, 3)
        os.truncate(path, BS)                      # the file shrinks underneath the device
        r = qp.read(buf, 4, 1)
        qp.wait(r)
        assert r.status == "EIO" and "short read" in str(r.error)
        r = qp.read(buf, 0, 1)                     # the queue pair still works
        qp.wait(r)
        r.result()
    with open_block_device(f"file:{path}?ro=1&engine={engine}") as ro:
        qp = ro.qpair(2)
        buf = ro.alloc_buffer(BS)
        r = qp.read(buf, 0, 1)
        qp.wait(r)
        r.result()
        w = qp.write(buf, 0, 1)
        qp.wait(w)
        assert w.status == "EBADF" and not w.ok


def test_sizes_and_options(tmp_path: Path) -> None:
    p = tmp_path / "grow.img"
    p.write_bytes(b"\x01" * BS)
    with open_block_device(f"file:{p}?size=64K") as dev:   # grown, sparse
        assert dev.num_blocks == 16 and p.stat().st_size == 64 << 10
    with open_block_device(f"file:{p}?lba=512") as dev:    # existing size used
        assert dev.num_blocks == 128 and dev.block_size == 512
    bad = {
        f"file:{tmp_path / 'missing.img'}": "no such file",
        f"file:{p}?bogus=1": "unknown option",
        f"file:{p}?lba=1024": "must be one of 512, 4096",
        f"file:{p}?direct=yes": "must be 0 or 1",
        f"file:{p}?engine=spdk": "must be one of auto, uring, threads",
        f"file:{p}?sqpoll=2": "must be 0 or 1",
        f"file:{p}?engine=threads&sqpoll=1": "needs the io_uring engine",
        f"file:{p}?workers=0": "must be in 1..64",
        f"file:{p}?size=12Q": "K/M/G/T",
        "file:": "no path",
    }
    for uri, msg in bad.items():
        with pytest.raises(UsageError, match=msg):
            open_block_device(uri)
    with pytest.raises(UsageError, match="no 4096-byte block"):
        open_block_device(f"file:{tmp_path / 'tiny.img'}?size=100")


def test_direct_refused_by_the_file_system() -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm tmpfs to test a file system without O_DIRECT")
    probe = shm / f"labrig-odirect-{os.getpid()}"
    try:
        try:
            fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
        except OSError:
            fd = -1
        if fd >= 0:
            os.close(fd)
            pytest.skip("tmpfs on this kernel supports O_DIRECT (Linux >= 6.6): no file "
                        "system here refuses it")
        with pytest.warns(DirectIoFallbackWarning, match="running buffered"):
            dev = open_block_device(f"file:{probe}?size=64K")
        assert not dev.direct
        dev.close()
        with pytest.raises(BackendError, match="refuses O_DIRECT"):
            open_block_device(f"file:{probe}?size=64K&direct=1")
    finally:
        probe.unlink(missing_ok=True)


def test_without_io_uring_auto_falls_back_with_one_warning(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from labrig.drivers.filedev._device import UringFallbackWarning
    from labrig.drivers.uring import qpair as uq
    from labrig.errors import BackendUnavailable

    monkeypatch.setattr(uq, "uring_unavailable_reason",
                        lambda: "io_uring is disabled (sysctl kernel.io_uring_disabled=2)")
    with pytest.warns(UringFallbackWarning, match="io_uring_disabled=2.*thread-pool") as rec:
        dev = open_block_device(f"file:{tmp_path / 'f.img'}?size=64K")
    assert len(rec) == 1
    with dev:
        assert dev.engine == "threads"
        qp = dev.qpair(2)
        buf = dev.alloc_buffer(BS)
        qp.wait(qp.write(buf, 0, 1))
    with pytest.raises(BackendUnavailable, match="io_uring_disabled"):
        open_block_device(f"file:{tmp_path / 'f.img'}?engine=uring")
