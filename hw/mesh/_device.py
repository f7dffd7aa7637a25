"""The mesh device: a cycle-driven wafer-scale PE grid (routers, colours, queues, CEs, SRAM).

Unlike the MMIO+event devices, the mesh keeps its own cycle counter: ``run`` advances it while
PEs have work, skipping cycles in which nothing can change, and then moves the platform clock
by cycles × clock period.  What a host runtime sees: program load (routes, buffers, tasks),
host copies into/out of SRAM over the memcpy colours, task launch, per-PE TSC counters, and a
fault record when the fabric stalls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from labrig.hw._platform import Platform
from labrig.hw.mesh._analytic import AnalyticFabric
from labrig.hw.mesh._ce import ComputeEngines, TaskSpec
from labrig.hw.mesh._config import HOST_COLORS, MeshConfig
from labrig.hw.mesh._cycle import CycleFabric
from labrig.hw.mesh._ops import (
    NEVER,
    NO_RECV,
    NO_TASK,
    RELAY,
    STORE,
    FabricOps,
    ProgramFault,
)
from labrig.hw.mesh._routes import RouteTable
from labrig.hw.mesh._sram import Sram

__all__ = ["MeshDevice", "MeshFault", "MeshImage"]

Mask = NDArray[np.bool_]


@dataclass
class MeshImage:
    """A compiled program: routes, SRAM buffers, tasks and data-task bindings.

    ``routes`` are ``(color, rx_bits, tx_bits, where)``; ``buffers`` ``(name, shape, where)``;
    ``data_tasks`` maps a colour to the task its wavelets trigger.
    """

    routes: list[tuple[int, int, int, Mask]] = field(default_factory=list)
    buffers: list[tuple[str, tuple[int, ...], Mask]] = field(default_factory=list)
    tasks: list[TaskSpec] = field(default_factory=list)
    data_tasks: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MeshFault:
    """Why a run stopped early: the cycle, a reason and the stuck PEs with their colours."""

    cycle: int
    reason: str
    stuck: tuple[tuple[int, int, tuple[str, ...]], ...] = ()

    def __str__(self) -> str:
        pes = "; ".join(f"PE(x={x}, y={y}): {', '.join(what)}" for x, y, what in self.stuck)
        return f"cycle {self.cycle}: {self.reason}" + (f"; stuck {pes}" if pes else "")


class MeshDevice:
    """A W×H mesh of PEs on a :class:`~labrig.hw.Platform`.

    Parameters
    ----------
    plat : Platform
        Virtual clock; each run advances it by cycles × ``cfg.cycle_ns``.
    cfg : MeshConfig
        Geometry and timing.

    Examples
    --------
    >>> from labrig.hw import Platform
    >>> dev = MeshDevice(Platform(seed=0), MeshConfig(4, 3))
    >>> dev.cycle, dev.cfg.shape
    (0, (3, 4))
    """

    def __init__(self, plat: Platform, cfg: MeshConfig) -> None:
        self.plat, self.cfg = plat, cfg
        self.cycle = 0
        self.host_cycles = 0
        self.fault: MeshFault | None = None
        self._unload()

    def _unload(self) -> None:
        h, w = self.cfg.shape
        self.routes = RouteTable(self.cfg.colors, h, w)
        self.sram = Sram(h, w, self.cfg.sram_bytes)
        self.ce = ComputeEngines([], h, w)
        self.ops = FabricOps([], h, w)
        self.fabric: CycleFabric | AnalyticFabric | None = None

    # -- program load ------------------------------------------------------------------------
    def load(self, image: MeshImage) -> None:
        """Configure routers, allocate SRAM and install tasks (replacing any old program).

        Raises
        ------
        SramOverflow
            A buffer does not fit on some PE.
        ValueError
            A route uses a host (memcpy) colour or a colour outside the router.
        """
        self._unload()
        h, w = self.cfg.shape
        for color, rx, tx, where in image.routes:
            if not 0 <= color < self.cfg.colors or color in HOST_COLORS:
                raise ValueError(f"colour {color} is not a program colour "
                                 f"(0..{HOST_COLORS[0] - 1}; {HOST_COLORS[0]}.."
                                 f"{HOST_COLORS[-1]} are reserved for memcpy)")
            self.routes.set(color, rx, tx, where)
        for name, shape, where in image.buffers:
            self.sram.alloc(name, shape, where)
        self.ce = ComputeEngines(list(image.tasks), h, w)
        used = sorted(set(self.routes.used_colors()) | set(image.data_tasks))
        self.ops = FabricOps(used, h, w)
        for color, task in image.data_tasks.items():
            self.ops.bind_data_task(self.ops.k(color), self.ce.ids[task])
        rx, tx = self.routes.rx[used], self.routes.tx[used]
        fabric = CycleFabric if self.cfg.timing == "cycle" else AnalyticFabric
        self.fabric = fabric(self.cfg, self.ops, rx, tx, self)

    # -- host copies (memcpy over colours 21..23) ----------------------------------------------
    def host_write(self, name: str, y0: int, x0: int, data: NDArray[np.float32]) -> None:
        """Copy ``data`` of shape ``(h, w, words)`` into buffer ``name`` of the PEs in the
        rectangle at ``(x0, y0)``.  Costs ``words`` cycles per column of PEs fed in parallel
        from the west edge (one wavelet per cycle per row; our model of memcpy streaming)."""
        buf = self.sram[name]
        hh, ww = data.shape[:2]
        buf[y0:y0 + hh, x0:x0 + ww] = data.reshape(buf[y0:y0 + hh, x0:x0 + ww].shape)
        self.host_cycles += int(data.size // max(1, hh))

    def host_read(self, name: str, y0: int, x0: int, h: int, w: int) -> NDArray[np.float32]:
        """Copy ``(h, w, words)`` out of buffer ``name`` (same cost model as ``host_write``)."""
        out = self.sram[name][y0:y0 + h, x0:x0 + w].reshape(h, w, -1).copy()
        self.host_cycles += int(out.size // max(1, h))
        return out

    # -- execution ---------------------------------------------------------------------------
    def activate(self, task: str, where: Mask | None = None) -> None:
        """Activate ``task`` on ``where`` (all PEs by default), as a host ``launch`` RPC."""
        m = np.ones(self.cfg.shape, bool) if where is None else where
        self.ce.active[self.ce.ids[task]][m] = True

    def reset_counters(self) -> None:
        """Clear per-PE TSC start/end counters (start of a launch)."""
        self.ce.tsc_start[:] = -1
        self.ce.tsc_end[:] = self.cycle

    def run(self, max_cycles: int | None = None) -> MeshFault | None:
        """Run until every CE is idle and the fabric is empty; returns a fault or ``None``.

        A fault (kept in :attr:`fault`) is a program error (e.g. an op on a busy queue) or a
        stall: no wavelet moved and no task could run for ``stall_cycles`` cycles, or nothing
        could ever happen again while receives/sends are unfinished.
        """
        assert self.fabric is not None, "no program loaded"
        start = self.cycle
        now = self.cycle
        last_progress = now
        try:
            while True:
                ran = self.ce.schedule(self, now)
                moved = self.fabric.step(now)
                if ran or moved:
                    last_progress = now
                busy_ce = bool((self.ce.busy_until > now).any())
                if not (ran or moved or busy_ce or self.ce.runnable() or self.fabric.busy()
                        or self.ops.pending()):
                    break
                if max_cycles is not None and now - start >= max_cycles:
                    self.fault = MeshFault(now, f"max_cycles={max_cycles} reached",
                                           self._stuck())
                    break
                if ran or moved:
                    now += 1
                    continue
                times = [t for t in (self.ce.next_time(now), self.fabric.next_time(now))
                         if t is not None]
                if self.ce.runnable_on_free(now):
                    times.append(now + 1)
                if not times or min(times) - last_progress > self.cfg.stall_cycles:
                    self.fault = MeshFault(
                        now + self.cfg.stall_cycles,
                        f"stall: no progress for {self.cfg.stall_cycles} cycles", self._stuck())
                    break
                now = max(now + 1, min(times))
        except ProgramFault as exc:
            self.fault = MeshFault(now, f"program fault: {exc}")
        end = max(now, int(self.ce.busy_until.max()))
        self.cycle = end
        self.plat.run_for(int(round((end - start) * self.cfg.cycle_ns)))
        return self.fault

    def _stuck(self) -> tuple[tuple[int, int, tuple[str, ...]], ...]:
        stuck = self.ops.stuck()
        if isinstance(self.fabric, CycleFabric) and self.fabric.in_flight:
            fab = self.fabric
            have = {(x, y) for x, y, _ in stuck}
            for k, y, x in np.argwhere(fab.cnt > 0).tolist():
                if (x, y) not in have and len(stuck) < 8:
                    stuck.append((x, y, [f"{fab.cnt[k, y, x]} wavelets queued on colour "
                                         f"{self.ops.colors[k]}"]))
                    have.add((x, y))
        return tuple((x, y, tuple(w)) for x, y, w in stuck)

    # -- fabric sink (completions) -------------------------------------------------------------
    def post_send(self, k: int, ys: NDArray[np.int64], xs: NDArray[np.int64],
                  data: NDArray[np.float32], then: int, now: int) -> None:
        """Post a send (zero-length sends complete at once)."""
        if data.shape[1] == 0:
            self.ce.fire(np.full(len(ys), then), ys, xs)
            return
        self.ops.post_send(k, ys, xs, data, then, now)

    def post_recv(self, k: int, ys: NDArray[np.int64], xs: NDArray[np.int64], length: int,
                  target: int, then: int, now: int) -> None:
        """Post a receive (zero-length receives complete at once)."""
        if length == 0:
            self.ce.fire(np.full(len(ys), then), ys, xs)
            return
        self.ops.post_recv(k, ys, xs, length, target, then, now)

    def post_relay(self, k_in: int, k_out: int, ys: NDArray[np.int64], xs: NDArray[np.int64],
                   length: int, addend: NDArray[np.float32] | None, then: int,
                   now: int, target: int = -1) -> None:
        """Post a fabric-to-fabric relay (optionally keeping a copy in ``target``)."""
        if length == 0:
            self.ce.fire(np.full(len(ys), then), ys, xs)
            return
        self.ops.post_relay(k_in, k_out, ys, xs, length, addend, then, now, target)

    def send_done(self, ks: NDArray[np.int64], ys: NDArray[np.int64],
                  xs: NDArray[np.int64]) -> None:
        """Last wavelet of a send left the CE: free the queue, fire its completion."""
        o = self.ops
        codes = o.s_then[ks, ys, xs].copy()
        o.s_len[ks, ys, xs] = 0
        o.s_pos[ks, ys, xs] = 0
        o.s_avail[ks, ys, xs] = 0
        o.s_start[ks, ys, xs] = NEVER
        o.s_then[ks, ys, xs] = NO_TASK
        o.n_sends -= len(ks)
        self.ce.fire(codes, ys, xs)

    def recv_done(self, ks: NDArray[np.int64], ys: NDArray[np.int64],
                  xs: NDArray[np.int64]) -> None:
        """A receive or relay input got its last wavelet: store, free the queue, fire."""
        o = self.ops
        kind = o.r_kind[ks, ys, xs]
        store = (kind == STORE) | ((kind == RELAY) & (o.r_target[ks, ys, xs] >= 0))
        if store.any():
            k, y, x = ks[store], ys[store], xs[store]
            lens = o.r_len[k, y, x]
            tids = o.r_target[k, y, x]
            span = int(lens.max()) + 1
            for key in np.unique(tids * span + lens).tolist():
                tid, n = divmod(key, span)
                sel = (tids == tid) & (lens == n)
                tgt = o.targets[tid]
                buf = self.sram[tgt.buffer]
                flat = buf.reshape(*buf.shape[:2], -1)
                vals = o.r_data[k[sel], y[sel], x[sel], :n]
                if tgt.add:
                    # np.add.at: two colours may land in one buffer of one PE at once
                    np.add.at(flat, (y[sel], x[sel], slice(0, n)), vals)
                else:
                    flat[y[sel], x[sel], :n] = vals
        codes = o.r_then[ks, ys, xs].copy()
        o.r_kind[ks, ys, xs] = NO_RECV
        o.r_len[ks, ys, xs] = 0
        o.r_pos[ks, ys, xs] = 0
        o.r_then[ks, ys, xs] = NO_TASK
        o.n_recvs -= len(ks)
        self.ce.fire(codes, ys, xs)

    def data_arrived(self, ks: NDArray[np.int64], ys: NDArray[np.int64],
                     xs: NDArray[np.int64]) -> None:
        """A wavelet landed on a data-task colour: activate the bound task."""
        self.ce.fire(self.ops.dt_task[ks], ys, xs)

    # -- inspection (tests, plots; drivers read counters through ``tsc``) ----------------------
    def tsc(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Per-PE (start, end) cycle of the last launch's first and last task."""
        return self.ce.tsc_start.copy(), self.ce.tsc_end.copy()

    @property
    def wavelets_moved(self) -> int:
        """Total router moves so far (a contention-free transfer of n words over h hops
        counts n·h)."""
        return 0 if self.fabric is None else int(self.fabric.wavelets_moved)
