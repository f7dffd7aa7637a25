"""The Quake index (Mohoney et al., OSDI'25): partitioned vectors, APS, cost-model maintenance.

Level 0 holds the vectors in k-means partitions; level 1 is the single top partition holding
the level-0 centroids, which every query scans in full (the evaluated configuration of the
final paper, §7.2: "a single level of partition").  Inserts go top-down to the nearest
partition; deletes use an id → partition map and compact the partition at once (§3).
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from labrig.errors import UsageError
from labrig.runtime.quake._aps import aps_probabilities
from labrig.runtime.quake._betainc import CapTable
from labrig.runtime.quake._cost import AccessTracker, CostModel, ScanLatency
from labrig.runtime.quake._maintenance import run_maintenance
from labrig.runtime.quake._persist import load_index, save_index
from labrig.runtime.vecdata import assign, kmeans
from labrig.runtime.quake._params import QuakeConfig, QuakeParams
from labrig.runtime.quake._scan import merge_topk, scan_partition
from labrig.runtime.search_params import SearchParams, check_params

__all__ = ["MaintenanceReport", "QuakeIndex"]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
PROFILE_K = 10           # λ is profiled for k = 10, like the public MaintenanceCostEstimator


@dataclass
class MaintenanceReport:
    """Outcome of one maintenance pass (§4.2): counts of committed and rejected actions."""

    splits: int = 0
    splits_rejected: int = 0
    merges: int = 0
    merges_rejected: int = 0
    cost_before_s: float = 0.0
    cost_after_s: float = 0.0


class _Partition:
    __slots__ = ("centroid", "ids", "norms", "x")

    def __init__(self, centroid: F32, x: F32, ids: I64) -> None:
        self.centroid, self.x, self.ids = centroid, x, ids
        self.norms = (x * x).sum(1, dtype=np.float32)

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])


class QuakeIndex:
    """Adaptive partitioned index for dynamic vector search (squared L2).

    Parameters
    ----------
    d : int
        Vector dimension.
    config : QuakeConfig, optional

    Notes
    -----
    ``search`` returns float32 squared-L2 distances and int64 ids of shape (n, k), padded
    with ``inf`` / ``-1``, like faiss ``Index::search`` (STYLE.md §5).

    References
    ----------
    J. Mohoney et al., "Quake: Adaptive Indexing for Vector Search", OSDI'25.
    """

    def __init__(self, d: int, config: QuakeConfig | None = None) -> None:
        if not isinstance(d, int) or d < 1:
            raise UsageError(f"QuakeIndex: d={d!r}: must be an int >= 1")
        self.d = d
        self.config = config or QuakeConfig()
        self._parts: dict[int, _Partition] = {}
        self._loc: dict[int, int] = {}
        self._next_pid = 0
        self._cache: tuple[I64, F32, F32] | None = None
        self._lam: ScanLatency | None = None
        self.cost: CostModel | None = None
        self.tracker = AccessTracker(self.config.window_size)
        self._ops = 0
        self._cap = CapTable(d, form=self.config.cap_form)
        self._workers = [ThreadPoolExecutor(1, thread_name_prefix=f"quake-w{i}")
                         for i in range(self.config.n_workers)]
        self.last_report: MaintenanceReport | None = None

    # ------------------------------------------------------------------ properties
    @property
    def ntotal(self) -> int:
        """Number of vectors stored."""
        return len(self._loc)

    @property
    def nlist(self) -> int:
        """Number of level-0 partitions."""
        return len(self._parts)

    @property
    def levels(self) -> int:
        """Levels in the hierarchy: level 0 (vectors) and the top centroid partition."""
        return 2

    def partition_sizes(self) -> dict[int, int]:
        """Partition id → number of vectors."""
        return {p: part.size for p, part in self._parts.items()}

    def ids(self) -> I64:
        """Every stored id, sorted."""
        return np.array(sorted(self._loc), dtype=np.int64)

    def get_vectors(self, ids: ArrayLike) -> F32:
        """Stored float32 vectors of ``ids`` (shape (len(ids), d)); unknown id → UsageError."""
        ids = self._check_ids(ids, 0)
        out = np.empty((len(ids), self.d), np.float32)
        for i, v in enumerate(ids.tolist()):
            if v not in self._loc:
                raise UsageError(f"QuakeIndex.get_vectors: id {v} is not in the index")
            part = self._parts[self._loc[v]]
            out[i] = part.x[int(np.flatnonzero(part.ids == v)[0])]
        return out

    @property
    def scan_latency(self) -> ScanLatency:
        """λ profiled at build time."""
        if self._lam is None:
            raise UsageError("QuakeIndex: build() has not been called")
        return self._lam

    @property
    def _width(self) -> int:
        return max(1, len(self._workers))

    # ------------------------------------------------------------------ input checks
    def _check_x(self, x: ArrayLike, what: str) -> F32:
        a = np.asarray(x)
        if a.ndim != 2 or a.shape[1] != self.d:
            raise UsageError(f"QuakeIndex.{what}: vectors of shape {a.shape}: expected (n, {self.d})")
        if not np.issubdtype(a.dtype, np.number):
            raise UsageError(f"QuakeIndex.{what}: dtype {a.dtype} is not numeric")
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not np.isfinite(a).all():
            raise UsageError(f"QuakeIndex.{what}: vectors contain NaN or inf")
        return a

    def _check_ids(self, ids: ArrayLike, n: int | None, what: str = "ids") -> I64:
        a = np.asarray(ids)
        if a.ndim != 1 or (n is not None and n and a.shape[0] != n):
            raise UsageError(f"QuakeIndex: {what} of shape {a.shape}: expected ({n},)")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise UsageError(f"QuakeIndex: {what} dtype {a.dtype} is not integer")
        a = a.astype(np.int64)
        if np.unique(a).size != a.size:
            raise UsageError(f"QuakeIndex: {what} contain duplicates")
        if a.size and a.min() < 0:
            raise UsageError(f"QuakeIndex: {what} must be >= 0 (-1 marks padding), got {a.min()}")
        return a

    def _require_built(self, what: str) -> None:
        if self.cost is None:
            raise UsageError(f"QuakeIndex.{what}: call build() first")

    # ------------------------------------------------------------------ build / add / remove
    def build(self, vectors: ArrayLike, ids: ArrayLike | None = None) -> None:
        """Cluster ``vectors`` (n, d) into level-0 partitions and profile λ (§3, §4.1).

        ``ids`` (n,) int64 defaults to 0..n-1.  Replaces any previous content.
        """
        x = self._check_x(vectors, "build")
        if len(x) == 0:
            raise UsageError("QuakeIndex.build: need at least one vector")
        ids_a = self._check_ids(np.arange(len(x)) if ids is None else ids, len(x))
        cfg = self.config
        nlist = cfg.nlist or max(1, round(math.sqrt(len(x))))
        cent = kmeans(x, nlist, iters=cfg.kmeans_iters, seed=cfg.seed)
        a = assign(x, cent)
        self._parts, self._loc, self._next_pid, self._cache = {}, {}, 0, None
        for c in range(len(cent)):
            sel = np.flatnonzero(a == c)
            if sel.size:
                self._new_partition(cent[c], x[sel], ids_a[sel])
        self.tracker = AccessTracker(cfg.window_size)
        self._lam = ScanLatency.profile(self._profile_scan, self.d, seed=cfg.seed)
        self.cost = CostModel(self._lam, cfg.alpha)

    def _profile_scan(self, q: F32, x: F32) -> object:
        xn = (x * x).sum(1)
        return scan_partition(q, (q * q).sum(1), x, xn, np.arange(len(x), dtype=np.int64),
                              PROFILE_K)

    def _new_partition(self, centroid: F32, x: F32, ids: I64) -> int:
        pid = self._next_pid
        self._next_pid += 1
        self._parts[pid] = _Partition(np.asarray(centroid, np.float32), x, ids)
        for v in ids.tolist():
            self._loc[v] = pid
        self._cache = None
        return pid

    def _drop_partition(self, pid: int) -> _Partition:
        self._cache = None
        return self._parts.pop(pid)

    def _centroids(self) -> tuple[I64, F32, F32]:
        if self._cache is None:
            pids = np.array(sorted(self._parts), dtype=np.int64)
            c = np.stack([self._parts[p].centroid for p in pids.tolist()]).astype(np.float32)
            self._cache = (pids, c, (c * c).sum(1))
        return self._cache

    def add(self, vectors: ArrayLike, ids: ArrayLike) -> None:
        """Insert ``vectors`` (n, d) with new unique ``ids`` (n,) into their nearest partitions."""
        self._require_built("add")
        x = self._check_x(vectors, "add")
        ids_a = self._check_ids(ids, len(x))
        clash = [v for v in ids_a.tolist() if v in self._loc]
        if clash:
            raise UsageError(f"QuakeIndex.add: ids already present: {clash[:5]}")
        if len(x) == 0:
            return
        pids, cent, _ = self._centroids()
        target = pids[assign(x, cent)]
        for p in np.unique(target).tolist():
            sel = np.flatnonzero(target == p)
            part = self._parts[p]
            part.x = np.concatenate([part.x, x[sel]])
            part.ids = np.concatenate([part.ids, ids_a[sel]])
            part.norms = np.concatenate([part.norms, (x[sel] * x[sel]).sum(1)])
            for v in ids_a[sel].tolist():
                self._loc[v] = p
        self._tick(len(x))

    def remove(self, ids: ArrayLike) -> None:
        """Delete ``ids`` (n,) and compact their partitions at once; unknown id → UsageError."""
        self._require_built("remove")
        ids_a = self._check_ids(ids, None)
        missing = [v for v in ids_a.tolist() if v not in self._loc]
        if missing:
            raise UsageError(f"QuakeIndex.remove: ids not in the index: {missing[:5]}")
        by_pid: dict[int, list[int]] = {}
        for v in ids_a.tolist():
            by_pid.setdefault(self._loc.pop(v), []).append(v)
        for p, gone in by_pid.items():
            part = self._parts[p]
            keep = ~np.isin(part.ids, np.array(gone, np.int64))
            part.x, part.ids, part.norms = part.x[keep], part.ids[keep], part.norms[keep]
        self._tick(len(ids_a))

    def _tick(self, n: int) -> None:
        self._ops += n
        every = self.config.maintenance_every
        if every and self._ops >= every:
            self._ops = 0
            self.last_report = self.maintenance()

    # ------------------------------------------------------------------ search
    def search(self, queries: ArrayLike, k: int, *, params: SearchParams | None = None
               ) -> tuple[F32, I64]:
        """k nearest neighbours of each query.

        Parameters
        ----------
        queries : array_like, shape (n, d)
        k : int
        params : QuakeParams, optional
            ``nprobe`` or ``recall_target`` (APS, §5); default: APS at
            ``config.recall_target``.

        Returns
        -------
        distances : ndarray, shape (n, k), float32 — squared L2, ascending, ``inf`` padded
        ids : ndarray, shape (n, k), int64 — ``-1`` padded

        Raises
        ------
        TypeError
            ``params`` is not a ``QuakeParams``.
        """
        p = check_params(params, QuakeParams, QuakeParams())
        self._require_built("search")
        q = self._check_x(queries, "search")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise UsageError(f"QuakeIndex.search: k={k!r}: must be an int >= 1")
        k = int(k)
        if len(q) == 0 or self.nlist == 0:
            return (np.full((len(q), k), np.inf, np.float32), np.full((len(q), k), -1, np.int64))
        if p.nprobe is not None:
            out = self._search_nprobe(q, k, min(p.nprobe, self.nlist))
        else:
            target = p.recall_target if p.recall_target is not None else self.config.recall_target
            out = self._search_aps(q, k, target)
        self._tick(len(q))
        return out

    def _run(self, jobs: list[tuple[int, Any]], fn: Any) -> list[Any]:
        """Run ``fn(pid, arg)`` for each job on worker ``pid % n_workers`` (§6 affinity)."""
        if len(jobs) == 1 or len(self._workers) <= 1:
            return [fn(p, a) for p, a in jobs]
        futs: list[Future[Any]] = [self._workers[p % len(self._workers)].submit(fn, p, a)
                                   for p, a in jobs]
        return [f.result() for f in futs]

    def _search_nprobe(self, q: F32, k: int, nprobe: int) -> tuple[F32, I64]:
        pids, cent, cn = self._centroids()
        qn = (q * q).sum(1)
        cd = qn[:, None] - 2.0 * (q @ cent.T) + cn[None, :]
        probe = (np.argpartition(cd, nprobe - 1, axis=1)[:, :nprobe] if nprobe < len(pids)
                 else np.broadcast_to(np.arange(len(pids)), cd.shape))
        flat = probe.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.flatnonzero(np.diff(flat[order])) + 1
        jobs = [(int(pids[flat[seg[0]]]), seg) for seg in np.split(order, bounds) if seg.size]
        dbuf = np.full((len(q), nprobe * k), np.inf, np.float32)
        ibuf = np.full((len(q), nprobe * k), -1, np.int64)

        def work(pid: int, seg: I64) -> tuple[I64, F32, I64]:
            part = self._parts[pid]
            qi = seg // nprobe
            d, i = scan_partition(q[qi], qn[qi], part.x, part.norms, part.ids, k)
            return seg, d, i

        for seg, d, i in self._run(jobs, work):
            if d.shape[1]:
                qi, slot = seg // nprobe, seg % nprobe
                cols = slot[:, None] * k + np.arange(d.shape[1])[None, :]
                dbuf[qi[:, None], cols] = d
                ibuf[qi[:, None], cols] = i
        for row in pids[probe]:
            self.tracker.record(row)
        return merge_topk(dbuf, ibuf, k)

    def _search_aps(self, q: F32, k: int, target: float) -> tuple[F32, I64]:
        """Adaptive Partition Scanning, OSDI'25 §5, Algorithm 1 (one query at a time)."""
        pids, cent, cn = self._centroids()
        cfg = self.config
        n_cand = min(len(pids), max(cfg.min_candidates,
                                    math.ceil(cfg.candidate_fraction * len(pids))))
        out_d = np.empty((len(q), k), np.float32)
        out_i = np.empty((len(q), k), np.int64)
        qn_all = (q * q).sum(1)
        cd_all = qn_all[:, None] - 2.0 * (q @ cent.T) + cn[None, :]

        def work(pid: int, qq: tuple[F32, F32]) -> tuple[F32, I64]:
            part = self._parts[pid]
            return scan_partition(qq[0], qq[1], part.x, part.norms, part.ids, k)

        for r in range(len(q)):
            qq = (q[r:r + 1], qn_all[r:r + 1])
            cd = cd_all[r]
            cand = (np.argpartition(cd, n_cand - 1)[:n_cand] if n_cand < len(pids)
                    else np.arange(len(pids)))
            cand = cand[np.argsort(cd[cand])]
            # distance from q to the bisector of c0 and c_j: (‖q−c_j‖² − ‖q−c0‖²) / (2‖c_j−c0‖)
            gap = np.linalg.norm(cent[cand[1:]] - cent[cand[0]], axis=1)
            h = (cd[cand[1:]] - cd[cand[0]]) / np.maximum(2.0 * gap, 1e-30)
            best_d, best_i = work(int(pids[cand[0]]), qq)
            best_d, best_i = merge_topk(best_d, best_i, k)
            scanned = np.zeros(len(cand), bool)
            scanned[0] = True
            rho_at, probs, p0 = -1.0, np.zeros(len(cand) - 1), 0.0
            while not scanned.all():
                rho = math.sqrt(float(best_d[0, k - 1])) if np.isfinite(best_d[0, k - 1]) else math.inf
                if math.isfinite(rho):
                    if rho_at < 0 or abs(rho - rho_at) > cfg.recompute_threshold * rho_at:
                        p0, probs = aps_probabilities(h, rho, self._cap)
                        rho_at = rho
                    est = p0 + float(probs[scanned[1:]].sum())
                    if est >= target:
                        break
                    rest = np.flatnonzero(~scanned[1:])
                    rest = rest[np.argsort(-probs[rest], kind="stable")] + 1
                    need = np.searchsorted(np.cumsum(probs[rest - 1]), target - est) + 1
                    batch = rest[:max(1, min(int(need), self._width))]
                else:  # fewer than k results so far: keep going in centroid order
                    batch = np.flatnonzero(~scanned)[:self._width]
                scanned[batch] = True
                res = self._run([(int(pids[cand[b]]), qq) for b in batch], work)
                best_d = np.concatenate([best_d] + [d for d, _ in res], 1)
                best_i = np.concatenate([best_i] + [i for _, i in res], 1)
                best_d, best_i = merge_topk(best_d, best_i, k)
            out_d[r], out_i[r] = best_d[0], best_i[0]
            self.tracker.record(pids[cand[scanned]])
        return out_d, out_i

    # ------------------------------------------------------------------ maintenance
    def total_cost(self) -> float:
        """C = λ(N) + Σ_j A_j·λ(s_j) in seconds (§4.1; the top level is scanned by every query)."""
        self._require_built("total_cost")
        lam = self.scan_latency
        return lam(self.nlist) + sum(self.tracker.frequency(p) * lam(part.size)
                                     for p, part in self._parts.items())

    def maintenance(self) -> MaintenanceReport:
        """One estimate → verify → commit/reject pass over level 0 (§4.2)."""
        self._require_built("maintenance")
        return run_maintenance(self)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (versioned, checksummed; see ``_persist``)."""
        self._require_built("save")
        save_index(self, Path(path))

    @classmethod
    def load(cls, path: str | Path, *, n_workers: int | None = None) -> QuakeIndex:
        """Read an index written by :meth:`save`; corrupt or truncated → ``QuakeFileError``."""
        return load_index(cls, Path(path), n_workers)

    def close(self) -> None:
        """Stop the scan workers (idempotent)."""
        for w in self._workers:
            w.shutdown(wait=True)
        self._workers = []

    def __enter__(self) -> QuakeIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        for w in getattr(self, "_workers", []):
            w.shutdown(wait=False)
