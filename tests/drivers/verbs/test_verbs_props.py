"""Hypothesis properties of the emulated RC transport (issue #8 "Tests"): RDMA-written
content equals the source, bytes delivered equal bytes posted, protection violations never
change memory, a torn-down cable yields error completions rather than hangs."""

from __future__ import annotations

from conftest import make_pair
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.verbs import (
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE_READ,
    IBV_ACCESS_REMOTE_WRITE,
    IBV_WC_REM_ACCESS_ERR,
    IBV_WC_SUCCESS,
    IBV_WC_WR_FLUSH_ERR,
    IBV_WR_RDMA_READ,
    IBV_WR_RDMA_WRITE,
    IBV_WR_SEND,
    MR,
    SGE,
    RecvWR,
    SendWR,
    poll_cq,
)

MR_BYTES = 65536
KINDS = st.sampled_from(["emu-loopback", "emu-cable"])


@settings(max_examples=30)
@given(kind=KINDS, n=st.integers(1, 16384), split=st.integers(0, 16384),
       src_off=st.integers(0, MR_BYTES), dst_off=st.integers(0, MR_BYTES),
       seed=st.integers(0, 255), read=st.booleans())
def test_rdma_content_equals_source(kind, n, split, src_off, dst_off, seed, read):
    src_off, dst_off = min(src_off, MR_BYTES - n), min(dst_off, MR_BYTES - n)
    p = make_pair(kind, mr_bytes=MR_BYTES)
    local, remote = p.a.mr, p.b.mr
    payload = bytes((seed + 31 * i) & 0xFF for i in range(n))
    (remote if read else local).write(payload, n, dst_off if read else src_off)
    k = min(split, n)
    sges = [SGE(local.buf + src_off, k, local.lkey), SGE(local.buf + src_off + k, n - k,
                                                          local.lkey)]
    wr = SendWR(wr_id=1, opcode=IBV_WR_RDMA_READ if read else IBV_WR_RDMA_WRITE, num_sge=2,
                sg=sges)
    wr.set_wr_rdma(remote.rkey, remote.buf + dst_off)
    p.a.qp.post_send(wr)
    (wc,) = poll_cq(p.a.cq, 1)
    assert wc.status == IBV_WC_SUCCESS and wc.byte_len == n
    got = local.read(n, src_off) if read else remote.read(n, dst_off)
    assert got == payload


@settings(max_examples=25)
@given(kind=KINDS, sizes=st.lists(st.integers(0, 6000), min_size=1, max_size=12))
def test_bytes_delivered_equal_bytes_posted(kind, sizes):
    p = make_pair(kind, mr_bytes=MR_BYTES, depth=16)
    a, b = p.a, p.b
    src = bytes(range(256)) * (6000 // 256 + 1)
    a.mr.write(src[:6000], 6000)
    for i, _ in enumerate(sizes):
        b.qp.post_recv(RecvWR(wr_id=i, num_sge=1, sg=[SGE(b.mr.buf + 6000 * (i % 10), 6000,
                                                          b.mr.lkey)]))
    for i, n in enumerate(sizes[:10]):
        a.qp.post_send(SendWR(wr_id=i, opcode=IBV_WR_SEND, num_sge=1,
                              sg=[SGE(a.mr.buf, n, a.mr.lkey)]))
    sent = sizes[:10]
    rwcs = poll_cq(b.cq, len(sent))
    swcs = poll_cq(a.cq, len(sent))
    assert all(w.status == IBV_WC_SUCCESS for w in rwcs + swcs)
    assert [w.wr_id for w in rwcs] == list(range(len(sent)))       # RC: in order
    assert sum(w.byte_len for w in rwcs) == sum(sent)
    for i, n in enumerate(sent):
        assert b.mr.read(n, 6000 * i) == src[:n]


@settings(max_examples=40)
@given(kind=KINDS, key_flip=st.integers(0, 0xFF), off=st.integers(-256, MR_BYTES + 256),
       n=st.integers(1, 8192), remote_write=st.booleans(), remote_read=st.booleans(),
       read=st.booleans())
def test_protection_violations_never_change_memory(kind, key_flip, off, n, remote_write,
                                                   remote_read, read):
    p = make_pair(kind, mr_bytes=MR_BYTES)
    a, b = p.a, p.b
    access = IBV_ACCESS_LOCAL_WRITE | (IBV_ACCESS_REMOTE_WRITE if remote_write else 0) \
        | (IBV_ACCESS_REMOTE_READ if remote_read else 0)
    target = MR(b.pd, MR_BYTES, access)
    target.write(b"\x5C" * MR_BYTES, MR_BYTES)
    a.mr.write(b"\xE1" * MR_BYTES, MR_BYTES)
    rkey = target.rkey ^ key_flip
    wr = SendWR(wr_id=1, opcode=IBV_WR_RDMA_READ if read else IBV_WR_RDMA_WRITE, num_sge=1,
                sg=[SGE(a.mr.buf, n, a.mr.lkey)])
    wr.set_wr_rdma(rkey, target.buf + off)
    a.qp.post_send(wr)
    (wc,) = poll_cq(a.cq, 1)
    allowed = remote_read if read else remote_write
    legal = key_flip == 0 and allowed and 0 <= off and off + n <= MR_BYTES
    if legal:
        assert wc.status == IBV_WC_SUCCESS
    else:
        assert wc.status == IBV_WC_REM_ACCESS_ERR
        assert target.read(MR_BYTES) == b"\x5C" * MR_BYTES
        assert a.mr.read(MR_BYTES) == b"\xE1" * MR_BYTES


@settings(max_examples=25)
@given(n_wrs=st.integers(1, 12), size=st.integers(1, 200_000), cut_ns=st.integers(0, 20_000))
def test_unplugged_cable_completes_everything(n_wrs, size, cut_ns):
    p = make_pair("emu-cable", mr_bytes=1 << 18, depth=16, timeout=6, retry_cnt=2)
    a, b = p.a, p.b
    a.mr.write(b"\x77" * (1 << 18), 1 << 18)
    for i in range(n_wrs):
        wr = SendWR(wr_id=i, opcode=IBV_WR_RDMA_WRITE, num_sge=1,
                    sg=[SGE(a.mr.buf, size, a.mr.lkey)])
        wr.set_wr_rdma(b.mr.rkey, b.mr.buf)
        a.qp.post_send(wr)
    a.ctx.platform.run_for(cut_ns)
    p.cable.unplug()
    wcs = poll_cq(a.cq, n_wrs)                    # raises (not hangs) if any went missing
    assert [w.wr_id for w in wcs] == list(range(n_wrs))
    statuses = [w.status for w in wcs]
    ok = statuses.count(IBV_WC_SUCCESS)
    assert statuses[:ok] == [IBV_WC_SUCCESS] * ok                   # successes come first
    if ok < n_wrs:
        assert statuses[ok] not in (IBV_WC_SUCCESS, IBV_WC_WR_FLUSH_ERR)   # the first error
        assert set(statuses[ok + 1:]) <= {IBV_WC_WR_FLUSH_ERR}
    if ok:
        assert b.mr.read(size) == b"\x77" * size
