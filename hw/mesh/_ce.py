"""Compute engines of all PEs: task table, non-preemptive scheduler and the SPMD task context.

CSL semantics (SDK "task-ids"): a task runs iff it is *activated* and not *blocked*; it runs to
completion; data tasks are triggered by a wavelet on their colour; async fabric ops activate or
unblock a task when they finish.  A task body is one Python call over every PE on which it runs
(a boolean mask), doing numpy work on those PEs' SRAM and charging CE cycles per element.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from labrig.hw.mesh._ops import NO_TASK, ProgramFault, Target

if TYPE_CHECKING:
    from labrig.hw.mesh._device import MeshDevice

__all__ = ["PeContext", "TaskSpec", "ComputeEngines"]

Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class TaskSpec:
    """A task in the program image: ``fn(ctx)`` runs on every PE where it is runnable."""

    name: str
    fn: Callable[[PeContext], None]


def then_code(task_ids: dict[str, int], then: str | tuple[str, str] | None) -> int:
    """Encode a completion action: task id (activate), ``-(id+2)`` (unblock), -1 (none)."""
    if then is None:
        return NO_TASK
    if isinstance(then, tuple):
        verb, name = then
        if verb != "unblock":
            raise ProgramFault(f"completion action {verb!r}: must be 'unblock'")
        return -(_tid(task_ids, name) + 2)
    return _tid(task_ids, then)


def _tid(task_ids: dict[str, int], name: str) -> int:
    try:
        return task_ids[name]
    except KeyError:
        raise ProgramFault(f"no task {name!r} in the program (have {sorted(task_ids)})") from None


class ComputeEngines:
    """Task state of every CE: activated/blocked bits, busy-until cycle and TSC counters."""

    def __init__(self, tasks: list[TaskSpec], height: int, width: int) -> None:
        self.tasks = tasks
        self.ids = {t.name: i for i, t in enumerate(tasks)}
        n = max(1, len(tasks))
        self.active = np.zeros((n, height, width), bool)
        self.blocked = np.zeros((n, height, width), bool)
        self.busy_until = np.zeros((height, width), np.int64)
        self.tsc_start = np.full((height, width), -1, np.int64)
        self.tsc_end = np.zeros((height, width), np.int64)
        self.tasks_run = 0

    def fire(self, codes: NDArray[np.int64], ys: NDArray[np.int64],
             xs: NDArray[np.int64]) -> None:
        """Apply completion actions ``codes`` at PEs ``(ys, xs)``."""
        for code in np.unique(codes).tolist():
            if code == NO_TASK:
                continue
            sel = codes == code
            if code >= 0:
                self.active[code, ys[sel], xs[sel]] = True
            else:
                self.blocked[-code - 2, ys[sel], xs[sel]] = False

    def runnable(self) -> bool:
        """Any task activated and unblocked somewhere."""
        return bool((self.active & ~self.blocked).any())

    def runnable_on_free(self, now: int) -> bool:
        """Any task activated and unblocked on a PE whose CE is free at ``now``.  A runnable
        task on a busy CE waits for it (non-preemptive scheduler), so it needs no visit
        before ``busy_until`` — which :meth:`next_time` already reports."""
        ready = (self.active & ~self.blocked).any(axis=0)
        return bool((ready & (self.busy_until <= now)).any())

    def schedule(self, dev: MeshDevice, now: int) -> bool:
        """Run every runnable task on every free PE (lowest task id first); True if any ran."""
        free = self.busy_until <= now
        ran = False
        # one pass over (task, PE) finds the tasks with work; then run those in id order
        todo = (self.active & ~self.blocked & free).any(axis=(1, 2)).nonzero()[0].tolist()
        for tid in todo:
            spec = self.tasks[tid]
            mask = self.active[tid] & ~self.blocked[tid] & free
            if not mask.any():
                continue
            self.active[tid][mask] = False
            ctx = PeContext(dev, mask, now)
            spec.fn(ctx)
            end = now + dev.cfg.task_cycles + ctx.charged[mask]
            self.busy_until[mask] = end
            first = mask & (self.tsc_start < 0)
            self.tsc_start[first] = now
            self.tsc_end[mask] = np.maximum(self.tsc_end[mask], end)
            free &= ~mask
            self.tasks_run += int(mask.sum())
            ran = True
        return ran

    def next_time(self, now: int) -> int | None:
        """Earliest cycle after ``now`` at which a busy CE becomes free."""
        later = self.busy_until > now
        return int(self.busy_until[later].min()) if later.any() else None


class PeContext:
    """What a task body sees: the PEs it runs on and the CE's instruction set.

    Attributes
    ----------
    mask : ndarray of bool, shape (height, width)
        PEs running this task now.
    px, py : ndarray of int, shape (height, width)
        Each PE's x (column) and y (row).
    now : int
        Cycle at which the task started.
    """

    def __init__(self, dev: MeshDevice, mask: Mask, now: int) -> None:
        self._dev = dev
        self.mask = mask
        self.now = now
        self.py, self.px = np.indices(mask.shape)
        self.charged = np.zeros(mask.shape, np.int64)

    # -- memory ------------------------------------------------------------------------------
    def buf(self, name: str) -> NDArray[np.float32]:
        """The whole ``(height, width, ...)`` buffer; index it with a mask."""
        return self._dev.sram[name]

    def _where(self, where: Mask | None) -> Mask:
        return self.mask if where is None else (self.mask & where)

    def charge(self, cycles: int | NDArray[np.int64], where: Mask | None = None) -> None:
        """Add CE cycles at the PEs in ``where``."""
        m = self._where(where)
        self.charged[m] += np.broadcast_to(cycles, self.mask.shape)[m]

    # -- vector instructions (DSD ops) -------------------------------------------------------
    def _operand(self, spec: str | tuple[str, int], m: Mask) -> NDArray[np.float32]:
        if isinstance(spec, tuple):
            return self._dev.sram[spec[0]][m][:, spec[1]]
        return self._dev.sram[spec][m]

    def matmul(self, dst: str, a: str | tuple[str, int], b: str | tuple[str, int],
               where: Mask | None = None, *, trans_b: bool = False,
               accumulate: bool = True) -> None:
        """``dst += a @ b`` (or ``a @ b.T``) per PE, as ``@fmach`` loops: one MAC per element
        per ``mac_cycles`` (WaferLLM §7: one MAC per cycle).  An operand ``(name, i)`` is
        block ``i`` of a block array."""
        m = self._where(where)
        if not m.any():
            return
        sram = self._dev.sram
        av, bv = self._operand(a, m), self._operand(b, m)
        prod = av @ (np.swapaxes(bv, -1, -2) if trans_b else bv)
        if accumulate:
            sram[dst][m] += prod
        else:
            sram[dst][m] = prod
        kdim = av.shape[-1]
        self.charge(int(prod[0].size) * kdim * self._dev.cfg.mac_cycles, m)

    def add(self, dst: str, src: str | NDArray[np.float32], where: Mask | None = None) -> None:
        """``dst += src`` element-wise (``@fadds``); ``elem_cycles`` per element."""
        m = self._where(where)
        if not m.any():
            return
        vals = self._dev.sram[src][m] if isinstance(src, str) else src
        self._dev.sram[dst][m] += vals
        self.charge(int(np.prod(self._dev.sram[dst].shape[2:])) * self._dev.cfg.elem_cycles, m)

    def copy(self, dst: str, src: str | NDArray[np.float32], where: Mask | None = None) -> None:
        """``dst = src`` (``@fmovs``); ``elem_cycles`` per element."""
        m = self._where(where)
        if not m.any():
            return
        vals = self._dev.sram[src][m] if isinstance(src, str) else src
        self._dev.sram[dst][m] = vals
        self.charge(int(np.prod(self._dev.sram[dst].shape[2:])) * self._dev.cfg.elem_cycles, m)

    # -- tasks -------------------------------------------------------------------------------
    def activate(self, task: str, where: Mask | None = None) -> None:
        """``@activate``: make ``task`` runnable (once unblocked) on ``where``."""
        self._dev.ce.active[_tid(self._dev.ce.ids, task)][self._where(where)] = True

    def block(self, task: str, where: Mask | None = None) -> None:
        """``@block``."""
        self._dev.ce.blocked[_tid(self._dev.ce.ids, task)][self._where(where)] = True

    def unblock(self, task: str, where: Mask | None = None) -> None:
        """``@unblock``."""
        self._dev.ce.blocked[_tid(self._dev.ce.ids, task)][self._where(where)] = False

    def wavelet(self, color: int) -> NDArray[np.float32]:
        """In a data task: the triggering wavelet of ``color`` at each PE in ``mask``
        (consumed, so the next one can arrive)."""
        ops = self._dev.ops
        k = ops.k(color)
        vals = ops.dt_val[k][self.mask].copy()
        ops.dt_pending[k][self.mask] = False
        return vals

    # -- asynchronous fabric ops ---------------------------------------------------------------
    def _groups(self, color: int | NDArray[np.int64], where: Mask | None
                ) -> list[tuple[int, NDArray[np.bool_]]]:
        m = self._where(where)
        if np.isscalar(color):
            return [(int(color), m)] if m.any() else []
        colors = np.asarray(color)
        return [(int(c), m & (colors == c)) for c in np.unique(colors[m]).tolist()]

    def send(self, color: int | NDArray[np.int64], src: str,
             where: Mask | None = None, then: str | tuple[str, str] | None = None, *,
             index: int | None = None) -> None:
        """Async send of buffer ``src`` (all its words, row-major) on ``color`` (scalar or a
        per-PE array); ``then`` activates (or ``("unblock", task)`` unblocks) a task when the
        last wavelet has left the CE.  ``index`` sends only ``src[index]`` (one block of a
        block array).  The data are read when the op is posted."""
        dev = self._dev
        code = then_code(dev.ce.ids, then)
        for c, m in self._groups(color, where):
            ys, xs = np.nonzero(m)
            data = dev.sram[src][m] if index is None else dev.sram[src][m][:, index]
            dev.post_send(dev.ops.k(c), ys, xs, data.reshape(len(ys), -1).astype(np.float32),
                          code, self.now)

    def recv(self, color: int | NDArray[np.int64], dst: str, where: Mask | None = None,
             then: str | tuple[str, str] | None = None, *, add: bool = False,
             length: int | None = None) -> None:
        """Async receive of ``length`` wavelets (default: the size of ``dst``) on ``color`` into
        ``dst`` (accumulating when ``add``)."""
        dev = self._dev
        code = then_code(dev.ce.ids, then)
        n = int(np.prod(dev.sram[dst].shape[2:])) if length is None else int(length)
        target = dev.ops.target_id(Target(dst, add))
        for c, m in self._groups(color, where):
            ys, xs = np.nonzero(m)
            dev.post_recv(dev.ops.k(c), ys, xs, n, target, code, self.now)

    def relay(self, in_color: int | NDArray[np.int64], out_color: int | NDArray[np.int64],
              length: int, where: Mask | None = None, addend: str | None = None,
              then: str | tuple[str, str] | None = None, keep: str | None = None) -> None:
        """Fabric-to-fabric forward of ``length`` wavelets from ``in_color`` to
        ``out_color``, adding buffer ``addend`` element-wise and keeping the incoming words in
        buffer ``keep``; the first wavelet leaves β cycles after it arrived (a software routing
        stage, WaferLLM §3.1).  ``then`` fires when the last wavelet has left."""
        dev = self._dev
        code = then_code(dev.ce.ids, then)
        target = -1 if keep is None else dev.ops.target_id(Target(keep, False))
        m_all = self._where(where)
        ins = np.broadcast_to(np.asarray(in_color), m_all.shape)
        outs = np.broadcast_to(np.asarray(out_color), m_all.shape)
        pairs = np.unique(np.stack([ins[m_all], outs[m_all]], axis=1), axis=0)
        for ci, co in pairs.tolist():
            m = m_all & (ins == ci) & (outs == co)
            ys, xs = np.nonzero(m)
            add = None if addend is None else dev.sram[addend][m].reshape(len(ys), -1)
            dev.post_relay(dev.ops.k(ci), dev.ops.k(co), ys, xs, length, add, code, self.now,
                           target)
