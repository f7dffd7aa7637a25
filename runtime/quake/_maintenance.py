"""Maintenance (OSDI'25 §4.2): estimate → verify → commit or reject, for merges and splits.

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

from typing import TYPE_CHECKING

import numpy as np

from labrig.runtime.vecdata import assign, kmeans

if TYPE_CHECKING:
    from labrig.runtime.quake._index import MaintenanceReport, QuakeIndex

__all__ = ["run_maintenance"]

SPLIT_KMEANS_ITERS = 5   # 2-means rounds per split


def _neighbours(index: QuakeIndex, pid: int, r: int) -> list[int]:
    pids, cent, _ = index._centroids()
    c = index._parts[pid].centroid
    dist = ((cent - c) ** 2).sum(1)
    order = [int(pids[i]) for i in np.argsort(dist)]
    return [p for p in order if p != pid][:r]


def _try_merge(index: QuakeIndex, pid: int, tau: float) -> bool:
    """Verify a merge with the real receivers; commit (True) or reject (False)."""
    cost, tr, parts = index.cost, index.tracker, index._parts
    assert cost is not None
    part = parts[pid]
    others = [p for p in parts if p != pid]
    if not others:
        return False
    cent = np.stack([parts[p].centroid for p in others])
    dest = np.array(others, np.int64)[assign(part.x, cent)] if part.size else np.zeros(0, np.int64)
    a, s = tr.frequency(pid), part.size
    recv = {int(p): int(c) for p, c in zip(*np.unique(dest, return_counts=True))}
    delta = cost.merge_delta(a, s, index.nlist, (
        (tr.frequency(m), parts[m].size, a * c / max(s, 1), c) for m, c in recv.items()))
    if delta >= -tau:
        return False
    hits = tr.counts.get(pid, 0.0)
    for m, c in recv.items():
        sel = dest == m
        rp = parts[m]
        rp.x = np.concatenate([rp.x, part.x[sel]])
        rp.ids = np.concatenate([rp.ids, part.ids[sel]])
        rp.norms = np.concatenate([rp.norms, part.norms[sel]])
        for v in part.ids[sel].tolist():
            index._loc[v] = m
        tr.counts[m] = tr.counts.get(m, 0.0) + hits * c / max(s, 1)
    index._drop_partition(pid)
    tr.replace([pid], {})
    return True


def _try_split(index: QuakeIndex, pid: int, tau: float) -> list[int]:
    """Tentative 2-means split, verified with Eq. 4; returns the committed children (or [])."""
    cost, tr, cfg = index.cost, index.tracker, index.config
    assert cost is not None
    part = index._parts[pid]
    c2 = kmeans(part.x, 2, iters=SPLIT_KMEANS_ITERS, seed=cfg.seed + pid)
    if len(c2) < 2:
        return []
    lab = assign(part.x, c2)
    s_l, s_r = int((lab == 0).sum()), int((lab == 1).sum())
    a = tr.frequency(pid)
    if min(s_l, s_r) == 0 or cost.split_exact(a, part.size, s_l, s_r, index.nlist) >= -tau:
        return []  # rolled back: the tentative children are never installed
    hits = tr.counts.get(pid, 0.0)
    index._drop_partition(pid)
    kids = [index._new_partition(c2[j], part.x[lab == j], part.ids[lab == j]) for j in (0, 1)]
    tr.replace([pid], {kid: cfg.alpha * hits for kid in kids})
    return kids


def _refine(index: QuakeIndex, kids: list[int]) -> None:
    """Local refinement (§4.2): k-means rounds over the children and their r neighbours."""
    live = [k for k in kids if k in index._parts]
    if not live:
        return
    group = list(dict.fromkeys(live + [n for k in live
                                       for n in _neighbours(index, k, index.config.refinement_radius)]))
    parts = index._parts
    x = np.concatenate([parts[p].x for p in group])
    ids = np.concatenate([parts[p].ids for p in group])
    cent = np.stack([parts[p].centroid for p in group])
    for _ in range(index.config.refinement_iters):
        lab = assign(x, cent)
        for j in range(len(group)):
            sel = lab == j
            if sel.any():
                cent[j] = x[sel].mean(0)
    lab = assign(x, cent)
    hits = {p: index.tracker.counts.get(p, 0.0) for p in group}
    for p in group:
        index._drop_partition(p)
    new_hits = {}
    for j, p in enumerate(group):
        sel = lab == j
        if sel.any():
            new_hits[index._new_partition(cent[j], x[sel], ids[sel])] = hits[p]
    index.tracker.replace(group, new_hits)


def run_maintenance(index: QuakeIndex) -> MaintenanceReport:
    """One maintenance pass over level 0; returns what was committed and rejected."""
    from labrig.runtime.quake._index import MaintenanceReport

    cost, tr, cfg = index.cost, index.tracker, index.config
    assert cost is not None
    rep = MaintenanceReport(cost_before_s=index.total_cost())
    if len(tr) == 0:
        rep.cost_after_s = rep.cost_before_s
        return rep
    tau, n = cfg.tau_s, index.nlist
    merge_c: list[tuple[float, int]] = []
    split_c: list[tuple[float, int]] = []
    for pid, part in list(index._parts.items()):
        a, s = tr.frequency(pid), part.size
        nb = _neighbours(index, pid, cfg.refinement_radius)
        if nb:
            dm = cost.merge_estimate(a, s, n, [(tr.frequency(m), index._parts[m].size) for m in nb])
            if dm < -tau:
                merge_c.append((dm, pid))
                continue
        if s > cfg.min_partition_size:
            ds = cost.split_estimate(a, s, n)
            if ds < -tau:
                split_c.append((ds, pid))
    for _, pid in sorted(merge_c):
        if pid in index._parts and index.nlist > 1:
            if _try_merge(index, pid, tau):
                rep.merges += 1
            else:
                rep.merges_rejected += 1
    kids: list[int] = []
    for _, pid in sorted(split_c):
        if pid in index._parts and index._parts[pid].size > cfg.min_partition_size:
            new = _try_split(index, pid, tau)
            if new:
                rep.splits += 1
                kids += new
            else:
                rep.splits_rejected += 1
    _refine(index, kids)
    rep.cost_after_s = index.total_cost()
    return rep
