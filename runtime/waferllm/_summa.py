"""SUMMA (the Cerebras default GEMM, csl-examples ``benchmarks/gemm-collectives_2d``).

Step k broadcasts block A[:, k] along every row from its owner column and B[k, :] along every
column from its owner row.  A static route per broadcast root would need N colours per PE
(violating R, WaferLLM §5.1), so the broadcast is relayed: every PE forwards the block to the
next PE in software (β per routing stage) while keeping a copy — the O[(α+β)N] per-step
critical path of the paper.  Broadcast k+1 overlaps the multiply of step k (double buffers).
K is cut into lcm(W, H) blocks; column px owns blocks px·N/W .. and row py owns py·N/H ...
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.mesh import MeshRuntime, PeContext
from labrig.runtime.waferllm._join import Join
from labrig.runtime.waferllm._result import KernelResult
from labrig.runtime.waferllm._rings import ColorPool, LineRoutes, route_line
from labrig.runtime.waferllm._shift_gemm import _shapes

__all__ = ["summa_gemm"]

_PARTS = ["compute", "a_out_e", "a_out_w", "a_in", "b_out_s", "b_out_n", "b_in"]


def _chains(length: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Neighbour messages of a relayed line broadcast: forward (+1) and backward (-1)."""
    return ([(p, p + 1) for p in range(length - 1)], [(p, p - 1) for p in range(1, length)])


def summa_gemm(rt: MeshRuntime, a: NDArray[np.float32], b: NDArray[np.float32]
               ) -> KernelResult:
    """``a @ b`` with SUMMA and relayed row/column broadcasts; shapes as
    :func:`~labrig.runtime.waferllm.mesh_gemm`."""
    w, h = rt.width, rt.height
    nl, tm, tk, tn = _shapes(rt, a, b)
    mx, my = nl // w, nl // h
    prog = rt.new_program("summa")
    pool = ColorPool()
    east, west = (route_line(prog, "x", m, pool) for m in _chains(w))
    south, north = (route_line(prog, "y", m, pool) for m in _chains(h))
    py, px = np.indices((h, w))
    prog.buffer("a", (mx, tm, tk))
    prog.buffer("b", (my, tk, tn))
    for name, shape in (("a_cur", (tm, tk)), ("a_nxt", (tm, tk)), ("b_cur", (tk, tn)),
                        ("b_nxt", (tk, tn)), ("c", (tm, tn)), ("step", (1,))):
        prog.buffer(name, shape)
    join = Join(prog, "summa", _PARTS, then="advance")

    def broadcast(ctx: PeContext, k: int, where: NDArray[np.bool_], blocks: str, inbox: str,
                  pos: NDArray[np.int64], per: int, fwd: LineRoutes, back: LineRoutes,
                  parts: tuple[str, str, str]) -> NDArray[np.int64]:
        """Post block k's relayed broadcast along one axis; returns the parts each PE awaits."""
        root = k // per
        words = int(np.prod(ctx.buf(inbox).shape[2:]))
        expect = np.zeros(where.shape, np.int64)
        at_root = where & (pos == root)
        ctx.copy(inbox, ctx.buf(blocks)[at_root][:, k - root * per], where=at_root)
        for routes, side, part in ((fwd, pos > root, parts[0]), (back, pos < root, parts[1])):
            first = where & at_root & (routes.send[pos] >= 0)
            ctx.send(routes.send[pos], blocks, where=first, then=join.task(part),
                     index=k - root * per)
            expect[first] |= join.mask(part)
            mid = where & side & (routes.send[pos] >= 0)
            ctx.relay(routes.recv[pos], routes.send[pos], words, where=mid,
                      then=join.task(part), keep=inbox)
            expect[mid] |= join.mask(part)
            end = where & side & (routes.send[pos] < 0)
            ctx.recv(routes.recv[pos], inbox, where=end, then=join.task(parts[2]))
            expect[end] |= join.mask(parts[2])
        return expect

    def post(ctx: PeContext, k: int, where: NDArray[np.bool_]) -> NDArray[np.int64]:
        ea = broadcast(ctx, k, where, "a", "a_nxt", px, mx, east, west,
                       ("a_out_e", "a_out_w", "a_in"))
        eb = broadcast(ctx, k, where, "b", "b_nxt", py, my, south, north,
                       ("b_out_s", "b_out_n", "b_in"))
        return ea | eb

    def start(ctx: PeContext) -> None:
        ctx.buf("step")[ctx.mask, 0] = -1
        join.expect(ctx, post(ctx, 0, ctx.mask) | join.mask("compute"))
        ctx.activate(join.task("compute"))

    def step(ctx: PeContext) -> None:
        st = ctx.buf("step")[..., 0]
        expect = np.full(ctx.mask.shape, join.mask("compute"), np.int64)
        # PEs run asynchronously: those in this call may be at different steps.
        for k in np.unique(st[ctx.mask]).astype(int).tolist():
            if k + 1 < nl:
                expect |= post(ctx, k + 1, ctx.mask & (st == k))
        join.expect(ctx, expect)
        ctx.matmul("c", "a_cur", "b_cur")
        ctx.activate(join.task("compute"))

    def advance(ctx: PeContext) -> None:
        st = ctx.buf("step")
        st[ctx.mask, 0] += 1
        more = ctx.mask & (st[..., 0] < nl)
        for cur, nxt in (("a_cur", "a_nxt"), ("b_cur", "b_nxt")):
            ctx.buf(cur)[more] = ctx.buf(nxt)[more]     # double-buffer pointer swap
        ctx.activate("step", where=more)

    prog.task("start", start)
    prog.task("step", step)
    prog.task("advance", advance)
    prog.export("compute", "start")
    rt.load(prog)
    a_blocks = a.reshape(h, tm, nl, tk).transpose(0, 2, 1, 3)
    b_blocks = b.reshape(nl, tk, w, tn).transpose(2, 0, 1, 3)
    rt.memcpy_h2d("a", a_blocks[py[..., None], px[..., None] * mx + np.arange(mx)])
    rt.memcpy_h2d("b", b_blocks[px[..., None], py[..., None] * my + np.arange(my)])
    stats = rt.launch("compute")
    c = rt.memcpy_d2h("c").transpose(0, 2, 1, 3).reshape(h * tm, w * tn)
    hops = east.hops + west.hops + south.hops + north.hops
    return KernelResult(c, stats.cycles, nl * tm * tk * tn, tuple(sorted(pool.taken)),
                        max(hops, default=0), nl)
