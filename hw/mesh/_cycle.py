"""Cycle-level fabric: every wavelet on every link, one cycle at a time, SPMD over all PEs.

Per cycle (all arrays are colours × height × width; no Python loop over PEs):

1. A router forwards the head wavelet of a colour's input queue when it is ready (α cycles
   after it entered), every output port of the colour's ``tx`` set can take it (the
   neighbour's queue for that colour has room, or the local CE has a receive posted), and it
   wins arbitration for every one of those links.
2. Each physical link (and each PE's RAMP in each direction) carries at most one wavelet per
   cycle, shared by all colours (SDK: "32-bit messages ... to neighbouring PEs in a single clock
   cycle"; colours share one physical channel).  Arbitration is round-robin over colours by
   cycle number, so contention shows up as queueing.
3. Each CE injects at most one wavelet per cycle from its posted sends (one RAMP input link).

A full queue stalls its upstream (back-pressure); congestion on one colour does not block
another colour's queue (no cross-colour head-of-line blocking).  A multicast colour moves only
when it holds all its output links in the same cycle.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from labrig.hw.mesh._config import DIRECTIONS, RAMP, MeshConfig
from labrig.hw.mesh._ops import DATA_TASK, NEVER, RELAY, STORE, FabricOps

__all__ = ["CycleFabric", "FabricSink"]

_PORTS = tuple(d[0] for d in DIRECTIONS) + (RAMP,)
_RAMP_LATENCY = 1   # cycles from the CE's output queue into its router (our assumption)


class FabricSink(Protocol):
    """What a fabric reports to the device."""

    def recv_done(self, ks: NDArray[np.int64], ys: NDArray[np.int64],
                  xs: NDArray[np.int64]) -> None: ...

    def send_done(self, ks: NDArray[np.int64], ys: NDArray[np.int64],
                  xs: NDArray[np.int64]) -> None: ...

    def data_arrived(self, ks: NDArray[np.int64], ys: NDArray[np.int64],
                     xs: NDArray[np.int64]) -> None: ...


def _shift(src: NDArray[np.bool_], dy: int, dx: int) -> NDArray[np.bool_]:
    """``out[..., y, x] = src[..., y+dy, x+dx]`` (False beyond the mesh edge)."""
    out = np.zeros_like(src)
    h, w = src.shape[-2:]
    ys = slice(max(0, -dy), h - max(0, dy))
    xs = slice(max(0, -dx), w - max(0, dx))
    ys2 = slice(max(0, dy), h - max(0, -dy))
    xs2 = slice(max(0, dx), w - max(0, -dx))
    out[..., ys, xs] = src[..., ys2, xs2]
    return out


class CycleFabric:
    """Router queues and links of the whole mesh, stepped one cycle at a time.

    Parameters
    ----------
    cfg : MeshConfig
        Timing (α, β, queue depth).
    ops : FabricOps
        Posted operations (shared with the CE).
    rx, tx : ndarray of uint8, shape (len(ops.colors), height, width)
        Route bit masks of the colours in use.
    sink : FabricSink
        Receives completions.
    """

    def __init__(self, cfg: MeshConfig, ops: FabricOps, rx: NDArray[np.uint8],
                 tx: NDArray[np.uint8], sink: FabricSink) -> None:
        self.cfg, self.ops, self.sink = cfg, ops, sink
        self.tx = tx
        self.nrx = np.maximum(1, np.unpackbits(rx[..., None], axis=-1).sum(-1)).astype(np.int64)
        k, h, w = tx.shape
        d = cfg.queue_depth
        self.depth = d
        self.qv = np.zeros((k, h, w, d), np.float32)
        self.qr = np.zeros((k, h, w, d), np.int64)
        self.head = np.zeros((k, h, w), np.int64)
        self.cnt = np.zeros((k, h, w), np.int64)
        self.in_flight = 0
        self._base = np.arange(k * h * w, dtype=np.int64) * d
        self._grid_y, self._grid_x = np.indices((h, w))
        self.wavelets_moved = 0

    # -- one cycle ---------------------------------------------------------------------------
    def step(self, now: int) -> int:
        """Advance one cycle at ``now``; returns how many wavelets moved or were injected."""
        moved = self._route(now) if self.in_flight else 0
        moved += self._inject(now)
        self.wavelets_moved += moved
        return moved

    def _prio(self, now: int) -> NDArray[np.int64]:
        k = self.tx.shape[0]
        return ((np.arange(k, dtype=np.int64) - now) % k)[:, None, None]

    def _route(self, now: int) -> int:
        k, h, w = self.tx.shape
        ready = self.qr.reshape(-1)[self._base + self.head.reshape(-1)].reshape(k, h, w)
        has = (self.cnt > 0) & (ready <= now)
        if not has.any():
            return 0
        tx = self.tx
        ok = has.copy()
        room = (self.depth - self.cnt) >= self.nrx
        for bit, dy, dx, _ in DIRECTIONS:
            want = has & ((tx & bit) != 0)
            if want.any():
                ok &= ~want | _shift(room, dy, dx)
        want = has & ((tx & RAMP) != 0)
        if want.any():
            ok &= ~want | self._ce_ready()
        if not ok.any():
            return 0
        prio = self._prio(now)
        move = ok.copy()
        for bit in _PORTS:
            want = ok & ((tx & bit) != 0)
            if want.any():
                rank = np.where(want, prio, k)
                move &= ~(want & (rank != rank.min(axis=0)))
        ks, ys, xs = np.nonzero(move)
        if not len(ks):
            return 0
        h_idx = self.head[ks, ys, xs]
        vals = self.qv[ks, ys, xs, h_idx]
        txs = tx[ks, ys, xs]
        self.head[ks, ys, xs] = (h_idx + 1) % self.depth
        self.cnt[ks, ys, xs] -= 1
        self.in_flight -= len(ks)
        arrive = now + self.cfg.alpha_cycles
        for bit, dy, dx, _ in DIRECTIONS:
            sel = (txs & bit) != 0
            if sel.any():
                self._push(ks[sel], ys[sel] + dy, xs[sel] + dx, vals[sel], arrive)
        sel = (txs & RAMP) != 0
        if sel.any():
            self._deliver(ks[sel], ys[sel], xs[sel], vals[sel], now)
        return len(ks)

    def _push(self, ks: NDArray[np.int64], ys: NDArray[np.int64], xs: NDArray[np.int64],
              vals: NDArray[np.float32], ready: int) -> None:
        tail = (self.head[ks, ys, xs] + self.cnt[ks, ys, xs]) % self.depth
        self.qv[ks, ys, xs, tail] = vals
        self.qr[ks, ys, xs, tail] = ready
        self.cnt[ks, ys, xs] += 1
        self.in_flight += len(ks)

    # -- CE side -----------------------------------------------------------------------------
    def _ce_ready(self) -> NDArray[np.bool_]:
        """Colours × PEs whose CE can take one more wavelet this cycle."""
        o = self.ops
        open_recv = o.r_pos < o.r_len
        ready = (o.r_kind == STORE) & open_recv
        relay = (o.r_kind == RELAY) & open_recv
        if relay.any():
            backlog = o.s_avail - o.s_pos
            out_backlog = backlog[o.r_out, self._grid_y, self._grid_x]
            ready |= relay & (out_backlog < self.depth)
        ready |= (o.r_kind == DATA_TASK) & ~o.dt_pending
        return ready

    def _deliver(self, ks: NDArray[np.int64], ys: NDArray[np.int64], xs: NDArray[np.int64],
                 vals: NDArray[np.float32], now: int) -> None:
        o = self.ops
        kind = o.r_kind[ks, ys, xs]
        sel = kind == STORE
        if sel.any():
            k, y, x = ks[sel], ys[sel], xs[sel]
            pos = o.r_pos[k, y, x]
            o.r_data[k, y, x, pos] = vals[sel]
            o.r_pos[k, y, x] = pos + 1
            done = pos + 1 == o.r_len[k, y, x]
            if done.any():
                self.sink.recv_done(k[done], y[done], x[done])
        sel = kind == RELAY
        if sel.any():
            k, y, x = ks[sel], ys[sel], xs[sel]
            pos = o.r_pos[k, y, x]
            ko = o.r_out[k, y, x]
            out = o.s_avail[ko, y, x]
            o.r_data[k, y, x, pos] = vals[sel]
            o.s_data[ko, y, x, out] = vals[sel] + o.r_add[k, y, x, pos]
            o.s_avail[ko, y, x] = out + 1
            first = pos == 0
            o.s_start[ko[first], y[first], x[first]] = now + self.cfg.beta_cycles
            o.r_pos[k, y, x] = pos + 1
            done = pos + 1 == o.r_len[k, y, x]
            if done.any():
                self.sink.recv_done(k[done], y[done], x[done])
        sel = kind == DATA_TASK
        if sel.any():
            k, y, x = ks[sel], ys[sel], xs[sel]
            o.dt_val[k, y, x] = vals[sel]
            o.dt_pending[k, y, x] = True
            self.sink.data_arrived(k, y, x)

    def _inject(self, now: int) -> int:
        o = self.ops
        if not o.n_sends:
            return 0
        want = (o.s_avail > o.s_pos) & (o.s_start <= now) & (
            (self.depth - self.cnt) >= self.nrx)
        if not want.any():
            return 0
        rank = np.where(want, self._prio(now), want.shape[0])
        ks, ys, xs = np.nonzero(want & (rank == rank.min(axis=0)))
        pos = o.s_pos[ks, ys, xs]
        self._push(ks, ys, xs, o.s_data[ks, ys, xs, pos], now + _RAMP_LATENCY)
        o.s_pos[ks, ys, xs] = pos + 1
        done = pos + 1 == o.s_len[ks, ys, xs]
        if done.any():
            self.sink.send_done(ks[done], ys[done], xs[done])
        return len(ks)

    # -- scheduling --------------------------------------------------------------------------
    def busy(self) -> bool:
        """Wavelets in flight or sends with data to inject."""
        return self.in_flight > 0 or self.ops.n_sends > 0

    def next_time(self, now: int) -> int | None:
        """Earliest cycle after ``now`` at which the fabric could act without a CE event."""
        times: list[int] = []
        if self.in_flight:
            k, h, w = self.tx.shape
            ready = self.qr.reshape(-1)[self._base + self.head.reshape(-1)].reshape(k, h, w)
            later = (self.cnt > 0) & (ready > now)
            if later.any():
                times.append(int(ready[later].min()))
        o = self.ops
        if o.n_sends:
            later = (o.s_avail > o.s_pos) & (o.s_start > now) & (o.s_start < NEVER)
            if later.any():
                times.append(int(o.s_start[later].min()))
        return min(times) if times else None
