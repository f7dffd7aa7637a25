"""Completion-time model: per-LUN and per-channel busy-until times, PCIe link, write cache.

After NVMeVirt's conventional-SSD model (``ssd_advance_nand``: ``start = max(lun_free, now)``,
LUN busy until its channel transfer ends) and FEMU's "compute, then hold" (research notes 3.1,
3.2): the controller asks for a completion time when it fetches a command and posts the CQE
then.  Pure-int arithmetic; no per-command allocation besides the cache FIFO entry.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from labrig.hw.nvme.config import NandTiming

__all__ = ["SlottedLink", "TimingModel"]

_HASH_MUL = 0x9E37_79B9_7F4A_7C15   # Fibonacci hashing constant (2^64 / golden ratio)
_MASK64 = (1 << 64) - 1
#: Slot length of the link credit model (NVMeVirt ``channel_model.h`` uses 4 us slots).
SLOT_NS = 4_000
#: Forget slots more than 64 slots behind once this many are tracked.
PRUNE_AT = 4096


class SlottedLink:
    """A shared transfer resource (NAND channel, PCIe link) as NVMeVirt's credit model
    (``channel_model.h``): time is cut into slots, each with ``slot_ns`` of capacity; a
    transfer ready at ``t`` fills free capacity from its slot on.  Unlike a single busy-until
    time, a transfer that becomes ready early is not queued behind one reserved later.
    """

    __slots__ = ("floor", "slot_ns", "used")

    def __init__(self, slot_ns: int) -> None:
        self.slot_ns = slot_ns
        self.used: dict[int, int] = {}
        self.floor = 0

    def transfer(self, ready: int, ns: int) -> int:
        """End time of a transfer of ``ns`` nanoseconds that can start at ``ready``."""
        if ns <= 0:
            return ready
        size = self.slot_ns
        used = self.used
        k = ready // size
        if k < self.floor:
            k = self.floor
        if len(used) > PRUNE_AT:
            self._prune(k)
        u = used.get(k, 0)
        if u + ns <= size:                    # fast path: fits in the ready slot
            used[k] = u + ns
            t = k * size + u + ns
            end = ready + ns
            return t if t > end else end
        left = ns
        end = ready + ns
        while True:
            u = used.get(k, 0)
            free = size - u
            if free > 0:
                take = free if free < left else left
                used[k] = u + take
                left -= take
                if left == 0:
                    t = k * size + u + take
                    return t if t > end else end
            k += 1

    def _prune(self, k: int) -> None:
        floor = k - 64
        for key in [key for key in self.used if key < floor]:
            del self.used[key]
        self.floor = max(self.floor, floor)


class TimingModel:
    """Busy-until bookkeeping for one controller.

    Parameters
    ----------
    timing : NandTiming
        Geometry and latencies.
    write_cache_bytes : int
        Capacity of the volatile write cache.
    """

    def __init__(self, timing: NandTiming, write_cache_bytes: int) -> None:
        t = timing
        self.t = t
        self.nluns = t.luns
        self.lpc = t.luns_per_channel
        self.page_bytes = t.page_bytes
        self.page_shift = t.page_bytes.bit_length() - 1
        self.lun_busy = [0] * self.nluns
        self.channels = [SlottedLink(SLOT_NS) for _ in range(t.channels)]
        self.pcie = SlottedLink(SLOT_NS)
        self.page_ch_ns = t.page_bytes * 1000 // t.channel_mb_s
        self.cache_cap = write_cache_bytes
        self.cache: deque[tuple[int, int]] = deque()   # (durable_at_ns, bytes), FIFO order
        self.cache_bytes = 0
        #: time at which every accepted write is on NAND (drain is in order: a prefix is durable)
        self.last_durable_ns = 0

    def reset(self) -> None:
        """Forget all in-flight work (power loss: the cache is gone, the NAND is idle)."""
        self.lun_busy = [0] * self.nluns
        self.channels = [SlottedLink(SLOT_NS) for _ in range(self.t.channels)]
        self.pcie = SlottedLink(SLOT_NS)
        self.cache.clear()
        self.cache_bytes = 0
        self.last_durable_ns = 0

    def lun_of(self, nsid: int, page: int) -> int:
        """The LUN holding ``page`` of namespace ``nsid`` (a fixed multiplicative hash, so
        random pages spread over all LUNs)."""
        return ((((nsid << 40) ^ page) * _HASH_MUL & _MASK64) >> 32) % self.nluns

    def _pcie(self, start: int, nbytes: int) -> int:
        return self.pcie.transfer(start, nbytes * 1000 // self.t.pcie_mb_s)

    def read(self, now: int, nsid: int, off: int, nbytes: int,
             allocated: Callable[[int], bool]) -> int:
        """Completion time of a read of ``nbytes`` at namespace byte ``off``.

        ``allocated(chunk)`` tells whether a 4 KiB chunk holds data; pages with none cost no
        NAND time (FEMU).
        """
        t0 = now + self.t.fw_read_ns
        done = t0
        shift = self.page_shift
        lun_busy, channels, lpc = self.lun_busy, self.channels, self.lpc
        tr, xfer = self.t.read_ns, self.page_ch_ns
        per_page = self.page_bytes >> 12
        for page in range(off >> shift, ((off + nbytes - 1) >> shift) + 1):
            if per_page == 1:
                if not allocated(page):
                    continue
            elif not any(allocated(page * per_page + k) for k in range(per_page)):
                continue
            lun = ((((nsid << 40) ^ page) * _HASH_MUL & _MASK64) >> 32) % self.nluns
            s = lun_busy[lun] if lun_busy[lun] > t0 else t0
            ce = channels[lun // lpc].transfer(s + tr, xfer)
            lun_busy[lun] = ce
            if ce > done:
                done = ce
        return self._pcie(done, nbytes)

    def write(self, now: int, nsid: int, off: int, nbytes: int, cached: bool) -> tuple[int, int]:
        """``(completion_ns, durable_ns)`` of a write; ``cached`` False = write-through (VWC
        disabled or FUA: completion waits for durability)."""
        cache = self.cache
        while cache and cache[0][0] <= now:
            self.cache_bytes -= cache.popleft()[1]
        accept = now
        while cache and self.cache_bytes + nbytes > self.cache_cap:
            t_free, n = cache.popleft()
            self.cache_bytes -= n
            accept = max(accept, t_free)
        in_cache = self._pcie(accept + self.t.fw_write_ns, nbytes)
        durable = in_cache
        shift = self.page_shift
        lun_busy, channels, lpc = self.lun_busy, self.channels, self.lpc
        prog, xfer = self.t.program_ns, self.page_ch_ns
        for page in range(off >> shift, ((off + nbytes - 1) >> shift) + 1):
            lun = self.lun_of(nsid, page)
            ce = channels[lun // lpc].transfer(in_cache, xfer)
            ps = lun_busy[lun] if lun_busy[lun] > ce else ce
            pe = ps + prog
            lun_busy[lun] = pe
            if pe > durable:
                durable = pe
        if durable < self.last_durable_ns:
            durable = self.last_durable_ns
        self.last_durable_ns = durable
        cache.append((durable, nbytes))
        self.cache_bytes += nbytes
        return (in_cache if cached else durable), durable

    def metadata_update(self, now: int) -> int:
        """Durable time of a data-less change (deallocate, write zeroes): after every earlier
        write, as the cache drains in order."""
        durable = max(now, self.last_durable_ns)
        self.last_durable_ns = durable
        return durable

    def flush(self, now: int) -> int:
        """Completion time of a Flush: everything accepted so far is on NAND."""
        t = now + self.t.fw_write_ns
        return t if t > self.last_durable_ns else self.last_durable_ns
