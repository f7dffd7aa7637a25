"""DiskANN's on-disk index layout, written and read through a :class:`BlockDevice`.

The bytes are exactly DiskANN's ``_disk.index`` (``cpp_main`` ``src/disk_utils.cpp``,
``create_disk_layout``; read by PipeANN ``src/pq_flash_index.cpp``), so an index written by
labrig onto a ``file:`` device is a DiskANN index file and a DiskANN index file can be searched
by labrig:

* sector 0 is metadata stored like a ``.bin`` file: ``u32 nr = 9, u32 nc = 1``, then nine
  ``u64``: npts, ndims, medoid, max_node_len, nnodes_per_sector, frozen_num, frozen_loc,
  append_reorder_data, file_size;
* a node is ``[ndims coords of T][u32 nnbrs][R u32 ids, zero padded]``, ``max_node_len =
  (R + 1) * 4 + ndims * sizeof(T)``;
* ``nnodes_per_sector = 4096 // max_node_len`` nodes are packed per 4 KiB sector from sector 1
  on (node ``i`` in sector ``1 + i // nnodes_per_sector``); when a node is larger than a sector
  (``nnodes_per_sector == 0``) it spans ``ceil(max_node_len / 4096)`` sectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.block import BlockDevice
from labrig.errors import UsageError
from labrig.runtime.diskann.vamana import VamanaGraph, check_data

__all__ = [
    "META_FIELDS",
    "SECTOR_LEN",
    "DiskLayout",
    "IndexFormatError",
    "open_disk_index",
    "write_disk_index",
]

#: DiskANN ``include/defs.h`` SECTOR_LEN.
SECTOR_LEN = 4096
#: The u64 fields of sector 0, in order.
META_FIELDS = ("npts", "ndims", "medoid", "max_node_len", "nnodes_per_sector", "frozen_num",
               "frozen_loc", "append_reorder_data", "file_size")
_META_HEADER = 8                       # u32 nr, u32 nc of the .bin-style header
#: Sectors written per device command while laying the index out.
WRITE_SECTORS = 64


class IndexFormatError(UsageError):
    """A disk index whose metadata or size is inconsistent; the message names the problem."""


@dataclass(frozen=True)
class DiskLayout:
    """Where every node of a disk index lives, and how to parse it."""

    npts: int
    ndims: int
    dtype: np.dtype
    R: int
    medoid: int
    start_lba: int
    block_size: int

    @property
    def max_node_len(self) -> int:
        return (self.R + 1) * 4 + self.ndims * self.dtype.itemsize

    @property
    def nnodes_per_sector(self) -> int:
        return SECTOR_LEN // self.max_node_len

    @property
    def sectors_per_node(self) -> int:
        """Sectors read for one node: 1 when nodes are packed, more when one spans sectors."""
        return max(1, -(-self.max_node_len // SECTOR_LEN))

    @property
    def n_sectors(self) -> int:
        """Sectors after the metadata sector."""
        if self.nnodes_per_sector:
            return -(-self.npts // self.nnodes_per_sector)
        return self.npts * self.sectors_per_node

    @property
    def file_size(self) -> int:
        return (1 + self.n_sectors) * SECTOR_LEN

    @property
    def blocks_per_sector(self) -> int:
        return SECTOR_LEN // self.block_size

    def sector_of(self, i: int) -> int:
        """Sector (from the index start) holding node ``i`` (its first sector if it spans)."""
        if self.nnodes_per_sector:
            return 1 + i // self.nnodes_per_sector
        return 1 + i * self.sectors_per_node

    def lba_of(self, i: int) -> int:
        return self.start_lba + self.sector_of(i) * self.blocks_per_sector

    @property
    def node_blocks(self) -> int:
        """Blocks in one node read."""
        return self.sectors_per_node * self.blocks_per_sector

    def offset_in_read(self, i: int) -> int:
        """Byte offset of node ``i`` inside the buffer its read filled."""
        return (i % self.nnodes_per_sector) * self.max_node_len if self.nnodes_per_sector else 0

    def parse_node(self, buf: NDArray[np.uint8], i: int) -> tuple[np.ndarray, NDArray[np.uint32]]:
        """(vector, neighbour ids) of node ``i`` from the bytes its read returned.

        Raises
        ------
        IndexFormatError
            The neighbour count exceeds R or an id is out of range (a corrupt index).
        """
        off = self.offset_in_read(i)
        vlen = self.ndims * self.dtype.itemsize
        vec = buf[off:off + vlen].view(self.dtype)
        cnt = int(buf[off + vlen:off + vlen + 4].view(np.uint32)[0])
        if cnt > self.R:
            raise IndexFormatError(f"node {i}: {cnt} neighbours, more than R={self.R}")
        ids = buf[off + vlen + 4:off + vlen + 4 + 4 * cnt].view(np.uint32)
        if cnt and int(ids.max()) >= self.npts:
            raise IndexFormatError(f"node {i}: neighbour id {int(ids.max())} >= npts {self.npts}")
        return vec, ids

    def meta_sector(self) -> NDArray[np.uint8]:
        out = np.zeros(SECTOR_LEN, dtype=np.uint8)
        out[:_META_HEADER].view(np.uint32)[:] = (len(META_FIELDS), 1)
        vals = (self.npts, self.ndims, self.medoid, self.max_node_len, self.nnodes_per_sector,
                0, 0, 0, self.file_size)
        out[_META_HEADER:_META_HEADER + 8 * len(vals)].view(np.uint64)[:] = vals
        return out

    def node_sectors(self, rows: np.ndarray, graph: VamanaGraph, first: int,
                     count: int) -> NDArray[np.uint8]:
        """Bytes of ``count`` sectors starting at data sector ``first`` (1-based)."""
        out = np.zeros((count, SECTOR_LEN), dtype=np.uint8)
        flat = out.reshape(-1)
        vlen = self.ndims * self.dtype.itemsize
        if self.nnodes_per_sector:
            per = self.nnodes_per_sector
            lo = (first - 1) * per
            hi = min(self.npts, (first - 1 + count) * per)
            ids = np.arange(lo, hi)
            base = ((ids - lo) // per) * SECTOR_LEN + ((ids - lo) % per) * self.max_node_len
        else:
            lo = (first - 1) // self.sectors_per_node
            hi = min(self.npts, lo + count // self.sectors_per_node)
            ids = np.arange(lo, hi)
            base = (ids - lo) * self.sectors_per_node * SECTOR_LEN
        if len(ids) == 0:
            return out
        node = np.zeros((len(ids), self.max_node_len), dtype=np.uint8)
        node[:, :vlen] = np.ascontiguousarray(rows[ids]).view(np.uint8).reshape(len(ids), vlen)
        node[:, vlen:vlen + 4] = graph.degrees[ids].astype("<u4")[:, None].view(np.uint8)
        nb = graph.neighbors[ids].astype("<u4")
        mask = np.arange(graph.R)[None, :] < graph.degrees[ids][:, None]
        node[:, vlen + 4:] = np.where(mask, nb, 0).astype("<u4").view(np.uint8)
        cols = base[:, None] + np.arange(self.max_node_len)[None, :]
        flat[cols.reshape(-1)] = node.reshape(-1)
        return out


def write_disk_index(dev: BlockDevice, data: np.ndarray, graph: VamanaGraph, *,
                     start_lba: int = 0,
                     progress: Callable[[int, int], None] | None = None) -> DiskLayout:
    """Lay ``graph`` and ``data`` out on ``dev`` from ``start_lba`` and return the layout.

    Raises
    ------
    UsageError
        The device is too small, its block size does not divide 4096, or graph and data
        disagree.
    """
    data = check_data(data)
    if graph.n != len(data):
        raise UsageError(f"graph has {graph.n} nodes but data has {len(data)} rows")
    rows = data          # the vectors as given: uint8, int8 or float32, any metric
    if SECTOR_LEN % dev.block_size:
        raise UsageError(f"{dev.uri}: block size {dev.block_size} does not divide {SECTOR_LEN}")
    layout = DiskLayout(len(rows), rows.shape[1], rows.dtype, graph.R, graph.medoid, start_lba,
                        dev.block_size)
    need = start_lba + (1 + layout.n_sectors) * layout.blocks_per_sector
    if need > dev.num_blocks:
        raise UsageError(f"{dev.uri}: the index needs {need} blocks of {dev.block_size} B "
                         f"({layout.file_size} B from lba {start_lba}), the device has "
                         f"{dev.num_blocks}")
    per_write = max(1, min(WRITE_SECTORS,
                           dev.max_transfer_blocks // layout.blocks_per_sector))
    qp = dev.qpair()
    buf = dev.alloc_buffer(per_write * SECTOR_LEN)
    try:
        buf.view[:SECTOR_LEN] = layout.meta_sector()
        req = qp.write(buf, start_lba, layout.blocks_per_sector)
        qp.wait(req)
        req.result()
        sector, total = 1, layout.n_sectors
        while sector <= total:
            count = min(per_write, total - sector + 1)
            buf.view[:count * SECTOR_LEN] = layout.node_sectors(rows, graph, sector,
                                                                count).reshape(-1)
            req = qp.write(buf, start_lba + sector * layout.blocks_per_sector,
                           count * layout.blocks_per_sector)
            qp.wait(req)
            req.result()
            sector += count
            if progress is not None:
                progress(sector - 1, total)
        flush = qp.flush()
        qp.wait(flush)
        flush.result()
    finally:
        qp.close()
        buf.free()
    return layout


def open_disk_index(dev: BlockDevice, dtype: np.dtype | type | str, *,
                    start_lba: int = 0) -> DiskLayout:
    """Read and check the metadata sector of a disk index of element type ``dtype``.

    Raises
    ------
    IndexFormatError
        The metadata is not a DiskANN disk-index header, is inconsistent with ``dtype``, or
        says the index is larger than the device (a truncated file).
    """
    dt = np.dtype(dtype)
    if SECTOR_LEN % dev.block_size:
        raise UsageError(f"{dev.uri}: block size {dev.block_size} does not divide {SECTOR_LEN}")
    bps = SECTOR_LEN // dev.block_size
    if start_lba + bps > dev.num_blocks:
        raise IndexFormatError(f"{dev.uri}: too small to hold a disk index metadata sector")
    qp = dev.qpair()
    buf = dev.alloc_buffer(SECTOR_LEN)
    try:
        req = qp.read(buf, start_lba, bps)
        qp.wait(req)
        req.result()
        raw = buf.view[:SECTOR_LEN].copy()
    finally:
        qp.close()
        buf.free()
    nr, nc = (int(v) for v in raw[:_META_HEADER].view(np.uint32))
    where = f"{dev.uri} (lba {start_lba})"
    if nc != 1 or not len(META_FIELDS) - 1 <= nr <= (SECTOR_LEN - _META_HEADER) // 8:
        raise IndexFormatError(f"{where}: not a DiskANN disk index (metadata header "
                               f"nr={nr}, nc={nc}; expected nr={len(META_FIELDS)}, nc=1)")
    meta = dict(zip(META_FIELDS, (int(v) for v in
                                  raw[_META_HEADER:_META_HEADER + 8 * nr].view(np.uint64))))
    npts, ndims, max_node_len = meta["npts"], meta["ndims"], meta["max_node_len"]
    if npts == 0 or ndims == 0:
        raise IndexFormatError(f"{where}: npts={npts}, ndims={ndims}")
    rest = max_node_len - ndims * dt.itemsize
    if rest < 8 or rest % 4:
        raise IndexFormatError(f"{where}: max_node_len {max_node_len} does not fit {ndims} "
                               f"{dt} coordinates plus a neighbour list (wrong dtype?)")
    layout = DiskLayout(npts, ndims, dt, rest // 4 - 1, meta["medoid"], start_lba,
                        dev.block_size)
    if meta["nnodes_per_sector"] != layout.nnodes_per_sector:
        raise IndexFormatError(f"{where}: nnodes_per_sector {meta['nnodes_per_sector']} "
                               f"!= 4096 // {max_node_len}")
    if layout.medoid >= npts:
        raise IndexFormatError(f"{where}: medoid {layout.medoid} >= npts {npts}")
    end = start_lba + (1 + layout.n_sectors) * bps
    if end > dev.num_blocks:
        raise IndexFormatError(f"{where}: the index needs {layout.file_size} B but the device "
                               f"holds {(dev.num_blocks - start_lba) * dev.block_size} B "
                               "(truncated?)")
    return layout
