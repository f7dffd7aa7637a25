"""Maintenance (OSDI'25 §4.2): estimate → verify → commit or reject, for merges and splits.

Each level is processed bottom-up with the same rules; a level only sees its own partitions,
its items and its access window (``Level``).

1. Estimate each partition's merge delta Δ'Merge (vectors spread evenly over its r nearest
   partitions) and split delta Δ'Split (Eq. 5); candidates have Δ' < −τ.
2. Merges first: reassign the candidate's vectors to their nearest remaining centroids and
   recompute ΔMerge (Eq. 7) with the real receivers; commit if still < −τ, else reject.
3. Splits: tentatively 2-means the partition, recompute ΔSplit (Eq. 4) with the children's
   real sizes and A_child = αA; commit if < −τ, otherwise roll back (the public code never
   verifies splits; the paper does).  Committed splits get local refinement over the r
   nearest partitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labrig.runtime.quake._cost import CostModel
from labrig.runtime.quake._level import Level
from labrig.runtime.quake._params import QuakeConfig
from labrig.runtime.vecdata import assign, sq_dists

__all__ = ["MaintenanceReport", "run_maintenance"]

SPLIT_KMEANS_ITERS = 5   # 2-means rounds per split
REFINE_CANDIDATES = 16   # group centroids each vector is compared with in local refinement


@dataclass
class MaintenanceReport:
    """Outcome of one maintenance pass (§4.2): committed and rejected actions, all levels."""

    splits: int = 0
    splits_rejected: int = 0
    merges: int = 0
    merges_rejected: int = 0
    cost_before_s: float = 0.0
    cost_after_s: float = 0.0


def _neighbours(level: Level, pid: int, r: int) -> list[int]:
    pids, cent, _ = level.centroids()
    c = level.parts[pid].centroid
    dist = ((cent - c) ** 2).sum(1)
    order = [int(pids[i]) for i in np.argsort(dist)]
    return [p for p in order if p != pid][:r]


def _try_merge(level: Level, cost: CostModel, pid: int, tau: float) -> bool:
    """Verify a merge with the real receivers; commit (True) or reject (False)."""
    tr, parts = level.tracker, level.parts
    part = parts[pid]
    others = [p for p in parts if p != pid]
    if not others:
        return False
    cent = np.stack([parts[p].centroid for p in others])
    dest = np.array(others, np.int64)[assign(part.x, cent)] if part.size else np.zeros(0, np.int64)
    a, s = tr.frequency(pid), part.size
    recv = {int(p): int(c) for p, c in zip(*np.unique(dest, return_counts=True))}
    delta = cost.merge_delta(a, s, level.nlist, (
        (tr.frequency(m), parts[m].size, a * c / max(s, 1), c) for m, c in recv.items()))
    if delta >= -tau:
        return False
    hits = tr.counts.get(pid, 0.0)
    for m, c in recv.items():
        sel = dest == m
        parts[m].append(part.x[sel], part.ids[sel], part.norms[sel])
        level.loc.update(dict.fromkeys(part.ids[sel].tolist(), m))
        tr.counts[m] = tr.counts.get(m, 0.0) + hits * c / max(s, 1)
    level.drop_partition(pid)
    tr.replace([pid], {})
    return True


def _try_split(level: Level, cost: CostModel, cfg: QuakeConfig, pid: int, tau: float
               ) -> list[int]:
    """Tentative 2-means split, verified with Eq. 4; returns the committed children (or [])."""
    tr = level.tracker
    part = level.parts[pid]
    if part.size < 2:
        return []
    c2, lab = _two_means(part.x, SPLIT_KMEANS_ITERS, cfg.seed + pid)
    s_l, s_r = int((lab == 0).sum()), int((lab == 1).sum())
    a = tr.frequency(pid)
    if min(s_l, s_r) == 0 or cost.split_exact(a, part.size, s_l, s_r, level.nlist) >= -tau:
        return []  # rolled back: the tentative children are never installed
    hits = tr.counts.get(pid, 0.0)
    level.drop_partition(pid)
    kids = [level.new_partition(c2[j], part.x[lab == j], part.ids[lab == j]) for j in (0, 1)]
    tr.replace([pid], {kid: cfg.alpha * hits for kid in kids})
    return kids


def _two_means(x: np.ndarray, iters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """2-means of a partition (the tentative split, §4.2): Lloyd rounds seeded like
    :func:`labrig.runtime.vecdata.kmeans`, with the assignment as one projection --
    ``x`` is nearer c1 than c0 iff ``x·(c1 − c0) > (‖c1‖² − ‖c0‖²) / 2`` -- and the means
    from one masked sum, which is several times faster than the general k-means at k = 2.
    Returns the centroids (2, d) and each row's side (0 or 1)."""
    rng = np.random.default_rng(seed)
    c = x[rng.choice(len(x), 2, replace=False)].astype(np.float32)
    total = x.sum(0, dtype=np.float64)

    def side(c: np.ndarray) -> np.ndarray:
        cn = (c.astype(np.float64) ** 2).sum(1)
        return x @ (c[1] - c[0]) > (cn[1] - cn[0]) / 2

    for _ in range(iters):
        one = side(c)
        n1 = int(one.sum())
        if n1 in (0, len(x)):               # one side empty: re-seed it from a random row
            c[0 if n1 else 1] = x[rng.choice(len(x))]
            continue
        s1 = x[one].sum(0, dtype=np.float64)
        c = np.stack([(total - s1) / (len(x) - n1), s1 / n1]).astype(np.float32)
    return c, side(c).astype(np.int64)


