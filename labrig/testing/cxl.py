"""Hypothesis strategies, state machines and a reference program for the CXL pod (public API).

* :class:`SpscRing` -- a single-producer/single-consumer message ring with its payload in
  non-coherent memory and its indices in the coherent window; its flush sites can be switched
  off one by one (:data:`FLUSH_SITES`) for mutation tests.
* :func:`schedules`, :func:`pod_configs`, :func:`mailbox_commands` -- strategies.
* :class:`MailboxMachine`, :class:`HdmDecoderMachine` -- ``RuleBasedStateMachine`` s that drive
  the device through ``bar0`` with legal and illegal commands and check it never breaks.
* :func:`run_ring_host` -- one host of the ring on a real backend (a multiprocessing target).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from labrig.drivers.cxl import CxlHost, CxlMemory
from labrig.drivers.cxl.memdev import CxlMemdev
from labrig.errors import DeviceError
from labrig.hw import Platform
from labrig.hw.cxl import CxlPod, CxlPodConfig
from labrig.hw.cxl import regs as R

__all__ = ["FLUSH_SITES", "HdmDecoderMachine", "MailboxMachine", "SpscRing", "check_delivery",
           "mailbox_commands", "pod_configs", "run_ring_host", "schedules"]

#: Where :class:`SpscRing` flushes or fences; pass a subset as ``skip`` to remove them.
FLUSH_SITES = ("producer_writeback", "producer_fence", "consumer_flush", "consumer_fence")

_U64 = np.dtype("<u8")


@dataclass(frozen=True)
class SpscRing:
    """Layout of an SPSC ring in a :class:`CxlMemory` region.

    Attributes
    ----------
    head, tail : int
        Offsets of the consumer and producer counters (8-byte words, coherent window).
    slots_off : int
        Offset of the slot array (non-coherent region).
    slots : int
        Number of slots.
    slot_bytes : int
        Bytes per slot (a multiple of 64); a message fills its slot with its sequence number,
        so a torn or stale message shows as a word that differs.
    """

    head: int
    tail: int
    slots_off: int
    slots: int
    slot_bytes: int

    @classmethod
    def create(cls, mem: CxlMemory, slots: int = 4, slot_bytes: int = 128) -> SpscRing:
        """Allocate a ring in ``mem`` (counters start at zero in a fresh region)."""
        ctrl = mem.alloc(128, coherent=True, align=64)
        data = mem.alloc(slots * slot_bytes, coherent=False, align=64)
        return cls(ctrl, ctrl + 64, data, slots, slot_bytes)

    def slot(self, seq: int) -> int:
        """Offset of the slot that message ``seq`` (1-based) uses."""
        return self.slots_off + ((seq - 1) % self.slots) * self.slot_bytes

    def producer(self, h: CxlHost, n: int, skip: frozenset[str] = frozenset()
                 ) -> Iterator[None]:
        """Send messages 1..n (a generator: yields after every memory operation)."""
        words = self.slot_bytes // 8
        for seq in range(1, n + 1):
            while seq - 1 - h.load_u64(self.head) >= self.slots:
                yield
            yield
            off = self.slot(seq)
            h.store_array(off, np.full(words, seq, dtype=_U64))
            yield
            if "producer_writeback" not in skip:
                h.writeback(off, self.slot_bytes)
                yield
            if "producer_fence" not in skip:
                h.fence()
                yield
            h.store_u64(self.tail, seq)
            yield

    def consumer(self, h: CxlHost, n: int, out: list[int],
                 skip: frozenset[str] = frozenset()) -> Iterator[None]:
        """Receive until ``n`` messages are delivered, appending each sequence number to ``out``.

        Resumes from the coherent ``head`` (so a restarted consumer continues).  A message that
        is torn or stale is appended as ``-seq`` (a detectable failure, never hidden).
        Appending and advancing ``head`` happen in one step, so a crash cannot duplicate.
        """
        words = self.slot_bytes // 8
        got = h.load_u64(self.head)
        while got < n:
            tail = h.load_u64(self.tail)
            yield
            if tail == got:
                continue
            seq = got + 1
            off = self.slot(seq)
            if "consumer_flush" not in skip:
                h.flush(off, self.slot_bytes)
                yield
            if "consumer_fence" not in skip:
                h.fence()
                yield
            msg = h.load_array(off, _U64, words)
            yield
            ok = bool(np.all(msg == seq))
            out.append(seq if ok else -seq)
            got = seq
            h.store_u64(self.head, got)
            yield


def check_delivery(out: list[int]) -> None:
    """Assert ``out`` is exactly 1, 2, ..., k: nothing lost, duplicated, reordered or torn."""
    assert out == list(range(1, len(out) + 1)), f"bad delivery: {out}"


# -- strategies -------------------------------------------------------------------------------
def schedules(max_len: int = 400) -> st.SearchStrategy[list[int]]:
    """Explicit interleavings for :meth:`CxlPod.run` ``choices`` (shrink toward host 0 first)."""
    return st.lists(st.integers(0, 15), max_size=max_len)


def pod_configs(max_hosts: int = 4) -> st.SearchStrategy[CxlPodConfig]:
    """Small pods with adversarial caches (tiny random-evicting or never-evicting)."""
    return st.builds(CxlPodConfig, hosts=st.integers(2, max_hosts),
                     coherent_bytes=st.sampled_from([4096, 1 << 20]),
                     local_dram_bytes=st.just(1 << 20),
                     cache_lines=st.sampled_from([2, 8, 1 << 16]),
                     eviction=st.sampled_from(["never", "random"]))


def mailbox_commands() -> st.SearchStrategy[tuple[int, bytes]]:
    """``(opcode, payload)``: supported commands with right and wrong lengths, unknown opcodes."""
    known = st.sampled_from([int(o) for o in R.Opcode])
    any_op = st.integers(0, 0xFFFF)
    payload = st.one_of(st.just(b""), st.binary(max_size=40),
                        st.builds(lambda o, l: R.CEL_UUID + struct.pack("<II", o, l),
                                  st.integers(0, 64), st.integers(0, 4096)))
    return st.tuples(st.one_of(known, any_op), payload)


# -- state machines -------------------------------------------------------------------------------
class MailboxMachine(RuleBasedStateMachine):
    """Random mailbox commands, register pokes and doorbell abuse never break the device:
    every command completes with a spec return code, supported commands always still work."""

    def __init__(self) -> None:
        super().__init__()
        self.plat = Platform(seed=0)
        self.pod = CxlPod(self.plat, CxlPodConfig(hosts=2, local_dram_bytes=4096))
        self.bar = self.pod.device.bar0
        self.drv = CxlMemdev(self.plat, self.bar, timeout_ns=10_000_000)

    @rule(cmd=mailbox_commands())
    def send(self, cmd: tuple[int, bytes]) -> None:
        opcode, payload = cmd
        try:
            self.drv.mbox_send(opcode, payload)
            assert opcode in self.pod.device.mbox.table
        except DeviceError as exc:
            assert isinstance(exc.status, R.ReturnCode), exc.status
            if opcode not in self.pod.device.mbox.table:
                assert exc.status == R.ReturnCode.UNSUPPORTED

    @rule(off=st.integers(R.MBOX_OFFSET, R.MBOX_OFFSET + 0x40).map(lambda x: x & ~3),
          value=st.integers(0, 0xFFFF_FFFF))
    def poke(self, off: int, value: int) -> None:
        """Raw 32-bit writes to mailbox registers, including the doorbell."""
        self.bar.write32(off, value)

    @rule(length=st.integers(0, (1 << 21) - 1))
    def oversized_length(self, length: int) -> None:
        """A command register claiming a payload beyond the mailbox size."""
        if self.bar.read32(R.MBOX_CTRL_OFFSET) & R.MBOX_CTRL_DOORBELL:
            return
        self.bar.write64(R.MBOX_CMD_OFFSET, R.mbox_cmd_encode(R.Opcode.IDENTIFY, length))
        self.bar.write32(R.MBOX_CTRL_OFFSET, R.MBOX_CTRL_DOORBELL)
        self.plat.run_until_idle()
        rc, _, _ = R.mbox_status_decode(self.bar.read64(R.MBOX_STATUS_OFFSET))
        expect = R.ReturnCode.SUCCESS if length == 0 else R.ReturnCode.INVALID_PAYLOAD_LENGTH
        assert rc == expect

    @rule()
    def settle(self) -> None:
        self.plat.run_until_idle()

    @invariant()
    def identify_works_when_idle(self) -> None:
        self.plat.run_until_idle()
        assert not self.bar.read32(R.MBOX_CTRL_OFFSET) & R.MBOX_CTRL_DOORBELL
        assert self.drv.identify().total_bytes == self.pod.cfg.capacity_bytes


class HdmDecoderMachine(RuleBasedStateMachine):
    """Random decoder programming (aligned and not, in and out of order, locked) against a
    reference of which decoders must be committed; committed windows never overlap and the
    host's port decodes exactly the committed windows."""

    UNIT = R.HDM_ALIGN_BYTES

    def __init__(self) -> None:
        super().__init__()
        self.plat = Platform(seed=0)
        self.cfg = CxlPodConfig(hosts=1, capacity_bytes=2 * self.UNIT, local_dram_bytes=4096)
        self.pod = CxlPod(self.plat, self.cfg)
        self.bar = self.pod.device.bar0
        self.hdm = self.pod.device.hdm
        self.port = self.pod.port(0)

    @rule(i=st.integers(0, R.HDM_DECODER_COUNT - 1), base_units=st.integers(1, 12),
          size_units=st.integers(0, 3), misalign=st.sampled_from([0, 0, 0, 4096]),
          eig=st.integers(0, 15), eiw=st.integers(0, 15), lock=st.booleans())
    def program(self, i: int, base_units: int, size_units: int, misalign: int, eig: int,
                eiw: int, lock: bool) -> None:
        d = self.hdm.dec[i]
        before = (d.base, d.size, d.ctrl)
        was_locked, was_committed = d.locked, d.committed
        base = base_units * self.UNIT + misalign
        size = size_units * self.UNIT
        self.bar.write32(R.hdm_decoder_base_low_offset(i), base & 0xFFFF_FFFF)
        self.bar.write32(R.hdm_decoder_base_high_offset(i), base >> 32)
        self.bar.write32(R.hdm_decoder_size_low_offset(i), size & 0xFFFF_FFFF)
        self.bar.write32(R.hdm_decoder_size_high_offset(i), size >> 32)
        self.bar.write32(R.hdm_decoder_ctrl_offset(i),
                         R.hdm_decoder_ctrl_encode(eig=eig, eiw=eiw, lock=lock, commit=True))
        if was_locked or was_committed:
            assert (d.base, d.size) == before[:2]
            return
        ctrl = self.bar.read32(R.hdm_decoder_ctrl_offset(i))
        committed = bool(ctrl & R.HDM_DECODER_CTRL_COMMITTED)
        error = bool(ctrl & R.HDM_DECODER_CTRL_COMMIT_ERROR)
        assert committed != error
        valid = (eig <= R.MAX_EIG and eiw in (0, 1, 2, 3, 4, 8, 9, 10) and size > 0
                 and (i == 0 or (self.hdm.dec[i - 1].committed
                                 and d.base >= self.hdm.dec[i - 1].base
                                 + self.hdm.dec[i - 1].size)))
        if not valid:
            assert error

    @rule(i=st.integers(0, R.HDM_DECODER_COUNT - 1))
    def uncommit(self, i: int) -> None:
        d = self.hdm.dec[i]
        locked = d.locked
        higher = any(x.committed for x in self.hdm.dec[i + 1:])
        was = d.committed
        self.bar.write32(R.hdm_decoder_ctrl_offset(i), 0)
        if locked or (was and higher):
            assert d.committed == was
        else:
            assert not d.committed

    @rule(enable=st.booleans())
    def global_enable(self, enable: bool) -> None:
        self.bar.write32(R.HDM_GLOBAL_CTRL_OFFSET, R.HDM_GLOBAL_CTRL_ENABLE if enable else 0)

    @rule(hpa_units=st.integers(0, 16), off=st.integers(0, 4095))
    def access(self, hpa_units: int, off: int) -> None:
        hpa = hpa_units * self.UNIT + off * 64
        faults = self.port.faults
        self.port.store(hpa, b"\x01" * 8)
        mapped = self.hdm.translate(hpa) is not None and self.hdm.window(hpa) is not None
        local = hpa + 8 <= self.cfg.local_dram_bytes
        assert (self.port.faults == faults) == (mapped or local)

    @invariant()
    def committed_in_order_and_disjoint(self) -> None:
        spans = []
        for i, d in enumerate(self.hdm.dec):
            if d.committed:
                assert i == 0 or self.hdm.dec[i - 1].committed
                assert d.base % self.UNIT == 0 and d.size % self.UNIT == 0 and d.size > 0
                spans.append((d.base, d.base + d.size))
        for (a0, a1), (b0, _) in zip(spans, spans[1:]):
            assert a1 <= b0


# -- real-backend worker ---------------------------------------------------------------------------
def run_ring_host(device: str, role: str, n: int, ring: tuple[int, int, int, int, int],
                  opts: dict[str, Any], timeout_s: float) -> list[int]:
    """Run the producer or consumer of a ring on a real backend (one process per host).

    Returns the delivered sequence numbers (consumer) or ``[]`` (producer); raises
    ``TimeoutError`` after ``timeout_s``.
    """
    from labrig.drivers.cxl import open_cxl

    with open_cxl(device, **opts) as mem:
        r = SpscRing(*ring)
        out: list[int] = []
        h = mem.host(0 if role == "producer" else 1)
        gen = r.producer(h, n) if role == "producer" else r.consumer(h, n, out)
        deadline = time.monotonic() + timeout_s
        for k, _ in enumerate(gen):
            if k % 1024 == 0 and time.monotonic() > deadline:
                raise TimeoutError(f"{role} timed out after {timeout_s} s")
        return out


