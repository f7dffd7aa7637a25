"""One level of Quake's partition hierarchy (OSDI'25 §3) and its frozen C view.

Level 0 holds the base vectors; level l+1 holds the centroids of level l as its items, with
the level-l partition ids as item ids (§3: "level l+1 partitions the centroids of level l").
A level tells its parent about every partition it creates or drops (``on_new``/``on_drop``),
so the upper levels stay consistent with whatever maintenance does below.  Above the top
level sits the root: all the top level's centroids, scanned in full by every query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labrig.runtime.quake._cost import AccessTracker
from labrig.runtime.vecdata import assign

__all__ = ["Level", "LevelView", "Partition"]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
BROADCAST_MAX = 1 << 16   # delete: compare all pairs below this many, else np.isin (sorts)
MIN_CAPACITY = 16         # rows of a partition's first spare capacity


class _Rows:
    """Read-only view of the first ``size`` rows of a :class:`Partition` buffer."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.buf = "_" + name

    def __get__(self, obj: Partition, owner: type | None = None) -> Any:
        return getattr(obj, self.buf)[:obj._n]


class Partition:
    """A centroid, the items assigned to it (``x`` (s, d) float32, ``ids`` (s,) int64) and
    their squared norms (kept so a scan is one dot product per item).

    Inserts append to the end of a partition (§3); the arrays keep spare capacity that
    doubles when full, like a ``std::vector``, so a batch of inserts costs the rows it adds
    rather than a copy of every partition it touches.  ``x``, ``ids`` and ``norms`` are
    views of the first ``size`` rows; :meth:`set_rows` replaces all three at once.
    """

    __slots__ = ("_ids", "_n", "_norms", "_x", "centroid")
    x = _Rows()
    ids = _Rows()
    norms = _Rows()

    def __init__(self, centroid: F32, x: F32, ids: I64) -> None:
        self.centroid = np.ascontiguousarray(centroid, np.float32)
        x = np.ascontiguousarray(x, np.float32)
        self.set_rows(x, ids, (x * x).sum(1, dtype=np.float32))

    def set_rows(self, x: F32, ids: I64, norms: F32) -> None:
        """Replace the contents (same number of rows in each)."""
        self._x = np.ascontiguousarray(x, np.float32)
        self._ids = np.ascontiguousarray(ids, np.int64)
        self._norms = np.ascontiguousarray(norms, np.float32)
        self._n = len(self._ids)

    @property
    def size(self) -> int:
        return self._n

    def append(self, x: F32, ids: I64, norms: F32 | None = None) -> None:
        """Add items at the end (inserts go to the end of their partition, §3)."""
        n, m = self._n, len(ids)
        if n + m > len(self._ids):
            cap = max(2 * len(self._ids), n + m, MIN_CAPACITY)
            bx = np.empty((cap, self._x.shape[1]), np.float32)
            bi = np.empty(cap, np.int64)
            bn = np.empty(cap, np.float32)
            bx[:n], bi[:n], bn[:n] = self.x, self.ids, self.norms
            self._x, self._ids, self._norms = bx, bi, bn
        self._x[n:n + m] = x
        self._ids[n:n + m] = ids
        self._norms[n:n + m] = (x * x).sum(1, dtype=np.float32) if norms is None else norms
        self._n = n + m

    def keep(self, mask: NDArray[np.bool_]) -> None:
        """Compact the partition to the rows where ``mask`` is true (deletes, §3)."""
        self.set_rows(self.x[mask], self.ids[mask], self.norms[mask])


@dataclass
class LevelView:
    """Slot-indexed arrays of one level for the C kernels; rebuilt after any change.

    ``pids[slot]`` is the partition id of a slot, ``slot_of[pid]`` the slot of a partition id
    (−1 if gone), ``cent`` (n, d) and ``cn`` (n,) the centroids and their squared norms,
    ``parts`` a ``qk_part[]`` pointing into the partitions' arrays (``keep`` holds them),
    ``cent_c``/``cn_c`` C pointers to ``cent``/``cn``; ``owners`` caches each slot's worker
    (``pid mod W``) by pool width.
    """

    pids: I64
    slot_of: NDArray[np.int32]
    cent: F32
    cn: F32
    parts: Any
    keep: list[Any]
    cent_c: Any = None
    cn_c: Any = None
    owners: dict[int, NDArray[np.int32]] = field(default_factory=dict)

    def owner_of(self, width: int) -> NDArray[np.int32]:
        """Worker of every slot for a pool of ``width`` workers (§6 affinity)."""
        got = self.owners.get(width)
        if got is None:
            got = self.owners[width] = (self.pids % width).astype(np.int32)
        return got


