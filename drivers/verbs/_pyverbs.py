"""Backend ``pyverbs``: the same verbs objects on real rdma-core (RDMA NICs or Soft-RoCE).

Imports pyverbs lazily and handles the enum-module rename of rdma-core v59 (commit a45b3aaa6,
"Align code to support Cython 3.1.0 format"): ``pyverbs.libibverbs_enums`` with enum classes
on v59+, ``pyverbs.enums`` with module constants up to v58 (Debian bookworm's 44.0).  The
numeric values are the libibverbs ABI either way, so labrig's own enums are passed through,
converted to the new enum classes where those exist.  Anything that keeps the backend from
running -- no pyverbs, no device, a device that does not open -- is
:class:`~labrig.errors.BackendUnavailable` with the reason (shared/research/fabric.md 4.1).
"""

from __future__ import annotations

import time
from types import ModuleType, SimpleNamespace
from typing import Any

from labrig.drivers.verbs import enums as e
from labrig.drivers.verbs._errors import VerbsError
from labrig.drivers.verbs._types import WC, PortAttr, QPAttr, QPInitAttr, RecvWR, SendWR
from labrig.errors import BackendUnavailable, UsageError

__all__ = ["PyverbsContext", "available", "load"]

BACKEND = "pyverbs"
_MODS: SimpleNamespace | None = None

def load() -> SimpleNamespace:
    """Import pyverbs (once); raise BackendUnavailable with the reason when it cannot."""
    global _MODS
    if _MODS is not None:
        return _MODS
    try:
        import pyverbs.addr as addr
        import pyverbs.cq as cq
        import pyverbs.device as device
        import pyverbs.mr as mr
        import pyverbs.pd as pd
        import pyverbs.pyverbs_error as perr
        import pyverbs.qp as qp
        import pyverbs.wr as wr
    except ImportError as exc:
        raise BackendUnavailable(BACKEND, f"pyverbs is not importable ({exc}); install "
                                 "rdma-core's python3-pyverbs or the 'rdma' extra") from exc
    enums: ModuleType
    try:
        import pyverbs.libibverbs_enums as enums          # rdma-core >= v59
        style = "libibverbs_enums"
    except ImportError:
        try:
            import pyverbs.enums as enums                  # rdma-core <= v58
            style = "enums"
        except ImportError as exc:
            raise BackendUnavailable(BACKEND, f"pyverbs has neither libibverbs_enums nor "
                                     f"enums ({exc})") from exc
    _MODS = SimpleNamespace(addr=addr, cq=cq, device=device, mr=mr, pd=pd, qp=qp, wr=wr,
                            enums=enums, style=style,
                            errors=(perr.PyverbsError, getattr(perr, "PyverbsRDMAError",
                                                               perr.PyverbsError)))
    return _MODS


def _enum(m: SimpleNamespace, cls_name: str, value: int) -> Any:
    """``value`` as pyverbs' enum class ``cls_name`` where it has one (v59+), else the int."""
    cls = getattr(m.enums, cls_name, None)
    if m.style == "libibverbs_enums" and isinstance(cls, type):
        try:
            return cls(int(value))
        except (ValueError, TypeError):
            return int(value)
    return int(value)


def device_names() -> list[str]:
    """Names of the RDMA devices rdma-core sees (may raise BackendUnavailable)."""
    m = load()
    try:
        devs = m.device.get_device_list()
    except m.errors as exc:
        raise BackendUnavailable(BACKEND, f"cannot list RDMA devices: {exc}") from exc
    names = []
    for d in devs:
        n = d.name
        names.append(n.decode() if isinstance(n, bytes) else str(n))
    return names


def available(name: str | None = None) -> str | None:
    """``None`` when a device (``name`` or the first one) opens here, else the reason."""
    try:
        PyverbsContext(name).close()
    except BackendUnavailable as exc:
        return exc.reason
    return None


def _wrap(m: SimpleNamespace, what: str, exc: Exception) -> VerbsError:
    code = int(getattr(exc, "error_code", 0) or 0)
    return VerbsError(f"pyverbs {what}: {exc}", code)


