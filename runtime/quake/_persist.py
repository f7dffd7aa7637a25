"""Versioned, checksummed file format of a Quake index.

Layout (little endian)::

    b"LBQUAKE\\0" | u32 version | u64 header_len | header (UTF-8 JSON) | payload | u32 crc32

Version 2 (multi-level): the header holds d, the config, λ's profile, the cap dimension APS
uses (``cap_dim``, possibly calibrated at build) and, per level from 0
up, ``{"partitions": [[pid, size], ...], "next_pid": n}``; the payload holds, level by level
and per partition in header order, its centroid (d float32), item ids (s int64) and items
(s·d float32) — vectors at level 0, the centroids of the level below above it.  Version 1
(single level: ``"partitions"`` and ``"next_pid"`` at the top of the header, same payload)
still loads.  The CRC covers everything before it.  The access-frequency windows are not
saved: a loaded index starts with empty windows.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labrig.errors import UsageError
from labrig.runtime.quake._cost import CostModel, ScanLatency
from labrig.runtime.quake._level import Level
from labrig.runtime.quake._params import QuakeConfig

if TYPE_CHECKING:
    from labrig.runtime.quake._index import QuakeIndex

__all__ = ["FORMAT_VERSION", "MAGIC", "READABLE_VERSIONS", "QuakeFileError", "load_index",
           "save_index"]

MAGIC = b"LBQUAKE\0"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_PRE = struct.Struct("<8sIQ")
_CRC = struct.Struct("<I")


class QuakeFileError(UsageError):
    """A Quake index file is not one, is truncated, corrupt, or of an unknown version."""


def save_index(index: QuakeIndex, path: Path) -> None:
    """Write ``index`` to ``path`` atomically (temporary file, then rename)."""
    lam = index.scan_latency
    levels = [{"partitions": [[p, lv.parts[p].size] for p in sorted(lv.parts)],
               "next_pid": lv.next_pid} for lv in index._levels]
    header = {"d": index.d, "config": asdict(index.config),
              "lambda": [lam.sizes.tolist(), lam.seconds.tolist()], "levels": levels,
              "cap_dim": index.cap_dim}
    hb = json.dumps(header).encode()
    chunks = [_PRE.pack(MAGIC, FORMAT_VERSION, len(hb)), hb]
    for lv in index._levels:
        for p in sorted(lv.parts):
            part = lv.parts[p]
            chunks += [part.centroid.astype("<f4").tobytes(), part.ids.astype("<i8").tobytes(),
                       part.x.astype("<f4").tobytes()]
    blob = b"".join(chunks)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blob + _CRC.pack(zlib.crc32(blob)))
    tmp.replace(path)


def load_index(cls: type[QuakeIndex], path: Path, n_workers: int | None) -> QuakeIndex:
    """Read a file written by :func:`save_index`."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise QuakeFileError(f"{path}: cannot read Quake index: {exc}") from exc
    if len(blob) < _PRE.size + _CRC.size:
        raise QuakeFileError(f"{path}: truncated ({len(blob)} bytes)")
    magic, version, hlen = _PRE.unpack_from(blob)
    if magic != MAGIC:
        raise QuakeFileError(f"{path}: not a Quake index (magic {magic!r})")
    if version not in READABLE_VERSIONS:
        raise QuakeFileError(f"{path}: format version {version}; this labrig reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))}")
    body, (crc,) = blob[:-_CRC.size], _CRC.unpack(blob[-_CRC.size:])
    if _PRE.size + hlen > len(body):
        raise QuakeFileError(f"{path}: truncated (header of {hlen} bytes does not fit)")
    if zlib.crc32(body) != crc:
        raise QuakeFileError(f"{path}: checksum mismatch (corrupt or truncated file)")
    try:
        header: dict[str, Any] = json.loads(body[_PRE.size:_PRE.size + hlen])
        d = int(header["d"])
        cfg = dict(header["config"])
        if n_workers is not None:
            cfg["n_workers"] = n_workers
        index = cls(d, QuakeConfig(**cfg))
        tables = (header["levels"] if version >= 2 else
                  [{"partitions": header["partitions"], "next_pid": header["next_pid"]}])
        if not tables:
            raise QuakeFileError(f"{path}: no levels in the header")
        index._levels = [Level(d, index.config.window_size) for _ in tables]
        off = _PRE.size + hlen
        for lv, (level, table) in enumerate(zip(index._levels, tables)):
            for pid, size in table["partitions"]:
                need = 4 * d + 8 * size + 4 * size * d
                if size < 0 or off + need > len(body):
                    raise QuakeFileError(f"{path}: truncated inside partition {pid} of level {lv}")
                c = np.frombuffer(body, "<f4", d, off).astype(np.float32)
                ids = np.frombuffer(body, "<i8", size, off + 4 * d).astype(np.int64)
                x = np.frombuffer(body, "<f4", size * d, off + 4 * d + 8 * size)
                level.new_partition(c, x.reshape(size, d).astype(np.float32), ids, pid=int(pid))
                off += need
            level.next_pid = int(table["next_pid"])
        if off != len(body):
            raise QuakeFileError(f"{path}: {len(body) - off} unexpected trailing bytes")
        for below, up in zip(index._levels, index._levels[1:]):
            if set(up.loc) != set(below.parts):
                raise QuakeFileError(f"{path}: level {index._levels.index(up)} does not hold "
                                     "the centroids of the level below")
            index._link(below, up)
        lam = ScanLatency(*header["lambda"])
        index._set_cap_dim(int(header.get("cap_dim", d)))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, QuakeFileError):
            raise
        raise QuakeFileError(f"{path}: malformed header: {exc}") from exc
    index._lam = lam
    index.cost = CostModel(lam, index.config.alpha)
    return index
