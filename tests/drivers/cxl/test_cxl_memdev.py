"""Register driver: enumeration, mailbox commands and return codes, decoder checks."""

import struct

import pytest

from labrig.drivers.cxl import CxlMemdev, describe_backends, open_cxl
from labrig.errors import DeviceError, UsageError
from labrig.hw import Platform
from labrig.hw.cxl import CxlPod, CxlPodConfig
from labrig.hw.cxl import regs as R

UNIT = R.HDM_ALIGN_BYTES


@pytest.fixture
def drv():
    plat = Platform(seed=0)
    pod = CxlPod(plat, CxlPodConfig(hosts=4, capacity_bytes=2 * UNIT, local_dram_bytes=4096))
    return CxlMemdev(plat, pod.device.bar0), pod


def test_identify_partition_health(drv):
    d, pod = drv
    ident = d.identify()
    assert ident.total_bytes == ident.volatile_bytes == 2 * UNIT
    assert ident.fw_revision.startswith("labrig")
    assert d.partition_info()["active_volatile"] == 2 * UNIT
    assert d.health_info()["temperature_c"] == 35
    assert d.pod_layout().heads == 4


def test_cel_lists_supported_commands(drv):
    d, _ = drv
    effects = d.command_effects()
    for op in (R.Opcode.IDENTIFY, R.Opcode.GET_PARTITION_INFO, R.Opcode.GET_HEALTH_INFO,
               R.Opcode.GET_SUPPORTED_LOGS, R.Opcode.GET_LOG):
        assert op in effects


@pytest.mark.parametrize("opcode,payload,rc", [
    (0x1234, b"", R.ReturnCode.UNSUPPORTED),
    (R.Opcode.IDENTIFY, b"\0" * 4, R.ReturnCode.INVALID_PAYLOAD_LENGTH),
    (R.Opcode.GET_LOG, b"\0" * 24, R.ReturnCode.INVALID_INPUT),          # unknown UUID
    (R.Opcode.GET_LOG, R.CEL_UUID + struct.pack("<II", 0, 0), R.ReturnCode.INVALID_INPUT),
    (R.Opcode.GET_LOG, R.CEL_UUID + struct.pack("<II", 4, 4096), R.ReturnCode.INVALID_INPUT),
    (R.Opcode.GET_LOG, R.CEL_UUID, R.ReturnCode.INVALID_PAYLOAD_LENGTH),
])
def test_bad_commands_return_spec_codes(drv, opcode, payload, rc):
    d, _ = drv
    with pytest.raises(DeviceError) as ei:
        d.mbox_send(opcode, payload)
    assert ei.value.status == rc
    assert str(rc) in str(ei.value)


def test_mailbox_timeout_is_virtual(drv):
    d, pod = drv
    t0 = pod.plat.now_ns
    with pytest.raises(DeviceError, match="timeout"):
        d.mbox_send(R.Opcode.IDENTIFY, timeout_ns=10)
    assert pod.plat.now_ns - t0 < pod.cfg.timing.mailbox_ns
    pod.plat.run_until_idle()
    assert d.identify().total_bytes == 2 * UNIT


def test_mailbox_interrupt(drv):
    d, pod = drv
    seen = []
    pod.device.on_interrupt(0, seen.append)
    pod.device.bar0.write32(R.MBOX_CTRL_OFFSET, R.MBOX_CTRL_DOORBELL_IRQ_EN)
    d.identify()
    pod.plat.run_until_idle()
    assert seen == [0]


@pytest.mark.parametrize("kw,msg", [
    (dict(base=UNIT + 4096, size=UNIT), "256 MiB aligned"),
    (dict(base=UNIT, size=UNIT // 2), "multiple of 256 MiB"),
    (dict(base=UNIT, size=UNIT, ways=2), "needs 2 targets"),
    (dict(base=UNIT, size=UNIT, ways=5), "interleave ways 5"),
    (dict(base=UNIT, size=UNIT, granularity=300), "granularity 300"),
])
def test_decoder_checks(drv, kw, msg):
    d, _ = drv
    with pytest.raises(UsageError, match=msg):
        d.commit_decoder(0, **kw)


def test_decoder_order_overlap_capacity(drv):
    d, pod = drv
    with pytest.raises(UsageError, match="decoder 0 must be committed first"):
        d.commit_decoder(1, 4 * UNIT, UNIT)
    d.commit_decoder(0, 4 * UNIT, UNIT)
    with pytest.raises(UsageError, match="already committed"):
        d.commit_decoder(0, 4 * UNIT, UNIT)
    with pytest.raises(UsageError, match="overlaps decoder 0"):
        d.commit_decoder(1, 4 * UNIT, UNIT)
    with pytest.raises(DeviceError, match="commit error"):
        d.commit_decoder(1, 8 * UNIT, 2 * UNIT)        # DPA beyond capacity
    assert "capacity" in pod.device.hdm.dec[1].error
    d.reset_decoder(1)
    d.commit_decoder(1, 8 * UNIT, UNIT)
    with pytest.raises(UsageError, match="higher-numbered"):
        d.reset_decoder(0)
    port = pod.port(0)
    port.store(8 * UNIT, b"hi")
    assert pod.media[UNIT:UNIT + 2].tobytes() == b"\0\0"   # cached, not yet written back
    port.clflush(8 * UNIT, 2)
    assert pod.media[UNIT:UNIT + 2].tobytes() == b"hi"     # decoder 1 -> DPA 256 MiB


def test_open_cxl_and_describe():
    with open_cxl("emu:cxl", hosts=2) as mem:
        assert mem.coherent_size + mem.noncoherent_size == mem.size
    names = [n for n, _, _ in describe_backends()]
    assert "emu:cxl" in names and "shm:NAME" in names
    with pytest.raises(UsageError, match="expected emu:cxl"):
        open_cxl("nvme:0")
