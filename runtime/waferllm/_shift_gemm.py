"""Cannon-style compute-shift GEMM on a ring per row and per column: MeshGEMM and Cannon.

MeshGEMM (WaferLLM §5.2-5.4) runs Cannon's compute-shift on the *interleaved* ring, so every
shift is at most 2 hops (α·2 per step); Cannon runs it on the plain ring, whose wrap-around
message passes P-1 routers (α·(P-1) per step).  Non-square W×H meshes use the N_lcm × N_lcm
logical partition (§5.4): K is cut into N = lcm(W, H) blocks; each PE keeps a FIFO of N/W
blocks of A (row ring) and N/H blocks of B (column ring), and each step moves one block per
ring by one ring position, so the schedule below reproduces A·B exactly.

Layout (as the repo's MeshGEMM: X moves along x, W along y; C block (py, px) at PE (px, py)):
PE (px, py) holds A[py-block, k] and B[k, px-block]; at step s both heads are block
``k = (posx·N/W + posy·N/H + s) mod N`` with pos the index in the ring order.  Both operands
are placed pre-skewed by the host copy (the repo pre-skews W on the host and aligns X on the
device; we do both on the host, so alignment is not in the launch cycles).
"""

from __future__ import annotations

from math import lcm

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.mesh import MeshRuntime, PeContext
from labrig.errors import UsageError
from labrig.runtime.waferllm._join import Join
from labrig.runtime.waferllm._result import KernelResult, check_divides
from labrig.runtime.waferllm._rings import ColorPool, ring_messages, ring_order, route_line

__all__ = ["cannon_gemm", "mesh_gemm", "shift_gemm"]

_PARTS = ["compute", "a_sent", "b_sent", "a_recv", "b_recv"]


def mesh_gemm(rt: MeshRuntime, a: NDArray[np.float32], b: NDArray[np.float32],
              steps: int | None = None) -> KernelResult:
    """``a @ b`` with MeshGEMM (interleaved ring, every shift ≤ 2 hops).

    Parameters
    ----------
    rt : MeshRuntime
        The mesh (W×H); ``M % H == 0``, ``K % lcm(W, H) == 0``, ``N % W == 0``.
    a, b : ndarray, shapes (M, K) and (K, N)
    steps : int, optional
        Stop after this many steps (timing of a partial run; the output is then partial).
    """
    return shift_gemm(rt, a, b, ring_order(rt.width), ring_order(rt.height), "meshgemm",
                      steps)


def cannon_gemm(rt: MeshRuntime, a: NDArray[np.float32], b: NDArray[np.float32],
                steps: int | None = None) -> KernelResult:
    """``a @ b`` with Cannon's algorithm on a mesh without wrap-around links (the wrap
    message passes through P-1 routers); arguments as :func:`mesh_gemm`."""
    return shift_gemm(rt, a, b, list(range(rt.width)), list(range(rt.height)), "cannon",
                      steps)


def _shapes(rt: MeshRuntime, a: NDArray[np.float32], b: NDArray[np.float32]
            ) -> tuple[int, int, int, int]:
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise UsageError(f"GEMM needs (M, K) @ (K, N); got {a.shape} @ {b.shape}")
    nl = lcm(rt.width, rt.height)
    tm = check_divides("M", a.shape[0], rt.height, "rows of A are split over mesh rows")
    tk = check_divides("K", a.shape[1], nl, f"K is split into lcm(W, H)={nl} blocks")
    tn = check_divides("N", b.shape[1], rt.width, "columns of B are split over mesh columns")
    return nl, tm, tk, tn


def shift_gemm(rt: MeshRuntime, a: NDArray[np.float32], b: NDArray[np.float32],
               order_x: list[int], order_y: list[int], name: str,
               steps: int | None = None) -> KernelResult:
    """Compute-shift GEMM over the given ring orders (see module docstring).

    ``steps`` stops after that many compute-shift steps (the product is then partial): used to
    time a single step's critical path.
    """
    w, h = rt.width, rt.height
    nl_full, tm, tk, tn = _shapes(rt, a, b)
    nl = nl_full if steps is None else max(1, min(int(steps), nl_full))
    mx, my = nl_full // w, nl_full // h
    prog = rt.new_program(name)
    pool = ColorPool()
    rx = route_line(prog, "x", ring_messages(order_x), pool)
    ry = route_line(prog, "y", ring_messages(order_y), pool)
    py, px = np.indices((h, w))
    send_x, recv_x = rx.send[px], rx.recv[px]
    send_y, recv_y = ry.send[py], ry.recv[py]
    prog.buffer("a", (mx, tm, tk))
    prog.buffer("b", (my, tk, tn))
    prog.buffer("a_in", (tm, tk))
    prog.buffer("b_in", (tk, tn))
    prog.buffer("c", (tm, tn))
    prog.buffer("step", (1,))
    join = Join(prog, "shift", _PARTS, then="advance")
    ring_x, ring_y = w > 1, h > 1
    comm_parts = (join.mask("a_sent", "a_recv") if ring_x else 0) | (
        join.mask("b_sent", "b_recv") if ring_y else 0)

    def step(ctx: PeContext) -> None:
        last = ctx.buf("step")[..., 0] == nl - 1
        comm = ctx.mask & ~last
        join.expect(ctx, np.where(last, join.mask("compute"),
                                  join.mask("compute") | comm_parts))
        if ring_x:
            ctx.send(send_x, "a", where=comm, then=join.task("a_sent"), index=0)
            ctx.recv(recv_x, "a_in", where=comm, then=join.task("a_recv"))
        if ring_y:
            ctx.send(send_y, "b", where=comm, then=join.task("b_sent"), index=0)
            ctx.recv(recv_y, "b_in", where=comm, then=join.task("b_recv"))
        ctx.matmul("c", ("a", 0), ("b", 0))
        ctx.activate(join.task("compute"))

    def advance(ctx: PeContext) -> None:
        st = ctx.buf("step")
        more = ctx.mask & (st[..., 0] < nl - 1)
        # Double-buffer pointer rotation (no data movement on the CE, so no cycles charged).
        for fifo, inbox, ring in (("a", "a_in", ring_x), ("b", "b_in", ring_y)):
            buf = ctx.buf(fifo)
            head = buf[more][:, 0] if not ring else ctx.buf(inbox)[more]
            buf[more] = np.concatenate([buf[more][:, 1:], head[:, None]], axis=1)
        st[ctx.mask, 0] += 1
        ctx.activate("step", where=more)

    prog.task("step", step)
    prog.task("advance", advance)
    prog.export("compute", "step")
    rt.load(prog)

    pos_x = np.argsort(order_x)
    pos_y = np.argsort(order_y)
    kx = (pos_x[px] * mx + pos_y[py] * my)[..., None] + np.arange(mx)
    ky = (pos_y[py] * my + pos_x[px] * mx)[..., None] + np.arange(my)
    a_blocks = a.reshape(h, tm, nl_full, tk).transpose(0, 2, 1, 3)    # [py, k, tm, tk]
    b_blocks = b.reshape(nl_full, tk, w, tn).transpose(2, 0, 1, 3)    # [px, k, tk, tn]
    rt.memcpy_h2d("a", a_blocks[py[..., None], kx % nl_full])
    rt.memcpy_h2d("b", b_blocks[px[..., None], ky % nl_full])
    stats = rt.launch("compute")
    c = rt.memcpy_d2h("c").transpose(0, 2, 1, 3).reshape(h * tm, w * tn)
    return KernelResult(c, stats.cycles, nl * tm * tk * tn, tuple(sorted(pool.taken)),
                        max(rx.hops + ry.hops, default=0), nl)