def _refine(level: Level, cfg: QuakeConfig, kids: list[int]) -> None:
    """Local refinement (§4.2): k-means rounds over the new partitions and the r partitions
    nearest to each.  Partitions keep their ids (and so their access counts); one left empty
    is dropped.

    The group is the union over every split of the pass (as the public code does), which
    after bulk inserts can be most of the index.  A k-means round over G partitions compares
    every vector with G centroids; here a vector is compared with the ``REFINE_CANDIDATES``
    group centroids nearest its own partition's (its own included) -- exact while
    G <= REFINE_CANDIDATES, and otherwise missing only moves to centroids farther than that,
    which one local round does not make.  Late in the full synthetic run (≈ 350 partitions,
    ~30 splits a pass) this took refinement from ~200 ms to ~47 ms a pass.  Centroid sums
    start from each partition's own (contiguous) rows and are corrected for the rows that
    moved, and only moved rows update the id -> partition map.
    """
    live = [k for k in kids if k in level.parts]
    if not live:
        return
    group = list(dict.fromkeys(live + [n for k in live
                                       for n in _neighbours(level, k, cfg.refinement_radius)]))
    parts = level.parts
    sizes = np.array([parts[p].size for p in group], np.int64)
    owner = np.repeat(np.arange(len(group)), sizes)          # group slot each row comes from
    x = np.concatenate([parts[p].x for p in group])
    ids = np.concatenate([parts[p].ids for p in group])
    norms = np.concatenate([parts[p].norms for p in group])
    cent = np.stack([parts[p].centroid for p in group])
    m = min(REFINE_CANDIDATES, len(group))
    bounds0 = np.concatenate([[0], np.cumsum(sizes)])
    slot_sums = np.stack([x[a:b].sum(0, dtype=np.float64)
                          for a, b in zip(bounds0[:-1].tolist(), bounds0[1:].tolist())])
    for _ in range(cfg.refinement_iters):
        lab = _local_assign(x, sizes, cent, m)
        # centroid sums: each slot's own rows (contiguous), corrected for the rows that moved
        counts = np.bincount(lab, minlength=len(group))
        sums = slot_sums.copy()
        mv = np.flatnonzero(lab != owner)
        if len(mv):
            rows_t = np.ascontiguousarray(x[mv].T)
            sums -= _scatter_sum(owner[mv], rows_t, len(group))
            sums += _scatter_sum(lab[mv], rows_t, len(group))
        kept = counts > 0                                     # an empty cluster keeps its centroid
        cent[kept] = (sums[kept] / counts[kept, None]).astype(np.float32)
    lab = _local_assign(x, sizes, cent, m)
    moved = lab != owner
    if moved.any():   # only rows that changed partition need a new id -> partition entry
        slot_pid = np.array(group, np.int64)
        level.loc.update(zip(ids[moved].tolist(), slot_pid[lab[moved]].tolist()))
    order = np.argsort(lab, kind="stable")                   # rows of a slot stay in order
    bounds = np.searchsorted(lab[order], np.arange(len(group) + 1))
    gone = []
    for j, p in enumerate(group):
        sel = order[bounds[j]:bounds[j + 1]]
        if len(sel):
            level.replace_partition(p, cent[j], x[sel], ids[sel], norms[sel], relocate=False)
        else:
            level.drop_partition(p)
            gone.append(p)
    level.tracker.replace(gone, {})


