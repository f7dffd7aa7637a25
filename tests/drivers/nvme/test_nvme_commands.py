"""Command encodings: every builder's fields land where Base spec 2.0 section 4.1 and the
command's own section put them, checked by decoding through ``spec.SQE_STRUCT``."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labrig.drivers.nvme import commands as c
from labrig.drivers.nvme.commands import NvmeCommand
from labrig.errors import UsageError
from labrig.hw.nvme.spec import (
    DSM_RANGE_STRUCT,
    SQE_BYTES,
    SQE_STRUCT,
    AdminOpcode,
    Cns,
    FeatureId,
    IoOpcode,
)

FIELDS = ("opc", "flags", "cid", "nsid", "cdw2", "cdw3", "mptr", "prp1", "prp2",
          "cdw10", "cdw11", "cdw12", "cdw13", "cdw14", "cdw15")


def decode(cmd: NvmeCommand) -> dict[str, int]:
    raw = cmd.to_bytes()
    assert len(raw) == SQE_BYTES
    return dict(zip(FIELDS, SQE_STRUCT.unpack(raw), strict=True))


u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, (1 << 64) - 1)
commands = st.builds(
    NvmeCommand, opc=st.integers(0, 0xFF), cid=st.integers(0, 0xFFFF), nsid=u32, cdw2=u32,
    cdw3=u32, mptr=u64, prp1=u64, prp2=u64, cdw10=u32, cdw11=u32, cdw12=u32, cdw13=u32,
    cdw14=u32, cdw15=u32, fuse=st.integers(0, 3), psdt=st.integers(0, 3))


@given(commands)
def test_command_round_trips_through_bytes_and_repr(cmd: NvmeCommand) -> None:
    assert NvmeCommand.from_bytes(cmd.to_bytes()) == cmd
    assert eval(repr(cmd), {"NvmeCommand": NvmeCommand}) == cmd  # noqa: S307


@given(commands, st.integers(0, 7))
def test_pack_into_places_entry_at_offset(cmd: NvmeCommand, slot: int) -> None:
    buf = bytearray(8 * SQE_BYTES)
    cmd.pack_into(memoryview(buf), slot * SQE_BYTES)
    assert bytes(buf[slot * SQE_BYTES:(slot + 1) * SQE_BYTES]) == cmd.to_bytes()
    assert NvmeCommand.unpack_from(buf, slot * SQE_BYTES) == cmd


def test_cdw0_layout_fuse_psdt_cid() -> None:
    raw = NvmeCommand(opc=0x02, cid=0xBEEF, fuse=1, psdt=2).to_bytes()
    cdw0 = int.from_bytes(raw[0:4], "little")
    assert cdw0 & 0xFF == 0x02
    assert (cdw0 >> 8) & 0x3 == 1
    assert (cdw0 >> 14) & 0x3 == 2
    assert cdw0 >> 16 == 0xBEEF


@given(nsid=st.integers(1, 0xFFFF_FFFE), slba=st.integers(0, (1 << 48)),
       nblocks=st.integers(1, 1 << 16), fua=st.booleans())
def test_read_write_fields(nsid: int, slba: int, nblocks: int, fua: bool) -> None:
    for builder, opc in ((c.read, IoOpcode.READ), (c.write, IoOpcode.WRITE)):
        d = decode(builder(nsid, slba, nblocks, fua=fua, prp1=0x1000, prp2=0x2000))
        assert d["opc"] == opc and d["nsid"] == nsid
        assert d["cdw10"] | d["cdw11"] << 32 == slba
        assert d["cdw12"] & 0xFFFF == nblocks - 1
        assert bool(d["cdw12"] >> 30 & 1) == fua
        assert (d["prp1"], d["prp2"]) == (0x1000, 0x2000)


def test_write_zeroes_flush_dsm() -> None:
    d = decode(c.write_zeroes(1, 10, 3, deallocate=True))
    assert d["opc"] == IoOpcode.WRITE_ZEROES and d["cdw12"] == 2 | 1 << 25
    d = decode(c.flush(0xFFFF_FFFF))
    assert d["opc"] == IoOpcode.FLUSH and d["nsid"] == 0xFFFF_FFFF
    ranges = [(5, 7), (1 << 40, 1)]
    d = decode(c.dsm(1, ranges, prp1=0x3000))
    assert d["opc"] == IoOpcode.DATASET_MANAGEMENT
    assert d["cdw10"] == 1 and d["cdw11"] == 1 << 2 and d["prp1"] == 0x3000
    raw = c.dsm_range_bytes(ranges)
    assert [DSM_RANGE_STRUCT.unpack_from(raw, 16 * i)[1:] for i in range(2)] == \
        [(7, 5), (1, 1 << 40)]


def test_admin_builders() -> None:
    d = decode(c.identify(Cns.NAMESPACE, 3, cntid=7, prp1=0x5000))
    assert (d["opc"], d["nsid"], d["cdw10"], d["prp1"]) == \
        (AdminOpcode.IDENTIFY, 3, 7 << 16, 0x5000)
    d = decode(c.create_io_cq(4, 256, prp1=0x8000, ien=True, iv=2))
    assert d["opc"] == AdminOpcode.CREATE_IO_CQ
    assert d["cdw10"] == 4 | 255 << 16 and d["cdw11"] == 0b11 | 2 << 16
    d = decode(c.create_io_sq(4, 256, 4, prp1=0x9000, qprio=2))
    assert d["opc"] == AdminOpcode.CREATE_IO_SQ
    assert d["cdw10"] == 4 | 255 << 16 and d["cdw11"] == 1 | 2 << 1 | 4 << 16
    assert decode(c.delete_io_sq(9))["cdw10"] == 9
    assert decode(c.delete_io_cq(9))["opc"] == AdminOpcode.DELETE_IO_CQ
    d = decode(c.set_num_queues(8, 4))
    assert d["opc"] == AdminOpcode.SET_FEATURES
    assert d["cdw10"] == FeatureId.NUMBER_OF_QUEUES and d["cdw11"] == 7 | 3 << 16
    assert c.num_queues_granted(d["cdw11"]) == (8, 4)
    d = decode(c.get_features(FeatureId.ARBITRATION, sel=3))
    assert d["cdw10"] == 1 | 3 << 8
    d = decode(c.set_features(FeatureId.VOLATILE_WRITE_CACHE, 1, save=True))
    assert d["cdw10"] == 6 | 1 << 31 and d["cdw11"] == 1
    d = decode(c.abort(2, 0x1234))
    assert d["cdw10"] == 2 | 0x1234 << 16
    assert decode(c.async_event_request())["opc"] == AdminOpcode.ASYNC_EVENT_REQUEST


@given(numd=st.integers(1, 1 << 32), offset=st.integers(0, 1 << 40).map(lambda x: x * 4))
def test_get_log_page_numd_split(numd: int, offset: int) -> None:
    d = decode(c.get_log_page(0x02, numd, offset, rae=True))
    assert d["cdw10"] & 0xFF == 0x02 and d["cdw10"] >> 15 & 1 == 1
    assert (d["cdw10"] >> 16 | (d["cdw11"] & 0xFFFF) << 16) + 1 == numd
    assert d["cdw12"] | d["cdw13"] << 32 == offset


@pytest.mark.parametrize(("call", "arg"), [
    (lambda: c.read(0, 0, 1), "nsid"),
    (lambda: c.read(1, -1, 1), "slba"),
    (lambda: c.write(1, 0, 0), "nblocks"),
    (lambda: c.write(1, 0, (1 << 16) + 1), "nblocks"),
    (lambda: c.create_io_cq(0, 16, prp1=0), "qid"),
    (lambda: c.create_io_sq(1, 1, 1, prp1=0), "qsize"),
    (lambda: c.get_log_page(2, 0), "numd"),
    (lambda: c.get_log_page(2, 1, 3), "offset"),
    (lambda: c.dsm(1, []), "ranges"),
    (lambda: c.dsm(1, [(0, 0)]), "ranges[0].nblocks"),
    (lambda: c.identify(256), "cns"),
    (lambda: c.abort(1, 1 << 16), "cid"),
    (lambda: c.read(1, True, 1), "slba"),
])
def test_builders_reject_bad_arguments_by_name(call, arg: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="^" + re.escape(arg) + "[=:]"):
        call()
