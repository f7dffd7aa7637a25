"""The exported NVMe state machine, run against the emulated controller and its driver."""

from hypothesis import settings

from labrig.testing.nvme import NamespaceModel, NvmeStateMachine

TestNvmeStateMachine = NvmeStateMachine.TestCase
TestNvmeStateMachine.settings = settings(max_examples=25, stateful_step_count=30,
                                         deadline=None)


def test_reference_model_power_loss_rules() -> None:
    m = NamespaceModel(4, 4)
    m.write(0, b"AAAA")
    m.flush()
    m.write(0, b"BBBB")
    m.write(1, b"CCCC", fua=True)
    m.deallocate(2, 1)
    assert m.expected(0, 3) == b"BBBBCCCC\x00\x00\x00\x00"
    assert m.allowed_after_power_loss(0) == [b"AAAA", b"BBBB"]
    assert m.allowed_after_power_loss(1) == [b"CCCC"]
    device = {0: b"AAAA", 1: b"CCCC", 2: b"\x00" * 4}
    assert m.power_loss(device.__getitem__) == []
    assert m.expected(0, 1) == b"AAAA"
    m.write(3, b"DDDD")
    assert m.power_loss({0: b"AAAA", 1: b"CCCC", 2: bytes(4), 3: b"DDDA"}.__getitem__) == [3]
