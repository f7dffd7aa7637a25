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

DiskANN indexes with ``append_reorder_data`` carry extra metadata fields before ``file_size``
(always the last one) and extra sectors after the nodes; they are accepted, searched over
their nodes, and copied whole.  The header does not name the element type (DiskANN's loader
takes it as a template parameter), so :func:`open_disk_index` is told it.

:func:`export_disk_index` / :func:`import_disk_index` copy an index between any
:class:`BlockDevice` and a plain file holding exactly the ``_disk.index`` bytes, through a
``file:`` device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import os
from collections import deque

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.block import BlockDevice, IoBuffer, IoRequest, open_block_device
from labrig.errors import UsageError
from labrig.runtime.diskann.vamana import VamanaGraph, check_data

__all__ = [
    "META_FIELDS",
    "SECTOR_LEN",
    "DiskLayout",
    "IndexFormatError",
    "copy_disk_index",
    "export_disk_index",
    "import_disk_index",
    "open_disk_index",
    "write_disk_index",
]

#: DiskANN ``include/defs.h`` SECTOR_LEN.
SECTOR_LEN = 4096
#: The u64 fields of sector 0, in order.
META_FIELDS = ("npts", "ndims", "medoid", "max_node_len", "nnodes_per_sector", "frozen_num",
               "frozen_loc", "append_reorder_data", "file_size")
_META_HEADER = 8                       # u32 nr, u32 nc of the .bin-style header
#: Sectors moved per device command while laying out or copying an index.
WRITE_SECTORS = 64
#: Commands kept in flight while laying out or copying (one buffer each).
WRITE_DEPTH = 4
#: Index of ``file_size`` counted from the end of the metadata (it is always the last field).
_FIXED_META = 8                         # npts .. append_reorder_data


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


class _Pipeline:
    """A ring of buffers on one queue pair keeping up to ``WRITE_DEPTH`` commands in flight."""

    def __init__(self, dev: BlockDevice, sectors: int) -> None:
        self.qp = dev.qpair(depth=min(dev.max_queue_depth, WRITE_DEPTH))
        self.bufs: list[IoBuffer] = []
        try:
            for _ in range(WRITE_DEPTH):
                self.bufs.append(dev.alloc_buffer(sectors * SECTOR_LEN))
        except BaseException:
            self.close()
            raise
        self.inflight: deque[tuple[IoRequest, IoBuffer]] = deque()
        self.free = list(self.bufs)

    def buffer(self) -> IoBuffer:
        """A buffer no command is using (waits for the oldest command when all are busy)."""
        if not self.free:
            req, buf = self.inflight.popleft()
            self.qp.wait(req)
            req.result()
            self.free.append(buf)
        return self.free.pop()

    def write(self, buf: IoBuffer, lba: int, nblocks: int) -> None:
        self.inflight.append((self.qp.write(buf, lba, nblocks), buf))

    def drain(self, *, flush: bool) -> None:
        while self.inflight:
            req, buf = self.inflight.popleft()
            self.qp.wait(req)
            req.result()
            self.free.append(buf)
        if flush:
            req = self.qp.flush()
            self.qp.wait(req)
            req.result()

    def close(self) -> None:
        try:
            if self.inflight:
                self.qp.wait([r for r, _ in self.inflight])
        finally:
            self.qp.close()
            for b in self.bufs:
                b.free()


def _check_block_size(dev: BlockDevice) -> int:
    """Blocks per 4 KiB sector on ``dev``."""
    if SECTOR_LEN % dev.block_size:
        raise UsageError(f"{dev.uri}: block size {dev.block_size} does not divide {SECTOR_LEN}")
    return SECTOR_LEN // dev.block_size


