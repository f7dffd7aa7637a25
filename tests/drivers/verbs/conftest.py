"""Fixtures of the verbs tests: an RC pair of QPs on each backend.

``emu-loopback``: two QPs on one emulated NIC; ``emu-cable``: one QP on each of two emulated
NICs joined by a back-to-back cable; ``pyverbs``: two QPs on the first real RDMA device in
loopback, as rdma-core's own tests do -- skipped with the reason when pyverbs is not
importable or no device opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from labrig.drivers.verbs import (
    CQ,
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE_READ,
    IBV_ACCESS_REMOTE_WRITE,
    MR,
    PD,
    QP,
    Context,
    QPCap,
    QPInitAttr,
    connect_qps,
)
from labrig.errors import BackendUnavailable

ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ
BACKENDS = ["emu-loopback", "emu-cable", pytest.param("pyverbs", marks=pytest.mark.rdma)]


@dataclass
class Side:
    ctx: Any
    pd: Any
    cq: Any
    qp: Any
    mr: Any


@dataclass
class Pair:
    """Two connected RC QPs, each with a CQ and a 64 KiB MR."""

    a: Side
    b: Side
    cable: Any = None
    nics: tuple = ()

    def close(self) -> None:
        for s in (self.a, self.b):
            for obj in (s.qp, s.mr, s.cq):
                obj.close()


def contexts(kind: str) -> tuple[Any, Any, Any, tuple]:
    """``(ctx_a, ctx_b, cable, nics)`` for a backend kind (skips pyverbs when unavailable)."""
    if kind == "pyverbs":
        try:
            ctx = Context(name=None)
        except BackendUnavailable as exc:
            pytest.skip(f"pyverbs backend unavailable: {exc.reason}")
        return ctx, ctx, None, ()
    if kind == "emu-loopback":
        ctx = Context(name="emu")
        return ctx, ctx, None, (ctx._b.dev,)
    from labrig.hw import Platform
    from labrig.hw.fabric.nic import Cable, NicConfig, NicDevice
    plat = Platform(seed=0)
    cable = Cable(plat, "nicA", "nicB")
    na = NicDevice(plat, NicConfig(node="nicA"), cable)
    nb = NicDevice(plat, NicConfig(node="nicB"), cable)
    return Context(device=na), Context(device=nb), cable, (na, nb)


def make_pair(kind: str, *, depth: int = 32, mr_bytes: int = 65536, access: int = ACCESS,
              connect: bool = True, **conn: Any) -> Pair:
    ca, cb, cable, nics = contexts(kind)
    sides = []
    pd_a = PD(ca)
    pd_b = pd_a if cb is ca else PD(cb)
    for ctx, pd in ((ca, pd_a), (cb, pd_b)):
        cq = CQ(ctx, 4 * depth)
        qp = QP(pd, QPInitAttr(scq=cq, rcq=cq, cap=QPCap(max_send_wr=depth, max_recv_wr=depth,
                                                          max_send_sge=2, max_recv_sge=2)))
        sides.append(Side(ctx, pd, cq, qp, MR(pd, mr_bytes, access)))
    pair = Pair(sides[0], sides[1], cable, nics)
    if connect:
        connect_qps(pair.a.qp, pair.b.qp, **conn)
    return pair


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest) -> Pair:
    p = make_pair(request.param)
    yield p
    p.close()


@pytest.fixture(params=["emu-loopback", "emu-cable"])
def emu_pair(request: pytest.FixtureRequest) -> Pair:
    p = make_pair(request.param)
    yield p
    p.close()
