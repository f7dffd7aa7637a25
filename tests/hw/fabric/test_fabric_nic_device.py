"""The NIC device at register level: init segment, command interface, doorbells, the cable;
nothing a driver writes makes the model raise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.verbs._emu import NicDriver
from labrig.errors import ConfigError, UsageError
from labrig.hw import Platform
from labrig.hw.fabric.nic import Cable, NicConfig, NicDevice, NicTiming, regs
from labrig.hw.fabric.nic.regs import CmdOpcode, CmdStatus, Reg


def _ready_nic(**kw):
    plat = Platform(seed=0)
    nic = NicDevice(plat, NicConfig(**kw))
    plat.run_until_idle()
    return plat, nic


def test_initializing_clears_after_init_time():
    plat = Platform()
    nic = NicDevice(plat, NicConfig(timing=NicTiming(init_ns=5000)))
    assert nic.bar0.read32(Reg.INITIALIZING) & regs.INITIALIZING_BIT
    plat.run_until(4999)
    assert nic.bar0.read32(Reg.INITIALIZING) & regs.INITIALIZING_BIT
    plat.run_until(5000)
    assert nic.bar0.read32(Reg.INITIALIZING) == 0


def test_identity_and_capability_registers():
    _, nic = _ready_nic(log_max_qp=10, num_uars=4)
    bar = nic.bar0
    assert bar.read32(Reg.CMDIF_REV) >> 16 == 5
    lo = bar.read32(Reg.CMDQ_ADDR_LO)
    assert regs.field_get(regs.CMDQ_LOG_SIZE, lo) == 5
    assert regs.field_get(regs.CMDQ_LOG_STRIDE, lo) == 6
    assert bar.read32(Reg.CAP_LOG_MAX_QP) == 10 and bar.read32(Reg.CAP_NUM_UARS) == 4
    assert bar.size == regs.bar0_size(4)
    assert bar.read32(Reg.PORT_STATE) == regs.PORT_STATE_ACTIVE


def test_commands_before_init_hca_answer_bad_sys_state():
    plat, nic = _ready_nic()
    drv = NicDriver.__new__(NicDriver)      # a driver that skips INIT_HCA
    drv.dev, drv.plat, drv.bar0 = nic, plat, nic.bar0
    drv.cmdq = plat.memory.alloc(32 * 64)
    drv.inbuf = plat.memory.alloc(4096)
    nic.bar0.write32(Reg.CMDQ_ADDR_HI, drv.cmdq.addr >> 32)
    nic.bar0.write32(Reg.CMDQ_ADDR_LO, drv.cmdq.addr & 0xFFFF_FFFF)
    from labrig.drivers.verbs import VerbsError
    with pytest.raises(VerbsError) as exc:
        drv.cmd(CmdOpcode.ALLOC_PD, regs.OBJ_IN)
    assert exc.value.status == CmdStatus.BAD_SYS_STATE_ERR
    drv.cmd(CmdOpcode.INIT_HCA, regs.OBJ_IN)
    pdn, _ = drv.cmd(CmdOpcode.ALLOC_PD, regs.OBJ_IN)
    assert pdn >= 1


def test_unknown_opcode_and_unknown_objects():
    plat, nic = _ready_nic()
    drv = NicDriver.of(nic)
    from labrig.drivers.verbs import VerbsError
    for op, fields, want in ((0x7FF, {}, CmdStatus.BAD_OP_ERR),
                             (CmdOpcode.DESTROY_QP, {"obj": 99}, CmdStatus.BAD_RES_ERR),
                             (CmdOpcode.DESTROY_MKEY, {"obj": 0x1234}, CmdStatus.BAD_RES_ERR),
                             (CmdOpcode.DEALLOC_PD, {"obj": 7}, CmdStatus.BAD_RES_ERR)):
        with pytest.raises(VerbsError) as exc:
            drv.cmd(op if isinstance(op, CmdOpcode) else _FakeOp(op), regs.OBJ_IN, **fields)
        assert exc.value.status == want
    assert nic.counters["internal_errors"] == 0


class _FakeOp(int):
    """An opcode the PRM does not define, with the ``name`` the driver's messages use."""

    name = "UNDEFINED"


