"""Query execution over the level hierarchy: APS descent and batched fixed-nprobe scans.

APS (OSDI'25 §5): the root (every top-level centroid) gives the top level's candidates; each
level l >= 1 runs APS at the fixed upper-level target (0.99) for the ``f_M · N_{l-1}``
nearest centroids of the level below, which become level l-1's candidates; level 0 runs APS
at the query's recall target for the k nearest vectors.  One C call per level
(:mod:`._kernel`).

Fixed nprobe: the nprobe nearest level-0 centroids (ranked exactly), then every (query,
partition) pair is scanned by the worker that owns the partition, ``pid mod W`` (§6
affinity), into that worker's own top-k buffers; the buffers are merged at the end.  APS
batches are spread over the workers by query, as the public code's ``parallel_for`` over
queries does.  A single query's level-0 APS can run on every worker at once (§6, Algorithm 2;
``qk_aps_par``): candidate partitions belong to worker ``pid mod W``, an idle worker steals,
and the estimate is re-evaluated at every merge.  Its workers are C threads
(:class:`._kernel.ApsPool`): a Python thread hand-off costs about as much as a whole scan.
Whether a query runs that way follows ``QuakeConfig.single_query_parallel``; with "auto" a
:class:`ScanModeChooser` measures both ways and uses the faster.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from labrig.runtime.quake._kernel import ApsPool
from labrig.runtime.quake._level import Level
from labrig.runtime.quake._scan import merge_topk

if TYPE_CHECKING:
    from labrig.runtime.quake._index import QuakeIndex

__all__ = ["ScanModeChooser", "aps_batch", "n_candidates", "nprobe_batch"]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
# Below this much scan work (multiply-adds) a batch runs on the calling thread: handing jobs
# to worker threads costs tens of µs, about what the C kernel needs for ~1 M multiply-adds.
PARALLEL_MIN_MACS = 1 << 20
# A single query shares its level-0 APS with the pool above this much expected scan work
# (measured: about break-even at 64 k multiply-adds on a 2-core host).
PARALLEL_APS_MIN_MACS = 1 << 16
PARALLEL_EXPECT_PARTS = 4
SCRATCH_KEYS_MAX = 16        # (k, candidates) buffer shapes kept per thread


def n_candidates(index: QuakeIndex, level: Level) -> int:
    """``f_M · N_l`` candidate partitions of a level, at least ``min_candidates`` (§5)."""
    cfg = index.config
    n = level.nlist
    return min(n, max(cfg.min_candidates, math.ceil(cfg.candidate_fraction * n)))


class _Scratch:
    """Per-thread buffers and their C pointers for one APS call."""

    def __init__(self, ffi: Any, k: int, ncand: int) -> None:
        self.td = np.empty(k, np.float32)
        self.ti = np.empty(k, np.int64)
        self.cnt = np.zeros(1, np.int32)
        self.scanned = np.zeros(ncand, np.uint8)
        self.work = np.empty(3 * ncand, np.float64)
        self.c = tuple(ffi.from_buffer(t, a) for t, a in (
            ("float[]", self.td), ("int64_t[]", self.ti), ("int32_t[]", self.cnt),
            ("uint8_t[]", self.scanned), ("double[]", self.work)))


def _nearest(index: QuakeIndex, ffi: Any, lib: Any, v: Any, qc: Any, qn: float, m: int
             ) -> tuple[NDArray[np.int32], F32]:
    """Slots and squared distances of the ``m`` centroids of view ``v`` nearest the query."""
    slots = np.empty(max(m, 1), np.int32)
    dists = np.empty(max(m, 1), np.float32)
    work = np.empty(2 * max(len(v.pids), 1), np.float32)
    got = lib.qk_nearest(qc, qn, v.cent_c, v.cn_c, len(v.pids), index.d, m,
                         ffi.from_buffer("int32_t[]", slots), ffi.from_buffer("float[]", dists),
                         ffi.from_buffer("float[]", work))
    return slots[:got], dists[:got]


class ScanModeChooser:
    """Picks, per query, whether level-0 APS runs on the calling thread or on every worker.

    Which is faster depends on the data: two workers help when a query scans many
    partitions of similar size (each scans its own, §6), and hurt when APS stops after a few
    and the second worker's partition was not needed -- a large one costs more than the
    hand-off saves.  So the index measures both: a moving average of the C call's wall time
    per mode, the faster one used, the other re-tried every ``EXPLORE_EVERY`` queries so a
    change in the data or the machine's load is noticed (a two-armed bandit)."""

    EXPLORE_EVERY = 8
    EWMA = 1 / 32

    def __init__(self) -> None:
        self.mean: list[float | None] = [None, None]     # seconds: [sequential, parallel]
        self.count = 0

    def choose(self) -> bool:
        """True: run this query in parallel."""
        self.count += 1
        seq, par = self.mean
        if seq is None or par is None:
            return seq is not None                       # try sequential first, then parallel
        best = par < seq
        return (not best) if self.count % self.EXPLORE_EVERY == 0 else best

    def record(self, parallel: bool, seconds: float) -> None:
        i = int(parallel)
        m = self.mean[i]
        self.mean[i] = seconds if m is None else m + self.EWMA * (seconds - m)


