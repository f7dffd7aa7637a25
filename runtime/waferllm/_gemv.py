"""MeshGEMV (WaferLLM §6) and its allreduce baselines.

``y = x · B`` with B (K×N) cut into H×W tiles (K along y, N along x) and x cut along y and
replicated along x.  Each PE does its local GEMV, then the column allreduces the partial
vectors:

* ``"ktree"`` — the K-tree allreduce with K = 2 (§6): groups of ≈√H PEs reduce toward their
  middle PE with relay-add chains from both sides (phase 1), the group roots reduce toward the
  global root (phase 2, passing through non-root routers at α per hop), and the root multicasts
  the result up and down the column (one routing stage).  ≈ 2√H/2 routing stages + H hops.
* ``"pipeline"`` — the Cerebras default GEMV's reduce: one relay-add chain from the top PE to
  the bottom PE (H routing stages), then a multicast back (2H hops in all).
* ``"ring"`` — reduce-scatter + all-gather on the interleaved column ring (every hop ≤ 2):
  2(H-1) store-and-forward steps, each a software routing stage: O[(2α+β)N].
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.mesh import MeshRuntime, PeContext, Program
from labrig.errors import UsageError
from labrig.runtime.waferllm._join import Join
from labrig.runtime.waferllm._result import KernelResult, check_divides
from labrig.runtime.waferllm._rings import (
    ColorPool,
    LineRoutes,
    ring_messages,
    ring_order,
    route_line,
)

__all__ = ["ALLREDUCES", "mesh_gemv"]

ALLREDUCES = ("ktree", "pipeline", "ring")

Grid = NDArray[np.int64]
Mask = NDArray[np.bool_]


def _tree_plan(h: int, kind: str) -> tuple[list[tuple[int, int, int]], int]:
    """Groups ``(start, stop, root)`` along the column and the global root's group index."""
    if kind == "pipeline":
        return [(0, h, h - 1)], 0
    g = max(1, round(h ** 0.5)) if h > 3 else h
    groups = [(s, min(s + g, h), s + (min(s + g, h) - s) // 2) for s in range(0, h, g)]
    return groups, len(groups) // 2


def mesh_gemv(rt: MeshRuntime, x: NDArray[np.float32], b: NDArray[np.float32],
              allreduce: str = "ktree") -> KernelResult:
    """``x @ b`` on the mesh.

    Parameters
    ----------
    rt : MeshRuntime
        W×H mesh; ``K % H == 0`` and ``N % W == 0``.
    x : ndarray, shape (K,)
    b : ndarray, shape (K, N)
    allreduce : {"ktree", "pipeline", "ring"}
        Column allreduce (see module docstring).

    Returns
    -------
    KernelResult
        ``out`` is ``y`` of shape (N,), as every PE of column px holds it after the allreduce.
    """
    if allreduce not in ALLREDUCES:
        raise UsageError(f"allreduce={allreduce!r}: must be one of {ALLREDUCES}")
    if x.ndim != 1 or b.ndim != 2 or b.shape[0] != x.shape[0]:
        raise UsageError(f"GEMV needs (K,) @ (K, N); got {x.shape} @ {b.shape}")
    w, h = rt.width, rt.height
    tk = check_divides("K", b.shape[0], h, "K is split over mesh rows")
    tn = check_divides("N", b.shape[1], w, "N is split over mesh columns")
    prog = rt.new_program(f"gemv-{allreduce}")
    pool = ColorPool()
    py, px = np.indices((h, w))
    prog.buffer("x", (1, tk))
    prog.buffer("b", (tk, tn))
    prog.buffer("part", (1, tn))
    prog.buffer("y", (1, tn))
    if allreduce == "ring":
        hops = _ring_allreduce(prog, pool, h, tn, py, rt.config.beta_cycles)
    else:
        hops = _tree_allreduce(prog, pool, h, tn, py, allreduce)
    prog.export("compute", "gemv")
    rt.load(prog)
    rt.memcpy_h2d("x", np.broadcast_to(x.reshape(h, 1, tk), (h, w, tk)))
    rt.memcpy_h2d("b", b.reshape(h, tk, w, tn).transpose(0, 2, 1, 3))
    stats = rt.launch("compute")
    ys = rt.memcpy_d2h("y")                                  # [py, px, tn]
    if not all(np.array_equal(ys[0], ys[r]) for r in range(h)):
        raise UsageError("allreduce left different results along a column")
    return KernelResult(ys[0].reshape(-1), stats.cycles, tk * tn, tuple(sorted(pool.taken)),
                        max(hops, default=0), 1)


def _local_gemv(ctx: PeContext) -> None:
    """``part = x @ b`` on every PE (tk·tn MACs)."""
    ctx.matmul("part", "x", "b", accumulate=False)


def _tree_allreduce(prog: Program, pool: ColorPool, h: int, tn: int, py: Grid,
                    kind: str) -> tuple[int, ...]:
    """Build the K-tree (or pipeline: one group rooted at the bottom) allreduce tasks."""
    groups, gi = _tree_plan(h, kind)
    roots = [r for _, _, r in groups]
    groot = roots[gi]
    p1s = route_line(prog, "y", [(p, p + 1) for s, e, r in groups for p in range(s, r)], pool)
    p1n = route_line(prog, "y", [(p, p - 1) for s, e, r in groups for p in range(r + 1, e)],
                     pool)
    p2s = route_line(prog, "y", [(roots[j], roots[j + 1]) for j in range(gi)], pool)
    p2n = route_line(prog, "y", [(roots[j], roots[j - 1]) for j in range(gi + 1, len(roots))],
                     pool)
    bn = route_line(prog, "y", [(groot, 0)] if groot > 0 else [], pool, deliver_all=True)
    bs = route_line(prog, "y", [(groot, h - 1)] if groot < h - 1 else [], pool,
                    deliver_all=True)
    prog.buffer("acc", (1, tn))
    prog.buffer("phase", (1,))
    join = Join(prog, "ar", ["out", "in_s", "in_n", "bcast_in", "b_n", "b_s"], then="next")
    is_root = np.isin(py, roots)
    is_groot = py == groot

    def chain_roles(ctx: PeContext, s: LineRoutes, n: LineRoutes, on: Mask) -> dict[str, Mask]:
        """Head/mid/into masks of a southward chain ``s`` and northward chain ``n``."""
        out = {}
        for name, ch in (("s", s), ("n", n)):
            sends = on & (ch.send[py] >= 0)
            out[f"head_{name}"] = sends & (ch.recv[py] < 0)
            out[f"mid_{name}"] = sends & (ch.recv[py] >= 0)
            out[f"into_{name}"] = on & (ch.send[py] < 0) & (ch.recv[py] >= 0)
        return out

    def post_chains(ctx: PeContext, r: dict[str, Mask], s: LineRoutes, n: LineRoutes, src: str,
                    expect: Grid) -> Grid:
        for name, ch in (("s", s), ("n", n)):
            ctx.send(ch.send[py], src, where=r[f"head_{name}"], then=join.task("out"))
            ctx.relay(ch.recv[py], ch.send[py], tn, where=r[f"mid_{name}"], addend=src,
                      then=join.task("out"))
            ctx.recv(ch.recv[py], "acc", where=r[f"into_{name}"], then=join.task(f"in_{name}"),
                     add=True)
            expect = np.where(r[f"head_{name}"] | r[f"mid_{name}"], expect | join.mask("out"),
                              expect)
            expect = np.where(r[f"into_{name}"], expect | join.mask(f"in_{name}"), expect)
        return expect

    def gemv(ctx: PeContext) -> None:
        _local_gemv(ctx)
        ctx.buf("phase")[ctx.mask, 0] = 1
        ctx.activate("phase1")

    def phase1(ctx: PeContext) -> None:
        m = ctx.mask
        ctx.copy("acc", "part", where=m & is_root)
        r = chain_roles(ctx, p1s, p1n, m)
        expect = post_chains(ctx, r, p1s, p1n, "part", np.zeros(m.shape, np.int64))
        listen = m & ~is_groot
        ctx.recv(np.where(py < groot, bn.recv[py], bs.recv[py]), "y", where=listen,
                 then=join.task("bcast_in"))
        # group roots count the broadcast in phase 2 (they reduce again first)
        expect = np.where(listen & ~is_root, expect | join.mask("bcast_in"), expect)
        join.expect(ctx, expect, where=m & (expect > 0))
        ctx.activate("next", where=m & (expect == 0))

    def nxt(ctx: PeContext) -> None:
        ph = ctx.buf("phase")
        m = ctx.mask
        p2 = m & (ph[..., 0] == 1) & is_root
        bc = m & (ph[..., 0] == 2) & is_groot
        ph[m, 0] += 1
        r = chain_roles(ctx, p2s, p2n, p2)
        expect = post_chains(ctx, r, p2s, p2n, "acc", np.zeros(m.shape, np.int64))
        # non-global roots still wait for the broadcast they posted in phase 1
        expect = np.where(p2 & ~is_groot, expect | join.mask("bcast_in"), expect)
        ctx.copy("y", "acc", where=bc)
        for ch, part in ((bn, "b_n"), (bs, "b_s")):
            first = bc & (ch.send[py] >= 0)
            ctx.send(ch.send[py], "y", where=first, then=join.task(part))
            expect = np.where(first, expect | join.mask(part), expect)
        again = (p2 | bc) & (expect == 0) & is_groot & (ph[..., 0] <= 3)
        join.expect(ctx, expect, where=(p2 | bc) & (expect > 0))
        ctx.activate("next", where=again)

    prog.task("gemv", gemv)
    prog.task("phase1", phase1)
    prog.task("next", nxt)
    return p1s.hops + p1n.hops + p2s.hops + p2n.hops + bn.hops + bs.hops


def _ring_allreduce(prog: Program, pool: ColorPool, h: int, tn: int, py: Grid,
                    beta: int) -> tuple[int, ...]:
    """Reduce-scatter + all-gather over the interleaved column ring (chunks of ⌈tn/H⌉)."""
    order = ring_order(h)
    pos = np.argsort(order)[py]
    ring = route_line(prog, "y", ring_messages(order), pool)
    c = -(-tn // h)
    prog.buffer("chunks", (h, c))
    prog.buffer("inbox", (c,))
    prog.buffer("out", (c,))
    prog.buffer("step", (1,))
    join = Join(prog, "ring", ["sent", "got"], then="combine")
    steps = 2 * (h - 1)

    def chunk_ids(st: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(chunk sent, chunk received) at step ``st`` for each PE."""
        rs = st < h - 1
        sent = np.where(rs, pos + st, pos - 1 + (st - (h - 1))) % h
        return sent, (sent + 1) % h

    def post(ctx: PeContext, where: NDArray[np.bool_]) -> None:
        st = ctx.buf("step")[..., 0].astype(np.int64)
        sent, _ = chunk_ids(st)
        ch = ctx.buf("chunks")
        ctx.buf("out")[where] = ch[where, sent[where]]
        join.expect(ctx, join.mask("sent", "got"), where=where)
        ctx.send(ring.send[py], "out", where=where, then=join.task("sent"))
        ctx.recv(ring.recv[py], "inbox", where=where, then=join.task("got"))

    def gemv(ctx: PeContext) -> None:
        _local_gemv(ctx)
        m = ctx.mask
        padded = np.zeros((int(m.sum()), h * c), np.float32)
        padded[:, :tn] = ctx.buf("part")[m].reshape(-1, tn)
        ctx.buf("chunks")[m] = padded.reshape(-1, h, c)
        ctx.buf("step")[m, 0] = 0
        if steps:
            post(ctx, m)
        else:
            ctx.buf("y")[m] = ctx.buf("part")[m]

    def combine(ctx: PeContext) -> None:
        m = ctx.mask
        st = ctx.buf("step")[..., 0].astype(np.int64)
        _, got = chunk_ids(st)
        ch, inbox = ctx.buf("chunks"), ctx.buf("inbox")
        rs = m & (st < h - 1)
        ag = m & ~rs
        ch[rs, got[rs]] += inbox[rs]
        ch[ag, got[ag]] = inbox[ag]
        ctx.charge(c + beta, rs)      # software routing stage: receive, add, re-send
        ctx.charge(beta, ag)
        ctx.buf("step")[m, 0] += 1
        more = m & (st + 1 < steps)
        post(ctx, more)
        done = m & ~more
        if done.any():
            ctx.buf("y")[done] = ch[done].reshape(int(done.sum()), 1, -1)[..., :tn]

    prog.task("gemv", gemv)
    prog.task("combine", combine)
    return ring.hops
