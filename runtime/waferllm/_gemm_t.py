"""dist-GEMM-T: ``C = A·Bᵀ`` without transposing B on the mesh (WaferLLM §4.1, §5.4; Q·Kᵀ).

No alignment: B's row blocks circulate along the interleaved column ring (every shift ≤ 2
hops).  At each step PE (px, py) holds A[py-block, K-block px] and B[n-block, K-block px], so
the row computes partial products of one C block; a ReduceAdd along the row (relay-add chains
from both ends toward the root column ``n-block mod W``) sums them over K.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.mesh import MeshRuntime, PeContext
from labrig.errors import UsageError
from labrig.runtime.waferllm._join import Join
from labrig.runtime.waferllm._result import KernelResult, check_divides
from labrig.runtime.waferllm._rings import ColorPool, ring_messages, ring_order, route_line

__all__ = ["gemm_t"]

_PARTS = ["b_sent", "b_recv", "red_out", "red_e", "red_w"]


def gemm_t(rt: MeshRuntime, a: NDArray[np.float32], b: NDArray[np.float32]) -> KernelResult:
    """``a @ b.T``.

    Parameters
    ----------
    rt : MeshRuntime
        W×H mesh; ``M % H == 0``, ``K % W == 0``, ``N % H == 0``.
    a, b : ndarray, shapes (M, K) and (N, K)
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise UsageError(f"GEMM-T needs (M, K) @ (N, K).T; got {a.shape} and {b.shape}")
    w, h = rt.width, rt.height
    tm = check_divides("M", a.shape[0], h, "rows of A are split over mesh rows")
    tk = check_divides("K", a.shape[1], w, "K is split over mesh columns")
    tn = check_divides("N", b.shape[0], h, "rows of B circulate on the column ring")
    slots = -(-h // w)
    order = ring_order(h)
    pos = np.argsort(order)
    prog = rt.new_program("gemm_t")
    pool = ColorPool()
    ring = route_line(prog, "y", ring_messages(order), pool)
    east = route_line(prog, "x", [(x, x + 1) for x in range(w - 1)], pool)
    west = route_line(prog, "x", [(x, x - 1) for x in range(1, w)], pool)
    py, px = np.indices((h, w))
    for name, shape in (("a", (tm, tk)), ("b", (tn, tk)), ("b_in", (tn, tk)),
                        ("part", (tm, tn)), ("red", (tm, tn)), ("c", (slots, tm, tn)),
                        ("step", (1,))):
        prog.buffer(name, shape)
    join = Join(prog, "gt", _PARTS, then="advance")

    def nblock(st: NDArray[np.float32]) -> NDArray[np.int64]:
        """n-block held by each PE at its current step (same along a row)."""
        return np.asarray(order)[(pos[py] + st.astype(np.int64)) % h]

    def roles(ctx: PeContext) -> dict[str, NDArray[np.bool_]]:
        """Each PE's part in this step's ReduceAdd (the root column is n-block mod W)."""
        st = ctx.buf("step")[..., 0]
        root = nblock(st) % w
        r = {"comm": ctx.mask & (st < h - 1) & (h > 1), "root": ctx.mask & (px == root)}
        for name, chain, side in (("e", east, px < root), ("w", west, px > root)):
            r[f"head_{name}"] = ctx.mask & side & (chain.recv[px] < 0)
            r[f"mid_{name}"] = ctx.mask & side & (chain.recv[px] >= 0)
            r[f"into_{name}"] = r["root"] & (chain.recv[px] >= 0)
        return r

    def step(ctx: PeContext) -> None:
        r = roles(ctx)
        # The whole expectation is set before any op of this step can complete.
        expect = np.where(r["comm"], join.mask("b_sent", "b_recv"), 0)
        for name in ("e", "w"):
            sends = r[f"head_{name}"] | r[f"mid_{name}"]
            expect = np.where(sends, expect | join.mask("red_out"), expect)
            expect = np.where(r[f"into_{name}"], expect | join.mask(f"red_{name}"), expect)
        join.expect(ctx, expect)
        ctx.send(ring.send[py], "b", where=r["comm"], then=join.task("b_sent"))
        ctx.recv(ring.recv[py], "b_in", where=r["comm"], then=join.task("b_recv"))
        ctx.matmul("part", "a", "b", trans_b=True, accumulate=False)
        ctx.activate("reduce")
        ctx.activate("advance", where=ctx.mask & (expect == 0))

    def reduce(ctx: PeContext) -> None:
        r = roles(ctx)
        ctx.copy("red", "part", where=r["root"])
        for name, chain in (("e", east), ("w", west)):
            ctx.send(chain.send[px], "part", where=r[f"head_{name}"],
                     then=join.task("red_out"))
            ctx.relay(chain.recv[px], chain.send[px], tm * tn, where=r[f"mid_{name}"],
                      addend="part", then=join.task("red_out"))
            ctx.recv(chain.recv[px], "red", where=r[f"into_{name}"],
                     then=join.task(f"red_{name}"), add=True)

    def advance(ctx: PeContext) -> None:
        st = ctx.buf("step")
        m = ctx.mask
        nb = nblock(st[..., 0])
        at_root = m & (px == nb % w)
        c = ctx.buf("c")
        for slot in np.unique(nb[at_root] // w).tolist():
            sel = at_root & (nb // w == slot)
            c[sel, slot] = ctx.buf("red")[sel]           # pointer hand-off, no CE cycles
        more = m & (st[..., 0] < h - 1)
        ctx.buf("b")[more] = ctx.buf("b_in")[more]       # double-buffer swap
        st[m, 0] += 1
        ctx.activate("step", where=more)

    prog.task("step", step)
    prog.task("reduce", reduce)
    prog.task("advance", advance)
    prog.export("compute", "step")
    rt.load(prog)
    rt.memcpy_h2d("a", a.reshape(h, tm, w, tk).transpose(0, 2, 1, 3))
    b_blocks = b.reshape(h, tn, w, tk).transpose(0, 2, 1, 3)        # [nblk, kblk, tn, tk]
    rt.memcpy_h2d("b", b_blocks[np.asarray(order)[pos[py]], px])
    stats = rt.launch("compute")
    out = rt.memcpy_d2h("c")                                         # [py, px, slot, tm, tn]
    c = np.zeros((h * tm, h * tn), np.float32)
    for j in range(h):
        c[:, j * tn:(j + 1) * tn] = out[:, j % w, j // w].reshape(h * tm, tn)
    hops = ring.hops + east.hops + west.hops
    return KernelResult(c, stats.cycles, h * tm * tk * tn, tuple(sorted(pool.taken)),
                        max(hops, default=0), h)