def _scatter_sum(to: np.ndarray, rows_t: np.ndarray, n: int) -> np.ndarray:
    """Row sums per target: out[j] = Σ rows[i] over to[i] == j (``rows_t`` is the rows
    transposed, contiguous); one bincount per column beats ``np.add.at`` many times over."""
    return np.stack([np.bincount(to, weights=col, minlength=n) for col in rows_t], axis=1)


def _local_assign(x: np.ndarray, sizes: np.ndarray, cent: np.ndarray, m: int) -> np.ndarray:
    """Nearest centroid of each row among the ``m`` centroids nearest to the centroid of the
    partition it comes from (rows are grouped by partition, ``sizes`` long each).  ``‖x‖²``
    is the same for every candidate, so it is left out."""
    cc = (cent * cent).sum(1)
    near = np.argsort(sq_dists(cent, cent), axis=1, kind="stable")[:, :m]
    out = np.empty(len(x), np.int64)
    start = 0
    for j, n in enumerate(sizes.tolist()):
        if n:
            cand = near[j]
            score = cc[cand][None, :] - 2.0 * (x[start:start + n] @ cent[cand].T)
            out[start:start + n] = cand[score.argmin(1)]
        start += n
    return out


def maintain_level(level: Level, cost: CostModel, cfg: QuakeConfig, rep: MaintenanceReport
                   ) -> None:
    """Stages 1-3 of §4.2 on one level: estimate, then verify and commit or reject."""
    tr = level.tracker
    if len(tr) == 0 or level.nlist == 0:
        return
    tau, n = cfg.tau_s, level.nlist
    pids, cent, _ = level.centroids()
    r = min(cfg.refinement_radius, n - 1)
    near = (np.argsort(sq_dists(cent, cent), axis=1)[:, 1:r + 1] if r > 0
            else np.zeros((n, 0), np.int64))
    a = np.array([tr.frequency(p) for p in pids.tolist()])
    s = np.array([level.parts[p].size for p in pids.tolist()], np.float64)
    dm = (cost.merge_estimate_many(a, s, n, a[near], s[near]) if r > 0
          else np.full(n, np.inf))
    ds = cost.split_estimate_many(a, s, n)
    is_merge = dm < -tau
    can_split = (s > cfg.min_partition_size) & (ds < -tau)
    merge_c = [(float(dm[i]), int(pids[i])) for i in np.flatnonzero(is_merge)]
    split_c = {int(pids[i]): float(ds[i]) for i in np.flatnonzero(~is_merge & can_split)}
    for _, pid in sorted(merge_c):
        if pid in level.parts and level.nlist > 1:
            if _try_merge(level, cost, pid, tau):
                rep.merges += 1
                continue
            rep.merges_rejected += 1
        # a rejected merge leaves the partition as it was: it may still be worth splitting
        i = int(np.searchsorted(pids, pid))
        if can_split[i]:
            split_c[pid] = float(ds[i])
    kids: list[int] = []
    for _, pid in sorted((d, p) for p, d in split_c.items()):
        if pid in level.parts and level.parts[pid].size > cfg.min_partition_size:
            new = _try_split(level, cost, cfg, pid, tau)
            if new:
                rep.splits += 1
                kids += new
            else:
                rep.splits_rejected += 1
    _refine(level, cfg, kids)   # once over all new partitions, as the public code does


def run_maintenance(levels: list[Level], cost: CostModel, cfg: QuakeConfig,
                    total_cost: float) -> MaintenanceReport:
    """One pass over every level, bottom-up (§4.2 stage 4: "repeat one level up").

    Actions below reach the levels above through ``Level.on_new``/``on_drop`` before those
    levels are themselves maintained.  ``rep.cost_after_s`` is left for the caller.
    """
    rep = MaintenanceReport(cost_before_s=total_cost)
    for level in levels:
        maintain_level(level, cost, cfg, rep)
    return rep