def _worth_parallel(index: QuakeIndex, level: Level) -> bool:
    """Whether sharing a query's scan is worth trying at all: waking the pool costs ~10-20
    µs, so indexes whose partitions hold a few µs of work each never try."""
    mean_size = level.ntotal / max(level.nlist, 1)
    return index.d * mean_size * PARALLEL_EXPECT_PARTS >= PARALLEL_APS_MIN_MACS


def _aps_query(index: QuakeIndex, ffi: Any, lib: Any, views: list[Any], q: F32, qn: float,
               k: int, target: float, pool: ApsPool | None,
               scratch: dict[tuple[int, int], _Scratch] | None = None
               ) -> tuple[F32, I64, list[I64]]:
    """APS descent for one query; returns (distances, ids, scanned pids per level).

    With ``pool``, level 0 -- where nearly all the scanning is -- runs on all the pool's
    workers, each candidate partition owned by worker ``pid mod W`` (§6 affinity).
    ``scratch``: reusable buffers of the calling thread, by (k, candidates)."""
    levels = index._levels
    cfg = index.config
    qc = ffi.from_buffer("float[]", q)
    top = len(levels) - 1
    slots, dists = _nearest(index, ffi, lib, views[top], qc, qn, n_candidates(index, levels[top]))
    scanned: list[I64] = [np.zeros(0, np.int64)] * len(levels)
    cap = index._cap_c
    for lv in range(top, -1, -1):
        v = views[lv]
        kk = k if lv == 0 else n_candidates(index, levels[lv - 1])
        tgt = target if lv == 0 else cfg.upper_recall_target
        m = len(slots)
        s = scratch.get((kk, m)) if scratch is not None else None
        if s is None:
            s = _Scratch(ffi, kk, max(m, 1))
            if scratch is not None:
                scratch[(kk, m)] = s
        args = (qc, qn, index.d, kk, m, ffi.from_buffer("int32_t[]", slots),
                ffi.from_buffer("float[]", dists), v.cent_c,
                v.parts, cap[0], cap[1], tgt, cfg.recompute_threshold, *s.c)
        if lv == 0 and pool is not None and m > 1 and _worth_parallel(index, levels[0]):
            chooser = index._scan_mode
            par = cfg.single_query_parallel == "always" or chooser.choose()
            t0 = time.perf_counter()
            if par:
                owner = v.owner_of(pool.width)[slots]
                with pool.lock:
                    lib.qk_aps_par(pool.ptr, ffi.from_buffer("int32_t[]", owner), *args)
            else:
                lib.qk_aps(*args)
            chooser.record(par, time.perf_counter() - t0)
        else:
            lib.qk_aps(*args)
        scanned[lv] = v.pids[slots[np.flatnonzero(s.scanned[:m])]]
        cnt = int(s.cnt[0])
        if lv == 0:
            return s.td[:cnt].copy(), s.ti[:cnt].copy(), scanned
        if cnt:
            slots = np.ascontiguousarray(views[lv - 1].slot_of[s.ti[:cnt]])
            dists = s.td[:cnt].copy()
        else:   # the candidates above held no items (emptied partitions): rank exactly
            slots, dists = _nearest(index, ffi, lib, views[lv - 1], qc, qn, kk)
    raise AssertionError("unreachable: the loop returns at level 0")


