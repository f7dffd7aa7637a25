"""The NIC's register and entry layouts: dtypes and hot-path structs agree, encoders round
trip, timer tables match the IB spec."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labrig.hw.fabric.nic import regs


@pytest.mark.parametrize("dtype,size", [
    (regs.CMD_ENTRY, 64), (regs.SEND_WQE, 128), (regs.RECV_WQE, 64), (regs.CQE, 64),
    (regs.CREATE_QP_IN, None), (regs.INIT2RTR_IN, None), (regs.CREATE_MKEY_IN, None)])
def test_struct_matches_dtype(dtype, size):
    s = regs.struct_of(dtype)
    assert s.size == dtype.itemsize
    if size is not None:
        assert dtype.itemsize == size


def test_cqe_fields_sit_where_mlx5_puts_them():
    # mlx5_cqe64: byte_cnt 0x2C, sop_drop_qpn 0x38, wqe_counter 0x3C, op_own 0x3F;
    # mlx5_err_cqe: syndrome 0x37
    f = regs.CQE.fields
    assert (f["byte_cnt"][1], f["sop_drop_qpn"][1], f["wqe_counter"][1], f["op_own"][1],
            f["syndrome"][1]) == (0x2C, 0x38, 0x3C, 0x3F, 0x37)


@given(st.integers(0, 2**16 - 1), st.integers(0, 2**24 - 1), st.integers(0, 2**16 - 1),
       st.integers(0, 0xFF))
def test_struct_and_dtype_pack_the_same_bytes(counter, qpn, byte_cnt, syndrome):
    arr = np.zeros(1, regs.CQE)
    arr["wqe_counter"], arr["sop_drop_qpn"], arr["byte_cnt"] = counter, qpn, byte_cnt
    arr["syndrome"], arr["op_own"] = syndrome, 0xD1
    buf = bytearray(64)
    regs.struct_of(regs.CQE).pack_into(buf, 0, 0, 0, byte_cnt, 0, 0, syndrome, qpn, counter,
                                       0, 0xD1)
    assert bytes(buf) == arr.tobytes()


@given(st.integers(0, 2**24 - 1), st.integers(0, 0xFF))
def test_mkey_round_trip(index, key):
    m = regs.mkey_encode(index, key)
    assert regs.field_get(regs.MKEY_INDEX, m) == index and regs.field_get(regs.MKEY_KEY, m) == key


@given(st.integers(0, 2**24 - 1), st.integers(0, 2**16 - 1))
def test_wq_doorbell_round_trip(qpn, pi):
    v = regs.wq_db_encode(qpn, pi)
    assert regs.field_get(regs.WQ_DB_QPN, v) == qpn and v & regs.WQ_DB_PI == pi


@given(st.integers(0, 2**24 - 1), st.integers(0, 2**24 - 1), st.sampled_from(list(regs.CqArm)))
def test_cq_doorbell_round_trip(cqn, ci, cmd):
    v = regs.cq_db_encode(cqn, ci, cmd)
    assert (regs.field_get(regs.CQ_DB_CQN, v), regs.field_get(regs.CQ_DB_CI, v),
            regs.field_get(regs.CQ_DB_CMD, v)) == (cqn, ci, cmd)


def test_transport_timers_follow_the_ib_spec():
    assert len(regs.RNR_TIMER_NS) == 32
    assert regs.RNR_TIMER_NS[12] == 640_000 and regs.RNR_TIMER_NS[0] == 655_360_000
    assert regs.ack_timeout_ns(14) == 4096 * 2**14        # ~67 ms
    assert regs.ack_timeout_ns(0) > regs.ack_timeout_ns(31) // 2**31   # 0: bounded "infinite"


def test_uar_offsets_are_inside_bar0():
    for uar in (0, 15):
        for reg in regs.UarReg:
            assert regs.UAR_BASE <= regs.uar_offset(uar, reg) < regs.bar0_size(16)
