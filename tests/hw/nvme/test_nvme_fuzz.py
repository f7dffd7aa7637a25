"""Nothing a driver writes makes the model raise (DESIGN.md, "The device contract"): random
register writes, doorbells and 64-byte SQEs, then the platform runs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from nvme_host import RawHost

from labrig.hw.nvme import NamespaceConfig, NvmeConfig
from labrig.hw.nvme.regs import Reg
from labrig.hw.nvme.spec import SQE_BYTES, SQE_STRUCT, AdminOpcode, IoOpcode

CFG = NvmeConfig(namespaces=(NamespaceConfig(capacity_bytes=1 << 20),
                             NamespaceConfig(capacity_bytes=1 << 20, lba_bytes=512)),
                 max_io_queues=4, max_queue_entries=64)

reg_offsets = st.sampled_from([int(r) for r in Reg] + [0x2C, 0x34, 0x40, 0xFFC])
DATA_BASE = 0x1_0000_0000        # first bus address HostMemory hands out (buffers live near it)
u32 = st.integers(0, 2**32 - 1)
small = st.integers(0, 70)
addr = st.one_of(st.integers(0, 2**64 - 1),
                 st.integers(DATA_BASE, DATA_BASE + (1 << 20)).map(lambda a: a & ~3))
#: SQEs that look like real commands (known opcode, plausible fields), so handlers go deep.
structured_sqe = st.builds(
    lambda opc, nsid, p1, p2, c10, c11, c12, c13: SQE_STRUCT.pack(
        opc, 0, 0, nsid, 0, 0, 0, p1, p2, c10, c11, c12, c13, 0, 0),
    st.sampled_from([int(o) for o in AdminOpcode] + [int(o) for o in IoOpcode]),
    st.one_of(st.integers(0, 3), st.just(0xFFFF_FFFF), u32), addr, addr,
    st.one_of(small, u32), st.one_of(small, u32), st.one_of(small, u32), st.one_of(small, u32))

actions = st.one_of(
    st.tuples(st.just("sqe"), st.sampled_from([0, 1]), structured_sqe),
    st.tuples(st.just("reg32"), reg_offsets, st.integers(0, 2**32 - 1)),
    st.tuples(st.just("reg64"), st.sampled_from([0, 8, 0x28, 0x30]), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("db"), st.integers(0x1000, 0x1000 + 16 * 4 - 4).map(lambda o: o & ~3),
              st.integers(0, 2**32 - 1)),
    st.tuples(st.just("sqe"), st.sampled_from([0, 1]), st.binary(min_size=64, max_size=64)),
    st.tuples(st.just("run"), st.integers(0, 3_000_000), st.just(0)),
)



@given(st.lists(actions, max_size=40), st.booleans())
def test_random_driver_input_never_raises(acts, with_io) -> None:  # noqa: ANN001
    h = RawHost(CFG)
    if with_io:
        h.create_pair(1, size=16)
    # data buffers the fuzzed PRPs may (or may not) hit
    h.plat.memory.alloc(1 << 16)
    for kind, a, b in acts:
        if kind == "reg32":
            h.ctrl.bar0.write32(a, b)
        elif kind == "reg64":
            h.ctrl.bar0.write64(a, b)
        elif kind == "db":
            h.ctrl.bar0.write32(a, b)
        elif kind == "sqe":
            q = h.queues.get(a)
            if q is None:
                continue
            q.sq.view[q.tail * SQE_BYTES:(q.tail + 1) * SQE_BYTES] = list(b)
            q.tail = (q.tail + 1) % q.size
            h.sq_doorbell(a, q.tail)
        else:
            h.plat.run_for(a)
        h.reap(0)
        if 1 in h.queues:
            h.reap(1)
    h.plat.run_until_idle(max_events=100_000)
    h.ctrl.bar0.read32(Reg.CSTS)
    assert h.ctrl.counters.internal_errors == 0    # no handler hit a Python exception
