"""Round-trip properties of every CXL register field helper (STYLE.md section 3)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labrig.hw.cxl import regs as R


@given(st.integers(0, R.MAX_EIG))
def test_granularity_round_trip(eig):
    assert R.granularity_to_eig(R.eig_to_granularity(eig)) == eig


@given(st.sampled_from([1, 2, 4, 8, 16, 3, 6, 12]))
def test_ways_round_trip(ways):
    assert R.eiw_to_ways(R.ways_to_eiw(ways)) == ways


@pytest.mark.parametrize("bad", [-1, 7, 15])
def test_bad_eig_rejected(bad):
    with pytest.raises(ValueError, match="granularity"):
        R.eig_to_granularity(bad)


@pytest.mark.parametrize("bad", [0, 5, 7, 24])
def test_bad_ways_rejected(bad):
    with pytest.raises(ValueError, match="ways"):
        R.ways_to_eiw(bad)


@given(st.integers(0, 15), st.integers(0, 15), st.booleans(), st.booleans(), st.booleans(),
       st.booleans(), st.booleans())
def test_hdm_ctrl_round_trip(eig, eiw, lock, commit, committed, err, host_only):
    kw = dict(eig=eig, eiw=eiw, lock=lock, commit=commit, committed=committed,
              commit_error=err, host_only=host_only)
    assert R.hdm_decoder_ctrl_decode(R.hdm_decoder_ctrl_encode(**kw)) == kw


@given(st.sampled_from([1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32]))
def test_hdm_cap_decoder_count_round_trip(n):
    assert R.hdm_cap_decoder_count(R.hdm_cap_encode(n)) == n


@given(st.integers(0, 0xFFFF), st.integers(0, (1 << 21) - 1))
def test_mbox_cmd_round_trip(op, length):
    assert R.mbox_cmd_decode(R.mbox_cmd_encode(op, length)) == (op, length)


@given(st.integers(0, 0xFFFF), st.booleans(), st.integers(0, 0xFFFF))
def test_mbox_status_round_trip(rc, bg, vendor):
    assert R.mbox_status_decode(R.mbox_status_encode(rc, bg, vendor)) == (rc, bg, vendor)


@given(st.integers(8, 20))
def test_mbox_caps_payload(n):
    assert R.mbox_caps_payload_bytes(R.mbox_caps_encode(n)) == 1 << n


@given(st.integers(0, 0xFFFF), st.integers(0, 0xF), st.integers(0, 0xFFF))
def test_cm_cap_hdr_round_trip(cap, ver, off):
    assert R.cm_cap_hdr_decode(R.cm_cap_hdr_encode(cap, ver, off)) == (cap, ver, off)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFF))
def test_dev_cap_hdr_round_trip(cap, ver):
    assert R.dev_cap_hdr_decode(R.dev_cap_hdr_encode(cap, ver)) == (cap, ver)


def test_encoders_reject_out_of_range():
    with pytest.raises(ValueError):
        R.mbox_cmd_encode(0x10000, 0)
    with pytest.raises(ValueError):
        R.mbox_cmd_encode(0, 1 << 21)
    with pytest.raises(ValueError):
        R.hdm_cap_encode(3)
    with pytest.raises(ValueError):
        R.mbox_caps_encode(7)


def test_decoder_offsets_follow_spec_stride():
    assert R.hdm_decoder_base_low_offset(0) == R.HDM_OFFSET + 0x10
    assert R.hdm_decoder_ctrl_offset(1) == R.HDM_OFFSET + 0x40
    assert R.hdm_decoder_tl_high_offset(2) == R.HDM_OFFSET + 0x68
