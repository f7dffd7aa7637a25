"""The pyverbs-shaped verbs API: Context, PD, MR, CQ, QP, one code path for both backends.

Each object holds a backend object (``emu``: :mod:`labrig.drivers.verbs._emu`, ``pyverbs``:
:mod:`labrig.drivers.verbs._pyverbs`) and forwards to it, after SPDK's transport split
(STYLE.md section 2).  Signatures follow pyverbs (``Context(name=...)``, ``MR(pd, length,
access)``, ``CQ(ctx, cqe)``, ``QP(pd, init_attr, qp_attr=None)``, ``cq.poll(n) -> (n, [WC])``),
so rdma-core's test recipes read the same here.
"""

from __future__ import annotations

import errno
from typing import Any

from labrig.drivers.verbs import enums as e
from labrig.drivers.verbs._errors import VerbsError
from labrig.drivers.verbs._types import (
    WC,
    AHAttr,
    PortAttr,
    QPAttr,
    QPInitAttr,
    RecvWR,
    SendWR,
)
from labrig.errors import UsageError

__all__ = ["CQ", "MR", "PD", "QP", "Context", "connect_qps", "poll_cq"]

#: attribute masks pyverbs' own QP.to_init / to_rtr / to_rts use (pyverbs/qp.pyx)
MASK_INIT = (e.IBV_QP_STATE | e.IBV_QP_PKEY_INDEX | e.IBV_QP_PORT | e.IBV_QP_ACCESS_FLAGS)
MASK_RTR = (e.IBV_QP_STATE | e.IBV_QP_AV | e.IBV_QP_PATH_MTU | e.IBV_QP_DEST_QPN
            | e.IBV_QP_RQ_PSN | e.IBV_QP_MAX_DEST_RD_ATOMIC | e.IBV_QP_MIN_RNR_TIMER)
MASK_RTS = (e.IBV_QP_STATE | e.IBV_QP_TIMEOUT | e.IBV_QP_RETRY_CNT | e.IBV_QP_RNR_RETRY
            | e.IBV_QP_SQ_PSN | e.IBV_QP_MAX_QP_RD_ATOMIC)

#: default wait of :func:`poll_cq` (rdma-core tests' POLL_CQ_TIMEOUT is 15 s)
POLL_TIMEOUT_NS = 15_000_000_000


class _Closable:
    _b: Any

    def close(self) -> None:
        """Destroy the object on the device (idempotent)."""
        if self._b is not None:
            self._b.close()
            self._b = None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self) -> Any:
        if self._b is None:
            raise UsageError(f"{type(self).__name__} is closed")
        return self._b


class Context(_Closable):
    """An open RDMA device.

    Parameters
    ----------
    name : str, optional
        ``"emu"`` (a private emulated NIC on its own platform, loopback only), or a real
        device (``"mlx5_0"``, ``"rxe0"``, ``"rdma:mlx5_0"``; ``None`` = the first one) for the
        pyverbs backend.
    device : NicDevice, optional
        Drive this emulated NIC (backend ``emu``); the usual way on the fabric model.

    Raises
    ------
    BackendUnavailable
        pyverbs is not importable or the device does not open here (``reason`` says why).

    Examples
    --------
    >>> ctx = Context(name="emu")
    >>> ctx.backend, ctx.query_port(1).lid
    ('emu', 1)
    """

    def __init__(self, name: str | None = None, *, device: Any = None) -> None:
        if device is not None:
            from labrig.drivers.verbs._emu import EmuContext
            self._b = EmuContext(device)
        elif name is not None and (name == "emu" or name.startswith("emu:")):
            from labrig.drivers.verbs._emu import EmuContext
            from labrig.hw import Platform
            from labrig.hw.fabric.nic import NicConfig, NicDevice
            node = name.partition(":")[2] or "nic0"
            self._b = EmuContext(NicDevice(Platform(seed=0), NicConfig(node=node)))
        else:
            from labrig.drivers.verbs._pyverbs import PyverbsContext
            if name is not None and name.startswith("rdma:"):
                name = name[len("rdma:"):]
            self._b = PyverbsContext(name)
        self.name = self._b.name

    @property
    def backend(self) -> str:
        """``"emu"`` or ``"pyverbs"``."""
        return str(self._live().backend)

    @property
    def platform(self) -> Any:
        """The emulator platform (``None`` on real hardware)."""
        return getattr(self._live(), "plat", None)

    def clock(self) -> int:
        """Virtual ns on the emulator, monotonic wall ns on real hardware."""
        return int(self._live().clock())

    def query_port(self, port_num: int = 1) -> PortAttr:
        return self._live().query_port(port_num)

    def query_gid(self, port_num: int = 1, index: int = 0) -> Any:
        return self._live().query_gid(port_num, index)

    def __repr__(self) -> str:
        return f"Context(name={self.name!r}, backend={getattr(self._b, 'backend', 'closed')!r})"


