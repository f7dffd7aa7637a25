"""Analytic fabric: whole messages instead of wavelets (the fast timing mode).

A message (one posted send on a colour) starts when the send is posted if it fits in the
router queues along its path (queue_depth × routers); a longer one waits until its receivers
are posted, less the part the queues can hold.  Its timing is

    first arrival = start + ramp + Σ over the tree path of max(α, wait for the link)
    last arrival  = first arrival + words - 1

where every link (and each PE's RAMP in both directions) is reserved for ``words`` cycles,
first come first served in resolution order — the hops·α + words/bandwidth + contention terms
of Luczynski et al.'s wafer-scale model (HPDC'24; shared/research/wafer.md §4).  A relay's
output starts β after its input's first wavelet and ends no earlier than its input's last.

and a receiver posted after the arrival takes one wavelet per cycle from its post.  Limits: a
receive must match one message of the same length; data-task colours need the cycle-level
mode.
"""

from __future__ import annotations

import heapq

import numpy as np
from numpy.typing import NDArray

from labrig.hw.mesh._config import DIRECTIONS, RAMP, MeshConfig
from labrig.hw.mesh._cycle import FabricSink
from labrig.hw.mesh._ops import NEVER, RELAY, STORE, FabricOps, ProgramFault

__all__ = ["AnalyticFabric"]

_RAMP_LATENCY = 1
_PORT_INDEX = {bit: i for i, (bit, *_rest) in enumerate(DIRECTIONS)}
_RAMP_OUT, _RAMP_IN, _PORTS = 4, 5, 6
_SEND_DONE, _RECV_DONE = 0, 1