def test_create_cq_with_unmapped_ring_is_bad_param():
    plat, nic = _ready_nic()
    drv = NicDriver.of(nic)
    from labrig.drivers.verbs import VerbsError
    with pytest.raises(VerbsError) as exc:
        drv.cmd(CmdOpcode.CREATE_CQ, regs.CREATE_CQ_IN, log_cq_size=4, cq_addr=0x10,
                dbrec_addr=0x20)
    assert exc.value.status == CmdStatus.BAD_PARAM_ERR


@settings(max_examples=60)
@given(writes=st.lists(st.tuples(st.integers(0, regs.bar0_size(2) + 64), st.sampled_from([4, 8]),
                          st.integers(0, 2**64 - 1)), max_size=40),
       entry=st.binary(min_size=64, max_size=64))
def test_random_mmio_and_command_entries_never_raise(writes, entry):
    plat, nic = _ready_nic(num_uars=2)
    drv = NicDriver.of(nic)               # a working command queue to corrupt
    drv.cmdq.view[:64] = np.frombuffer(entry, np.uint8)
    drv.cmdq.view[63] |= regs.CMD_OWN_HW
    nic.bar0.write32(Reg.CMD_DBELL, 1)
    for off, width, value in writes:
        if off == Reg.CMDQ_ADDR_HI or off == Reg.CMDQ_ADDR_LO:
            continue                       # keep the queue where the driver put it
        (nic.bar0.write32 if width == 4 else nic.bar0.write64)(off, value)
        (nic.bar0.read32 if width == 4 else nic.bar0.read64)(off)
    plat.run_until_idle(max_events=10_000)
    assert nic.counters["internal_errors"] == 0
    assert not drv.cmdq.view[63] & regs.CMD_OWN_HW or plat.events.next_event_ns is not None


def test_duplicate_lid_on_one_wire_is_a_config_error():
    plat = Platform()
    cable = Cable(plat, "a", "b")
    NicDevice(plat, NicConfig(node="a", lid=5), cable)
    with pytest.raises(ConfigError):
        NicDevice(plat, NicConfig(node="b", lid=5), cable)
    with pytest.raises(ConfigError):
        NicDevice(plat, NicConfig(node="c"), cable)          # not a port of the cable


def test_config_validation():
    with pytest.raises(ConfigError):
        NicConfig(mtu=1500)
    with pytest.raises(ConfigError):
        NicTiming(wqe_fetch_ns=-1)


# -- cable -------------------------------------------------------------------------------------
def test_cable_serializes_each_direction_fifo():
    plat = Platform()
    cable = Cable(plat, "a", "b", bandwidth_Bps=1e9, latency_ns=100)   # 1 byte/ns
    got = []
    cable.transfer("a", "b", 1000, lambda t: got.append(("ab1", t)))
    cable.transfer("a", "b", 500, lambda t: got.append(("ab2", t)))
    cable.transfer("b", "a", 200, lambda t: got.append(("ba", t)))
    plat.run_until_idle()
    assert sorted(got, key=lambda x: x[1]) == [("ba", 300), ("ab1", 1100), ("ab2", 1600)]


def test_cable_unplug_fails_in_flight_and_later_transfers():
    plat = Platform()
    cable = Cable(plat, "a", "b", bandwidth_Bps=1e9, latency_ns=10)
    done, failed = [], []
    cable.transfer("a", "b", 10_000, done.append, on_fail=failed.append)
    plat.run_for(100)
    cable.unplug()
    cable.transfer("b", "a", 1, done.append, on_fail=failed.append)
    plat.run_until_idle()
    assert done == [] and len(failed) == 2
    cable.set_link_up("a->b", True)
    cable.transfer("a", "b", 10, done.append)
    plat.run_until_idle()
    assert len(done) == 1


def test_cable_rejects_unknown_ports():
    cable = Cable(Platform(), "a", "b")
    with pytest.raises(UsageError):
        cable.transfer("a", "z", 1, lambda t: None)
    with pytest.raises(UsageError):
        cable.set_link_up("a->z", False)