class PyverbsContext:
    """An open rdma-core device (backend of :class:`labrig.drivers.verbs.Context`)."""

    backend = BACKEND

    def __init__(self, name: str | None = None) -> None:
        m = load()
        if name is None:
            names = device_names()
            if not names:
                raise BackendUnavailable(BACKEND, "no RDMA device (no NIC and no Soft-RoCE "
                                         "link; see 'rdma link add ... type rxe')")
            name = names[0]
        self.m = m
        self.name = name
        try:
            self.ctx = m.device.Context(name=name)
        except m.errors as exc:
            raise BackendUnavailable(BACKEND, f"cannot open RDMA device {name!r}: {exc}") from exc

    def clock(self) -> int:
        """Monotonic wall ns (DESIGN.md "Time")."""
        return time.monotonic_ns()

    def idle(self) -> bool:
        return False

    def query_port(self, port_num: int = 1) -> PortAttr:
        try:
            pa = self.ctx.query_port(port_num)
        except self.m.errors as exc:
            raise _wrap(self.m, "query_port", exc) from exc
        return PortAttr(state=int(pa.state), lid=int(pa.lid), active_mtu=int(pa.active_mtu),
                        max_mtu=int(pa.max_mtu), gid_tbl_len=int(pa.gid_tbl_len))

    def query_gid(self, port_num: int = 1, index: int = 0) -> Any:
        try:
            return self.ctx.query_gid(port_num, index)
        except self.m.errors as exc:
            raise _wrap(self.m, "query_gid", exc) from exc

    def alloc_pd(self) -> PyverbsPD:
        return PyverbsPD(self)

    def create_cq(self, cqe: int, comp_vector: int) -> PyverbsCQ:
        return PyverbsCQ(self, cqe, comp_vector)

    def close(self) -> None:
        self.ctx.close()


class PyverbsPD:
    def __init__(self, ctx: PyverbsContext) -> None:
        self.ctx = ctx
        try:
            self.pd = ctx.m.pd.PD(ctx.ctx)
        except ctx.m.errors as exc:
            raise _wrap(ctx.m, "PD", exc) from exc

    def reg_mr(self, length: int, access: int, buffer: Any = None) -> PyverbsMR:
        if buffer is not None:
            raise UsageError("MR(buffer=...): emulator buffers exist only on the emu backend; "
                             "pyverbs allocates the MR's memory itself")
        return PyverbsMR(self, length, access)

    def close(self) -> None:
        self.pd.close()


class PyverbsMR:
    def __init__(self, pd: PyverbsPD, length: int, access: int) -> None:
        m = pd.ctx.m
        self.m = m
        try:
            self.mr = m.mr.MR(pd.pd, int(length), _enum(m, "ibv_access_flags", access))
        except m.errors as exc:
            raise _wrap(m, "MR", exc) from exc
        self.length = int(length)
        self.buf = int(self.mr.buf)
        self.lkey = int(self.mr.lkey)
        self.rkey = int(self.mr.rkey)
        self.view = None

    def write(self, data: bytes, length: int, offset: int = 0) -> None:
        self.mr.write(data, length, offset)

    def read(self, length: int, offset: int = 0) -> bytes:
        return bytes(self.mr.read(length, offset))

    def close(self) -> None:
        self.mr.close()


class PyverbsCQ:
    def __init__(self, ctx: PyverbsContext, cqe: int, comp_vector: int) -> None:
        m = ctx.m
        self.m = m
        try:
            self.cq = m.cq.CQ(ctx.ctx, int(cqe), None, None, int(comp_vector))
        except m.errors as exc:
            raise _wrap(m, "CQ", exc) from exc

    def poll(self, num_entries: int = 1) -> tuple[int, list[WC]]:
        try:
            n, wcs = self.cq.poll(num_entries)
        except self.m.errors as exc:
            raise _wrap(self.m, "poll", exc) from exc
        return n, [WC(wr_id=int(w.wr_id), status=int(w.status), opcode=int(w.opcode),
                      vendor_err=int(w.vendor_err), byte_len=int(w.byte_len),
                      qp_num=int(w.qp_num), src_qp=int(w.src_qp), imm_data=int(w.imm_data),
                      wc_flags=int(w.wc_flags)) for w in wcs]

    def req_notify(self, solicited_only: bool = False) -> None:
        self.cq.req_notify(solicited_only)

    def close(self) -> None:
        self.cq.close()