class AnalyticFabric:
    """Message-level timing over the same op state as :class:`CycleFabric`."""

    def __init__(self, cfg: MeshConfig, ops: FabricOps, rx: NDArray[np.uint8],
                 tx: NDArray[np.uint8], sink: FabricSink) -> None:
        self.cfg, self.ops, self.sink, self.tx = cfg, ops, sink, tx
        k, h, w = tx.shape
        self.width = w
        self.link_free = np.zeros(h * w * _PORTS, np.int64)
        self.resolved = np.zeros((k, h, w), bool)
        self.claimed = np.zeros((k, h, w), bool)
        self.min_end = np.zeros((k, h, w), np.int64)
        self._trees: dict[tuple[int, int, int], list[tuple[int, int, int, int, int]]] = {}
        self._events: list[tuple[int, int, int, int, int, int]] = []
        self._seq = 0
        self._pending: dict[tuple[int, int, int], list[
            tuple[int, int, NDArray[np.float32], int, int]]] = {}
        self.wavelets_moved = 0
        if (ops.dt_task >= 0).any():
            raise ProgramFault("data tasks need MeshConfig(timing='cycle')")

    def _tree(self, k: int, y: int, x: int) -> list[tuple[int, int, int, int, int]]:
        """Route tree of colour index ``k`` from PE ``(y, x)``: ``(parent, link, y, x, is_dest)``
        entries in BFS order (parent -1 is the source router)."""
        key = (k, y, x)
        if key in self._trees:
            return self._trees[key]
        h, w = self.tx.shape[1:]
        out: list[tuple[int, int, int, int, int]] = []
        frontier = [(-1, y, x)]
        seen = {(y, x)}
        while frontier:
            nxt = []
            for parent, cy, cx in frontier:
                bits = int(self.tx[k, cy, cx])
                base = (cy * w + cx) * _PORTS
                if bits & RAMP:
                    out.append((parent, base + _RAMP_OUT, cy, cx, 1))
                for bit, dy, dx, _ in DIRECTIONS:
                    ny, nx = cy + dy, cx + dx
                    if bits & bit and 0 <= ny < h and 0 <= nx < w and (ny, nx) not in seen:
                        seen.add((ny, nx))
                        out.append((parent, base + _PORT_INDEX[bit], ny, nx, 0))
                        nxt.append((len(out) - 1, ny, nx))
            frontier = nxt
        self._trees[key] = out
        return out

    def _event(self, t: int, kind: int, k: int, y: int, x: int) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, kind, k, y, x))

    def step(self, now: int) -> int:
        """Resolve every message whose endpoints are all posted; deliver completions due."""
        n = self._resolve(now)
        while self._events and self._events[0][0] <= now:
            _, _, kind, k, y, x = heapq.heappop(self._events)
            idx = (np.array([k]), np.array([y]), np.array([x]))
            if kind == _SEND_DONE:
                self.resolved[k, y, x] = False
                self.sink.send_done(*idx)
            else:
                self.claimed[k, y, x] = False
                self.sink.recv_done(*idx)
            n += 1
        return n

    def _resolve(self, now: int) -> int:
        o = self.ops
        count = self._deliver(now)
        if not o.n_sends:
            return count
        cand = (o.s_len > 0) & (o.s_avail == o.s_len) & ~self.resolved & (o.s_start < NEVER)
        for k, y, x in np.argwhere(cand).tolist():
            tree = self._tree(k, y, x)
            dests = [(dy, dx) for _, _, dy, dx, d in tree if d]
            if not dests:
                continue
            n = int(o.s_len[k, y, x])
            # Wavelets buffered in the routers on the path (one queue per router per colour)
            # let a short message leave before its receiver is ready; a longer one waits.
            cap = self.cfg.queue_depth * (len(tree) - len(dests) + 1)
            t0 = max(int(o.s_start[k, y, x]), now)
            if n > cap:
                if not all(o.r_kind[k, dy, dx] in (STORE, RELAY) and not self.claimed[k, dy, dx]
                           and not self._pending.get((k, dy, dx)) for dy, dx in dests):
                    continue
                t0 = max(t0, *(int(o.r_post[k, dy, dx]) - cap for dy, dx in dests))
            self._transfer(k, y, x, n, t0, tree)
            count += 1
        return count + self._deliver(now)

    def _transfer(self, k: int, y: int, x: int, n: int, t0: int,
                  tree: list[tuple[int, int, int, int, int]]) -> None:
        o, lf, alpha = self.ops, self.link_free, self.cfg.alpha_cycles
        ramp_in = (y * self.width + x) * _PORTS + _RAMP_IN
        start = max(t0, int(lf[ramp_in]), int(self.min_end[k, y, x]) - n)
        lf[ramp_in] = start + n
        self.resolved[k, y, x] = True
        self._event(start + n, _SEND_DONE, k, y, x)
        data = o.s_data[k, y, x, :n].copy()
        ready = [0] * len(tree)
        src_ready = start + _RAMP_LATENCY
        for i, (parent, link, dy, dx, is_dest) in enumerate(tree):
            t = src_ready if parent < 0 else ready[parent]
            t = max(t, int(lf[link]))
            lf[link] = t + n
            self.wavelets_moved += n
            if is_dest:
                self._pending.setdefault((k, dy, dx), []).append((t, t + n - 1, data, x, y))
            else:
                ready[i] = t + alpha

    def _deliver(self, now: int) -> int:
        """Hand arrived (or arriving) messages to receivers that are posted."""
        o = self.ops
        count = 0
        for key in [kk for kk, v in self._pending.items() if v]:
            k, dy, dx = key
            if o.r_kind[k, dy, dx] not in (STORE, RELAY) or self.claimed[k, dy, dx]:
                continue
            first, last, data, sx, sy = self._pending[key].pop(0)
            n = len(data)
            if o.r_len[k, dy, dx] != n:
                raise ProgramFault(
                    f"analytic mode: PE(x={sx}, y={sy}) sends {n} wavelets on colour "
                    f"{o.colors[k]} but PE(x={dx}, y={dy}) receives {o.r_len[k, dy, dx]}")
            post = max(int(o.r_post[k, dy, dx]), now)
            done = max(last, post + n - 1) + 1
            self.claimed[k, dy, dx] = True
            o.r_data[k, dy, dx, :n] = data
            if o.r_kind[k, dy, dx] == RELAY:
                ko = int(o.r_out[k, dy, dx])
                o.s_data[ko, dy, dx, :n] = data + o.r_add[k, dy, dx, :n]
                o.s_avail[ko, dy, dx] = n
                o.s_start[ko, dy, dx] = max(first, post) + self.cfg.beta_cycles
                self.min_end[ko, dy, dx] = done
            o.r_pos[k, dy, dx] = n
            self._event(done, _RECV_DONE, k, dy, dx)
            count += 1
        return count

    def busy(self) -> bool:
        """Messages in flight."""
        return bool(self._events) or any(self._pending.values())

    def next_time(self, now: int) -> int | None:
        """Time of the next completion."""
        return self._events[0][0] if self._events else None