def aps_batch(index: QuakeIndex, q: F32, k: int, target: float, *, record: bool = True
              ) -> tuple[F32, I64]:
    """APS for every row of ``q`` (n, d); records the scanned partitions in the access
    windows unless ``record`` is false (calibration queries are not workload)."""
    mod = index._kernel
    ffi, lib = mod.ffi, mod.lib
    views = [lv.view(ffi) for lv in index._levels]
    qn = (q * q).sum(1, dtype=np.float32)
    out_d = np.full((len(q), k), np.inf, np.float32)
    out_i = np.full((len(q), k), -1, np.int64)
    scans: list[list[I64]] = [[] for _ in range(len(q))]

    w = index._width
    single = len(q) == 1 or w <= 1
    pool = index._aps_pool if single else None

    scratch = None
    if single:                          # buffers of the calling thread, reused across queries
        scratch = getattr(index._tls, "scratch", None)
        if scratch is None or len(scratch) > SCRATCH_KEYS_MAX:
            scratch = index._tls.scratch = {}

    def run(rows: range) -> None:
        for r in rows:
            d, i, sc = _aps_query(index, ffi, lib, views, q[r], float(qn[r]), k, target, pool,
                                  scratch)
            out_d[r, :len(d)], out_i[r, :len(i)] = d, i
            scans[r] = sc

    if single:
        run(range(len(q)))
    else:
        step = math.ceil(len(q) / w)
        futs = [index._workers[j].submit(run, range(j * step, min(len(q), (j + 1) * step)))
                for j in range(w) if j * step < len(q)]
        for f in futs:
            f.result()
    for sc in scans if record else ():
        for lv, pids in enumerate(sc):
            index._levels[lv].tracker.record(pids)
    return out_d, out_i


def nprobe_batch(index: QuakeIndex, q: F32, k: int, nprobe: int) -> tuple[F32, I64]:
    """Scan the ``nprobe`` nearest level-0 partitions of each query (§6 affinity)."""
    mod = index._kernel
    ffi, lib = mod.ffi, mod.lib
    level = index._levels[0]
    view = level.view(ffi)
    n, nl = len(q), len(view.pids)
    qn = (q * q).sum(1, dtype=np.float32)
    cd = qn[:, None] - 2.0 * (q @ view.cent.T) + view.cn[None, :]
    probe = (np.argpartition(cd, nprobe - 1, axis=1)[:, :nprobe] if nprobe < nl
             else np.broadcast_to(np.arange(nl), (n, nl)))
    flat = probe.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.flatnonzero(np.diff(flat[order])) + 1
    segs = [(int(flat[seg[0]]), np.ascontiguousarray(seg // nprobe, dtype=np.int32))
            for seg in np.split(order, bounds) if seg.size]
    work_macs = index.d * sum(view.parts[slot].size * len(rows) for slot, rows in segs)
    w = index._width if work_macs >= PARALLEL_MIN_MACS else 1
    jobs: list[list[tuple[int, NDArray[np.int32]]]] = [[] for _ in range(w)]
    for slot, rows in segs:
        jobs[int(view.pids[slot]) % w].append((slot, rows))
    bufs = [(np.full((n, k), np.inf, np.float32), np.full((n, k), -1, np.int64),
             np.zeros(n, np.int32)) for _ in range(w)]
    qc, qnc = ffi.from_buffer("float[]", q), ffi.from_buffer("float[]", qn)

    def work(j: int) -> None:
        td, ti, cnt = bufs[j]
        tdc, tic = ffi.from_buffer("float[]", td), ffi.from_buffer("int64_t[]", ti)
        cntc = ffi.from_buffer("int32_t[]", cnt)
        for slot, rows in jobs[j]:
            lib.qk_scan_batch(qc, qnc, index.d, k, view.parts + slot, len(rows),
                              ffi.from_buffer("int32_t[]", rows), tdc, tic, cntc)

    if w == 1:
        work(0)
    else:
        futs = [index._workers[j].submit(work, j) for j in range(w) if jobs[j]]
        for f in futs:
            f.result()
    for row in view.pids[probe]:
        level.tracker.record(row)
    dist = np.concatenate([b[0] for b in bufs], 1)
    ids = np.concatenate([b[1] for b in bufs], 1)
    return merge_topk(dist, ids, k)
