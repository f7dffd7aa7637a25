"""The Quake index (Mohoney et al., OSDI'25): multi-level partitions, APS, cost-model maintenance.

Level 0 holds the vectors in k-means partitions; level l+1 partitions the centroids of level
l; above the top level the root holds every top-level centroid and is scanned in full by each
query (§3).  ``QuakeConfig.levels = 1`` is the configuration the final paper evaluates (§7.2:
"a single level of partition").  Inserts go to the nearest level-0 partition; deletes use an
id → partition map and compact the partition at once (§3).  Partitions created or dropped by
maintenance at one level are inserted into or deleted from the level above (``Level``).
"""

from __future__ import annotations

import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
from numpy.typing import ArrayLike, NDArray

from labrig.errors import UsageError
from labrig.runtime.quake._betainc import CapTable
from labrig.runtime.quake._calibrate import calibrate_cap_dim
from labrig.runtime.quake._cost import AccessTracker, CostModel, ScanLatency
from labrig.runtime.quake._kernel import ApsPool, kernel
from labrig.runtime.quake._level import Level
from labrig.runtime.quake._maintenance import MaintenanceReport, run_maintenance
from labrig.runtime.quake._params import QuakeConfig, QuakeParams
from labrig.runtime.quake._persist import load_index, save_index
from labrig.runtime.quake._search import ScanModeChooser, aps_batch, nprobe_batch
from labrig.runtime.search_params import SearchParams, check_params
from labrig.runtime.vecdata import assign, kmeans

__all__ = ["MaintenanceReport", "QuakeIndex"]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
PROFILE_K = 10           # λ is profiled for k = 10, like the public MaintenanceCostEstimator
MIN_UPPER_ITEMS = 2      # a level can be added only over at least this many partitions


