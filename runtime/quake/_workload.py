"""Dynamic workloads for Quake (OSDI'25 §7.1): inserts, deletes and skewed, drifting queries.

:func:`drifting_workload` is synthetic and seeded: cluster centres appear over time, inserts
come from the newest clusters, queries favour recent clusters (Zipf-like popularity), and the
oldest vectors are deleted.  :func:`month_workload` replays a real data set whose base is in
arrival order (shared/datasets/pypi-minilm: ``base_months``): vectors arrive month by month,
queries come more often from recent months, old vectors are deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from labrig.errors import UsageError
from labrig.runtime.vecdata import VectorDataset

__all__ = ["Op", "Workload", "drifting_workload", "month_workload"]

ZIPF_S = 1.1                 # popularity skew of query clusters (recent = popular)
QUERY_NOISE = 0.6            # query spread relative to a cluster's own spread
RECENT_HALFLIFE_MONTHS = 6   # month workload: query weight halves every 6 months of age


@dataclass(frozen=True)
class Op:
    """One workload step: ``kind`` and its payload.

    ``insert``: ``vectors`` (n, d) float32 with ``ids`` (n,) int64; ``delete``: ``ids``;
    ``query``: ``vectors`` (n, d).
    """

    kind: Literal["insert", "delete", "query"]
    vectors: NDArray[np.float32] | None = None
    ids: NDArray[np.int64] | None = None


@dataclass
class Workload:
    """An initial set (``base`` (n0, d), ``base_ids``) and a list of operations."""

    name: str
    base: NDArray[np.float32]
    base_ids: NDArray[np.int64]
    ops: list[Op] = field(default_factory=list)

    @property
    def d(self) -> int:
        """Vector dimension."""
        return int(self.base.shape[1])

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)


def drifting_workload(*, d: int = 32, n_initial: int = 20_000, steps: int = 20,
                      inserts_per_step: int = 2_000, deletes_per_step: int = 1_500,
                      queries_per_step: int = 200, n_clusters: int = 200,
                      seed: int = 0) -> Workload:
    """Seeded synthetic drifting workload (see module docstring).

    Each step is an insert batch, a delete batch of the oldest live ids, then a query batch.
    Clusters are ordered by birth; the active window slides forward so that the newest
    clusters by the end were absent at build time.
    """
    if min(d, n_initial, steps, n_clusters) < 1 or min(inserts_per_step, deletes_per_step,
                                                         queries_per_step) < 0:
        raise UsageError("drifting_workload: sizes must be positive")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d)).astype(np.float32) * 4.0
    scales = rng.uniform(0.5, 1.5, (n_clusters, d)).astype(np.float32)
    active = max(2, n_clusters // 3)
    shift = (n_clusters - active) / steps

    def window(t: float) -> NDArray[np.int64]:
        lo = int(round(t * shift))
        return np.arange(lo, min(n_clusters, lo + active))

    def draw(clusters: NDArray[np.int64], n: int, noise: float = 1.0) -> NDArray[np.float32]:
        c = rng.choice(clusters, n)
        return (centres[c] + noise * scales[c] * rng.standard_normal((n, d))).astype(np.float32)

    base = draw(window(0), n_initial)
    ids = np.arange(n_initial, dtype=np.int64)
    live = list(range(n_initial))
    next_id = n_initial
    ops: list[Op] = []
    for t in range(1, steps + 1):
        w = window(t)
        new_ids = np.arange(next_id, next_id + inserts_per_step, dtype=np.int64)
        ops.append(Op("insert", draw(w[len(w) // 2:], inserts_per_step), new_ids))
        next_id += inserts_per_step
        live += new_ids.tolist()
        nd = min(deletes_per_step, len(live) - 1)
        ops.append(Op("delete", ids=np.array(live[:nd], np.int64)))
        live = live[nd:]
        rank = np.arange(len(w), 0, -1, dtype=np.float64)  # newest cluster has rank 1
        pop = rank ** -ZIPF_S
        qc = rng.choice(w, queries_per_step, p=pop / pop.sum())
        q = centres[qc] + QUERY_NOISE * scales[qc] * rng.standard_normal((queries_per_step, d))
        ops.append(Op("query", q.astype(np.float32)))
    return Workload("synthetic-drift", base, ids, ops)


def month_workload(ds: VectorDataset, *, steps: int = 20, initial_fraction: float = 0.3,
                   delete_fraction: float = 0.5, queries_per_step: int = 100,
                   max_base: int | None = None, seed: int = 0) -> Workload:
    """Replay ``ds`` month by month (``ds.base_months`` gives each base row's month).

    The first ``initial_fraction`` of the base (by month) is built; the rest arrives in
    ``steps`` batches cut at month boundaries.  After each batch the oldest live vectors are
    deleted (``delete_fraction`` × batch size), then queries are drawn from ``ds.queries``
    whose month is not after the current one, weighted by 2^(−age / 6 months).
    """
    if ds.base_months is None or ds.query_months is None:
        raise UsageError(f"month_workload: data set {ds.name!r} has no months files "
                         "(base.months.txt / queries.months.txt)")
    if not 0.0 < initial_fraction < 1.0:
        raise UsageError(f"month_workload: initial_fraction={initial_fraction}: must be in (0, 1)")
    rng = np.random.default_rng(seed)
    n = len(ds.base) if max_base is None else min(max_base, len(ds.base))
    order = np.argsort(ds.base_months[:len(ds.base)], kind="stable")
    if max_base is not None and max_base < len(ds.base):  # keep arrival order, subsample evenly
        order = order[np.linspace(0, len(order) - 1, n).astype(np.int64)]
    x = ds.base[order].astype(np.float32)
    months = ds.base_months[order]
    n0 = int(n * initial_fraction)
    cuts = np.linspace(n0, n, steps + 1).astype(np.int64)
    cuts = np.searchsorted(months, months[np.minimum(cuts, n - 1)], side="right")
    cuts[0], cuts[-1] = n0, n
    ids = np.arange(n, dtype=np.int64)
    qx = ds.queries.astype(np.float32)
    qm = ds.query_months
    ops: list[Op] = []
    oldest = 0
    for t in range(steps):
        lo, hi = int(cuts[t]), int(cuts[t + 1])
        if hi <= lo:
            continue
        ops.append(Op("insert", x[lo:hi], ids[lo:hi]))
        nd = int((hi - lo) * delete_fraction)
        ops.append(Op("delete", ids=ids[oldest:oldest + nd]))
        oldest += nd
        now = months[hi - 1]
        ok = np.flatnonzero(qm <= now)
        if ok.size == 0:
            continue
        w = 2.0 ** (-(now - qm[ok]).astype(np.float64) / RECENT_HALFLIFE_MONTHS)
        pick = rng.choice(ok, queries_per_step, p=w / w.sum())
        ops.append(Op("query", qx[pick]))
    return Workload(f"{ds.name}-months", x[:n0], ids[:n0], ops)