def write_disk_index(dev: BlockDevice, data: np.ndarray, graph: VamanaGraph, *,
                     start_lba: int = 0,
                     progress: Callable[[int, int], None] | None = None) -> DiskLayout:
    """Lay ``graph`` and ``data`` out on ``dev`` from ``start_lba`` and return the layout.

    Writes go through one queue pair, ``WRITE_SECTORS`` sectors per command and up to
    ``WRITE_DEPTH`` commands in flight, then a flush; on a ``file:`` device of exactly
    ``layout.file_size`` bytes the result is DiskANN's ``_disk.index`` file.

    Parameters
    ----------
    dev : BlockDevice
        Block size 512 or 4096 (a sector is ``4096 // block_size`` blocks).
    data : ndarray, shape (n, d)
        uint8, int8 or float32; the vectors stored in the nodes.
    graph : VamanaGraph
        Built over ``data``; node ``i``'s out-edges are stored with it.
    progress : callable, optional
        ``progress(sectors_done, sectors_total)``.

    Raises
    ------
    UsageError
        The device is too small, its block size does not divide 4096, or graph and data
        disagree.
    """
    data = check_data(data)
    if graph.n != len(data):
        raise UsageError(f"graph has {graph.n} nodes but data has {len(data)} rows")
    bps = _check_block_size(dev)
    if start_lba < 0:
        raise UsageError(f"start_lba={start_lba}: must be >= 0")
    layout = DiskLayout(len(data), data.shape[1], data.dtype, graph.R, graph.medoid, start_lba,
                        dev.block_size)
    need = start_lba + (1 + layout.n_sectors) * bps
    if need > dev.num_blocks:
        raise UsageError(f"{dev.uri}: the index needs {need} blocks of {dev.block_size} B "
                         f"({layout.file_size} B from lba {start_lba}), the device has "
                         f"{dev.num_blocks}")
    per_write = max(1, min(WRITE_SECTORS, dev.max_transfer_blocks // bps))
    if layout.sectors_per_node > 1:           # keep a spanning node inside one command
        per_write = max(layout.sectors_per_node,
                        per_write - per_write % layout.sectors_per_node)
    pipe = _Pipeline(dev, per_write)
    try:
        buf = pipe.buffer()
        buf.view[:SECTOR_LEN] = layout.meta_sector()
        pipe.write(buf, start_lba, bps)
        sector, total = 1, layout.n_sectors
        while sector <= total:
            count = min(per_write, total - sector + 1)
            buf = pipe.buffer()
            buf.view[:count * SECTOR_LEN] = layout.node_sectors(data, graph, sector,
                                                                count).reshape(-1)
            pipe.write(buf, start_lba + sector * bps, count * bps)
            sector += count
            if progress is not None:
                progress(sector - 1, total)
        pipe.drain(flush=True)
    finally:
        pipe.close()
    return layout


def _read_meta(dev: BlockDevice, start_lba: int, bps: int) -> NDArray[np.uint8]:
    qp = dev.qpair()
    buf = dev.alloc_buffer(SECTOR_LEN)
    try:
        req = qp.read(buf, start_lba, bps)
        qp.wait(req)
        req.result()
        return buf.view[:SECTOR_LEN].copy()
    finally:
        qp.close()
        buf.free()


def open_disk_index(dev: BlockDevice, dtype: np.dtype | type | str, *,
                    start_lba: int = 0) -> DiskLayout:
    """Read and check the metadata sector of a disk index of element type ``dtype``.

    Parameters
    ----------
    dev : BlockDevice
        The device holding the index (block size 512 or 4096).
    dtype : numpy dtype
        uint8, int8 or float32: DiskANN's header does not record it.
    start_lba : int, optional
        Where the index starts on ``dev``.

    Raises
    ------
    IndexFormatError
        The metadata is not a DiskANN disk-index header, is inconsistent with ``dtype`` or with
        itself, or says the index is larger than the device (a truncated file).
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.float32)):
        raise UsageError(f"dtype {dt}: a disk index holds uint8, int8 or float32 vectors")
    bps = _check_block_size(dev)
    where = f"{dev.uri} (lba {start_lba})"
    if start_lba < 0 or start_lba + bps > dev.num_blocks:
        raise IndexFormatError(f"{where}: the device ({dev.num_blocks} blocks of "
                               f"{dev.block_size} B) cannot hold a metadata sector there")
    raw = _read_meta(dev, start_lba, bps)
    nr, nc = (int(v) for v in raw[:_META_HEADER].view("<u4"))
    max_fields = (SECTOR_LEN - _META_HEADER) // 8
    if nc != 1 or not len(META_FIELDS) <= nr <= max_fields:
        raise IndexFormatError(f"{where}: not a DiskANN disk index (metadata header "
                               f"nr={nr}, nc={nc}; expected nr >= {len(META_FIELDS)}, nc=1)")
    vals = [int(v) for v in raw[_META_HEADER:_META_HEADER + 8 * nr].view("<u8")]
    meta = dict(zip(META_FIELDS[:_FIXED_META], vals[:_FIXED_META]))
    meta["file_size"] = vals[-1]
    npts, ndims, max_node_len = meta["npts"], meta["ndims"], meta["max_node_len"]
    if npts == 0 or ndims == 0 or npts >= 2**32 or ndims * dt.itemsize > 2**31:
        raise IndexFormatError(f"{where}: npts={npts}, ndims={ndims} is not a usable index")
    rest = max_node_len - ndims * dt.itemsize
    if rest < 8 or rest % 4:
        raise IndexFormatError(f"{where}: max_node_len {max_node_len} does not fit {ndims} "
                               f"{dt} coordinates plus a neighbour list (wrong dtype?)")
    layout = DiskLayout(npts, ndims, dt, rest // 4 - 1, meta["medoid"], start_lba,
                        dev.block_size)
    if meta["nnodes_per_sector"] != layout.nnodes_per_sector:
        raise IndexFormatError(f"{where}: nnodes_per_sector {meta['nnodes_per_sector']} "
                               f"!= 4096 // max_node_len {max_node_len}")
    if layout.medoid >= npts:
        raise IndexFormatError(f"{where}: medoid {layout.medoid} >= npts {npts}")
    if meta["file_size"] < layout.file_size or meta["file_size"] % SECTOR_LEN:
        raise IndexFormatError(f"{where}: file_size field {meta['file_size']} is not a whole "
                               f"number of sectors >= the {layout.file_size} B the nodes need")
    end = start_lba + (1 + layout.n_sectors) * bps
    if end > dev.num_blocks:
        raise IndexFormatError(f"{where}: the index needs {layout.file_size} B but the device "
                               f"holds {(dev.num_blocks - start_lba) * dev.block_size} B "
                               "(truncated?)")
    return layout


def _stored_size(dev: BlockDevice, start_lba: int) -> int:
    """The ``file_size`` field of a checked index: its bytes including any reorder data."""
    raw = _read_meta(dev, start_lba, _check_block_size(dev))
    nr = int(raw[:4].view("<u4")[0])
    return int(raw[_META_HEADER + 8 * (nr - 1):_META_HEADER + 8 * nr].view("<u8")[0])


def copy_disk_index(src: BlockDevice, dst: BlockDevice, dtype: np.dtype | type | str, *,
                    src_lba: int = 0, dst_lba: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> DiskLayout:
    """Copy a checked disk index (all ``file_size`` bytes) from ``src`` to ``dst``.

    Returns the layout as it lies on ``dst``.  Block sizes may differ.

    Raises
    ------
    IndexFormatError
        ``src`` does not hold a valid index (see :func:`open_disk_index`), or the copy on
        ``dst`` does not read back as one.
    UsageError
        ``dst`` is too small.
    """
    open_disk_index(src, dtype, start_lba=src_lba)
    size = _stored_size(src, src_lba)
    total = size // SECTOR_LEN
    if src_lba + total * _check_block_size(src) > src.num_blocks:
        raise IndexFormatError(f"{src.uri} (lba {src_lba}): file_size {size} B runs past the "
                               "device end (truncated?)")
    dbps, sbps = _check_block_size(dst), _check_block_size(src)
    if dst_lba < 0 or dst_lba + total * dbps > dst.num_blocks:
        raise UsageError(f"{dst.uri}: the index needs {size} B from lba {dst_lba}, the device "
                         f"has {dst.num_blocks} blocks of {dst.block_size} B")
    per = max(1, min(WRITE_SECTORS, src.max_transfer_blocks // sbps,
                     dst.max_transfer_blocks // dbps))
    rqp = src.qpair()
    rbuf = src.alloc_buffer(per * SECTOR_LEN)
    pipe = _Pipeline(dst, per)
    try:
        done = 0
        while done < total:
            count = min(per, total - done)
            req = rqp.read(rbuf, src_lba + done * sbps, count * sbps)
            rqp.wait(req)
            req.result()
            wbuf = pipe.buffer()
            wbuf.view[:count * SECTOR_LEN] = rbuf.view[:count * SECTOR_LEN]
            pipe.write(wbuf, dst_lba + done * dbps, count * dbps)
            done += count
            if progress is not None:
                progress(done, total)
        pipe.drain(flush=True)
    finally:
        pipe.close()
        rqp.close()
        rbuf.free()
    return open_disk_index(dst, dtype, start_lba=dst_lba)


def _file_uri(path: str | os.PathLike[str], options: str) -> str:
    p = os.fspath(path)
    if "?" in p:
        raise UsageError(f"{p!r}: a path holding '?' cannot be opened as a file: device")
    return f"file:{p}?{options}"


def export_disk_index(dev: BlockDevice, path: str | os.PathLike[str],
                      dtype: np.dtype | type | str, *, start_lba: int = 0,
                      overwrite: bool = False) -> DiskLayout:
    """Write the index on ``dev`` to ``path`` as DiskANN's ``_disk.index`` file, byte for byte.

    The file is exactly the index's ``file_size`` bytes, written through a ``file:`` device
    (buffered, thread engine: a copy, not a measurement).

    Raises
    ------
    UsageError
        ``path`` exists and ``overwrite`` is false.
    IndexFormatError
        ``dev`` holds no valid index.
    """
    open_disk_index(dev, dtype, start_lba=start_lba)
    size = _stored_size(dev, start_lba)
    if os.path.exists(path):
        if not overwrite:
            raise UsageError(f"{os.fspath(path)}: exists (pass overwrite=True to replace it)")
        os.unlink(path)
    with open_block_device(_file_uri(path, f"size={size}&lba={SECTOR_LEN}&direct=0"
                                           "&engine=threads")) as out:
        return copy_disk_index(dev, out, dtype, src_lba=start_lba)


def import_disk_index(path: str | os.PathLike[str], dev: BlockDevice,
                      dtype: np.dtype | type | str, *, start_lba: int = 0) -> DiskLayout:
    """Copy a DiskANN ``_disk.index`` file onto ``dev`` from ``start_lba``; return its layout.

    Raises
    ------
    IndexFormatError
        The file is not a whole number of 4 KiB sectors, or not a valid index of ``dtype``;
        the message names the file.
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise UsageError(f"{p}: no such index file")
    size = os.path.getsize(p)
    if size < SECTOR_LEN or size % SECTOR_LEN:
        raise IndexFormatError(f"{p}: {size} B is not a whole number of {SECTOR_LEN}-byte "
                               "sectors (truncated, or not a DiskANN _disk.index)")
    with open_block_device(_file_uri(p, f"lba={SECTOR_LEN}&ro=1&direct=0"
                                        "&engine=threads")) as src:
        return copy_disk_index(src, dev, dtype, dst_lba=start_lba)
