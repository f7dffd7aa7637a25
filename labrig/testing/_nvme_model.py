"""A reference model of one NVMe namespace with a volatile write cache.

What the state machines check the emulated (or a real) drive against.  Per logical block it
keeps the last durable contents and the versions written since then:

- a read returns the newest version (cached or durable), zeros if never written;
- Flush, or FUA on a write, makes the newest versions durable;
- after a power loss every block holds exactly one of the versions it could legally hold: its
  durable contents or one of the versions written since (blocks are the atomic unit, NVMe
  AWUPF = 0), never a torn mix, never a value that was not written.

Deallocate (DSM, Write Zeroes with DEAC) reads back as zeros (DLFEAT = 001b, NVM Command Set
spec 1.0 section 4.1.5.1) and is volatile like a write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["NamespaceModel"]


@dataclass
class _Block:
    durable: bytes | None = None
    pending: list[bytes | None] = field(default_factory=list)

    def newest(self) -> bytes | None:
        return self.pending[-1] if self.pending else self.durable


class NamespaceModel:
    """Reference contents of a namespace of ``num_blocks`` blocks of ``block_size`` bytes."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._zero = bytes(block_size)
        self._blocks: dict[int, _Block] = {}

    def _put(self, lba: int, data: bytes | None, durable: bool) -> None:
        b = self._blocks.setdefault(lba, _Block())
        if durable:
            b.durable = data
            b.pending.clear()
        else:
            b.pending.append(data)

    def write(self, lba: int, data: bytes, *, fua: bool = False) -> None:
        """Record a write of ``len(data) // block_size`` blocks starting at ``lba``."""
        bs = self.block_size
        for i in range(len(data) // bs):
            self._put(lba + i, data[i * bs:(i + 1) * bs], fua)

    def deallocate(self, lba: int, nblocks: int) -> None:
        """Record a deallocation (reads return zeros)."""
        for i in range(nblocks):
            self._put(lba + i, None, False)

    def flush(self) -> None:
        """Make every block's newest version durable."""
        for b in self._blocks.values():
            if b.pending:
                b.durable = b.pending[-1]
                b.pending.clear()

    def expected(self, lba: int, nblocks: int) -> bytes:
        """What a read of the range must return while the power stays on."""
        out = []
        for i in range(nblocks):
            b = self._blocks.get(lba + i)
            v = b.newest() if b is not None else None
            out.append(self._zero if v is None else v)
        return b"".join(out)

    def allowed_after_power_loss(self, lba: int) -> list[bytes]:
        """Every contents block ``lba`` may legally hold after a power loss."""
        b = self._blocks.get(lba)
        if b is None:
            return [self._zero]
        return [self._zero if v is None else v for v in [b.durable, *b.pending]]

    def power_loss(self, observe: Callable[[int], bytes]) -> list[int]:
        """Apply a power loss: ``observe(lba) -> bytes`` reads the device's block after it.

        Returns the blocks whose contents were not among the allowed versions (empty when the
        device behaved).  Afterwards the observed contents are the durable state.
        """
        bad = []
        for lba in sorted(self._blocks):
            got = observe(lba)
            if got not in self.allowed_after_power_loss(lba):
                bad.append(lba)
            self._blocks[lba] = _Block(durable=got)
        return bad

    def written_lbas(self) -> list[int]:
        return sorted(self._blocks)
