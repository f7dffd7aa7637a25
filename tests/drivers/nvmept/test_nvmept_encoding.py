"""NVMe passthrough: struct layout against the kernel header, command encoding, /dev dispatch;
device I/O where a /dev/ng* node exists."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pytest

from labrig.drivers.block import open_block_device
from labrig.drivers.nvme import commands as nvme
from labrig.drivers.nvmept._abi import FIELDS, URING_CMD, check_layout
from labrig.drivers.nvmept.device import decode_uring_cmd, encode_uring_cmd, geometry
from labrig.errors import BackendError, UsageError
from labrig.hw.nvme.spec import IoOpcode, NvmeStatus


def test_packed_layout_matches_the_kernel_header() -> None:
    ioctls = check_layout()          # compares every offsetof and the sizeof through cffi
    assert URING_CMD.size == 72
    # _IOWR('N', 0x80 / 0x82, struct nvme_uring_cmd): dir=3, size=72, type='N'
    assert ioctls["io"] == (3 << 30) | (72 << 16) | (ord("N") << 8) | 0x80
    assert ioctls["admin"] == (3 << 30) | (72 << 16) | (ord("N") << 8) | 0x82


def test_read_write_carry_the_builders_dwords() -> None:
    cmd = nvme.read(3, 0x1_0000_0002, 8, fua=True)
    f = decode_uring_cmd(encode_uring_cmd(cmd, addr=0xDEAD000, data_len=8 * 4096))
    assert f["opcode"] == IoOpcode.READ and f["nsid"] == 3
    assert (f["cdw10"], f["cdw11"]) == (2, 1)                  # SLBA low / high
    assert f["cdw12"] & 0xFFFF == 7 and f["cdw12"] >> 30 & 1   # NLB 0-based, FUA bit 30
    assert f["addr"] == 0xDEAD000 and f["data_len"] == 32768
    w = decode_uring_cmd(encode_uring_cmd(nvme.write(1, 5, 1)))
    assert w["opcode"] == IoOpcode.WRITE and w["cdw10"] == 5 and w["cdw12"] == 0


@pytest.mark.parametrize("cmd, opcode", [
    (nvme.flush(1), IoOpcode.FLUSH),
    (nvme.write_zeroes(1, 10, 4, deallocate=True), IoOpcode.WRITE_ZEROES),
    (nvme.dsm(1, [(10, 4)]), IoOpcode.DATASET_MANAGEMENT),
    (nvme.identify(0, 1), 0x06),
])
def test_other_commands_encode_every_dword(cmd, opcode) -> None:
    f = decode_uring_cmd(encode_uring_cmd(cmd))
    assert f["opcode"] == opcode
    for i in range(10, 16):
        assert f[f"cdw{i}"] == getattr(cmd, f"cdw{i}")
    assert [name for name, _ in FIELDS][-1] == "rsvd2" and f["rsvd2"] == 0


def test_status_decoding_is_the_emulated_drivers() -> None:
    # the kernel hands back the 15-bit status field (CQE status >> 1)
    st = NvmeStatus(sct=0, sc=0x80, dnr=True)                  # LBA Out of Range, DNR
    assert NvmeStatus.decode(st.encode() >> 1 << 1) == st


def test_geometry_from_a_fake_sysfs(tmp_path: Path) -> None:
    q = tmp_path / "block" / "nvme2n1" / "queue"
    q.mkdir(parents=True)
    (q / "logical_block_size").write_text("4096\n")
    (q / "max_hw_sectors_kb").write_text("512\n")
    (q.parent / "size").write_text(str(1 << 21) + "\n")       # 1 GiB in 512-byte sectors
    assert geometry("ng2n1", tmp_path) == {"block_size": 4096, "num_blocks": 1 << 18,
                                           "max_transfer_blocks": 128}
    with pytest.raises(BackendError, match="geometry"):
        geometry("ng9n1", tmp_path)
    with pytest.raises(UsageError, match="ngXnY"):
        geometry("nvme0n1", tmp_path)


def test_dev_strings_dispatch_and_name_problems(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot open"):
        open_block_device("/dev/ng97n3")
    with pytest.raises(BackendError, match="cannot open"):
        open_block_device("/dev/labrig-no-such-disk")
    with pytest.raises(UsageError, match="not a block device"):
        open_block_device("/dev/null")


_NG = sorted(glob.glob("/dev/ng*n*"))


@pytest.mark.nvme_passthrough
@pytest.mark.skipif(not _NG, reason="no NVMe generic device /dev/ngXnY on this machine")
def test_passthrough_read_back_what_was_written() -> None:     # pragma: no cover - hardware
    if os.environ.get("LABRIG_NVME_WRITE") != "1":
        pytest.skip("writes to a real namespace need LABRIG_NVME_WRITE=1 (destroys data)")
    with open_block_device(_NG[0]) as dev:
        qp = dev.qpair(4)
        buf = dev.alloc_buffer(dev.block_size)
        buf.view[:] = np.arange(dev.block_size, dtype=np.uint8)
        qp.wait(qp.write(buf, 0, 1))
        out = dev.alloc_buffer(dev.block_size)
        r = qp.read(out, 0, 1)
        qp.wait(r)
        r.result()
        assert np.array_equal(out.view, buf.view)


class _NotANamespace:
    """Enough of NvmePassthruDevice to build a qpair on a regular file's descriptor."""

    direct = True
    read_only = False
    block_size = 4096
    num_blocks = 16
    max_transfer_blocks = 8
    nsid = 1

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.uri = "test:not-a-namespace"
        self._ioctls = check_layout()
        self.zero_block = bytes(self.block_size)

    def clock(self) -> int:
        import time

        return time.monotonic_ns()

    def live_buffers(self) -> list:
        return []


def test_uring_cmd_round_trips_the_ring_and_errors_stay_per_command(tmp_path: Path) -> None:
    """The SQE128/CQE32 path end to end: a regular file rejects URING_CMD (EOPNOTSUPP), the
    error lands on that command, and the ring keeps serving the next ones."""
    from labrig.drivers.filedev._device import FileBuffer
    from labrig.drivers.nvmept.device import PassthruQPair

    path = tmp_path / "f"
    path.write_bytes(bytes(16 * 4096))
    fd = os.open(path, os.O_RDWR)
    try:
        qp = PassthruQPair(_NotANamespace(fd), 4)   # type: ignore[arg-type]
        buf = FileBuffer(2 * 4096)
        reqs = [qp.read(buf, 0, 1), qp.flush(), qp.trim(2, 2), qp.write_zeroes(4, 1)]
        qp.wait(reqs)
        assert all(r.done and r.status in ("ENOTSUP", "EOPNOTSUPP", "EINVAL", "ENOTTY")
                   for r in reqs)
        oob = qp.read(buf, 15, 2)
        qp.wait(oob)
        assert oob.status == "LBA_OUT_OF_RANGE"
        qp.close()
        buf.free()
    finally:
        os.close(fd)