@functools.lru_cache(maxsize=64)
def _cap_table(dim: int, form: str) -> CapTable:
    """Tables are pure functions of (dimension, formula): share them between indexes."""
    return CapTable(dim, form=form)


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
    with ``inf`` / ``-1``, like faiss ``Index::search`` (STYLE.md §5).  The query path runs
    in C (:mod:`._kernel`, built with cffi at first use).

    Raises
    ------
    BackendUnavailable
        The C kernel cannot be built (no compiler); the message says why.

    References
    ----------
    J. Mohoney et al., "Quake: Adaptive Indexing for Vector Search", OSDI'25.
    """

    def __init__(self, d: int, config: QuakeConfig | None = None) -> None:
        if not isinstance(d, int) or d < 1:
            raise UsageError(f"QuakeIndex: d={d!r}: must be an int >= 1")
        self.d = d
        self.config = config or QuakeConfig()
        self._kernel: ModuleType = kernel()
        self._levels: list[Level] = [Level(d, self.config.window_size)]
        self._lam: ScanLatency | None = None
        self.cost: CostModel | None = None
        self._ops = 0
        self._set_cap_dim(self.config.cap_dim or d)
        self._workers = [ThreadPoolExecutor(1, thread_name_prefix=f"quake-w{i}")
                         for i in range(self.config.n_workers)]
        # single-query APS scans on all workers at once (§6); batches split by query instead
        self._aps_pool = (ApsPool(self._kernel, self.config.n_workers)
                          if self.config.n_workers > 1
                          and self.config.single_query_parallel != "never" else None)
        self._scan_mode = ScanModeChooser()        # one query: sequential or parallel APS
        self._tls = threading.local()              # per calling thread: APS scratch buffers
        self.last_report: MaintenanceReport | None = None

    # ------------------------------------------------------------------ properties
    @property
    def ntotal(self) -> int:
        """Number of vectors stored."""
        return self._levels[0].ntotal

    @property
    def nlist(self) -> int:
        """Number of level-0 partitions."""
        return self._levels[0].nlist

    @property
    def levels(self) -> int:
        """Partition levels (level 0 holds the vectors); the root above them is not counted."""
        return len(self._levels)

    @property
    def tracker(self) -> AccessTracker:
        """Access-frequency window of level 0 (A_j of §4.1)."""
        return self._levels[0].tracker

    def level_nlist(self, level: int) -> int:
        """Number of partitions at ``level``."""
        return self._level(level).nlist

    def partition_sizes(self, level: int = 0) -> dict[int, int]:
        """Partition id → number of items at ``level`` (vectors at 0, centroids above)."""
        return {p: part.size for p, part in self._level(level).parts.items()}

    def partition_items(self, level: int) -> dict[int, tuple[F32, I64]]:
        """Partition id → (items (s, d), item ids (s,)) at ``level``; for checks and plots."""
        return {p: (part.x, part.ids) for p, part in self._level(level).parts.items()}

    def centroids(self, level: int = 0) -> tuple[I64, F32]:
        """Sorted partition ids of ``level`` and their centroids (n, d)."""
        pids, cent, _ = self._level(level).centroids()
        return pids, cent

    def _level(self, level: int) -> Level:
        if not isinstance(level, int) or not 0 <= level < len(self._levels):
            raise UsageError(f"QuakeIndex: level={level!r}: must be in 0..{len(self._levels) - 1}")
        return self._levels[level]

    def ids(self) -> I64:
        """Every stored id, sorted."""
        return np.array(sorted(self._levels[0].loc), dtype=np.int64)

    def get_vectors(self, ids: ArrayLike) -> F32:
        """Stored float32 vectors of ``ids`` (shape (len(ids), d)); unknown id → UsageError."""
        ids = self._check_ids(ids, 0)
        lv = self._levels[0]
        out = np.empty((len(ids), self.d), np.float32)
        for i, v in enumerate(ids.tolist()):
            if v not in lv.loc:
                raise UsageError(f"QuakeIndex.get_vectors: id {v} is not in the index")
            part = lv.parts[lv.loc[v]]
            out[i] = part.x[int(np.flatnonzero(part.ids == v)[0])]
        return out

    @property
    def scan_latency(self) -> ScanLatency:
        """λ profiled at build time."""
        if self._lam is None:
            raise UsageError("QuakeIndex: build() has not been called")
        return self._lam

    def _set_cap_dim(self, dim: int) -> None:
        """Tabulate APS's cap fraction for dimension ``dim`` (§5) and hand it to the kernel."""
        if getattr(self, "cap_dim", None) == dim:
            return
        self.cap_dim = dim
        self._cap = _cap_table(dim, self.config.cap_form)
        self._cap_v = np.ascontiguousarray(self._cap.v, np.float64)
        self._cap_c = (self._kernel.ffi.from_buffer("double[]", self._cap_v), len(self._cap_v))

    @property
    def _width(self) -> int:
        return max(1, len(self._workers))

    # ------------------------------------------------------------------ input checks
    def _check_x(self, x: ArrayLike, what: str) -> F32:
        a = np.asarray(x)
        if a.ndim != 2 or a.shape[1] != self.d:
            raise UsageError(f"QuakeIndex.{what}: vectors of shape {a.shape}: "
                             f"expected (n, {self.d})")
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
        """Cluster ``vectors`` (n, d) into level-0 partitions, add ``config.levels - 1`` upper
        levels and profile λ (§3, §4.1).

        ``ids`` (n,) int64 defaults to 0..n-1.  Replaces any previous content.
        """
        x = self._check_x(vectors, "build")
        if len(x) == 0:
            raise UsageError("QuakeIndex.build: need at least one vector")
        ids_a = self._check_ids(np.arange(len(x)) if ids is None else ids, len(x))
        cfg = self.config
        nlist = cfg.nlist or max(1, round(math.sqrt(len(x))))
        self._levels = [self._cluster(x, ids_a, nlist, cfg.seed)]
        for _ in range(cfg.levels - 1):
            if self._levels[-1].nlist < MIN_UPPER_ITEMS:
                break
            self.add_level()
        self._lam = ScanLatency.profile(self._profile_scan, self.d, seed=cfg.seed, prepared=True)
        self.cost = CostModel(self._lam, cfg.alpha)
        if cfg.calibrate_cap_dim:
            calibrate_cap_dim(self, x, ids_a, cfg.recall_target, cfg.seed)
        else:
            self._set_cap_dim(cfg.cap_dim or self.d)

    def _cluster(self, x: F32, ids: I64, nlist: int, seed: int) -> Level:
        cfg = self.config
        cent = kmeans(x, nlist, iters=cfg.kmeans_iters, seed=seed)
        a = assign(x, cent)
        level = Level(self.d, cfg.window_size)
        order = np.argsort(a, kind="stable")
        bounds = np.flatnonzero(np.diff(a[order])) + 1
        for sel in np.split(order, bounds):
            if sel.size:
                level.new_partition(cent[a[sel[0]]], x[sel], ids[sel])
        return level

    def add_level(self) -> None:
        """Partition the top level's centroids into round(sqrt(N)) partitions (§3; the public
        code's ``add_level``); the new level becomes the top, under the root."""
        top = self._levels[-1]
        if top.nlist < MIN_UPPER_ITEMS:
            raise UsageError(f"QuakeIndex.add_level: the top level has {top.nlist} partitions; "
                             f"need at least {MIN_UPPER_ITEMS}")
        pids, cent, _ = top.centroids()
        up = self._cluster(cent, pids, max(1, round(math.sqrt(len(pids)))),
                           self.config.seed + len(self._levels))
        self._link(top, up)
        self._levels.append(up)

    @staticmethod
    def _link(below: Level, up: Level) -> None:
        """Keep ``up``'s items equal to ``below``'s centroids from now on."""
        below.on_new = lambda pid, c: up.insert(c[None, :], np.array([pid], np.int64))
        below.on_drop = lambda pid: up.delete(np.array([pid], np.int64))

    def _profile_scan(self, q: F32, x: F32) -> Callable[[], object]:
        """One partition scan by the C kernel the queries use, ready to time (λ, §4.1)."""
        ffi, lib = self._kernel.ffi, self._kernel.lib
        xn = (x * x).sum(1, dtype=np.float32)
        ids = np.arange(len(x), dtype=np.int64)
        qn = (q * q).sum(1, dtype=np.float32)
        part = ffi.new("qk_part *")
        part.x, part.norms = ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", xn)
        part.ids, part.size = ffi.from_buffer("int64_t[]", ids), len(x)
        td, ti = np.empty(PROFILE_K, np.float32), np.empty(PROFILE_K, np.int64)
        cnt, rows = np.zeros(1, np.int32), np.zeros(1, np.int32)
        args = (ffi.from_buffer("float[]", q), ffi.from_buffer("float[]", qn), self.d,
                PROFILE_K, part, 1, ffi.from_buffer("int32_t[]", rows),
                ffi.from_buffer("float[]", td), ffi.from_buffer("int64_t[]", ti),
                ffi.from_buffer("int32_t[]", cnt))
        keep = (x, xn, ids, qn, td, ti, cnt, rows)

        def run() -> object:
            cnt[0] = 0
            lib.qk_scan_batch(*args)
            return keep

        return run

    def add(self, vectors: ArrayLike, ids: ArrayLike) -> None:
        """Insert ``vectors`` (n, d) with new unique ``ids`` (n,) into their nearest partitions."""
        self._require_built("add")
        x = self._check_x(vectors, "add")
        ids_a = self._check_ids(ids, len(x))
        loc = self._levels[0].loc
        clash = [v for v in ids_a.tolist() if v in loc]
        if clash:
            raise UsageError(f"QuakeIndex.add: ids already present: {clash[:5]}")
        if len(x) == 0:
            return
        self._levels[0].insert(x, ids_a)
        self._tick(len(x))

    def remove(self, ids: ArrayLike) -> None:
        """Delete ``ids`` (n,) and compact their partitions at once; unknown id → UsageError."""
        self._require_built("remove")
        ids_a = self._check_ids(ids, None)
        loc = self._levels[0].loc
        missing = [v for v in ids_a.tolist() if v not in loc]
        if missing:
            raise UsageError(f"QuakeIndex.remove: ids not in the index: {missing[:5]}")
        self._levels[0].delete(ids_a)
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
            ``nprobe`` (the nprobe nearest level-0 partitions, ranked exactly) or
            ``recall_target`` (APS at every level, §5); default: APS at
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
            out = nprobe_batch(self, q, k, min(p.nprobe, self.nlist))
        else:
            target = p.recall_target if p.recall_target is not None else self.config.recall_target
            out = aps_batch(self, q, k, target)
        self._tick(len(q))
        return out

    # ------------------------------------------------------------------ maintenance
    def total_cost(self) -> float:
        """C = λ(N_top) + Σ_l Σ_j A_lj·λ(s_lj) in seconds (§4.1; the root is scanned by every
        query)."""
        self._require_built("total_cost")
        lam = self.scan_latency
        return lam(self._levels[-1].nlist) + sum(
            lv.tracker.frequency(p) * lam(part.size)
            for lv in self._levels for p, part in lv.parts.items())

    def maintenance(self) -> MaintenanceReport:
        """One estimate → verify → commit/reject pass over every level, bottom-up (§4.2)."""
        self._require_built("maintenance")
        assert self.cost is not None
        rep = run_maintenance(self._levels, self.cost, self.config, self.total_cost())
        rep.cost_after_s = self.total_cost()
        return rep

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
        if self._aps_pool is not None:
            self._aps_pool.close()
            self._aps_pool = None

    def __enter__(self) -> QuakeIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        for w in getattr(self, "_workers", []):
            w.shutdown(wait=False)