class PyverbsQP:
    def __init__(self, pd: PyverbsPD, init_attr: QPInitAttr, scq: PyverbsCQ,
                 rcq: PyverbsCQ) -> None:
        m = pd.ctx.m
        self.m = m
        c = init_attr.cap
        try:
            cap = m.qp.QPCap(max_send_wr=c.max_send_wr, max_recv_wr=c.max_recv_wr,
                             max_send_sge=c.max_send_sge, max_recv_sge=c.max_recv_sge,
                             max_inline_data=c.max_inline_data)
            ia = m.qp.QPInitAttr(qp_type=_enum(m, "ibv_qp_type", init_attr.qp_type),
                                 scq=scq.cq, rcq=rcq.cq, cap=cap,
                                 sq_sig_all=int(init_attr.sq_sig_all))
            self.qp = m.qp.QP(pd.pd, ia)
        except m.errors as exc:
            raise _wrap(m, "QP", exc) from exc
        self.qp_num = int(self.qp.qp_num)
        self.qp_state = int(e.IBV_QPS_RESET)

    def modify(self, attr: QPAttr, mask: int) -> None:
        m = self.m
        a = m.qp.QPAttr()
        a.qp_state = _enum(m, "ibv_qp_state", attr.qp_state)
        a.path_mtu = _enum(m, "ibv_mtu", attr.path_mtu)
        a.qp_access_flags = _enum(m, "ibv_access_flags", attr.qp_access_flags)
        for name in ("pkey_index", "port_num", "dest_qp_num", "rq_psn", "sq_psn",
                     "max_rd_atomic", "max_dest_rd_atomic", "min_rnr_timer", "timeout",
                     "retry_cnt", "rnr_retry"):
            setattr(a, name, int(getattr(attr, name)))
        if attr.ah_attr is not None:
            ah = attr.ah_attr
            gr = None
            if ah.is_global and ah.gr is not None:
                gr = m.addr.GlobalRoute(dgid=ah.gr.dgid, sgid_index=ah.gr.sgid_index)
            a.ah_attr = m.addr.AHAttr(port_num=ah.port_num, is_global=ah.is_global, gr=gr,
                                      dlid=ah.dlid)
        try:
            self.qp.modify(a, _enum(m, "ibv_qp_attr_mask", mask))
        except m.errors as exc:
            raise _wrap(m, "modify QP", exc) from exc
        if mask & e.IBV_QP_STATE:
            self.qp_state = int(attr.qp_state)

    def query_state(self) -> int:
        try:
            attr, _ = self.qp.query(_enum(self.m, "ibv_qp_attr_mask", e.IBV_QP_STATE))
        except self.m.errors as exc:
            raise _wrap(self.m, "query QP", exc) from exc
        self.qp_state = int(attr.qp_state)
        return self.qp_state

    def _sges(self, sg: Any, n: int) -> list[Any]:
        return [self.m.wr.SGE(s.addr, s.length, s.lkey) for s in (sg or ())[:n]]

    def post_send(self, wr: SendWR) -> None:
        m = self.m
        while wr is not None:
            n = wr.num_sge or len(wr.sg or ())
            try:
                swr = m.wr.SendWR(wr_id=wr.wr_id, opcode=_enum(m, "ibv_wr_opcode", wr.opcode),
                                  num_sge=n, imm_data=wr.imm_data, sg=self._sges(wr.sg, n),
                                  send_flags=_enum(m, "ibv_send_flags", wr.send_flags))
                if wr.opcode in (e.IBV_WR_RDMA_WRITE, e.IBV_WR_RDMA_WRITE_WITH_IMM,
                                 e.IBV_WR_RDMA_READ):
                    swr.set_wr_rdma(wr.rkey, wr.remote_addr)
                self.qp.post_send(swr, None)
            except m.errors as exc:
                raise _wrap(m, "post_send", exc) from exc
            wr = wr.next_wr

    def post_recv(self, wr: RecvWR) -> None:
        m = self.m
        while wr is not None:
            n = wr.num_sge or len(wr.sg or ())
            try:
                self.qp.post_recv(m.wr.RecvWR(wr_id=wr.wr_id, num_sge=n,
                                              sg=self._sges(wr.sg, n)), None)
            except m.errors as exc:
                raise _wrap(m, "post_recv", exc) from exc
            wr = wr.next_wr

    def close(self) -> None:
        self.qp.close()