class Level:
    """Partitions of one level, the item → partition map and the access window (§4.1)."""

    def __init__(self, d: int, window: int) -> None:
        self.d = d
        self.parts: dict[int, Partition] = {}
        self.loc: dict[int, int] = {}
        self.next_pid = 0
        self.tracker = AccessTracker(window)
        self.on_new: Callable[[int, F32], None] | None = None
        self.on_drop: Callable[[int], None] | None = None
        self._cent: tuple[I64, F32, F32] | None = None
        self._view: LevelView | None = None

    @property
    def nlist(self) -> int:
        return len(self.parts)

    @property
    def ntotal(self) -> int:
        return len(self.loc)

    def changed(self) -> None:
        """Forget cached centroid arrays and the C view (call after any mutation)."""
        self._cent = None
        self._view = None

    def new_partition(self, centroid: F32, x: F32, ids: I64, pid: int | None = None) -> int:
        """Install a partition (id ``pid`` or the next free one) and tell the parent level."""
        if pid is None:
            pid = self.next_pid
        self.next_pid = max(self.next_pid, pid + 1)
        part = Partition(centroid, x, ids)
        self.parts[pid] = part
        self.loc.update(dict.fromkeys(part.ids.tolist(), pid))
        self.changed()
        if self.on_new is not None:
            self.on_new(pid, part.centroid)
        return pid

    def replace_partition(self, pid: int, centroid: F32, x: F32, ids: I64, norms: F32, *,
                          relocate: bool = True) -> None:
        """Give partition ``pid`` a new centroid and contents (refinement); the parent level
        gets the moved centroid as a deleted and re-inserted item with the same id.
        ``relocate=False``: the caller has already pointed ``loc`` at ``pid`` for these ids."""
        part = self.parts[pid]
        moved = not np.array_equal(part.centroid, centroid)
        part.centroid = np.array(centroid, dtype=np.float32)   # a copy, never a view
        part.set_rows(x, ids, norms)
        if relocate:
            self.loc.update(dict.fromkeys(ids.tolist(), pid))
        self.changed()
        if moved and self.on_drop is not None and self.on_new is not None:
            self.on_drop(pid)
            self.on_new(pid, part.centroid)

    def drop_partition(self, pid: int) -> Partition:
        """Remove a partition (its items are the caller's to re-home) and tell the parent."""
        part = self.parts.pop(pid)
        self.changed()
        if self.on_drop is not None:
            self.on_drop(pid)
        return part

    def centroids(self) -> tuple[I64, F32, F32]:
        """Sorted partition ids, their centroids (n, d) and squared norms (n,)."""
        if self._cent is None:
            pids = np.array(sorted(self.parts), dtype=np.int64)
            c = (np.stack([self.parts[p].centroid for p in pids.tolist()]) if len(pids)
                 else np.zeros((0, self.d), np.float32))
            self._cent = (pids, c, (c * c).sum(1, dtype=np.float32))
        return self._cent

    def insert(self, x: F32, ids: I64) -> None:
        """Append items to their nearest partitions (exact nearest centroid, one matmul)."""
        if len(x) == 0:
            return
        pids, cent, _ = self.centroids()
        target = pids[assign(x, cent)]
        order = np.argsort(target, kind="stable")
        bounds = np.flatnonzero(np.diff(target[order])) + 1
        for sel in np.split(order, bounds):
            p = int(target[sel[0]])
            self.parts[p].append(x[sel], ids[sel])
            self.loc.update(dict.fromkeys(ids[sel].tolist(), p))
        self.changed()

    def delete(self, ids: I64) -> None:
        """Remove items (all present) and compact their partitions at once (§3)."""
        if len(ids) == 0:
            return
        pop = self.loc.pop
        where = np.fromiter((pop(v) for v in ids.tolist()), np.int64, len(ids))
        order = np.argsort(where, kind="stable")
        bounds = np.flatnonzero(np.diff(where[order])) + 1
        for sel in np.split(order, bounds):
            part = self.parts[int(where[sel[0]])]
            gone = ids[sel]
            if part.size * len(gone) <= BROADCAST_MAX:   # a few ids out of a small partition
                hit = (part.ids[:, None] == gone[None, :]).any(1)
            else:
                hit = np.isin(part.ids, gone)
            part.keep(~hit)
        self.changed()

    def view(self, ffi: Any) -> LevelView:
        """The C view of this level (cached until the next change)."""
        if self._view is None:
            pids, cent, cn = self.centroids()
            slot_of = np.full(max(self.next_pid, 1), -1, np.int32)
            slot_of[pids] = np.arange(len(pids), dtype=np.int32)
            parts = ffi.new("qk_part[]", max(len(pids), 1))
            keep: list[Any] = [cent, cn]
            for s, p in enumerate(pids.tolist()):
                part = self.parts[p]
                if part.size:
                    bufs = (ffi.from_buffer("float[]", part.x),
                            ffi.from_buffer("float[]", part.norms),
                            ffi.from_buffer("int64_t[]", part.ids))
                    parts[s].x, parts[s].norms, parts[s].ids = bufs
                    keep += [part.x, part.norms, part.ids, *bufs]
                parts[s].size = part.size
            self._view = LevelView(pids, slot_of, cent, cn, parts, keep,
                                   ffi.from_buffer("float[]", cent), ffi.from_buffer("float[]", cn))
        return self._view