class PD(_Closable):
    """Protection domain: ``PD(ctx)``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._b = ctx._live().alloc_pd()


class MR(_Closable):
    """Registered memory: ``MR(pd, length, access)`` allocates it (as pyverbs does);
    ``MR(pd, length, access, buffer=dma_buffer)`` registers an emulator buffer such as GPU
    HBM (GPUDirect RDMA).

    Attributes
    ----------
    buf : int
        Address of the region (what SGEs and ``set_wr_rdma`` take).
    lkey, rkey : int
    length : int
    """

    def __init__(self, pd: PD, length: int, access: int, *, buffer: Any = None) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise UsageError(f"MR length={length!r}: must be a positive int")
        if buffer is not None and getattr(buffer, "nbytes", 0) < length:
            raise UsageError(f"MR length={length}: larger than the buffer "
                             f"({getattr(buffer, 'nbytes', None)} bytes)")
        self.pd = pd
        self._b = pd._live().reg_mr(length, int(access), buffer)
        self.buf = self._b.buf
        self.lkey = self._b.lkey
        self.rkey = self._b.rkey
        self.length = length

    def write(self, data: bytes | bytearray | memoryview, length: int | None = None,
              offset: int = 0) -> None:
        """Copy ``data[:length]`` into the region at ``offset`` (pyverbs ``MR.write``)."""
        mv = memoryview(data).cast("B")
        n = mv.nbytes if length is None else int(length)
        if not 0 <= offset <= self.length - n or n > mv.nbytes:
            raise UsageError(f"MR.write length={n} offset={offset}: outside the {self.length}"
                             f"-byte region or longer than data ({mv.nbytes})")
        b = self._live()
        if b.view is not None:
            import numpy as np
            b.view[offset:offset + n] = np.frombuffer(mv[:n], dtype=np.uint8)
        else:
            b.write(bytes(mv[:n]), n, offset)

    def read(self, length: int, offset: int = 0) -> bytes:
        """``length`` bytes of the region from ``offset`` (pyverbs ``MR.read``)."""
        if not 0 <= offset <= self.length - length or length < 0:
            raise UsageError(f"MR.read length={length} offset={offset}: outside the "
                             f"{self.length}-byte region")
        b = self._live()
        if b.view is not None:
            return b.view[offset:offset + length].tobytes()
        return b.read(length, offset)


class CQ(_Closable):
    """Completion queue: ``CQ(ctx, cqe)``; :meth:`poll` never blocks."""

    def __init__(self, ctx: Context, cqe: int, cq_context: Any = None, channel: Any = None,
                 comp_vector: int = 0) -> None:
        if isinstance(cqe, bool) or not isinstance(cqe, int) or cqe < 1:
            raise UsageError(f"CQ cqe={cqe!r}: must be a positive int")
        if channel is not None:
            raise UsageError("CQ channel=...: completion channels are not supported; use "
                             "req_notify() and poll()")
        self.ctx = ctx
        self.cq_context = cq_context
        self._b = ctx._live().create_cq(cqe, comp_vector)

    def poll(self, num_entries: int = 1) -> tuple[int, list[WC]]:
        """Up to ``num_entries`` completions as ``(npolled, [WC])``."""
        return self._live().poll(num_entries)

    def req_notify(self, solicited_only: bool = False) -> None:
        """Arm the CQ for one completion event."""
        self._live().req_notify(solicited_only)


class QP(_Closable):
    """Queue pair: ``QP(pd, init_attr, qp_attr=None)``; with ``qp_attr`` an RC QP comes back
    in INIT (pyverbs semantics).

    Attributes
    ----------
    qp_num : int
    qp_state : int
        Last state the driver set or saw (an error completion implies ERR);
        :meth:`query_state` asks the device.
    """

    def __init__(self, pd: PD, init_attr: QPInitAttr, qp_attr: QPAttr | None = None) -> None:
        if init_attr.scq is None or init_attr.rcq is None:
            raise UsageError("QPInitAttr.scq and .rcq must be CQs")
        self.pd = pd
        self.init_attr = init_attr
        ctx = pd.ctx._live()
        if ctx.backend == "emu":
            from labrig.drivers.verbs._emu import EmuQP as Impl
        else:
            from labrig.drivers.verbs._pyverbs import PyverbsQP as Impl  # type: ignore[assignment]
        self._b = Impl(pd._live(), init_attr, init_attr.scq._live(), init_attr.rcq._live())
        self.qp_num = self._b.qp_num
        if qp_attr is not None:
            self.to_init(qp_attr)

    @property
    def qp_state(self) -> int:
        return int(self._live().qp_state)

    def modify(self, attr: QPAttr, mask: int) -> None:
        """``ibv_modify_qp``: an illegal transition raises VerbsError (EINVAL)."""
        self._live().modify(attr, int(mask))

    def to_init(self, attr: QPAttr) -> None:
        attr.qp_state = e.IBV_QPS_INIT
        self.modify(attr, MASK_INIT)

    def to_rtr(self, attr: QPAttr) -> None:
        attr.qp_state = e.IBV_QPS_RTR
        self.modify(attr, MASK_RTR)

    def to_rts(self, attr: QPAttr) -> None:
        """INIT -> RTR -> RTS in one call, as pyverbs ``QP.to_rts`` does from INIT."""
        if self.qp_state == e.IBV_QPS_INIT:
            self.to_rtr(attr)
        attr.qp_state = e.IBV_QPS_RTS
        self.modify(attr, MASK_RTS)

    def query_state(self) -> int:
        return int(self._live().query_state())

    def post_send(self, wr: SendWR, bad_wr: Any = None) -> None:
        """Post a send WR (or a ``next_wr`` chain); one doorbell for the chain."""
        self._live().post_send(wr)

    def post_recv(self, wr: RecvWR, bad_wr: Any = None) -> None:
        self._live().post_recv(wr)


def connect_qps(a: QP, b: QP, *, access: int = (e.IBV_ACCESS_LOCAL_WRITE
                                                  | e.IBV_ACCESS_REMOTE_WRITE
                                                  | e.IBV_ACCESS_REMOTE_READ),
                psn_a: int = 0, psn_b: int = 0, path_mtu: int = e.IBV_MTU_4096,
                timeout: int = 14, retry_cnt: int = 7, rnr_retry: int = 7,
                min_rnr_timer: int = 12) -> None:
    """Bring two RC QPs in this process from RESET or INIT to RTS, connected to each other
    (rdma-core ``tests/base.py`` ``RCResources.to_rts``: each side's ``dest_qp_num`` is the
    other's QPN, its ``rq_psn`` its own PSN and its ``sq_psn`` the peer's)."""
    for me, peer, my_psn, peer_psn in ((a, b, psn_a, psn_b), (b, a, psn_b, psn_a)):
        port = peer.pd.ctx.query_port(1)
        ah = AHAttr(port_num=1, dlid=port.lid)
        if peer.pd.ctx.backend == "pyverbs":
            from labrig.drivers.verbs._types import GlobalRoute
            ah.is_global = 1
            ah.gr = GlobalRoute(dgid=peer.pd.ctx.query_gid(1, 0), sgid_index=0)
        attr = QPAttr(qp_access_flags=access, path_mtu=path_mtu, dest_qp_num=peer.qp_num,
                      rq_psn=my_psn, sq_psn=peer_psn, ah_attr=ah, timeout=timeout,
                      retry_cnt=retry_cnt, rnr_retry=rnr_retry, min_rnr_timer=min_rnr_timer)
        if me.qp_state == e.IBV_QPS_RESET:
            me.to_init(attr)
        me.to_rtr(attr)
    for me, peer, my_psn, peer_psn in ((a, b, psn_a, psn_b), (b, a, psn_b, psn_a)):
        attr = QPAttr(sq_psn=my_psn, timeout=timeout, retry_cnt=retry_cnt,
                      rnr_retry=rnr_retry)
        attr.qp_state = e.IBV_QPS_RTS
        me.modify(attr, MASK_RTS)


def poll_cq(cq: CQ, count: int, timeout_ns: int = POLL_TIMEOUT_NS) -> list[WC]:
    """Poll until ``count`` completions arrived (rdma-core ``tests/utils.py:_poll_cq``).

    Raises
    ------
    VerbsError
        ETIMEDOUT when they do not arrive within ``timeout_ns`` on the backend's clock, or
        at once on the emulator when nothing is left that could complete them.
    """
    ctx = cq.ctx._live()
    deadline = ctx.clock() + timeout_ns
    out: list[WC] = []
    while len(out) < count:
        n, wcs = cq.poll(count - len(out))
        if n:
            out.extend(wcs)
            continue
        if ctx.idle() or ctx.clock() > deadline:
            raise VerbsError(f"poll_cq: {len(out)} of {count} completions arrived "
                             f"(waited until t={ctx.clock()} ns)", errno.ETIMEDOUT)
    return out
