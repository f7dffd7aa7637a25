"""A namespace: validated config, data store and its Identify Namespace structure.

After QEMU ``hw/nvme/ns.c``: parameters are checked where they enter (:class:`NamespaceConfig`
validates itself), the object only initialises and serves.
"""

from __future__ import annotations

import struct

import numpy as np

from labrig.hw.nvme._store import FileStore, MemoryStore
from labrig.hw.nvme.config import NamespaceConfig
from labrig.hw.nvme.spec import (
    DLFEAT_READS_ZEROES,
    IDENTIFY_BYTES,
    LBAF_LBADS_OFFSET,
    NSFEAT_DEALLOC,
    IdNs,
)

__all__ = ["Namespace"]


class Namespace:
    """One active namespace.

    Parameters
    ----------
    nsid : int
        Namespace identifier (1-based).
    cfg : NamespaceConfig
        Size, LBA format, optional backing file.

    Attributes
    ----------
    nlbas : int
        Size in logical blocks.
    lba_bytes : int
        Logical block size.
    store : MemoryStore or FileStore
        The data, by namespace byte offset (inspection API for tests).
    """

    def __init__(self, nsid: int, cfg: NamespaceConfig) -> None:
        self.nsid = nsid
        self.cfg = cfg
        self.nlbas = cfg.nlbas
        self.lba_bytes = cfg.lba_bytes
        self.lba_shift = cfg.lba_bytes.bit_length() - 1
        self.store: MemoryStore = (FileStore(cfg.capacity_bytes, cfg.backing_file)
                                   if cfg.backing_file else MemoryStore(cfg.capacity_bytes))

    def read_blocks(self, slba: int, nlb: int) -> bytes:
        """Current contents of ``nlb`` blocks from ``slba`` (inspection API; no timing)."""
        out = np.empty(nlb * self.lba_bytes, dtype=np.uint8)
        self.store.read_into(slba * self.lba_bytes, out)
        return out.tobytes()

    def identify(self) -> bytes:
        """Identify Namespace data structure (NVM Command Set spec 1.0 Figure 97)."""
        buf = bytearray(IDENTIFY_BYTES)
        struct.pack_into("<QQQ", buf, IdNs.NSZE, self.nlbas, self.nlbas, self.nlbas)
        buf[IdNs.NSFEAT] = NSFEAT_DEALLOC
        buf[IdNs.NLBAF] = 0            # one LBA format (0-based count)
        buf[IdNs.FLBAS] = 0            # format 0 in use
        buf[IdNs.DLFEAT] = DLFEAT_READS_ZEROES
        buf[IdNs.LBAF0 + LBAF_LBADS_OFFSET] = self.lba_shift
        return bytes(buf)

    def close(self) -> None:
        """Release the backing file, if any."""
        if isinstance(self.store, FileStore):
            self.store.close()
